"""Write a full synthetic night for benchmarks, and time the simulator.

    python benchmarks/make_night.py [OUT.edf] [--hours 8] [--seed 0] [--render-only]

Renders the night in 60 s blocks (EMG 1 kHz + accelerometer 100 Hz), reports
the time, the peak of Python-traced memory and the ratio to a baseline measured
in the same run (drawing as many normal samples with numpy as the EMG has:
the least any noise generator must do), then writes OUT.edf and its labels
unless --render-only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np
from crampwatch.firmware_bridge.edf import write_edf
from crampwatch.firmware_bridge.labels import write_labels
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default="night_8h.edf")
    p.add_argument("--hours", type=float, default=8.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render-only", action="store_true")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    night = SyntheticNight(NightSpec(hours=args.hours, seed=args.seed))
    t_plan = time.perf_counter() - t0

    t0 = time.perf_counter()
    block_e, block_a = int(60 * night.emg_fs_hz), int(60 * night.acc_fs_hz)
    for i in range(0, night.n_emg_samples, block_e):
        night.render_emg(i, min(block_e, night.n_emg_samples - i))
    t_emg = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, night.n_acc_samples, block_a):
        night.render_acc(i, min(block_a, night.n_acc_samples - i))
    t_acc = time.perf_counter() - t0

    # memory, traced separately (tracing slows numpy): the first and the whole night
    peaks = []
    for hours in (min(1.0, args.hours), args.hours):
        fresh = SyntheticNight(night.spec)
        tracemalloc.start()
        for i in range(0, int(hours * 3600 * fresh.emg_fs_hz), block_e):
            fresh.render_emg(i, block_e)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(0, night.n_emg_samples, block_e):
        rng.standard_normal(min(block_e, night.n_emg_samples - i))
    t_base = time.perf_counter() - t0

    print(
        f"night: {args.hours:g} h, seed {args.seed}, {sum(night.counts().values())} labels "
        f"({night.counts()['cramp']} cramps)"
    )
    print(
        f"plan {t_plan:.2f} s; render EMG {t_emg:.1f} s + acc {t_acc:.1f} s "
        f"= {t_emg + t_acc:.1f} s ({args.hours * 3600 / (t_emg + t_acc):.0f}x real time)"
    )
    print(
        f"baseline (numpy normal draws, same count): {t_base:.2f} s; "
        f"render / baseline = {(t_emg + t_acc) / t_base:.1f}"
    )
    print(
        f"peak traced memory rendering EMG: first hour {peaks[0] / 1e6:.1f} MB, whole night "
        f"{peaks[1] / 1e6:.1f} MB (the night's EMG as float32 would be "
        f"{night.n_emg_samples * 4 / 1e6:.0f} MB)"
    )
    if args.render_only:
        return 0
    t0 = time.perf_counter()
    res = write_edf(args.out, SyntheticNight(night.spec), annotations=night.labels)
    labels = os.path.splitext(args.out)[0] + ".labels.csv"
    write_labels(labels, night.labels)
    print(
        f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.0f} MB, {res.duration_s:.0f} s) "
        f"and {labels} in {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
