"""The crash-safe capture recording: round trip, permissions, resume, disk errors.

Real files, real descriptors, a real small filesystem where the sandbox allows
mounting one.  Crash, truncation and corruption tests are in
test_recording_crash.py.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import subprocess
import threading

import numpy as np
import pytest

from crampwatch.errors import ChannelNotFoundError, InputFileError
from crampwatch.firmware_bridge.readers import open_recording
from crampwatch.firmware_bridge.recording import (
    CaptureWriter,
    RecordingHeader,
    StreamStorage,
    iter_records,
    open_capture,
)
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo

EMG_FS = 1000.0
ACC_FS = 100.0
T0 = 1_750_000_000.0
LOGGER = "crampwatch.firmware_bridge.recording"


def make_header(**kw) -> RecordingHeader:
    args = dict(emg=StreamInfo("emg", EMG_FS, ("gastroc_L", "gastroc_R"), "uV"),
                acc=StreamInfo("acc", ACC_FS, ("acc_x", "acc_y", "acc_z"), "g"),
                board="open", source_url="sim://?seed=1")
    args.update(kw)
    return RecordingHeader(**args)


def emg_block(k: int, seed: int = 0, n: int = 100, n_ch: int = 2) -> np.ndarray:
    rng = np.random.default_rng([seed, k])
    return rng.normal(0.0, 40.0, (n, n_ch)).astype(np.float32)


def acc_block(k: int, seed: int = 0, n: int = 10) -> np.ndarray:
    rng = np.random.default_rng([seed, k, 1])
    return rng.normal(0.0, 1.0, (n, 3)).astype(np.float32)


def read_streams(reader, block_s=10.0):
    """Samples by index per stream, plus the gap events, from ``reader.blocks``."""
    got = {"emg": {}, "acc": {}}
    gaps = []
    keys = []
    for item in reader.blocks(block_s):
        if isinstance(item, SampleBlock):
            assert item.n_samples <= round(block_s * item.fs_hz)
            keys.append(item.first_index / item.fs_hz)
            for i in range(item.n_samples):
                got[item.stream][item.first_index + i] = item.data[i]
        else:
            keys.append(item.first_index / (EMG_FS if item.stream == "emg" else ACC_FS))
            gaps.append(item)
    return got, gaps, keys


def ev_tuple(ev: SourceEvent):
    return (ev.kind, ev.host_time_s, ev.stream, ev.first_index, ev.n_samples, ev.detail)


# ---------------------------------------------------------------------------

def test_round_trip_samples_exact_and_events_identical(tmp_path):
    path = tmp_path / "night.cwrec"
    written = {"emg": {}, "acc": {}}
    events = []
    with CaptureWriter(path, make_header(), fsync_interval_s=0.05) as w:
        e_idx = a_idx = 0
        for k in range(60):
            n = 50 + (k * 37) % 150                  # uneven block sizes
            if k in (17, 41):                        # a link gap on both streams
                evs = [SourceEvent("gap", T0 + k, "emg", e_idx, 333, {"measured_from": "counter"}),
                       SourceEvent("gap", T0 + k, "acc", a_idx, 33, {"measured_from": "counter"})]
                for ev in evs:
                    w.write_event(ev)
                events.extend(evs)
                e_idx += 333
                a_idx += 33
            if k == 30:
                ev = SourceEvent("status", T0 + k, detail={"battery_pct": 87, "rssi_dbm": -61})
                w.write_event(ev)
                events.append(ev)
            data = emg_block(k, n=n)
            w.write_block(SampleBlock("emg", EMG_FS, e_idx, data, T0 + e_idx / EMG_FS))
            for i in range(n):
                written["emg"][e_idx + i] = data[i]
            e_idx += n
            na = n // 10
            adata = acc_block(k, n=na)
            w.write_block(SampleBlock("acc", ACC_FS, a_idx, adata, T0 + a_idx / ACC_FS))
            for i in range(na):
                written["acc"][a_idx + i] = adata[i]
            a_idx += na
            if k % 9 == 0:
                assert w.flush()
    st = w.stats
    assert st.blocks_written == 120 and st.blocks_dropped == 0 and st.write_errors == 0
    assert st.fsyncs >= 2

    with open_capture(path, emg="GASTROC_R") as r:
        assert r.emg.channels == ("gastroc_R",) and r.emg.unit == "uV" and r.emg.fs_hz == EMG_FS
        assert r.acc.channels == ("acc_x", "acc_y", "acc_z") and r.acc.unit == "g"
        assert r.labels == ["gastroc_L", "gastroc_R", "acc_x", "acc_y", "acc_z"]
        assert [ev_tuple(e) for e in r.events()] == [ev_tuple(e) for e in events]
        got, gaps, keys = read_streams(r, block_s=1.0)
        assert r.stats.closed and r.stats.records_bad == 0 and r.stats.truncated_at is None
        assert abs(r.start_time.timestamp() - T0) < 1e-3
        assert r.duration_s == (max(written["emg"]) + 1) / EMG_FS
    assert keys == sorted(keys)                      # interleaved in time order
    for stream in ("emg", "acc"):                    # per stream, in file order
        assert [ev_tuple(g) for g in gaps if g.stream == stream] == \
            [ev_tuple(e) for e in events if e.kind == "gap" and e.stream == stream]
    assert sorted(got["emg"]) == sorted(written["emg"])
    assert sorted(got["acc"]) == sorted(written["acc"])
    for i, row in written["emg"].items():
        assert got["emg"][i].shape == (1,) and got["emg"][i][0] == row[1]   # channel R, exact
    for i, row in written["acc"].items():
        assert np.array_equal(got["acc"][i], row.astype(np.float64))


def test_host_time_of_read_blocks_follows_the_stored_host_times(tmp_path):
    path = tmp_path / "n.cwrec"
    with CaptureWriter(path, make_header(acc=None), fsync_interval_s=0.05) as w:
        for k in range(30):
            step = 0.02 if k >= 12 else 0.0          # a clock-fit correction of 20 ms
            w.write_block(SampleBlock("emg", EMG_FS, k * 100, emg_block(k), T0 + k * 0.1 + step))
    with open_capture(path) as r:
        assert r.acc is None
        blocks = [b for b in r.blocks(0.5) if isinstance(b, SampleBlock)]
    for b in blocks:
        expect = T0 + b.first_index / EMG_FS + (0.02 if b.first_index >= 1200 else 0.0)
        assert b.host_time_s == pytest.approx(expect, abs=0.006)


def test_int16_storage_with_scale_is_exact_for_device_counts(tmp_path):
    path = tmp_path / "bitalino.cwrec"
    step_uv = 3.3e6 / 1024 / 1009        # a 10-bit ADC step after a gain: not a round number
    hdr = make_header(emg=StreamInfo("emg", EMG_FS, ("A1",), "uV"),
                      emg_storage=StreamStorage("int16", scale=step_uv, offset=-512 * step_uv))
    counts = np.arange(-100, 1124).reshape(-1, 1) % 1024
    uv = (counts - 512) * step_uv
    with CaptureWriter(path, hdr) as w:
        w.write_block(SampleBlock("emg", EMG_FS, 0, uv))
    with open_capture(path) as r:
        data = np.concatenate([b.data for b in r.blocks() if isinstance(b, SampleBlock)])
    assert np.allclose(data, uv, rtol=0, atol=1e-9 * step_uv * 1024)
    assert np.array_equal(np.rint((data + 512 * step_uv) / step_uv), counts)
    assert os.path.getsize(path) < uv.size * 2 + 1500          # two bytes a sample


def test_new_file_is_owner_only_and_an_existing_one_is_made_so(tmp_path):
    path = tmp_path / "sub" / "night.cwrec"
    old = os.umask(0)
    try:
        with CaptureWriter(path, make_header()):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    os.chmod(path, 0o644)
    with CaptureWriter(path, make_header(), append=True):
        pass
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_open_recording_dispatches_and_channel_errors_list_labels(tmp_path):
    path = tmp_path / "n.cwrec"
    with CaptureWriter(path, make_header()) as w:
        w.write_block(SampleBlock("emg", EMG_FS, 0, emg_block(0)))
    with open_recording(str(path)) as r:
        assert r.emg.channels == ("gastroc_L",)
        assert r.acc is not None
    with open_recording(str(path), acc="ACC_Z, acc_y,acc_x") as r:
        assert r.acc.channels == ("acc_z", "acc_y", "acc_x")
    with pytest.raises(ChannelNotFoundError) as info:
        open_capture(path, emg="soleus")
    assert info.value.available == ["gastroc_L", "gastroc_R"]
    assert "soleus" in str(info.value) and "gastroc_L" in str(info.value)
    with pytest.raises(ChannelNotFoundError):
        open_capture(path, acc=["acc_x", "acc_y"])


def test_bad_files_raise_input_file_error_with_offset(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_bytes(b"hello, not a recording\n")
    with pytest.raises(InputFileError) as info:
        open_capture(other)
    assert info.value.offset == 0 and str(other) in str(info.value)
    with pytest.raises(InputFileError):
        open_capture(tmp_path / "missing.cwrec")
    good = tmp_path / "n.cwrec"
    with CaptureWriter(good, make_header()):
        pass
    raw = bytearray(good.read_bytes())
    raw[40] ^= 0x55                                 # inside the header record's JSON
    bad = tmp_path / "badheader.cwrec"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputFileError) as info:
        open_capture(bad)
    assert info.value.offset == 17 and "byte offset 17" in str(info.value)
    future = tmp_path / "v9.cwrec"
    future.write_bytes(b"CRAMPWATCH-REC 9\n" + bytes(raw[17:]))
    with pytest.raises(InputFileError, match="version '9'"):
        open_capture(future)


def test_existing_file_is_not_overwritten_without_append(tmp_path):
    path = tmp_path / "n.cwrec"
    with CaptureWriter(path, make_header()) as w:
        w.write_block(SampleBlock("emg", EMG_FS, 0, emg_block(0)))
    before = path.read_bytes()
    with pytest.raises(InputFileError, match="already exists"):
        CaptureWriter(path, make_header())
    assert path.read_bytes() == before


def test_a_second_writer_on_the_same_file_is_refused(tmp_path):
    path = tmp_path / "n.cwrec"
    with CaptureWriter(path, make_header()):
        with pytest.raises(InputFileError, match="another process"):
            CaptureWriter(path, make_header(), append=True)


def test_resume_appends_a_segment_with_the_gap_between(tmp_path):
    path = tmp_path / "night.cwrec"
    with CaptureWriter(path, make_header(), fsync_interval_s=0.05) as w:
        for k in range(20):
            w.write_block(SampleBlock("emg", EMG_FS, k * 100, emg_block(k), T0 + k * 0.1))
            w.write_block(SampleBlock("acc", ACC_FS, k * 10, acc_block(k), T0 + k * 0.1))
    # the daemon restarts 5 s after the last sample ended
    restart_t = T0 + 2.0 + 5.0
    with CaptureWriter(path, make_header(), append=True, fsync_interval_s=0.05) as w:
        assert w.resume_point["emg"].end_index == 2000
        assert w.resume_point["emg"].end_host_time_s == pytest.approx(T0 + 2.0)
        e0 = w.resume_stream("emg", restart_t)
        a0 = w.resume_stream("acc", restart_t)
        assert (e0, a0) == (7000, 700)
        for k in range(10):
            w.write_block(SampleBlock("emg", EMG_FS, e0 + k * 100, emg_block(100 + k),
                                      restart_t + k * 0.1))
            w.write_block(SampleBlock("acc", ACC_FS, a0 + k * 10, acc_block(100 + k),
                                      restart_t + k * 0.1))
    with open_capture(path) as r:
        segs = r.segments
        assert [s.reason for s in segs] == ["start", "resume"]
        assert all(s.closed for s in segs)
        assert segs[0].streams["emg"].end_index == 2000
        assert segs[1].streams["emg"].first_index == 7000
        got, gaps, _ = read_streams(r)
        assert r.duration_s == 8.0
    assert [(g.stream, g.first_index, g.n_samples, g.detail["cause"]) for g in gaps] == \
        [("emg", 2000, 5000, "restart"), ("acc", 200, 500, "restart")]
    assert sorted(got["emg"]) == list(range(2000)) + list(range(7000, 8000))
    assert got["emg"][7000][0] == emg_block(100)[0, 0]
    assert len([rec for rec in iter_records(path) if rec.type == "segment"]) == 1


def test_resume_cuts_off_a_partial_record_left_by_a_crash(tmp_path, caplog):
    path = tmp_path / "night.cwrec"
    with CaptureWriter(path, make_header(acc=None), fsync_interval_s=0.05) as w:
        for k in range(10):
            w.write_block(SampleBlock("emg", EMG_FS, k * 100, emg_block(k), T0 + k * 0.1))
            assert w.flush()
    offsets = [rec.offset for rec in iter_records(path)]
    # power loss: the last sample record and the close record only half made it
    cut = offsets[-2] + 150
    os.truncate(path, cut)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with CaptureWriter(path, make_header(acc=None), append=True) as w:
            assert w.resume_point["emg"].end_index == 900
            w.write_block(SampleBlock("emg", EMG_FS, 2000, emg_block(20)))
    assert any("cut off" in m for m in caplog.messages)
    with open_capture(path) as r:
        assert r.stats.records_bad == 0 and r.stats.truncated_at is None
        assert r.segments[1].discarded_tail_bytes == cut - offsets[-2]
        got, gaps, _ = read_streams(r)
    assert sorted(got["emg"]) == list(range(900)) + list(range(2000, 2100))
    assert [(g.first_index, g.n_samples, g.detail["cause"]) for g in gaps] == \
        [(900, 1100, "missing_in_file")]


def test_resume_with_different_streams_is_refused(tmp_path):
    path = tmp_path / "night.cwrec"
    with CaptureWriter(path, make_header()):
        pass
    before = path.read_bytes()
    other = make_header(emg=StreamInfo("emg", 500.0, ("gastroc_L", "gastroc_R"), "uV"))
    with pytest.raises(InputFileError, match="cannot resume"):
        CaptureWriter(path, other, append=True)
    assert path.read_bytes() == before


# -- disk errors --------------------------------------------------------------

class FlakyDisk:
    """os.write that, while ``full``, behaves like a full disk: it writes part
    of the buffer once, then raises ENOSPC (the kernel's own sequence)."""

    def __init__(self):
        self.full = False
        self._partial_done = False

    def __call__(self, fd, data):
        if not self.full:
            self._partial_done = False
            return os.write(fd, data)
        if not self._partial_done and len(data) > 20:
            self._partial_done = True
            return os.write(fd, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")


def check_accounted(path, handed: dict, stream="emg"):
    """Every handed sample is in the file (exact) or inside a recorded gap."""
    with open_capture(path) as r:
        got, gaps, _ = read_streams(r)
        stats = r.stats
    lost = set()
    for g in gaps:
        if g.stream == stream:
            lost.update(range(g.first_index, g.first_index + g.n_samples))
    for i, row in handed.items():
        if i in got[stream]:
            assert got[stream][i][0] == row[0]
        else:
            assert i in lost, f"sample {i} neither stored nor in a gap"
    return got, gaps, stats


def test_disk_full_injected_at_the_write_call(tmp_path, caplog):
    """ENOSPC injected at os.write (always runs; the tmpfs test needs mount)."""
    disk = FlakyDisk()
    path = tmp_path / "night.cwrec"
    handed = {}
    caplog.set_level(logging.WARNING, logger=LOGGER)
    w = CaptureWriter(path, make_header(acc=None, emg=StreamInfo("emg", EMG_FS, ("g",), "uV")),
                      fsync_interval_s=0.05, retry_interval_s=3600, queue_max_bytes=20_000,
                      _os_write=disk)

    def feed(ks):
        for k in ks:
            d = emg_block(k, n_ch=1)
            w.write_block(SampleBlock("emg", EMG_FS, k * 100, d, T0 + k * 0.1))
            handed.update({k * 100 + i: d[i] for i in range(100)})

    feed(range(0, 10))
    assert w.flush()
    disk.full = True
    feed(range(10, 20))
    assert not w.flush() and not w.flush()
    st = w.stats
    assert not st.recording_ok and "No space left" in st.last_error and str(path) in st.last_error
    feed(range(20, 80))                      # the queue fills up: blocks are dropped, counted
    assert w.stats.blocks_dropped > 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "recording paused" in errors[0].getMessage()
    disk.full = False
    feed(range(80, 90))
    assert w.flush()
    st = w.close()
    assert st.recording_ok and st.blocks_written + st.blocks_dropped == 90
    got, gaps, rstats = check_accounted(path, handed)
    assert rstats.records_bad == 0 and rstats.closed      # the partial write was rolled back
    rec_gaps = [g for g in gaps if g.detail.get("cause") == "recording"]
    assert sum(g.n_samples for g in rec_gaps) == st.samples_dropped > 0
    assert len(got["emg"]) == 9000 - st.samples_dropped
    assert any("resumed" in m for m in caplog.messages)


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({res.stderr.strip()}); "
                    "the ENOSPC path is covered by test_disk_full_injected_at_the_write_call")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_on_a_real_small_filesystem(small_fs, caplog):
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)   # fill it to the brim
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, os.path.getsize(filler) - 8192)   # leave two pages
    caplog.set_level(logging.WARNING, logger=LOGGER)
    path = small_fs / "night.cwrec"
    w = CaptureWriter(path, make_header(acc=None, emg=StreamInfo("emg", EMG_FS, ("g",), "uV")),
                      fsync_interval_s=0.05, retry_interval_s=3600, queue_max_bytes=12_000)
    handed = {}
    for k in range(60):
        d = emg_block(k, n_ch=1)
        w.write_block(SampleBlock("emg", EMG_FS, k * 100, d, T0 + k * 0.1))
        handed.update({k * 100 + i: d[i] for i in range(100)})
        if k % 10 == 9:
            w.flush()
    st = w.stats
    assert not st.recording_ok and "No space left" in st.last_error
    assert st.blocks_dropped > 0
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    filler.unlink()                                   # space returns
    assert w.flush()
    for k in range(60, 70):
        d = emg_block(k, n_ch=1)
        w.write_block(SampleBlock("emg", EMG_FS, k * 100, d, T0 + k * 0.1))
        handed.update({k * 100 + i: d[i] for i in range(100)})
    st = w.close()
    assert st.recording_ok and st.blocks_unwritten == 0
    got, gaps, rstats = check_accounted(path, handed)
    assert rstats.records_bad == 0 and rstats.truncated_at is None and rstats.closed
    assert sum(g.n_samples for g in gaps if g.detail["cause"] == "recording") == st.samples_dropped
    assert 6999 in got["emg"]


