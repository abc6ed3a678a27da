"""Tuning to one sleeper: their labelled nights from the episode log, and the
night-wise cross-validation behind ``crampwatch tune --db`` (and the nights
``crampwatch train --db`` learns from).

A sleeper's verdicts (``crampwatch label ID --confirmed/--false``) label the
episodes of the recordings in their log: confirmed episodes are cramps, false
ones distractors, episodes without a verdict are left out of the scoring
(:func:`crampwatch.tools.evaluate.evaluate_files` with ``db=``).  Only nights
with at least one verdict count; a recording whose file is gone is named and
skipped.

Every combination of the tried settings is replayed once over every labelled
recording; then, for each night held out in turn, the combination that scores
best on the *other* nights is scored on it.  The pooled scores of those
held-out nights are what tuning is expected to do on nights it has not seen,
set against the settings in effect on the same nights.  The settings written
are the best on all nights.  "Best": the highest F1 of the nights pooled, then
the fewest false cramps per hour, then the fewest settings changed from those
in effect, then the order of the grid.

Examples
--------
>>> from crampwatch.tools._personal import labelled_nights, cross_validate
>>> nights, missing = labelled_nights("episodes.sqlite")          # doctest: +SKIP
>>> result = cross_validate(nights, "episodes.sqlite", base_cfg,
...                         [("on_min_uv", ["5", "10", "40"])])   # doctest: +SKIP
>>> result.cv_tuned["f1"] >= result.cv_default["f1"]              # doctest: +SKIP
True
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone

from crampwatch.errors import InputFileError

__all__ = ["DEFAULT_TRIES", "MIN_NIGHTS", "TOO_FEW_EXIT", "LabelledNight", "TuningResult",
           "config_text", "cross_validate", "default_output_path", "default_tries",
           "labelled_nights", "run_db", "sleeper_nights", "too_few_message"]

log = logging.getLogger(__name__)

MIN_NIGHTS = 5
"""Nights with verdicts needed before ``tune --db`` or ``train --db`` change anything."""

TOO_FEW_EXIT = 1
"""Exit status of ``tune --db`` / ``train --db`` with too few labelled nights: not
bad input (that is 2), just not enough verdicts yet; nothing is written."""

DEFAULT_TRIES = ["min_duration_s=8,10,15,20", "on_min_uv=5,10,20,40"]
"""The grid without ``--try``: the settings that differ most between sleepers (how long a
benign contraction lasts; how strong their cramps are against their postural tone);
``min_confidence=0,0.5`` is added where the detector has it."""

TUNED_CONFIG_NAME = "crampwatch-tuned.toml"


@dataclass
class LabelledNight:
    """One night of the log with verdicts: its usable recordings and verdict counts."""

    night_id: int
    night_date: str
    paths: list[str]
    confirmed: int = 0
    false: int = 0

    @property
    def verdicts(self) -> int:
        return self.confirmed + self.false


@dataclass
class TuningResult:
    """What :func:`cross_validate` found (counts pooled as ``tp``, ``fp``, ``fn``, ``hours``)."""

    names: list[str]
    combos: list[tuple]
    base_index: int
    nights: list[LabelledNight]
    per_night: list[dict]          # night, default (counts), chosen (combo index), tuned (counts)
    cv_default: dict
    cv_tuned: dict
    best_index: int
    best_all: dict                 # pooled counts of the best combination on all nights
    default_all: dict
    configs: list = field(repr=False, default_factory=list)

    @property
    def best_cfg(self):
        return self.configs[self.best_index]

    def describe(self, i: int) -> str:
        """Combination ``i`` as ``name=value ...``."""
        return " ".join(f"{n}={v:g}" if isinstance(v, float) else f"{n}={v}"
                        for n, v in zip(self.names, self.combos[i]))

    def changes(self, i: int) -> str:
        """What combination ``i`` changes from the settings in effect."""
        base = self.combos[self.base_index]
        parts = [p for p, v, b in zip(self.describe(i).split(" "), self.combos[i], base)
                 if v != b]
        return " ".join(parts) or "as in effect"


def labelled_nights(db: str) -> tuple[list[LabelledNight], list[str]]:
    """The nights of the episode log at ``db`` that hold verdicts, oldest first.

    Returns ``(nights, missing)``: each night with the recordings of it that
    hold verdicts and exist, and the paths of recordings with verdicts whose
    file is gone (skipped, each named in a warning).

    Raises
    ------
    InputFileError
        No log at ``db`` or not an episode log.
    """
    from crampwatch.tools.review import open_log
    nights, missing = [], []
    with open_log(db) as elog:
        for night in elog.nights():
            counts: dict[int, list[int]] = {}
            for ep in elog.episodes(night["night_id"]):
                if ep["verdict"] in ("confirmed", "false") and ep["recording_id"] is not None:
                    c = counts.setdefault(int(ep["recording_id"]), [0, 0])
                    c[ep["verdict"] == "false"] += 1
            if not counts:
                continue
            ln = LabelledNight(int(night["night_id"]), str(night["night_date"]), [])
            for rec in elog.recordings(night["night_id"]):
                c = counts.get(int(rec["recording_id"]))
                if c is None:
                    continue
                if not os.path.isfile(rec["path"]):
                    log.warning("%s: recording of night %s with %d verdict(s) is missing: "
                                "skipped", rec["path"], ln.night_date, sum(c))
                    missing.append(rec["path"])
                    continue
                ln.paths.append(rec["path"])
                ln.confirmed += c[0]
                ln.false += c[1]
            if ln.paths:
                nights.append(ln)
    return nights, missing


def sleeper_nights(db: str, command: str = "tune"):
    """``(nights, missing, too_few)``: the log's nights with verdicts, the
    recordings whose files are gone, and the one-line reason there are too few
    nights for ``command`` (None when there are enough).  Every recording
    missing: an :class:`InputFileError`."""
    nights, missing = labelled_nights(db)
    if not nights and missing:
        raise InputFileError(f"{db}: every recording with verdicts is missing "
                             f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})",
                             path=missing[0])
    return nights, missing, too_few_message(nights, missing, db, command=command)


def too_few_message(nights: list[LabelledNight], missing: list[str], db: str,
                    command: str = "tune") -> str | None:
    """The one line said when fewer than :data:`MIN_NIGHTS` nights hold verdicts
    (None when there are enough)."""
    if len(nights) >= MIN_NIGHTS:
        return None
    n_verdicts = sum(n.verdicts for n in nights)
    gone = f" ({len(missing)} recording(s) with verdicts are missing)" if missing else ""
    return (f"{command} --db {db}: {len(nights)} night(s) with verdicts ({n_verdicts} "
            f"verdict(s)){gone}; at least {MIN_NIGHTS} are needed: mark the episodes of more "
            f"nights with 'crampwatch label ID --confirmed' or '--false' (ids from 'crampwatch "
            f"review --night DATE') and run it again; nothing was changed")


def default_tries() -> list[str]:
    """:data:`DEFAULT_TRIES`, with ``min_confidence=0,0.5`` where the detector has it."""
    from crampwatch.detector.config import DetectorConfig
    tries = list(DEFAULT_TRIES)
    if "min_confidence" in DetectorConfig.__dataclass_fields__:
        tries.append("min_confidence=0,0.5")
    return tries


def _grid_with_base(base, grid: list[tuple[str, list[str]]]):
    """Typed values of each tried setting, the value in effect added where missing
    (so the settings in effect are always a candidate); returns (names, combos,
    base_index)."""
    names, values = [], []
    for name, vals in grid:
        typed = []
        for v in vals:
            t = getattr(base.with_overrides([f"{name}={v}"]), name)
            if t not in typed:
                typed.append(t)
        current = getattr(base, name)
        if current not in typed:
            typed.append(current)
        names.append(name)
        values.append(typed)
    combos = list(itertools.product(*values))
    base_index = combos.index(tuple(getattr(base, n) for n in names))
    return names, combos, base_index


def _counts(metrics: list[dict]) -> dict:
    tp = sum(m["true_positives"] for m in metrics)
    fp = sum(m["false_positives"] for m in metrics)
    fn = sum(m["n_labelled"] - m["true_positives"] for m in metrics)
    hours = sum(m["hours"] for m in metrics)
    return _finish({"tp": tp, "fp": fp, "fn": fn, "hours": hours})


def _add(parts: list[dict]) -> dict:
    return _finish({k: sum(p[k] for p in parts) for k in ("tp", "fp", "fn", "hours")})


def _finish(c: dict) -> dict:
    denom = 2 * c["tp"] + c["fp"] + c["fn"]
    c["f1"] = 2 * c["tp"] / denom if denom else 1.0        # nothing to find, nothing found
    c["fp_per_h"] = c["fp"] / c["hours"] if c["hours"] > 0 else 0.0
    return c


def cross_validate(nights: list[LabelledNight], db: str, base, grid, *, emg=None, acc=None,
                   jobs=1, progress=None) -> TuningResult:
    """Replay every combination of ``grid`` over the labelled nights and
    cross-validate the choice by night (see the module docstring).

    Parameters
    ----------
    nights : list of LabelledNight
        From :func:`labelled_nights` (at least two).
    db : str
        The episode log holding the verdicts.
    base : DetectorConfig
        The settings in effect; the tried values are applied on top.
    grid : list of (name, [value text, ...])
        As :func:`crampwatch.tools.tune.parse_tries` gives it.
    emg, acc : channel labels as ``evaluate`` takes them.
    jobs : int or None
        Worker processes for the replays, as ``evaluate_files`` takes them (1: in
        this process).
    progress : callable or None
        Called with ``(i, n, description, pooled counts)`` after each combination.

    Raises
    ------
    ConfigError
        A tried value out of its range (checked before anything is replayed).
    """
    from crampwatch.tools.evaluate import evaluate_files
    names, combos, base_index = _grid_with_base(base, grid)
    configs = [base.replace(**dict(zip(names, c))) for c in combos]   # all checked first
    files = [p for n in nights for p in n.paths]
    night_of = [i for i, n in enumerate(nights) for _ in n.paths]
    kw = {"jobs": jobs} if jobs != 1 else {}
    # scores[c][k]: counts of combination c on night k
    scores = []
    for ci, cfg in enumerate(configs):
        _, per_file = evaluate_files(files, None, cfg, emg, acc, progress=False, db=db, **kw)
        by_night = [[] for _ in nights]
        for k, m in zip(night_of, per_file):
            by_night[k].append(m)
        scores.append([_counts(ms) for ms in by_night])
        if progress is not None:
            progress(ci + 1, len(configs), " ".join(f"{n}={v}" for n, v in zip(names, combos[ci])),
                     _add(scores[-1]))

    def best(night_ids: list[int]) -> int:
        def key(ci):
            c = _add([scores[ci][k] for k in night_ids])
            changed = sum(a != b for a, b in zip(combos[ci], combos[base_index]))
            return (-round(c["f1"], 9), round(c["fp_per_h"], 9), changed, ci)
        return min(range(len(combos)), key=key)

    per_night = []
    for k, night in enumerate(nights):
        chosen = best([j for j in range(len(nights)) if j != k])
        per_night.append({"night": night, "default": scores[base_index][k], "chosen": chosen,
                          "tuned": scores[chosen][k]})
    all_ids = list(range(len(nights)))
    best_index = best(all_ids)
    return TuningResult(
        names=names, combos=combos, base_index=base_index, nights=nights, per_night=per_night,
        cv_default=_add([r["default"] for r in per_night]),
        cv_tuned=_add([r["tuned"] for r in per_night]),
        best_index=best_index, best_all=_add([scores[best_index][k] for k in all_ids]),
        default_all=_add([scores[base_index][k] for k in all_ids]), configs=configs)


def default_output_path(config_path: str | None = None) -> str:
    """Where ``tune --db`` writes without ``--write``: :data:`TUNED_CONFIG_NAME` beside
    the config in effect (``--config``, else ``$CRAMPWATCH_CONFIG``, else
    ``crampwatch.toml`` in ``$CRAMPWATCH_HOME`` or the user config directory)."""
    from crampwatch.tools.capture.config import default_config_path
    where = config_path or default_config_path()
    return os.path.join(os.path.dirname(os.path.abspath(where)), TUNED_CONFIG_NAME)


def config_text(result: TuningResult, db: str, extra: dict | None = None) -> str:
    """The TOML written by ``tune --db``: a ``[detector]`` table with the tuned
    settings and every other setting in effect that differs from the defaults
    (so the file alone reproduces the tuned detector); ``extra`` adds keys
    (``model_file`` from ``train --db``)."""
    from crampwatch.detector.config import DetectorConfig
    from crampwatch.tools.config_cmd import toml_value
    cfg, defaults = result.best_cfg, DetectorConfig()
    n_verdicts = sum(n.verdicts for n in result.nights)
    d, t = result.cv_default, result.cv_tuned
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"# written by crampwatch tune --db {os.path.abspath(db)} at {now}",
        (f"# chosen on {len(result.nights)} nights with {n_verdicts} verdicts "
         f"({result.nights[0].night_date} to {result.nights[-1].night_date}); cross-validated "
         "by night:"),
        (f"#   settings in effect F1 {d['f1']:.3f}, {d['fp_per_h']:.2f} false cramps/h; "
         f"tuned F1 {t['f1']:.3f}, {t['fp_per_h']:.2f} false cramps/h"),
        ("# use it: crampwatch capture --config THIS_FILE (or copy the keys below into the "
         "[detector] table of your config)"),
        "[detector]",
    ]
    keys = list(result.names) + [n for n, _, _ in DetectorConfig.field_docs()
                                 if n not in result.names
                                 and getattr(cfg, n) != getattr(defaults, n)]
    values = {k: getattr(cfg, k) for k in keys}
    values.update(extra or {})
    for k, v in values.items():
        note = ""
        if k in result.names:
            before = getattr(result.configs[result.base_index], k)
            note = "  # tuned" + ("" if v != before else " (unchanged)")
        lines.append(f"{k} = {toml_value(v)}{note}")
    return "\n".join(lines) + "\n"


def _fmt_counts(c: dict) -> str:
    return f"{c['f1']:>5.3f} {c['tp']:>3d} {c['fp']:>3d} {c['fn']:>3d}"


def print_result(result: TuningResult, out=None) -> None:
    """The per-night table, the cross-validated scores and the best settings."""
    out = out or sys.stdout
    print(f"settings in effect: {result.describe(result.base_index)}", file=out)
    print(f"{'':<10} {'':>8}  {'in effect':^17}  {'tuned':^17}", file=out)
    print(f"{'night':<10} {'verdicts':>8}  {'F1':>5} {'TP':>3} {'FP':>3} {'FN':>3}  "
          f"{'F1':>5} {'TP':>3} {'FP':>3} {'FN':>3}  chosen on the other nights", file=out)
    for r in result.per_night:
        n = r["night"]
        print(f"{n.night_date:<10} {f'{n.confirmed}+{n.false}':>8}  "
              f"{_fmt_counts(r['default'])}  {_fmt_counts(r['tuned'])}  "
              f"{result.changes(r['chosen'])}", file=out)
    print("verdicts: confirmed+false; TP/FP/FN: cramps found / false cramps / cramps missed",
          file=out)
    d, t = result.cv_default, result.cv_tuned
    print(f"cross-validated by night ({len(result.nights)} nights, each scored with the "
          "settings chosen on the others):", file=out)
    print(f"  settings in effect: F1 {d['f1']:.3f}, {d['fp_per_h']:.2f} false cramps/h "
          f"({d['tp']} found, {d['fn']} missed, {d['fp']} false)", file=out)
    print(f"  tuned:              F1 {t['f1']:.3f}, {t['fp_per_h']:.2f} false cramps/h "
          f"({t['tp']} found, {t['fn']} missed, {t['fp']} false)", file=out)
    print(f"best on all nights: {result.changes(result.best_index)} (F1 "
          f"{result.best_all['f1']:.3f}; in effect {result.default_all['f1']:.3f})", file=out)


def run_db(args) -> int:
    """``crampwatch tune --db LOG``: gather, cross-validate, print, write."""
    from crampwatch._files import atomic_private_write, check_output_path
    from crampwatch.errors import ConfigError
    from crampwatch.tools._run import parse_acc_labels
    from crampwatch.tools.capture.config import load_config
    from crampwatch.tools.tune import parse_tries
    if args.files or args.labels:
        raise ConfigError("tune --db LOG takes its recordings and labels from the log: give "
                          "either FILE... --labels or --db, not both", key="db")
    db = args.db
    base = load_config(args.config, args.overrides).detector
    grid = parse_tries(args.tries or default_tries())
    _grid_with_base(base, grid)                      # every value checked before reading
    acc = parse_acc_labels(args.acc)
    nights, missing, too_few = sleeper_nights(db)
    if too_few:
        print(f"crampwatch: {too_few}", file=sys.stderr)
        return TOO_FEW_EXIT
    out_path = args.write or default_output_path(args.config)
    inputs = [db, db + "-wal", db + "-shm", args.config, *[p for n in nights for p in n.paths]]
    check_output_path(out_path, inputs, "--write")

    def progress(i, n, what, c):
        print(f"[{i}/{n}] {what}: F1 {c['f1']:.3f}, {c['fp_per_h']:.2f} false/h on "
              f"{len(nights)} nights", file=sys.stderr)

    result = cross_validate(nights, db, base, grid, emg=args.emg, acc=acc,
                            jobs=getattr(args, "jobs", 1), progress=progress)
    print_result(result)
    from crampwatch._files import ensure_private_dir
    ensure_private_dir(os.path.dirname(os.path.abspath(out_path)))
    with atomic_private_write(out_path, "w", encoding="utf-8") as fh:    # 0600
        fh.write(config_text(result, db))
    print(f"wrote {out_path}: use it with 'crampwatch capture --config {out_path}' (or copy "
          "its [detector] keys into your config)")
    return 0
