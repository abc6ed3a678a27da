"""``crampwatch evaluate``: detection metrics of the pipeline against labels."""

from __future__ import annotations

import json
import os
import sys

from crampwatch._files import atomic_private_write, check_output_path
from crampwatch.detector.evaluation import score
from crampwatch.errors import InputFileError
from crampwatch.tools._run import load_config, parse_acc_labels

HELP = "score the detector against labelled recordings (precision, recall, onset error...)"
DESCRIPTION = """Replay each recording and compare the episodes with its labels. A labelled
cramp counts as found when a reported episode overlaps it with intersection-over-union >= 0.3;
every other reported episode is a false positive, counted per distractor kind it overlaps.
With --db LOG the user's verdicts in the episode log are labels too ('crampwatch label'):
confirmed episodes are cramps, episodes marked false are distractors ('user_false'), and
reported episodes that only overlap episodes without a verdict are left out of the scoring."""


def add_arguments(p) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="recordings")
    p.add_argument("--labels", nargs="+", metavar="LABELS",
                   help="labels files (CSV kind,onset_s,offset_s,note or JSON Lines), one per "
                        "recording in the same order (default: FILE's stem + .labels.csv)")
    p.add_argument("--emg", metavar="LABEL")
    p.add_argument("--acc", metavar="X,Y,Z")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--min-iou", type=float, default=0.3)
    p.add_argument("--json", metavar="OUT.json", help="write all metrics as JSON")
    p.add_argument("--list", action="store_true", help="list every false positive and miss")
    p.add_argument("--db", metavar="LOG",
                   help="use the verdicts stored in this episode log ('crampwatch label') as "
                        "labels of recordings replayed into it (with --labels: both)")
    p.add_argument("--compare", action="store_true",
                   help="run both classifiers (rules and model) on the same recordings and "
                        "show them side by side")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes replaying the recordings (default: every core)")


def default_labels_path(path: str) -> str:
    stem, _ = os.path.splitext(path)
    return stem + ".labels.csv"


def evaluate_files(files, labels_files, cfg, emg=None, acc=None, min_iou=0.3, progress=None,
                   db=None, jobs=1, cluster=None):
    """Replay and score; returns (pooled metrics, per-file metrics).

    With ``db`` (an episode log path) the verdicts stored there label each
    recording too (see :func:`crampwatch.tools.label.verdict_labels`); then
    ``labels_files`` None means "verdicts only".

    The recordings go through the batch engine (:mod:`crampwatch.tools._engine`):
    ``jobs`` worker processes (1, the default: in this process; None: every
    core) or the Dask scheduler at ``cluster``; the metrics do not depend on
    which.  The first recording (in ``files`` order) that fails raises its error.
    """
    from crampwatch.firmware_bridge.labels import read_labels
    from crampwatch.tools._engine import Job, run_jobs
    from crampwatch.tools._sites_eval import labels_for_site
    if labels_files is None and db is None:
        labels_files = [default_labels_path(f) for f in files]
    if labels_files is not None and len(labels_files) != len(files):
        raise InputFileError(f"--labels: {len(labels_files)} labels files for {len(files)} recordings")
    verdicts = _verdicts(db, files) if db is not None else None
    all_labels, unreviewed = [], []
    for i, path in enumerate(files):       # every labels file read before the long part
        file_labels = read_labels(labels_files[i]) if labels_files is not None else []
        verdict = verdicts[i][0] if verdicts is not None else []
        all_labels.append((file_labels, verdict))
        unreviewed.append(verdicts[i][1] if verdicts is not None else [])
    results = run_jobs([Job(path, cfg, emg=emg, acc=acc) for path in files], n_jobs=jobs,
                       cluster=cluster, progress=progress, on_error="raise")
    units = []
    for i, (path, res) in enumerate(zip(files, results)):
        for ch in res.channels:         # each watched channel against its site's labels
            file_labels, verdict = all_labels[i]
            labels = labels_for_site(file_labels, ch.site) + list(verdict)
            eps = [(a, b) for a, b, st in ch.spans if st != "uncertain"]   # kept, not counted
            n_uncertain = len(ch.spans) - len(eps)
            skipped = 0
            if unreviewed[i]:   # no verdict yet: neither a hit nor a false positive
                keep = [e for e in eps if _overlaps_any(e, [(a, b) for _, a, b in labels])
                        or not _overlaps_any(e, unreviewed[i])]
                skipped = len(eps) - len(keep)
                eps = keep
            unit = {"file": path, "episodes": eps, "labels": labels,
                    "duration_s": ch.duration_s, "extra": {"n_uncertain": n_uncertain}}
            if len(res.channels) > 1:
                unit["channel"] = ch.channel
                unit["extra"]["site"] = ch.site
            if verdicts is not None:
                unit["extra"].update(verdict_labels=len(verdicts[i][0]),
                                     unreviewed_skipped=skipped)
            units.append(unit)
    return score_set(units, min_iou)


