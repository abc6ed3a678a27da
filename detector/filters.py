"""Causal, stateful filters: one chain for live capture and for replay.

Each stage keeps its own state (``scipy.signal.sosfilt``'s ``zi``/``zf``), so
feeding a signal in one chunk or in thousands of random-sized chunks gives the
same output to the last bit of float64 arithmetic.  No ``filtfilt`` (it looks
ahead and cannot run live) and no filter rebuilt per chunk (each rebuild
restarts the transient).

Examples
--------
>>> import numpy as np
>>> from crampwatch.detector.filters import EmgFilter
>>> f = EmgFilter(fs_hz=1000.0)
>>> x = np.random.default_rng(0).normal(0, 10, 5000)
>>> y1 = f.process(x)[0]
>>> f2 = EmgFilter(fs_hz=1000.0)
>>> y2 = np.concatenate([f2.process(c)[0] for c in np.array_split(x, 7)])
>>> bool(np.allclose(y1, y2))
True
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import signal

log = logging.getLogger(__name__)


class SosFilter:
    """A causal SOS filter with explicit state, started at the first sample's
    steady state (no step transient from a DC offset)."""

    def __init__(self, sos: np.ndarray):
        self.sos = np.asarray(sos, dtype=np.float64)
        self._zi_unit = signal.sosfilt_zi(self.sos) if len(self.sos) else None
        self.zi = None

    def reset(self) -> None:
        self.zi = None

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if len(self.sos) == 0 or x.size == 0:
            return x.copy()
        if x.ndim == 1:
            if self.zi is None:
                self.zi = self._zi_unit * x[0]
            y, self.zi = signal.sosfilt(self.sos, x, zi=self.zi)
            return y
        # several channels as rows (channels, samples): filter along the last axis
        if self.zi is None:
            self.zi = self._zi_unit[:, None, :] * x[:, 0][None, :, None]
        y, self.zi = signal.sosfilt(self.sos, x, axis=-1, zi=self.zi)
        return y


def band_edges(fs_hz: float, low_hz: float, high_hz: float) -> tuple[float, float, bool]:
    """Clip a band to what the sample rate allows.

    Returns ``(low_hz, high_hz, narrowed)``; the upper edge is kept at or
    below 0.45 x fs so 250 Hz boards still work.
    """
    nyq_cap = 0.45 * fs_hz
    high = min(high_hz, nyq_cap)
    low = min(low_hz, 0.5 * high)
    return low, high, high < high_hz or low < low_hz


def mains_frequencies(mains: str, fs_hz: float, high_hz: float) -> list[float]:
    """Mains fundamental and harmonics below the band's upper edge."""
    if mains == "off":
        return []
    bases = {"50": [50.0], "60": [60.0], "auto": [50.0, 60.0]}[mains]
    out = set()
    for b in bases:
        k = 1
        while k * b < min(high_hz + 2 * b, 0.49 * fs_hz):
            out.add(k * b)
            k += 1
    return sorted(out)


def design_emg_sos(fs_hz: float, low_hz: float, high_hz: float, order: int,
                   mains: str, notch_width_hz: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Band-pass SOS and mains-notch SOS for an EMG channel."""
    low, high, narrowed = band_edges(fs_hz, low_hz, high_hz)
    bp = signal.butter(order, [low, high], btype="bandpass", fs=fs_hz, output="sos")
    notches = []
    for f0 in mains_frequencies(mains, fs_hz, high):
        b, a = signal.iirnotch(f0, f0 / notch_width_hz, fs=fs_hz)
        notches.append(signal.tf2sos(b, a))
    notch = np.vstack(notches) if notches else np.zeros((0, 6))
    info = {"band_low_hz": low, "band_high_hz": high, "narrowed": narrowed,
            "notch_hz": mains_frequencies(mains, fs_hz, high)}
    return bp, notch, info


class EmgFilter:
    """Band-pass then mains notch, stateful.

    ``process(x_uv) -> (emg_uv, hum_uv)`` where ``emg_uv`` is the band-passed
    and notched signal and ``hum_uv`` what the notches removed (the mains
    component inside the band), used by the signal-quality flags.
    """

    def __init__(self, fs_hz: float, band_low_hz: float = 20.0, band_high_hz: float = 450.0,
                 order: int = 4, mains: str = "auto", notch_width_hz: float = 2.0):
        self.fs_hz = float(fs_hz)
        bp, notch, self.info = design_emg_sos(fs_hz, band_low_hz, band_high_hz, order, mains,
                                              notch_width_hz)
        self.bandpass = SosFilter(bp)
        self.notch = SosFilter(notch)

    def reset(self) -> None:
        self.bandpass.reset()
        self.notch.reset()

    def process(self, x_uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = self.bandpass.process(x_uv)
        y = self.notch.process(b)
        return y, b - y


class AccFilter:
    """Split acceleration into gravity (low-pass) and dynamic (the rest), stateful.

    ``process(acc_g (n, 3)) -> (gravity_g (n, 3), dynamic_g (n,))`` where
    ``dynamic_g`` is the magnitude of the acceleration minus gravity.
    """

    def __init__(self, fs_hz: float, gravity_hz: float = 0.5):
        self.fs_hz = float(fs_hz)
        cut = min(gravity_hz, 0.4 * fs_hz)
        self.lowpass = SosFilter(signal.butter(2, cut, btype="lowpass", fs=fs_hz, output="sos"))

    def reset(self) -> None:
        self.lowpass.reset()

    def process(self, acc_g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        acc_t = np.ascontiguousarray(np.asarray(acc_g, dtype=np.float64).T)   # (3, n)
        grav_t = self.lowpass.process(acc_t)
        d = acc_t - grav_t
        dyn = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
        return grav_t.T, dyn
