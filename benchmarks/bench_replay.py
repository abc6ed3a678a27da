"""Replay benchmark: an 8 h night at 1 kHz EMG + 100 Hz accelerometer.

Prints the replay wall time (the whole ``crampwatch replay`` command, and the
replay itself once Python and its libraries are loaded), peak RSS, throughput
(times real time) and the ratio to a plain numpy/scipy pass (band-pass + mains
notch + 250 ms RMS over the same samples, with the same filter design)
measured in the same run, in wall time and in CPU time (steadier on a busy
machine).

Run by hand (not in CI)::

    python benchmarks/bench_replay.py [--hours 8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import signal


_CHILD = """
import json, sys, time
from crampwatch.detector import DetectorConfig
from crampwatch.tools._run import run_recording
t, c = time.perf_counter(), time.process_time()
res = run_recording(sys.argv[1], DetectorConfig(), progress=False)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "episodes": len(res.episodes)}))
"""


def plain_pass(emg_uv: np.ndarray, fs_hz: float) -> np.ndarray:
    """The baseline: one sosfilt of band-pass + notches, then 250 ms RMS every 50 ms."""
    from crampwatch.detector.config import DetectorConfig
    from crampwatch.detector.filters import design_emg_sos
    cfg = DetectorConfig()
    bp, notch, _ = design_emg_sos(fs_hz, cfg.band_low_hz, cfg.band_high_hz, cfg.band_order,
                                  cfg.mains_hz, cfg.notch_width_hz)
    y = signal.sosfilt(np.vstack([bp, notch]), emg_uv)
    hop = int(round(0.05 * fs_hz))
    n = len(y) // hop * hop
    ms = (y[:n] ** 2).reshape(-1, hop).mean(axis=1)
    c = np.concatenate([[0.0], np.cumsum(ms)])
    return np.sqrt((c[5:] - c[:-5]) / 5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--keep", metavar="DIR", help="keep/reuse the simulated night in DIR")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="cw-bench-")
    os.makedirs(work, exist_ok=True)
    edf = os.path.join(work, f"night_{args.hours:g}h.edf")
    exe = [sys.executable, "-m", "crampwatch.tools.cli"]
    if not os.path.exists(edf):
        t = time.perf_counter()
        subprocess.run(exe + ["simulate", edf, "--hours", str(args.hours), "--seed", "1",
                              "--fs", "1000", "--acc-fs", "100"], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"simulated {args.hours:g} h night in {time.perf_counter() - t:.1f} s: {edf}")

    # the replay first, in a child process, so its peak RSS is its own (a child forked
    # after the baseline loaded the night would inherit those pages in ru_maxrss)
    out = os.path.join(work, "episodes.jsonl")
    t = time.perf_counter()
    subprocess.run(exe + ["replay", edf, "--episodes", out, "--quiet"], check=True)
    command_s = time.perf_counter() - t
    child = subprocess.run([sys.executable, "-c", _CHILD, edf], check=True,
                           capture_output=True, text=True)
    inproc = json.loads(child.stdout)
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    replay_s = inproc["wall_s"]
    # baseline on the same samples, read once into memory (reading not timed)
    from crampwatch.firmware_bridge.readers import open_recording
    with open_recording(edf) as rec:
        fs = rec.emg.fs_hz
        duration_s = rec.duration_s
        t = time.perf_counter()
        parts = [b.data[:, 0] for b in rec.blocks(600.0)
                 if getattr(b, "stream", None) == "emg"]
        read_s = time.perf_counter() - t
    emg = np.concatenate(parts).astype(np.float64)
    del parts
    t, c = time.perf_counter(), time.process_time()
    plain_pass(emg, fs)
    base_s, base_cpu_s = time.perf_counter() - t, time.process_time() - c
    del emg

    with open(out) as fh:
        n_eps = sum(1 for _ in fh)
    res = {
        "hours": round(duration_s / 3600, 2),
        "command_wall_s": round(command_s, 2),
        "replay_wall_s": round(replay_s, 2),
        "replay_cpu_s": round(inproc["cpu_s"], 2),
        "replay_x_realtime": round(duration_s / replay_s),
        "peak_rss_mb": round(rss_mb, 1),
        "baseline_plain_scipy_s": round(base_s, 2),
        "baseline_read_s": round(read_s, 2),
        "baseline_plain_scipy_cpu_s": round(base_cpu_s, 2),
        "ratio_replay_to_plain": round(replay_s / base_s, 2),
        "ratio_replay_to_plain_cpu": round(inproc["cpu_s"] / base_cpu_s, 2),
        "ratio_replay_to_read_plus_plain": round(replay_s / (base_s + read_s), 2),
        "episodes": n_eps,
    }
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
