"""The shipped candidate model: loads by name or path, checks every field, and
its prediction is what scikit-learn would give."""

import json
import math
import os
import stat

import numpy as np
import pytest

from crampwatch.detector.features import CANDIDATE_FEATURES
from crampwatch.models import DEFAULT_MODEL, ModelError, load_model, params_sha256


def _spec():
    return load_model().to_spec()


def test_shipped_model_loads_by_default_and_by_name():
    m = load_model()
    assert m.feature_names == list(CANDIDATE_FEATURES)
    assert load_model(DEFAULT_MODEL).coef == m.coef
    with pytest.raises(ModelError, match="no such model file"):
        load_model("cramp_candidate_emg+acc_logreg_9.9.9.json")


@pytest.mark.parametrize("change", ["extra", "missing", "renamed"])
def test_feature_names_are_checked_both_ways(change, tmp_path):
    spec = _spec()
    p = spec["params"]
    if change == "extra":
        spec["feature_names"].append("bogus_feature")
        for k in ("mean", "scale", "coef"):
            p[k].append(1.0)
    elif change == "missing":
        spec["feature_names"].pop()
        for k in ("mean", "scale", "coef"):
            p[k].pop()
    else:
        spec["feature_names"][0] = "bogus_feature"
    spec["params_sha256"] = params_sha256(p)      # a consistent file, for other features
    path = tmp_path / "m.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="other features") as e:
        load_model(str(path))
    assert ("bogus_feature" in str(e.value)) == (change != "missing")


def test_prediction_matches_scikit_learn_formula():
    m = load_model()
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = {n: float(mu + sd * rng.normal()) for n, mu, sd in zip(m.feature_names, m.mean,
                                                                    m.scale)}
        z = m.intercept + sum(c * (x[n] - mu) / sd for n, mu, sd, c in
                              zip(m.feature_names, m.mean, m.scale, m.coef))
        assert m.predict(x) == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-12)


def test_save_is_private_and_round_trips(tmp_path):
    m = load_model()
    out = tmp_path / "own" / "model.json"
    m.save(out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    again = load_model(str(out))
    assert again.coef == m.coef and again.mean == m.mean and again.threshold == m.threshold
    assert again.training_data_sha256 == m.training_data_sha256
