"""Fit a candidate model from feature-table rows (scikit-learn, seeded).

Logistic regression on standardised features (L2, ``C`` below), classes
balanced, L-BFGS: deterministic, so the same rows give the same parameters.
The fitted numbers are copied out of scikit-learn into a
:class:`~crampwatch.models.CandidateModel`; no estimator object is kept or
stored.

Examples
--------
>>> from crampwatch.models import fit_model, shipped_table, load_model
>>> model = fit_model(shipped_table())
>>> model.coef == load_model().coef
True
"""

from __future__ import annotations

import numpy as np

from crampwatch.detector.features import CANDIDATE_FEATURES

C = 0.5
"""Inverse L2 strength of the logistic regression."""
THRESHOLD = 0.3
"""P(cramp) at or above which classifier=model confirms a candidate (and below which,
at its end, an episode is uncertain).  Chosen on the tuning seeds 13-20 (not trained
on): at 0.5 a few real cramps of shifted nights ended uncertain; on the training table
0.3 keeps 99.7 % of the cramps and accepts 5 of 99 negatives."""
VERSION = "2.0.0"


def design(rows: list[dict]) -> np.ndarray:
    """The feature matrix of table rows, columns in CANDIDATE_FEATURES order."""
    return np.array([[float(r[n]) for n in CANDIDATE_FEATURES] for r in rows],
                    dtype=np.float64).reshape(-1, len(CANDIDATE_FEATURES))


def fit_arrays(X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, seed: int = 0):
    """(mean, scale, coef, intercept) of a weighted, class-balanced logistic regression."""
    from sklearn.linear_model import LogisticRegression
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    mean = np.average(X, axis=0, weights=w)
    scale = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w))
    scale = np.where(scale > 1e-9, scale, 1.0)
    # classes balanced by weight, so the share of cramps among candidates does not move
    # the threshold
    pos = float(w[y == 1].sum())
    neg = float(w[y == 0].sum())
    bal = np.where(y == 1, 0.5 * (pos + neg) / max(pos, 1e-12), 0.5 * (pos + neg) / max(neg, 1e-12))
    clf = LogisticRegression(C=C, max_iter=5000, tol=1e-10, random_state=seed)
    clf.fit((X - mean) / scale, y, sample_weight=w * bal)
    return mean, scale, clf.coef_[0].copy(), float(clf.intercept_[0])


def fit_model(rows: list[dict], base_rows: list[dict] | None = None, base_weight: float = 1.0,
              own_weight: float | None = None, seed: int = 0, training: dict | None = None,
              version: str = VERSION):
    """Fit a :class:`~crampwatch.models.CandidateModel` on table rows.

    Parameters
    ----------
    rows : list of dict
        Rows with every name of ``CANDIDATE_FEATURES`` and ``label`` (0/1).
    base_rows : list of dict or None
        Rows fitted together with ``rows`` (e.g. ``shipped_table()``: a sleeper's
        own rows on top of the shipped training data), each weighted ``base_weight``.
    own_weight : float or None
        Weight of each row of ``rows`` when ``base_rows`` are given (default: the
        own rows together weigh as much as the base rows, each at least 1).
    seed : int
    training : dict or None
        Free-form description stored in the file (``training``).

    Raises
    ------
    ModelError
        No rows, or only one class.
    """
    import sklearn

    from crampwatch.models import CandidateModel, ModelError, params_sha256
    from crampwatch.models.table import table_sha256
    rows = list(rows)
    base_rows = list(base_rows or [])
    all_rows = base_rows + rows
    if not all_rows:
        raise ModelError("fit: no training rows")
    y = np.array([int(r["label"]) for r in all_rows])
    if len(set(y.tolist())) < 2:
        raise ModelError("fit: the rows hold only one class (need cramps and non-cramps)")
    if base_rows:
        if own_weight is None:
            own_weight = max(1.0, base_weight * len(base_rows) / max(1, len(rows)))
        w = np.r_[np.full(len(base_rows), float(base_weight)), np.full(len(rows), own_weight)]
    else:
        w = np.ones(len(rows))
    mean, scale, coef, intercept = fit_arrays(design(all_rows), y, w, seed)
    params = {"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(),
              "intercept": intercept, "threshold": THRESHOLD}
    info = dict(training or {})
    info.setdefault("rows", len(all_rows))
    info.setdefault("positives", int(y.sum()))
    if base_rows:
        info.setdefault("base_rows", len(base_rows))
        info.setdefault("own_rows", len(rows))
        info.setdefault("own_weight", own_weight)
    spec = {"format": "crampwatch-candidate-model/1", "version": version,
            "feature_names": list(CANDIDATE_FEATURES), "sklearn_version": sklearn.__version__,
            "training_data_sha256": table_sha256(all_rows), "params": params,
            "params_sha256": params_sha256(params), "training": info}
    return CandidateModel(spec, name="(fitted)")
