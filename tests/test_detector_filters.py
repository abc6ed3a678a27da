"""The causal filter chain: chunked runs equal one-shot runs, and the design
does what it says (band edges, notches)."""

import numpy as np
import pytest
from scipy import signal

from crampwatch.detector.filters import AccFilter, EmgFilter, band_edges, mains_frequencies


def _chunks(x, rng, max_len=997):
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, max_len))
        out.append(x[i:i + n])
        i += n
    return out


@pytest.mark.parametrize("fs_hz", [250.0, 1000.0, 2000.0])
def test_emg_filter_chunked_equals_one_shot(fs_hz):
    rng = np.random.default_rng(int(fs_hz))
    x = rng.normal(0, 20, int(20 * fs_hz)) + 300.0          # DC offset as electrodes have
    y1, h1 = EmgFilter(fs_hz).process(x)
    f = EmgFilter(fs_hz)
    parts = [f.process(c) for c in _chunks(x, rng)]
    y2 = np.concatenate([p[0] for p in parts])
    h2 = np.concatenate([p[1] for p in parts])
    np.testing.assert_allclose(y2, y1, rtol=0, atol=1e-9)
    np.testing.assert_allclose(h2, h1, rtol=0, atol=1e-9)


def test_emg_filter_matches_scipy_reference_and_has_no_startup_step():
    fs = 1000.0
    rng = np.random.default_rng(0)
    x = rng.normal(0, 5, 10000) + 1000.0
    f = EmgFilter(fs)
    y, _ = f.process(x)
    # independent reference: the same cascade run by scipy in one call from the same state
    sos = np.vstack([f.bandpass.sos, f.notch.sos])
    ref = signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * x[0])[0]
    np.testing.assert_allclose(y, ref, atol=1e-6)
    # a 1000 uV electrode offset must not ring through the first samples
    assert np.abs(y[:200]).max() < 50.0


def test_band_is_clipped_below_nyquist_and_notches_listed():
    low, high, narrowed = band_edges(250.0, 20.0, 450.0)
    assert narrowed and high == pytest.approx(112.5) and low == 20.0
    assert band_edges(1000.0, 20.0, 450.0)[2] is False
    assert mains_frequencies("50", 1000.0, 450.0)[:3] == [50.0, 100.0, 150.0]
    assert 60.0 in mains_frequencies("auto", 1000.0, 450.0)
    assert mains_frequencies("off", 1000.0, 450.0) == []


def test_notch_removes_mains_but_keeps_emg_band():
    fs = 1000.0
    t = np.arange(int(30 * fs)) / fs
    hum = 100.0 * np.sin(2 * np.pi * 50.0 * t) + 30.0 * np.sin(2 * np.pi * 150.0 * t)
    emg = np.random.default_rng(1).normal(0, 10.0, len(t))
    y, removed = EmgFilter(fs, mains="50").process(hum + emg)
    tail = slice(int(5 * fs), None)                  # after the notches settle
    f, p_in = signal.welch(hum[tail] + emg[tail], fs, nperseg=4096)
    _, p_out = signal.welch(y[tail], fs, nperseg=4096)
    at = lambda fr: np.argmin(np.abs(f - fr))        # noqa: E731
    assert p_out[at(50)] < p_in[at(50)] / 1000       # > 30 dB down at the mains line
    assert p_out[at(150)] < p_in[at(150)] / 100
    band = (f > 60) & (f < 400) & (np.abs(f - 100) > 5) & (np.abs(f - 150) > 5) & \
           (np.abs(f - 200) > 5) & (np.abs(f - 250) > 5) & (np.abs(f - 300) > 5) & \
           (np.abs(f - 350) > 5)
    assert np.median(p_out[band] / p_in[band]) > 0.7  # the EMG band passes
    # what the notches removed is the hum (RMS ~ 74 uV), not the EMG
    assert 60.0 < np.sqrt(np.mean(removed[tail] ** 2)) < 90.0


def test_acc_filter_chunked_and_splits_gravity_from_motion():
    fs = 100.0
    rng = np.random.default_rng(2)
    n = int(60 * fs)
    acc = np.zeros((n, 3))
    acc[:, 2] = 1.0                                    # lying: gravity on z
    acc[3000:3300, 0] += 0.3 * np.sin(np.linspace(0, 30 * np.pi, 300))   # 3 s of movement
    acc += rng.normal(0, 0.003, acc.shape)
    g1, d1 = AccFilter(fs).process(acc)
    f = AccFilter(fs)
    parts = [f.process(c) for c in _chunks(acc, rng, 300)]
    np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), g1, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), d1, atol=1e-12)
    assert np.abs(g1[-1000:, 2] - 1.0).max() < 0.01   # gravity recovered
    assert d1[3050:3250].mean() > 10 * d1[1000:2000].mean()   # movement stands out
