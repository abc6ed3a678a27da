"""Trained model files, loaded explicitly by name as package data.

Files are JSON (nothing in them can run code when loaded).  The name carries
the inputs, the method and the version:
``cramp_episode_confidence_logreg_<version>.json``.  See ``MODEL_CARD.md``.

Examples
--------
>>> from crampwatch.models import load_model
>>> model = load_model()
>>> p = model({"log_duration_s": 4.0, "log_level_ratio": 3.5, "tonic_step_fraction": 0.95})
>>> 0.5 < p <= 1.0
True
"""

from __future__ import annotations

import json
import math
from importlib import resources

from crampwatch.detector.episodes import EPISODE_FEATURES
from crampwatch.errors import CrampwatchError

DEFAULT_MODEL = "cramp_episode_confidence_logreg_1.0.0.json"


class ModelError(CrampwatchError):
    """A model file is missing, malformed or does not fit the features computed."""


class EpisodeConfidenceModel:
    """Logistic regression on standardised episode features -> P(cramp).

    Calling the model with a dict of features returns the probability.
    """

    def __init__(self, spec: dict, name: str = "?"):
        try:
            self.name = name
            self.version = spec["version"]
            self.feature_names = list(spec["feature_names"])
            self.mean = [float(v) for v in spec["mean"]]
            self.scale = [float(v) for v in spec["scale"]]
            self.coef = [float(v) for v in spec["coef"]]
            self.intercept = float(spec["intercept"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model {name}: malformed ({exc})") from exc
        n = len(self.feature_names)
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n):
            raise ModelError(f"model {name}: {n} features but coefficient arrays of other lengths")
        # the model's inputs must be exactly what the detector computes, both ways
        missing = sorted(set(self.feature_names) - set(EPISODE_FEATURES))
        unused = sorted(set(EPISODE_FEATURES) - set(self.feature_names))
        if missing or unused:
            raise ModelError(f"model {name}: features do not match the detector's "
                             f"(model only: {missing or 'none'}; detector only: "
                             f"{unused or 'none'})")

    def __call__(self, features: dict) -> float:
        z = self.intercept
        for name, m, s, c in zip(self.feature_names, self.mean, self.scale, self.coef):
            z += c * (float(features[name]) - m) / s
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def load_model(name: str = DEFAULT_MODEL) -> EpisodeConfidenceModel:
    """Load a model file shipped in this package, by its exact name."""
    try:
        text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise ModelError(f"no model file {name!r} in crampwatch.models") from exc
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"model {name}: not valid JSON ({exc})") from exc
    return EpisodeConfidenceModel(spec, name)
