"""Trained candidate classifiers: loaded from JSON that runs no code, fitted
from a feature table.

The shipped model (:data:`DEFAULT_MODEL`, see ``MODEL_CARD.md``) is a logistic
regression on the standardised candidate features that the detector computes
(:data:`crampwatch.detector.features.CANDIDATE_FEATURES`): the probability that
a candidate episode is a cramp.  It gives every episode its ``confidence`` and,
with ``DetectorConfig(classifier="model")``, decides which candidates are
confirmed.

Public API (stable; ``crampwatch train --db`` builds on it)
------------------------------------------------------------
``load_model(path_or_name=None) -> CandidateModel``
    None or "": the shipped model; a name without a directory: a model shipped
    in this package; anything else: a path.  Every check is made at load and a
    failure is one :class:`ModelError` (``model FILE: ...``): the file is read
    as UTF-8 JSON only (a pickle or random bytes are refused, never
    unpickled), its ``format``, ``feature_names`` (both ways against the
    detector's), array lengths and finiteness, ``sklearn_version``,
    ``training_data_sha256`` and ``params_sha256`` (over the canonical
    parameters: a changed coefficient is caught) are checked.
``fit_model(rows, base_rows=None, base_weight=1.0, own_weight=None, seed=0, training=None)``
    Fits on feature-table rows (dicts with every feature name and ``label``
    0/1; see :mod:`crampwatch.models.table`).  ``base_rows`` (e.g. the shipped
    table, :func:`crampwatch.models.table.shipped_table`) are fitted together
    with ``rows``: a sleeper's own rows on top of the shipped ones, each own
    row weighted ``own_weight`` (default: so that the own rows weigh as much
    as the base rows together, at least 1).
``CandidateModel``
    ``predict(features) -> float`` (also ``model(features)``), ``threshold``,
    ``feature_names``, ``to_spec()``, ``save(path)`` (0600, atomic).
``read_table(path)``, ``write_table(path, rows)``, ``shipped_table()``
    The training table (gzip CSV; :mod:`crampwatch.models.table`).
``crampwatch.tools._candidates.collect_candidates(path, cfg, emg=None, acc=None)``
    Every candidate of a recording with its features (the rows to label).

Examples
--------
>>> from crampwatch.models import load_model
>>> from crampwatch.detector.features import CANDIDATE_FEATURES
>>> model = load_model()
>>> model.feature_names == list(CANDIDATE_FEATURES)
True
>>> 0.0 <= model.predict(dict.fromkeys(CANDIDATE_FEATURES, 0.0)) <= 1.0
True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from importlib import resources

from crampwatch.detector.features import CANDIDATE_FEATURES
from crampwatch.errors import CrampwatchError

__all__ = ["DEFAULT_MODEL", "FORMAT", "CandidateModel", "ModelError", "fit_model", "load_model",
           "read_table", "write_table", "shipped_table"]

DEFAULT_MODEL = "cramp_candidate_emg+acc_logreg_2.0.0.json"
FORMAT = "crampwatch-candidate-model/1"
MAX_MODEL_BYTES = 1 << 20
_PARAM_KEYS = ("mean", "scale", "coef", "intercept", "threshold")


class ModelError(CrampwatchError):
    """A model file is missing, malformed, tampered with or does not fit the
    features the detector computes.  ``path`` names it."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


