"""Small shared pieces of the simulator: seeded random streams, draws, ramps.

Every random stream is keyed by integers (the night's seed first), so that a
draw never depends on how much of another stream was used before it.
"""

from __future__ import annotations

import math

import numpy as np

SEGMENT_S = 10.0
"""Rendering segment, seconds: each is a pure function of (seed, index)."""

TWO_PI = 2.0 * math.pi


def rng_for(*keys: int) -> np.random.Generator:
    """The random stream named by ``keys`` (e.g. ``(seed, 12, segment)``)."""
    return np.random.default_rng([int(k) for k in keys])


def log_uniform(rng, lo, hi) -> float:
    """One draw, log-uniform in [lo, hi]."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def stochastic_count(rng, rate_range, scale, at_least_one) -> int:
    """Stochastically rounded count for a rate drawn from ``rate_range`` times ``scale``."""
    x = rng.uniform(*rate_range) * scale
    n = int(math.floor(x)) + int(rng.random() < x - math.floor(x))
    return max(n, 1) if at_least_one else n


def rotate(v, axis, angle_rad):
    """``v`` rotated by ``angle_rad`` about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    v = np.asarray(v, float)
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return v * c + np.cross(axis, v) * s + axis * np.dot(axis, v) * (1 - c)


def raised(x):
    """0 -> 1 raised-cosine ramp for x in [0, 1] (clipped outside)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def apply_ramps(y, t, on, off, ramp):
    """Multiply ``y`` (at times ``t``) by raised-cosine ramps of ``ramp`` s after ``on``
    and before ``off``; only the samples inside a ramp are touched."""
    m = t < on + ramp
    if np.any(m):
        y[m] *= raised((t[m] - on) / ramp)
    m = t > off - ramp
    if np.any(m):
        y[m] *= raised((off - t[m]) / ramp)


def span(on_s: float, off_s: float, fs: float, i0: int, n: int) -> tuple[int, int]:
    """Indices into a block of ``n`` samples starting at ``i0`` covered by [on_s, off_s)."""
    return (max(0, int(math.ceil(on_s * fs)) - i0), min(n, int(math.ceil(off_s * fs)) - i0))
