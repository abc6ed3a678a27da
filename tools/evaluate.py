"""``crampwatch evaluate``: detection metrics of the pipeline against labels."""

from __future__ import annotations

import json
import os
import sys

from crampwatch.detector.evaluation import score
from crampwatch.errors import InputFileError
from crampwatch.tools._run import load_config, parse_acc_labels, run_recording

HELP = "score the detector against labelled recordings (precision, recall, onset error...)"
DESCRIPTION = """Replay each recording and compare the episodes with its labels. A labelled
cramp counts as found when a reported episode overlaps it with intersection-over-union >= 0.3;
every other reported episode is a false positive, counted per distractor kind it overlaps."""


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


def default_labels_path(path: str) -> str:
    stem, _ = os.path.splitext(path)
    return stem + ".labels.csv"


def evaluate_files(files, labels_files, cfg, emg=None, acc=None, min_iou=0.3, progress=None):
    """Replay and score; returns (pooled metrics, per-file metrics)."""
    from crampwatch.firmware_bridge.labels import read_labels
    if labels_files is None:
        labels_files = [default_labels_path(f) for f in files]
    if len(labels_files) != len(files):
        raise InputFileError(f"--labels: {len(labels_files)} labels files for {len(files)} recordings")
    pooled_eps, pooled_labels, total_s, per_file = [], [], 0.0, []
    for path, lab_path in zip(files, labels_files):
        labels = [(lb.kind, lb.onset_s, lb.offset_s) for lb in read_labels(lab_path)]
        res = run_recording(path, cfg, emg=emg, acc=acc, progress=progress)
        eps = [(e.onset_s, e.offset_s) for e in res.episodes]
        m = score(eps, labels, res.duration_s, min_iou)
        m["file"] = path
        per_file.append(m)
        pooled_eps += [(a + total_s, b + total_s) for a, b in eps]
        pooled_labels += [(k, a + total_s, b + total_s) for k, a, b in labels]
        total_s += res.duration_s + 3600.0     # an hour apart: nothing overlaps across files
    pooled = score(pooled_eps, pooled_labels, total_s - 3600.0 * len(files), min_iou)
    return pooled, per_file


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    pooled, per_file = evaluate_files(args.files, args.labels, cfg, args.emg,
                                      parse_acc_labels(args.acc), args.min_iou)
    out = sys.stdout
    for m in per_file:
        print(f"{m['file']}: {m['true_positives']}/{m['n_labelled']} cramps found, "
              f"{m['false_positives']} false positive(s), F1 {m['f1']:.3f}", file=out)
    p = pooled
    print(f"\nall {len(per_file)} recording(s), {p['hours']:.2f} h:", file=out)
    rows = [
        ("cramps labelled / reported", f"{p['n_labelled']} / {p['n_reported']}"),
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
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"pooled": pooled, "files": per_file}, fh, indent=2)
    return 0
