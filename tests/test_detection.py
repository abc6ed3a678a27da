"""Detection quality, measured against labels: simulated nights with every
distractor, and real public recordings (../shared/data)."""

import csv
import os

import numpy as np
import pytest

from crampwatch.detector import DetectorConfig, EpisodeEnded, Pipeline
from crampwatch.detector.evaluation import score
from crampwatch.detector.pipeline import LABELS
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED),
                                  reason="../shared/data (public recordings) not present")


def _replay(night, cfg=None, use_acc=True, block_s=10.0):
    fs, afs = night.emg_fs_hz, night.acc_fs_hz
    p = Pipeline(cfg or DetectorConfig(), fs, afs if use_acc else None)
    events, nb, na = [], int(block_s * fs), int(block_s * afs)
    for k, i in enumerate(range(0, night.n_emg_samples, nb)):
        if use_acc:
            j = k * na
            events += p.process_acc(night.render_acc(j, min(na, night.n_acc_samples - j)), j)
        events += p.process_emg(night.render_emg(i, min(nb, night.n_emg_samples - i)), i)
    events += p.finish()
    return [(e.episode.onset_s, e.episode.offset_s) for e in events if isinstance(e, EpisodeEnded)]


@pytest.fixture(scope="module")
def nights():
    # two nights nobody tuned on: different seeds, sample rates and mains frequency
    return [SyntheticNight(NightSpec(hours=1.0, seed=301, emg_fs_hz=1000.0, acc_fs_hz=100.0,
                                     mains_hz=50.0, n_cramps=3)),
            SyntheticNight(NightSpec(hours=1.0, seed=302, emg_fs_hz=500.0, acc_fs_hz=50.0,
                                     mains_hz=60.0, n_cramps=3))]


def _pooled(nights, **kw):
    eps, labels, t = [], [], 0.0
    for n in nights:
        eps += [(a + t, b + t) for a, b in _replay(n, **kw)]
        labels += [(lb.kind, lb.onset_s + t, lb.offset_s + t) for lb in n.labels]
        t += n.duration_s + 3600.0
    return score(eps, labels, sum(n.duration_s for n in nights))


def test_simulated_nights_with_every_distractor(nights):
    kinds = {lb.kind for n in nights for lb in n.labels}
    assert {"turn", "plm", "walk", "stretch", "lead_off", "pop", "ecg", "mains"} <= kinds
    r = _pooled(nights)
    assert r["n_labelled"] == 6
    assert r["f1"] >= 0.9, r
    assert r["false_positives_per_hour"] <= 0.5, r
    assert r["onset_error_median_s"] <= 1.0, r


def test_simulated_nights_emg_only(nights):
    r = _pooled(nights, use_acc=False)
    assert r["recall"] >= 0.8, r
    assert r["false_positives_per_hour"] <= 1.0, r


@needs_shared
def test_real_isometric_holds_are_tonic_and_found():
    """Tibialis anterior holds of 10 s (elderly_isometric), EMG only."""
    cfg = DetectorConfig(min_duration_s=5.0)
    found, tonic_share = 0, []
    for s in range(1, 11):
        d = np.load(os.path.join(SHARED, "elderly_isometric", f"subject{s:02d}.npz"))
        x = d["emg_uv_ta_task"][:, 2].astype(np.float64)
        p = Pipeline(cfg, float(d["fs_hz"]))
        events = p.process_emg(x, 0) + p.finish()
        found += any(isinstance(e, EpisodeEnded) for e in events)
        lab = p.trace()["label"][2:]                   # after the first window fills
        tonic_share.append(np.mean(lab == LABELS.index("tonic")))
    assert found >= 9
    assert np.median(tonic_share) >= 0.6


def _walking(muscle):
    with open(os.path.join(SHARED, "santuz_walking", "ID0012_TW_01_emg.csv")) as fh:
        rows = list(csv.DictReader(fh))
    return np.array([float(r[muscle]) for r in rows])


@needs_shared
@pytest.mark.parametrize("muscle", ["GM", "GL", "SO"])
def test_real_walking_calf_bursts_are_phasic_not_cramps(muscle):
    """Treadmill walking (santuz_walking, 1 kHz, EMG only), repeated to 2.5 min."""
    x = np.tile(_walking(muscle), 20)
    for cfg in (DetectorConfig(), DetectorConfig(min_duration_s=5.0)):
        p = Pipeline(cfg, 1000.0)
        events = p.process_emg(x, 0) + p.finish()
        assert not [e for e in events if isinstance(e, EpisodeEnded)]
    lab = p.trace()["label"]
    active = lab != LABELS.index("rest")
    assert np.mean(lab[active] == LABELS.index("phasic")) >= 0.8
