"""The resting noise floor of the EMG envelope, tracked all night.

Boards differ (0.5-30 uV RMS), electrodes settle for minutes after they are
put on (the floor starts 2-6x its later level) and the floor steps (x0.5-x2)
when the sleeper turns over and the contact pressure changes.  So the floor is
estimated from the signal itself, from the first second on:

- **start-up**: the first valid step's median envelope is the first estimate
  (no fixed initial value: a guess of 2 uV on an 18 uV board would make the
  whole night look like one contraction);
- **down**: towards any lower resting level with a time constant of
  ``floor_down_s`` (seconds): the floor is never above what the quietest
  recent moments show;
- **up**: towards the 20th percentile of the resting steps of the last
  ``floor_window_s`` (at most doubling every ``floor_up_s``), so a step up of
  x2 is followed within about ``floor_window_s``;
- **re-based** to a new resting level when an episode ends on its own terms
  (the contraction is over and the level it left behind is the new floor).

A step is *resting* when the classifier says so (below the off-threshold,
valid, not an artifact); activity never raises the floor.

Examples
--------
>>> from crampwatch.detector.floor import FloorTracker
>>> ft = FloorTracker(floor_min_uv=0.5, down_s=2.0, up_s=20.0, window_s=30.0, step_s=1.0)
>>> ft.update(18.0, resting=True)       # a board with an 18 uV floor: known at once
18.0
>>> for _ in range(40):
...     _ = ft.update(36.0, resting=True)   # the floor doubles when the sleeper turns
>>> round(ft.floor_uv)
36
"""

from __future__ import annotations

import math
from collections import deque


class FloorTracker:
    """Adaptive resting floor (uV RMS), see the module docstring.

    Parameters
    ----------
    floor_min_uv : float
        Never lower than this (uV).
    down_s : float
        Time constant of falling to a quieter level (s).
    up_s : float
        Fastest doubling time when rising (s).
    window_s : float
        Look-back of resting steps for the rising estimate (s).
    step_s : float
        Time between updates (s).
    """

    def __init__(self, floor_min_uv: float, down_s: float, up_s: float, window_s: float,
                 step_s: float):
        self.floor_min_uv = float(floor_min_uv)
        self.floor_uv = math.nan
        self._a_down = 1.0 - math.exp(-step_s / max(down_s, 1e-6))
        self._up = 2.0 ** (step_s / max(up_s, 1e-6))
        self._rest = deque(maxlen=max(3, int(round(window_s / step_s))))

    @property
    def known(self) -> bool:
        """True once a first estimate exists."""
        return self.floor_uv == self.floor_uv

    def start(self, level_uv: float) -> float:
        """The first estimate (the first valid step's median envelope)."""
        self.floor_uv = max(float(level_uv), self.floor_min_uv)
        return self.floor_uv

    def update(self, level_uv: float, resting: bool) -> float:
        """One step's median envelope; ``resting``: the step may move the floor up."""
        x = max(float(level_uv), self.floor_min_uv)
        if not self.known:
            return self.start(x)
        f = self.floor_uv
        if x < f:
            f = math.exp(math.log(f) + self._a_down * (math.log(x) - math.log(f)))
        if resting:
            self._rest.append(x)
            if len(self._rest) >= 3:
                target = _percentile20(self._rest)
                if target > f:
                    f = min(target, f * self._up)
        self.floor_uv = max(f, self.floor_min_uv)
        return self.floor_uv

    def rebase(self, level_uv: float) -> float:
        """A contraction ended and left the signal at ``level_uv``: that is the
        resting level now (the floor moves there, up or down)."""
        self.floor_uv = max(float(level_uv), self.floor_min_uv)
        self._rest.clear()
        self._rest.append(self.floor_uv)
        return self.floor_uv


def _percentile20(values) -> float:
    """The 20th percentile (linear interpolation, as numpy's default) of a few values."""
    v = sorted(values)
    pos = 0.2 * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)
