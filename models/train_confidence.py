"""Train the episode-confidence model (run by hand; writes the JSON file).

Candidates come from a permissive run of the pipeline (short minimum
duration, lenient tonic share) over simulated nights, so that bursts,
stretches, PLM series and standing give negatives; a candidate overlapping a
labelled cramp with IoU >= 0.3 is a positive.  A standardised logistic
regression (scikit-learn) maps the episode features to P(cramp).

    python models/train_confidence.py --seeds 1-8 --hours 2 [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def candidates(seed: int, hours: float):
    from crampwatch.detector import DetectorConfig, EpisodeEnded, Pipeline
    from crampwatch.detector.evaluation import iou
    from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
    rates = [(1000.0, 100.0), (500.0, 50.0), (2000.0, 200.0), (250.0, 25.0)]
    fs, afs = rates[seed % len(rates)]
    night = SyntheticNight(NightSpec(hours=hours, seed=seed, emg_fs_hz=fs, acc_fs_hz=afs,
                                     mains_hz=60.0 if seed % 2 else 50.0))
    cfg = DetectorConfig(min_duration_s=3.0, candidate_tonic_fraction=0.4,
                         plm_min_duration_s=3.0, walk_override_ratio=1.0)
    feats = []

    def capture(f):
        feats.append(dict(f))
        return 0.5
    pipe = Pipeline(cfg, fs, afs, keep_trace=False, confidence_model=capture)
    events = []
    nb, na = int(60 * fs), int(60 * afs)
    for k, i in enumerate(range(0, night.n_emg_samples, nb)):
        j = k * na
        events += pipe.process_acc(night.render_acc(j, min(na, night.n_acc_samples - j)), j)
        events += pipe.process_emg(night.render_emg(i, min(nb, night.n_emg_samples - i)), i)
    events += pipe.finish()
    ended = [e.episode for e in events if isinstance(e, EpisodeEnded)]
    # the model is consulted twice per episode, at its start and at its end (episodes
    # never overlap): the features at the end are every second entry
    closing = feats[1::2]
    if len(closing) != len(ended):
        raise RuntimeError(f"seed {seed}: {len(feats)} feature rows for {len(ended)} episodes")
    cramps = [(lb.onset_s, lb.offset_s) for lb in night.labels if lb.kind == "cramp"]
    rows = []
    for ep, f in zip(ended, closing):
        y = any(iou((ep.onset_s, ep.offset_s), c) >= 0.3 for c in cramps)
        rows.append((f, int(y)))
    return rows


def main(argv=None) -> int:
    from sklearn.linear_model import LogisticRegression

    from crampwatch.detector.episodes import EPISODE_FEATURES
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1-8")
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                  "cramp_episode_confidence_logreg_1.0.0.json"))
    args = ap.parse_args(argv)
    a, b = (int(v) for v in args.seeds.split("-"))
    rows = []
    for seed in range(a, b + 1):
        r = candidates(seed, args.hours)
        print(f"seed {seed}: {len(r)} candidates, {sum(y for _, y in r)} cramps", file=sys.stderr)
        rows += r
    names = list(EPISODE_FEATURES)
    X = np.array([[f[n] for n in names] for f, _ in rows])
    y = np.array([v for _, v in rows])
    mean, scale = X.mean(axis=0), X.std(axis=0) + 1e-9
    clf = LogisticRegression(C=0.3, max_iter=1000).fit((X - mean) / scale, y)
    p = clf.predict_proba((X - mean) / scale)[:, 1]
    spec = {
        "version": "1.0.0",
        "kind": "logistic regression on standardised episode features -> P(cramp)",
        "feature_names": names,
        "mean": mean.tolist(), "scale": scale.tolist(),
        "coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0]),
        "training": {"seeds": args.seeds, "hours_per_night": args.hours,
                     "candidates": int(len(y)), "cramps": int(y.sum()),
                     "train_accuracy": float(np.mean((p >= 0.5) == y)),
                     "mean_p_cramps": float(p[y == 1].mean()) if y.any() else None,
                     "mean_p_others": float(p[y == 0].mean()) if (y == 0).any() else None},
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(spec, fh, indent=2)
    print(json.dumps(spec["training"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