def test_unwritable_directory_logs_once_and_recording_starts_when_it_is_fixed(tmp_path, caplog):
    recdir = tmp_path / "recordings"
    recdir.write_text("a file where the recordings directory should be")
    path = recdir / "night.cwrec"
    caplog.set_level(logging.WARNING, logger=LOGGER)
    w = CaptureWriter(path, make_header(acc=None), fsync_interval_s=0.05, retry_interval_s=3600)
    handed = {}
    for k in range(20):
        d = emg_block(k)
        w.write_block(SampleBlock("emg", EMG_FS, k * 100, d))      # accepted, never raises
        handed.update({k * 100 + i: d[i] for i in range(100)})
    assert not w.flush() and not w.flush()
    st = w.stats
    assert not st.recording_ok and str(path) in st.last_error and st.blocks_received == 20
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(path) in errors[0]
    recdir.unlink()                                   # the user fixes the directory
    assert w.flush()
    w.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    got, gaps, rstats = check_accounted(path, handed)
    assert len(got["emg"]) == 2000 and rstats.closed


def test_acquisition_never_waits_on_a_hung_disk(tmp_path):
    """The write call hangs; write_block still returns at once, drops are stored as gaps."""
    entered = threading.Event()
    release = threading.Event()
    armed = threading.Event()

    def hanging_write(fd, data):
        if armed.is_set():
            entered.set()
            release.wait(30)
        return os.write(fd, data)

    path = tmp_path / "night.cwrec"
    w = CaptureWriter(path, make_header(acc=None), fsync_interval_s=0.05,
                      queue_max_bytes=30_000, _os_write=hanging_write)
    armed.set()
    handed = {}
    d0 = emg_block(0)
    w.write_block(SampleBlock("emg", EMG_FS, 0, d0))
    handed.update({i: d0[i] for i in range(100)})
    assert entered.wait(10), "the writer thread never reached the write call"
    done = threading.Event()

    def produce():
        for k in range(1, 200):
            d = emg_block(k)
            w.write_block(SampleBlock("emg", EMG_FS, k * 100, d))
            handed.update({k * 100 + i: d[i] for i in range(100)})
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    finished = done.wait(20)
    armed.clear()
    release.set()
    t.join()
    assert finished, "write_block blocked while the disk hung"
    st = w.close()
    assert st.blocks_dropped > 0 and st.blocks_written + st.blocks_dropped == 200
    got, gaps, _ = check_accounted(path, handed)
    assert sum(g.n_samples for g in gaps) == st.samples_dropped


def test_closed_writer_refuses_more_data(tmp_path):
    w = CaptureWriter(tmp_path / "n.cwrec", make_header())
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write_block(SampleBlock("emg", EMG_FS, 0, emg_block(0)))
    with CaptureWriter(tmp_path / "m.cwrec", make_header(acc=None)) as w2:
        with pytest.raises(ValueError, match="not in this recording"):
            w2.write_block(SampleBlock("acc", ACC_FS, 0, acc_block(0)))
        with pytest.raises(ValueError, match="channel"):
            w2.write_block(SampleBlock("emg", EMG_FS, 0, np.zeros((10, 3))))
