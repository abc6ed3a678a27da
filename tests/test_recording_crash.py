"""Crash safety of the capture recording.

- a real writer process killed with SIGKILL at a random moment: the file reads
  up to its last whole record, byte-exact, and holds everything handed to the
  writer up to about one fsync interval before the kill;
- the killed night resumed in append mode;
- a file cut at every byte offset of its tail: never raises, returns a prefix;
- flipped bytes in the middle: the bad record is counted and skipped, the rest kept;
- property tests (hypothesis): any damage after the header never raises and
  returns exactly the undamaged records.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crampwatch.errors import InputFileError
from crampwatch.firmware_bridge.recording import (
    CaptureWriter,
    RecordingHeader,
    iter_records,
    open_capture,
)
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo

LOGGER = "crampwatch.firmware_bridge.recording"
EMG_FS, ACC_FS = 1000.0, 100.0
FSYNC_S = 0.2
# a block handed to the writer this long before the kill must be in the file:
# the fsync interval plus generous scheduling slack for a loaded CI machine
MUST_HAVE_S = FSYNC_S + 1.0

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from crampwatch.firmware_bridge.recording import CaptureWriter, RecordingHeader
    from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo

    path, seed = sys.argv[1], int(sys.argv[2])
    hdr = RecordingHeader(emg=StreamInfo("emg", 1000.0, ("gastroc",), "uV"),
                          acc=StreamInfo("acc", 100.0, ("x", "y", "z"), "g"),
                          board="sim", source_url="sim://")
    w = CaptureWriter(path, hdr, fsync_interval_s=float(sys.argv[3]))
    print("ready", flush=True)
    t0 = 1.75e9
    k = 0
    while True:
        if k % 40 == 39:                   # a lost radio packet every 4 s of signal
            w.write_event(SourceEvent("gap", t0 + k * 0.1, "emg", k * 100, 100))
            w.write_event(SourceEvent("gap", t0 + k * 0.1, "acc", k * 10, 10))
        else:
            rng = np.random.default_rng([seed, k])
            w.write_block(SampleBlock("emg", 1000.0, k * 100,
                                      rng.normal(0, 50, (100, 1)).astype(np.float32),
                                      t0 + k * 0.1))
            w.write_block(SampleBlock("acc", 100.0, k * 10,
                                      rng.normal(0, 1, (10, 3)).astype(np.float32),
                                      t0 + k * 0.1))
        print(k, time.monotonic(), flush=True)
        k += 1
        time.sleep(0.01)                   # pace: a source at ten times real time
""")


def expected_block(seed: int, k: int):
    rng = np.random.default_rng([seed, k])
    return (rng.normal(0, 50, (100, 1)).astype(np.float32),
            rng.normal(0, 1, (10, 3)).astype(np.float32))


def run_and_kill(tmp_path, seed: int, path):
    """Start the writer process, SIGKILL it after a random number of blocks.

    Returns ``(handed, t_kill)``: ``handed`` maps block number -> monotonic time
    at which the child had handed that block to the writer.
    """
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(seed), str(FSYNC_S)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_after = random.Random(seed).randint(60, 220)
    handed = {}
    t_kill = None
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for line in proc.stdout:
            k, t = line.split()
            handed[int(k)] = float(t)
            if len(handed) >= kill_after:
                t_kill = time.monotonic()
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        if t_kill is None:
            proc.kill()
        proc.wait(30)
    for line in proc.stdout.read().splitlines():   # lines printed before the kill landed
        k, t = line.split()
        handed[int(k)] = float(t)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert t_kill is not None, f"child exited early: {proc.stderr.read()}"
    return handed, t_kill


