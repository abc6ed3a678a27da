"""The night's planner: every event of a night, drawn up front (cheap).

:func:`plan_night` turns a :class:`~.spec.NightSpec` into a :class:`Plan`: the
labels, the event renderers (:mod:`.events`), the posture changes and the
night's constants (noise floor, accelerometer noise and bias, MUAP tissue
factor).  What each kind is made of lives in :mod:`.cramps`,
:mod:`.behaviour` and :mod:`.artifacts`; this module holds the order of the
draws and the helpers they share (:class:`Planner`).

Random streams: everything of today's tidy night comes from the one stream
``(seed, 1)`` in a fixed order (plus ``(seed, 3)`` for the tissue factor), so
the labels and signals of a default spec never change.  Everything the
randomised families add draws from streams of its own (``(seed, 50..)``), and
draws nothing at all when switched off.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from crampwatch.firmware_bridge.labels import LABEL_KINDS, RANDOMIZED_KINDS, Label

from . import artifacts, behaviour, cramps
from ._common import TWO_PI, log_uniform, rng_for, stochastic_count
from .events import Event, FloorGain, ImuFault, Motion, Wavelets
from .motor_units import MotorPool
from .posture import Postures
from .spec import NightSpec

__all__ = ["Plan", "Planner", "Occupancy", "plan_night", "expected_kinds"]

log = logging.getLogger(__name__)


class Occupancy:
    """Spans of the night taken by behaviour, with a margin between them."""

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


@dataclass
class Plan:
    """Everything the renderer needs, drawn from the spec."""

    labels: list[Label]
    events: list[Event]
    imu_faults: list[ImuFault]
    postures: Postures
    floor_rms_uv: float
    floor_var: tuple[np.ndarray, np.ndarray, np.ndarray]
    floor_gain: FloorGain
    tissue_factor: float
    acc_noise_g: float
    acc_bias: np.ndarray
    max_effort_rms_uv: float | None = None
    event_groups: list | None = None
    """Per event, the planning call that made it: ``(kind, n)`` (a two-leg night
    shares some kinds between the legs, :mod:`.two_legs`)."""
    label_groups: list | None = None
    """Per label (in ``labels`` order), the same."""


def expected_kinds(spec: NightSpec) -> tuple[str, ...]:
    """The label kinds a night made from ``spec`` can hold (with ``every_kind``, will)."""
    on = {
        "stand": spec.stand_trips_per_8h[1] > 0,
        "sit": spec.sits_per_8h[1] > 0,
        "leg_movement": spec.leg_movements_per_8h[1] > 0
        or spec.leg_movement_before_cramp_probability > 0,
        "loose_electrode": spec.loose_electrodes_per_8h[1] > 0,
        "imu_fault": spec.imu_faults_per_8h[1] > 0 and spec.has_accelerometer,
        "settling": spec.settling_factor > 1.0,
        "floor_step": spec.floor_step_probability > 0,
    }
    return tuple(k for k in LABEL_KINDS if k not in RANDOMIZED_KINDS or on.get(k, False))


class Planner:
    """The state of a night being planned and the helpers every planner uses.

    Attributes
    ----------
    spec : NightSpec
    seed : int
    duration_s, emg_fs_hz, mains_hz, tissue_factor : float
    labels : list of Label
    events : list of Event
    postures : Postures
    cramp_spans : list of (start_s, end_s)
        Each cramp with 5 s either side (artifacts that hide the muscle avoid them).
    turns : list of (start_s, duration_s)
    """

    def __init__(self, spec: NightSpec):
        self.spec = spec
        self.seed = spec.seed
        self.duration_s = float(spec.hours * 3600.0)
        self.emg_fs_hz = float(spec.emg_fs_hz)
        self.mains_hz = float(spec.mains_hz)
        self.labels: list[Label] = []
        self.events: list[Event] = []
        self.imu_faults: list[ImuFault] = []
        self.cramp_spans: list[tuple[float, float]] = []
        self.turns: list[tuple[float, float]] = []
        self.tissue_factor = 1.0
        self.max_effort_rms_uv: float | None = None
        self.n_walk_bouts = 0
        self._next_id = 0
        self.event_groups: list = []
        self.label_groups: list = []
        self._n_groups = 0

    def mark(self, kind: str) -> None:
        """Tag the events and labels added since the last mark with ``(kind, n)``
        (bookkeeping only: draws nothing)."""
        self._n_groups += 1
        g = (kind, self._n_groups)
        self.event_groups += [g] * (len(self.events) - len(self.event_groups))
        self.label_groups += [g] * (len(self.labels) - len(self.label_groups))

    # ------------------------------------------------------------------ helpers

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add(self, event: Event) -> None:
        self.events.append(event)

    def label(self, kind, on, off, note=""):
        self.labels.append(Label(kind, round(float(on), 3), round(float(off), 3), note))

    def pool(self, rng, n_units, r_min, r_max, cv, theta_max, sigma_ms=(1.15, 2.3), **kw):
        """A motor pool whose MUAP widths are scaled by the night's tissue factor
        (fat layer, electrode spacing)."""
        sigma_ms = (sigma_ms[0] * self.tissue_factor, sigma_ms[1] * self.tissue_factor)
        return MotorPool(
            rng, self.emg_fs_hz, n_units, r_min, r_max, cv, theta_max, sigma_ms=sigma_ms, **kw
        )

    def movement(self, rng, t_on, dur, acc_g, art_uv, n=(2, 5), f_acc=(0.5, 3.0), f_emg=(1.0, 6.0)):
        """A movement of the leg over ``[t_on, t_on + dur]``: acceleration wavelets
        (``acc_g`` range, g) and their motion artifact on the EMG (``art_uv``)."""
        k = int(rng.integers(n[0], n[1] + 1))
        tc = t_on + rng.uniform(0.15, 0.85, k) * dur
        w = rng.uniform(0.15, 0.5, k) * min(1.0, dur / 2)
        direction = rng.standard_normal((k, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        acc = Wavelets(
            tc,
            w,
            rng.uniform(*f_acc, k),
            rng.uniform(0, TWO_PI, k),
            direction * np.array([log_uniform(rng, *acc_g) for _ in range(k)])[:, None],
        )
        ke = int(rng.integers(max(1, n[0]), n[1] + 1))
        tce = t_on + rng.uniform(0.1, 0.9, ke) * dur
        emg = Wavelets(
            tce,
            rng.uniform(0.08, 0.35, ke),
            rng.uniform(*f_emg, ke),
            rng.uniform(0, TWO_PI, ke),
            np.array([log_uniform(rng, *art_uv) for _ in range(ke)]),
        )
        self.add(Motion(acc=acc, emg=emg))

    def fluct(self, rng, depth):
        """Slow multiplicative fluctuation of a drive: 3-5 sinusoids of 0.05-1.5 Hz."""
        k = int(rng.integers(3, 6))
        a = rng.uniform(0.5, 1.0, k)
        a *= depth / math.sqrt(np.sum(a**2) / 2)
        return (
            a,
            np.exp(rng.uniform(math.log(0.05), math.log(1.5), k)),
            rng.uniform(0, TWO_PI, k),
        )

    @staticmethod
    def fit(rng, occ, length_for, factors=(1.0, 0.75, 0.55, 0.4, 0.3, 0.2)):
        """Place the longest version of an event that fits: ``length_for(f)`` is its
        length shrunk by ``f``; returns ``(start_s, f)`` or ``(None, None)``."""
        for f in factors:
            t = occ.place(rng, length_for(f), tries=150)
            if t is not None:
                return t, f
        return None, None

    def random_time(self, rng, length_s, avoid_cramps=False, margin_s=5.0):
        """A start anywhere in the night (artifacts), optionally ``margin_s`` clear of
        every cramp's span (itself 5 s either side of the cramp)."""
        T = self.duration_s
        for _ in range(200):
            t = float(rng.uniform(0, max(1.0, T - length_s)))
            if not avoid_cramps or all(
                t + length_s + margin_s <= a or t - margin_s >= b for a, b in self.cramp_spans
            ):
                return t
        return None


