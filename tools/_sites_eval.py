"""Site-aware scoring: a cramp is found only on its own leg.

Labels with a ``site`` (two-leg nights) are scored per site: a site's episodes
against the cramps labelled on that site, with the other kinds labelled on it
or on the whole body (``site`` empty) as distractors.  A cramp reported on the
wrong leg is therefore a miss on its own leg plus a false positive on the
other.  Cramps without a site count for every site (a one-channel labels file).
"""

from __future__ import annotations

from crampwatch.detector.evaluation import score

__all__ = ["score_sites", "labels_for_site"]


def labels_for_site(labels, site: str) -> list[tuple[str, float, float]]:
    """``(kind, onset_s, offset_s)`` of the labels that concern ``site``: its
    own, the whole body's, and other legs' cramps as the distractor
    ``cramp_other_site``."""
    out = []
    for lab in labels:
        own = getattr(lab, "site", "")
        if not own or own == site:
            out.append((lab.kind, lab.onset_s, lab.offset_s))
        elif lab.kind == "cramp":
            out.append(("cramp_other_site", lab.onset_s, lab.offset_s))
    return out


def score_sites(episodes: dict, labels, duration_s: float, min_iou: float = 0.3) -> dict:
    """Score ``{site: [(onset_s, offset_s), ...]}`` against site-labelled ``labels``.

    Returns ``{"sites": {site: score dict}, "pooled": {...}}``; pooled holds
    the summed counts and precision, recall, F1 of the sums.

    Examples
    --------
    >>> from crampwatch.firmware_bridge.labels import Label
    >>> labs = [Label("cramp", 100, 160, site="left_calf"), Label("turn", 300, 303)]
    >>> r = score_sites({"left_calf": [], "right_calf": [(101, 158)]}, labs, 3600)
    >>> r["pooled"]["true_positives"], r["pooled"]["false_positives"], r["pooled"]["false_negatives"]
    (0, 1, 1)
    """
    per = {}
    for site, eps in episodes.items():
        per[site] = score(list(eps), labels_for_site(labels, site), duration_s, min_iou)
    tp = sum(s["true_positives"] for s in per.values())
    fp = sum(s["false_positives"] for s in per.values())
    # every cramp counted once: on its own site (or, without a site, on each)
    fn = sum(s["false_negatives"] for s in per.values())
    n_lab = tp + fn
    n_rep = tp + fp
    precision = tp / n_rep if n_rep else (1.0 if not n_lab else 0.0)
    recall = tp / n_lab if n_lab else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    hours = duration_s / 3600.0
    kinds: dict = {}
    for s in per.values():
        for k, n in s["false_positives_by_kind"].items():
            kinds[k] = kinds.get(k, 0) + n
    pooled = {"n_labelled": n_lab, "n_reported": n_rep, "true_positives": tp,
              "false_positives": fp, "false_negatives": fn, "precision": round(precision, 4),
              "recall": round(recall, 4), "f1": round(f1, 4),
              "false_positives_per_hour": round(fp / hours, 4) if hours > 0 else float("nan"),
              "false_positives_by_kind": kinds}
    return {"sites": per, "pooled": pooled}
