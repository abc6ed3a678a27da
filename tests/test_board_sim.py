"""The board simulator in-process: protocol behaviour, pacing, loss injection, serving.

Host commands are made with the protocol modules' own command builders and the
simulator's output is read back with their decoders, so these tests check the
simulator against the protocol definitions, not against itself.
"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from crampwatch.errors import ConfigError
from crampwatch.firmware_bridge.boardsim import (
    PROTECT_FRAMES,
    BoardSim,
    RecordingSignal,
    SyntheticSignal,
    serve_pty,
    serve_tcp,
)
from crampwatch.firmware_bridge.protocols import bitalino, cyton, openframe
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight


def _signal(emg_fs=1000.0, acc_fs=100.0, seed=1):
    return SyntheticSignal(hours=0.01, seed=seed, emg_fs_hz=emg_fs, acc_fs_hz=acc_fs)


def _packets(decoder, data, stream="emg"):
    return [p for p in decoder.feed(data) if p.stream == stream]


def test_cyton_waits_for_b_resets_on_v_and_stops_on_s():
    sim = BoardSim("cyton", _signal(), speed=0)
    assert sim.due_bytes(1.0) == b""                       # silent until started
    assert sim.host_bytes(cyton.reset_command(), 1.0).endswith(b"$$$")
    assert sim.due_bytes(1.0) == b""
    sim.host_bytes(cyton.start_command(), 1.0)
    dec = cyton.Decoder()
    first = _packets(dec, sim.due_bytes(1.0) + sim.due_bytes(1.0))
    assert [p.counter for p in first[:3]] == [0, 1, 2]
    assert first[-1].counter == (len(first) - 1) % 256
    sim.host_bytes(cyton.stop_command(), 1.0)
    assert sim.due_bytes(1.0) == b""
    sim.host_bytes(cyton.reset_command() + cyton.start_command(), 1.0)
    dec = cyton.Decoder()                                  # the host reopens after a reset
    again = _packets(dec, sim.due_bytes(1.0))
    assert again[0].counter == 0                           # `v` restarted the counter
    # the signal went on: the reset does not rewind the night
    night = SyntheticNight(NightSpec(hours=0.01, seed=1, emg_fs_hz=250.0, acc_fs_hz=25.0))
    idx = sim.signal_index - len(again)
    assert np.allclose(again[0].samples[0, 0], night.render_emg(idx, 1)[0],
                       atol=cyton.uv_per_count(24))


def test_cyton_gain_command_changes_the_encoding():
    sim = BoardSim("cyton", _signal(), speed=0)
    sim.host_bytes(cyton.channel_settings_command(1, gain=1) + cyton.start_command(), 0.0)
    dec = cyton.Decoder()
    dec.observe_command(cyton.channel_settings_command(1, gain=1))
    p = _packets(dec, sim.due_bytes(0.0))
    night = SyntheticNight(NightSpec(hours=0.01, seed=1, emg_fs_hz=250.0, acc_fs_hz=25.0))
    truth = night.render_emg(0, len(p))
    got = np.array([x.samples[0, 0] for x in p])
    assert np.abs(got - truth).max() <= cyton.uv_per_count(1) / 2 * 1.0001


def test_bitalino_version_rate_channels_and_stop():
    sim = BoardSim("bitalino", _signal(), speed=0)
    assert sim.host_bytes(bitalino.version_command(), 0.0).startswith(b"BITalino")
    sim.host_bytes(bitalino.start_command((0,), fs_hz=100), 0.0)
    data = b"".join(sim.due_bytes(0.0) for _ in range(6))     # unpaced: batches of 50 ms
    assert len(data) % bitalino.frame_length(1) == 0      # one channel: 3-byte frames
    dec = bitalino.Decoder(analog_channels=(0,), emg=(0,), acc=())
    p = _packets(dec, data)
    assert [x.counter for x in p[:18]] == list(range(16)) + [0, 1]
    night = SyntheticNight(NightSpec(hours=0.01, seed=1, emg_fs_hz=100.0, acc_fs_hz=100.0))
    truth = night.render_emg(0, len(p))
    step = bitalino.VCC_V / bitalino.EMG_GAIN * 1e6 / 1024
    ok = np.abs(truth) < 1600
    assert np.abs(np.array([x.samples[0, 0] for x in p])[ok] - truth[ok]).max() <= step / 2 + 1e-9
    sim.host_bytes(bitalino.stop_command(), 0.0)
    assert sim.due_bytes(0.0) == b""


def test_open_board_info_start_time_sync_stop():
    sim = BoardSim("open", _signal(emg_fs=500.0, acc_fs=50.0), speed=0)
    host = openframe.HostEncoder()
    dec = openframe.Decoder()
    info = [p for p in dec.feed(sim.host_bytes(host.info_request(), 0.0)) if p.stream == "info"]
    assert info[0].meta["emg_fs_hz"] == 500.0 and info[0].meta["imu_fs_hz"] == 50.0
    assert sim.due_bytes(0.0) == b""
    sim.host_bytes(host.start(), 0.0)
    packets = dec.feed(b"".join(sim.due_bytes(0.0) for _ in range(12)))
    emg = [p for p in packets if p.stream == "emg"]
    acc = [p for p in packets if p.stream == "acc"]
    assert [p.counter for p in emg[:3]] == [0, 20, 40]
    assert acc and acc[0].counter == 0 and acc[0].samples.shape == (10, 3)
    assert any(p.stream == "status" for p in packets)
    reply = dec.feed(sim.host_bytes(host.time_sync_request(1234), 0.0))
    assert reply[0].stream == "time_sync" and reply[0].meta["token"] == 1234
    sim.host_bytes(host.stop(), 0.0)
    assert sim.due_bytes(0.0) == b""


@pytest.mark.parametrize("speed", [1.0, 3.5])
def test_pacing_follows_a_monotonic_schedule_whatever_the_call_pattern(speed):
    """Frames sent by time t are exactly those due by t: no drift from call timing."""
    sim = BoardSim("bitalino", _signal(), speed=speed)
    sim.host_bytes(bitalino.start_command((0, 1, 2, 3), fs_hz=1000), 100.0)
    rng = np.random.default_rng(0)
    t, frames = 100.0, 0
    L = bitalino.frame_length(4)
    for _ in range(300):
        t += float(rng.exponential(0.013))                # irregular wake-ups
        frames += len(sim.due_bytes(t)) // L
        assert frames == int((t - 100.0) * 1000 * speed)
    nxt = sim.next_due_s()
    assert nxt is not None and t < nxt <= t + 1 / (1000 * speed) + 1e-9


def test_the_device_clock_runs_on_while_not_streaming():
    sim = BoardSim("open", _signal(emg_fs=500.0, acc_fs=50.0), speed=1.0)
    host = openframe.HostEncoder()
    sim.host_bytes(host.start(), 10.0)
    dec = openframe.Decoder()
    dec.feed(sim.due_bytes(11.0))
    sim.host_bytes(host.stop(), 11.0)
    sim.host_bytes(host.start(), 13.0)                     # two seconds later
    emg = [p for p in dec.feed(sim.due_bytes(13.1)) if p.stream == "emg"]
    assert emg[0].counter == 1500                         # 3 s of device time at 500 Hz


@pytest.mark.parametrize("proto", ["cyton", "bitalino", "open"])
def test_drops_and_bit_flips_match_the_tally(proto):
    sim = BoardSim(proto, _signal(), seed=5, drop_rate=0.05, corrupt_rate=0.03, speed=0)
    start = {"cyton": cyton.start_command(), "bitalino": bitalino.start_command(fs_hz=1000),
             "open": openframe.HostEncoder().start()}[proto]
    sim.host_bytes(start, 0.0)
    data = b"".join(sim.due_bytes(0.0) for _ in range(60))
    t = sim.tally
    assert t.frames_dropped > 0 and t.frames_corrupted > 0
    # dropped frames never reach the wire; the decoder sees every other frame
    dec = {"cyton": cyton.Decoder(), "bitalino": bitalino.Decoder(),
           "open": openframe.Decoder()}[proto]
    emg = [p for p in dec.feed(data) if p.stream == "emg"]
    dropped = {first for _, s, first, _ in t.dropped if s == "emg"}
    assert len(dropped) == t.samples_dropped["emg"] // sim.frame_samples
    spf = sim.frame_samples
    if proto == "open":                                   # CRC16: every bit flip is caught
        corrupted = {first for _, s, first, _ in t.corrupted if s == "emg"}
        seen = {p.counter for p in emg}
        assert not seen & dropped and not seen & corrupted
        assert dec.stats.frames_bad >= len(corrupted) // 2
    assert sim.tally.samples_sent["emg"] + t.samples_dropped["emg"] == sim.signal_index
    assert min(dropped) >= PROTECT_FRAMES * spf           # the first frames are spared
    # the same seed gives the same losses, byte for byte
    again = BoardSim(proto, _signal(), seed=5, drop_rate=0.05, corrupt_rate=0.03, speed=0)
    again.host_bytes(start, 0.0)
    assert b"".join(again.due_bytes(0.0) for _ in range(60)) == data


def test_a_host_that_does_not_read_overflows_the_board():
    sim = BoardSim("cyton", _signal(), speed=1.0)
    sim.host_bytes(cyton.start_command(), 0.0)
    sim.overflow(2.0)
    assert sim.tally.frames_overflow == 500 and sim.signal_index == 500


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError):
        BoardSim("ganglion", _signal())
    with pytest.raises(ConfigError):
        BoardSim("cyton", _signal(), drop_rate=1.5)
    with pytest.raises(ConfigError):
        BoardSim("cyton", _signal(), speed=-1)


def test_recording_signal_plays_an_edf_by_index(tmp_path):
    from crampwatch.firmware_bridge.edf import write_edf

    night = SyntheticNight(NightSpec(hours=0.005, seed=4, emg_fs_hz=500.0, acc_fs_hz=50.0))
    path = str(tmp_path / "n.edf")
    write_edf(path, night)
    sig = RecordingSignal(path)
    assert (sig.emg_fs_hz, sig.acc_fs_hz) == (500.0, 50.0)
    a = np.concatenate([sig.render_emg(0, 700), sig.render_emg(700, 1300)])
    truth = night.render_emg(0, 2000)
    assert np.abs(a - truth).max() < 5000 * 2 / 65535 + 1e-3   # EDF's 16-bit resolution
    acc = sig.render_acc(0, 100)
    assert np.abs(acc - night.render_acc(0, 100)).max() < 8 / 65535 + 1e-4
    sim = BoardSim("open", RecordingSignal(path), speed=0)      # forward-only: a new one
    host, dec = openframe.HostEncoder(), openframe.Decoder()
    dec.feed(sim.host_bytes(host.info_request(), 0.0))       # the scaling travels in INFO
    sim.host_bytes(host.start(), 0.0)
    emg = [p for p in dec.feed(sim.due_bytes(0.0)) if p.stream == "emg"]
    assert emg[0].samples[:, 0] == pytest.approx(truth[:20], abs=0.25)


def _serve_in_thread(target, *args):
    where, stop = [], {}
    ready = threading.Event()

    def announce(w):
        where.append(w)
        ready.set()

    th = threading.Thread(target=target, args=(*args, announce), kwargs={"stop_flag": stop},
                          daemon=True)
    th.start()
    assert ready.wait(10.0)
    return where[0], stop, th


def test_serve_tcp_streams_to_a_client_and_stops_when_told():
    sim = BoardSim("open", _signal(emg_fs=500.0, acc_fs=50.0), speed=0)
    where, stop, th = _serve_in_thread(serve_tcp, sim, 0)
    host, port = where.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(openframe.HostEncoder().start())
        dec = openframe.Decoder()
        emg = []
        while len(emg) < 10:
            emg += [p for p in dec.feed(conn.recv(65536)) if p.stream == "emg"]
    stop["stop"] = True
    th.join(10.0)
    assert not th.is_alive()
    assert emg[0].counter == 0 and sim.tally.frames_sent >= 10


def test_serve_pty_puts_the_slave_in_raw_mode():
    import os
    import termios

    sim = BoardSim("cyton", _signal(), speed=0)
    path, stop, th = _serve_in_thread(serve_pty, sim)
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        lflag = termios.tcgetattr(fd)[3]
        assert not lflag & (termios.ECHO | termios.ICANON)     # no echo of our frames
        os.write(fd, cyton.reset_command())
        buf = b""
        while not buf.endswith(b"$$$"):
            buf += os.read(fd, 4096)
    finally:
        os.close(fd)
        stop["stop"] = True
        th.join(10.0)
    assert not th.is_alive()
