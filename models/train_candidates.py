"""Train the candidate model (run by hand; writes the model, its table and its card).

    python models/train_candidates.py                 # the shipped model, ~5 min on 2 cores
    python models/train_candidates.py --cache /root/cws/cache --jobs 2

Data (seeded, reproducible):

* simulated nights of every family of ``randomized_spec`` (tidy, board,
  behaviour, faults, strength, shifted), tuning seeds :data:`SIM_SEEDS`,
  :data:`SIM_HOURS` h each, plus the same nights of seeds :data:`EMG_ONLY_SEEDS`
  with the accelerometer left out; a candidate whose episode overlaps a
  labelled cramp with IoU >= 0.3 is a cramp (1), every other one 0;
* every real recording in ``../shared/data`` whose labels allow it:
  ``elderly_isometric`` holds of the VL, BF and GL tasks on their own muscle
  (20 subjects, each between 20 s of rest, ``min_duration_s=5``: a candidate
  overlapping the hold is a sustained contraction, 1); ``santuz_walking``, the
  10 leg muscles other than GM/GL/SO (which detection_report keeps for testing),
  bouts of 60 s of walking (0); ``uci_lower_limb`` gait and standing, all four
  thigh muscles (0); ``psg_nox`` both leg channels (0).  The TA holds and the
  GM/GL/SO walking are left out: detection_report.py tests on them.
  ``physionet_emgdb`` (needle EMG, no labels of what is held) is not used.

Candidates are those the model path sees (``Pipeline.MODEL_CANDIDATE_CHANGES``
applied to the default configuration: more permissive than the rules); each
gives a row at the moment the rules would confirm it and one at its end.  Leave-one-source-out validation
(each simulated family and each real data set held out in turn) goes into
``MODEL_CARD.md``, which this script writes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import multiprocessing
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")
SIM_SEEDS = range(1, 13)
EMG_ONLY_SEEDS = range(1, 5)
SIM_HOURS = 1.0
HOLD_REST_S = 20.0
HOLD_MIN_DURATION_S = 5.0
WALK_BOUT_S = 60.0
WALK_TEST_MUSCLES = ("GM", "GL", "SO")
EXTRACTION = "1"      # bump when the extraction changes (the cache key)


# ----------------------------------------------------------------------- candidates
def candidate_config(**changes):
    """The model path's candidates: ``Pipeline.MODEL_CANDIDATE_CHANGES`` on the defaults
    (the PLM and standing-after-walking protections off, looser tonic thresholds), so
    that the near-misses the rules reject give the model its negatives."""
    from crampwatch.detector import DetectorConfig, Pipeline
    return DetectorConfig().replace(**Pipeline.MODEL_CANDIDATE_CHANGES).replace(**changes)


def rows_of(cands, source, family, seed, spans, min_iou=0.3):
    """Table rows of candidates; label 1 if the episode matches a span (IoU)."""
    from crampwatch.detector.evaluation import iou
    rows = []
    for c in cands:
        y = int(any(iou((c.onset_s, c.offset_s), s) >= min_iou for s in spans))
        for stage, t_s, f in (("confirm", c.confirm_s, c.features),
                              ("end", c.offset_s, c.end_features)):
            rows.append({"source": source, "family": family, "seed": seed, "stage": stage,
                         "onset_s": float(c.onset_s), "t_s": float(t_s), "label": y,
                         **{k: float(v) for k, v in f.items()}})
    return rows


def sim_rows(task) -> list[dict]:
    """Rows of one simulated night: ``(family, seed, hours, emg_only)``."""
    family, seed, hours, emg_only = task
    from crampwatch.firmware_bridge.synth import SyntheticNight, randomized_spec
    from crampwatch.tools._candidates import collect_night
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)        # the band-pass warnings of low-rate boards
    try:
        night = SyntheticNight(randomized_spec(seed, family, hours=hours))
        if emg_only:
            night.has_accelerometer = False
        cramps = [(lb.onset_s, lb.offset_s) for lb in night.labels if lb.kind == "cramp"]
        cands = collect_night(night, candidate_config())
    finally:
        logging.disable(before)
    return rows_of(cands, f"sim:{family}", family + (", EMG only" if emg_only else ""), seed,
                   cramps)


def _mirror_rest(piece, n):
    p = np.asarray(piece, float) - float(np.mean(piece))
    cycle = np.concatenate([p, p[::-1]])
    return np.tile(cycle, n // cycle.size + 1)[:n]


def _band_rms(x, fs):
    from scipy import signal
    sos = signal.butter(4, [20.0, min(450.0, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, x)


def _quietest(x, fs, win_s=2.0):
    y = _band_rms(x, fs)
    w, hop = int(win_s * fs), max(1, int(win_s * fs / 4))
    starts = list(range(0, len(x) - w + 1, hop))
    rms = [float(np.sqrt(np.mean(y[i:i + w] ** 2))) for i in starts]
    k = int(np.argmin(rms))
    return x[starts[k]:starts[k] + w], rms[k]


def real_holds_rows(data_dir) -> list[dict]:
    from crampwatch.tools._candidates import collect_arrays
    folder = os.path.join(data_dir, "elderly_isometric")
    cfg = candidate_config(min_duration_s=HOLD_MIN_DURATION_S)
    rows = []
    for s in range(1, 21):
        with np.load(os.path.join(folder, f"subject{s:02d}.npz"), allow_pickle=False) as d:
            fs = float(d["fs_hz"])
            cols = [str(c) for c in d["channels"]]
            tasks = {k: d[f"emg_uv_{k}_task"].astype(float) for k in ("vl", "bf", "ta", "gl")}
        noise = tasks["ta"][:, cols.index("GL")]
        for task in ("vl", "bf", "gl"):
            ch = cols.index(task.upper())
            hold = tasks[task][:, ch]
            quiet = [_quietest(tasks[o][:, ch], fs) for o in tasks if o != task]
            piece, level = min(quiet, key=lambda q: q[1])
            if level > 10.0:
                piece = noise
            rest = _mirror_rest(piece, int(HOLD_REST_S * fs))
            x = np.concatenate([rest, hold - np.mean(hold), rest])
            span = (HOLD_REST_S, HOLD_REST_S + hold.size / fs)
            cands = collect_arrays(cfg, x, fs)
            rows += rows_of(cands, "real:elderly_isometric", f"{task} hold", s, [span])
    return rows


def _amplifier_rest(data_dir, fs, n):
    from scipy import signal
    with np.load(os.path.join(data_dir, "elderly_isometric", "subject01.npz"),
                 allow_pickle=False) as d:
        cols = [str(c) for c in d["channels"]]
        gl = d["emg_uv_ta_task"][:, cols.index("GL")].astype(float)
        src = float(d["fs_hz"])
    return _mirror_rest(signal.resample_poly(gl, int(fs), int(src)), n)


def real_walking_rows(data_dir) -> list[dict]:
    from crampwatch.tools._candidates import collect_arrays
    folder = os.path.join(data_dir, "santuz_walking")
    with open(os.path.join(folder, "ID0012_TW_01_emg.csv"), newline="") as fh:
        reader = csv.reader(fh)
        names = next(reader)
        data = np.array([[float(v) for v in row] for row in reader])
    with open(os.path.join(folder, "ID0012_TW_01_cycles.csv"), newline="") as fh:
        touchdown = np.array([float(r["touchdown_s"]) for r in csv.DictReader(fh)])
    t = data[:, 0]
    fs = float(round(1.0 / float(np.median(np.diff(t)))))
    rest = _amplifier_rest(data_dir, fs, int(15.0 * fs))
    a, b = np.searchsorted(t, touchdown[0]), np.searchsorted(t, touchdown[-1])
    cfg = candidate_config()
    rows = []
    for m in names[1:]:
        if m in WALK_TEST_MUSCLES:
            continue
        x = data[a:b, names.index(m)]
        cyc = x - np.mean(x)
        walk = np.tile(cyc, int(np.ceil(WALK_BOUT_S * fs / cyc.size)))[: int(WALK_BOUT_S * fs)]
        cands = collect_arrays(cfg, np.concatenate([rest, walk, rest]), fs)
        rows += rows_of(cands, "real:santuz_walking", m, 0, [])
    return rows


def real_uci_rows(data_dir) -> list[dict]:
    from crampwatch.tools._candidates import collect_arrays
    folder = os.path.join(data_dir, "uci_lower_limb")
    cfg = candidate_config()
    rows = []
    for name in ("3Amar", "3Apie", "5Nmar", "5Npie"):
        with open(os.path.join(folder, f"{name}.txt"), encoding="latin-1") as fh:
            lines = fh.read().splitlines()
        body = [ln.split("\t") for ln in lines if ln[:1] in "-0123456789." and "\t" in ln]
        for ch, muscle in enumerate(("RF", "BF", "VM", "ST")):
            vals = [float(c[ch]) * 1000.0 for c in body if len(c) > ch and c[ch].strip()]
            x = np.array(vals)
            if x.size < 5000:
                continue
            rest = _amplifier_rest(data_dir, 1000.0, 15000)
            cands = collect_arrays(cfg, np.concatenate([rest, x - np.mean(x), rest]), 1000.0)
            rows += rows_of(cands, "real:uci_lower_limb", f"{name} {muscle}", 0, [])
    return rows


def real_psg_rows(data_dir) -> list[dict]:
    from crampwatch.tools._candidates import collect_candidates_full
    path = os.path.join(data_dir, "psg_nox", "subject1.edf")
    rows = []
    for leg in ("Right Leg", "Left Leg"):
        cands = collect_candidates_full(path, candidate_config(), emg=leg)
        rows += rows_of(cands, "real:psg_nox", leg, 0, [])
    return rows


REAL = {"elderly_isometric": real_holds_rows, "santuz_walking": real_walking_rows,
        "uci_lower_limb": real_uci_rows, "psg_nox": real_psg_rows}


def sim_tasks():
    from crampwatch.firmware_bridge.synth import FAMILIES
    tasks = [(f, s, SIM_HOURS, False) for f in FAMILIES for s in SIM_SEEDS]
    tasks += [(f, s, SIM_HOURS, True) for f in FAMILIES for s in EMG_ONLY_SEEDS]
    return tasks


def _cached(cache, key, fn, arg):
    if cache is None:
        return fn(arg)
    path = os.path.join(cache, hashlib.sha256(f"{EXTRACTION}|{key}".encode()).hexdigest()[:20]
                        + ".json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    rows = fn(arg)
    os.makedirs(cache, exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(rows, fh)
    os.replace(path + ".tmp", path)
    return rows


def _sim_job(a):
    task, cache = a
    return _cached(cache, f"sim {task}", sim_rows, task)


def build_table(data_dir=DATA, cache=None, jobs=2, log=print) -> list[dict]:
    tasks = sim_tasks()
    rows = []
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for r in pool.imap(_sim_job, [(t, cache) for t in tasks]):
                rows += r
    else:
        for t in tasks:
            rows += _sim_job((t, cache))
    log(f"simulated: {len(tasks)} nights, {len(rows)} rows")
    for name, fn in REAL.items():
        if not os.path.isdir(os.path.join(data_dir, name)):
            log(f"real: {name} not present: left out")
            continue
        r = _cached(cache, f"real {name} {os.path.abspath(data_dir)}", fn, data_dir)
        log(f"real: {name}: {len(r)} rows")
        rows += r
    return rows


# ----------------------------------------------------------------------- validation
def _auc(y, p):
    y, p = np.asarray(y), np.asarray(p)
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    return float(gt)


def leave_one_source_out(rows) -> list[dict]:
    from crampwatch.models.fit import THRESHOLD, design, fit_arrays
    out = []
    for src in sorted({r["source"] for r in rows}):
        train = [r for r in rows if r["source"] != src]
        test = [r for r in rows if r["source"] == src and r["stage"] == "confirm"]
        ytr = np.array([r["label"] for r in train])
        mean, scale, coef, b = fit_arrays(design(train), ytr)
        z = ((design(test) - mean) / scale) @ coef + b
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        y = np.array([r["label"] for r in test])
        pred = p >= THRESHOLD
        tp = int((pred & (y == 1)).sum())
        fp = int((pred & (y == 0)).sum())
        fn = int((~pred & (y == 1)).sum())
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if tp else (0.0 if (y == 1).any() else float("nan"))
        out.append({"source": src, "candidates": len(test), "cramps": int(y.sum()),
                    "precision": prec, "recall": rec, "f1": f1, "auc": _auc(y, p),
                    "false_accepted": fp, "negatives": int((y == 0).sum())})
    return out


# ----------------------------------------------------------------------- model card
def _f(x):
    return "-" if x is None or x != x else f"{x:.2f}"


def write_card(path, model, rows, loso, table_name):
    from crampwatch.detector.features import CANDIDATE_FEATURES, __doc__ as _  # noqa: F401
    by_src = {}
    for r in rows:
        if r["stage"] == "confirm":
            s = by_src.setdefault(r["source"], [0, 0])
            s[0] += 1
            s[1] += r["label"]
    lines = [
        f"# Model card: `{os.path.basename(model.name)}`",
        "",
        "*Written by `python models/train_candidates.py`; do not edit by hand.*",
        "",
        "**What it does.** For each candidate episode that the rule chain proposes, the "
        "probability that it is a cramp (or, on real data, a sustained contraction). With "
        "`classifier = \"model\"` it decides: a candidate is confirmed when the rules would "
        f"confirm it *and* the probability is at least {model.threshold:g}; the candidate "
        "stays a candidate (asked again at each step) otherwise, so the onset latency is "
        "unchanged when the model agrees. At the episode's end it is graded again: below the "
        "threshold (or below `min_confidence`) the episode is kept with status `uncertain` and "
        "never counted. With `classifier = \"rules\"` it only gives the `confidence`.",
        "",
        "**Inputs.** The "
        f"{len(model.feature_names)} candidate features of "
        "`crampwatch.detector.features.CANDIDATE_FEATURES` (documented there), aggregated over "
        "the candidate's 1 s decision steps from its onset up to the step decided: "
        + ", ".join(f"`{n}`" for n in model.feature_names) + ". Checked by name and order "
        "against the detector's at load time, both ways.",
        "",
        "**Method.** Logistic regression on standardised features (scikit-learn "
        f"{model.sklearn_version}, L2, C = 0.5, classes balanced, L-BFGS), stored as JSON: "
        "means, scales, coefficients, intercept, threshold, with `params_sha256` over them and "
        "`training_data_sha256` over the table; the prediction is re-implemented with plain "
        "arithmetic at load, no scikit-learn object is stored and nothing in the file runs.",
        "",
        f"**Training data** (`{table_name}`, {len(rows)} rows: each candidate at its "
        "confirmation and at its end):",
        "",
        "| source | candidates | positives |",
        "|---|---|---|",
    ]
    for s in sorted(by_src):
        lines.append(f"| {s} | {by_src[s][0]} | {by_src[s][1]} |")
    lines += [
        "",
        "Simulated: families tidy, board, behaviour, faults, strength, shifted of "
        f"`randomized_spec`, tuning seeds {SIM_SEEDS.start}-{SIM_SEEDS.stop - 1} "
        f"({SIM_HOURS:g} h each) plus seeds {EMG_ONLY_SEEDS.start}-{EMG_ONLY_SEEDS.stop - 1} "
        "without the accelerometer; positive = the episode overlaps a labelled cramp with "
        "IoU >= 0.3. Real: elderly_isometric VL/BF/GL holds on their own muscle between rest "
        "(positives), santuz_walking's 10 muscles other than GM/GL/SO, uci_lower_limb gait and "
        "standing, psg_nox both legs (negatives). Held back for testing: the TA holds and the "
        "GM/GL/SO walking (`benchmarks/detection_report.py`), simulated seeds 121-130.",
        "",
        "**Leave-one-source-out validation** (fitted without the source, scored on its "
        "candidates at the confirmation moment; threshold "
        f"{model.threshold:g}):",
        "",
        "| held-out source | candidates | positives | precision | recall | F1 | AUC "
        "| negatives accepted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in loso:
        lines.append(f"| {r['source']} | {r['candidates']} | {r['cramps']} | "
                     f"{_f(r['precision'])} | {_f(r['recall'])} | {_f(r['f1'])} | "
                     f"{_f(r['auc'])} | {r['false_accepted']}/{r['negatives']} |")
    coef = sorted(zip(model.feature_names, model.coef), key=lambda kv: -abs(kv[1]))
    lines += [
        "",
        "Standardised coefficients, largest first: "
        + ", ".join(f"`{n}` {c:+.2f}" for n, c in coef[:8]) + ".",
        "",
        "**Limits.** No public recording of a real nocturnal cramp exists: the positives are "
        "simulated cramps and real voluntary holds; a real cramp that looks like neither may "
        "be graded low (kept as `uncertain`, never dropped). Sources with only negatives have "
        "no recall: their row counts the negatives accepted. The candidates are those of the "
        "rule chain (a little more permissive in the model path, "
        "`Pipeline.MODEL_CANDIDATE_CHANGES`): a cramp the rules never propose is not found by "
        "the model either. Probabilities are not clinically calibrated. `crampwatch train "
        "--db` refits on a sleeper's own verdicts on top of this table.",
        "",
        "Retrain (reproduces this file, the table and the model exactly): "
        "`python models/train_candidates.py`.",
        "",
    ]
    from crampwatch._files import atomic_private_write
    with atomic_private_write(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))


def main(argv=None) -> int:
    from crampwatch.models import DEFAULT_MODEL
    from crampwatch.models.fit import fit_model
    from crampwatch.models.table import TRAINING_TABLE, write_table
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--cache", default=None, help="folder for extracted candidates")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=HERE, help="folder for the model, table and card")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr)
    rows = build_table(args.data, args.cache, args.jobs, log)
    model = fit_model(rows, training={
        "sim_seeds": f"{SIM_SEEDS.start}-{SIM_SEEDS.stop - 1}", "sim_hours": SIM_HOURS,
        "emg_only_seeds": f"{EMG_ONLY_SEEDS.start}-{EMG_ONLY_SEEDS.stop - 1}",
        "real": sorted({r["source"] for r in rows if r["source"].startswith("real:")}),
        "table": TRAINING_TABLE, "script": "models/train_candidates.py"})
    model.name = DEFAULT_MODEL
    loso = leave_one_source_out(rows)
    write_table(os.path.join(args.out, TRAINING_TABLE), rows)
    model.save(os.path.join(args.out, DEFAULT_MODEL))
    write_card(os.path.join(args.out, "MODEL_CARD.md"), model, rows, loso, TRAINING_TABLE)
    for r in loso:
        log(f"{r['source']:<26} n={r['candidates']:4d} pos={r['cramps']:4d} "
            f"P={_f(r['precision'])} R={_f(r['recall'])} F1={_f(r['f1'])} AUC={_f(r['auc'])} "
            f"neg accepted {r['false_accepted']}/{r['negatives']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
