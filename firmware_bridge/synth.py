"""A physiologically grounded synthetic night of calf EMG and leg acceleration.

:class:`SyntheticNight` plans every event of a night up front (cheap) and
renders the surface EMG of the calf (microvolts) and a 3-axis accelerometer
strapped to the shank (g) lazily, block by block, with flat memory.  Rendering
is deterministic and block-invariant: the signal is made per fixed 10 s segment
as a pure function of ``(seed, segment index)`` and of the planned events, so
``render(a, n1)`` followed by ``render(a + n1, n2)`` equals ``render(a, n1 + n2)``
exactly, whatever the split.

What a night holds (every kind is labelled, see :mod:`.labels`)
------------------------------------------------------------------
cramp
    Involuntary, strong, sustained contraction of gastrocnemius/soleus: drive
    rises in 0.5-3 s (a quarter of cramps build over 3-15 s), stays high with
    slow fluctuation (3-5 sinusoids of 0.05-1.5 Hz, depth 15-40 %, and a trend
    of -40..+20 % over the cramp) for 10 s to 10 min (log-normal, median 60 s,
    so mostly 20 s - 3 min), then fades over 2-20 s or stops in 0.3-1 s with a
    stretch movement of the foot.  RMS at full drive log-uniform 30-400 uV.
    The leg is still; in half of the cramps longer than 30 s the sleeper wakes
    20-60 s in and moves the foot (acceleration 0.05-0.4 g, motion artifact).
    60 % are preceded by 20-90 s of scattered twitches (own label).
turn
    Turning over: 1-4 s, 1-3 EMG bursts of 20-300 uV RMS, 2-4 low-frequency
    motion artifacts of 100-1500 uV on the EMG, 0.1-0.6 g of movement and a
    new lying posture (supine, prone, left or right side, each with a random
    tilt), i.e. a change of the gravity components.  1.5-4 per hour.
plm
    Periodic limb movement series (AASM): 4-40 bursts of 0.5-5 s (log-uniform,
    within the AASM 0.5-10 s), onset-to-onset intervals 15-40 s per series
    with 20 % jitter, clipped to 5-90 s; 10-150 uV RMS; small leg movement
    0.01-0.08 g.  1-3 series per 8 h.
walk
    Walking to the bathroom and back: getting up (lying -> upright: gravity
    moves onto the shank's long axis, x), a bout of 30-150 s of steps (stride
    0.95-1.3 s, 3 % jitter) each with one calf burst of 0.25-0.45 s at 50-250
    uV RMS at push-off, heel-strike impacts of 0.5-2 g and +-15-30 deg shank
    pitch swing; 1-4 min of standing (soleus tone 5-25 uV RMS, upright); the
    bout back; lying down.  Three labels per trip.  1-2 trips per 8 h.
stretch
    Voluntary stretch / pointing the toes: 2-6 s contraction of 100-500 uV RMS
    with 0.05-0.3 g of movement.  0.3-1 per hour.
resting_tone
    2-20 min of low-level tone: a few low-threshold units at 6-10 Hz adding
    1-6 uV RMS.  1-4 per 8 h.
twitches
    20-90 s of scattered brief twitches (30-250 ms, 1-3 units, 15-80 uV).
    Before 60 % of cramps, plus 1-3 standalone episodes per 8 h.
pop
    Electrode pop: a step of +-100-3000 uV decaying with tau 0.05-1.5 s.
    0.5-2 per hour.
lead_off
    A lead falls off for 10-60 s: mains hum of 300-2000 uV (with harmonics),
    drift of 500-3000 uV, the muscle signal lost, pops at both ends.  Never
    during a cramp.  1-2 per 8 h.
mains
    Mains interference at ``mains_hz`` (+2nd, 3rd, 5th harmonics) of 10-80 uV
    for 1-30 min with 1-10 s ramps, 1-4 episodes per 8 h; in 30 % of nights
    also continuous at 3-30 uV (one label covering the night).
ecg
    ECG crosstalk: QRS complexes of 5-40 uV at 48-72 beats/min with sinus
    arrhythmia, for 5-60 min.  1-3 episodes per 8 h.
drift
    Slow electrode drift: 50-500 uV of 0.01-0.2 Hz wander over 1-15 min.
    1-4 per 8 h.
background
    Amplifier/skin noise of 1.5-5 uV RMS (log-uniform per night) in 20-450 Hz
    (FIR, 129 taps at 1 kHz), level varying +-10-25 % over hours; a lying posture;
    accelerometer white noise of 2-5 mg per axis and a per-axis offset of up
    to 20 mg.  The EMG clips at +-``emg_range_uv`` (amplifier saturation),
    the accelerometer at +-``acc_range_g``.

Counts given "per 8 h" scale with the night's length; with
``NightSpec.every_kind`` (default) every kind appears at least once.
Durations of long events are capped by the night's length (a cramp at most
1/8 of it) so that short nights still hold every kind.

How muscle activity is made, and why
------------------------------------
All muscle activity (cramps and every behavioural distractor) comes from one
motor-unit pool model, so that the detector cannot tell a cramp by *how* it
was synthesised, only by what it does (sustained, still, long).  A pool has
N units (cramp 60-120) with recruitment thresholds rising quadratically with
size (Henneman), MUAP amplitudes spread 30:1 (log-normal jitter), firing rates
rising from 6 Hz at recruitment to a pool maximum (cramp 18-25 Hz, the 6-25 Hz
reported for cramp discharges) and renewal firing with gamma intervals of CV
0.15-0.35 (irregular, as reported for cramps) in operational time, i.e. a
time-varying rate follows the drive envelope.  MUAP templates are first and
second Hermite-Rodriguez functions (sigma 1.15-2.3 ms, 6 classes per pool, all
widths of a night scaled by a "tissue factor" 0.85-1.2), whose spectra peak at
1 / (2 pi sigma) = 58-160 Hz: a cramp's EMG then has its spectral peak at
50-130 Hz and a mean frequency of 70-140 Hz (median 96; measured over 32
cramps), as the real holds below.  MUAP trains rather than filtered noise
because a cramp's EMG is a superposition of discharging units: its amplitude
statistics, the recruitment at onset and the firing-rate structure are those
of real EMG, and shaped noise would make the spectrum the only realistic
property.  Twitches are the same model with 3-6 large units.

Grounding in the shared real recordings (/work/shared/data, 20-450 Hz band)
------------------------------------------------------------------------
- santuz_walking ID0012 (treadmill, 1 kHz): stride 1.04 s; calf bursts above
  3x the baseline envelope last 0.42-0.58 s (GL, SO), GM 0.15-0.47 s; 100 ms
  RMS envelope peaks GM 171-235, SO 139-179, GL 81-108 uV (95th percentile
  to max); baseline envelope 4-8 uV; mean frequency 108-125 Hz.  -> walking
  bursts 50-250 uV, 0.25-0.45 s (slower night walking), stride 0.95-1.3 s.
- elderly_isometric (20 subjects, 2 kHz): sustained TA holds 62-225 uV RMS
  (median 137), mean frequency 92-149 Hz, spectral peak 33-107 Hz, power
  falling to -10 dB at ~200 Hz and -20 dB at ~320 Hz; the 250 ms RMS envelope
  fluctuates with a CV of 0.1-0.3.  -> cramp plateau RMS 30-400 uV, MUAP
  widths giving 60-120 Hz peaks, fluctuation depth 15-40 %.  The GL channel
  there holds almost nothing in-band (1.3-1.5 uV RMS, 88 % of its raw power
  below 20 Hz): the amplifier noise floor, -> floor 1.5-5 uV.

Examples
--------
>>> night = SyntheticNight(NightSpec(hours=0.5, seed=3, n_cramps=2))
>>> emg_uv = night.render_emg(0, 1000)        # first second, float32 uV
>>> acc_g = night.render_acc(0, 100)          # (100, 3) float32 g
>>> sorted({lab.kind for lab in night.labels}) == sorted(LABEL_KINDS)
True
"""

