"""Planning the sleeper's behaviour: everything the leg does that is not a cramp.

Today's tidy night: turning over, periodic limb movement series, walks to the
bathroom and back, stretches, resting tone and scattered twitches.  The
randomised families add bathroom trips of a few steps and then standing
still, sitting on the edge of the bed, isolated leg movements and gait with
background tone between its bursts.  Every function takes the
:class:`~.planner.Planner` ``p``, a random stream and (for behaviour, which
never overlaps a cramp or other behaviour) the night's occupancy.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import TWO_PI, log_uniform, rng_for
from .events import GaitSwing, Kicks, Motion, Muscle, Wavelets
from .posture import PostureChange

__all__ = [
    "plan_turn",
    "plan_plm",
    "plan_walk",
    "walk_bout",
    "plan_stretch",
    "plan_tone",
    "plan_twitches",
    "plan_stand_trip",
    "plan_sit",
    "plan_leg_movements",
    "leg_movement_bursts",
    "add_leg_movements",
]


def add_bursts(p, rng, on, blen, rms_uv, rise_frac, rate_hz, gain):
    """Muscle bursts of one motor pool starting at ``on`` (s) lasting ``blen`` (s),
    ``rms_uv`` at full drive: rises of ``rise_frac`` and falls of 20-40 % of each
    burst, a pool firing up to ``rate_hz``, each burst's drive scaled by ``gain``."""
    nb = len(blen)
    rise = blen * rng.uniform(*rise_frac, nb)
    fall = blen * rng.uniform(0.2, 0.4, nb)
    pool = p.pool(rng, 40, 8.0, float(rng.uniform(*rate_hz)), (0.1, 0.25), 0.6)
    pool.calibrate(rms_uv, 1.0)
    p.add(Muscle(p.seed, p.new_id(), pool,
                 (on, rise, blen - rise - fall, fall, rng.uniform(*gain, nb))))


def plan_turn(p, rng, occ):
    dur = float(rng.uniform(1.0, 4.0))
    t = occ.place(rng, dur)
    if t is None:
        return
    nb = int(rng.integers(1, 4))
    peak_rms = log_uniform(rng, 20, 300)
    on = t + np.sort(rng.uniform(0, 0.6 * dur, nb))
    blen = rng.uniform(0.4, 1.0, nb) * (dur - (on - t))
    add_bursts(p, rng, on, blen, peak_rms, rise_frac=(0.15, 0.35), rate_hz=(20, 30),
               gain=(0.6, 1.2))
    p.movement(rng, t, dur, (0.1, 0.6), (100, 1500), n=(2, 4))
    p.postures.add(PostureChange(t + 0.2 * dur, 0.6 * dur, "lying"))
    p.label("turn", t, t + dur, f"emg_rms_uv={peak_rms:.0f}")
    p.turns.append((t, dur))


def plan_plm(p, rng, occ, series):
    T = p.duration_s
    base_iv = float(rng.uniform(15, 40))
    n = int(rng.integers(4, 41))
    n = max(4, min(n, int(min(T / 6, 1800) / base_iv)))
    iv = np.clip(base_iv * (1 + 0.2 * rng.standard_normal(n - 1)), 5.0, 90.0)
    base_dur = log_uniform(rng, 0.8, 3.0)
    durs = np.clip(base_dur * rng.lognormal(0, 0.35, n), 0.5, 5.0)
    durs[:-1] = np.minimum(durs[:-1], iv - 1.0)
    rel = np.concatenate([[0.0], np.cumsum(iv)])

    def count(f):
        return max(4, int(round(n * f)))

    t, f = p.fit(rng, occ, lambda f: float(rel[count(f) - 1] + durs[count(f) - 1]))
    if t is None:
        return
    n = count(f)
    rel, durs = rel[:n], durs[:n]
    on = t + rel
    rms = log_uniform(rng, 10, 150)
    rise = durs * rng.uniform(0.1, 0.3, n)
    fall = durs * rng.uniform(0.2, 0.4, n)
    pool = p.pool(rng, 40, 8.0, float(rng.uniform(15, 25)), (0.15, 0.3), 0.6)
    pool.calibrate(rms, 1.0)
    p.add(
        Muscle(
            p.seed, p.new_id(), pool, (on, rise, durs - rise - fall, fall, rng.uniform(0.6, 1.3, n))
        )
    )
    for i in range(n):
        p.movement(rng, on[i], durs[i], (0.01, 0.08), (5, 50), n=(1, 2))
        p.label("plm", on[i], on[i] + durs[i], f"series {series}, burst {i + 1}/{n}")


