"""Window features of the envelope, the mains hum, the raw signal and the
accelerometer, computed for many decision steps at once (vectorised).

Each feature is scale-free or in physical units named in its key, so the
classifier does not depend on the amplifier's gain:

``p10_uv``        10th percentile of the envelope (uV RMS)
``median_uv``     median envelope of the window (uV RMS)
``p90_uv``        90th percentile of the envelope (uV RMS)
``modulation``    10th / 90th percentile of the envelope (1 = steady, 0 = bursty)
``rhythm``        highest local peak of the envelope's autocorrelation at lags
                  of 0.4-2.5 s over the rhythm window (walking ~ 0.5-0.9)
``hum_ratio``     RMS of the mains hum removed by the notches / RMS of the EMG
``hum_uv``        RMS of the mains hum removed by the notches (uV)
``drift_uv``      standard deviation of the raw signal's 50 ms means (uV):
                  motion artifact, electrode pops, lead-off
``flat_fraction`` fraction of frames whose raw peak-to-peak is zero
``motion_g``      mean dynamic acceleration (g); NaN without accelerometer
``posture_deg``   angle between the gravity vector at the window's start and
                  end (degrees); NaN without accelerometer
``ms_uv2``        mean square of the filtered EMG over the window (uV^2)
``dms_uv2``       mean square of its sample-to-sample difference (uV^2): with
                  ``ms_uv2``, the RMS frequency of the window's power
``acc_ok``        share of the window's frames with a working accelerometer
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FEATURE_NAMES = ("p10_uv", "hum_uv", "median_uv", "p90_uv", "modulation", "rhythm", "hum_ratio",
                 "drift_uv", "flat_fraction", "motion_g", "posture_deg", "ms_uv2", "dms_uv2",
                 "acc_ok")


def window_features(hist: dict, ends: np.ndarray, window_n: int, rhythm_n: int,
                    lag_lo_n: int, lag_hi_n: int) -> dict:
    """Features of the windows ending at frame positions ``ends`` of ``hist``.

    ``hist`` holds equal-length frame arrays ``env_uv``, ``ms_uv2``,
    ``dms_uv2``, ``hum_ms_uv2``, ``raw_mean_uv``, ``raw_ptp_uv``, ``grav_g``
    (n, 3), ``dyn_g`` and ``acc_ok``; every ``ends[i] - rhythm_n + 1`` must be >= 0.
    """
    ends = np.asarray(ends, dtype=np.int64)
    out = {}
    if len(ends) == 0:
        return {k: np.zeros(0) for k in FEATURE_NAMES}
    starts = ends - window_n + 1
    env_w = np.sort(sliding_window_view(hist["env_uv"], window_n)[starts], axis=1)
    out["sorted_env_uv"] = env_w
    p10, p50, p90 = (_quantile_sorted(env_w, q) for q in (0.1, 0.5, 0.9))
    out["p10_uv"] = p10
    out["median_uv"] = p50
    out["p90_uv"] = p90
    out["modulation"] = np.where(p90 > 0, p10 / np.maximum(p90, 1e-12), 1.0)
    # window means over the same values in the same order whatever the batching, so
    # chunked and one-shot runs agree to the last bit
    ms_w = sliding_window_view(hist["ms_uv2"], window_n)[starts].mean(axis=1)
    hum_w = sliding_window_view(hist["hum_ms_uv2"], window_n)[starts].mean(axis=1)
    out["ms_uv2"] = ms_w
    out["dms_uv2"] = sliding_window_view(hist["dms_uv2"], window_n)[starts].mean(axis=1)
    out["acc_ok"] = sliding_window_view(hist["acc_ok"], window_n)[starts].mean(axis=1)
    out["hum_ratio"] = np.sqrt(hum_w / np.maximum(ms_w, 1e-12))
    out["hum_uv"] = np.sqrt(hum_w)
    out["drift_uv"] = sliding_window_view(hist["raw_mean_uv"], window_n)[starts].std(axis=1)
    out["flat_fraction"] = (sliding_window_view(hist["raw_ptp_uv"], window_n)[starts]
                            <= 1e-9).mean(axis=1)
    out["motion_g"] = sliding_window_view(hist["dyn_g"], window_n)[starts].mean(axis=1)
    g0 = hist["grav_g"][starts]
    g1 = hist["grav_g"][ends]
    cos = np.sum(g0 * g1, axis=1) / np.maximum(
        np.linalg.norm(g0, axis=1) * np.linalg.norm(g1, axis=1), 1e-12)
    out["posture_deg"] = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    out["rhythm"] = rhythm_peak(
        sliding_window_view(hist["env_uv"], rhythm_n)[ends - rhythm_n + 1], lag_lo_n, lag_hi_n)
    return out


def _quantile_sorted(rows: np.ndarray, q: float) -> np.ndarray:
    """Quantile of each sorted row, linear interpolation (numpy's default)."""
    pos = q * (rows.shape[1] - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, rows.shape[1] - 1)
    w = pos - lo
    return rows[:, lo] * (1.0 - w) + rows[:, hi] * w


def rhythm_peak(env_windows: np.ndarray, lag_lo_n: int, lag_hi_n: int) -> np.ndarray:
    """Highest local maximum of the normalised autocorrelation of each row
    (linear trend removed) at lags ``lag_lo_n .. lag_hi_n`` frames; 0 where the
    autocorrelation only decays (no rhythm)."""
    m, n = env_windows.shape
    if m == 0:
        return np.zeros(0)
    t = np.arange(n) - (n - 1) / 2.0
    x = env_windows - env_windows.mean(axis=1, keepdims=True)
    slope = (x * t).sum(axis=1) / (t @ t)
    x = x - slope[:, None] * t[None, :]
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(x, nfft, axis=1)
    ac = np.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, : lag_hi_n + 2]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    # unbiased-ish: correct for the shrinking overlap at longer lags
    lags = np.arange(ac.shape[1])
    ac = ac * (n / np.maximum(n - lags, 1))[None, :]
    mid = ac[:, 1:-1]
    is_peak = (mid >= ac[:, :-2]) & (mid >= ac[:, 2:])
    lag_ok = (lags[1:-1] >= lag_lo_n) & (lags[1:-1] <= lag_hi_n)
    vals = np.where(is_peak & lag_ok[None, :], mid, 0.0)
    return np.clip(vals.max(axis=1), 0.0, 1.0)
