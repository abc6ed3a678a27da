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


# ------------------------------------------------------------------ candidate features
CANDIDATE_FEATURES = (
    "log_duration_s", "log_level_ratio", "level_cv", "level_roughness", "modulation",
    "rhythm", "tonic_fraction", "tonic_step_share", "movement_step_share",
    "artifact_step_share", "excess_hz", "excess_hz_drift", "excess_known_share",
    "log_drift_ratio", "hum_ratio", "acc_ok", "motion_g", "posture_change_deg",
    "log_since_move_s", "plm_share", "log_since_walk_s")
"""Features of a candidate episode, aggregated over its decision steps (from its
onset up to the step being decided), in this order:

``log_duration_s``      log of the seconds from the onset (at least 1 s)
``log_level_ratio``     log of the steps' median envelope over the floor at the onset
``level_cv``            standard deviation / mean of the steps' median envelopes (steadiness)
``level_roughness``     median absolute change of the log envelope from step to step
                        (irregularity of the contraction: motor units dropping in and out)
``modulation``          median window modulation (p10 / p90 of the envelope)
``rhythm``              median burst rhythm (envelope autocorrelation peak)
``tonic_fraction``      mean share of each window above the off-threshold
``tonic_step_share``    share of steps classified tonic; ``movement_step_share`` and
                        ``artifact_step_share`` likewise for movement and artifact
``excess_hz``           median RMS frequency of the power above the floor (Hz; 0 unknown)
``excess_hz_drift``     its median over the last third minus over the first third (Hz):
                        fatigue lowers it, an electrode coming loose raises it
``excess_known_share``  share of steps where it could be measured
``log_drift_ratio``     log(1 + median low-frequency swing / median envelope)
``hum_ratio``           median mains share (hum RMS / EMG RMS)
``acc_ok``              share of steps with a working accelerometer (0 without one)
``motion_g``            median dynamic acceleration (g; 0 without accelerometer)
``posture_change_deg``  largest posture change across a window (degrees; 0 without)
``log_since_move_s``    log(1 + seconds from the last leg movement to the onset), capped at
                        an hour (an hour without accelerometer)
``plm_share``           share of steps during a periodic-limb-movement series
``log_since_walk_s``    log(1 + seconds from the last step of walking to the onset), capped
                        at an hour
"""

STEP_COLUMNS = ("t_end_s", "level_uv", "floor_uv", "tonic_fraction", "modulation", "rhythm",
                "motion_g", "posture_deg", "hum_ratio", "drift_uv", "median_uv", "excess_hz",
                "acc_ok", "label", "since_move_s", "plm", "since_walk_s")
"""One row per decision step as the pipeline keeps them for :func:`candidate_features`."""

_CAP_S = 3600.0


def candidate_features(rows: list, onset_s: float, t_s: float) -> dict:
    """The :data:`CANDIDATE_FEATURES` of the steps ``rows`` (tuples in
    :data:`STEP_COLUMNS` order) that end after ``onset_s`` and by ``t_s``.

    Pure arithmetic on what the pipeline computed: the same rows give the same
    features, live or in replay.  Labels are indices into
    ``crampwatch.detector.pipeline.LABELS`` (tonic 2, movement 4, artifact 5).
    """
    sel = [r for r in rows if onset_s < r[0] <= t_s + 1e-9]
    if not sel:
        sel = [r for r in rows if r[0] <= t_s + 1e-9][-1:] or rows[-1:]
    a = np.array(sel, dtype=np.float64).reshape(-1, len(STEP_COLUMNS))
    col = {c: a[:, i] for i, c in enumerate(STEP_COLUMNS)}
    n = len(a)
    level = col["level_uv"]
    floor = max(float(col["floor_uv"][0]), 1e-3)
    med_level = float(np.median(level))
    mean_level = float(np.mean(level))
    logl = np.log(np.maximum(level, 1e-3))
    exc = col["excess_hz"]
    fin = np.isfinite(exc)
    excess = float(np.median(exc[fin])) if fin.any() else 0.0
    drift_hz = 0.0
    if fin.sum() >= 3:
        third = max(1, n // 3)
        first, last = exc[:third], exc[-third:]
        if np.isfinite(first).any() and np.isfinite(last).any():
            drift_hz = float(np.median(last[np.isfinite(last)])
                             - np.median(first[np.isfinite(first)]))
    acc_ok = col["acc_ok"] >= 0.8
    motion = np.nan_to_num(col["motion_g"], nan=0.0)
    posture = np.nan_to_num(col["posture_deg"], nan=0.0)
    label = col["label"]
    since_move = float(col["since_move_s"][0])
    since_walk = float(col["since_walk_s"][0])
    drift_ratio = float(np.median(col["drift_uv"] / np.maximum(col["median_uv"], 1e-3)))
    return {
        "log_duration_s": float(np.log(max(t_s - onset_s, 1.0))),
        "log_level_ratio": float(np.log(max(med_level, 1e-3) / floor)),
        "level_cv": float(np.std(level) / mean_level) if mean_level > 0 else 0.0,
        "level_roughness": float(np.median(np.abs(np.diff(logl)))) if n > 1 else 0.0,
        "modulation": float(np.median(col["modulation"])),
        "rhythm": float(np.median(col["rhythm"])),
        "tonic_fraction": float(np.mean(col["tonic_fraction"])),
        "tonic_step_share": float(np.mean(label == 2)),
        "movement_step_share": float(np.mean(label == 4)),
        "artifact_step_share": float(np.mean(label == 5)),
        "excess_hz": excess,
        "excess_hz_drift": drift_hz,
        "excess_known_share": float(np.mean(fin)),
        "log_drift_ratio": float(np.log1p(min(max(drift_ratio, 0.0), 1e3))),
        "hum_ratio": float(min(np.median(col["hum_ratio"]), 100.0)),
        "acc_ok": float(np.mean(acc_ok)),
        "motion_g": float(np.median(motion)),
        "posture_change_deg": float(np.max(posture)),
        "log_since_move_s": float(np.log1p(min(max(since_move, 0.0), _CAP_S))),
        "plm_share": float(np.mean(col["plm"])),
        "log_since_walk_s": float(np.log1p(min(max(since_walk, 0.0), _CAP_S))),
    }