def plan_walk(p, rng, occ):
    T = p.duration_s
    getup, liedown = float(rng.uniform(4, 8)), float(rng.uniform(4, 8))
    out_s, back_s = float(rng.uniform(30, 150)), float(rng.uniform(30, 150))
    stand_s = float(rng.uniform(60, 240))
    budget = min(T / 6, 900.0)
    total = getup + out_s + stand_s + back_s + liedown
    if total > budget:
        f = max(0.15, (budget - getup - liedown) / (out_s + stand_s + back_s))
        out_s, stand_s, back_s = (
            max(20.0, out_s * f),
            max(15.0, stand_s * f),
            max(20.0, back_s * f),
        )
        total = getup + out_s + stand_s + back_s + liedown

    def parts(f):
        return max(20.0, out_s * f), max(15.0, stand_s * f), max(20.0, back_s * f)

    t, f = p.fit(rng, occ, lambda f: getup + sum(parts(f)) + liedown)
    if t is None:
        return
    out_s, stand_s, back_s = parts(f)
    period = float(rng.uniform(0.95, 1.3))
    burst_rms = log_uniform(rng, 50, 250)
    burst_len = float(rng.uniform(0.25, 0.45))
    impact_g = float(rng.uniform(0.5, 2.0))
    swing = math.radians(rng.uniform(15, 30))
    # getting up: lying -> upright, some effort
    p.postures.add(PostureChange(t + 0.5, getup - 1.0, "upright"))
    p.movement(rng, t, getup, (0.1, 0.5), (50, 500), n=(2, 4))
    pool_up = p.pool(rng, 40, 8.0, 20.0, (0.1, 0.25), 0.6)
    pool_up.calibrate(log_uniform(rng, 20, 80), 1.0)
    p.add(
        Muscle(p.seed, p.new_id(), pool_up, ([t + 0.3 * getup], [0.5], [0.3 * getup], [0.8], [1.0]))
    )
    t_out = t + getup
    walk_bout(p, rng, t_out, out_s, period, burst_rms, burst_len, impact_g, swing)
    p.label("walk", t, t_out + out_s, "getting up and walking to the bathroom")
    t_stand = t_out + out_s
    pool = p.pool(rng, 12, 6.0, 12.0, (0.1, 0.2), 0.3, sigma_ms=(1.3, 2.5))
    stand_rms = log_uniform(rng, 5, 25)
    pool.calibrate(stand_rms, 0.45)
    p.add(
        Muscle(
            p.seed,
            p.new_id(),
            pool,
            ([t_stand], [2.0], [stand_s - 4.0], [2.0], [0.45]),
            p.fluct(rng, 0.2),
        )
    )
    sway = int(rng.integers(1, 4))
    p.movement(rng, t_stand, stand_s, (0.01, 0.05), (5, 30), n=(sway, sway + 1))
    p.label("walk", t_stand, t_stand + stand_s, f"standing upright, soleus tone {stand_rms:.0f} uV")
    t_back = t_stand + stand_s
    walk_bout(
        p,
        rng,
        t_back,
        back_s,
        period * float(rng.uniform(0.95, 1.05)),
        burst_rms,
        burst_len,
        impact_g,
        swing,
    )
    t_lie = t_back + back_s
    p.postures.add(PostureChange(t_lie + 0.5, liedown - 1.0, "lying"))
    p.movement(rng, t_lie, liedown, (0.1, 0.5), (50, 500), n=(2, 4))
    p.label("walk", t_back, t_lie + liedown, "walking back to bed and lying down")


