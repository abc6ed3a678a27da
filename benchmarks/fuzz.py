"""Fuzz the ``crampwatch`` command for a wall-clock budget.

The generators of ``tests/test_fuzz_cli.py`` (``tests/fuzz_inputs.py``: hostile
``--set`` values, TOML configs, damaged capture recordings and EDF headers), run
for as long as you give them instead of a few dozen examples each.  Every input
runs ``crampwatch.tools.cli.main`` in a forked child of this process (already
loaded, so hundreds of runs a minute) under ``RLIMIT_AS`` = 1 GB and a 20 s
timeout.  Prints, per kind of input, how many were tried, how many exited 0, how
many gave a clean ``crampwatch: ...`` error (exit 2), and every failure
(traceback, hang, memory, crash, another exit status, an unclean stderr), each
saved with its files and a ``repro.py`` under the failures folder.

Run by hand (not in CI)::

    python benchmarks/fuzz.py --minutes 3 [--seed 1] [--kinds set-replay,edf-replay]
                              [--failures fuzz-failures] [--installed]

``--installed`` runs the installed ``crampwatch`` command instead (a fresh
process per input: about 1 s each, so far fewer inputs).  Exit status 1 if any
input failed in a way not already known (``KNOWN_BUGS`` in fuzz_inputs.py).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")       # forked children: no BLAS thread pools to inherit
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import fuzz_inputs as fz  # noqa: E402
import warnings  # noqa: E402

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis.errors import HypothesisWarning  # noqa: E402

# the last (time-is-up) example's repr can be megabytes: hypothesis warns, we know
warnings.filterwarnings("ignore", "Generating overly large repr", HypothesisWarning)


class _TimeUp(Exception):
    """Raised inside the hypothesis loop when the kind's time is over."""


def fuzz_kind(kind, bases, budget_s, rng_seed, run, failures_dir, tally, log):
    """Run one kind of input for ``budget_s`` seconds; count into ``tally[kind]``."""
    counts = tally[kind]
    end = time.monotonic() + budget_s

    @seed(rng_seed)
    @settings(max_examples=10**9, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=fz.case_strategy(kind, bases))
    def loop(case):
        if time.monotonic() > end:
            raise _TimeUp
        with tempfile.TemporaryDirectory(prefix="cwfuzz-") as d:
            argv, env = fz.materialize(case, d)
            out = run(argv, env=env, cwd=d)
        verdict, detail = fz.judge(out)
        counts["tried"] += 1
        counts[verdict] += 1
        counts["seconds"] += out.seconds
        if verdict in fz.FAILURES:
            known = fz.known_bug(out.stderr) if verdict in ("traceback", "memory") else None
            if known:
                counts["known"] += 1
                verdict = "known"
            path = fz.save_reproducer(case, out, verdict, detail, failures_dir)
            log(f"  {kind}: {verdict.upper()} ({known or detail.splitlines()[-1][:160]}) "
                f"-> {path}")

    try:
        loop()
    except _TimeUp:
        pass
    except Exception as exc:          # hypothesis ran out of inputs, or the harness broke
        log(f"  {kind}: stopped early: {type(exc).__name__}: {exc}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="total budget (default 3)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    p.add_argument("--kinds", default=",".join(fz.KINDS),
                   help=f"comma-separated kinds (default all: {','.join(fz.KINDS)})")
    p.add_argument("--failures", default="fuzz-failures",
                   help="folder for reproducers of failures (default ./fuzz-failures)")
    p.add_argument("--installed", action="store_true",
                   help="run the installed crampwatch command (a process per input)")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in fz.KINDS]
    if unknown:
        p.error(f"unknown kind(s) {', '.join(unknown)} (known: {', '.join(fz.KINDS)})")
    run = fz.run_installed if args.installed else fz.run_forked
    failures_dir = os.path.abspath(args.failures)

    def log(text):
        print(text, flush=True)

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cwfuzz-bases-") as bases_dir:
        bases = fz.make_bases(bases_dir, run=lambda a, env: run(a, env=env))
        setup_s = time.monotonic() - t0
        budget_s = max(1.0, args.minutes * 60.0 - setup_s)
        log(f"fuzzing {len(kinds)} kinds for {budget_s:.0f} s (seed {args.seed}; bases made in "
            f"{setup_s:.1f} s; failures -> {failures_dir})")
        tally = collections.defaultdict(collections.Counter)
        for i, kind in enumerate(kinds):
            share = (budget_s - (time.monotonic() - t0 - setup_s)) / (len(kinds) - i)
            fuzz_kind(kind, bases, share, args.seed + i, run, failures_dir, tally, log)
    wall = time.monotonic() - t0
    cols = ("tried", "ok", "error", *fz.FAILURES, "known")
    log(f"\n{'kind':<14}" + "".join(f"{c:>10}" for c in cols) + f"{'per input':>11}")
    total = collections.Counter()
    for kind in kinds:
        c = tally[kind]
        total.update(c)
        per = c["seconds"] / c["tried"] if c["tried"] else 0.0
        log(f"{kind:<14}" + "".join(f"{c[k]:>10}" for k in cols) + f"{per:>10.2f}s")
    log(f"{'all':<14}" + "".join(f"{total[k]:>10}" for k in cols)
        + f"   ({wall:.0f} s wall)")
    new = sum(total[k] for k in fz.FAILURES) - total["known"]
    log("exit 0: ok; error: exit 2 with one 'crampwatch: ...' line; "
        f"{', '.join(fz.FAILURES)}: failures; known: how many of those are bugs already "
        "reported (fuzz_inputs.KNOWN_BUGS)")
    if new or total["known"]:
        log(f"{new} new failure(s), {total['known']} known; reproducers in {failures_dir}")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