def read_all(path, block_s=2.0):
    samples = {"emg": [], "acc": []}
    gaps = []
    with open_capture(path) as r:
        for item in r.blocks(block_s):
            if isinstance(item, SampleBlock):
                samples[item.stream].append(item)
            else:
                gaps.append(item)
        return samples, gaps, r.stats, r.segments


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_loses_at_most_the_last_fsync_interval(tmp_path, seed, caplog):
    path = tmp_path / "night.cwrec"
    handed, t_kill = run_and_kill(tmp_path, seed, path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    samples, gaps, stats, _ = read_all(path)
    assert stats.records_bad == 0 and not stats.closed
    assert any("not closed" in m or "truncated" in m for m in caplog.messages)

    # the EMG read back is a prefix of what was handed over, byte-exact, with
    # exactly the stored gaps in it
    emg = np.concatenate([np.zeros((0, 1))] + [b.data for b in samples["emg"]])
    idx = np.concatenate([np.zeros(0, int)]
                         + [np.arange(b.first_index, b.end_index) for b in samples["emg"]])
    n_blocks = int(idx[-1]) // 100 + 1 if idx.size else 0
    assert n_blocks <= max(handed) + 1
    expect = [np.zeros((0, 1), np.float32)] + [expected_block(seed, k)[0]
                                                for k in range(n_blocks) if k % 40 != 39]
    assert emg.astype(np.float32).tobytes() == np.concatenate(expect).tobytes()
    assert idx.tolist() == [k * 100 + i for k in range(n_blocks) if k % 40 != 39
                            for i in range(100)]
    acc = np.concatenate([np.zeros((0, 3))] + [b.data for b in samples["acc"]])
    n_acc_blocks = len(acc) // 10
    acc_expect = [np.zeros((0, 3), np.float32)] + [
        expected_block(seed, k)[1] for k in range(n_acc_blocks + n_acc_blocks // 39 + 1)
        if k % 40 != 39][:n_acc_blocks]
    assert acc.astype(np.float32).tobytes() == np.concatenate(acc_expect).tobytes()
    assert [(g.stream, g.first_index) for g in gaps if g.stream == "emg"] == \
        [("emg", k * 100) for k in range(n_blocks) if k % 40 == 39]

    # everything handed over well before the kill is there
    must = [k for k, t in handed.items() if t <= t_kill - MUST_HAVE_S and k % 40 != 39]
    if must:
        assert max(must) < n_blocks, (
            f"block {max(must)} was handed {t_kill - handed[max(must)]:.2f} s before the kill "
            f"but the file ends at block {n_blocks - 1}")


def test_sigkilled_night_resumes_into_the_same_file(tmp_path, caplog):
    path = tmp_path / "night.cwrec"
    run_and_kill(tmp_path, 7, path)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    samples, _, _, _ = read_all(path)
    end_before = samples["emg"][-1].end_index
    hdr = RecordingHeader(emg=StreamInfo("emg", 1000.0, ("gastroc",), "uV"),
                          acc=StreamInfo("acc", 100.0, ("x", "y", "z"), "g"),
                          board="sim", source_url="sim://")
    with CaptureWriter(path, hdr, append=True) as w:
        assert w.resume_point["emg"].end_index == end_before
        restart_t = w.resume_point["emg"].end_host_time_s + 30.0     # back after 30 s
        e0 = w.resume_stream("emg", restart_t)
        w.resume_stream("acc", restart_t)
        w.write_block(SampleBlock("emg", EMG_FS, e0, np.ones((500, 1), np.float32), restart_t))
    caplog.clear()
    samples2, gaps2, stats2, segments = read_all(path)
    assert [s.reason for s in segments] == ["start", "resume"]
    assert not segments[0].closed and segments[1].closed and stats2.closed
    assert stats2.records_bad == 0 and stats2.truncated_at is None
    assert not caplog.messages                  # a cleanly resumed night reads without warnings
    restart = [g for g in gaps2 if g.detail.get("cause") == "restart"]
    assert [(g.stream, g.first_index, g.n_samples) for g in restart if g.stream == "emg"] == \
        [("emg", end_before, 30000)]
    old = np.concatenate([b.data for b in samples["emg"]])
    new = np.concatenate([b.data for b in samples2["emg"]])
    assert np.array_equal(new[:len(old)], old) and np.all(new[len(old):] == 1.0)
    assert samples2["emg"][-1].end_index == end_before + 30000 + 500


# -- damage to a finished file ---------------------------------------------------

def build_file(path, n_blocks=24):
    """A small recording with one record per block (flush after each)."""
    hdr = RecordingHeader(emg=StreamInfo("emg", EMG_FS, ("gastroc",), "uV"),
                          acc=StreamInfo("acc", ACC_FS, ("x", "y", "z"), "g"))
    emg = {}
    with CaptureWriter(path, hdr, fsync_interval_s=0.05) as w:
        for k in range(n_blocks):
            if k == 9:
                w.write_event(SourceEvent("disconnected", 1.75e9 + k / 10))
                w.write_event(SourceEvent("gap", 1.75e9 + k / 10, "emg", k * 100, 100))
                w.write_event(SourceEvent("gap", 1.75e9 + k / 10, "acc", k * 10, 10))
                w.write_event(SourceEvent("connected", 1.75e9 + k / 10))
                continue
            e, a = expected_block(11, k)
            w.write_block(SampleBlock("emg", EMG_FS, k * 100, e, 1.75e9 + k / 10))
            w.write_block(SampleBlock("acc", ACC_FS, k * 10, a, 1.75e9 + k / 10))
            emg.update({k * 100 + i: e[i, 0] for i in range(100)})
            assert w.flush()
    records = [(rec.offset, rec.type) for rec in iter_records(path)]
    ends = [off for off, _ in records[1:]] + [os.path.getsize(path)]
    return emg, [(off, end, kind) for (off, kind), end in zip(records, ends)]


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "base.cwrec"
    emg, records = build_file(path)
    return path, path.read_bytes(), emg, records


def read_records(path):
    return [(rec.offset, rec.type) for rec in iter_records(path)][1:]


def check_samples_consistent(path, emg_truth):
    """Every EMG sample read is the original one at that index; returns how many."""
    n = 0
    with open_capture(path) as r:
        for item in r.blocks(0.25):
            if isinstance(item, SampleBlock) and item.stream == "emg":
                for i in range(item.n_samples):
                    assert item.data[i, 0] == emg_truth[item.first_index + i]
                n += item.n_samples
    return n


def test_truncated_at_every_offset_of_the_tail_reads_a_prefix(base_file, tmp_path, caplog):
    src, raw, emg, records = base_file
    header_end = records[0][1]
    path = tmp_path / "cut.cwrec"
    shutil.copyfile(src, path)
    # every byte of the last sample record and the close record, every 7th of
    # the record before, every 101st before that, and every record boundary
    boundaries = {end for _, end, _ in records}
    offsets = (set(range(records[-2][0], len(raw)))
               | set(range(records[-3][0], records[-2][0], 7))
               | set(range(header_end, records[-3][0], 101)) | (boundaries - {len(raw)}))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for i, cut in enumerate(sorted(offsets, reverse=True)):
        os.truncate(path, cut)                    # only ever shrinks: walk downwards
        whole = [(off, kind) for off, end, kind in records[1:] if end <= cut]
        caplog.clear()
        assert read_records(path) == whole
        at_boundary = cut in boundaries
        if at_boundary or i % 5 == 0:
            n = check_samples_consistent(path, emg)
            assert n == sum(100 for off, end, kind in records[1:]
                            if end <= cut and kind == "samples" and raw[off + 9] == 0)  # EMG
        assert any(("truncated" if not at_boundary else "not closed") in m
                   for m in caplog.messages), (cut, caplog.messages)
    for cut in range(0, header_end):
        os.truncate(path, cut)
        with pytest.raises(InputFileError):
            open_capture(path)


def test_flipped_bytes_in_the_middle_are_skipped_and_the_rest_kept(base_file, tmp_path, caplog):
    src, raw, emg, records = base_file
    samples = [r for r in records if r[2] == "samples"]
    victim = samples[len(samples) // 2]
    data = bytearray(raw)
    for pos in (victim[0] + 2, victim[0] + 40, victim[0] + 41):   # sync word and samples
        data[pos] ^= 0xA5
    path = tmp_path / "flipped.cwrec"
    path.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert read_records(path) == [(off, kind) for off, end, kind in records[1:]
                                  if off != victim[0]]
    with open_capture(path) as r:
        assert r.stats.records_bad == 1 and r.stats.bytes_skipped == victim[1] - victim[0]
        assert r.stats.closed
        gaps = [i for i in r.blocks() if isinstance(i, SourceEvent)]
    assert any(f"byte offset {victim[0]}" in m and "resynchronised" in m for m in caplog.messages)
    stream = "emg" if raw[victim[0] + 9] == 0 else "acc"
    first = int.from_bytes(raw[victim[0] + 10:victim[0] + 18], "little")
    assert any(g.detail.get("cause") == "missing_in_file" and g.stream == stream
               and g.first_index == first for g in gaps)
    assert check_samples_consistent(path, emg) == len(emg) - (100 if stream == "emg" else 0)


# -- property tests ------------------------------------------------------------------

@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damage_never_raises_and_keeps_exactly_the_undamaged_records(base_file, data):
    _, raw, emg, records = base_file
    size = len(raw)
    flips = data.draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)),
                               max_size=6, unique_by=lambda f: f[0]), label="flips")
    cut = data.draw(st.one_of(st.none(), st.integers(0, size)), label="cut")
    damaged = bytearray(raw)
    for pos, mask in flips:
        damaged[pos] ^= mask
    if cut is not None:
        damaged = damaged[:cut]
    end = size if cut is None else cut
    header_end = records[0][1]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "damaged.cwrec")
        with open(path, "wb") as fh:
            fh.write(damaged)
        header_hit = end < header_end or any(p < header_end for p, _ in flips)
        if header_hit:
            with pytest.raises(InputFileError):
                open_capture(path)
            return
        keep = [(off, kind) for off, rend, kind in records[1:]
                if rend <= end and not any(off <= p < rend for p, _ in flips)]
        assert read_records(path) == keep
        check_samples_consistent(path, emg)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_inserted_and_deleted_bytes_never_raise(base_file, data):
    _, raw, emg, records = base_file
    header_end = records[0][1]
    damaged = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4), label="n_edits")):
        pos = data.draw(st.integers(header_end, len(damaged)), label="pos")
        if data.draw(st.booleans(), label="insert"):
            damaged[pos:pos] = data.draw(st.binary(min_size=1, max_size=300), label="bytes")
        else:
            del damaged[pos:pos + data.draw(st.integers(1, 300), label="n_del")]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "damaged.cwrec")
        with open(path, "wb") as fh:
            fh.write(damaged)
        recs = read_records(path)
        assert [kind for _, kind in recs].count("close") <= 1
        check_samples_consistent(path, emg)