def walk_bout(p, rng, t0, dur, period, burst_rms, burst_len, impact_g, swing):
    n = max(3, int(dur / period))
    strides = (
        t0
        + 0.5
        + np.concatenate([[0.0], np.cumsum(period * (1 + 0.03 * rng.standard_normal(n - 1)))])
    )
    strides = strides[strides < t0 + dur - 0.5]
    n = strides.size
    blen = burst_len * rng.uniform(0.9, 1.1, n)
    on = strides + period * rng.uniform(0.15, 0.25)
    rise = blen * 0.4
    fall = blen * 0.4
    ramp = np.minimum(1.0, np.minimum(np.arange(1, n + 1), np.arange(n, 0, -1)) / 3.0)
    pool = p.pool(rng, 60, 8.0, float(rng.uniform(25, 35)), (0.1, 0.2), 0.6)
    pool.calibrate(burst_rms, 1.0)
    p.add(
        Muscle(
            p.seed,
            p.new_id(),
            pool,
            (on, rise, blen - rise - fall, fall, ramp * rng.uniform(0.85, 1.15, n)),
        )
    )
    direction = np.array([0.8, 0.1, 0.6]) + 0.15 * rng.standard_normal((n, 3))
    kicks = Kicks(
        strides,
        rng.uniform(0.02, 0.05, n),
        rng.uniform(12, 25, n),
        direction * (impact_g * ramp * rng.uniform(0.8, 1.2, n))[:, None],
    )
    emg_art = Kicks(
        strides,
        rng.uniform(0.03, 0.08, n),
        rng.uniform(3, 10, n),
        log_uniform(rng, 10, 100) * ramp * rng.uniform(0.5, 1.5, n) * rng.choice([-1.0, 1.0]),
    )
    p.add(Motion(kicks=kicks, emg_kicks=emg_art))
    p.add(GaitSwing(strides, swing, float(rng.uniform(0, TWO_PI))))
    p.n_walk_bouts += 1
    if p.spec.gait_tone_probability > 0:
        side = rng_for(p.seed, 52, p.n_walk_bouts)
        if side.random() < p.spec.gait_tone_probability:
            add_gait_tone(p, side, strides, period, burst_rms)


def plan_stretch(p, rng, occ):
    dur = float(rng.uniform(2.0, 6.0))
    t = occ.place(rng, dur)
    if t is None:
        return
    rms = log_uniform(rng, 100, 500)
    rise, fall = float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.3, 1.0))
    pool = p.pool(rng, 80, 8.0, float(rng.uniform(25, 35)), (0.1, 0.2), 0.6)
    pool.calibrate(rms, 1.0)
    p.add(
        Muscle(
            p.seed,
            p.new_id(),
            pool,
            ([t], [rise], [dur - rise - fall], [fall], [1.0]),
            p.fluct(rng, 0.1),
        )
    )
    p.movement(rng, t, dur, (0.05, 0.3), (20, 300), n=(2, 4))
    if rng.random() < 0.3:
        p.postures.add(
            PostureChange(t + 0.2 * dur, 0.5 * dur, "tilt", math.radians(rng.uniform(3, 10)))
        )
    p.label("stretch", t, t + dur, f"rms_uv={rms:.0f}")


def plan_tone(p, rng, occ):
    T = p.duration_s
    dur = float(rng.uniform(120, 1200))
    dur = min(dur, max(60.0, T / 8))
    t, f = p.fit(rng, occ, lambda f: max(45.0, dur * f))
    if t is None:
        return
    dur = max(45.0, dur * f)
    rms = log_uniform(rng, 1.0, 6.0)
    level = float(rng.uniform(0.2, 0.35))
    ramp = float(rng.uniform(10, 30)) * min(1.0, dur / 120)
    pool = p.pool(rng, int(rng.integers(8, 16)), 6.0, 10.0, (0.1, 0.25), 0.3)
    pool.calibrate(rms, level)
    p.add(
        Muscle(
            p.seed,
            p.new_id(),
            pool,
            ([t], [ramp], [dur - 2 * ramp], [ramp], [level]),
            p.fluct(rng, 0.2),
        )
    )
    p.label("resting_tone", t, t + dur, f"rms_uv={rms:.1f}")


