"""Every candidate episode of a recording, with the features the candidate
model sees: the rows of its training table (``models/train_candidates.py``,
``crampwatch train --db``).

A candidate is what the rule chain would confirm (``classifier=rules``, the
configured thresholds); its features are taken at the moment the rules
confirm it (``features``: what ``classifier=model`` decides on, onset latency
unchanged) and at its end (``end_features``: what grades it again).

Examples
--------
>>> from crampwatch.tools._candidates import collect_candidates
>>> from crampwatch.detector import DetectorConfig
>>> rows = collect_candidates("recordings/sample_night.edf", DetectorConfig())  # doctest: +SKIP
>>> onset_s, offset_s, features = rows[0]                                      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crampwatch.detector import DetectorConfig, Pipeline
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent


@dataclass(frozen=True)
class Candidate:
    onset_s: float
    confirm_s: float             # when the rules confirmed it
    offset_s: float
    features: dict               # at confirm_s
    end_features: dict           # at offset_s


class _Collector:
    def __init__(self):
        self.pending = None
        self.out: list[Candidate] = []

    def __call__(self, stage, onset_s, t_s, feats):
        if stage == "confirm":
            self.pending = (onset_s, t_s, dict(feats))
        elif self.pending is not None:
            on, conf_s, f = self.pending
            self.out.append(Candidate(on, conf_s, t_s, f, dict(feats)))
            self.pending = None


def _rules(cfg: DetectorConfig) -> DetectorConfig:
    return cfg.replace(classifier="rules", min_confidence=0.0)


def collect_candidates(path, cfg: DetectorConfig, emg: str | None = None,
                       acc: str | None = None, block_s: float = 300.0) -> list[tuple]:
    """``(onset_s, offset_s, features)`` of every candidate of the recording at
    ``path`` (read as ``crampwatch replay`` reads it), ``features`` taken when
    the rules confirm it.  See :func:`collect_candidates_full` for both stages."""
    return [(c.onset_s, c.offset_s, c.features)
            for c in collect_candidates_full(path, cfg, emg, acc, block_s)]


def collect_candidates_full(path, cfg: DetectorConfig, emg: str | None = None,
                            acc: str | None = None, block_s: float = 300.0) -> list[Candidate]:
    """Like :func:`collect_candidates`, as :class:`Candidate` records."""
    from crampwatch.firmware_bridge.readers import open_recording
    col = _Collector()
    with open_recording(path, emg=emg, acc=acc) as reader:
        acc_fs = reader.acc.fs_hz if reader.acc is not None else None
        pipe = Pipeline(_rules(cfg), emg_fs_hz=reader.emg.fs_hz, acc_fs_hz=acc_fs,
                        keep_trace=False, acc_wait_s=block_s + 1.0, candidate_hook=col)
        for item in reader.blocks(block_s):
            if isinstance(item, SampleBlock):
                pipe.feed(item)
            elif isinstance(item, SourceEvent):
                continue
        pipe.finish()
    return col.out


def collect_arrays(cfg: DetectorConfig, emg_uv: np.ndarray, emg_fs_hz: float,
                   acc_g: np.ndarray | None = None, acc_fs_hz: float | None = None,
                   block_s: float = 300.0) -> list[Candidate]:
    """Candidates of samples in memory (fed in blocks of ``block_s`` as replay does)."""
    col = _Collector()
    pipe = Pipeline(_rules(cfg), emg_fs_hz=emg_fs_hz, acc_fs_hz=acc_fs_hz, keep_trace=False,
                    acc_wait_s=block_s + 1.0, candidate_hook=col)
    ne = int(block_s * emg_fs_hz)
    for k, i in enumerate(range(0, len(emg_uv), ne)):
        if acc_g is not None:
            na = int(block_s * acc_fs_hz)
            pipe.process_acc(acc_g[k * na:(k + 1) * na], k * na)
        pipe.process_emg(emg_uv[i:i + ne], i)
    pipe.finish()
    return col.out


def collect_night(night, cfg: DetectorConfig, block_s: float = 300.0) -> list[Candidate]:
    """Candidates of a :class:`~crampwatch.firmware_bridge.synth.SyntheticNight`,
    rendered block by block as its EDF file would be replayed."""
    view = night.for_file()
    col = _Collector()
    pipe = Pipeline(_rules(cfg), emg_fs_hz=view.emg_fs_hz, acc_fs_hz=view.acc_fs_hz,
                    keep_trace=False, acc_wait_s=block_s + 1.0, candidate_hook=col)
    n_emg = night.n_emg_samples
    ne = int(round(block_s * view.emg_fs_hz))
    for k, i in enumerate(range(0, n_emg, ne)):
        if view.acc_fs_hz:
            na = int(round(block_s * view.acc_fs_hz))
            j = k * na
            n = min(na, night.n_acc_samples - j)
            if n > 0:
                pipe.process_acc(view.render_acc(j, n), j)
        pipe.process_emg(view.render_emg(i, min(ne, n_emg - i)), i)
    pipe.finish()
    return col.out
