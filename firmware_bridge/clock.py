"""Device counters to sample indices, and sample indices to host time.

Two small pieces of explicit state, used by every live source:

- :class:`CounterUnwrapper` turns the wrapped counter a board sends with each
  frame (modulus 16, 256 or 2**32) into a continuous sample index, and measures
  gaps from it: a step of ``k`` counts where one was expected means ``k - 1``
  frames were lost.  A backwards or huge jump of a 2**32 counter is a device
  reset and is reported as such, never folded into the index.
- :class:`ClockFit` maps the unwrapped sample index onto host time with a drift
  correction.  Arrival times are only ever *late* (USB latency timers, radio
  connection intervals, a busy host), so the fit follows the lower envelope of
  the arrival times: the earliest arrival in each window of device time feeds a
  recursive least-squares fit with forgetting, and windows that arrived late as
  a whole are rejected.  A crystal that is 50 ppm off drifts 1.4 s over an
  8-hour night; the fit removes that.

Neither object reads a clock itself: arrival times are passed in, so both are
pure state machines and are tested with synthetic arrivals.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CounterUnwrapper", "UnwrapResult", "ClockFit"]

logger = logging.getLogger(__name__)


@dataclass
class UnwrapResult:
    """What :meth:`CounterUnwrapper.unwrap` found in one batch of frames.

    Attributes
    ----------
    first_index : numpy.ndarray
        int64, unwrapped index of the first sample of each frame.  Frames at
        and after ``reset_at`` are not included.
    gaps : list of tuple
        ``(first_missing_index, n_missing_samples, position)`` for every jump,
        ``position`` being the index (in the batch) of the frame after the gap.
    reset_at : int or None
        Position in the batch of the first frame whose counter jumped
        backwards or implausibly far (device reset).  That frame and the rest
        of the batch were not unwrapped; the caller decides where the new
        counter starts (:meth:`CounterUnwrapper.restart`) and unwraps them again.
    """

    first_index: np.ndarray
    gaps: list = field(default_factory=list)
    reset_at: int | None = None


class CounterUnwrapper:
    """Unwrap a wrapping frame counter into continuous sample indices.

    Parameters
    ----------
    modulo : int
        The counter's modulus: 16 (BITalino), 256 (Cyton), 2**32 (open frame).
    samples_per_count : int
        Samples that one counter step stands for.  A counter that counts
        samples directly (the open frame's first-sample index) uses 1 and
        advances by the number of samples in the frame.
    max_jump_samples : int or None
        A forward jump of more samples than this is treated as a device reset
        rather than a gap.  Only meaningful for large moduli (2**32); for
        small moduli every jump is ambiguous modulo ``modulo`` and is read as
        the shortest forward gap.

    Notes
    -----
    The expected step from one frame to the next is the previous frame's
    sample count divided by ``samples_per_count``: 1 for Cyton and BITalino
    (one sample per frame), ``n_samples`` for an index counter.  With a small
    modulus, a gap of more than one full counter period cannot be seen in the
    counter; pass ``first_index_hint`` (from host time) to :meth:`unwrap`
    after a long silence to add the whole periods back.

    Examples
    --------
    >>> import numpy as np
    >>> u = CounterUnwrapper(modulo=16)
    >>> r = u.unwrap(np.array([14, 15, 0, 3, 4]), n_samples=1)
    >>> r.first_index.tolist()
    [0, 1, 2, 5, 6]
    >>> r.gaps            # counts 1 and 2 were lost: two samples from index 3
    [(3, 2, 3)]
    """

    def __init__(self, modulo: int, samples_per_count: int = 1,
                 max_jump_samples: int | None = None):
        if modulo < 2:
            raise ValueError(f"counter modulo must be >= 2, got {modulo}")
        self.modulo = int(modulo)
        self.samples_per_count = int(samples_per_count)
        self.max_jump_samples = max_jump_samples
        self._last_counter: int | None = None
        self._last_index: int | None = None     # first sample index of the last frame
        self._last_n: int = 0                   # samples in the last frame
        self._start_index = 0

    @property
    def started(self) -> bool:
        """True once a frame has been unwrapped since the last restart."""
        return self._last_counter is not None

    @property
    def last_counter(self) -> int | None:
        """Raw counter of the last frame unwrapped."""
        return self._last_counter

    @property
    def last_n(self) -> int:
        """Samples in the last frame unwrapped."""
        return self._last_n

    @property
    def next_index(self) -> int | None:
        """Index one past the last sample unwrapped, or None before the first frame."""
        if self._last_index is None:
            return None
        return self._last_index + self._last_n

    def restart(self, start_index: int) -> None:
        """Forget the counter: the next frame gets index ``start_index``."""
        self._last_counter = None
        self._last_index = None
        self._last_n = 0
        self._start_index = int(start_index)

    def follow(self, n_samples: list[int], last_counter: int) -> int:
        """Take in frames whose counters continue the sequence exactly (the
        caller checked each one): no gap, no reset, nothing to compute.

        The state afterwards is what :meth:`unwrap` leaves for the same frames.

        Parameters
        ----------
        n_samples : list of int
            Samples in each frame, in order (at least one frame).
        last_counter : int
            Raw counter of the last frame.

        Returns
        -------
        int
            Index of the first sample of the first frame.
        """
        if self._last_index is None:
            raise ValueError("CounterUnwrapper.follow needs a frame unwrapped before")
        first = self._last_index + self._last_n
        self._last_index = first + sum(n_samples) - n_samples[-1]
        self._last_n = int(n_samples[-1])
        self._last_counter = int(last_counter)
        return first

    def unwrap(self, counters, n_samples, first_index_hint: float | None = None,
               min_missing=None) -> UnwrapResult:
        """Unwrap a batch of consecutive frames.

        Parameters
        ----------
        counters : array_like of int
            Raw (wrapped) counters of the frames, in arrival order.
        n_samples : int or array_like of int
            Samples in each frame.
        first_index_hint : float, optional
            Host-time estimate of the first frame's index, given only after a
            silence longer than one counter period.  With a small modulus, it
            decides how many whole periods were lost on top of what the
            counter shows.
        min_missing : array_like of int, optional
            Per frame, the fewest frames known to be missing before it (for
            fixed-length frames: the unreadable bytes between it and the
            previous frame, in frames).  With a small modulus, whole counter
            periods are added until the gap is at least this long.

        Returns
        -------
        UnwrapResult
        """
        c = np.asarray(counters, dtype=np.int64).reshape(-1)
        n = np.broadcast_to(np.asarray(n_samples, dtype=np.int64), c.shape)
        out = UnwrapResult(first_index=np.empty(0, dtype=np.int64))
        if c.size == 0:
            return out
        m = self.modulo
        spc = self.samples_per_count
        big = m > (1 << 20)
        if self._last_counter is None:
            prev_c = np.concatenate(([c[0]], c[:-1]))
            prev_n = np.concatenate(([0], n[:-1]))
            first_is_start = True
        else:
            prev_c = np.concatenate(([self._last_counter], c[:-1]))
            prev_n = np.concatenate(([self._last_n], n[:-1]))
            first_is_start = False
        step = (c - prev_c) % m                               # counts actually advanced
        expected = prev_n // spc                              # counts a frame should advance
        missing = step - expected                             # counts lost (>= 0 normally)
        if big:
            bad = (missing < 0) | (step >= m // 2)
            if self.max_jump_samples is not None:
                bad |= missing * spc > self.max_jump_samples
        else:
            missing = missing % m
            bad = np.zeros(c.shape, dtype=bool)
        if min_missing is not None and not big:
            floor_ = np.broadcast_to(np.asarray(min_missing, dtype=np.int64), c.shape)
            short = np.maximum(floor_ - missing, 0)
            missing = missing + m * (-(-short // m))          # whole periods, rounded up
        if first_is_start:
            missing[0] = 0
            bad[0] = False
        elif first_index_hint is not None and not big:
            cand = self._last_index + self._last_n + int(missing[0]) * spc
            k = int(round((first_index_hint - cand) / (m * spc)))
            if k > 0:
                missing[0] += k * m
        reset_at = None
        if bad.any():
            reset_at = int(np.argmax(bad))
            c, n, missing = c[:reset_at], n[:reset_at], missing[:reset_at]
            out.reset_at = reset_at
            if c.size == 0:
                return out
        advance = np.concatenate(([0], n[:-1])) + missing * spc
        base = self._start_index if first_is_start else self._last_index + self._last_n
        if not first_is_start:
            advance[0] = missing[0] * spc
        idx = base + np.cumsum(advance)
        out.first_index = idx
        for pos in np.flatnonzero(missing > 0).tolist():
            n_miss = int(missing[pos] * spc)
            out.gaps.append((int(idx[pos]) - n_miss, n_miss, int(pos)))
        self._last_counter = int(c[-1])
        self._last_index = int(idx[-1])
        self._last_n = int(n[-1])
        return out


class ClockFit:
    """Online drift fit of host arrival time against device sample index.

    Parameters
    ----------
    fs_hz : float
        Nominal sample rate of the stream.
    window_s : float
        Device-time span of one envelope window: the earliest arrival
        (relative to the current fit) in each window becomes one point of
        the fit.
    memory_s : float
        Time constant of the forgetting factor: points older than a few
        ``memory_s`` hardly count, so a slowly changing drift (temperature)
        is followed.
    reject_s : float
        A window whose earliest arrival is later than the fit by more than
        this (and than 4 robust standard deviations) arrived late as a
        whole and is ignored; eight such windows in a row are taken as the
        new truth (the fit re-anchors).

    Notes
    -----
    The model is ``t(i) = t_ref + x + c + d * x`` with ``x = (i - i_ref) /
    fs_hz`` seconds of nominal device time; ``d`` is the relative clock
    error (50 ppm -> ``d = -5e-5`` when the device runs fast).  The fitted
    time includes the smallest transport latency, which no host can see.

    Examples
    --------
    >>> fit = ClockFit(fs_hz=250.0)
    >>> for k in range(1, 400):                 # device 50 ppm slow, reads every 10 samples
    ...     fit.add(10 * k - 1, 100.0 + (10 * k - 1) / 250.0 * (1 + 50e-6) + 0.002)
    >>> abs(fit.time_of(5000) - (100.0 + 5000 / 250.0 * (1 + 50e-6) + 0.002)) < 1e-6
    True
    >>> round(fit.drift_ppm, 3)
    50.0
    """

    def __init__(self, fs_hz: float, window_s: float = 1.0, memory_s: float = 1800.0,
                 reject_s: float = 0.004):
        if not fs_hz > 0:
            raise ValueError(f"fs_hz must be positive, got {fs_hz}")
        self.fs_hz = float(fs_hz)
        self.window_samples = max(1, int(round(window_s * fs_hz)))
        self.forgetting = math.exp(-window_s / memory_s)
        self.reject_s = float(reject_s)
        self.reset()

    def reset(self) -> None:
        """Forget everything (after a device reset the index restarts)."""
        self._i_ref: int | None = None
        self._t_ref = 0.0
        self._theta = np.zeros(2)            # c [s], d [s/s]
        self._p = np.diag([1e3, 1e3])       # RLS covariance
        self._n_points = 0
        self._win_start: int | None = None
        self._win_best: tuple[float, float] | None = None   # (residual, x)
        self._min_offset = math.inf
        self._resid_var = (0.002) ** 2
        self._n_rejected = 0

    @property
    def n_points(self) -> int:
        """How many envelope windows the fit has taken in."""
        return self._n_points

    @property
    def drift_ppm(self) -> float:
        """Fitted device clock error in ppm (positive: device slower than host)."""
        return float(self._theta[1] * 1e6) if self._n_points >= 2 else 0.0

    def _pred(self, x: float) -> float:
        if self._n_points >= 2:
            return float(self._theta[0] + self._theta[1] * x)
        return self._min_offset if math.isfinite(self._min_offset) else 0.0

    def add(self, index: int, arrival_s: float) -> None:
        """Take in one arrival: sample ``index`` was on the host at ``arrival_s``.

        Feed the index of the last sample of each read chunk with the
        chunk's arrival time (earlier samples of the chunk were on the wire
        earlier and say less).
        """
        if self._i_ref is None:
            self._i_ref = int(index)
            self._t_ref = float(arrival_s)
            self._win_start = int(index)
        x = (index - self._i_ref) / self.fs_hz
        r = arrival_s - self._t_ref - x
        if r < self._min_offset:
            self._min_offset = r
        if self._n_points >= 2:
            resid = r - self._pred(x)
        else:
            resid = r
        if self._win_best is None or resid < self._win_best[0]:
            self._win_best = (resid, x, r)
        if index - self._win_start >= self.window_samples:
            self._close_window()
            self._win_start = int(index)

    def _close_window(self) -> None:
        resid, x, r = self._win_best
        self._win_best = None
        if self._n_points >= 2:
            limit = max(self.reject_s, 4.0 * math.sqrt(self._resid_var))
            if resid > limit and self._n_rejected < 8:
                self._n_rejected += 1
                return
            if resid > limit:
                logger.debug("clock fit: %d late windows in a row, re-anchoring", self._n_rejected)
                self._p = np.diag([1e3, 1e3])
            self._n_rejected = 0
            self._resid_var = 0.95 * self._resid_var + 0.05 * min(resid * resid, limit * limit)
        # recursive least squares with forgetting on (x, r)
        phi = np.array([1.0, x])
        lam = self.forgetting
        p_phi = self._p @ phi
        gain = p_phi / (lam + phi @ p_phi)
        if self._n_points == 0:
            self._theta = np.array([r, 0.0])
        else:
            self._theta = self._theta + gain * (r - phi @ self._theta)
        self._p = (self._p - np.outer(gain, p_phi)) / lam
        self._n_points += 1

    def time_of(self, index) -> float | np.ndarray:
        """Host time (same clock as the arrivals) of sample ``index``.

        Before the first arrival this raises ``ValueError``; before two
        envelope windows it uses the nominal rate and the earliest arrival.
        """
        if self._i_ref is None:
            raise ValueError("ClockFit.time_of called before any arrival")
        x = (np.asarray(index, dtype=np.float64) - self._i_ref) / self.fs_hz
        if self._n_points >= 2:
            t = self._t_ref + x + self._theta[0] + self._theta[1] * x
        else:
            t = self._t_ref + x + self._pred(0.0)
        return float(t) if np.ndim(t) == 0 else t

    def index_at(self, time_s: float) -> float:
        """Sample index (fractional) that the fit places at host time ``time_s``."""
        if self._i_ref is None:
            raise ValueError("ClockFit.index_at called before any arrival")
        if self._n_points >= 2:
            c, d = self._theta
        else:
            c, d = self._pred(0.0), 0.0
        x = (time_s - self._t_ref - c) / (1.0 + d)
        return self._i_ref + x * self.fs_hz