def plan_twitches(p, rng, occ, span, note="scattered twitches"):
    if span is None:
        dur = float(rng.uniform(20, 90)) * min(1.0, p.duration_s / 3600)
        dur = max(dur, 10.0)
        t, f = p.fit(rng, occ, lambda f: max(10.0, dur * f))
        if t is None:
            return
        span = (t, t + max(10.0, dur * f))
    a, b = span
    rate = float(rng.uniform(0.2, 1.0))
    n = max(3, int(rate * (b - a)))
    on = np.sort(rng.uniform(a, b - 0.3, n))
    blen = rng.uniform(0.03, 0.25, n)
    pool = p.pool(rng, int(rng.integers(3, 7)), 15.0, 30.0, (0.1, 0.2), 0.5, amp_ratio=3.0)
    pool.calibrate(log_uniform(rng, 15, 80), 1.0)
    p.add(
        Muscle(
            p.seed,
            p.new_id(),
            pool,
            (on, 0.3 * blen, 0.4 * blen, 0.3 * blen, rng.uniform(0.3, 1.0, n)),
        )
    )
    p.label("twitches", a, b, f"{note}, {n} twitches")


# --------------------------------------------------------------------------- randomised families


def add_gait_tone(p, rng, strides, period, burst_rms):
    """Background tone under a walking bout: the envelope stays above the floor
    between the steps' bursts (at most half the bursts' RMS)."""
    rms = min(log_uniform(rng, *p.spec.gait_tone_uv), 0.5 * burst_rms)
    t0, t1 = float(strides[0]), float(strides[-1] + period)
    ramp = min(1.0, 0.25 * (t1 - t0))
    pool = p.pool(rng, 20, 6.0, 14.0, (0.1, 0.2), 0.3, sigma_ms=(1.3, 2.5))
    pool.calibrate(rms, 0.45)
    p.add(
        Muscle(
            p.seed,
            p.new_id(),
            pool,
            ([t0], [ramp], [t1 - t0 - 2 * ramp], [ramp], [0.45]),
            p.fluct(rng, 0.25),
        )
    )