def plan_night(spec: NightSpec) -> Plan:
    """Plan every event of the night described by ``spec``."""
    p = Planner(spec)
    sp = spec
    T = p.duration_s
    rng = rng_for(sp.seed, 1)
    scale8 = sp.hours / 8.0
    one = sp.every_kind

    floor_rms_uv = float(
        sp.floor_rms_uv if sp.floor_rms_uv is not None else log_uniform(rng, *sp.floor_rms_uv_range)
    )
    nv = 3
    floor_var = (
        rng.uniform(0.03, 0.08, nv),
        rng.uniform(1800, 14400, nv),
        rng.uniform(0, TWO_PI, nv),
    )
    # own stream, so that adding it left the plan (labels) of every seed unchanged
    p.tissue_factor = log_uniform(rng_for(sp.seed, 3), 0.85, 1.2)
    acc_noise_g = float(rng.uniform(*sp.acc_noise_g))
    acc_bias = rng.uniform(-0.02, 0.02, 3)
    p.postures = Postures(rng)
    if sp.weak_cramp_probability > 0:
        p.max_effort_rms_uv = log_uniform(rng_for(sp.seed, 50), *sp.max_effort_rms_uv)

    occ = Occupancy(T, margin_s=min(20.0, T / 90))

    n_cramps = sp.n_cramps if sp.n_cramps is not None else int(rng.integers(1, 5))
    for i in range(n_cramps):
        cramps.plan_cramp(p, rng, occ, i)
        p.mark("cramp")
    for _ in range(stochastic_count(rng, sp.walks_per_8h, scale8, one)):
        behaviour.plan_walk(p, rng, occ)
        p.mark("walk")
    for j in range(stochastic_count(rng, sp.plm_series_per_8h, scale8, one)):
        behaviour.plan_plm(p, rng, occ, j + 1)
        p.mark("plm")
    for _ in range(stochastic_count(rng, sp.resting_tone_per_8h, scale8, one)):
        behaviour.plan_tone(p, rng, occ)
        p.mark("resting_tone")
    for _ in range(stochastic_count(rng, sp.twitch_episodes_per_8h, scale8, one)):
        behaviour.plan_twitches(p, rng, occ, None)
        p.mark("twitches")
    for _ in range(stochastic_count(rng, sp.stretches_per_hour, sp.hours, one)):
        behaviour.plan_stretch(p, rng, occ)
        p.mark("stretch")
    for _ in range(stochastic_count(rng, sp.turns_per_hour, sp.hours, one)):
        behaviour.plan_turn(p, rng, occ)
        p.mark("turn")
    # artifacts: anywhere (lead-off never during a cramp)
    for _ in range(stochastic_count(rng, sp.pops_per_hour, sp.hours, one)):
        artifacts.plan_pop(p, rng)
        p.mark("pop")
    for _ in range(stochastic_count(rng, sp.lead_offs_per_8h, scale8, one)):
        artifacts.plan_lead_off(p, rng)
        p.mark("lead_off")
    for _ in range(stochastic_count(rng, sp.mains_episodes_per_8h, scale8, one)):
        artifacts.plan_mains(p, rng, continuous=False)
        p.mark("mains")
    if rng.random() < sp.mains_continuous_probability:
        artifacts.plan_mains(p, rng, continuous=True)
        p.mark("mains")
    for _ in range(stochastic_count(rng, sp.ecg_episodes_per_8h, scale8, one)):
        artifacts.plan_ecg(p, rng)
        p.mark("ecg")
    for _ in range(stochastic_count(rng, sp.drift_episodes_per_8h, scale8, one)):
        artifacts.plan_drift(p, rng)
        p.mark("drift")

    # the randomised families' additions: own streams, nothing drawn when off
    def extra(key, rate):
        if rate[1] <= 0:
            return 0, None
        r = rng_for(sp.seed, key)
        return stochastic_count(r, rate, scale8, one), r

    n, r = extra(60, sp.stand_trips_per_8h)
    for _ in range(n):
        behaviour.plan_stand_trip(p, r, occ)
        p.mark("stand")
    n, r = extra(61, sp.sits_per_8h)
    for _ in range(n):
        behaviour.plan_sit(p, r, occ)
        p.mark("sit")
    n, r = extra(62, sp.leg_movements_per_8h)
    for _ in range(n):
        behaviour.plan_leg_movements(p, r, occ)
        p.mark("leg_movement")
    n, r = extra(63, sp.loose_electrodes_per_8h)
    for _ in range(n):
        artifacts.plan_loose_electrode(p, r)
        p.mark("loose_electrode")
    floor_gain = artifacts.plan_floor_gain(p, rng_for(sp.seed, 64))
    p.mark("floor")

    p.postures.resolve(rng)

    if sp.has_accelerometer:  # after the postures: a stuck sensor reads the posture
        n, r = extra(65, sp.imu_faults_per_8h)
        for _ in range(n):
            artifacts.plan_imu_fault(p, r, acc_bias)
            p.mark("imu_fault")

    p.mark("other")
    order = sorted(range(len(p.labels)),
                   key=lambda i: (p.labels[i].onset_s, p.labels[i].offset_s, p.labels[i].kind))
    p.labels = [p.labels[i] for i in order]
    p.label_groups = [p.label_groups[i] for i in order]
    expected = expected_kinds(sp)
    missing = [k for k in expected if k not in {lab.kind for lab in p.labels}]
    if one and missing and not (sp.n_cramps == 0 and missing == ["cramp"]):
        log.warning(
            "synthetic night (seed %d, %.2f h) is too short to hold every kind: no %s",
            sp.seed,
            sp.hours,
            ", ".join(missing),
        )
    return Plan(
        labels=p.labels,
        events=p.events,
        imu_faults=p.imu_faults,
        postures=p.postures,
        floor_rms_uv=floor_rms_uv,
        floor_var=floor_var,
        floor_gain=floor_gain,
        tissue_factor=p.tissue_factor,
        acc_noise_g=acc_noise_g,
        acc_bias=acc_bias,
        max_effort_rms_uv=p.max_effort_rms_uv,
        event_groups=p.event_groups,
        label_groups=p.label_groups,
    )
