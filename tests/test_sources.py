"""One conformance test run against every kind of source, plus URL handling.

Like mne's ``_test_raw_reader``: whatever brings samples in — the simulated
board, a recording, a board simulator behind a pty or a TCP socket, a BLE
board (fake radio) — yields the same things: EMG blocks in microvolts and
accelerometer blocks in g with increasing ``first_index`` at the announced
rate, and typed events.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ble_fake import ADDRESS, find_device, load_recording, make_client_class
from boardsim_helpers import BoardSimProcess, collect_until

from crampwatch.errors import InputFileError, SourceError
from crampwatch.firmware_bridge.sources import open_source, parse_url
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent

EVENT_KINDS = {"connected", "disconnected", "gap", "crc_error", "corrupt_frame", "status", "info",
               "warning"}
KINDS = ["sim", "file", "serial-pty", "socket", "ble"]


@pytest.fixture(scope="module")
def board_sims():
    """The two simulator processes, started together (their start-up overlaps)."""
    sims = {"serial-pty": BoardSimProcess("--protocol", "cyton", "--pty", "--speed", "20",
                                          "--hours", "0.01", "--seed", "3"),
            "socket": BoardSimProcess("--protocol", "bitalino", "--tcp", "0", "--speed", "10",
                                      "--hours", "0.01", "--seed", "4")}
    yield sims
    for s in sims.values():
        s.__exit__(None, None, None)


@pytest.fixture(scope="module")
def small_edf(tmp_path_factory):
    from crampwatch.firmware_bridge.edf import write_edf
    from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight

    path = tmp_path_factory.mktemp("edf") / "night.edf"
    write_edf(str(path), SyntheticNight(NightSpec(hours=0.005, seed=9, emg_fs_hz=500.0,
                                                  acc_fs_hz=50.0)))
    return str(path)


@pytest.fixture
def source_url(request, board_sims, small_edf):
    """(url, open options, expected emg fs) for each kind of source."""
    kind = request.param
    if kind == "sim":
        return "sim://?seed=1&hours=0.002&speed=max&emg_fs=500&acc_fs=50", {}, 500.0
    if kind == "file":
        return f"file://{small_edf}?speed=max&block_s=2", {}, 500.0
    if kind == "serial-pty":
        return f"serial://{board_sims[kind].where}?board=cyton", {}, 250.0
    if kind == "socket":
        where = board_sims[kind].where.replace("tcp://", "socket://")
        return f"{where}?board=bitalino&rate=1000", {}, 1000.0
    client = make_client_class(load_recording(), speed=8.0)
    return f"ble://{ADDRESS}?board=open", dict(client_class=client, find_device=find_device), \
        1000.0


@pytest.mark.parametrize("source_url", KINDS, indirect=True)
def test_every_source_conforms(source_url):
    url, options, fs_hz = source_url
    with open_source(url, **options) as src:
        got = collect_until(src, lambda g: g.n("emg") >= 2 * fs_hz and g.n("acc") > 0,
                            timeout_s=30)
        info = dict(src.info)
        assert repr(src).startswith("<") and url in repr(src)
    assert src.finished                                   # closed: nothing more comes
    assert src.read(timeout_s=0.1) == []

    # the first thing is the link coming up
    assert isinstance(got.order[0], SourceEvent) and got.order[0].kind == "connected"
    for item in got.order:
        assert isinstance(item, (SampleBlock, SourceEvent))
        if isinstance(item, SourceEvent):
            assert item.kind in EVENT_KINDS
            assert isinstance(item.host_time_s, float) and isinstance(item.detail, dict)
            if item.kind == "gap":
                assert item.stream in info and item.n_samples > 0 and item.first_index >= 0

    assert info["emg"].unit == "uV" and info["emg"].fs_hz == fs_hz
    assert info["acc"].unit == "g" and len(info["acc"].channels) == 3
    for stream in ("emg", "acc"):
        blocks = got.blocks[stream]
        assert blocks, f"no {stream} blocks"
        expect = blocks[0].first_index
        gaps = {e.first_index: e.n_samples for e in got.kinds("gap", stream)}
        for b in blocks:
            assert b.fs_hz == info[stream].fs_hz
            assert b.data.ndim == 2 and b.data.shape[1] == len(info[stream].channels)
            assert np.issubdtype(b.data.dtype, np.floating) and np.isfinite(b.data).all()
            expect += gaps.get(expect, 0)                # a reported gap, never filled
            assert b.first_index == expect, "blocks must continue where the last ended"
            expect = b.end_index
            assert b.host_time_s is not None
        t = np.array([b.host_time_s for b in blocks])
        if url.startswith(("sim:", "file:")):
            # the recording's / simulation's own clock: start + index / fs, exactly
            start = t[0] - blocks[0].first_index / info[stream].fs_hz
            idx = np.array([b.first_index for b in blocks])
            np.testing.assert_allclose(t, start + idx / info[stream].fs_hz, atol=1e-6)
        else:
            # live: the device counter mapped onto this host's clock (UTC seconds);
            # the simulators run faster than real time, so only check it is now
            assert np.all(np.abs(t - time.time()) < 600)
    emg = np.concatenate([b.data[:, 0] for b in got.blocks["emg"]])
    acc = np.concatenate([b.data[:, :3] for b in got.blocks["acc"]])
    # microvolts, not volts or ADC counts; g, not m/s^2: gravity is about 1
    assert 0.5 < np.std(emg) < 5000
    assert 0.5 < np.median(np.linalg.norm(acc, axis=1)) < 1.5


def test_sim_source_is_paced_by_speed_and_finite():
    # an hour of nothing but blocks at speed=max ends, and says so
    with open_source("sim://?seed=2&hours=0.001&speed=max") as src:
        items = list(src.iter())
        assert src.finished
    emg = [x for x in items if isinstance(x, SampleBlock) and x.stream == "emg"]
    assert sum(b.n_samples for b in emg) == round(0.001 * 3600 * 1000)


def test_file_source_replays_the_file_exactly(small_edf):
    from crampwatch.firmware_bridge.readers import open_recording

    with open_source(f"file://{small_edf}?speed=max") as src:
        items = list(src.iter())
    with open_recording(small_edf) as rec:
        direct = [x for x in rec.blocks(block_s=1.0) if isinstance(x, SampleBlock)]
    got = np.concatenate([x.data for x in items if isinstance(x, SampleBlock)
                          and x.stream == "emg"])
    ref = np.concatenate([x.data for x in direct if x.stream == "emg"])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("url, message", [
    ("usb:///dev/ttyUSB0", "unknown scheme"),
    ("/dev/ttyUSB0", "not a source URL"),
    ("serial:///dev/ttyUSB0", "add ?board="),
    ("serial:///dev/ttyUSB0?board=ganglion", "unknown board 'ganglion'"),
    ("serial:///dev/ttyUSB0?board=cyton&bogus=1", "unknown parameter(s) bogus"),
    ("socket://localhost?board=open", "expected socket://HOST:PORT"),
    ("sim://?speed=fast", "bad value 'fast' for parameter 'speed'"),
    ("sim://?hours=-1", "hours must be positive"),
    ("serial:///dev/ttyUSB0?board=bitalino&rate=500", "rate must be one of"),
    ("serial:///dev/ttyUSB0?board=open&batch_s=2", "batch_s must be between 0 and 0.5 s"),
    ("socket://localhost:7000?board=open&batch_s=nan", "batch_s must be between 0 and 0.5 s"),
    ("serial:///dev/ttyUSB0?board=open&batch_s=soon", "bad value 'soon' for parameter 'batch_s'"),
])
def test_bad_urls_are_one_line_source_errors(url, message):
    with pytest.raises(SourceError) as err:
        open_source(url)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_file_is_an_input_file_error(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        open_source(f"file://{tmp_path}/nope.edf")


def test_missing_serial_device_is_reported_on_read():
    with open_source("serial:///dev/ttyNOPE0?board=cyton") as src:
        with pytest.raises(SourceError, match="no such device"):
            src.read(timeout_s=10.0)


def test_url_parsing():
    u = parse_url("ble://C0:FF:EE:00:00:01?board=open&stall_s=2")
    assert (u.scheme, u.target, u.params) == ("ble", "C0:FF:EE:00:00:01",
                                              {"board": "open", "stall_s": "2"})
    assert parse_url("file:///data/a%20b.edf").target == "/data/a b.edf"
    assert u.get("stall_s", type=float) == 2.0
    with pytest.raises(SourceError, match="given twice"):
        parse_url("sim://?seed=1&seed=2")


# -- batches: the live source reads, decodes and assembles tens of ms at a time ----------


def _glitchy_open_packets(seed: int, n_frames: int = 400) -> list:
    """Open-frame EMG packets as a merging decoder gives them, read by read: runs of
    frames, with lost frames, corrupt counters (valid CRC), a device restart and a
    reconnect; as ``[(arrival_s, [packets]), ...]`` plus the reconnect positions."""
    import random

    from crampwatch.firmware_bridge.protocols import openframe

    rng = random.Random(seed)
    enc = openframe.Encoder(openframe.Info(emg_uv_per_count=0.5))
    reads, relinks = [], set()
    index, t = 0, 100.0
    k = 0
    while k < n_frames:
        wire = b""
        for _ in range(rng.choice([1, 1, 2, 5, 6])):
            counter = index
            r = rng.random()
            if r < 0.04:
                counter = index + 10**8            # a firmware glitch: one bad counter
            elif r < 0.08:
                index += 20 * rng.randint(1, 4)    # frames lost on the radio
                counter = index
            elif r < 0.085:
                index = counter = rng.randint(0, 1000)  # the device restarted
            wire += enc.encode_emg(counter, 0, np.full((20, 2), float(k % 7)))
            index += 20
            k += 1
        t += len(wire) and 0.02 * rng.randint(1, 6)
        reads.append((t, openframe.Decoder(merge=True).feed(wire)))
        if rng.random() < 0.01:
            relinks.add(len(reads))
    return reads, relinks


def _assemble(reads, relinks, fast: bool) -> list:
    from crampwatch.firmware_bridge.sources._assembly import StreamAssembler

    asm = StreamAssembler("emg", 1000.0, wall_offset_s=0.0)
    if not fast:
        asm._follows = lambda packets: False
    out = []
    for k, (t, packets) in enumerate(reads):
        if k in relinks:
            asm.relinked()
        for item in asm.feed(packets, t):
            if isinstance(item, SampleBlock):
                out.append(("block", item.first_index, item.data.tolist(),
                            round(item.host_time_s, 9)))
            else:
                out.append((item.kind, item.first_index, item.n_samples,
                            repr(sorted(item.detail.items()))))
    return out + [("totals", asm.samples, asm.gap_samples, asm.frames_implausible)]


@pytest.mark.parametrize("seed", range(6))
def test_the_assemblers_fast_path_gives_what_the_full_screen_gives(seed):
    reads, relinks = _glitchy_open_packets(seed)
    full = _assemble(reads, relinks, fast=False)
    assert _assemble(reads, relinks, fast=True) == full
    kinds = {x[0] for x in full}
    assert {"block", "gap", "corrupt_frame"} <= kinds      # the glitches were there to see


def test_a_live_source_reads_in_batches_on_a_real_pty():
    """A board writing one open frame every 5 ms to a pty is read about every
    ``batch_s`` (0.1 s by default), not frame by frame, and loses nothing."""
    import os
    import threading
    import tty

    from crampwatch.firmware_bridge.protocols import openframe

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    enc = openframe.Encoder(openframe.Info(emg_fs_hz=1000.0, emg_uv_per_count=1.0))
    stop = threading.Event()
    n_sent = []

    def board():                      # answers the handshake, then streams until stopped
        parser = openframe.CommandParser()
        streaming, k = False, 0
        while not stop.is_set():
            try:
                cmds = parser.feed(os.read(master, 4096)) if _readable(master) else []
            except OSError:
                return
            for c in cmds:
                if c.name == "info":
                    os.write(master, enc.encode_info(0))
                streaming = streaming or c.name == "start"
            if streaming:
                os.write(master, enc.encode_emg(5 * k, 0, np.full((5, 2), float(k % 50))))
                k += 1
                n_sent[:] = [k]
            time.sleep(0.005)

    thread = threading.Thread(target=board, daemon=True)
    thread.start()
    feeds = []
    try:
        with open_source(f"serial://{path}?board=open", start=False) as src:
            new_decoder = src.session.new_decoder

            def counting_decoder():
                dec = new_decoder()
                feed = dec.feed
                dec.feed = lambda data: feeds.append(len(data)) or feed(data)
                return dec

            src.session.new_decoder = counting_decoder
            src.start()
            got = collect_until(src, lambda g: g.n("emg") >= 1000)
            t_stream = time.monotonic()
            got = collect_until(src, lambda g: g.n("emg") >= 2500, into=got)
            elapsed = time.monotonic() - t_stream
            stats = dict(src.stats)
    finally:
        stop.set()
        thread.join(5)
        os.close(master)
        os.close(slave)
    assert got.gap_samples("emg") == 0 and stats["frames_bad"] == 0
    idx, val = got.data("emg")
    assert np.array_equal(idx, np.arange(idx.size))
    assert np.array_equal(val[:, 0], np.repeat(np.arange(idx.size // 5) % 50, 5))
    # one read per frame would be a read every 5 ms; batches are 0.1 s apart (fewer
    # still on a busy host): 1500 samples took at least 0.3 s, so >= 300 reads if
    # frame by frame, at most elapsed / 0.1 + the handshake's reads in batches
    assert elapsed >= 0.3
    assert len(feeds) <= elapsed / 0.1 + 20, (len(feeds), elapsed)
    assert np.mean(feeds[-5:]) > 3 * len(enc.encode_emg(0, 0, np.zeros((5, 2))))


def _readable(fd) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def test_batching_never_throttles_a_fast_stream_on_a_pty():
    """A tty hands over at most 4 KiB per read: paced reads alone would take 40 KB/s.
    The board-sim streams the open frame at 2 kHz and 50x real time (about 0.5 MB/s)
    from its own process; the source keeps up: the board's 1 MiB buffer never
    overflows and every sample arrives, none missing."""
    with BoardSimProcess("--protocol", "open", "--pty", "--speed", "50", "--hours", "0.05",
                         "--seed", "5", "--emg-fs", "2000", "--acc-fs", "200") as sim:
        with open_source(f"serial://{sim.where}?board=open") as src:
            got = collect_until(src, lambda g: g.n("emg") >= 2000 * 50 * 4, timeout_s=60.0)
            assert sim.terminate() == 0
    assert sim.tally["frames_overflow"] == 0, sim.tally
    assert got.gap_samples("emg") == 0 and got.gap_samples("acc") == 0
    assert not got.kinds("disconnected")