def score_set(units, min_iou=0.3):
    """Per-unit and pooled metrics of a set of scored recordings (or channels).

    ``units``: dicts with ``file``, ``episodes`` [(onset_s, offset_s)],
    ``labels`` [(kind, onset_s, offset_s)], ``duration_s``, optionally
    ``channel`` and ``extra`` (copied into the unit's metrics).  The pooled
    metrics put the units end to end, an hour apart, so nothing overlaps across
    them.  Returns (pooled, per_unit)."""
    pooled_eps, pooled_labels, total_s, per_file = [], [], 0.0, []
    for u in units:
        eps, labels = u["episodes"], u["labels"]
        m = score(eps, labels, u["duration_s"], min_iou)
        m["file"] = u["file"]
        if "channel" in u:
            m["channel"] = u["channel"]
        m.update(u.get("extra", {}))
        per_file.append(m)
        pooled_eps += [(a + total_s, b + total_s) for a, b in eps]
        pooled_labels += [(k, a + total_s, b + total_s) for k, a, b in labels]
        total_s += u["duration_s"] + 3600.0     # an hour apart: nothing overlaps across files
    pooled = score(pooled_eps, pooled_labels, total_s - 3600.0 * len(units), min_iou)
    return pooled, per_file


def _overlaps_any(ep, spans) -> bool:
    return any(min(ep[1], b) > max(ep[0], a) for a, b in spans)


def _verdicts(db: str, files):
    """Per file: (verdict labels, unreviewed episode spans) from the episode log."""
    from crampwatch.tools.label import verdict_labels
    from crampwatch.tools.review import open_log
    out = []
    with open_log(db) as log:
        for path in files:
            v = verdict_labels(log, path)
            if v is None:
                raise InputFileError(f"{path}: not in the episode log {db}: replay it into the "
                                     f"log first ('crampwatch replay {path} --db {db}')",
                                     path=path)
            if not v[0]:
                raise InputFileError(f"{path}: no verdicts in the episode log {db} yet: mark "
                                     f"its episodes with 'crampwatch label ID --confirmed' or "
                                     f"'--false' first", path=path)
            out.append(v)
    return out


