"""The leg's posture over the night: where gravity points in the shank's frame.

The planner records posture changes (``"lying"``: a new lying posture,
``"upright"``: shank vertical, as standing, walking or sitting on the edge of
the bed, ``"tilt"``: a small rotation); :meth:`Postures.resolve` turns them
into vectors once the night is planned, and :meth:`Postures.gravity` gives the
unit specific-force direction at any time (x along the shank, y
medio-lateral, z normal to the calf skin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._common import raised, rotate

__all__ = ["LYING", "PostureChange", "Postures", "lying_vector"]

LYING = {
    "supine": np.array([0.0, 0.0, -1.0]),
    "prone": np.array([0.0, 0.0, 1.0]),
    "left": np.array([0.0, 1.0, 0.0]),
    "right": np.array([0.0, -1.0, 0.0]),
}
"""Gravity in the shank's frame for each lying posture (before pitch and roll)."""


def lying_vector(rng, name):
    """The lying posture ``name`` with a random shank pitch and leg roll."""
    v = LYING[str(name)]
    v = rotate(v, [0, 1, 0], math.radians(rng.uniform(-15, 15)))  # shank pitch (knees, pillow)
    v = rotate(v, [1, 0, 0], math.radians(rng.uniform(-20, 20)))  # leg roll
    return v / np.linalg.norm(v)


@dataclass
class PostureChange:
    t_s: float
    dur_s: float
    target: str  # "lying", "upright", "tilt"
    tilt_rad: float = 0.0
    vec: np.ndarray | None = None
    frm: np.ndarray | None = None
    perp: np.ndarray | None = None


class Postures:
    """The initial lying posture and the changes planned during the night."""

    def __init__(self, rng):
        self.name0 = str(rng.choice(list(LYING), p=[0.45, 0.1, 0.225, 0.225]))
        self.vec0 = lying_vector(rng, self.name0)
        self.changes: list[PostureChange] = []

    def add(self, change: PostureChange) -> None:
        self.changes.append(change)

    def resolve(self, rng) -> None:
        """Draw the target vector of every change, in time order."""
        changes = sorted(self.changes, key=lambda p: p.t_s)
        cur = self.vec0
        cur_name = self.name0
        for pc in changes:
            pc.frm = cur
            if pc.target == "upright":
                v = rotate(np.array([1.0, 0.0, 0.0]), [0, 1, 0], math.radians(rng.uniform(-8, 8)))
                v = rotate(v, [0, 0, 1], math.radians(rng.uniform(-8, 8)))
                cur_name = "upright"
            elif pc.target == "lying":
                names = [n for n in LYING if n != cur_name]
                cur_name = str(rng.choice(names))
                v = lying_vector(rng, cur_name)
            else:  # tilt: rotate about a random axis perpendicular to the current vector
                axis = np.cross(cur, rng.standard_normal(3))
                v = rotate(cur, axis, pc.tilt_rad)
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
        self.changes = changes
        self._t = np.array([p.t_s for p in changes])
        self._dur = np.array([max(p.dur_s, 0.1) for p in changes])
        self._from = np.array([p.frm for p in changes]).reshape(-1, 3)
        self._to = np.array([p.vec for p in changes]).reshape(-1, 3)
        self._perp = np.array([p.perp for p in changes]).reshape(-1, 3)

    def gravity(self, t):
        """Unit specific-force direction of the posture at times ``t`` (n, 3)."""
        t = np.asarray(t, float)
        idx = np.searchsorted(self._t, t, "right") - 1
        g = np.empty((t.size, 3))
        before = idx < 0
        g[before] = self.vec0
        m = ~before
        if np.any(m):
            j = idx[m]
            s = raised((t[m] - self._t[j]) / self._dur[j])[:, None]
            frm, to, perp = self._from[j], self._to[j], self._perp[j]
            v = (1 - s) * frm + s * to + np.sin(np.pi * s) * perp
            g[m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return g
