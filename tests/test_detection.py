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


def _white(rng, n, fs, rms_uv):
    from scipy import signal
    sos = signal.butter(4, [20.0, min(450.0, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    y = signal.sosfilt(sos, rng.normal(0.0, 1.0, n + 2000))[2000:]
    return rms_uv * y / y.std()


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


@needs_shared
def test_real_walking_bouts_emg_only_are_never_cramps():
    """20 bouts of real lower-leg walking EMG (GM, GL, SO, PL: 20-90 s, starting
    anywhere in the stride, with or without quiet time around them), EMG only:
    none is a cramp, at the default minimum duration and at 5 s."""
    rng = np.random.default_rng(12)
    reported = 0
    for k in range(20):
        w = _walking(("GM", "GL", "SO", "PL")[k % 4])
        dur_s = int(rng.integers(20, 91))
        start = int(rng.integers(0, len(w)))
        x = np.tile(np.roll(w, -start), dur_s * 1000 // len(w) + 1)[:dur_s * 1000]
        pad_s = (0, 10, 60)[k % 3]
        if pad_s:
            quiet = _white(rng, pad_s * 1000, 1000.0, 3.0)
            x = np.concatenate([quiet, x + _white(rng, len(x), 1000.0, 3.0), quiet])
        for cfg in (DetectorConfig(), DetectorConfig(min_duration_s=5.0)):
            p = Pipeline(cfg, 1000.0, keep_trace=False)
            reported += sum(isinstance(e, EpisodeEnded) for e in p.process_emg(x, 0) + p.finish())
    assert reported == 0


@needs_shared
@pytest.mark.parametrize("seed", [0, 1])
def test_real_holds_in_one_recording_with_a_floor_that_steps(seed):
    """Nine 6-8 s holds (real TA EMG of elderly_isometric, random subjects and
    excerpts) 10-20 s apart in one recording, the floor stepping x0.5-x2 after
    every hold (contact pressure): each hold is its own episode (>= 8 of 9) and
    no episode outlasts its hold by more than 3 s (``min_duration_s=5``)."""
    rng = np.random.default_rng(seed)
    fs = 2000.0
    parts, truth, t, floor_uv = [], [], 0.0, rng.uniform(2.0, 8.0)
    for _ in range(9):
        rest_s = rng.uniform(10.0, 20.0)
        parts.append(_white(rng, int(rest_s * fs), fs, floor_uv))
        t += rest_s
        d = np.load(os.path.join(SHARED, "elderly_isometric",
                                 f"subject{int(rng.integers(1, 21)):02d}.npz"))
        hold_s = rng.uniform(6.0, 8.0)
        n = int(hold_s * fs)
        a = int(rng.integers(0, len(d["emg_uv_ta_task"]) - n))
        parts.append(d["emg_uv_ta_task"][a:a + n, 2].astype(np.float64)
                     + _white(rng, n, fs, floor_uv))
        truth.append((t, t + hold_s))
        t += hold_s
        floor_uv *= rng.uniform(0.5, 2.0)
    parts.append(_white(rng, int(15 * fs), fs, floor_uv))
    p = Pipeline(DetectorConfig(min_duration_s=5.0), fs, keep_trace=False)
    eps = [(e.episode.onset_s, e.episode.offset_s)
           for e in p.process_emg(np.concatenate(parts), 0) + p.finish()
           if isinstance(e, EpisodeEnded)]
    found = [any(min(b, tb) > max(a, ta) for a, b in eps) for ta, tb in truth]
    assert sum(found) >= 8, (eps, truth)
    for a, b in eps:
        hold = [(ta, tb) for ta, tb in truth if min(b, tb) > max(a, ta)]
        assert len(hold) == 1 and b - hold[0][1] < 3.0, (a, b, hold)


def test_randomised_nights_never_tuned_on():
    """Eight domain-randomised nights (crampwatch simulate --randomize) of seeds
    that no rule was tuned on (tuning used seeds 1-20; the README's table reports
    others): boards of 200-4000 Hz and 0.5-30 uV floors, standing, leg movements,
    loose electrodes, failed accelerometers, weak and short cramps, fed as live."""
    from crampwatch.firmware_bridge.synth import randomized_spec
    from crampwatch.firmware_bridge.synth.night import SyntheticNight as Night

    nights = [("shifted", 201), ("shifted", 202), ("shifted", 203), ("board", 201),
              ("board", 202), ("behaviour", 201), ("faults", 201), ("strength", 201)]
    eps, labels, t, total, over = [], [], 0.0, 0.0, []
    for family, seed in nights:
        night = Night(randomized_spec(seed, family, hours=1.0))
        raw_acc = night.render_acc       # what a file holds: a silent sensor reads zeros
        night.render_acc = lambda i, n, f=raw_acc: np.nan_to_num(f(i, n), nan=0.0)
        found = _replay(night, use_acc=night.has_accelerometer)
        cramps = [(lb.onset_s, lb.offset_s) for lb in night.labels if lb.kind == "cramp"]
        for a, b in found:
            hit = [(ca, cb) for ca, cb in cramps if min(b, cb) > max(a, ca)]
            if hit:
                over.append((b - a) - (hit[0][1] - hit[0][0]))
        eps += [(a + t, b + t) for a, b in found]
        labels += [(lb.kind, lb.onset_s + t, lb.offset_s + t) for lb in night.labels]
        t += night.duration_s + 3600.0
        total += night.duration_s
    r = score(eps, labels, total)
    assert r["n_labelled"] >= 15
    assert r["recall"] >= 0.8, r
    assert r["false_positives_per_hour"] <= 0.5, r
    assert r["onset_error_median_s"] <= 1.0, r
    assert max(over) <= 30.0, over