from __future__ import annotations

import logging
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import scipy.fft
from crampwatch.firmware_bridge.labels import LABEL_KINDS, Label
from scipy import signal

__all__ = ["NightSpec", "SyntheticNight", "Label", "LABEL_KINDS", "SEGMENT_S"]

log = logging.getLogger(__name__)

SEGMENT_S = 10.0
"""Rendering segment, seconds: each is a pure function of (seed, index)."""

_FLOOR_TAPS_PER_KHZ = 129  # FIR length of the noise-floor band-pass at 1 kHz (scaled with fs)
_DRIVE_DT_S = 0.002  # grid of the drive envelope for spike generation
_TWO_PI = 2.0 * math.pi


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class NightSpec:
    """Parameters of a synthetic night.  Defaults give a realistic 8 h night.

    Ranges ``(lo, hi)`` are drawn from per night; counts "per 8 h" scale with
    ``hours``.  See the module docstring for what each kind looks like.
    """

    hours: float = 8.0
    """Length of the night, hours."""
    seed: int = 0
    """Seed: the same spec renders the same night, sample for sample."""
    emg_fs_hz: float = 1000.0
    """EMG sample rate, Hz (250-4000)."""
    acc_fs_hz: float = 100.0
    """Accelerometer sample rate, Hz (25-200)."""
    mains_hz: float = 50.0
    """Mains frequency of the interference, Hz (50 or 60)."""
    start_utc: datetime | None = None
    """Wall-clock time of the first sample (UTC); None: a night start between
    21:00 and 00:30 UTC on a day of 2024 chosen by the seed."""
    n_cramps: int | None = None
    """Number of cramps; None: random 1-4 (at least 1)."""
    cramp_rms_uv: tuple[float, float] = (30.0, 400.0)
    """Range of a cramp's RMS at full drive, uV (log-uniform)."""
    cramp_duration_s: tuple[float, float] = (10.0, 600.0)
    """Range of a cramp's duration, s (log-normal, clipped)."""
    cramp_median_duration_s: float = 60.0
    """Median cramp duration, s (log-normal sigma 0.75: mostly 20 s - 3 min)."""
    floor_rms_uv: float | None = None
    """Noise floor in 20-450 Hz, uV RMS; None: log-uniform in floor_rms_uv_range."""
    floor_rms_uv_range: tuple[float, float] = (1.5, 5.0)
    """Range of the noise floor when floor_rms_uv is None, uV RMS."""
    turns_per_hour: tuple[float, float] = (1.5, 4.0)
    """Rate of turning over in bed, per hour."""
    plm_series_per_8h: tuple[float, float] = (1.0, 3.0)
    """Periodic limb movement series per 8 h."""
    walks_per_8h: tuple[float, float] = (1.0, 2.0)
    """Walks to the bathroom (and back) per 8 h."""
    stretches_per_hour: tuple[float, float] = (0.3, 1.0)
    """Voluntary stretches (pointing the toes) per hour."""
    resting_tone_per_8h: tuple[float, float] = (1.0, 4.0)
    """Episodes of low-level resting tone per 8 h."""
    twitch_episodes_per_8h: tuple[float, float] = (1.0, 3.0)
    """Standalone twitch episodes per 8 h (besides the ones before cramps)."""
    pops_per_hour: tuple[float, float] = (0.5, 2.0)
    """Electrode pops per hour."""
    lead_offs_per_8h: tuple[float, float] = (1.0, 2.0)
    """Lead-off episodes per 8 h."""
    mains_episodes_per_8h: tuple[float, float] = (1.0, 4.0)
    """Episodes of mains interference per 8 h."""
    mains_continuous_probability: float = 0.3
    """Probability that the night also has continuous mains interference."""
    ecg_episodes_per_8h: tuple[float, float] = (1.0, 3.0)
    """Episodes of ECG crosstalk per 8 h."""
    drift_episodes_per_8h: tuple[float, float] = (1.0, 4.0)
    """Episodes of slow electrode drift per 8 h."""
    every_kind: bool = True
    """Make every label kind appear at least once."""
    acc_noise_g: tuple[float, float] = (0.002, 0.005)
    """Range of the accelerometer white noise per axis, g RMS."""
    emg_range_uv: float = 5000.0
    """Amplifier input range: EMG is clipped to +-this, uV."""
    acc_range_g: float = 4.0
    """Accelerometer range: clipped to +-this, g."""

    def __post_init__(self):
        if not self.hours > 0:
            raise ValueError(f"hours must be > 0, got {self.hours}")
        if not 100.0 <= self.emg_fs_hz <= 20000.0:
            raise ValueError(f"emg_fs_hz must be within 100-20000 Hz, got {self.emg_fs_hz}")
        if not 10.0 <= self.acc_fs_hz <= 2000.0:
            raise ValueError(f"acc_fs_hz must be within 10-2000 Hz, got {self.acc_fs_hz}")
        if not 40.0 <= self.mains_hz <= 70.0:
            raise ValueError(f"mains_hz must be 50 or 60, got {self.mains_hz}")
        if self.n_cramps is not None and self.n_cramps < 0:
            raise ValueError(f"n_cramps must be >= 0, got {self.n_cramps}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.start_utc is not None and self.start_utc.tzinfo is None:
            raise ValueError("start_utc must be timezone-aware (UTC)")


# --------------------------------------------------------------------------- helpers


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


def _logu(rng, lo, hi) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _count(rng, rate_range, scale, at_least_one) -> int:
    """Stochastically rounded count for a rate drawn from ``rate_range`` times ``scale``."""
    x = rng.uniform(*rate_range) * scale
    n = int(math.floor(x)) + int(rng.random() < x - math.floor(x))
    return max(n, 1) if at_least_one else n


def _rotate(v, axis, angle_rad):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    v = np.asarray(v, float)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return v * c + np.cross(axis, v) * s + axis * np.dot(axis, v) * (1 - c)


def _raised(x):
    """0 -> 1 raised-cosine ramp for x in [0, 1] (clipped outside)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def _apply_ramps(y, t, on, off, ramp):
    """Multiply ``y`` (at times ``t``) by raised-cosine ramps of ``ramp`` s after ``on``
    and before ``off``; only the samples inside a ramp are touched."""
    m = t < on + ramp
    if np.any(m):
        y[m] *= _raised((t[m] - on) / ramp)
    m = t > off - ramp
    if np.any(m):
        y[m] *= _raised((off - t[m]) / ramp)


class _Wavelets:
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
            y = np.exp(-0.5 * (tt / self.w[j]) ** 2) * np.cos(_TWO_PI * self.f[j] * tt + self.ph[j])
            out[a:b] += y[:, None] * self.amp[j] if out.ndim == 2 else y * self.amp[j]


class _Kicks:
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
            y = np.exp(-tt / self.tau[j]) * np.sin(_TWO_PI * self.f[j] * tt)
            out[a:b] += y[:, None] * self.amp[j] if out.ndim == 2 else y * self.amp[j]


# --------------------------------------------------------------------------- motor units


def _hermite_template(kind: int, sigma_s: float, fs: float, sign: float) -> np.ndarray:
    """Causal MUAP template sampled at ``fs`` (box-averaged over each sample), peak 1.

    ``kind`` 1: first Hermite-Rodriguez function (biphasic), 2: second (triphasic);
    both have their spectral peak at 1 / (2 pi sigma_s).
    """
    if kind == 2:  # widen the triphasic shape so both kinds peak at 1 / (2 pi sigma)
        sigma_s *= math.sqrt(2.0)
    half = 4.0 * sigma_s
    n = max(3, int(math.ceil(2 * half * fs)) + 1)
    sub = 8
    t = (np.arange(n * sub) + 0.5) / (fs * sub) - half
    x = t / sigma_s
    g = np.exp(-0.5 * x * x)
    y = x * g if kind == 1 else (1.0 - x * x) * g
    y = y.reshape(n, sub).mean(axis=1)
    y -= y.mean()
    return (sign * y / np.max(np.abs(y))).astype(float)


class _MotorPool:
    """A pool of motor units driven by a common envelope (see module docstring)."""

    def __init__(
        self,
        rng,
        fs,
        n_units,
        r_min_hz,
        r_max_hz,
        cv_range,
        theta_max,
        amp_ratio=30.0,
        sat=0.35,
        sigma_ms=(1.15, 2.3),
        n_classes=6,
    ):
        self.fs = fs
        u = np.linspace(0.0, 1.0, n_units)
        self.theta = 0.02 + theta_max * u**2
        self.amp = np.exp(math.log(amp_ratio) * u) * rng.lognormal(0.0, 0.25, n_units)
        n_classes = max(1, min(n_classes, n_units))
        self.cls = rng.integers(0, n_classes, n_units)
        cv = rng.uniform(cv_range[0], cv_range[1], n_units)
        self.shape_k = 1.0 / cv**2
        self.templates = [
            _hermite_template(
                int(rng.integers(1, 3)),
                rng.uniform(*sigma_ms) * 1e-3,
                fs,
                float(rng.choice([-1.0, 1.0])),
            )
            for _ in range(n_classes)
        ]
        self.energy = np.array([np.sum(h * h) for h in self.templates])
        self.tpl_len = max(len(h) for h in self.templates)
        self.r_min, self.r_max, self.sat = r_min_hz, r_max_hz, sat
        self.scale = 1.0

    def rates(self, drive):
        e = drive[None, :] - self.theta[:, None]
        r = self.r_min + (self.r_max - self.r_min) * np.clip(e / self.sat, 0.0, 1.0)
        return np.where(e > 0, r, 0.0)

    def calibrate(self, rms_uv, drive_ref=1.0):
        """Scale amplitudes so that a steady drive ``drive_ref`` gives ``rms_uv``."""
        r = self.rates(np.array([drive_ref]))[:, 0]
        power = np.sum(r * self.amp**2 * self.energy[self.cls]) / self.fs
        self.scale = rms_uv / math.sqrt(max(power, 1e-30))

    def spikes(self, rng, drive_fn, t0, t1):
        """Discharge times (s) and amplitudes (uV) in [t0, t1)."""
        m = int(math.ceil((t1 - t0) / _DRIVE_DT_S)) + 1
        tg = t0 + np.arange(m) * _DRIVE_DT_S
        d = drive_fn(tg)
        if not np.any(d > self.theta[0]):
            return np.empty(0), np.empty(0, np.int64), np.empty(0)
        rates = self.rates(d)
        active = np.nonzero(rates.max(axis=1) > 0)[0]
        rates = rates[active]
        phi = np.zeros_like(rates)
        phi[:, 1:] = np.cumsum(0.5 * (rates[:, 1:] + rates[:, :-1]), axis=1) * _DRIVE_DT_S
        phi += 1e-9 * np.arange(m)  # strictly increasing for interp
        end = phi[:, -1]
        n_max = int(math.ceil(end.max() * 1.3 + 6 * math.sqrt(end.max() + 1) + 4))
        k = self.shape_k[active][:, None]
        isi = rng.gamma(k, 1.0 / k, size=(len(active), n_max))
        isi[:, 0] *= rng.random(len(active))  # stationary start phase
        op = np.cumsum(isi, axis=1)
        while np.any(op[:, -1] < end):  # rare: a unit needs more intervals than drawn
            more = np.cumsum(rng.gamma(k, 1.0 / k, size=(len(active), n_max)), axis=1)
            op = np.concatenate([op, op[:, -1:] + more], axis=1)
        keep = op < end[:, None]
        offs = np.concatenate([[0.0], np.cumsum(end + 1.0)[:-1]])
        xp = (phi + offs[:, None]).ravel()
        fp = np.tile(tg, len(active))
        q = (op + offs[:, None])[keep]
        times = np.interp(q, xp, fp)
        unit = np.broadcast_to(active[:, None], op.shape)[keep]
        amps = self.amp[unit] * self.scale * (1.0 + 0.05 * rng.standard_normal(unit.size))
        sel = (times >= t0) & (times < t1)
        return times[sel], unit[sel], amps[sel]


# --------------------------------------------------------------------------- events


def _span(on_s: float, off_s: float, fs: float, i0: int, n: int) -> tuple[int, int]:
    """Indices into a block of ``n`` samples starting at ``i0`` covered by [on_s, off_s)."""
    return (max(0, int(math.ceil(on_s * fs)) - i0), min(n, int(math.ceil(off_s * fs)) - i0))


class _Event:
    """Something that adds to the EMG and/or the accelerometer over [lo, hi]."""

    muscle = False  # attenuated while a lead is off

    def __init__(self, lo, hi):
        self.lo, self.hi = float(lo), float(hi)

    def add_emg(self, night, out, i0):
        pass

    def add_acc(self, night, out, i0):
        pass


class _Muscle(_Event):
    """Muscle activity from a motor pool driven by an envelope of trapezoid bumps."""

    muscle = True

    def __init__(self, ev_id, pool, bumps, fluct=None, trend=None):
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
        self.ev_id = ev_id
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
        up = _raised((t[None, :] - on) / rise)
        down = 1.0 - _raised((t[None, :] - on - rise - plat) / fall)
        d = np.sum(peak * np.minimum(up, down), axis=0)
        if self.fluct is not None:
            amps, freqs, phases = self.fluct
            mod = 1.0 + np.sum(
                amps[:, None] * np.sin(_TWO_PI * freqs[:, None] * t[None, :] + phases[:, None]),
                axis=0,
            )
            d *= np.clip(mod, 0.15, None)
        if self.trend is not None:
            t_ref, dur, slope = self.trend
            d *= 1.0 + slope * np.clip((t - t_ref) / dur, 0.0, 1.0)
        return d

    def _segment_spikes(self, night, k):
        key = (self.ev_id, k)
        hit = night._spike_cache.get(key)
        if hit is None:
            t0, t1 = k * SEGMENT_S, (k + 1) * SEGMENT_S
            if t1 <= self.lo or t0 >= self.hi:
                hit = (np.empty(0), np.empty(0, int), np.empty(0))
            else:
                rng = _rng(night.spec.seed, 7, self.ev_id, k)
                hit = self.pool.spikes(rng, self.drive, t0, t1)
            night._spike_cache[key] = hit
            if len(night._spike_cache) > 64:
                night._spike_cache.popitem(last=False)
        else:
            night._spike_cache.move_to_end(key)
        return hit

    def add_emg(self, night, out, i0):
        fs = night.emg_fs_hz
        n = out.shape[0]
        lead = self.pool.tpl_len
        b0 = i0 - lead
        k0 = int(math.floor(b0 / fs / SEGMENT_S))
        k1 = int(math.floor((i0 + n - 1) / fs / SEGMENT_S))
        parts = [self._segment_spikes(night, k) for k in range(max(k0, 0), k1 + 1)]
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


class _Motion(_Event):
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


class _GaitSwing(_Event):
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
        env = np.minimum(
            _raised((tt - self.lo) / self.ramp_s), _raised((self.hi - tt) / self.ramp_s)
        )
        ang = env * self.amp_rad * np.sin(_TWO_PI * cycle + self.phase0)
        g = night._gravity(tt)
        # rotate about the medio-lateral (y) axis: x-z plane
        c, s = np.cos(ang), np.sin(ang)
        gx = c * g[:, 0] + s * g[:, 2]
        gz = -s * g[:, 0] + c * g[:, 2]
        out[m, 0] += gx - g[:, 0]
        out[m, 2] += gz - g[:, 2]


class _Pop(_Event):
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


class _Hum(_Event):
    """Mains interference with harmonics, trapezoid envelope."""

    def __init__(self, on, off, ramp_s, f_hz, amps_uv, phases):
        self.on, self.off, self.ramp = on, off, ramp_s
        self.f, self.amps, self.phases = f_hz, np.asarray(amps_uv), np.asarray(phases)
        super().__init__(on, off)

    def add_emg(self, night, out, i0):
        fs = night.emg_fs_hz
        a, b = _span(self.on, self.off, fs, i0, out.shape[0])
        if b <= a:
            return
        t = (i0 + np.arange(a, b)) / fs
        # harmonics as powers of one complex phasor: one exp per sample, not one sin per harmonic
        z = np.exp(1j * (_TWO_PI * self.f * t))
        zh = np.ones_like(z)
        y = np.zeros_like(t)
        for h, (amp, ph) in enumerate(zip(self.amps, self.phases), start=1):
            zh *= z
            if amp > 0 and h * self.f < 0.5 * fs:
                y += amp * (zh * complex(math.cos(ph), math.sin(ph))).imag  # sin(h w t + ph)
        _apply_ramps(y, t, self.on, self.off, self.ramp)
        out[a:b] += y


class _Drift(_Event):
    """Slow baseline wander (sum of low-frequency sinusoids) under a Tukey window."""

    def __init__(self, on, off, amps_uv, freqs_hz, phases, ramp_s):
        self.on, self.off, self.ramp = on, off, ramp_s
        self.amps, self.freqs, self.phases = (
            np.asarray(x, float) for x in (amps_uv, freqs_hz, phases)
        )
        super().__init__(on, off)

    def add_emg(self, night, out, i0):
        fs = night.emg_fs_hz
        a, b = _span(self.on, self.off, fs, i0, out.shape[0])
        if b <= a:
            return
        t = (i0 + np.arange(a, b)) / fs
        y = np.zeros_like(t)
        for amp, f, ph in zip(self.amps, self.freqs, self.phases):
            y += amp * np.sin(_TWO_PI * f * (t - self.on) + ph)
        _apply_ramps(y, t, self.on, self.off, self.ramp)
        out[a:b] += y


class _Ecg(_Event):
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


class _LeadOff(_Event):
    """A lead off: huge hum and drift; the muscle signal is lost meanwhile."""

    def __init__(self, on, off, hum, drift):
        self.on, self.off = on, off
        self.hum, self.drift = hum, drift
        super().__init__(on, off)

    def mask(self, t):
        return np.minimum(_raised((t - self.on) / 0.05), _raised((self.off - t) / 0.05))

    def add_emg(self, night, out, i0):
        self.hum.add_emg(night, out, i0)
        self.drift.add_emg(night, out, i0)


# --------------------------------------------------------------------------- planning


@dataclass
class _PostureChange:
    t_s: float
    dur_s: float
    target: str  # "lying", "upright", "tilt"
    tilt_rad: float = 0.0
    vec: np.ndarray | None = None
    frm: np.ndarray | None = None
    perp: np.ndarray | None = None


class _Occupancy:
    def __init__(self, total_s, margin_s):
        self.total, self.margin = total_s, margin_s
        self.spans: list[tuple[float, float]] = []

    def free(self, a, b):
        return all(b + self.margin <= s or a - self.margin >= e for s, e in self.spans)

    def place(self, rng, length_s, edge_s=20.0, tries=400):
        lo, hi = (
            min(edge_s, self.total * 0.02),
            self.total - length_s - min(edge_s, self.total * 0.02),
        )
        if hi <= lo:
            return None
        for _ in range(tries):
            a = float(rng.uniform(lo, hi))
            if self.free(a, a + length_s):
                self.spans.append((a, a + length_s))
                return a
        return None


_LYING = {
    "supine": np.array([0.0, 0.0, -1.0]),
    "prone": np.array([0.0, 0.0, 1.0]),
    "left": np.array([0.0, 1.0, 0.0]),
    "right": np.array([0.0, -1.0, 0.0]),
}


class SyntheticNight:
    """A planned synthetic night that renders EMG and acceleration on demand.

    Parameters
    ----------
    spec : NightSpec
        What night to make.

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
        The night's noise floor (20-450 Hz, uV RMS) before its slow variation.
    tissue_factor : float
        The night's MUAP width factor (0.85-1.2: skin/fat and electrode spacing):
        above 1 shifts the EMG spectrum down.
    mains_hz : float

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
        self.n_emg_samples = int(round(self.duration_s * self.emg_fs_hz))
        self.n_acc_samples = int(round(self.duration_s * self.acc_fs_hz))
        self._seg_emg = int(round(SEGMENT_S * self.emg_fs_hz))
        self._seg_acc = int(round(SEGMENT_S * self.acc_fs_hz))
        self._emg_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._acc_cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._spike_cache: OrderedDict = OrderedDict()
        self.labels: list[Label] = []
        self._events: list[_Event] = []
        self._postures: list[_PostureChange] = []
        self._plan()

    # ------------------------------------------------------------------ public

    @property
    def start_time(self) -> datetime:
        if self.spec.start_utc is not None:
            return self.spec.start_utc.astimezone(timezone.utc)
        r = _rng(self.spec.seed, 99)
        day = int(r.integers(0, 365))
        minutes = int(r.integers(21 * 60, 24 * 60 + 30))
        return datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=day, minutes=minutes)

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

        Examples
        --------
        >>> night = SyntheticNight(NightSpec(hours=0.1, seed=0))
        >>> night.render_acc(0, 100).shape
        (100, 3)
        """
        return self._render(start_index, n, self._seg_acc, self._acc_segment, self._acc_cache, (3,))

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
        tail_prev = _rng(seed, 11, k).standard_normal(M - 1)
        body = _rng(seed, 12, k).standard_normal(L - (M - 1))
        tail = _rng(seed, 11, k + 1).standard_normal(M - 1)
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
                    _TWO_PI * tg[None, :] / self._floor_var[1][:, None]
                    + self._floor_var[2][:, None]
                ),
                axis=0,
            )
        )
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
            offs = [ev for ev in events if isinstance(ev, _LeadOff)]
            if offs:
                t = (i0 + np.arange(L)) / fs
                keep = np.ones(L)
                for ev in offs:
                    keep *= 1.0 - 0.95 * ev.mask(t)
                muscle *= keep
        y += muscle + other
        r = self.spec.emg_range_uv
        return np.clip(y, -r, r).astype(np.float32)

    def _gravity(self, t):
        """Unit specific-force direction of the posture at times ``t`` (n, 3)."""
        t = np.asarray(t, float)
        idx = np.searchsorted(self._pc_t, t, "right") - 1
        g = np.empty((t.size, 3))
        before = idx < 0
        g[before] = self._posture0
        m = ~before
        if np.any(m):
            j = idx[m]
            s = _raised((t[m] - self._pc_t[j]) / self._pc_dur[j])[:, None]
            frm, to, perp = self._pc_from[j], self._pc_to[j], self._pc_perp[j]
            v = (1 - s) * frm + s * to + np.sin(np.pi * s) * perp
            g[m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return g

    def _acc_segment(self, k):
        L = self._seg_acc
        i0 = k * L
        fs = self.acc_fs_hz
        t = (i0 + np.arange(L)) / fs
        y = self._gravity(t) + self._acc_bias
        y += self._acc_noise_g * _rng(self.spec.seed, 21, k).standard_normal((L, 3))
        for ev in self._overlapping(t[0] - 1.0, t[-1] + 1.0):
            ev.add_acc(self, y, i0)
        r = self.spec.acc_range_g
        return np.clip(y, -r, r).astype(np.float32)

    # ------------------------------------------------------------------ planning

    def _plan(self):
        sp = self.spec
        T = self.duration_s
        rng = _rng(sp.seed, 1)
        scale8 = sp.hours / 8.0
        one = sp.every_kind
        self._next_id = 0

        self.floor_rms_uv = float(
            sp.floor_rms_uv if sp.floor_rms_uv is not None else _logu(rng, *sp.floor_rms_uv_range)
        )
        nv = 3
        self._floor_var = (
            rng.uniform(0.03, 0.08, nv),
            rng.uniform(1800, 14400, nv),
            rng.uniform(0, _TWO_PI, nv),
        )
        nyq = 0.5 * self.emg_fs_hz
        self._floor_taps = max(65, int(_FLOOR_TAPS_PER_KHZ * self.emg_fs_hz / 1000.0) | 1)
        self._floor_fir = signal.firwin(
            self._floor_taps, [20.0, min(450.0, 0.9 * nyq)], pass_zero=False, fs=self.emg_fs_hz
        )
        self._floor_fir /= math.sqrt(np.sum(self._floor_fir**2))
        self._floor_nfft = int(scipy.fft.next_fast_len(self._seg_emg + self._floor_taps - 1))
        self._floor_fft = np.fft.rfft(self._floor_fir, self._floor_nfft)
        # own stream, so that adding it left the plan (labels) of every seed unchanged
        self.tissue_factor = _logu(_rng(sp.seed, 3), 0.85, 1.2)
        self._acc_noise_g = float(rng.uniform(*sp.acc_noise_g))
        self._acc_bias = rng.uniform(-0.02, 0.02, 3)
        self._posture0_name = str(rng.choice(list(_LYING), p=[0.45, 0.1, 0.225, 0.225]))
        self._posture0 = self._lying_vector(rng, self._posture0_name)

        occ = _Occupancy(T, margin_s=min(20.0, T / 90))
        self._cramp_spans: list[tuple[float, float]] = []

        n_cramps = sp.n_cramps if sp.n_cramps is not None else int(rng.integers(1, 5))
        for _ in range(n_cramps):
            self._plan_cramp(rng, occ)
        for _ in range(_count(rng, sp.walks_per_8h, scale8, one)):
            self._plan_walk(rng, occ)
        for j in range(_count(rng, sp.plm_series_per_8h, scale8, one)):
            self._plan_plm(rng, occ, j + 1)
        for _ in range(_count(rng, sp.resting_tone_per_8h, scale8, one)):
            self._plan_tone(rng, occ)
        for _ in range(_count(rng, sp.twitch_episodes_per_8h, scale8, one)):
            self._plan_twitches(rng, occ, None)
        for _ in range(_count(rng, sp.stretches_per_hour, sp.hours, one)):
            self._plan_stretch(rng, occ)
        for _ in range(_count(rng, sp.turns_per_hour, sp.hours, one)):
            self._plan_turn(rng, occ)
        # artifacts: anywhere (lead-off never during a cramp)
        for _ in range(_count(rng, sp.pops_per_hour, sp.hours, one)):
            self._plan_pop(rng)
        for _ in range(_count(rng, sp.lead_offs_per_8h, scale8, one)):
            self._plan_lead_off(rng)
        for _ in range(_count(rng, sp.mains_episodes_per_8h, scale8, one)):
            self._plan_mains(rng, continuous=False)
        if rng.random() < sp.mains_continuous_probability:
            self._plan_mains(rng, continuous=True)
        for _ in range(_count(rng, sp.ecg_episodes_per_8h, scale8, one)):
            self._plan_ecg(rng)
        for _ in range(_count(rng, sp.drift_episodes_per_8h, scale8, one)):
            self._plan_drift(rng)

        self._resolve_postures(rng)
        self.labels.sort(key=lambda lab: (lab.onset_s, lab.offset_s, lab.kind))
        self._ev_lo = np.array([ev.lo for ev in self._events])
        self._ev_hi = np.array([ev.hi for ev in self._events])
        missing = [k for k in LABEL_KINDS if k not in {lab.kind for lab in self.labels}]
        if one and missing and not (sp.n_cramps == 0 and missing == ["cramp"]):
            log.warning(
                "synthetic night (seed %d, %.2f h) is too short to hold every kind: no %s",
                sp.seed,
                sp.hours,
                ", ".join(missing),
            )

    def _id(self):
        self._next_id += 1
        return self._next_id

    def _label(self, kind, on, off, note=""):
        self.labels.append(Label(kind, round(float(on), 3), round(float(off), 3), note))

    def _lying_vector(self, rng, name):
        v = _LYING[str(name)]
        v = _rotate(v, [0, 1, 0], math.radians(rng.uniform(-15, 15)))  # shank pitch (knees, pillow)
        v = _rotate(v, [1, 0, 0], math.radians(rng.uniform(-20, 20)))  # leg roll
        return v / np.linalg.norm(v)

    def _pool(self, rng, n_units, r_min, r_max, cv, theta_max, sigma_ms=(1.15, 2.3), **kw):
        # MUAP widths scaled by the night's tissue factor (fat layer, electrode spacing)
        sigma_ms = (sigma_ms[0] * self.tissue_factor, sigma_ms[1] * self.tissue_factor)
        return _MotorPool(
            rng, self.emg_fs_hz, n_units, r_min, r_max, cv, theta_max, sigma_ms=sigma_ms, **kw
        )

    def _movement(
        self, rng, t_on, dur, acc_g, art_uv, n=(2, 5), f_acc=(0.5, 3.0), f_emg=(1.0, 6.0)
    ):
        k = int(rng.integers(n[0], n[1] + 1))
        tc = t_on + rng.uniform(0.15, 0.85, k) * dur
        w = rng.uniform(0.15, 0.5, k) * min(1.0, dur / 2)
        direction = rng.standard_normal((k, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        acc = _Wavelets(
            tc,
            w,
            rng.uniform(*f_acc, k),
            rng.uniform(0, _TWO_PI, k),
            direction * np.array([_logu(rng, *acc_g) for _ in range(k)])[:, None],
        )
        ke = int(rng.integers(max(1, n[0]), n[1] + 1))
        tce = t_on + rng.uniform(0.1, 0.9, ke) * dur
        emg = _Wavelets(
            tce,
            rng.uniform(0.08, 0.35, ke),
            rng.uniform(*f_emg, ke),
            rng.uniform(0, _TWO_PI, ke),
            np.array([_logu(rng, *art_uv) for _ in range(ke)]),
        )
        self._events.append(_Motion(acc=acc, emg=emg))

    def _fluct(self, rng, depth):
        k = int(rng.integers(3, 6))
        a = rng.uniform(0.5, 1.0, k)
        a *= depth / math.sqrt(np.sum(a**2) / 2)
        return (
            a,
            np.exp(rng.uniform(math.log(0.05), math.log(1.5), k)),
            rng.uniform(0, _TWO_PI, k),
        )

    # --- behaviour

    @staticmethod
    def _fit(rng, occ, length_for, factors=(1.0, 0.75, 0.55, 0.4, 0.3, 0.2)):
        """Place the longest version of an event that fits: ``length_for(f)`` is its
        length shrunk by ``f``; returns ``(start_s, f)`` or ``(None, None)``."""
        for f in factors:
            t = occ.place(rng, length_for(f), tries=150)
            if t is not None:
                return t, f
        return None, None

    def _plan_cramp(self, rng, occ):
        sp, T = self.spec, self.duration_s
        lo, hi = sp.cramp_duration_s
        hi = max(lo, min(hi, T / 8))
        dur = float(np.clip(rng.lognormal(math.log(sp.cramp_median_duration_s), 0.75), lo, hi))
        twitch_s = float(rng.uniform(20, 90)) * min(1.0, T / 3600) if rng.random() < 0.6 else 0.0
        twitch_s = max(twitch_s, 10.0) if twitch_s else 0.0
        gap_s = float(rng.uniform(0, 5)) if twitch_s else 0.0

        def sizes(f):
            return max(lo, dur * f), (max(10.0, twitch_s * f) if twitch_s else 0.0)

        start, f = self._fit(rng, occ, lambda f: sum(sizes(f)) + gap_s + 10.0)
        if start is None:
            log.warning("no room for a %.0f s cramp in a %.2f h night", dur, sp.hours)
            return
        dur, twitch_s = sizes(f)
        onset = start + twitch_s + gap_s
        self._cramp_spans.append((onset - 5.0, onset + dur + 5.0))
        if twitch_s:
            self._plan_twitches(rng, None, (start, start + twitch_s), note="before cramp")
        rms = _logu(rng, *sp.cramp_rms_uv)
        rise = float(rng.uniform(0.5, 3.0) if rng.random() < 0.75 else rng.uniform(3.0, 15.0))
        end_kind = "fade" if rng.random() < 0.55 else "stretch"
        fall = float(rng.uniform(2.0, 20.0) if end_kind == "fade" else rng.uniform(0.3, 1.0))
        if rise + fall > 0.6 * dur:
            f = 0.6 * dur / (rise + fall)
            rise, fall = rise * f, fall * f
        plat = dur - rise - fall
        pool = self._pool(
            rng, int(rng.integers(60, 121)), 6.0, float(rng.uniform(18, 25)), (0.15, 0.35), 0.6
        )
        pool.calibrate(rms, 1.0)
        fluct = self._fluct(rng, float(rng.uniform(0.15, 0.4)))
        trend = (onset + rise, max(plat, 1.0), float(rng.uniform(-0.4, 0.2)))
        self._events.append(
            _Muscle(self._id(), pool, ([onset], [rise], [plat], [fall], [1.0]), fluct, trend)
        )
        notes = [f"rms_uv={rms:.0f}", f"rise_s={rise:.1f}", f"end={end_kind}"]
        if rng.random() < 0.3:  # a flinch at onset
            self._movement(rng, onset, 1.0, (0.02, 0.08), (10, 80), n=(1, 2))
        if dur > 30 and rng.random() < 0.5:  # wakes and moves the foot part-way
            t_move = onset + min(float(rng.uniform(20, 60)), 0.8 * dur)
            mdur = float(rng.uniform(2, 5))
            self._movement(rng, t_move, mdur, (0.05, 0.4), (30, 600))
            if rng.random() < 0.5:
                self._postures.append(
                    _PostureChange(
                        t_move + 0.3 * mdur, 0.5 * mdur, "tilt", math.radians(rng.uniform(10, 30))
                    )
                )
            notes.append(f"moved_at_s={t_move - onset:.0f}")
        if end_kind == "stretch":
            self._movement(
                rng, onset + dur - fall - 0.5, float(rng.uniform(1.5, 3.0)), (0.1, 0.5), (50, 800)
            )
        self._label("cramp", onset, onset + dur, "; ".join(notes))

    def _plan_turn(self, rng, occ):
        dur = float(rng.uniform(1.0, 4.0))
        t = occ.place(rng, dur)
        if t is None:
            return
        nb = int(rng.integers(1, 4))
        peak_rms = _logu(rng, 20, 300)
        on = t + np.sort(rng.uniform(0, 0.6 * dur, nb))
        blen = rng.uniform(0.4, 1.0, nb) * (dur - (on - t))
        rise = blen * rng.uniform(0.15, 0.35, nb)
        fall = blen * rng.uniform(0.2, 0.4, nb)
        pool = self._pool(rng, 40, 8.0, float(rng.uniform(20, 30)), (0.1, 0.25), 0.6)
        pool.calibrate(peak_rms, 1.0)
        self._events.append(
            _Muscle(
                self._id(), pool, (on, rise, blen - rise - fall, fall, rng.uniform(0.6, 1.2, nb))
            )
        )
        self._movement(rng, t, dur, (0.1, 0.6), (100, 1500), n=(2, 4))
        self._postures.append(_PostureChange(t + 0.2 * dur, 0.6 * dur, "lying"))
        self._label("turn", t, t + dur, f"emg_rms_uv={peak_rms:.0f}")

    def _plan_plm(self, rng, occ, series):
        T = self.duration_s
        base_iv = float(rng.uniform(15, 40))
        n = int(rng.integers(4, 41))
        n = max(4, min(n, int(min(T / 6, 1800) / base_iv)))
        iv = np.clip(base_iv * (1 + 0.2 * rng.standard_normal(n - 1)), 5.0, 90.0)
        base_dur = _logu(rng, 0.8, 3.0)
        durs = np.clip(base_dur * rng.lognormal(0, 0.35, n), 0.5, 5.0)
        durs[:-1] = np.minimum(durs[:-1], iv - 1.0)
        rel = np.concatenate([[0.0], np.cumsum(iv)])

        def count(f):
            return max(4, int(round(n * f)))

        t, f = self._fit(rng, occ, lambda f: float(rel[count(f) - 1] + durs[count(f) - 1]))
        if t is None:
            return
        n = count(f)
        rel, durs = rel[:n], durs[:n]
        on = t + rel
        rms = _logu(rng, 10, 150)
        rise = durs * rng.uniform(0.1, 0.3, n)
        fall = durs * rng.uniform(0.2, 0.4, n)
        pool = self._pool(rng, 40, 8.0, float(rng.uniform(15, 25)), (0.15, 0.3), 0.6)
        pool.calibrate(rms, 1.0)
        self._events.append(
            _Muscle(
                self._id(), pool, (on, rise, durs - rise - fall, fall, rng.uniform(0.6, 1.3, n))
            )
        )
        for i in range(n):
            self._movement(rng, on[i], durs[i], (0.01, 0.08), (5, 50), n=(1, 2))
            self._label("plm", on[i], on[i] + durs[i], f"series {series}, burst {i + 1}/{n}")

    def _plan_walk(self, rng, occ):
        T = self.duration_s
        getup, liedown = float(rng.uniform(4, 8)), float(rng.uniform(4, 8))
        out_s, back_s = float(rng.uniform(30, 150)), float(rng.uniform(30, 150))
        stand_s = float(rng.uniform(60, 240))
        budget = min(T / 6, 900.0)
        total = getup + out_s + stand_s + back_s + liedown
        if total > budget:
            f = max(0.15, (budget - getup - liedown) / (out_s + stand_s + back_s))
            out_s, stand_s, back_s = (
                max(20.0, out_s * f),
                max(15.0, stand_s * f),
                max(20.0, back_s * f),
            )
            total = getup + out_s + stand_s + back_s + liedown

        def parts(f):
            return max(20.0, out_s * f), max(15.0, stand_s * f), max(20.0, back_s * f)

        t, f = self._fit(rng, occ, lambda f: getup + sum(parts(f)) + liedown)
        if t is None:
            return
        out_s, stand_s, back_s = parts(f)
        period = float(rng.uniform(0.95, 1.3))
        burst_rms = _logu(rng, 50, 250)
        burst_len = float(rng.uniform(0.25, 0.45))
        impact_g = float(rng.uniform(0.5, 2.0))
        swing = math.radians(rng.uniform(15, 30))
        # getting up: lying -> upright, some effort
        self._postures.append(_PostureChange(t + 0.5, getup - 1.0, "upright"))
        self._movement(rng, t, getup, (0.1, 0.5), (50, 500), n=(2, 4))
        pool_up = self._pool(rng, 40, 8.0, 20.0, (0.1, 0.25), 0.6)
        pool_up.calibrate(_logu(rng, 20, 80), 1.0)
        self._events.append(
            _Muscle(self._id(), pool_up, ([t + 0.3 * getup], [0.5], [0.3 * getup], [0.8], [1.0]))
        )
        t_out = t + getup
        self._walk_bout(rng, t_out, out_s, period, burst_rms, burst_len, impact_g, swing)
        self._label("walk", t, t_out + out_s, "getting up and walking to the bathroom")
        t_stand = t_out + out_s
        pool = self._pool(rng, 12, 6.0, 12.0, (0.1, 0.2), 0.3, sigma_ms=(1.3, 2.5))
        stand_rms = _logu(rng, 5, 25)
        pool.calibrate(stand_rms, 0.45)
        self._events.append(
            _Muscle(
                self._id(),
                pool,
                ([t_stand], [2.0], [stand_s - 4.0], [2.0], [0.45]),
                self._fluct(rng, 0.2),
            )
        )
        sway = int(rng.integers(1, 4))
        self._movement(rng, t_stand, stand_s, (0.01, 0.05), (5, 30), n=(sway, sway + 1))
        self._label(
            "walk", t_stand, t_stand + stand_s, f"standing upright, soleus tone {stand_rms:.0f} uV"
        )
        t_back = t_stand + stand_s
        self._walk_bout(
            rng,
            t_back,
            back_s,
            period * float(rng.uniform(0.95, 1.05)),
            burst_rms,
            burst_len,
            impact_g,
            swing,
        )
        t_lie = t_back + back_s
        self._postures.append(_PostureChange(t_lie + 0.5, liedown - 1.0, "lying"))
        self._movement(rng, t_lie, liedown, (0.1, 0.5), (50, 500), n=(2, 4))
        self._label("walk", t_back, t_lie + liedown, "walking back to bed and lying down")

    def _walk_bout(self, rng, t0, dur, period, burst_rms, burst_len, impact_g, swing):
        n = max(3, int(dur / period))
        strides = (
            t0
            + 0.5
            + np.concatenate([[0.0], np.cumsum(period * (1 + 0.03 * rng.standard_normal(n - 1)))])
        )
        strides = strides[strides < t0 + dur - 0.5]
        n = strides.size
        blen = burst_len * rng.uniform(0.9, 1.1, n)
        on = strides + period * rng.uniform(0.15, 0.25)
        rise = blen * 0.4
        fall = blen * 0.4
        ramp = np.minimum(1.0, np.minimum(np.arange(1, n + 1), np.arange(n, 0, -1)) / 3.0)
        pool = self._pool(rng, 60, 8.0, float(rng.uniform(25, 35)), (0.1, 0.2), 0.6)
        pool.calibrate(burst_rms, 1.0)
        self._events.append(
            _Muscle(
                self._id(),
                pool,
                (on, rise, blen - rise - fall, fall, ramp * rng.uniform(0.85, 1.15, n)),
            )
        )
        direction = np.array([0.8, 0.1, 0.6]) + 0.15 * rng.standard_normal((n, 3))
        kicks = _Kicks(
            strides,
            rng.uniform(0.02, 0.05, n),
            rng.uniform(12, 25, n),
            direction * (impact_g * ramp * rng.uniform(0.8, 1.2, n))[:, None],
        )
        emg_art = _Kicks(
            strides,
            rng.uniform(0.03, 0.08, n),
            rng.uniform(3, 10, n),
            _logu(rng, 10, 100) * ramp * rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0]),
        )
        self._events.append(_Motion(kicks=kicks, emg_kicks=emg_art))
        self._events.append(_GaitSwing(strides, swing, float(rng.uniform(0, _TWO_PI))))

    def _plan_stretch(self, rng, occ):
        dur = float(rng.uniform(2.0, 6.0))
        t = occ.place(rng, dur)
        if t is None:
            return
        rms = _logu(rng, 100, 500)
        rise, fall = float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.3, 1.0))
        pool = self._pool(rng, 80, 8.0, float(rng.uniform(25, 35)), (0.1, 0.2), 0.6)
        pool.calibrate(rms, 1.0)
        self._events.append(
            _Muscle(
                self._id(),
                pool,
                ([t], [rise], [dur - rise - fall], [fall], [1.0]),
                self._fluct(rng, 0.1),
            )
        )
        self._movement(rng, t, dur, (0.05, 0.3), (20, 300), n=(2, 4))
        if rng.random() < 0.3:
            self._postures.append(
                _PostureChange(t + 0.2 * dur, 0.5 * dur, "tilt", math.radians(rng.uniform(3, 10)))
            )
        self._label("stretch", t, t + dur, f"rms_uv={rms:.0f}")

    def _plan_tone(self, rng, occ):
        T = self.duration_s
        dur = float(rng.uniform(120, 1200))
        dur = min(dur, max(60.0, T / 8))
        t, f = self._fit(rng, occ, lambda f: max(45.0, dur * f))
        if t is None:
            return
        dur = max(45.0, dur * f)
        rms = _logu(rng, 1.0, 6.0)
        level = float(rng.uniform(0.2, 0.35))
        ramp = float(rng.uniform(10, 30)) * min(1.0, dur / 120)
        pool = self._pool(rng, int(rng.integers(8, 16)), 6.0, 10.0, (0.1, 0.25), 0.3)
        pool.calibrate(rms, level)
        self._events.append(
            _Muscle(
                self._id(),
                pool,
                ([t], [ramp], [dur - 2 * ramp], [ramp], [level]),
                self._fluct(rng, 0.2),
            )
        )
        self._label("resting_tone", t, t + dur, f"rms_uv={rms:.1f}")

    def _plan_twitches(self, rng, occ, span, note="scattered twitches"):
        if span is None:
            dur = float(rng.uniform(20, 90)) * min(1.0, self.duration_s / 3600)
            dur = max(dur, 10.0)
            t, f = self._fit(rng, occ, lambda f: max(10.0, dur * f))
            if t is None:
                return
            span = (t, t + max(10.0, dur * f))
        a, b = span
        rate = float(rng.uniform(0.2, 1.0))
        n = max(3, int(rate * (b - a)))
        on = np.sort(rng.uniform(a, b - 0.3, n))
        blen = rng.uniform(0.03, 0.25, n)
        pool = self._pool(rng, int(rng.integers(3, 7)), 15.0, 30.0, (0.1, 0.2), 0.5, amp_ratio=3.0)
        pool.calibrate(_logu(rng, 15, 80), 1.0)
        self._events.append(
            _Muscle(
                self._id(), pool, (on, 0.3 * blen, 0.4 * blen, 0.3 * blen, rng.uniform(0.3, 1.0, n))
            )
        )
        self._label("twitches", a, b, f"{note}, {n} twitches")

    # --- artifacts

    def _random_time(self, rng, length_s, avoid_cramps=False):
        T = self.duration_s
        for _ in range(200):
            t = float(rng.uniform(0, max(1.0, T - length_s)))
            if not avoid_cramps or all(
                t + length_s + 5 <= a or t - 5 >= b for a, b in self._cramp_spans
            ):
                return t
        return None

    def _plan_pop(self, rng):
        tau = _logu(rng, 0.05, 1.5)
        t = self._random_time(rng, 5 * tau)
        amp = _logu(rng, 100, 3000) * float(rng.choice([-1.0, 1.0]))
        self._events.append(_Pop(t, amp, tau))
        self._label("pop", t, t + max(5 * tau, 0.2), f"amp_uv={amp:.0f}; tau_s={tau:.2f}")

    def _hum(self, rng, on, off, amp, ramp):
        f = self.mains_hz + float(rng.uniform(-0.02, 0.02))
        amps = amp * np.array(
            [1.0, rng.uniform(0.05, 0.2), rng.uniform(0.2, 0.5), 0.0, rng.uniform(0.05, 0.2)]
        )
        return _Hum(on, off, ramp, f, amps, rng.uniform(0, _TWO_PI, 5))

    def _plan_lead_off(self, rng):
        dur = float(rng.uniform(10, 60))
        t = self._random_time(rng, dur, avoid_cramps=True)
        if t is None:
            return
        hum = self._hum(rng, t, t + dur, _logu(rng, 300, 2000), 0.05)
        k = 3
        drift = _Drift(
            t,
            t + dur,
            rng.uniform(300, 1000, k) * (_logu(rng, 500, 3000) / 1500),
            np.exp(rng.uniform(math.log(0.05), math.log(0.5), k)),
            rng.uniform(0, _TWO_PI, k),
            0.05,
        )
        self._events.append(_LeadOff(t, t + dur, hum, drift))
        for tp in (t, t + dur):
            self._events.append(
                _Pop(
                    tp, _logu(rng, 300, 3000) * float(rng.choice([-1.0, 1.0])), _logu(rng, 0.1, 1.0)
                )
            )
        self._label("lead_off", t, t + dur)

    def _plan_mains(self, rng, continuous):
        T = self.duration_s
        if continuous:
            amp = _logu(rng, 3, 30)
            self._events.append(self._hum(rng, 0.0, T + 1e6, amp, 1e-3))
            self._label("mains", 0.0, T, f"continuous {self.mains_hz:g} Hz, {amp:.0f} uV")
            return
        dur = min(_logu(rng, 60, 1800), T / 4)
        t = self._random_time(rng, dur)
        amp = _logu(rng, 10, 80)
        self._events.append(self._hum(rng, t, t + dur, amp, float(rng.uniform(1, 10))))
        self._label("mains", t, t + dur, f"{self.mains_hz:g} Hz, {amp:.0f} uV")

    def _plan_ecg(self, rng):
        dur = min(_logu(rng, 300, 3600), self.duration_s / 3)
        t = self._random_time(rng, dur)
        hr = float(rng.uniform(48, 72)) / 60.0
        n = int(dur * hr) + 2
        rr = (1.0 / hr) * (1 + 0.02 * rng.standard_normal(n))
        beats = t + np.cumsum(rr)
        beats = beats + 0.04 / hr * np.sin(_TWO_PI * 0.25 * beats)  # sinus arrhythmia
        beats = beats[beats < t + dur]
        if beats.size < 2:
            return
        amp = _logu(rng, 5, 40)
        self._events.append(_Ecg(beats, amp, float(rng.choice([-1.0, 1.0]))))
        self._label("ecg", t, t + dur, f"qrs_uv={amp:.0f}; hr_bpm={hr * 60:.0f}")

    def _plan_drift(self, rng):
        dur = min(_logu(rng, 60, 900), self.duration_s / 6)
        t = self._random_time(rng, dur)
        amp = _logu(rng, 50, 500)
        k = 3
        a = rng.uniform(0.5, 1.0, k)
        a *= amp / a.sum()
        self._events.append(
            _Drift(
                t,
                t + dur,
                a,
                np.exp(rng.uniform(math.log(0.01), math.log(0.2), k)),
                rng.uniform(0, _TWO_PI, k),
                min(30.0, 0.2 * dur),
            )
        )
        self._label("drift", t, t + dur, f"amp_uv={amp:.0f}")

    # --- posture

    def _resolve_postures(self, rng):
        changes = sorted(self._postures, key=lambda p: p.t_s)
        cur = self._posture0
        cur_name = self._posture0_name
        for pc in changes:
            pc.frm = cur
            if pc.target == "upright":
                v = _rotate(np.array([1.0, 0.0, 0.0]), [0, 1, 0], math.radians(rng.uniform(-8, 8)))
                v = _rotate(v, [0, 0, 1], math.radians(rng.uniform(-8, 8)))
                cur_name = "upright"
            elif pc.target == "lying":
                names = [n for n in _LYING if n != cur_name]
                cur_name = str(rng.choice(names))
                v = self._lying_vector(rng, cur_name)
            else:  # tilt: rotate about a random axis perpendicular to the current vector
                axis = np.cross(cur, rng.standard_normal(3))
                v = _rotate(cur, axis, pc.tilt_rad)
            v = v / np.linalg.norm(v)
            perp = np.cross(cur, v)
            if np.linalg.norm(perp) < 0.2:  # (nearly) opposite: roll through a side posture
                side = np.cross(cur, [1.0, 0.0, 0.0])
                if np.linalg.norm(side) < 0.2:
                    side = np.cross(cur, [0.0, 1.0, 0.0])
                perp = side / np.linalg.norm(side)
            else:
                perp = np.zeros(3)
            pc.vec, pc.perp = v, perp
            cur = v
        self._postures = changes
        self._pc_t = np.array([p.t_s for p in changes])
        self._pc_dur = np.array([max(p.dur_s, 0.1) for p in changes])
        self._pc_from = np.array([p.frm for p in changes]).reshape(-1, 3)
        self._pc_to = np.array([p.vec for p in changes]).reshape(-1, 3)
        self._pc_perp = np.array([p.perp for p in changes]).reshape(-1, 3)
