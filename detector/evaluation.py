"""Score reported episodes against labelled cramps (pure functions, no I/O).

A labelled cramp counts as found when a reported episode overlaps it with
intersection-over-union >= ``min_iou`` (0.3 by default); each label and each
episode is matched at most once (greedy by IoU).  Episodes of status
``uncertain`` (confidence below ``min_confidence``) are counted apart, never as
detections.  Every other reported episode
is a false positive, attributed to the labelled distractor it overlaps most
("none" if it overlaps nothing).

Examples
--------
>>> from crampwatch.detector.evaluation import score
>>> r = score([(10.0, 40.0)], [("cramp", 11.0, 41.0), ("turn", 100.0, 103.0)], duration_s=3600)
>>> r["precision"], r["recall"], r["f1"], r["onset_error_median_s"]
(1.0, 1.0, 1.0, 1.0)
"""

from __future__ import annotations

import numpy as np


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def match(episodes: list[tuple[float, float]], cramps: list[tuple[float, float]],
          min_iou: float = 0.3) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching; returns ``(episode_i, cramp_j, iou)``."""
    pairs = []
    for i, e in enumerate(episodes):
        for j, c in enumerate(cramps):
            v = iou(e, c)
            if v >= min_iou:
                pairs.append((v, i, j))
    pairs.sort(reverse=True)
    used_e, used_c, out = set(), set(), []
    for v, i, j in pairs:
        if i in used_e or j in used_c:
            continue
        used_e.add(i)
        used_c.add(j)
        out.append((i, j, v))
    return out


def score(episodes: list[tuple[float, float]], labels: list[tuple[str, float, float]],
          duration_s: float, min_iou: float = 0.3) -> dict:
    """Detection metrics of one or more recordings.

    Parameters
    ----------
    episodes : list of (onset_s, offset_s) or (onset_s, offset_s, status)
        Reported episodes; those with status ``"uncertain"`` are kept apart
        (``n_uncertain``), never counted as detections.
    labels : list of (kind, onset_s, offset_s); kind ``"cramp"`` is the target,
        every other kind a distractor.
    duration_s : float
        Hours of signal scored (for false positives per hour).
    """
    n_uncertain = sum(1 for e in episodes if len(e) > 2 and e[2] == "uncertain")
    episodes = [(e[0], e[1]) for e in episodes if not (len(e) > 2 and e[2] == "uncertain")]
    cramps = [(a, b) for k, a, b in labels if k == "cramp"]
    others = [(k, a, b) for k, a, b in labels if k != "cramp"]
    m = match(episodes, cramps, min_iou)
    tp = len(m)
    fp = len(episodes) - tp
    fn = len(cramps) - tp
    precision = tp / len(episodes) if episodes else (1.0 if not cramps else 0.0)
    recall = tp / len(cramps) if cramps else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    on_err = np.array([episodes[i][0] - cramps[j][0] for i, j, _ in m])
    off_err = np.array([episodes[i][1] - cramps[j][1] for i, j, _ in m])
    dur_err = np.array([(episodes[i][1] - episodes[i][0]) - (cramps[j][1] - cramps[j][0])
                        for i, j, _ in m])
    matched = {i for i, _, _ in m}
    fp_kinds: dict[str, int] = {}
    false_positives = []
    for i, e in enumerate(episodes):
        if i in matched:
            continue
        best, kind = 0.0, "none"
        for k, a, b in others + [("cramp", a, b) for a, b in cramps]:
            ov = max(0.0, min(e[1], b) - max(e[0], a))
            if ov > best:
                best, kind = ov, k
        fp_kinds[kind] = fp_kinds.get(kind, 0) + 1
        false_positives.append({"onset_s": e[0], "offset_s": e[1], "overlaps": kind})
    missed = [{"onset_s": cramps[j][0], "offset_s": cramps[j][1]}
              for j in range(len(cramps)) if j not in {j for _, j, _ in m}]
    hours = duration_s / 3600.0

    def q(a, p):
        return float(np.percentile(np.abs(a), p)) if len(a) else float("nan")

    return {
        "n_labelled": len(cramps), "n_reported": len(episodes), "n_uncertain": n_uncertain,
        "true_positives": tp, "false_positives": fp, "false_negatives": fn,
        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
        "onset_error_median_s": round(q(on_err, 50), 3), "onset_error_p95_s": round(q(on_err, 95), 3),
        "onset_bias_s": round(float(np.median(on_err)), 3) if len(on_err) else float("nan"),
        "offset_error_median_s": round(q(off_err, 50), 3),
        "offset_error_p95_s": round(q(off_err, 95), 3),
        "duration_error_median_s": round(q(dur_err, 50), 3),
        "duration_error_p95_s": round(q(dur_err, 95), 3),
        "hours": round(hours, 3),
        "false_positives_per_hour": round(fp / hours, 4) if hours > 0 else float("nan"),
        "false_positives_by_kind": fp_kinds,
        "false_positive_list": false_positives,
        "missed_list": missed,
    }
