"""Event renderers: what each planned event adds to the EMG and the accelerometer.

An event covers ``[lo, hi]`` seconds and adds itself into a block of samples
(``add_emg(night, out, i0)`` / ``add_acc(night, out, i0)``, ``out`` starting at
sample ``i0``) as a pure function of its planned parameters and of keyed random
streams, never of the block's boundaries: rendering stays block-invariant.
``night`` gives ``emg_fs_hz``, ``acc_fs_hz`` and ``gravity(t)``.

Events whose ``attenuation`` is above 0 (a lead off, a loose electrode) also
take that share of the muscle signal away under their ``mask(t)``.
Accelerometer failures (:class:`ImuFault`) replace samples rather than add to
them and are applied last.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ._common import SEGMENT_S, TWO_PI, apply_ramps, raised, rng_for, span
from .motor_units import MotorPool

__all__ = [
    "Event",
    "Wavelets",
    "Kicks",
    "Muscle",
    "Motion",
    "GaitSwing",
    "Pop",
    "Hum",
    "Drift",
    "Ecg",
    "LeadOff",
    "LooseElectrode",
    "ImuFault",
    "FloorGain",
]


class Wavelets:
    """Sum of Gaussian-windowed cosines: amp * exp(-((t-tc)/w)^2/2) * cos(2 pi f (t-tc) + ph).

    ``amp`` is (k,) for the EMG or (k, 3) for the accelerometer.
    """

    def __init__(self, tc, w, f, ph, amp):
        self.tc = np.asarray(tc, float)
        self.w = np.asarray(w, float)
        self.f = np.asarray(f, float)
        self.ph = np.asarray(ph, float)
        self.amp = np.asarray(amp, float)

    @property
    def lo(self):
        return float(np.min(self.tc - 4 * self.w)) if self.tc.size else math.inf

    @property
    def hi(self):
        return float(np.max(self.tc + 4 * self.w)) if self.tc.size else -math.inf

    def add_to(self, out, i0, fs):
        n = out.shape[0]
        t0, t1 = i0 / fs, (i0 + n) / fs
        for j in np.nonzero((self.tc - 4 * self.w < t1) & (self.tc + 4 * self.w > t0))[0]:
            a = max(0, int(math.floor((self.tc[j] - 4 * self.w[j]) * fs)) - i0)
            b = min(n, int(math.ceil((self.tc[j] + 4 * self.w[j]) * fs)) + 1 - i0)
            if b <= a:
                continue
            tt = (i0 + np.arange(a, b)) / fs - self.tc[j]
            y = np.exp(-0.5 * (tt / self.w[j]) ** 2) * np.cos(TWO_PI * self.f[j] * tt + self.ph[j])
            out[a:b] += y[:, None] * self.amp[j] if out.ndim == 2 else y * self.amp[j]


class Kicks:
    """Damped sinusoids starting at ``tk``: amp * exp(-(t-tk)/tau) * sin(2 pi f (t-tk))."""

    def __init__(self, tk, tau, f, amp):
        self.tk = np.asarray(tk, float)
        self.tau = np.asarray(tau, float)
        self.f = np.asarray(f, float)
        self.amp = np.asarray(amp, float)

    @property
    def lo(self):
        return float(self.tk.min()) if self.tk.size else math.inf

    @property
    def hi(self):
        return float(np.max(self.tk + 7 * self.tau)) if self.tk.size else -math.inf

    def add_to(self, out, i0, fs):
        n = out.shape[0]
        t0, t1 = i0 / fs, (i0 + n) / fs
        for j in np.nonzero((self.tk < t1) & (self.tk + 7 * self.tau > t0))[0]:
            a = max(0, int(math.ceil(self.tk[j] * fs)) - i0)
            b = min(n, int(math.ceil((self.tk[j] + 7 * self.tau[j]) * fs)) - i0)
            if b <= a:
                continue
            tt = (i0 + np.arange(a, b)) / fs - self.tk[j]
            y = np.exp(-tt / self.tau[j]) * np.sin(TWO_PI * self.f[j] * tt)
            out[a:b] += y[:, None] * self.amp[j] if out.ndim == 2 else y * self.amp[j]


class Event:
    """Something that adds to the EMG and/or the accelerometer over [lo, hi]."""

    muscle = False  # attenuated while a lead is off or an electrode loose
    attenuation = 0.0  # share of the muscle signal this event takes away under mask(t)

    def __init__(self, lo, hi):
        self.lo, self.hi = float(lo), float(hi)

    def add_emg(self, night, out, i0):
        pass

    def add_acc(self, night, out, i0):
        pass

    def mask(self, t):
        return np.zeros_like(t)


class Muscle(Event):
    """Muscle activity from a motor pool driven by an envelope of trapezoid bumps.

    Discharges are drawn per rendering segment from the stream
    ``(seed, 7, ev_id, segment)`` and kept in a small cache of this event's own.
    """

    muscle = True
    _CACHE_SEGMENTS = 4

    def __init__(self, seed: int, ev_id: int, pool: MotorPool, bumps, fluct=None, trend=None):
        on, rise, plat, fall, peak = (np.asarray(b, float) for b in bumps)
        order = np.argsort(on)
        self.on, self.rise, self.plat, self.fall, self.peak = (
            a[order] for a in (on, rise, plat, fall, peak)
        )
        self.end = self.on + self.rise + self.plat + self.fall
        self.max_len = float(np.max(self.end - self.on))
        self.fluct = fluct  # (amps, freqs, phases): multiplicative
        self.trend = trend  # (t_ref, dur, slope)
        self.pool = pool
        self.seed = seed
        self.ev_id = ev_id
        self._cache: OrderedDict = OrderedDict()
        super().__init__(self.on[0], self.end.max() + pool.tpl_len / pool.fs)

    def drive(self, t):
        a = np.searchsorted(self.on, t[0] - self.max_len, "left")
        b = np.searchsorted(self.on, t[-1], "right")
        d = np.zeros_like(t)
        if b <= a:
            return d
        sl = slice(a, b)
        on, rise, plat, fall, peak = (
            x[sl, None] for x in (self.on, self.rise, self.plat, self.fall, self.peak)
        )
        up = raised((t[None, :] - on) / rise)
        down = 1.0 - raised((t[None, :] - on - rise - plat) / fall)
        d = np.sum(peak * np.minimum(up, down), axis=0)
        if self.fluct is not None:
            amps, freqs, phases = self.fluct
            mod = 1.0 + np.sum(
                amps[:, None] * np.sin(TWO_PI * freqs[:, None] * t[None, :] + phases[:, None]),
                axis=0,
            )
            d *= np.clip(mod, 0.15, None)
        if self.trend is not None:
            t_ref, dur, slope = self.trend
            d *= 1.0 + slope * np.clip((t - t_ref) / dur, 0.0, 1.0)
        return d

    def _segment_spikes(self, k):
        hit = self._cache.get(k)
        if hit is None:
            t0, t1 = k * SEGMENT_S, (k + 1) * SEGMENT_S
            if t1 <= self.lo or t0 >= self.hi:
                hit = (np.empty(0), np.empty(0, int), np.empty(0))
            else:
                rng = rng_for(self.seed, 7, self.ev_id, k)
                hit = self.pool.spikes(rng, self.drive, t0, t1)
            self._cache[k] = hit
            if len(self._cache) > self._CACHE_SEGMENTS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(k)
        return hit

    def add_emg(self, night, out, i0):
        fs = night.emg_fs_hz
        n = out.shape[0]
        lead = self.pool.tpl_len
        b0 = i0 - lead
        k0 = int(math.floor(b0 / fs / SEGMENT_S))
        k1 = int(math.floor((i0 + n - 1) / fs / SEGMENT_S))
        parts = [self._segment_spikes(k) for k in range(max(k0, 0), k1 + 1)]
        times = np.concatenate([p[0] for p in parts])
        if times.size == 0:
            return
        unit = np.concatenate([p[1] for p in parts])
        amps = np.concatenate([p[2] for p in parts])
        idx = np.rint(times * fs).astype(np.int64) - b0
        sel = (idx >= 0) & (idx < n + lead)
        idx, unit, amps = idx[sel], unit[sel], amps[sel]
        cls = self.pool.cls[unit]
        for c, h in enumerate(self.pool.templates):
            m = cls == c
            if not np.any(m):
                continue
            train = np.bincount(idx[m], weights=amps[m], minlength=n + lead)
            out += np.convolve(train, h)[lead : lead + n]


class Motion(Event):
    """Movement: acceleration wavelets/kicks and their motion artifact on the EMG."""

    def __init__(self, acc=None, emg=None, kicks=None, emg_kicks=None):
        self.acc, self.emg, self.kicks, self.emg_kicks = acc, emg, kicks, emg_kicks
        parts = [p for p in (acc, emg, kicks, emg_kicks) if p is not None]
        super().__init__(min(p.lo for p in parts), max(p.hi for p in parts))

    def add_emg(self, night, out, i0):
        if self.emg is not None:
            self.emg.add_to(out, i0, night.emg_fs_hz)
        if self.emg_kicks is not None:
            self.emg_kicks.add_to(out, i0, night.emg_fs_hz)

    def add_acc(self, night, out, i0):
        if self.acc is not None:
            self.acc.add_to(out, i0, night.acc_fs_hz)
        if self.kicks is not None:
            self.kicks.add_to(out, i0, night.acc_fs_hz)


class GaitSwing(Event):
    """Shank pitch oscillation while walking: rotates gravity in the x-z plane."""

    def __init__(self, strides, amp_rad, phase0, ramp_s=2.0):
        self.strides = np.asarray(strides, float)
        self.amp_rad, self.phase0, self.ramp_s = amp_rad, phase0, ramp_s
        super().__init__(self.strides[0], self.strides[-1])

    def add_acc(self, night, out, i0):
        n = out.shape[0]
        t = (i0 + np.arange(n)) / night.acc_fs_hz
        m = (t >= self.lo) & (t < self.hi)
        if not np.any(m):
            return
        tt = t[m]
        cycle = np.interp(tt, self.strides, np.arange(self.strides.size))
        env = np.minimum(raised((tt - self.lo) / self.ramp_s), raised((self.hi - tt) / self.ramp_s))
        ang = env * self.amp_rad * np.sin(TWO_PI * cycle + self.phase0)
        g = night.gravity(tt)
        # rotate about the medio-lateral (y) axis: x-z plane
        c, s = np.cos(ang), np.sin(ang)
        gx = c * g[:, 0] + s * g[:, 2]
        gz = -s * g[:, 0] + c * g[:, 2]
        out[m, 0] += gx - g[:, 0]
        out[m, 2] += gz - g[:, 2]


class Pop(Event):
    """Electrode pop: a step decaying exponentially."""

    def __init__(self, t0, amp_uv, tau_s):
        self.t0, self.amp, self.tau = t0, amp_uv, tau_s
        super().__init__(t0, t0 + 12 * tau_s)

    def add_emg(self, night, out, i0):
        fs = night.emg_fs_hz
        a = max(0, int(math.ceil(self.t0 * fs)) - i0)
        b = min(out.shape[0], int(math.ceil(self.hi * fs)) - i0)
        if b > a:
            tt = (i0 + np.arange(a, b)) / fs - self.t0
            out[a:b] += self.amp * np.exp(-tt / self.tau)


class Hum(Event):
    """Mains interference with harmonics, trapezoid envelope."""

    def __init__(self, on, off, ramp_s, f_hz, amps_uv, phases):
        self.on, self.off, self.ramp = on, off, ramp_s
        self.f, self.amps, self.phases = f_hz, np.asarray(amps_uv), np.asarray(phases)
        super().__init__(on, off)

    def add_emg(self, night, out, i0):
        fs = night.emg_fs_hz
        a, b = span(self.on, self.off, fs, i0, out.shape[0])
        if b <= a:
            return
        t = (i0 + np.arange(a, b)) / fs
        # harmonics as powers of one complex phasor: one exp per sample, not one sin per harmonic
        z = np.exp(1j * (TWO_PI * self.f * t))
        zh = np.ones_like(z)
        y = np.zeros_like(t)
        for h, (amp, ph) in enumerate(zip(self.amps, self.phases), start=1):
            zh *= z
            if amp > 0 and h * self.f < 0.5 * fs:
                y += amp * (zh * complex(math.cos(ph), math.sin(ph))).imag  # sin(h w t + ph)
        apply_ramps(y, t, self.on, self.off, self.ramp)
        out[a:b] += y


class Drift(Event):
    """Slow baseline wander (sum of low-frequency sinusoids) under a Tukey window."""

    def __init__(self, on, off, amps_uv, freqs_hz, phases, ramp_s):
        self.on, self.off, self.ramp = on, off, ramp_s
        self.amps, self.freqs, self.phases = (
            np.asarray(x, float) for x in (amps_uv, freqs_hz, phases)
        )
        super().__init__(on, off)

    def add_emg(self, night, out, i0):
        fs = night.emg_fs_hz
        a, b = span(self.on, self.off, fs, i0, out.shape[0])
        if b <= a:
            return
        t = (i0 + np.arange(a, b)) / fs
        y = np.zeros_like(t)
        for amp, f, ph in zip(self.amps, self.freqs, self.phases):
            y += amp * np.sin(TWO_PI * f * (t - self.on) + ph)
        apply_ramps(y, t, self.on, self.off, self.ramp)
        out[a:b] += y


class Ecg(Event):
    """QRS-T complexes at planned beat times."""

    def __init__(self, beats, amp_uv, sign):
        self.beats = np.asarray(beats, float)
        self.amp = amp_uv * sign
        super().__init__(self.beats[0] - 0.1, self.beats[-1] + 0.5)

    @staticmethod
    def _shape(tt):
        def g(c, w):
            return np.exp(-0.5 * ((tt - c) / w) ** 2)

        return (
            -0.15 * g(-0.028, 0.008) + g(0.0, 0.009) - 0.3 * g(0.028, 0.009) + 0.12 * g(0.26, 0.045)
        )

    def add_emg(self, night, out, i0):
        fs = night.emg_fs_hz
        n = out.shape[0]
        t0, t1 = i0 / fs, (i0 + n) / fs
        a_b = np.searchsorted(self.beats, t0 - 0.45)
        b_b = np.searchsorted(self.beats, t1 + 0.1)
        for tb in self.beats[a_b:b_b]:
            a = max(0, int(math.ceil((tb - 0.1) * fs)) - i0)
            b = min(n, int(math.ceil((tb + 0.45) * fs)) - i0)
            if b > a:
                out[a:b] += self.amp * self._shape((i0 + np.arange(a, b)) / fs - tb)


class LeadOff(Event):
    """A lead off: huge hum and drift; the muscle signal is lost meanwhile (95 %)."""

    attenuation = 0.95

    def __init__(self, on, off, hum, drift):
        self.on, self.off = on, off
        self.hum, self.drift = hum, drift
        super().__init__(on, off)

    def mask(self, t):
        return np.minimum(raised((t - self.on) / 0.05), raised((self.off - t) / 0.05))

    def add_emg(self, night, out, i0):
        self.hum.add_emg(night, out, i0)
        self.drift.add_emg(night, out, i0)


class LooseElectrode(Event):
    """A loose electrode: intermittent broadband noise, white up to Nyquist, and drift.

    The noise comes in bursts ``[burst_on[j], burst_off[j])`` of RMS
    ``burst_uv[j]`` (5 ms raised-cosine edges), drawn per second of the night
    from the stream ``(seed, 43, ev_id, chunk)``, so any block gives the same
    samples.  The muscle signal is attenuated by ``attenuation`` over the whole
    stretch (0.5 s edges).  Pops at its ends and inside are separate
    :class:`Pop` events.
    """

    _EDGE_S = 0.005

    def __init__(self, seed, ev_id, on, off, burst_on, burst_off, burst_uv, attenuation, drift):
        self.seed, self.ev_id = seed, ev_id
        self.on, self.off = on, off
        self.burst_on = np.asarray(burst_on, float)
        self.burst_off = np.asarray(burst_off, float)
        self.burst_uv = np.asarray(burst_uv, float)
        self.attenuation = float(attenuation)
        self.drift = drift
        super().__init__(on, off)

    def mask(self, t):
        return np.minimum(raised((t - self.on) / 0.5), raised((self.off - t) / 0.5))

    def _gate(self, t):
        j = np.searchsorted(self.burst_on, t, "right") - 1
        ok = j >= 0
        jj = np.where(ok, j, 0)
        on, off = self.burst_on[jj], self.burst_off[jj]
        e = self._EDGE_S
        g = np.minimum(raised((t - on) / e), raised((off - t) / e)) * self.burst_uv[jj]
        return np.where(ok & (t < off), g, 0.0)

    def add_emg(self, night, out, i0):
        fs = night.emg_fs_hz
        n = out.shape[0]
        a, b = span(self.on, self.off, fs, i0, n)
        if b > a:
            idx = i0 + np.arange(a, b)
            c = max(1, int(round(fs)))  # noise drawn in chunks of c samples (about 1 s)
            chunk = idx // c
            noise = np.empty(b - a)
            for q in range(int(chunk[0]), int(chunk[-1]) + 1):
                m = chunk == q
                w = rng_for(self.seed, 43, self.ev_id, q).standard_normal(c)
                noise[m] = w[idx[m] - q * c]
            out[a:b] += noise * self._gate(idx / fs)
        self.drift.add_emg(night, out, i0)


class ImuFault:
    """An accelerometer failure over ``[on, off)``: replaces the samples there.

    ``mode`` is ``"zeros"``, ``"stuck"`` (``value``, the reading when it stuck),
    ``"saturated"`` (``value``: +-range per axis) or ``"silent"`` (no samples:
    NaN).
    """

    def __init__(self, on, off, mode, value=None):
        self.on, self.off, self.mode = float(on), float(off), mode
        self.value = None if value is None else np.asarray(value, float)

    def apply(self, out, i0, fs):
        a, b = span(self.on, self.off, fs, i0, out.shape[0])
        if b <= a:
            return
        if self.mode == "zeros":
            out[a:b] = 0.0
        elif self.mode == "silent":
            out[a:b] = np.nan
        else:
            out[a:b] = self.value


@dataclass
class FloorGain:
    """Slow changes of the noise floor's level: electrode settling and steps.

    ``gain(t) = (1 + (settling_factor - 1) exp(-3 t / settling_s))
    * prod_j (1 + (factor_j - 1) raised((t - t_j) / 1 s))``.
    """

    settling_factor: float = 1.0
    settling_s: float = 300.0
    step_t: list[float] = field(default_factory=list)
    step_factor: list[float] = field(default_factory=list)

    @property
    def constant(self) -> bool:
        return self.settling_factor == 1.0 and not self.step_t

    def __call__(self, t):
        t = np.asarray(t, float)
        g = 1.0 + (self.settling_factor - 1.0) * np.exp(-3.0 * np.maximum(t, 0.0) / self.settling_s)
        for ts, f in zip(self.step_t, self.step_factor):
            g = g * (1.0 + (f - 1.0) * raised(t - ts))
        return g
