"""A two-leg night: both calves watched, one accelerometer.

:class:`TwoLegNight` renders two EMG channels (left and right calf) and the
accelerometer of the left shank.

What is shared and what is not
------------------------------
- The **left leg** is exactly the one-leg night of the same spec (same samples,
  same labels): the single-leg simulator is unchanged.
- The **right leg** has its own noise floor, its own slow floor variation,
  tissue factor, electrode artifacts (pops, lead-off, drift, loose electrode),
  resting tone and twitches: those of the one-leg night of a second seed.
- **Cramps** are one muscle: each is on one leg.  The right leg's cramps come
  from the second seed's plan; one is dropped if it would overlap (30 s
  either side) a left cramp or any behaviour of the body (a walk, standing,
  sitting, turning over), so both legs may cramp in one night, at different
  times.
- **Body movements** are seen on both legs: turning over, walking (the other
  calf bursting half a stride later: 0.45-0.65 s), standing, sitting, and the
  room's mains and the heart's ECG crosstalk; a voluntary stretch (60 %), a
  periodic-limb-movement series (50 %, bilateral PLM) and isolated leg
  movements (50 %) are bilateral or left-only.  The right leg's copy of each
  is delayed by 0.05-0.3 s (either leg may lead; PLM bursts of the two legs
  begin within 0.5 s of each other, AASM's bilateral rule), scaled by
  0.6-1.6 (electrode placement and muscle size differ), and its motor units
  fire independently (a new random stream for the discharges; the drive
  envelope, i.e. the movement, is the same).
- The accelerometer is on the left shank: it sees the body's movements and the
  left leg's own, never the right leg's own.

Labels carry ``site``: ``left_calf`` or ``right_calf`` for what happened on
one leg, ``""`` for body movements seen on both.

Examples
--------
>>> from crampwatch.firmware_bridge.synth import NightSpec
>>> from crampwatch.firmware_bridge.synth.two_legs import TwoLegNight
>>> night = TwoLegNight(NightSpec(hours=0.25, seed=4, n_cramps=1))
>>> night.render_emg(0, 1000).shape, night.emg_labels
((1000, 2), ('EMG L calf', 'EMG R calf'))
>>> sorted({lab.site for lab in night.labels if lab.kind == "cramp"}) <= ["left_calf", "right_calf"]
True
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter, OrderedDict

import numpy as np

from crampwatch.firmware_bridge.labels import LABEL_KINDS

from ._common import log_uniform, rng_for
from .events import Event, Muscle
from .night import SyntheticNight
from .spec import NightSpec

__all__ = ["TwoLegNight", "BILATERAL_KINDS", "SOMETIMES_BILATERAL"]

BILATERAL_KINDS = ("turn", "walk", "stand", "sit", "mains", "ecg")
"""Planning kinds always seen on both legs."""

SOMETIMES_BILATERAL = {"stretch": 0.6, "plm": 0.5, "leg_movement": 0.5}
"""Planning kinds that are bilateral with this probability (else left only)."""

RIGHT_OWN_KINDS = ("cramp", "resting_tone", "twitches", "pop", "lead_off", "drift",
                   "loose_electrode", "floor")
"""Planning kinds the right leg takes from its own plan."""

BODY_KINDS = ("turn", "walk", "stand", "sit", "stretch", "plm", "leg_movement")

SEED_OFFSET = 100_003
"""The right leg's plan is the one-leg plan of ``seed + SEED_OFFSET``."""


class _Shifted(Event):
    """Another event as the other leg sees it: later by ``delay_s``, scaled by
    ``gain``; a muscle event's units fire from their own random stream."""

    def __init__(self, inner: Event, delay_s: float, gain: float, seed: int | None = None):
        inner = copy.copy(inner)
        if isinstance(inner, Muscle) and seed is not None:
            inner.seed = seed
            inner._cache = OrderedDict()
        self.inner, self.delay_s, self.gain = inner, float(delay_s), float(gain)
        self.muscle = inner.muscle
        super().__init__(inner.lo + self.delay_s, inner.hi + self.delay_s)

    def add_emg(self, night, out, i0):
        d = int(round(self.delay_s * night.emg_fs_hz))
        tmp = np.zeros(out.shape[0])
        self.inner.add_emg(night, tmp, i0 - d)
        out += self.gain * tmp


