"""Optional Lab Streaming Layer outlets for live viewers (``lsl = true``).

Two streams, so that existing LSL viewers and recorders can watch the night
live: ``NAME-emg`` (the EMG after the detector's band-pass and mains notch, uV,
at the board's rate) and ``NAME-envelope`` (its RMS envelope, uV, one value
per detector frame).  Sample times are the board's, mapped onto LSL's clock.
pylsl is an optional dependency (``pip install 'crampwatch[lsl]'``), imported
only when the outlet is enabled.

Examples
--------
>>> from crampwatch.detector import DetectorConfig
>>> out = LslOutlet("crampwatch", 1000.0, DetectorConfig())      # doctest: +SKIP
>>> out.push(emg_uv, first_index=0, host_time_s=time.time())      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time

import numpy as np

from crampwatch.detector.config import DetectorConfig
from crampwatch.detector.filters import EmgFilter
from crampwatch.errors import ConfigError

__all__ = ["LslOutlet", "StreamingRms", "require_pylsl"]

log = logging.getLogger(__name__)


def require_pylsl():
    """Import pylsl, or raise a ConfigError that says how to get it."""
    try:
        import pylsl
    except (ImportError, OSError, RuntimeError) as exc:
        raise ConfigError("config [capture] lsl = true needs pylsl and its liblsl: "
                          f"pip install 'crampwatch[lsl]' ({exc})", key="lsl") from exc
    return pylsl


class StreamingRms:
    """RMS over ``window_n`` frames of ``hop_n`` samples, one value per frame,
    the same whatever the chunking.

    Examples
    --------
    >>> rms = StreamingRms(hop_n=2, window_n=2)
    >>> rms.process(np.array([1.0, 1.0, 3.0])).tolist(), rms.process(np.array([3.0])).tolist()
    ([1.0], [2.23606797749979])
    """

    def __init__(self, hop_n: int, window_n: int):
        self.hop_n = max(1, int(hop_n))
        self.window_n = max(1, int(window_n))
        self.reset()

    def reset(self) -> None:
        self._rest = np.zeros(0)
        self._tail = np.zeros(0)

    def process(self, y: np.ndarray) -> np.ndarray:
        y = np.concatenate([self._rest, np.asarray(y, dtype=np.float64).reshape(-1)])
        k = y.size // self.hop_n
        self._rest = y[k * self.hop_n:]
        if k == 0:
            return np.zeros(0)
        ms = np.concatenate([self._tail, (y[:k * self.hop_n] ** 2).reshape(k, self.hop_n)
                             .mean(axis=1)])
        c = np.concatenate([[0.0], np.cumsum(ms)])
        lo = np.maximum(np.arange(ms.size - k, ms.size) + 1 - self.window_n, 0)
        hi = np.arange(ms.size - k, ms.size) + 1
        out = np.sqrt(np.maximum((c[hi] - c[lo]) / (hi - lo), 0.0))
        self._tail = ms[-(self.window_n - 1):] if self.window_n > 1 else np.zeros(0)
        return out


class LslOutlet:
    """The filtered EMG and its envelope as two LSL outlets.

    Parameters
    ----------
    name : str
        Stream name prefix (``NAME-emg``, ``NAME-envelope``).
    emg_fs_hz : float
        EMG sample rate.
    config : DetectorConfig
        Filter band, mains notch, frame and RMS window (as the detector's).
    source_id : str
        LSL source id prefix (lets viewers reconnect to the same stream).
    """

    def __init__(self, name: str, emg_fs_hz: float, config: DetectorConfig,
                 source_id: str = "crampwatch"):
        pylsl = require_pylsl()
        self.fs_hz = float(emg_fs_hz)
        c = config
        self.filter = EmgFilter(self.fs_hz, c.band_low_hz, c.band_high_hz, c.band_order,
                                c.mains_hz, c.notch_width_hz)
        hop = max(1, int(round(c.frame_s * self.fs_hz)))
        self.env_fs_hz = self.fs_hz / hop
        self.rms = StreamingRms(hop, max(1, int(round(c.rms_window_s / (hop / self.fs_hz)))))
        self._next: int | None = None
        self._origin = 0
        self._frames = 0
        self._clock_offset_s = pylsl.local_clock() - time.time()
        self.outlets = []
        for suffix, kind, rate in (("emg", "EMG", self.fs_hz),
                                   ("envelope", "EMG-envelope", self.env_fs_hz)):
            info = pylsl.StreamInfo(f"{name}-{suffix}", kind, 1, rate, "float32",
                                    f"{source_id}-{suffix}")
            ch = info.desc().append_child("channels").append_child("channel")
            ch.append_child_value("label", "emg" if suffix == "emg" else "emg_rms")
            ch.append_child_value("unit", "microvolts")
            self.outlets.append(pylsl.StreamOutlet(info, 0, 360))
        self.emg_outlet, self.env_outlet = self.outlets
        log.info("LSL: publishing %s-emg (%g Hz) and %s-envelope (%g Hz)", name, self.fs_hz,
                 name, self.env_fs_hz)

    def reset(self) -> None:
        """A new recording or a gap: restart the filter and the envelope."""
        self.filter.reset()
        self.rms.reset()
        self._next = None
        self._frames = 0

    def push(self, emg_uv: np.ndarray, first_index: int, host_time_s: float | None) -> list:
        """Filter one block of EMG (uV) and push it and its envelope, each sample
        with its own time stamp (LSL clock).  Returns the pushed arrays
        ``[emg, envelope]`` (for tests)."""
        x = np.asarray(emg_uv, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return []
        if self._next is None or first_index != self._next:
            self.reset()
            self._origin = first_index
        self._next = first_index + x.size
        y, _ = self.filter.process(np.where(np.isfinite(x), x, 0.0))
        env = self.rms.process(y)
        t0 = (host_time_s if host_time_s is not None else time.time()) + self._clock_offset_s
        t_emg = t0 + np.arange(x.size) / self.fs_hz
        # each envelope value is stamped with the last sample of its frame
        hop = self.rms.hop_n
        ends = self._origin + (self._frames + 1 + np.arange(env.size)) * hop - 1
        self._frames += env.size
        t_env = t0 + (ends - first_index) / self.fs_hz
        out = [y.astype(np.float32).reshape(-1, 1), env.astype(np.float32).reshape(-1, 1)]
        try:
            self.emg_outlet.push_chunk(out[0], t_emg)
            if env.size:
                self.env_outlet.push_chunk(out[1], t_env)
        except Exception as exc:        # a viewer's trouble must never stop the capture
            log.warning("LSL: push failed: %s", exc)
        return out

    def close(self) -> None:
        self.outlets = []
        self.emg_outlet = self.env_outlet = None
