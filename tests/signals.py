"""Synthetic test signals with the spectrum of surface muscle EMG.

White noise is not muscle: its RMS frequency (~220-280 Hz through the 20-450 Hz
band) is that of an amplifier floor or a loose electrode, and the detector
takes added power of that kind for broadband noise.  Surface EMG of a calf
muscle has its power at 50-150 Hz (RMS frequency 112-158 Hz in the real holds
of ../shared/data/elderly_isometric), which this shaped noise has.
"""

import numpy as np
from scipy import signal


def muscle_noise(rng, n: int, fs_hz: float, rms_uv: float) -> np.ndarray:
    """``n`` samples of Gaussian noise in 30-150 Hz with RMS ``rms_uv``."""
    sos = signal.butter(2, [30.0, min(150.0, 0.45 * fs_hz)], "bandpass", fs=fs_hz, output="sos")
    y = signal.sosfilt(sos, rng.normal(0.0, 1.0, n + int(fs_hz)))[int(fs_hz):]
    return rms_uv * y / y.std()
