"""Batch benchmark: N simulated nights, serial against a process pool against a
Dask LocalCluster, in one run.

Simulates N nights (default 8 nights of 8 h, EMG 1 kHz + accelerometer 100 Hz,
seeds 1..N; cached in ``--keep DIR``, default a folder in the temp directory)
once, then times the whole ``crampwatch batch`` command three times on them:

- ``--jobs 1`` (one process, the baseline),
- ``--jobs 2`` (two worker processes),
- ``--cluster`` on a Dask ``LocalCluster`` of 2 worker processes with 1 thread
  each, started before the timing (a cluster is started once for many batches).

and prints wall times, speed-ups against ``--jobs 1`` measured in the same run,
the load average before each run (other work on the machine shows there) and
whether the three left byte-identical outputs.  ``--readme`` writes the table
into README.md between ``<!-- batch-bench:start -->`` and
``<!-- batch-bench:end -->``.

Run by hand on a quiet machine (not in CI)::

    python benchmarks/bench_batch.py [--nights 8] [--hours 8] [--keep DIR] [--readme]
    python benchmarks/bench_batch.py --nights 4 --hours 0.5     # a quick check
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
START, END = "<!-- batch-bench:start -->", "<!-- batch-bench:end -->"
EXE = [sys.executable, "-m", "crampwatch.tools.cli"]


def simulate(folder: str, nights: int, hours: float) -> list[str]:
    """The N nights in ``folder`` (simulated the first time, two at a time)."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"night_{hours:g}h_seed{s:02d}.edf") for s in range(1, nights + 1)]
    todo = [(s, p) for s, p in enumerate(paths, 1) if not os.path.exists(p)]

    def one(item):
        seed, path = item
        tmp = path + ".tmp.edf"
        subprocess.run(EXE + ["simulate", tmp, "--hours", str(hours), "--seed", str(seed),
                              "--fs", "1000", "--acc-fs", "100",
                              "--labels", path[:-4] + ".labels.csv"],
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(tmp, path)

    if todo:
        t = time.perf_counter()
        with ThreadPoolExecutor(2) as ex:
            list(ex.map(one, todo))
        print(f"simulated {len(todo)} night(s) of {hours:g} h in {time.perf_counter() - t:.0f} s "
              f"into {folder}")
    return paths


REPEATS = 3
"""Each engine is timed this many times (fresh output folder each time); the median counts."""


def settle(max_wait_s: float = 60.0, load: float = 0.3) -> None:
    """Wait (at most ``max_wait_s``) for the 1-minute load average to fall below ``load``:
    the previous run's processes must not be counted against the next."""
    t_end = time.monotonic() + max_wait_s
    while os.getloadavg()[0] > load and time.monotonic() < t_end:
        time.sleep(2.0)


def timed_batch(folder: str, out: str, engine: list[str], repeats: int = REPEATS) -> float:
    """Median wall time of ``repeats`` runs of the whole command."""
    walls = []
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        subprocess.run(EXE + ["batch", folder, "--out", out, *engine], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t)
    return sorted(walls)[len(walls) // 2]


def outputs(out: str) -> dict:
    files = {}
    for name in ("episodes.csv", "nights.csv"):
        with open(os.path.join(out, name), "rb") as fh:
            files[name] = fh.read()
    ep = os.path.join(out, "episodes")
    for name in sorted(os.listdir(ep)):
        with open(os.path.join(ep, name), "rb") as fh:
            files[name] = fh.read()
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=8)
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--keep", metavar="DIR",
                    default=os.path.join(tempfile.gettempdir(), "crampwatch-bench-batch"),
                    help="where the simulated nights are cached (default: %(default)s)")
    ap.add_argument("--no-dask", action="store_true", help="skip the LocalCluster run")
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = ap.parse_args()
    folder = os.path.join(args.keep, f"{args.nights}x{args.hours:g}h")
    simulate(folder, args.nights, args.hours)
    work = tempfile.mkdtemp(prefix="cw-bench-batch-")
    runs = []
    try:
        engines = [("`--jobs 1`", ["--jobs", "1"]), ("`--jobs 2`", ["--jobs", "2"])]
        cluster = None
        if not args.no_dask:
            from distributed import LocalCluster
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            engines.append(("Dask LocalCluster, 2 workers",
                            ["--cluster", cluster.scheduler_address]))
        # rounds of one run per engine, so that a slower or faster spell of this shared
        # machine falls on every engine alike; the median of the rounds counts
        walls = {label: [] for label, _ in engines}
        loads = {label: [] for label, _ in engines}
        try:
            for k in range(REPEATS):
                for label, engine in engines:
                    settle()
                    loads[label].append(os.getloadavg()[0])
                    out = os.path.join(work, label.strip("`").replace(" ", "_"))
                    walls[label].append(timed_batch(folder, out, engine, repeats=1))
                    print(f"round {k + 1}: {label:<28} {walls[label][-1]:7.1f} s   "
                          f"(load before: {loads[label][-1]:.2f})")
        finally:
            if cluster is not None:
                cluster.close()
        for label, _ in engines:
            out = os.path.join(work, label.strip("`").replace(" ", "_"))
            median = sorted(walls[label])[len(walls[label]) // 2]
            runs.append((label, median, max(loads[label]), out))
        ref = outputs(runs[0][3])
        same = all(outputs(r[3]) == ref for r in runs[1:])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = runs[0][1]
    total_h = args.nights * args.hours
    opts = ("" if args.nights == 8 else f" --nights {args.nights}") + \
        ("" if args.hours == 8 else f" --hours {args.hours:g}")
    lines = [(f"{args.nights} simulated nights of {args.hours:g} h (EMG 1 kHz + accelerometer "
              f"100 Hz, EDF+), the whole `crampwatch batch` command, {os.cpu_count()} cores "
              f"({platform.machine()}), the median of {REPEATS} runs each, measured in one run by "
              f"`python benchmarks/bench_batch.py{opts}`:"),
             "",
             "| engine | wall time | nights per minute | speed-up vs `--jobs 1` |",
             "|---|---|---|---|"]
    for label, wall, _, _ in runs:
        lines.append(f"| {label} | {wall:.1f} s | {args.nights / wall * 60:.1f} | "
                     f"{base / wall:.2f}x |")
    loads = ", ".join(f"{r[2]:.2f}" for r in runs)  # the highest of each engine's rounds
    lines += ["", (f"Outputs byte-identical across the engines: {'yes' if same else 'NO'}; "
                   f"{total_h:g} h of recordings in all; {REPEATS} rounds, the engines in turn "
                   f"in each; highest 1-minute load average before a run: {loads}.")]
    text = "\n".join(lines)
    print()
    print(text)
    if args.readme:
        with open(README, encoding="utf-8") as fh:
            readme = fh.read()
        if START not in readme or END not in readme:
            print(f"README.md has no {START} ... {END} block", file=sys.stderr)
            return 1
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        with open(README, "w", encoding="utf-8") as fh:
            fh.write(head + START + "\n" + text + "\n" + END + tail)
        print("README.md updated")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
