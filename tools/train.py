"""``crampwatch train --db LOG``: refit the candidate model on one sleeper's
labelled nights, on top of the shipped training data.

Every candidate the rule chain proposes in the recordings of the nights with
verdicts (as ``classifier=model`` sees it, :mod:`crampwatch.tools._candidates`)
is matched to the verdicts by overlap (intersection-over-union >= 0.3):
matching a confirmed episode makes it a cramp, a false one not; a candidate
matching no verdict is left out.  These rows are fitted together with the
shipped table (:func:`crampwatch.models.fit_model` with ``base_rows``; the
sleeper's rows together weigh as much as the shipped ones), seeded.  The model
is written beside the config (``models/cramp_candidate_personal_DATE.json``
in the config's directory, or ``--out``), never over a shipped model file;
set ``model_file`` to it (printed) to use it.  With fewer than 5 nights with
verdicts it says so in one line, writes nothing and exits with status 1.

Examples
--------
>>> from crampwatch.tools.cli import main
>>> main(["train", "--db", "episodes.sqlite"])           # doctest: +SKIP
5 nights with 12 verdicts: 12 candidates matched a verdict (9 cramp, 3 not; 24 rows) ...
0
"""

from __future__ import annotations

import os
import sys
from datetime import date


HELP = "refit the candidate model on your labelled nights (on top of the shipped one)"
DESCRIPTION = __doc__.split("\nExamples")[0]

#: a candidate takes the label of the verdict it overlaps by at least this IoU
MIN_IOU = 0.3


def add_arguments(p) -> None:
    p.add_argument("--db", metavar="LOG", required=True,
                   help="the episode log with your verdicts ('crampwatch label')")
    p.add_argument("--out", metavar="MODEL.json",
                   help="where to write the model (default: models/cramp_candidate_personal_"
                        "DATE.json beside the config)")
    p.add_argument("--config", metavar="FILE", help="TOML config ([detector]) in effect")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--emg", metavar="LABEL")
    p.add_argument("--acc", metavar="X,Y,Z")


def default_model_path(config_path: str | None = None, today: date | None = None) -> str:
    """``models/cramp_candidate_personal_<date>.json`` in the directory of the config in
    effect (``$CRAMPWATCH_HOME/models/...`` when that is set)."""
    from crampwatch.tools.capture.config import default_config_path
    where = os.path.dirname(os.path.abspath(config_path or default_config_path()))
    day = (today or date.today()).isoformat()
    return os.path.join(where, "models", f"cramp_candidate_personal_{day}.json")


def shipped_model_files() -> list[str]:
    """Paths of the model files shipped in :mod:`crampwatch.models` (never written over)."""
    from importlib import resources
    folder = resources.files("crampwatch.models")
    return [os.fspath(f) for f in folder.iterdir() if f.name.endswith(".json")]


def own_rows(nights, db: str, cfg, emg=None, acc=None) -> list[dict]:
    """Table rows (:mod:`crampwatch.models.table`) of the candidates of the labelled
    nights' recordings that overlap a verdict."""
    from crampwatch.detector import Pipeline
    from crampwatch.detector.evaluation import iou
    from crampwatch.tools._candidates import collect_candidates_full
    from crampwatch.tools.label import verdict_labels
    from crampwatch.tools.review import open_log
    cand_cfg = cfg.replace(**Pipeline.MODEL_CANDIDATE_CHANGES)
    rows = []
    for night in nights:
        for path in night.paths:
            with open_log(db) as log:
                labels, _ = verdict_labels(log, path)
            for c in collect_candidates_full(path, cand_cfg, emg, acc):
                best, label = 0.0, None
                for kind, a, b in labels:
                    v = iou((c.onset_s, c.offset_s), (a, b))
                    if v >= MIN_IOU and v > best:
                        best, label = v, int(kind == "cramp")
                if label is None:
                    continue
                for stage, t_s, f in (("confirm", c.confirm_s, c.features),
                                      ("end", c.offset_s, c.end_features)):
                    rows.append({"source": "own", "family": night.night_date, "seed": 0,
                                 "stage": stage, "onset_s": float(c.onset_s),
                                 "t_s": float(t_s), "label": label,
                                 **{k: float(v) for k, v in f.items()}})
    return rows


def run(args) -> int:
    from crampwatch._files import check_output_path, ensure_private_dir
    from crampwatch.models import fit_model, load_model
    from crampwatch.models.table import shipped_table
    from crampwatch.tools._personal import TOO_FEW_EXIT, sleeper_nights
    from crampwatch.tools._run import parse_acc_labels
    from crampwatch.tools.capture.config import load_config
    from crampwatch.tools.config_cmd import toml_value

    db = args.db
    cfg = load_config(args.config, args.overrides).detector
    acc = parse_acc_labels(args.acc)
    nights, missing, too_few = sleeper_nights(db, command="train")
    if too_few:
        print(f"crampwatch: {too_few}", file=sys.stderr)
        return TOO_FEW_EXIT
    out = args.out or default_model_path(args.config)
    inputs = [db, db + "-wal", db + "-shm", args.config, *[p for n in nights for p in n.paths]]
    for shipped in shipped_model_files():
        check_output_path(out, [shipped], "--out (a shipped model)")
    check_output_path(out, inputs, "--out")
    rows = own_rows(nights, db, cfg, args.emg, acc)
    n_verdicts = sum(n.verdicts for n in nights)
    if not rows:
        print(f"crampwatch: train --db {db}: no candidate of the {len(nights)} labelled nights "
              f"matches one of the {n_verdicts} verdicts; nothing was changed", file=sys.stderr)
        return TOO_FEW_EXIT
    n_pos = sum(r["label"] for r in rows if r["stage"] == "confirm")
    n_cand = sum(r["stage"] == "confirm" for r in rows)
    base = shipped_table()
    model = fit_model(rows, base_rows=base, seed=0, training={
        "personal": True, "nights": [n.night_date for n in nights], "verdicts": n_verdicts,
        "based_on": load_model().name})
    ensure_private_dir(os.path.dirname(os.path.abspath(out)))
    model.save(out)                                   # 0600, atomic
    load_model(out)                                   # what capture will do: must load
    print(f"{len(nights)} nights with {n_verdicts} verdicts: {n_cand} candidates matched a "
          f"verdict ({n_pos} cramp, {n_cand - n_pos} not; {len(rows)} rows) fitted on top of "
          f"the {len(base)} shipped rows")
    print(f"wrote {out}; to use it, put in the [detector] table of your config:")
    print(f"model_file = {toml_value(os.path.abspath(out))}")
    return 0
