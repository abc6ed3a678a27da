"""``crampwatch tune``: try detector settings on labelled recordings and keep
the best.

Each combination of the ``--try`` values is replayed through the same pipeline
as ``replay`` and scored as ``evaluate`` scores it; the table is sorted by F1,
then false positives per hour, then onset error.  ``--write BEST.toml`` saves
the best settings as a config file for ``capture``/``replay --config``.

``tune --db LOG`` tunes to one sleeper instead: the recordings and labels are
the nights of the episode log with verdicts (``crampwatch label``), the choice
is cross-validated by night, and the best settings are written beside the
config (``crampwatch-tuned.toml``, or ``--write``); with fewer than 5 nights
with verdicts it says so in one line, writes nothing and exits with status 1
(see :mod:`crampwatch.tools._personal`).  Cramps the detector missed have no
episode to confirm: to teach it those, replay such nights into the log with a
more sensitive setting (``replay NIGHT --db LOG --set on_min_uv=5``) and mark
what it finds.
"""

from __future__ import annotations

import itertools
import sys

from crampwatch._files import atomic_private_write, check_output_path
from crampwatch.errors import ConfigError
from crampwatch.tools._run import load_config, parse_acc_labels
from crampwatch.tools.evaluate import evaluate_files

HELP = "try detector settings on labelled recordings and keep the best"
DESCRIPTION = __doc__

DEFAULT_TRIES = ["min_duration_s=8,10,12", "on_ratio=3,4,5"]


def add_arguments(p) -> None:
    p.add_argument("files", nargs="*", metavar="FILE", help="recordings (or --db)")
    p.add_argument("--db", metavar="LOG",
                   help="tune to the sleeper of this episode log: their nights and verdicts, "
                        "cross-validated by night; writes crampwatch-tuned.toml beside the "
                        "config (or --write); exit 1 with fewer than 5 labelled nights; default grid: "
                        "min_duration_s=8,10,15,20 on_min_uv=5,10,20,40 min_confidence=0,0.5")
    p.add_argument("--labels", nargs="+", metavar="LABELS",
                   help="labels files, one per recording (default: FILE's stem + .labels.csv)")
    p.add_argument("--try", dest="tries", action="append", default=None,
                   metavar="NAME=V1,V2,...",
                   help=f"values to try for a parameter (default: {' '.join(DEFAULT_TRIES)})")
    p.add_argument("--emg", metavar="LABEL")
    p.add_argument("--acc", metavar="X,Y,Z")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="fixed overrides applied before the tried values")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--write", metavar="BEST.toml", help="write the best settings as TOML")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes replaying the recordings (default: every core)")


def parse_tries(tries: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    for item in tries:
        if "=" not in item:
            raise ConfigError(f"--try {item!r}: expected NAME=V1,V2,...")
        name, values = item.split("=", 1)
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not vals:
            raise ConfigError(f"--try {item!r}: no values")
        out.append((name.strip(), vals))
    return out


def run(args) -> int:
    if args.db:
        from crampwatch.tools._personal import run_db
        return run_db(args)
    if not args.files:
        raise ConfigError("tune: give recordings (FILE... --labels) or an episode log (--db LOG)")
    check_output_path(args.write, [*args.files, *(args.labels or []), args.config], "--write")
    base = load_config(args.config, args.overrides)
    grid = parse_tries(args.tries or DEFAULT_TRIES)
    names = [n for n, _ in grid]
    combos = list(itertools.product(*[v for _, v in grid]))
    for combo in combos:                      # check every value before the long part
        base.with_overrides([f"{n}={v}" for n, v in zip(names, combo)])
    acc = parse_acc_labels(args.acc)
    rows = []
    for i, combo in enumerate(combos, 1):
        cfg = base.with_overrides([f"{n}={v}" for n, v in zip(names, combo)])
        pooled, _ = evaluate_files(args.files, args.labels, cfg, args.emg, acc, progress=False,
                                   jobs=args.jobs)
        rows.append((combo, cfg, pooled))
        print(f"[{i}/{len(combos)}] " + " ".join(f"{n}={v}" for n, v in zip(names, combo))
              + f": F1 {pooled['f1']:.3f}, {pooled['false_positives_per_hour']:.2f} FP/h",
              file=sys.stderr)

    def key(row):
        p = row[2]
        onset = p["onset_error_median_s"]
        return (-p["f1"], p["false_positives_per_hour"],
                onset if onset == onset else 1e9)      # NaN (nothing found) last
    rows.sort(key=key)
    head = "  ".join(f"{n:>14}" for n in names)
    print(f"{head}  {'F1':>6} {'prec':>6} {'recall':>6} {'FP/h':>6} {'onset s':>8}")
    for combo, _, p in rows:
        vals = "  ".join(f"{v:>14}" for v in combo)
        print(f"{vals}  {p['f1']:>6.3f} {p['precision']:>6.3f} {p['recall']:>6.3f} "
              f"{p['false_positives_per_hour']:>6.2f} {p['onset_error_median_s']:>8.2f}")
    best_combo, best_cfg, _ = rows[0]
    print("best: " + " ".join(f"{n}={v}" for n, v in zip(names, best_combo)))
    if args.write:
        with atomic_private_write(args.write, "w", encoding="utf-8") as fh:
            fh.write("# written by crampwatch tune\n[detector]\n")
            for n in names:
                v = getattr(best_cfg, n)
                fh.write(f'{n} = "{v}"\n' if isinstance(v, str) else f"{n} = {v!r}\n")
    return 0
