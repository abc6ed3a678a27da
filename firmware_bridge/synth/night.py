"""Rendering a planned night: :class:`SyntheticNight`, segment by segment, cached.

The signal is made per fixed :data:`~._common.SEGMENT_S` segment as a pure
function of ``(seed, segment index)`` and of the planned events, so any split
of a render into blocks gives the same samples.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from datetime import datetime, timedelta, timezone

import numpy as np
import scipy.fft
from scipy import signal

from crampwatch.firmware_bridge.labels import LABEL_KINDS, Label

from ._common import SEGMENT_S, TWO_PI, rng_for
from .planner import expected_kinds, plan_night
from .spec import NightSpec

__all__ = ["SyntheticNight", "FileView"]

_FLOOR_TAPS_PER_KHZ = 129  # FIR length of the noise-floor band-pass at 1 kHz (scaled with fs)


class SyntheticNight:
    """A planned synthetic night that renders EMG and acceleration on demand.

    Parameters
    ----------
    spec : NightSpec
        What night to make (:func:`~crampwatch.firmware_bridge.synth.randomized_spec`
        draws one of a randomised family).

    Attributes
    ----------
    spec : NightSpec
    duration_s : float
    emg_fs_hz, acc_fs_hz : float
    n_emg_samples, n_acc_samples : int
    start_time : datetime
        UTC time of the first sample.
    labels : list of Label
        Every cramp and every distractor/artifact, sorted by onset.
    floor_rms_uv : float
        The night's noise floor (20-450 Hz, uV RMS) before its slow variation
        (and before electrode settling and floor steps, if any).
    tissue_factor : float
        The night's MUAP width factor (0.85-1.2: skin/fat and electrode spacing):
        above 1 shifts the EMG spectrum down.
    mains_hz : float
    has_accelerometer : bool
        False for a night without an accelerometer: :meth:`render_acc` gives NaN
        (no samples) and file writers should leave the channels out.
    max_effort_rms_uv : float or None
        The sleeper's maximal-effort RMS, uV (only for specs with weak cramps).

    Notes
    -----
    Rendering past the end of the night is allowed (background only: noise
    floor, continuous mains, last posture), so a live simulator may run on.

    Examples
    --------
    >>> night = SyntheticNight(NightSpec(hours=0.25, seed=1, n_cramps=1))
    >>> a = night.render_emg(0, 1500)
    >>> b = np.concatenate([night.render_emg(0, 700), night.render_emg(700, 800)])
    >>> bool(np.array_equal(a, b))
    True
    """

    def __init__(self, spec: NightSpec | None = None):
        self.spec = spec = spec or NightSpec()
        self.duration_s = float(spec.hours * 3600.0)
        self.emg_fs_hz = float(spec.emg_fs_hz)
        self.acc_fs_hz = float(spec.acc_fs_hz)
        self.mains_hz = float(spec.mains_hz)
        self.has_accelerometer = bool(spec.has_accelerometer)
        self.n_emg_samples = int(round(self.duration_s * self.emg_fs_hz))
        self.n_acc_samples = int(round(self.duration_s * self.acc_fs_hz))
        self._seg_emg = int(round(SEGMENT_S * self.emg_fs_hz))
        self._seg_acc = int(round(SEGMENT_S * self.acc_fs_hz))
        self._emg_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._acc_cache: OrderedDict[int, np.ndarray] = OrderedDict()

        plan = plan_night(spec)
        self.labels: list[Label] = plan.labels
        self.floor_rms_uv = plan.floor_rms_uv
        self.tissue_factor = plan.tissue_factor
        self.max_effort_rms_uv = plan.max_effort_rms_uv
        self._events = plan.events
        self._imu_faults = plan.imu_faults
        self._postures = plan.postures
        self._floor_var = plan.floor_var
        self._floor_gain = plan.floor_gain
        self._acc_noise_g = plan.acc_noise_g
        self._acc_bias = plan.acc_bias
        self._event_groups = plan.event_groups
        self._label_groups = plan.label_groups
        self._set_events(self._events)

        nyq = 0.5 * self.emg_fs_hz
        self._floor_taps = max(65, int(_FLOOR_TAPS_PER_KHZ * self.emg_fs_hz / 1000.0) | 1)
        self._floor_fir = signal.firwin(
            self._floor_taps, [20.0, min(450.0, 0.9 * nyq)], pass_zero=False, fs=self.emg_fs_hz
        )
        self._floor_fir /= math.sqrt(np.sum(self._floor_fir**2))
        self._floor_nfft = int(scipy.fft.next_fast_len(self._seg_emg + self._floor_taps - 1))
        self._floor_fft = np.fft.rfft(self._floor_fir, self._floor_nfft)

    # ------------------------------------------------------------------ public

    @property
    def start_time(self) -> datetime:
        if self.spec.start_utc is not None:
            return self.spec.start_utc.astimezone(timezone.utc)
        r = rng_for(self.spec.seed, 99)
        day = int(r.integers(0, 365))
        minutes = int(r.integers(21 * 60, 24 * 60 + 30))
        return datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=day, minutes=minutes)

    @property
    def expected_kinds(self) -> tuple[str, ...]:
        """The label kinds this night's spec can produce."""
        return expected_kinds(self.spec)

    def counts(self) -> dict[str, int]:
        """Number of labels per kind (every kind listed, zeros included)."""
        c = Counter(lab.kind for lab in self.labels)
        return {k: c.get(k, 0) for k in LABEL_KINDS}

    def render_emg(self, start_index: int, n: int) -> np.ndarray:
        """EMG samples ``start_index .. start_index + n - 1``, float32 microvolts, shape (n,).

        Examples
        --------
        >>> night = SyntheticNight(NightSpec(hours=0.1, seed=0))
        >>> night.render_emg(5000, 250).shape
        (250,)
        """
        return self._render(start_index, n, self._seg_emg, self._emg_segment, self._emg_cache, ())

    def render_acc(self, start_index: int, n: int) -> np.ndarray:
        """Accelerometer samples, float32 g, shape (n, 3) (x along the shank, y
        medio-lateral, z normal to the calf skin).

        Where the accelerometer gave no samples (a "silent" failure, or a night
        without an accelerometer) the samples are NaN; a file writer may store
        them as zeros.

        Examples
        --------
        >>> night = SyntheticNight(NightSpec(hours=0.1, seed=0))
        >>> night.render_acc(0, 100).shape
        (100, 3)
        """
        return self._render(start_index, n, self._seg_acc, self._acc_segment, self._acc_cache, (3,))

    def for_file(self) -> "FileView":
        """The night as a file writer should see it (e.g. for
        :func:`~crampwatch.firmware_bridge.edf.write_edf`): without accelerometer
        channels if the night has none, and with the samples a failed accelerometer
        never gave (NaN) as zeros, as a board's file would hold them."""
        return FileView(self)

    def gravity(self, t) -> np.ndarray:
        """Unit specific-force direction of the leg's posture at times ``t`` (s), (n, 3)."""
        return self._postures.gravity(t)

    def _set_events(self, events) -> None:
        """The events this night renders (a two-leg night gives its second leg
        its own list, :mod:`.two_legs`)."""
        self._events = list(events)
        self._ev_lo = np.array([ev.lo for ev in self._events])
        self._ev_hi = np.array([ev.hi for ev in self._events])
        self._emg_cache.clear()

    # ------------------------------------------------------------------ rendering

    def _render(self, start, n, seg_len, make, cache, trailing):
        start, n = int(start), int(n)
        if start < 0 or n < 0:
            raise ValueError(f"start_index and n must be >= 0, got {start}, {n}")
        out = np.empty((n,) + trailing, np.float32)
        pos = 0
        while pos < n:
            k, off = divmod(start + pos, seg_len)
            seg = cache.get(k)
            if seg is None:
                seg = make(k)
                cache[k] = seg
                if len(cache) > 4:
                    cache.popitem(last=False)
            take = min(seg_len - off, n - pos)
            out[pos : pos + take] = seg[off : off + take]
            pos += take
        return out

    def _overlapping(self, t0, t1):
        idx = np.nonzero((self._ev_lo < t1) & (self._ev_hi > t0))[0]
        return [self._events[i] for i in idx]

    def _floor_segment(self, k):
        L, M = self._seg_emg, self._floor_taps
        seed = self.spec.seed
        tail_prev = rng_for(seed, 11, k).standard_normal(M - 1)
        body = rng_for(seed, 12, k).standard_normal(L - (M - 1))
        tail = rng_for(seed, 11, k + 1).standard_normal(M - 1)
        w = np.concatenate([tail_prev, body, tail])
        # circular convolution of length nfft >= len(w): its last L samples are the valid part
        y = np.fft.irfft(np.fft.rfft(w, self._floor_nfft) * self._floor_fft, self._floor_nfft)[
            M - 1 : M - 1 + L
        ]
        i0 = k * L
        tg = (i0 + np.linspace(0, L, 11)) / self.emg_fs_hz
        lv = self.floor_rms_uv * np.exp(
            np.sum(
                self._floor_var[0][:, None]
                * np.sin(
                    TWO_PI * tg[None, :] / self._floor_var[1][:, None] + self._floor_var[2][:, None]
                ),
                axis=0,
            )
        )
        if not self._floor_gain.constant:
            lv = lv * self._floor_gain(tg)
        return y * np.interp(np.arange(L), np.linspace(0, L, 11), lv)

    def _emg_segment(self, k):
        L = self._seg_emg
        i0 = k * L
        fs = self.emg_fs_hz
        t0, t1 = i0 / fs, (i0 + L) / fs
        y = self._floor_segment(k)
        events = self._overlapping(t0 - 1.0, t1 + 1.0)
        muscle = np.zeros(L)
        other = np.zeros(L)
        any_muscle = False
        for ev in events:
            if ev.muscle:
                ev.add_emg(self, muscle, i0)
                any_muscle = True
            else:
                ev.add_emg(self, other, i0)
        if any_muscle:
            offs = [ev for ev in events if ev.attenuation > 0]
            if offs:
                t = (i0 + np.arange(L)) / fs
                keep = np.ones(L)
                for ev in offs:
                    keep *= 1.0 - ev.attenuation * ev.mask(t)
                muscle *= keep
        y += muscle + other
        r = self.spec.emg_range_uv
        step = self.spec.adc_step_uv
        if step > 0:  # the ADC's quantisation
            y = np.round(y / step) * step
        return np.clip(y, -r, r).astype(np.float32)

    def _acc_segment(self, k):
        L = self._seg_acc
        i0 = k * L
        fs = self.acc_fs_hz
        if not self.has_accelerometer:
            return np.full((L, 3), np.nan, np.float32)
        t = (i0 + np.arange(L)) / fs
        y = self._postures.gravity(t) + self._acc_bias
        y += self._acc_noise_g * rng_for(self.spec.seed, 21, k).standard_normal((L, 3))
        for ev in self._overlapping(t[0] - 1.0, t[-1] + 1.0):
            ev.add_acc(self, y, i0)
        r = self.spec.acc_range_g
        y = np.clip(y, -r, r)
        for fault in self._imu_faults:
            fault.apply(y, i0, fs)
        return y.astype(np.float32)


class FileView:
    """A :class:`SyntheticNight` as a file writer sees it (see
    :meth:`SyntheticNight.for_file`): ``acc_fs_hz`` is None for a night without an
    accelerometer and NaN accelerometer samples read as zeros."""

    def __init__(self, night: SyntheticNight):
        self.night = night
        self.emg_fs_hz = night.emg_fs_hz
        self.acc_fs_hz = night.acc_fs_hz if night.has_accelerometer else None
        self.duration_s = night.duration_s
        self.start_time = night.start_time

    def render_emg(self, start_index: int, n: int) -> np.ndarray:
        return self.night.render_emg(start_index, n)

    def render_acc(self, start_index: int, n: int) -> np.ndarray:
        return np.nan_to_num(self.night.render_acc(start_index, n), nan=0.0)