def _sway(p, rng, t0, dur, acc_g):
    """Slow postural sway of the shank: wide, low-frequency acceleration wavelets."""
    k = max(1, int(dur / 8.0))
    tc = t0 + np.sort(rng.uniform(0.05, 0.95, k)) * dur
    w = rng.uniform(2.0, 6.0, k)
    direction = rng.standard_normal((k, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    amp = np.array([log_uniform(rng, *acc_g) for _ in range(k)])
    p.add(
        Motion(
            acc=Wavelets(
                tc, w, rng.uniform(0.1, 0.4, k), rng.uniform(0, TWO_PI, k), direction * amp[:, None]
            )
        )
    )


def _get_up(p, rng, t, getup):
    p.postures.add(PostureChange(t + 0.5, getup - 1.0, "upright"))
    p.movement(rng, t, getup, (0.1, 0.5), (50, 500), n=(2, 4))


def _lie_down(p, rng, t, liedown):
    p.postures.add(PostureChange(t + 0.5, liedown - 1.0, "lying"))
    p.movement(rng, t, liedown, (0.1, 0.5), (50, 500), n=(2, 4))


def plan_stand_trip(p, rng, occ):
    """A bathroom trip of only a few steps (3-10 each way), then standing still for
    1-6 min with steady postural tone (5-40 uV RMS) and slow sway."""
    sp, T = p.spec, p.duration_s
    getup, liedown = float(rng.uniform(4, 8)), float(rng.uniform(4, 8))
    period = float(rng.uniform(0.95, 1.3))
    lo, hi = sp.stand_trip_steps
    steps_out, steps_back = (int(rng.integers(lo, hi + 1)) for _ in range(2))
    out_s, back_s = steps_out * period + 1.0, steps_back * period + 1.0
    stand_s = min(float(rng.uniform(*sp.stand_s)), max(40.0, T / 6))

    def stand_for(f):
        return max(30.0, stand_s * f)

    t, f = p.fit(rng, occ, lambda f: getup + out_s + stand_for(f) + back_s + liedown)
    if t is None:
        return
    stand_s = stand_for(f)
    burst_rms = log_uniform(rng, 50, 250)
    burst_len = float(rng.uniform(0.25, 0.45))
    impact_g = float(rng.uniform(0.5, 2.0))
    swing = math.radians(rng.uniform(15, 30))
    _get_up(p, rng, t, getup)
    t_out = t + getup
    walk_bout(p, rng, t_out, out_s, period, burst_rms, burst_len, impact_g, swing)
    p.label("walk", t, t_out + out_s, f"getting up and taking {steps_out} steps")
    t_stand = t_out + out_s
    n_units = int(rng.integers(12, 21))
    pool = p.pool(rng, n_units, 6.0, 12.0, (0.1, 0.2), 0.3, sigma_ms=(1.3, 2.5))
    stand_rms = log_uniform(rng, *sp.stand_tone_uv)
    pool.calibrate(stand_rms, 0.45)
    p.add(
        Muscle(
            p.seed,
            p.new_id(),
            pool,
            ([t_stand], [2.0], [stand_s - 4.0], [2.0], [0.45]),
            p.fluct(rng, float(rng.uniform(0.08, 0.2))),
        )
    )
    _sway(p, rng, t_stand, stand_s, (0.005, 0.04))
    p.label(
        "stand",
        t_stand,
        t_stand + stand_s,
        f"standing still, postural tone {stand_rms:.0f} uV",
    )
    t_back = t_stand + stand_s
    walk_bout(p, rng, t_back, back_s, period, burst_rms, burst_len, impact_g, swing)
    t_lie = t_back + back_s
    _lie_down(p, rng, t_lie, liedown)
    p.label("walk", t_back, t_lie + liedown, f"{steps_back} steps back to bed and lying down")


def plan_sit(p, rng, occ):
    """Sitting on the edge of the bed for 1-5 min: shank vertical, calf relaxed."""
    sp, T = p.spec, p.duration_s
    getup, liedown = float(rng.uniform(3, 6)), float(rng.uniform(3, 6))
    sit_s = min(float(rng.uniform(*sp.sit_s)), max(40.0, T / 6))

    def sit_for(f):
        return max(30.0, sit_s * f)

    t, f = p.fit(rng, occ, lambda f: getup + sit_for(f) + liedown)
    if t is None:
        return
    sit_s = sit_for(f)
    p.postures.add(PostureChange(t + 0.5, getup - 1.0, "upright"))
    p.movement(rng, t, getup, (0.05, 0.4), (30, 400), n=(2, 4))
    pool = p.pool(rng, 20, 8.0, 15.0, (0.1, 0.25), 0.6)
    pool.calibrate(log_uniform(rng, 10, 60), 1.0)  # a little effort while sitting up
    p.add(Muscle(p.seed, p.new_id(), pool, ([t + 0.3 * getup], [0.4], [0.5], [0.6], [0.8])))
    _sway(p, rng, t + getup, sit_s, (0.003, 0.02))
    t_lie = t + getup + sit_s
    _lie_down(p, rng, t_lie, liedown)
    p.label("sit", t, t_lie + liedown, f"sitting on the edge of the bed, {sit_s:.0f} s")


def leg_movement_bursts(rng):
    """1-3 bursts of 0.5-5 s, 1-15 s apart (too few to be a periodic series):
    ``(onsets relative to the first, durations)``."""
    nb = int(rng.integers(1, 4))
    blen = np.array([log_uniform(rng, 0.5, 5.0) for _ in range(nb)])
    gaps = rng.uniform(1.0, 15.0, nb)
    rel_on = np.concatenate([[0.0], np.cumsum(blen[:-1] + gaps[:-1])])
    return rel_on, blen


def add_leg_movements(p, rng, t0, rel_on, blen, note):
    """Render and label isolated leg movements starting at ``t0``."""
    nb = len(blen)
    on = t0 + np.asarray(rel_on, float)
    rms = log_uniform(rng, 20, 300)
    add_bursts(p, rng, on, blen, rms, rise_frac=(0.1, 0.3), rate_hz=(18, 28), gain=(0.7, 1.2))
    for i in range(nb):
        p.movement(rng, on[i], blen[i], (0.02, 0.3), (10, 300), n=(1, 3))
    p.label(
        "leg_movement",
        on[0],
        on[-1] + blen[-1],
        f"{nb} burst{'s' if nb > 1 else ''}, rms_uv={rms:.0f}, {note}",
    )


def plan_leg_movements(p, rng, occ):
    """Standalone isolated leg movements (1-3 bursts) somewhere in the night."""
    rel_on, blen = leg_movement_bursts(rng)
    t = occ.place(rng, float(rel_on[-1] + blen[-1]))
    if t is None:
        return
    add_leg_movements(p, rng, t, rel_on, blen, note="isolated")
