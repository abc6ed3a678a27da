"""Motor units: MUAP templates, a motor pool and its spike trains.

All muscle activity of a night (cramps and every behavioural distractor) comes
from this one model, so that a detector cannot tell a cramp by how it was
synthesised, only by what it does.  A pool has N units with recruitment
thresholds rising quadratically with size (Henneman), MUAP amplitudes spread
30:1 (log-normal jitter), firing rates rising from ``r_min_hz`` at
recruitment to ``r_max_hz``, and renewal firing with gamma intervals (CV
``cv_range``) in operational time, i.e. a time-varying rate follows the drive
envelope.  MUAP templates are first and second Hermite-Rodriguez functions,
whose spectra peak at 1 / (2 pi sigma).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DRIVE_DT_S", "MotorPool", "hermite_template"]

DRIVE_DT_S = 0.002
"""Grid of the drive envelope for spike generation, s."""


def hermite_template(kind: int, sigma_s: float, fs: float, sign: float) -> np.ndarray:
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


class MotorPool:
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
            hermite_template(
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
        m = int(math.ceil((t1 - t0) / DRIVE_DT_S)) + 1
        tg = t0 + np.arange(m) * DRIVE_DT_S
        d = drive_fn(tg)
        if not np.any(d > self.theta[0]):
            return np.empty(0), np.empty(0, np.int64), np.empty(0)
        rates = self.rates(d)
        active = np.nonzero(rates.max(axis=1) > 0)[0]
        rates = rates[active]
        phi = np.zeros_like(rates)
        phi[:, 1:] = np.cumsum(0.5 * (rates[:, 1:] + rates[:, :-1]), axis=1) * DRIVE_DT_S
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
