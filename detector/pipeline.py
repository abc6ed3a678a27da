"""The whole detection pipeline: samples in, episode events out.

One object, fed live (blocks of a few samples as they arrive) or in replay
(blocks of seconds), gives the same frames, decisions and episodes: every
stage keeps its state, frames are aligned to absolute sample indices, and the
accelerometer is mapped onto the EMG frames by time.

Examples
--------
>>> import numpy as np
>>> from crampwatch.detector import Pipeline, DetectorConfig
>>> fs = 1000.0
>>> rng = np.random.default_rng(1)
>>> emg = rng.normal(0, 2.0, int(60 * fs))                       # 60 s of rest, 2 uV
>>> from scipy import signal
>>> sos = signal.butter(2, [30, 150], "bandpass", fs=fs, output="sos")  # muscle's band
>>> burst = signal.sosfilt(sos, rng.normal(0, 1, 25000))
>>> emg[20000:45000] += 80 * burst / burst.std()                  # 25 s tonic contraction
>>> pipe = Pipeline(DetectorConfig(), emg_fs_hz=fs)
>>> events = pipe.process_emg(emg, first_index=0) + pipe.finish()
>>> [type(e).__name__ for e in events]
['EpisodeStarted', 'EpisodeEnded']
>>> ep = events[-1].episode
>>> round(ep.onset_s), round(ep.offset_s)
(20, 45)
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from crampwatch.detector.config import DetectorConfig
from crampwatch.detector.episodes import EpisodeAssembler, EpisodeEnded, StepDecision
from crampwatch.detector.features import candidate_features, window_features
from crampwatch.errors import ConfigError
from crampwatch.detector.filters import AccFilter, EmgFilter
from crampwatch.detector.floor import FloorTracker
from crampwatch.detector.frames import AccFrames, EmgFrames

log = logging.getLogger(__name__)

LABELS = ("rest", "active", "tonic", "phasic", "movement", "artifact", "nodata", "upright")

_FRAME_KEYS = ("ms_uv2", "dms_uv2", "hum_ms_uv2", "raw_mean_uv", "raw_ptp_uv")


class Pipeline:
    """Band-pass + notch -> envelope -> adaptive floor -> window features ->
    tonic/phasic/movement/artifact decision -> episodes.

    Parameters
    ----------
    config : DetectorConfig
    emg_fs_hz : float
        EMG sample rate.
    acc_fs_hz : float or None
        Accelerometer sample rate; None for EMG-only recordings (rhythm and
        envelope-shape features then do the accelerometer's job).
    keep_trace : bool
        Keep one row of features per decision step (``trace()``,
        ``drain_trace()``), for tuning, the per-minute summaries and the
        review plots.  Off, memory does not grow with the night.
    confidence_model : model or callable or None
        The trained candidate model, ``crampwatch.models.load_model()``
        (``inputs == "candidate"``: it maps the candidate features of
        :data:`~crampwatch.detector.features.CANDIDATE_FEATURES` to P(cramp)):
        it gives every episode its confidence and, with
        ``config.classifier == "model"``, decides whether a candidate is
        confirmed.  A plain callable maps ``episodes.episode_features`` to a
        probability (confidence only); None: a fixed heuristic of the tonic
        score and the duration.
    acc_wait_s : float or None
        Longest wait for accelerometer samples before frames are decided
        without them (None: ``config.acc_wait_s``, 2 s, for live streams).
        Replay, which reads each stream in blocks, passes the block length.
    clock : callable or None
        Live: a monotonic clock (``time.monotonic``).  Frames are then decided
        without the accelerometer only once they have waited ``acc_wait_s`` of
        stream time *and* of wall-clock time since they arrived, so a source
        faster than real time is not judged silent by its stream time.
    candidate_hook : callable or None
        Called as ``hook(stage, onset_s, t_s, features)`` with the candidate
        features each time a candidate reaches the point where the rules would
        confirm it (``stage`` "confirm") and when a confirmed episode ends
        ("end", ``t_s`` its offset): how the training table is collected
        (``crampwatch.tools._candidates``).

    Notes
    -----
    Times are seconds from sample index 0 of the EMG stream.  Feed EMG with
    :meth:`process_emg` and accelerometer with :meth:`process_acc` (or
    :meth:`feed` with blocks that have ``stream``, ``data``, ``first_index``),
    in any interleaving; call :meth:`finish` at the end of the stream.

    The accelerometer is checked before it is believed: a sensor that is
    silent, stuck on one value (all zeros included) or reads a gravity far
    from 1 g (saturated) makes those steps run EMG-only (``acc_ok`` 0 in the
    trace).
    """

    ACC_AHEAD_S = 600.0
    """Accelerometer samples further ahead of the EMG than this are held (at most
    this long of them) until the EMG comes near."""

    MODEL_CANDIDATE_CHANGES = {"plm_min_duration_s": 10.0, "candidate_tonic_fraction": 0.5,
                               "candidate_artifact_fraction": 0.4, "walk_override_ratio": 1.0,
                               "walk_override_uv": 0.0, "tonic_min_fraction": 0.8,
                               "modulation_min": 0.25}
    """With ``classifier="model"`` the rule chain proposes candidates with these
    settings changed, more permissive than the rules alone (the PLM-series and
    standing-after-walking protections off, looser tonic thresholds): the
    near-misses reach the model, which decides (it was trained on exactly these
    candidates, ``models/train_candidates.py``).  They replace the configured
    values of those settings in the model path."""

    LONG_GAP_S = 60.0
    """Gaps longer than this restart detection after them (shorter ones are
    decided as ``nodata`` steps)."""

    def __init__(self, config: DetectorConfig | None = None, emg_fs_hz: float = 1000.0,
                 acc_fs_hz: float | None = None, keep_trace: bool = True,
                 confidence_model=None, acc_wait_s: float | None = None, clock=None,
                 candidate_hook=None):
        cfg = config or DetectorConfig()
        if cfg.classifier == "model" and self.MODEL_CANDIDATE_CHANGES:
            cfg = cfg.replace(**self.MODEL_CANDIDATE_CHANGES)
        self.cfg = cfg
        cand_model = confidence_model if getattr(confidence_model, "inputs", None) == "candidate" \
            else None
        if cfg.classifier == "model" and cand_model is None:
            raise ConfigError("classifier=model needs the candidate model: pass "
                              "confidence_model=crampwatch.models.load_model()", key="classifier")
        self._model = cand_model
        self._hook = candidate_hook
        self._cand_rows = []             # features.STEP_COLUMNS rows of the current candidate/episode
        self._idle_rows_n = int(math.ceil((max(cfg.onset_lookback_s, cfg.window_s) + 2.0)
                                          / cfg.step_s)) + 2
        self.emg_fs_hz = float(emg_fs_hz)
        self.acc_fs_hz = float(acc_fs_hz) if acc_fs_hz else None
        self.emg_filter = EmgFilter(self.emg_fs_hz, cfg.band_low_hz, cfg.band_high_hz,
                                    cfg.band_order, cfg.mains_hz, cfg.notch_width_hz)
        if self.emg_filter.info["narrowed"]:
            log.warning("EMG sampled at %g Hz: band-pass narrowed to %.0f-%.0f Hz "
                        "(configured %.0f-%.0f Hz)", self.emg_fs_hz,
                        self.emg_filter.info["band_low_hz"], self.emg_filter.info["band_high_hz"],
                        cfg.band_low_hz, cfg.band_high_hz)
        self.hop_n = max(1, int(round(cfg.frame_s * self.emg_fs_hz)))
        self.frame_dt = self.hop_n / self.emg_fs_hz
        self.rms_n = max(1, int(round(cfg.rms_window_s / self.frame_dt)))
        self.step_n = max(1, int(round(cfg.step_s / self.frame_dt)))
        self.window_n = max(self.step_n, int(round(cfg.window_s / self.frame_dt)))
        self.rhythm_n = max(self.window_n, int(round(cfg.rhythm_window_s / self.frame_dt)))
        self.lag_lo_n = max(1, int(round(0.4 / self.frame_dt)))
        self.lag_hi_n = min(self.rhythm_n // 2, int(round(2.5 / self.frame_dt)))
        self.lookback_n = max(self.rhythm_n, int(round(cfg.onset_lookback_s / self.frame_dt)))
        self.emg_frames = EmgFrames(self.hop_n)
        self.acc_filter = AccFilter(self.acc_fs_hz) if self.acc_fs_hz else None
        self.acc_frames = AccFrames(self.acc_fs_hz, self.emg_fs_hz, self.hop_n) \
            if self.acc_fs_hz else None
        self.acc_wait_s = cfg.acc_wait_s if acc_wait_s is None else float(acc_wait_s)
        self._clock = clock
        self._arrivals = deque()        # (frame end, clock time) of EMG arrivals (live)
        self._waited_frame = 0          # EMG frames below this waited acc_wait_s (live)
        self._acc_prev = None            # last raw accelerometer sample
        self._acc_run = 0                # how many samples it has been repeated
        self._acc_stuck_n = max(3, int(round(self.acc_fs_hz))) if self.acc_fs_hz else 0
        self._acc_ahead = deque()        # (first_index, samples) far ahead of the EMG
        self._acc_ahead_n = 0
        self._ahead_n = int(self.ACC_AHEAD_S / self.frame_dt) if self.acc_fs_hz else 0
        self.assembler = EpisodeAssembler(cfg.min_duration_s, cfg.max_gap_s, cfg.end_gap_s,
                                          cfg.merge_gap_s, cfg.candidate_tonic_fraction,
                                          self.window_n * self.frame_dt,
                                          confidence_fn=None if cand_model else confidence_model,
                                          movement_bridge_s=cfg.movement_bridge_s,
                                          candidate_artifact_fraction=cfg.candidate_artifact_fraction,
                                          gate_fn=self._gate if (cfg.classifier == "model"
                                                                 or candidate_hook) else None,
                                          grade_fn=self._grade if (cand_model or candidate_hook)
                                          else None,
                                          min_confidence=cfg.min_confidence,
                                          gate_threshold=cand_model.threshold
                                          if cfg.classifier == "model" else None)
        self._upright_cos = math.cos(math.radians(cfg.upright_max_deg))
        self._axis = {"x": 0, "y": 1, "z": 2}.get(cfg.upright_axis)
        self.next_emg_index = 0
        self.next_acc_index = 0
        self.n_gaps = 0
        self.gap_samples = 0
        step_s = self.step_n * self.frame_dt
        self.floor = FloorTracker(cfg.floor_min_uv, cfg.floor_down_s, cfg.floor_up_s,
                                  cfg.floor_window_s, step_s)
        # broadband noise: the RMS frequency of white noise through this filter chain,
        # against that of muscle; checked only where the band reaches far enough
        self._r_white = _white_diff_ratio(self.emg_filter)
        f_white = _ratio_to_hz(self._r_white, self.emg_fs_hz)
        self.f_split_hz = 0.5 * (cfg.muscle_max_hz + f_white) \
            if f_white >= 1.25 * cfg.muscle_max_hz else math.inf
        self._floor_r = self._r_white    # diff/signal power ratio of the floor itself
        self._pending = {k: np.zeros(0) for k in _FRAME_KEYS + ("valid",)}
        self._pending_first = 0          # frame index of _pending[...][0]
        self._hist = None                # dict of frame arrays (history)
        self._hist_first = 0             # frame index of _hist[...][0]
        self._final = 0                  # frames below this are in the history
        self._next_step_end = self.step_n - 1
        self._run_start = None           # frame where the current active run began
        self._onset_frame = None         # where that run's contraction began to rise
        self._run_last = None            # last frame of the current run
        self._run_moved = False          # the current run began with movement
        self._run_tonic = 0              # tonic steps in the current run
        self._bursts = deque()           # (onset_s, end_s) of recent 0.5-10 s leg movements
        self._walk_steps = deque()       # times of recent rhythmic steps
        self._walk_last_s = -math.inf    # last step of the last walk
        self._moved_s = -math.inf        # last step with leg movement
        self._getup_s = -math.inf        # last large posture change (getting up)
        self._walk_grav = None
        self._recent = deque(maxlen=max(4, int(round(12.0 / step_s))))   # (t_end, step median)
        self._finished = False
        self.keep_trace = keep_trace
        self._trace = []
        self._emg_seen = 0
        self._emg_nan = 0
        self._raw_min = math.inf
        self._raw_max = -math.inf

    @property
    def floor_uv(self) -> float:
        """The current resting floor (uV RMS); NaN before the first step."""
        return self.floor.floor_uv

    # ------------------------------------------------------------------ input
    def feed(self, block) -> list:
        """Feed a block with ``stream`` ("emg" or "acc"), ``data`` and ``first_index``."""
        data = np.asarray(block.data)
        if block.stream == "emg":
            return self.process_emg(data[:, 0] if data.ndim == 2 else data, block.first_index)
        if block.stream == "acc":
            return self.process_acc(data, block.first_index)
        return []

    def process_emg(self, emg_uv: np.ndarray, first_index: int | None = None) -> list:
        """Feed EMG samples (uV) starting at stream index ``first_index``.

        A ``first_index`` beyond the next expected index is a gap: the missing
        frames are marked ``nodata`` (never interpolated) and the filters
        restart after it.
        """
        x = np.asarray(emg_uv, dtype=np.float64).reshape(-1)
        if first_index is None:
            first_index = self.next_emg_index
        if first_index < self.next_emg_index:            # overlap: drop what we had
            x = x[self.next_emg_index - first_index:]
            first_index = self.next_emg_index
        events = []
        if first_index > self.next_emg_index:
            events += self._emg_gap(first_index)
            skip = (-first_index) % self.hop_n
            x = x[skip:]
            first_index += skip
            self.next_emg_index = first_index
        if x.size == 0:
            return events
        bad = ~np.isfinite(x)
        any_bad = bool(bad.any())
        if any_bad:
            self._emg_nan += int(bad.sum())
            x = np.where(bad, 0.0, x)
        self._emg_seen += x.size
        self._raw_min = min(self._raw_min, float(x.min()))
        self._raw_max = max(self._raw_max, float(x.max()))
        y, hum = self.emg_filter.process(x)
        fr = self.emg_frames.process(y, hum, x)
        self.next_emg_index = first_index + x.size
        n = len(fr["ms_uv2"])
        if n:
            valid = np.ones(n)
            if any_bad:
                # frames that held non-finite samples carry no data
                idx0 = fr["first_frame"] * self.hop_n - first_index
                for k in range(n):
                    a, b = max(0, idx0 + k * self.hop_n), idx0 + (k + 1) * self.hop_n
                    if b > 0 and bad[a:b].any():
                        valid[k] = 0
            self._append_pending(fr["first_frame"], fr, valid)
        return events + self._advance()

    def process_acc(self, acc_g: np.ndarray, first_index: int | None = None) -> list:
        """Feed accelerometer samples (g, shape (n, 3)) from stream index ``first_index``."""
        if self.acc_frames is None:
            return []
        a = np.asarray(acc_g, dtype=np.float64).reshape(-1, 3)
        if first_index is None:
            first_index = self.next_acc_index
        if first_index < self.next_acc_index:
            a = a[self.next_acc_index - first_index:]
            first_index = self.next_acc_index
        if not len(a):
            return []
        if self._acc_ahead or self._far_ahead(first_index):
            # far ahead of the EMG (after a long gap, or a damaged index): held, in a
            # bounded queue, until the EMG comes near; never frames for the distance
            self._acc_ahead.append((first_index, a))
            self._acc_ahead_n += len(a)
            while self._acc_ahead_n > self.ACC_AHEAD_S * self.acc_fs_hz and len(self._acc_ahead) > 1:
                _, old = self._acc_ahead.popleft()
                self._acc_ahead_n -= len(old)
            return self._advance()
        self._ingest_acc(a, first_index)
        return self._advance()

    def _far_ahead(self, acc_index: int) -> bool:
        emg_frame = max(self._final, self._pending_first + len(self._pending["ms_uv2"]))
        return int(self.acc_frames.frame_of(acc_index)) > emg_frame + self._ahead_n

    def _release_acc(self) -> None:
        """Accelerometer blocks held while far ahead go in once the EMG is near."""
        while self._acc_ahead and not self._far_ahead(self._acc_ahead[0][0]):
            first_index, a = self._acc_ahead.popleft()
            self._acc_ahead_n -= len(a)
            if first_index < self.next_acc_index:
                a = a[self.next_acc_index - first_index:]
                first_index = self.next_acc_index
            if len(a):
                self._ingest_acc(a, first_index)

    def _ingest_acc(self, a: np.ndarray, first_index: int) -> None:
        if first_index > self.next_acc_index:
            self.acc_filter.reset()
            self._acc_prev, self._acc_run = None, 0
        finite = np.all(np.isfinite(a), axis=1)
        a = np.where(finite[:, None], a, 0.0)
        grav, dyn = self.acc_filter.process(a)
        bad = ~finite | self._stuck(a)
        gmag = np.sqrt(np.sum(grav * grav, axis=1))
        bad |= (gmag < 0.5) | (gmag > 1.6)      # at rest a working sensor reads 1 g
        self.acc_frames.process(grav, dyn, first_index, bad)
        self.next_acc_index = first_index + len(a)

    def finish(self, truncated: bool = False) -> list:
        """End of stream: decide the remaining frames and close an open episode."""
        if self._finished:
            return []
        self._finished = True
        events = self._advance(final=True)
        t_end = self._final * self.frame_dt
        events += self.assembler.finish(t_end, truncated=truncated)
        return events

    # --------------------------------------------------------------- internals
    def _stuck(self, a: np.ndarray) -> np.ndarray:
        """Per sample: has the sensor repeated exactly the same reading for a
        second or more (a stuck or dead accelerometer; a live one always moves
        by a least significant bit)?"""
        n = len(a)
        prev = a[:1] if self._acc_prev is None else self._acc_prev[None, :]
        changed = np.any(a != np.vstack([prev, a[:-1]]), axis=1)
        if self._acc_prev is None:
            changed[0] = True
        last = np.where(changed, np.arange(n), -1)
        np.maximum.accumulate(last, out=last)
        run = np.where(last >= 0, np.arange(n) - last + 1, self._acc_run + np.arange(n) + 1)
        self._acc_prev, self._acc_run = a[-1].copy(), int(run[-1])
        return run >= self._acc_stuck_n

    def _emg_gap(self, first_index: int) -> list:
        missing = first_index - self.next_emg_index
        self.n_gaps += 1
        self.gap_samples += missing
        log.info("EMG gap of %d samples at index %d", missing, self.next_emg_index)
        events = self._advance(final=True)        # decide what we had
        # frames from the current one up to the first whole frame after the gap are empty
        start_frame = self._pending_first + len(self._pending["ms_uv2"])
        resume_frame = -(-first_index // self.hop_n)
        n = max(0, resume_frame - start_frame)
        if n * self.frame_dt > self.LONG_GAP_S:
            events += self._jump(resume_frame)
        elif n:
            z = np.zeros(n)
            self._append_pending(start_frame, {k: z for k in _FRAME_KEYS}, np.zeros(n))
        self.emg_filter.reset()
        self.emg_frames.reset_to(first_index)
        return events + self._advance()

    def _jump(self, resume_frame: int) -> list:
        """A long gap: an episode under way is closed (``truncated``: the gap cut
        it), and detection restarts after the gap with a fresh history, so a gap
        of any length costs neither memory nor time; the floor is kept."""
        events = self.assembler.finish(self._final * self.frame_dt, truncated=True)
        self._hist = None
        self._pending = {k: np.zeros(0) for k in self._pending}
        self._pending_first = self._final = resume_frame
        S = self.step_n
        first_end = resume_frame + self.window_n - 1
        self._next_step_end = first_end + (S - 1 - first_end) % S
        self._run_start = None
        self._run_moved, self._run_tonic = False, 0
        if self.acc_frames is not None:
            self.acc_frames.skip_to(resume_frame)
        return events

    def _append_pending(self, first_frame: int, fr: dict, valid: np.ndarray) -> None:
        if len(self._pending["ms_uv2"]) == 0:
            self._pending_first = first_frame
        for k in _FRAME_KEYS:
            self._pending[k] = np.concatenate([self._pending[k], fr[k]])
        self._pending["valid"] = np.concatenate([self._pending["valid"], valid])

    def _advance(self, final: bool = False) -> list:
        """Move frames that both streams have covered into the history, then
        decide every decision step they complete."""
        if self._acc_ahead:
            self._release_acc()
        emg_end = self._pending_first + len(self._pending["ms_uv2"])
        upto = emg_end
        if self.acc_frames is not None and not final:
            # wait for the accelerometer, but not for long: a sensor that stops must
            # neither stall detection nor delay an onset
            lag_n = int(math.ceil(self.acc_wait_s / self.frame_dt))
            given_up = emg_end - lag_n
            if self._clock is not None:
                now = self._clock()
                arr = self._arrivals
                if not arr or arr[-1][0] < emg_end:
                    arr.append((emg_end, now))
                while arr and now - arr[0][1] >= self.acc_wait_s:
                    self._waited_frame = max(self._waited_frame, arr.popleft()[0])
                given_up = min(given_up, self._waited_frame)
            upto = min(emg_end, max(self.acc_frames.covered_frame, given_up))
        n = upto - self._final
        if n <= 0:
            return []
        new = {k: v[:n] for k, v in self._pending.items()}
        self._pending = {k: v[n:] for k, v in self._pending.items()}
        self._pending_first += n
        if self.acc_frames is not None:
            accm = self.acc_frames.pop_ready(upto)
            grav, dyn = accm[:, :3], accm[:, 3]
            acc_ok = np.nan_to_num(accm[:, 4], nan=0.0)
        else:
            grav, dyn, acc_ok = np.full((n, 3), np.nan), np.full(n, np.nan), np.zeros(n)
        self._append_history(new, grav, dyn, acc_ok)
        self._final = upto
        return self._decide()

    def _append_history(self, new: dict, grav: np.ndarray, dyn: np.ndarray,
                        acc_ok: np.ndarray) -> None:
        n = len(new["ms_uv2"])
        if self._hist is None:
            # pad the past with the first frame, so the first windows are full
            pad = self.lookback_n + self.rms_n
            self._hist = {k: np.repeat(new[k][:1], pad) for k in new}
            self._hist["grav_g"] = np.repeat(grav[:1], pad, axis=0)
            self._hist["dyn_g"] = np.repeat(dyn[:1], pad)
            self._hist["acc_ok"] = np.repeat(acc_ok[:1], pad)
            self._hist["env_uv"] = np.repeat(np.sqrt(new["ms_uv2"][:1]), pad)
            self._hist_first = self._final - pad
        tail = self._hist["ms_uv2"][-(self.rms_n - 1):] if self.rms_n > 1 else np.zeros(0)
        ms = np.concatenate([tail, new["ms_uv2"]])
        # a mean over each window's own values: bit-identical whatever the chunking
        env = np.sqrt(sliding_window_view(ms, self.rms_n).mean(axis=1))
        env = np.where(new["valid"] > 0, env, 0.0)
        add = dict(new, env_uv=env, dyn_g=dyn, acc_ok=acc_ok)
        for k in add:
            self._hist[k] = np.concatenate([self._hist[k], add[k]])
        self._hist["grav_g"] = np.concatenate([self._hist["grav_g"], grav])
        keep = self.lookback_n + self.rms_n + self.step_n + n
        drop = len(self._hist["ms_uv2"]) - keep
        if drop > 4 * keep:      # trim rarely: amortised O(1) per frame
            for k in self._hist:
                self._hist[k] = self._hist[k][drop:]
            self._hist_first += drop

    def _decide(self) -> list:
        ends = []
        e = self._next_step_end
        while e < self._final:
            ends.append(e)
            e += self.step_n
        if not ends:
            return []
        self._next_step_end = e
        ends = np.asarray(ends)
        rel = ends - self._hist_first
        cfg = self.cfg
        H = self._hist
        S = self.step_n
        W = self.window_n
        # everything that does not depend on the adaptive floor, for all steps at once
        feats = window_features(H, rel, W, self.rhythm_n, self.lag_lo_n, self.lag_hi_n)
        win_sorted = feats.pop("sorted_env_uv")
        env = H["env_uv"]
        steps = sliding_window_view(env, S)[rel - S + 1]
        step_med_a = np.median(steps, axis=1)
        step_valid_a = sliding_window_view(H["valid"], S)[rel - S + 1].min(axis=1) > 0
        grav = H["grav_g"][rel].copy()
        acc_bad = feats["acc_ok"] < 0.8
        if acc_bad.any():                       # a failed sensor: EMG only for those steps
            feats["motion_g"] = np.where(acc_bad, np.nan, feats["motion_g"])
            feats["posture_deg"] = np.where(acc_bad, np.nan, feats["posture_deg"])
            grav[acc_bad] = np.nan
        upright_a = self._upright(grav)
        F = {k: v.tolist() for k, v in feats.items()}
        win_rows = win_sorted.tolist()
        step_valid_l = step_valid_a.tolist()
        step_med_l = step_med_a.tolist()
        step_min_l = steps.min(axis=1).tolist()
        step_max_l = steps.max(axis=1).tolist()
        step_mean_l = steps.mean(axis=1).tolist()
        upright_l = upright_a.tolist()
        keys = list(F)
        step_s = S * self.frame_dt
        events = []
        for i in range(len(rel)):
            r = int(rel[i])
            first = int(ends[i]) - S + 1              # absolute frame of the step's start
            t_end = (int(ends[i]) + 1) * self.frame_dt
            step_valid = step_valid_l[i]
            step_med = step_med_l[i]
            if not self.floor.known and step_valid:
                self._start_floor(step_med, F["ms_uv2"][i], F["dms_uv2"][i])
            floor = self.floor_uv if self.floor.known else max(step_med, cfg.floor_min_uv)
            f = {k: F[k][i] for k in keys}
            f["upright"] = upright_l[i]
            f["excess_hz"] = self._excess_hz(f["ms_uv2"], f["dms_uv2"], floor)
            # a lower ratio where the spectrum shows that the added power is muscle
            muscle = math.isfinite(self.f_split_hz) and f["excess_hz"] < self.f_split_hz
            on_r = cfg.muscle_on_ratio if muscle else cfg.on_ratio
            on_thr = max(cfg.on_min_uv, on_r * floor)
            off_thr = max(cfg.on_min_uv, on_r * floor) * cfg.off_ratio / cfg.on_ratio
            # during an episode the contraction also ends relative to its own level
            in_episode = self.assembler.state in ("active", "ending")
            run_thr = max(off_thr, cfg.end_level_fraction * self.assembler.level_uv) \
                if in_episode else off_thr
            row = win_rows[i]
            # tonic: the window's median is above the on-threshold and nearly all of
            # it above the off-threshold (a cramp fluctuates but does not stop)
            above_off = (W - bisect_right(row, off_thr)) / W
            tonic_frac = above_off
            if F["median_uv"][i] <= on_thr:
                tonic_frac = min(tonic_frac, (W - bisect_right(row, on_thr)) / W)
            label, tonic, score = self._classify(f, tonic_frac, step_med, on_thr, off_thr,
                                                 step_valid)
            # the start of the current uninterrupted run of activity, and its end
            if step_min_l[i] > run_thr:                       # all frames above
                if self._run_start is None:
                    self._start_run(first, r - S + 1, floor)
                self._run_last = first + S - 1
                offset_hint = t_end
            elif step_max_l[i] <= run_thr:                    # all frames below
                if self._run_start is not None:
                    self._end_run(self._run_last)
                offset_hint = None
            else:
                above = steps[i] > run_thr
                below = np.nonzero(~above)[0]
                if self._run_start is not None:
                    self._end_run(first + int(below[0]) - 1 if below[0] > 0 else self._run_last)
                if below[-1] < S - 1:
                    k0 = int(below[-1]) + 1
                    self._start_run(first + k0, r - S + 1 + k0, floor)
                    self._run_last = first + S - 1
                offset_hint = (first + int(np.nonzero(above)[0][-1]) + 1) * self.frame_dt
            if self._run_start is not None:
                self._run_moved |= label == "movement"
                self._run_tonic += label == "tonic"
            active = step_valid and step_med > run_thr
            min_dur = self._context(t_end, f, on_thr, grav[i], above_off)
            if (label == "tonic"
                    and step_med < max(cfg.walk_override_ratio * floor, cfg.walk_override_uv)
                    and self._in_walk_context(grav[i], t_end)):
                label, tonic = "upright", False
            if self._run_start is not None:
                run_start_s = self._run_start * self.frame_dt
                onset_hint = self._onset_frame * self.frame_dt
            else:
                run_start_s = onset_hint = t_end - step_s
            d = StepDecision(t_end_s=t_end, step_s=step_s, tonic=tonic,
                             active=active, onset_hint_s=onset_hint,
                             rms_uv=step_mean_l[i], peak_uv=step_max_l[i],
                             score=score, offset_hint_s=offset_hint, label=label,
                             floor_uv=floor, min_duration_s=min_dur, run_start_s=run_start_s,
                             prerun_s=cfg.movement_bridge_s if self._run_moved else 0.0,
                             level_uv=step_med,
                             # a deep fluctuation of a contraction that never came down
                             neutral=(label == "phasic" and tonic_frac >= cfg.tonic_min_fraction
                                      and f["rhythm"] <= cfg.sustained_rhythm_max))
            self._cand_rows.append((t_end, step_med, floor, tonic_frac, f["modulation"],
                                    f["rhythm"], f["motion_g"], f["posture_deg"],
                                    f["hum_ratio"], f["drift_uv"], f["median_uv"],
                                    f["excess_hz"], f["acc_ok"], LABELS.index(label),
                                    t_end - self._moved_s, min_dur is not None,
                                    t_end - self._walk_last_s))
            new_events = self.assembler.step(d)
            if self.assembler.state == "idle" and len(self._cand_rows) > 2 * self._idle_rows_n:
                del self._cand_rows[:-self._idle_rows_n]     # only the recent past
            elif len(self._cand_rows) > 2 * self.MAX_CANDIDATE_ROWS:
                del self._cand_rows[:-self.MAX_CANDIDATE_ROWS]
            events += new_events
            self._track_floor(t_end, step_med, step_valid, label, f, new_events)
            if self.keep_trace:
                self._trace.append((t_end, step_med, floor, tonic_frac, f["modulation"],
                                    f["rhythm"], f["motion_g"], f["posture_deg"], f["hum_ratio"],
                                    f["drift_uv"], score, LABELS.index(label),
                                    self.assembler.state != "idle", f["excess_hz"],
                                    f["acc_ok"]))
        return events

    # ------------------------------------------------------------ the candidate model
    MAX_CANDIDATE_ROWS = 900
    """Candidate features look at most this many steps back (an hour-long candidate
    costs no more per step than a 15-minute one)."""

    def candidate_features(self, onset_s: float, t_s: float) -> dict:
        """:data:`CANDIDATE_FEATURES` of the steps from ``onset_s`` to ``t_s``
        (of the current candidate or episode)."""
        return candidate_features(self._cand_rows[-self.MAX_CANDIDATE_ROWS:], onset_s, t_s)

    def _gate(self, onset_s: float, t_s: float) -> bool:
        """Asked by the assembler when the rules would confirm a candidate."""
        feats = self.candidate_features(onset_s, t_s)
        if self._hook is not None:
            self._hook("confirm", onset_s, t_s, feats)
        if self.cfg.classifier != "model":
            return True
        return self._model.predict(feats) >= self._model.threshold

    def _grade(self, onset_s: float, end_s: float, final: bool) -> float:
        """The confidence of an episode (at its confirmation and at its end)."""
        feats = self.candidate_features(onset_s, end_s)
        if final and self._hook is not None:
            self._hook("end", onset_s, end_s, feats)
        if self._model is None:
            return 0.5
        return self._model.predict(feats)

    def _start_floor(self, level_uv: float, ms_uv2: float, dms_uv2: float) -> None:
        """The first estimate: the first step's level, unless that step is
        muscle by its spectrum (a recording that starts during a contraction):
        then a quiet board's floor is assumed and the floor follows the signal
        from the first rest on."""
        f_hz = _ratio_to_hz(dms_uv2 / ms_uv2, self.emg_fs_hz) if ms_uv2 > 0 else math.nan
        if (math.isfinite(self.f_split_hz) and f_hz < self.f_split_hz
                and level_uv > self.cfg.floor_start_uv):
            self.floor.start(self.cfg.floor_start_uv)
            log.info("the recording starts during a contraction (%.0f uV, RMS frequency "
                     "%.0f Hz): floor taken as %.1f uV until the first rest",
                     level_uv, f_hz, self.cfg.floor_start_uv)
        else:
            self.floor.start(level_uv)

    def _track_floor(self, t_end: float, step_med: float, valid: bool, label: str, f: dict,
                     events: list) -> None:
        """Move the floor after a step: down on any quiet valid step, up on
        resting steps outside episodes, re-based when an episode has ended and
        left the signal at a new level."""
        noise = label == "artifact" and f["excess_hz"] > self.f_split_hz and not (
            f["drift_uv"] > self.cfg.drift_max_uv or f["flat_fraction"] > 0.5)
        if not valid or (label == "artifact" and not noise):
            return
        self._recent.append((t_end, step_med))
        ended = [e.episode for e in events if isinstance(e, EpisodeEnded)]
        if ended:
            after = [m for t, m in self._recent if t > ended[-1].offset_s + 1.0]
            if len(after) >= 3:
                level = float(np.median(after))
                if level > self.floor_uv:
                    self.floor.rebase(level)
            return
        # resting: below the off-threshold, or broadband noise (a floor that rose)
        resting = (label == "rest" or noise) and self.assembler.state == "idle"
        self.floor.update(step_med, resting=resting)
        if resting and f["ms_uv2"] > 0:
            # the floor's own spectrum (its diff/signal power ratio), for the broadband check
            r = f["dms_uv2"] / f["ms_uv2"]
            self._floor_r += 0.1 * (r - self._floor_r)

    def _excess_hz(self, ms_uv2: float, dms_uv2: float, floor_uv: float) -> float:
        """RMS frequency (Hz) of the power a window holds above the floor: 60-160 Hz
        for muscle, towards that of white noise for a loose electrode."""
        fl2 = floor_uv * floor_uv
        excess = ms_uv2 - fl2
        if excess <= fl2:
            return math.nan
        return _ratio_to_hz((dms_uv2 - self._floor_r * fl2) / excess, self.emg_fs_hz)

    def _classify(self, f: dict, tonic_frac: float, step_med: float, on_thr: float,
                  off_thr: float, valid: bool) -> tuple[str, bool, float]:
        cfg = self.cfg
        if not valid:
            return "nodata", False, 0.0
        motion = f["motion_g"]
        has_acc = motion == motion                       # NaN without accelerometer
        movement = has_acc and (motion > cfg.motion_max_g
                                or f["posture_deg"] > cfg.posture_change_max_deg)
        artifact = ((f["hum_ratio"] > cfg.hum_max_ratio and f["hum_uv"] > cfg.hum_min_uv)
                    or f["drift_uv"] > cfg.drift_max_uv
                    or f["flat_fraction"] > 0.5
                    or f["excess_hz"] > self.f_split_hz
                    # a still leg: low-frequency swings larger than the EMG itself are the
                    # electrode moving on the skin (a loose contact), not muscle
                    or (not movement and f["drift_uv"] > cfg.drift_ratio_max * f["median_uv"]))
        rhythmic = f["rhythm"] > cfg.rhythm_max
        phasic = f["modulation"] < cfg.modulation_min or (rhythmic and f["modulation"] < 0.5)
        if artifact:
            return "artifact", False, 0.0
        if step_med <= off_thr and tonic_frac < cfg.tonic_min_fraction:
            return "rest", False, 0.0
        score = (_soft(tonic_frac - cfg.tonic_min_fraction, 0.05)
                 * _soft(f["modulation"] - cfg.modulation_min, 0.05)
                 * _soft(cfg.rhythm_max - f["rhythm"], 0.08))
        if phasic and tonic_frac >= cfg.tonic_min_fraction:
            # deep fluctuation of a contraction that never comes down is still tonic when
            # the leg is still; without an accelerometer only if it stays far above the
            # floor and is not rhythmic (gait)
            if has_acc:
                if motion < 0.5 * cfg.motion_max_g:
                    phasic = False
            elif (f["p10_uv"] >= cfg.sustained_p10_ratio * self.floor_uv
                  and f["rhythm"] <= cfg.sustained_rhythm_max):
                phasic = False
        if tonic_frac >= cfg.tonic_min_fraction and not phasic:
            if movement:
                return "movement", False, score * 0.5
            if f["upright"]:
                return "upright", False, score * 0.5
            return "tonic", True, score
        if step_med > off_thr:
            return ("movement" if movement else "phasic" if phasic else "active"), False, score
        return "rest", False, score

    def _start_run(self, frame: int, rel: int, floor: float) -> None:
        self._run_start = frame
        self._onset_frame = self._trace_back(rel, frame, floor)
        self._run_moved = False
        self._run_tonic = 0

    def _end_run(self, last_frame: int) -> None:
        """An activity run ended: remember it if it was a leg movement (0.5-10 s,
        the envelope's smoothing taken off; a brief burst, not a contraction that
        stayed tonic for more than plm_max_tonic_s) for the PLM series rule."""
        dur_s = (last_frame + 1 - self._run_start) * self.frame_dt - self.cfg.rms_window_s
        tonic_s = self._run_tonic * self.step_n * self.frame_dt
        if 0.5 <= dur_s <= 10.0 and tonic_s <= self.cfg.plm_max_tonic_s:
            self._bursts.append((self._run_start * self.frame_dt, (last_frame + 1) * self.frame_dt))
        self._run_start = None
        self._run_moved = False

    def _trace_back(self, rel: int, frame: int, floor: float) -> int:
        """Earliest frame before ``frame`` from which the envelope stayed above
        ``onset_ratio`` x floor: where the contraction began to rise."""
        lo = max(0, rel - self.lookback_n, -self._hist_first)   # never before frame 0
        seg = self._hist["env_uv"][lo:rel]
        below = np.nonzero(seg <= self.cfg.onset_ratio * floor)[0]
        start_rel = lo + below[-1] + 1 if len(below) else lo
        return frame - (rel - start_rel)

    def _context(self, t_end: float, f: dict, on_thr: float, grav: np.ndarray,
                 active_frac: float) -> float | None:
        """Track walking and PLM series; returns a longer minimum duration
        while a PLM series (AASM: >= 4 movements, 5-90 s apart) is going on."""
        cfg = self.cfg
        motion = f["motion_g"]
        if motion > cfg.motion_max_g:
            self._moved_s = t_end
        if f["posture_deg"] > cfg.getup_min_deg:
            self._getup_s = t_end
        if motion != motion:
            moving = True                        # EMG only: the rhythm alone
        else:
            # the rhythm is measured over rhythm_window_s: the leg's movement may be
            # anywhere in it; and one walks upright: after getting up (the shank turning
            # from lying) or in the posture of an earlier walk
            moving = (t_end - self._moved_s <= cfg.rhythm_window_s
                      and (t_end - self._getup_s <= cfg.walk_window_s + cfg.rhythm_window_s
                           or self._in_walk_posture(grav)))
        if (f["rhythm"] > cfg.walk_rhythm_min and f["modulation"] < 0.6
                and f["p90_uv"] > on_thr and moving
                and active_frac >= cfg.walk_min_duty      # push-off bursts, not twitches
                and self.assembler.state == "idle"):    # not a cramp's own fluctuation
            # a rhythmic, bursty window (background tone between bursts allowed): walking
            # once walk_steps of them follow each other (gait keeps its rhythm; twitches
            # are rhythmic only now and then)
            if self._walk_steps and t_end - self._walk_steps[-1] > 2.0 * self.step_n * self.frame_dt:
                self._walk_steps.clear()
            self._walk_steps.append(t_end)
            while self._walk_steps[0] < t_end - cfg.walk_window_s:
                self._walk_steps.popleft()
            if len(self._walk_steps) >= cfg.walk_steps:
                self._walk_last_s = t_end
                if np.all(np.isfinite(grav)):
                    self._walk_grav = grav.copy()
        b = self._bursts
        while b and b[-1][0] < t_end - 3600.0:
            b.clear()
        while len(b) > cfg.plm_series_bursts + 2:
            b.popleft()
        if len(b) >= cfg.plm_series_bursts and t_end - b[-1][0] <= cfg.plm_max_interval_s:
            onsets = [o for o, _ in b][-cfg.plm_series_bursts:]
            gaps = np.diff(onsets)
            if np.all((gaps >= cfg.plm_min_interval_s) & (gaps <= cfg.plm_max_interval_s)):
                return cfg.plm_min_duration_s
        return None

    def _in_walk_context(self, grav: np.ndarray, t_end: float) -> bool:
        """Upright after walking: with a working accelerometer, whenever the leg is
        in the posture it had while walking (learned from the walks of the night:
        standing, however long ago the steps); without one, for walk_context_s
        after the last step."""
        if self._walk_grav is not None and np.all(np.isfinite(grav)):
            return self._in_walk_posture(grav)
        return t_end - self._walk_last_s <= self.cfg.walk_context_s

    def _in_walk_posture(self, grav: np.ndarray) -> bool:
        """Is the leg within 45 degrees of its posture while walking?"""
        g0 = self._walk_grav
        if g0 is None or not np.all(np.isfinite(grav)):
            return False
        cos = float(g0 @ grav) / max(float(np.linalg.norm(g0) * np.linalg.norm(grav)), 1e-12)
        return cos >= math.cos(math.radians(45.0))

    def _upright(self, grav: np.ndarray) -> np.ndarray:
        """Per row of gravity vectors: is the shank upright (standing)?"""
        if self._axis is None:
            return np.zeros(len(grav), dtype=bool)
        norm = np.sqrt(np.sum(grav * grav, axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            up = (norm > 0.5) & (np.abs(grav[:, self._axis]) >= self._upright_cos * norm)
        return np.where(np.isfinite(norm), up, False)

    # ---------------------------------------------------------------- outputs
    TRACE_COLUMNS = ("t_end_s", "rms_uv", "floor_uv", "tonic_fraction", "modulation", "rhythm",
                     "motion_g", "posture_deg", "hum_ratio", "drift_uv", "score", "label",
                     "in_episode", "excess_hz", "acc_ok")

    def trace(self) -> dict:
        """Per-step features and decisions as columns (numpy arrays)."""
        arr = np.array(self._trace, dtype=np.float64).reshape(-1, len(self.TRACE_COLUMNS))
        return {c: arr[:, i] for i, c in enumerate(self.TRACE_COLUMNS)}

    def drain_trace(self) -> list:
        """The per-step rows kept so far (tuples in ``TRACE_COLUMNS`` order),
        forgotten here: a consumer that drains keeps memory flat all night."""
        rows, self._trace = self._trace, []
        return rows

    @property
    def samples_seen(self) -> int:
        return self._emg_seen

    @property
    def nan_samples(self) -> int:
        """EMG samples that were NaN or infinite (taken as no data)."""
        return self._emg_nan

    @property
    def is_flat(self) -> bool:
        """True if every EMG sample so far had the same value."""
        return self._emg_seen > 0 and self._raw_max - self._raw_min <= 0.0


def _white_diff_ratio(emg_filter: EmgFilter) -> float:
    """E[diff^2] / E[y^2] of white noise through the EMG filter chain."""
    fs = emg_filter.fs_hz
    sos = np.vstack([emg_filter.bandpass.sos, emg_filter.notch.sos]) \
        if len(emg_filter.notch.sos) else emg_filter.bandpass.sos
    w, h = signal.sosfreqz(sos, worN=4096, fs=fs)
    p = np.abs(h) ** 2
    return float(np.sum(p * 2.0 * (1.0 - np.cos(2 * np.pi * w / fs))) / max(np.sum(p), 1e-300))


def _ratio_to_hz(r: float, fs_hz: float) -> float:
    """The RMS frequency that a diff/signal power ratio ``r`` stands for
    (a tone of f has r = 2 (1 - cos(2 pi f / fs)))."""
    if not r == r:
        return math.nan
    return fs_hz / (2 * math.pi) * math.acos(max(-1.0, min(1.0, 1.0 - r / 2.0)))


def _soft(x: float, width: float) -> float:
    if not math.isfinite(x):
        return 1.0
    return 1.0 / (1.0 + math.exp(max(-50.0, min(50.0, -x / width))))