def params_sha256(params: dict) -> str:
    """SHA-256 of the canonical JSON of the parameters (sorted keys, no spaces,
    floats as Python writes them: exact round trip)."""
    canon = {k: params[k] for k in _PARAM_KEYS}
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class CandidateModel:
    """Logistic regression on standardised candidate features -> P(cramp).

    Built from a spec (the JSON's content), every field checked; the
    prediction is re-implemented here (no scikit-learn object is stored).
    """

    inputs = "candidate"
    """What the detector must compute for it (``Pipeline`` checks this)."""

    def __init__(self, spec, name: str = "?"):
        self.name = name
        if not isinstance(spec, dict):
            raise self._err(f"not a model (the JSON holds a {type(spec).__name__}, not an object)")
        if spec.get("format") != FORMAT:
            raise self._err(f"format {spec.get('format')!r}: not a crampwatch candidate model "
                            f"(expected {FORMAT!r})")
        try:
            self.version = str(spec["version"])
            self.feature_names = [str(v) for v in spec["feature_names"]]
            params = spec["params"]
            self.mean = [float(v) for v in params["mean"]]
            self.scale = [float(v) for v in params["scale"]]
            self.coef = [float(v) for v in params["coef"]]
            self.intercept = float(params["intercept"])
            self.threshold = float(params["threshold"])
            self.sklearn_version = spec["sklearn_version"]
            self.training_data_sha256 = spec["training_data_sha256"]
            stored_sha = spec["params_sha256"]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._err(f"malformed ({type(exc).__name__}: {exc})") from exc
        self.training = spec.get("training", {})
        if not isinstance(self.sklearn_version, str) or not self.sklearn_version:
            raise self._err("sklearn_version missing")
        if not _is_sha(self.training_data_sha256) or not _is_sha(stored_sha):
            raise self._err("training_data_sha256 / params_sha256 are not SHA-256 hex digests")
        n = len(self.feature_names)
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n):
            raise self._err(f"{n} features but parameter arrays of other lengths")
        values = self.mean + self.scale + self.coef + [self.intercept, self.threshold]
        if not all(math.isfinite(v) for v in values) or min(self.scale, default=1.0) <= 0:
            raise self._err("parameters not finite (or a scale not positive)")
        if not 0.0 <= self.threshold <= 1.0:
            raise self._err(f"threshold {self.threshold} outside 0-1")
        missing = sorted(set(self.feature_names) - set(CANDIDATE_FEATURES))
        unused = sorted(set(CANDIDATE_FEATURES) - set(self.feature_names))
        if missing or unused or len(set(self.feature_names)) != n:
            raise self._err(f"made for other features than the detector computes (model only: "
                            f"{', '.join(missing) or 'none'}; detector only: "
                            f"{', '.join(unused) or 'none'})")
        if params_sha256(self.params()) != stored_sha:
            raise self._err("parameters changed since the file was written (params_sha256 "
                            "does not match): not loaded")

    def _err(self, what: str) -> ModelError:
        return ModelError(f"model {self.name}: {what}", path=self.name)

    def params(self) -> dict:
        return {"mean": self.mean, "scale": self.scale, "coef": self.coef,
                "intercept": self.intercept, "threshold": self.threshold}

    def predict(self, features: dict) -> float:
        """P(cramp) of one candidate (a dict with every feature name)."""
        z = self.intercept
        for name, m, s, c in zip(self.feature_names, self.mean, self.scale, self.coef):
            z += c * (float(features[name]) - m) / s
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    __call__ = predict

    def to_spec(self) -> dict:
        return {"format": FORMAT, "version": self.version,
                "kind": "logistic regression on standardised candidate features -> P(cramp)",
                "feature_names": list(self.feature_names),
                "sklearn_version": self.sklearn_version,
                "training_data_sha256": self.training_data_sha256,
                "params": self.params(), "params_sha256": params_sha256(self.params()),
                "training": self.training}

    def save(self, path) -> str:
        """Write the model as JSON (0600, atomically: a reader never sees half a file)."""
        from crampwatch._files import atomic_private_write
        with atomic_private_write(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_spec(), fh, indent=1, allow_nan=False)
            fh.write("\n")
        return os.fspath(path)

    def __repr__(self) -> str:
        return f"CandidateModel({self.name!r}, {len(self.feature_names)} features)"


def _is_sha(v) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _read_bytes(path_or_name: str | None) -> tuple[bytes, str]:
    if not path_or_name:
        path_or_name = DEFAULT_MODEL
    shipped = os.sep not in path_or_name and "/" not in path_or_name \
        and not os.path.exists(path_or_name)
    try:
        if shipped:
            ref = resources.files(__name__).joinpath(path_or_name)
            if not ref.is_file():
                raise ModelError(f"model {path_or_name}: no such model file in crampwatch.models "
                                 f"(the shipped one is {DEFAULT_MODEL}; give a path for "
                                 "another)", path=path_or_name)
            with ref.open("rb") as fh:
                data = fh.read(MAX_MODEL_BYTES + 1)
        else:
            with open(path_or_name, "rb") as fh:
                data = fh.read(MAX_MODEL_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"model {path_or_name}: cannot read ({exc.strerror or exc})",
                         path=path_or_name) from exc
    if len(data) > MAX_MODEL_BYTES:
        raise ModelError(f"model {path_or_name}: larger than {MAX_MODEL_BYTES} bytes: not a "
                         "model file", path=path_or_name)
    return data, path_or_name


def load_model(path_or_name: str | None = None) -> CandidateModel:
    """Load a candidate model: the shipped one (None), one shipped by name, or a file.

    Nothing in the file is executed: it is parsed as JSON and every field is
    checked (see the module docstring).

    Raises
    ------
    ModelError
        Missing, unreadable, not JSON (random bytes, a pickle), truncated,
        tampered with (``params_sha256``), or made for other features.
    """
    data, name = _read_bytes(os.fspath(path_or_name) if path_or_name else None)
    if data[:1] == b"\x80" or data[:2] in (b"(d", b"(l", b"}q", b"]q"):
        raise ModelError(f"model {name}: a Python pickle, refused unread (loading a pickle can "
                         "run code); models are JSON", path=name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"model {name}: not a JSON model file (binary content at byte "
                         f"{exc.start})", path=name) from exc
    if not text.strip():
        raise ModelError(f"model {name}: empty file", path=name)
    try:
        spec = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        where = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ModelError(f"model {name}: not valid JSON{where} (truncated or not a model "
                         "file)", path=name) from exc
    return CandidateModel(spec, name)


def _no_constant(text: str):
    raise ValueError(f"{text} is not allowed in a model file")


from crampwatch.models.table import read_table, shipped_table, write_table  # noqa: E402
from crampwatch.models.fit import fit_model  # noqa: E402
