"""End to end through real ptys and sockets: ``board-sim`` process -> source -> samples.

The simulator is a real subprocess speaking each board's protocol byte-exactly;
the host side is the real serial/socket source.  Values are compared by
sample index with the synthetic night rendered here from the same seed;
gaps are compared with the simulator's own tally of what it dropped.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from boardsim_helpers import BoardSimProcess, collect_until

from crampwatch.firmware_bridge.protocols import bitalino, cyton
from crampwatch.firmware_bridge.sources import open_source
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs ptys")

HOURS = 0.02
SEED = 7

# per protocol: the rates the simulator renders at, one quantisation step per
# stream (physical units per count), bytes per frame, samples to collect
_BIT_EMG_STEP = bitalino.VCC_V / bitalino.EMG_GAIN * 1e6 / 1024
_BIT_ACC_STEP = 2.0 / (bitalino.ACC_CAL_10BIT[1] - bitalino.ACC_CAL_10BIT[0])
PROTOCOLS = {
    "cyton": dict(emg_fs=250.0, acc_fs=25.0, emg_step=cyton.uv_per_count(24),
                  acc_step=cyton.ACC_G_PER_COUNT, n=2500, speed="20"),
    "bitalino": dict(emg_fs=1000.0, acc_fs=1000.0, emg_step=_BIT_EMG_STEP,
                     acc_step=_BIT_ACC_STEP, n=6000, speed="20"),
    "open": dict(emg_fs=1000.0, acc_fs=100.0, emg_step=0.25, acc_step=1 / 4096,
                 n=6000, speed="20"),
}
# the ranges the boards can represent (values beyond clip on the board)
_RANGE = {"bitalino": (-1600.0, 1600.0), "cyton": (-1.8e5, 1.8e5), "open": (-8000.0, 8000.0)}


def _night(proto: str, seed: int = SEED) -> SyntheticNight:
    p = PROTOCOLS[proto]
    return SyntheticNight(NightSpec(hours=HOURS, seed=seed, emg_fs_hz=p["emg_fs"],
                                    acc_fs_hz=p["acc_fs"]))


def _excluded(tally: dict, stream: str) -> set:
    out = set()
    for _, s, first, n in tally.get("corrupted", []):
        if s == stream:
            out.update(range(first, first + n))
    return out


def _check_values(got, proto: str, tally: dict, seed: int = SEED) -> int:
    """Every received sample equals the source signal within one quantisation step."""
    p = PROTOCOLS[proto]
    night = _night(proto, seed)
    checked = 0
    for stream, step in (("emg", p["emg_step"]), ("acc", p["acc_step"])):
        idx, val = got.data(stream)
        assert np.all(np.diff(idx) > 0), f"{stream}: indices not increasing"
        truth = night.render_emg(0, int(idx[-1]) + 1)[idx] if stream == "emg" else \
            night.render_acc(0, int(idx[-1]) + 1)[idx]
        recv = val[:, 0] if stream == "emg" else val[:, :3]
        ok = np.ones(idx.size, bool)
        bad = _excluded(tally, stream)
        if bad:
            ok &= ~np.isin(idx, list(bad))
        if stream == "emg":
            lo, hi = _RANGE[proto]
            ok &= (truth > lo) & (truth < hi)
        err = np.abs(recv[ok] - truth[ok])
        assert err.max() <= step * 1.0001, (
            f"{proto} {stream}: max error {err.max():.4g} > one step {step:.4g} "
            f"at index {idx[ok][np.argmax(err.reshape(err.shape[0], -1).max(axis=-1))]}")
        checked += int(ok.sum())
    return checked


def _sim_args(proto: str, seed: int, *extra: str) -> tuple:
    return ("--protocol", proto, "--pty", "--speed", PROTOCOLS[proto]["speed"], "--hours",
            str(HOURS), "--seed", str(seed), *extra)


_SLOW_ARGS = ("--protocol", "open", "--pty", "--speed", "1", "--hours", str(HOURS),
              "--seed", str(SEED), "--emg-fs", "500", "--acc-fs", "50")


@pytest.fixture(scope="module")
def sims():
    """Every pty simulator this module needs, started at once: most of their
    start-up is imports, which then overlap."""
    procs = {}
    try:
        for proto in PROTOCOLS:
            procs["drop", proto] = BoardSimProcess(*_sim_args(proto, SEED, "--drop", "0.03"))
            procs["corrupt", proto] = BoardSimProcess(*_sim_args(proto, SEED + 1,
                                                                 "--corrupt", "0.02"))
        procs["stall"] = BoardSimProcess(*_SLOW_ARGS)
        procs["cli"] = BoardSimProcess("--protocol", "cyton", "--pty", "--speed", "50",
                                       "--hours", str(HOURS), full_cli=True)
        yield procs
    finally:
        for proc in procs.values():
            proc.__exit__(None, None, None)


def _expected_dropped(tally: dict, stream: str, end_index: int) -> int:
    """Samples the simulator dropped in session 1 before ``end_index`` (what a host can see)."""
    return sum(n for sess, s, first, n in tally["dropped"]
               if sess == 1 and s == stream and first + n <= end_index)


def _frame_len(proto: str) -> int:
    return bitalino.frame_length(4) if proto == "bitalino" else cyton.PACKET_LEN


@pytest.mark.parametrize("proto", ["cyton", "bitalino", "open"])
def test_pty_values_and_drop_accounting(proto, sims):
    """Real pty, real process, 3 % of frames dropped: values exact, every gap accounted."""
    p = PROTOCOLS[proto]
    sim = sims["drop", proto]
    assert sim.where.startswith("/dev/")
    with open_source(f"serial://{sim.where}?board={proto}") as src:
        got = collect_until(src, lambda g: g.n("emg") >= p["n"] and g.n("acc") > 0)
        assert not got.kinds("disconnected"), got.kinds("disconnected")
        # stop the board first and read to the end of the link, so that the
        # source's counters and what was read cover the same bytes
        assert sim.terminate() == 0
        collect_until(src, lambda g: g.kinds("disconnected"), into=got)
        stats = dict(src.stats)
        info = dict(src.info)
    tally = sim.tally
    assert info["emg"].fs_hz == p["emg_fs"] and info["emg"].unit == "uV"
    assert info["acc"].unit == "g"
    checked = _check_values(got, proto, tally)
    print(f"\n{proto}: {checked} samples within one step; ", end="")
    for stream in ("emg", "acc"):
        end = got.end_index(stream)
        gaps = got.gap_samples(stream)
        # every index below the end is either received or reported missing
        assert got.n(stream) + gaps == end
        expected = _expected_dropped(tally, stream, end)
        skipped = stats["bytes_skipped"] // _frame_len(proto) if proto == "bitalino" else 0
        if proto != "bitalino":
            assert stats["bytes_skipped"] == 0
        # BITalino's decoder relocks on 4 frames in sequence, so intact frames next to
        # a drop may be skipped: they are counted (bytes_skipped) and are gaps too
        per_frame = 1
        assert gaps == expected + skipped * per_frame, (stream, gaps, expected, skipped)
        print(f"{stream} gaps {gaps} = dropped {expected} + skipped {skipped}; ", end="")
        assert all(e.detail.get("measured_from") == "counter" for e in got.kinds("gap", stream))
    assert tally["frames_dropped"] > 0


@pytest.mark.parametrize("proto", ["cyton", "bitalino", "open"])
def test_pty_corruption_is_counted_never_fatal(proto, sims):
    """Bit flips in 2 % of frames: bad frames are counted and skipped, the link
    stays up.  The Cyton format has no checksum, so a flip in a sample value
    passes unseen there (and a flip in its counter looks like a gap): only
    BITalino (CRC4) and the open frame (CRC16) promise clean data."""
    p = PROTOCOLS[proto]
    sim = sims["corrupt", proto]
    with open_source(f"serial://{sim.where}?board={proto}") as src:
        got = collect_until(src, lambda g: g.n("emg") >= p["n"] // 2)
        assert sim.terminate() == 0
        collect_until(src, lambda g: g.kinds("disconnected"), into=got)
        stats = dict(src.stats)
    tally = sim.tally
    assert tally["frames_corrupted"] > 0
    assert sum(e.detail["frames_bad"] for e in got.kinds("crc_error")) == stats["frames_bad"]
    assert len(got.kinds("connected")) == 1      # bad bytes never broke the link
    if proto in ("bitalino", "open"):
        assert stats["frames_bad"] > 0
        # CRC-checked frames: corrupted ones are lost, never passed on; what was
        # received matches the signal and every index is accounted for
        for stream in ("emg", "acc"):
            assert got.n(stream) + got.gap_samples(stream) == got.end_index(stream)
        _check_values(got, proto, {"corrupted": []}, seed=SEED + 1)


def test_tcp_source_reconnects_after_board_sim_is_killed_and_restarted():
    """SIGKILL the simulator mid-stream, start a new one on the same port: the
    socket source reconnects by itself and reports the gap (the new board's
    counter restarted, so the gap is measured from host time and says so)."""
    fs = 500.0
    args = tuple(a for a in _SLOW_ARGS if a != "--pty")
    with BoardSimProcess(*args, "--tcp", "0") as sim1:
        port = int(sim1.where.rsplit(":", 1)[1])
        src = open_source(f"socket://127.0.0.1:{port}?board=open&stall_s=3")
        try:
            got = collect_until(src, lambda g: g.n("emg") >= 400)
            sim1.kill()
            t_killed = time.monotonic()
            collect_until(src, lambda g: g.kinds("disconnected"), into=got)
            with BoardSimProcess(*args, "--tcp", str(port)) as sim2:
                assert sim2.where.endswith(f":{port}")          # listening again
                downtime_s = time.monotonic() - t_killed
                collect_until(src, lambda g: g.kinds("gap", "emg")
                              and g.end_index("emg") > g.kinds("gap", "emg")[0].first_index,
                              into=got)
                resumed_s = time.monotonic() - t_killed       # an upper bound of the gap
        finally:
            src.close()
    connected = got.kinds("connected")
    assert [c.detail["reconnect"] for c in connected] == [False, True]
    assert "closed" in got.kinds("disconnected")[0].detail["reason"]
    gap = got.kinds("gap", "emg")[0]
    assert gap.detail == {"measured_from": "host_time", "device_reset": True}
    # the gap covers the dead time: at least the time no board existed, at most
    # the time until samples flowed again
    assert 0.9 * downtime_s * fs < gap.n_samples < (resumed_s + 0.5) * fs
    # continuity: the stream resumes exactly after the gap
    after = [b for b in got.blocks["emg"] if b.first_index >= gap.first_index]
    assert after[0].first_index == gap.first_index + gap.n_samples
    assert got.n("emg") + got.gap_samples("emg") == got.end_index("emg")
    print(f"\nkilled for {downtime_s:.2f} s: gap of {gap.n_samples} samples "
          f"({gap.n_samples / fs:.2f} s) measured from host time")


def test_stalled_stream_is_a_disconnect_and_the_counter_gives_the_gap(sims):
    """Port open, no bytes (the board process is stopped): after ``stall_s`` the
    source reconnects; the open board's counter ran on, so the gap is exact."""
    fs = 500.0
    sim = sims["stall"]
    with open_source(f"serial://{sim.where}?board=open&stall_s=0.5") as src:
        got = collect_until(src, lambda g: g.n("emg") >= 300)
        os.kill(sim.proc.pid, signal.SIGSTOP)
        try:
            collect_until(src, lambda g: g.kinds("disconnected"), timeout_s=10, into=got)
        finally:
            os.kill(sim.proc.pid, signal.SIGCONT)
        collect_until(src, lambda g: len(g.kinds("connected")) == 2 and g.kinds("gap", "emg")
                      and g.end_index("emg") > g.kinds("gap", "emg")[0].first_index,
                      into=got)
    assert sim.terminate() == 0
    assert "stalled" in got.kinds("disconnected")[0].detail["reason"]
    gap = got.kinds("gap", "emg")[0]
    assert gap.detail == {"measured_from": "counter"}
    assert gap.n_samples >= 0.5 * fs                 # at least the stall time
    _check_values_open_500(got)
    assert got.n("emg") + got.gap_samples("emg") == got.end_index("emg")


def _check_values_open_500(got):
    night = SyntheticNight(NightSpec(hours=HOURS, seed=SEED, emg_fs_hz=500.0, acc_fs_hz=50.0))
    idx, val = got.data("emg")
    truth = night.render_emg(0, int(idx[-1]) + 1)[idx]
    assert np.abs(val[:, 0] - truth).max() <= 0.25 * 1.0001


def test_board_sim_cli_first_line_and_clean_sigterm(sims):
    """The full command path: ``crampwatch board-sim`` prints the pty path
    first, serves a host, and exits 0 on SIGTERM with its tally on stderr."""
    sim = sims["cli"]
    assert os.path.exists(sim.where)
    with open_source(f"serial://{sim.where}?board=cyton") as src:
        got = collect_until(src, lambda g: g.n("emg") >= 250)
    assert not got.kinds("disconnected"), got.kinds("disconnected")
    assert sim.terminate() == 0
    assert "board-sim cyton: frames sent" in sim.stderr()
    assert sim.tally["frames_sent"] >= 250 and sim.tally["sessions"] == 1
