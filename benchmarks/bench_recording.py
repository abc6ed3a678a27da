"""Benchmark the crash-safe capture recording (run by hand, not in CI).

Writes a night of 1 kHz EMG + 100 Hz accelerometer the way a live source hands
it over (0.1 s blocks of float64 physical values), through the real
:class:`CaptureWriter` (queue, writer thread, checksums, fsync every second),
then reads it back through :func:`open_capture` in 10 s blocks.  Baselines,
measured in the same run on the same disk: a plain ``f.write`` of the same
samples as raw float32 bytes (one write per block, one fsync at the end), and
``numpy.fromfile`` of that raw file.

    python benchmarks/bench_recording.py            # 8 h night
    python benchmarks/bench_recording.py --hours 1 --dir /mnt/sdcard

Prints MB/s, CPU seconds per hour of signal, file size per hour, read-back
speed, and the ratios to the baselines.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from crampwatch.firmware_bridge.recording import CaptureWriter, RecordingHeader, open_capture
from crampwatch.firmware_bridge.types import SampleBlock, StreamInfo

EMG_FS, ACC_FS = 1000.0, 100.0


def make_pool(n_emg_ch: int, block_s: float, n: int = 64):
    rng = np.random.default_rng(0)
    ne, na = int(round(block_s * EMG_FS)), int(round(block_s * ACC_FS))
    emg = [rng.normal(0, 30, (ne, n_emg_ch)) for _ in range(n)]
    acc = [rng.normal(0, 0.3, (na, 3)) + [0, 0, 1] for _ in range(n)]
    return emg, acc, ne, na


def cpu_s() -> float:
    return time.process_time()


def bench_write(path, n_blocks, pool, n_emg_ch, block_s):
    emg, acc, ne, na = pool
    hdr = RecordingHeader(emg=StreamInfo("emg", EMG_FS, tuple(f"emg{i}" for i in range(n_emg_ch)),
                                         "uV"),
                          acc=StreamInfo("acc", ACC_FS, ("x", "y", "z"), "g"),
                          board="bench", source_url="bench://")
    t0, c0 = time.perf_counter(), cpu_s()
    w = CaptureWriter(path, hdr, fsync_interval_s=1.0)
    host0 = time.time()
    for k in range(n_blocks):
        h = host0 + k * block_s
        w.write_block(SampleBlock("emg", EMG_FS, k * ne, emg[k % len(emg)], h))
        w.write_block(SampleBlock("acc", ACC_FS, k * na, acc[k % len(acc)], h))
    st = w.close()
    return time.perf_counter() - t0, cpu_s() - c0, st


def bench_paced(path, seconds, pool, n_emg_ch, block_s):
    """Hand blocks over at real-time pace (as the daemon does) and measure CPU."""
    emg, acc, ne, na = pool
    hdr = RecordingHeader(emg=StreamInfo("emg", EMG_FS, tuple(f"emg{i}" for i in range(n_emg_ch)),
                                         "uV"),
                          acc=StreamInfo("acc", ACC_FS, ("x", "y", "z"), "g"))
    n = int(round(seconds / block_s))
    c0 = cpu_s()
    w = CaptureWriter(path, hdr, fsync_interval_s=1.0)
    start = time.monotonic()
    for k in range(n):
        delay = start + k * block_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)          # pacing a simulated live source, not synchronisation
        w.write_block(SampleBlock("emg", EMG_FS, k * ne, emg[k % len(emg)], time.time()))
        w.write_block(SampleBlock("acc", ACC_FS, k * na, acc[k % len(acc)], time.time()))
    st = w.close()
    return cpu_s() - c0, st


def bench_baseline_write(path, n_blocks, pool):
    emg, acc, _, _ = pool
    t0, c0 = time.perf_counter(), cpu_s()
    with open(path, "wb") as f:
        for k in range(n_blocks):
            f.write(np.asarray(emg[k % len(emg)], "<f4").tobytes())
            f.write(np.asarray(acc[k % len(acc)], "<f4").tobytes())
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0, cpu_s() - c0


def bench_read(path):
    import psutil
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    rss_peak = rss0
    t0, c0 = time.perf_counter(), cpu_s()
    n_emg = n_acc = 0
    with open_capture(path) as r:
        duration_s = r.duration_s
        for i, item in enumerate(r.blocks(10.0)):
            if isinstance(item, SampleBlock):
                if item.stream == "emg":
                    n_emg += item.n_samples
                else:
                    n_acc += item.n_samples
            if i % 256 == 0:
                rss_peak = max(rss_peak, proc.memory_info().rss)
    return time.perf_counter() - t0, cpu_s() - c0, n_emg, n_acc, duration_s, rss_peak - rss0


def bench_baseline_read(path):
    t0 = time.perf_counter()
    data = np.fromfile(path, dtype="<f4")
    data.sum()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--block-s", type=float, default=0.1)
    ap.add_argument("--emg-channels", type=int, default=1)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--paced-s", type=float, default=20.0,
                    help="also run this many seconds at real-time pace to measure the "
                         "daemon's CPU cost (0: skip)")
    args = ap.parse_args(argv)

    n_blocks = int(round(args.hours * 3600 / args.block_s))
    pool = make_pool(args.emg_channels, args.block_s)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        rec = os.path.join(d, "night.cwrec")
        raw = os.path.join(d, "night.raw")
        # baseline first, then ours, then the baseline again: use the faster baseline
        b1 = bench_baseline_write(raw, n_blocks, pool)
        os.unlink(raw)
        wall, cpu, st = bench_write(rec, n_blocks, pool, args.emg_channels, args.block_s)
        b2 = bench_baseline_write(raw, n_blocks, pool)
        base_wall, base_cpu = min(b1[0], b2[0]), min(b1[1], b2[1])
        size = os.path.getsize(rec)
        raw_size = os.path.getsize(raw)
        r_wall, r_cpu, n_emg, n_acc, duration_s, rss_growth = bench_read(rec)
        base_read = bench_baseline_read(raw)
        paced = None
        if args.paced_s > 0:
            paced_path = os.path.join(d, "paced.cwrec")
            paced = bench_paced(paced_path, args.paced_s, pool, args.emg_channels, args.block_s)
            paced = paced + (os.path.getsize(paced_path),)

    hours = args.hours
    mb = size / 1e6
    print(f"signal: {hours:g} h of {args.emg_channels} x 1 kHz EMG + 3 x 100 Hz acc "
          f"in {args.block_s:g} s blocks ({2 * n_blocks} write_block calls)")
    print(f"write:  {wall:.2f} s wall, {cpu:.2f} s CPU -> {mb / wall:.1f} MB/s, "
          f"{cpu / hours:.3f} CPU s per hour of signal, {hours * 3600 / wall:.0f}x real time")
    print(f"        blocks written {st.blocks_written}, dropped {st.blocks_dropped}, "
          f"records {st.records_written}, fsyncs {st.fsyncs}, write errors {st.write_errors}")
    print(f"file:   {mb:.1f} MB, {mb / hours:.2f} MB per hour "
          f"(raw float32 samples: {raw_size / 1e6 / hours:.2f} MB/h; "
          f"overhead {100 * (size / raw_size - 1):.2f} %)")
    print(f"read:   {r_wall:.2f} s wall, {r_cpu:.2f} s CPU -> {mb / r_wall:.1f} MB/s, "
          f"{hours * 3600 / r_wall:.0f}x real time; {n_emg} EMG + {n_acc} acc samples, "
          f"duration {duration_s / 3600:.3f} h; "
          f"RSS growth while reading {rss_growth / 2**20:.1f} MiB")
    print(f"baseline plain f.write: {base_wall:.2f} s wall, {base_cpu:.2f} s CPU; "
          f"capture writer / baseline: {wall / base_wall:.2f}x wall, {cpu / base_cpu:.2f}x CPU")
    print(f"baseline np.fromfile read: {base_read:.3f} s; reader / baseline: "
          f"{r_wall / base_read:.1f}x")
    if paced is not None:
        p_cpu, p_st, p_size = paced
        raw_per_s = raw_size / (hours * 3600)
        print(f"paced:  {args.paced_s:g} s at real-time pace: {p_cpu:.3f} s CPU -> "
              f"{p_cpu * 3600 / args.paced_s:.2f} CPU s per hour of signal "
              f"({100 * p_cpu / args.paced_s:.3f} % of one core); fsyncs {p_st.fsyncs}, "
              f"records {p_st.records_written}; file {p_size / 1e6 * 3600 / args.paced_s:.2f} "
              f"MB per hour (overhead {100 * (p_size / (raw_per_s * args.paced_s) - 1):.1f} %, "
              f"header included)")
    ok = st.blocks_dropped == 0 and n_emg == n_blocks * int(round(args.block_s * EMG_FS))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