class TwoLegNight:
    """A synthetic night of two calves (EMG ``(n, 2)``: left, right) and one
    accelerometer (on the left shank).

    Parameters
    ----------
    spec : NightSpec
        The night (the left leg is the one-leg night of this spec).
    channels : tuple of str
        EMG labels, left then right.
    sites : tuple of str
        Their body sites.

    Attributes
    ----------
    left, right : SyntheticNight
        The legs (``right`` renders its own list of events).
    labels : list of Label
        Every event with its ``site`` (``""``: both legs).
    emg_labels, sites : tuple of str
    """

    def __init__(self, spec: NightSpec | None = None,
                 channels=("EMG L calf", "EMG R calf"), sites=("left_calf", "right_calf")):
        self.spec = spec = spec or NightSpec()
        self.emg_labels = tuple(channels)
        self.sites = tuple(sites)
        self.left = SyntheticNight(spec)
        self.right = SyntheticNight(dataclasses.replace(spec, seed=spec.seed + SEED_OFFSET))
        self.emg_fs_hz = self.left.emg_fs_hz
        self.acc_fs_hz = self.left.acc_fs_hz
        self.duration_s = self.left.duration_s
        self.n_emg_samples = self.left.n_emg_samples
        self.n_acc_samples = self.left.n_acc_samples
        self.has_accelerometer = self.left.has_accelerometer
        self.mains_hz = self.left.mains_hz
        self._plan_right()

    # ------------------------------------------------------------------ planning
    def _plan_right(self) -> None:
        L, R = self.left, self.right
        left_site, right_site = self.sites
        rng = rng_for(self.spec.seed, 70)
        bilateral = {}                                  # group -> (delay, shared?)
        for g in dict.fromkeys(L._event_groups + L._label_groups):
            kind = g[0]
            p = 1.0 if kind in BILATERAL_KINDS else SOMETIMES_BILATERAL.get(kind, 0.0)
            shared = p > 0 and float(rng.random()) < p
            lo, hi = (0.45, 0.65) if kind in ("walk", "stand") else (0.05, 0.3)
            delay = float(rng.uniform(lo, hi))
            if kind not in ("walk", "stand") and float(rng.random()) < 0.5:
                delay = -delay                           # the right leg leads
            bilateral[g] = (delay, shared)
        seed_r = (self.spec.seed + SEED_OFFSET) * 7 + 3
        events = []
        for ev, g in zip(L._events, L._event_groups):
            delay, shared = bilateral[g]
            if shared:
                events.append(_Shifted(ev, delay, log_uniform(rng, 0.6, 1.6), seed=seed_r))
        # the right leg's own: clear of the left's cramps and of the body's behaviour
        busy = [(lab.onset_s - 30.0, lab.offset_s + 30.0)
                for lab, g in zip(L.labels, L._label_groups)
                if g[0] == "cramp" and lab.kind == "cramp"
                or (g[0] in BODY_KINDS and bilateral[g][1])]
        dropped = set()
        for lab, g in zip(R.labels, R._label_groups):
            if g[0] == "cramp" and any(a < lab.offset_s and lab.onset_s < b for a, b in busy):
                dropped.add(g)
        for ev, g in zip(R._events, R._event_groups):
            if g[0] in RIGHT_OWN_KINDS and g not in dropped:
                events.append(ev)
        R._set_events(events)
        labels = []
        for lab, g in zip(L.labels, L._label_groups):
            shared = bilateral[g][1]
            labels.append(dataclasses.replace(lab, site="" if shared else left_site))
        for lab, g in zip(R.labels, R._label_groups):
            if g[0] in RIGHT_OWN_KINDS and g not in dropped:
                labels.append(dataclasses.replace(lab, site=right_site))
        labels.sort(key=lambda lab: (lab.onset_s, lab.offset_s, lab.kind, lab.site))
        self.labels = labels

    # ------------------------------------------------------------------ public
    @property
    def start_time(self):
        return self.left.start_time

    def counts(self) -> dict[str, int]:
        """Number of labels per kind (every kind listed, zeros included)."""
        c = Counter(lab.kind for lab in self.labels)
        return {k: c.get(k, 0) for k in LABEL_KINDS}

    def render_emg(self, start_index: int, n: int) -> np.ndarray:
        """EMG of both calves, float32 uV, shape (n, 2) (left, right)."""
        return np.stack([self.left.render_emg(start_index, n),
                         self.right.render_emg(start_index, n)], axis=1)

    def render_acc(self, start_index: int, n: int) -> np.ndarray:
        """The left shank's accelerometer, float32 g, shape (n, 3)."""
        return self.left.render_acc(start_index, n)

    def gravity(self, t) -> np.ndarray:
        return self.left.gravity(t)

    def for_file(self) -> "_TwoLegFileView":
        """The night as a file writer should see it (see
        :meth:`SyntheticNight.for_file`), with ``emg_labels``."""
        return _TwoLegFileView(self)


class _TwoLegFileView:
    def __init__(self, night: TwoLegNight):
        self.night = night
        self.emg_fs_hz = night.emg_fs_hz
        self.acc_fs_hz = night.acc_fs_hz if night.has_accelerometer else None
        self.duration_s = night.duration_s
        self.start_time = night.start_time
        self.emg_labels = night.emg_labels

    def render_emg(self, start_index: int, n: int) -> np.ndarray:
        return self.night.render_emg(start_index, n)

    def render_acc(self, start_index: int, n: int) -> np.ndarray:
        return np.nan_to_num(self.night.render_acc(start_index, n), nan=0.0)