def run(args) -> int:
    labels = args.labels if args.labels is not None else [default_labels_path(f)
                                                           for f in args.files]
    inputs = [*args.files, *labels, args.config, getattr(args, "db", None)]
    check_output_path(args.json, inputs, "--json")
    cfg = load_config(args.config, args.overrides)
    if getattr(args, "compare", False):
        return _compare(args, cfg)
    pooled, per_file = evaluate_files(args.files, args.labels, cfg, args.emg,
                                      parse_acc_labels(args.acc), args.min_iou,
                                      db=getattr(args, "db", None),
                                      jobs=getattr(args, "jobs", 1))
    pooled["n_uncertain"] = sum(m.get("n_uncertain", 0) for m in per_file)
    out = sys.stdout
    for m in per_file:
        extra = ""
        if "verdict_labels" in m:
            extra = f" ({m['verdict_labels']} verdict(s) from the log"
            if m["unreviewed_skipped"]:
                extra += f", {m['unreviewed_skipped']} episode(s) without a verdict left out"
            extra += ")"
        where = f" [{m['site']}]" if m.get("site") else ""
        print(f"{m['file']}{where}: {m['true_positives']}/{m['n_labelled']} cramps found, "
              f"{m['false_positives']} false positive(s), F1 {m['f1']:.3f}{extra}", file=out)
    p = pooled
    n_files = len({m["file"] for m in per_file})
    chans = f", {len(per_file)} channels" if len(per_file) > n_files else ""
    print(f"\nall {n_files} recording(s){chans}, {p['hours']:.2f} channel-hours:"
          if chans else f"\nall {n_files} recording(s), {p['hours']:.2f} h:", file=out)
    rows = [
        ("cramps labelled / reported", f"{p['n_labelled']} / {p['n_reported']}"),
        ("uncertain (kept, not counted)", f"{p['n_uncertain']}"),
        ("precision / recall / F1", f"{p['precision']:.3f} / {p['recall']:.3f} / {p['f1']:.3f}"),
        ("onset error median / p95 (s)", f"{p['onset_error_median_s']:.2f} / {p['onset_error_p95_s']:.2f}"),
        ("offset error median / p95 (s)", f"{p['offset_error_median_s']:.2f} / {p['offset_error_p95_s']:.2f}"),
        ("duration error median / p95 (s)", f"{p['duration_error_median_s']:.2f} / {p['duration_error_p95_s']:.2f}"),
        ("false positives per hour", f"{p['false_positives_per_hour']:.3f}"),
        ("false positives by kind", ", ".join(f"{k}: {v}" for k, v in
                                              sorted(p["false_positives_by_kind"].items())) or "none"),
    ]
    for k, v in rows:
        print(f"  {k:<33} {v}", file=out)
    if args.list:
        for fp in p["false_positive_list"]:
            print(f"  false positive {fp['onset_s']:.1f}-{fp['offset_s']:.1f} s ({fp['overlaps']})",
                  file=out)
        for ms in p["missed_list"]:
            print(f"  missed cramp {ms['onset_s']:.1f}-{ms['offset_s']:.1f} s", file=out)
    if args.json:
        with atomic_private_write(args.json, "w", encoding="utf-8") as fh:    # 0600
            json.dump({"pooled": pooled, "files": per_file}, fh, indent=2)
    return 0


def _compare(args, cfg) -> int:
    """Both classifiers on the same recordings: one table, a column each."""
    from crampwatch.detector.config import CLASSIFIERS
    res = {}
    for name in CLASSIFIERS:
        pooled, per_file = evaluate_files(args.files, args.labels, cfg.replace(classifier=name),
                                          args.emg, parse_acc_labels(args.acc), args.min_iou,
                                          db=getattr(args, "db", None),
                                          jobs=getattr(args, "jobs", 1))
        pooled["n_uncertain"] = sum(m.get("n_uncertain", 0) for m in per_file)
        res[name] = (pooled, per_file)
    out = sys.stdout
    first = res[CLASSIFIERS[0]][0]
    print(f"all {len(args.files)} recording(s), {first['hours']:.2f} h, "
          f"{first['n_labelled']} cramps labelled:", file=out)
    rows = [("", lambda p: ""),
            ("reported (counted)", lambda p: f"{p['n_reported']}"),
            ("uncertain (kept, not counted)", lambda p: f"{p['n_uncertain']}"),
            ("true / false positives", lambda p: f"{p['true_positives']} / {p['false_positives']}"),
            ("precision", lambda p: f"{p['precision']:.3f}"),
            ("recall", lambda p: f"{p['recall']:.3f}"),
            ("F1", lambda p: f"{p['f1']:.3f}"),
            ("false positives per hour", lambda p: f"{p['false_positives_per_hour']:.3f}"),
            ("onset error median (s)", lambda p: f"{p['onset_error_median_s']:.2f}")]
    for label, fn in rows:
        cells = [name if not label else fn(res[name][0]) for name in CLASSIFIERS]
        print(f"  {label:<31} " + "".join(f"{c:>10}" for c in cells), file=out)
    if args.json:
        with atomic_private_write(args.json, "w", encoding="utf-8") as fh:    # 0600
            json.dump({name: {"pooled": p, "files": f} for name, (p, f) in res.items()}, fh,
                      indent=2)
    return 0
