"""Planning a cramp: the sustained contraction, what comes before it and what
the sleeper does during it.

A cramp's label is exact: ``onset_s`` is when the drive starts rising,
``offset_s`` when it has faded to nothing.  Twitches before it, isolated leg
movements before it and movements during it have labels (or notes) of their
own.  The cramp's main draws come from the night's main stream in a fixed
order; the randomised families' options (weak, short, leg movements before,
movement at onset) draw from the stream ``(seed, 51, cramp index)``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ._common import log_uniform, rng_for
from .behaviour import add_leg_movements, leg_movement_bursts, plan_twitches
from .events import Muscle
from .posture import PostureChange

__all__ = ["plan_cramp"]

log = logging.getLogger(__name__)


def plan_cramp(p, rng, occ, index=0):
    """Plan cramp number ``index`` of the night (``p`` is the :class:`~.planner.Planner`)."""
    sp, T = p.spec, p.duration_s
    side = rng_for(p.seed, 51, index)
    one = sp.every_kind
    lo, hi = sp.cramp_duration_s
    hi = max(lo, min(hi, T / 8))
    dur = float(np.clip(rng.lognormal(math.log(sp.cramp_median_duration_s), 0.75), lo, hi))
    twitch_s = float(rng.uniform(20, 90)) * min(1.0, T / 3600) if rng.random() < 0.6 else 0.0
    twitch_s = max(twitch_s, 10.0) if twitch_s else 0.0
    gap_s = float(rng.uniform(0, 5)) if twitch_s else 0.0

    short = side.random() < sp.short_cramp_probability
    if short:
        dur = float(min(max(side.uniform(*sp.short_cramp_s), 1.0), hi))
        lo = min(lo, dur)
    weak = side.random() < sp.weak_cramp_probability
    effort = float(side.uniform(*sp.weak_cramp_effort))
    onset_move = side.random() < sp.cramp_onset_movement_probability
    # isolated leg movements 5-60 s before the onset (their last burst ends then)
    pre = None
    p_leg = sp.leg_movement_before_cramp_probability
    if p_leg > 0 and (side.random() < p_leg or (one and index == 0)):
        rel_on, blen = leg_movement_bursts(side)
        lead_s = float(side.uniform(5.0, 60.0))
        pre = (rel_on, blen, lead_s)
    pre_s = float(pre[2] + np.max(pre[0] + pre[1])) if pre else 0.0

    def sizes(f):
        return max(lo, dur * f), (max(10.0, twitch_s * f) if twitch_s else 0.0)

    def length(f):
        if pre_s <= 0.0:
            return sum(sizes(f)) + gap_s + 10.0
        d, tw = sizes(f)
        return d + max(tw + gap_s, pre_s) + 10.0

    start, f = p.fit(rng, occ, length)
    if start is None:
        log.warning("no room for a %.0f s cramp in a %.2f h night", dur, sp.hours)
        return
    dur, twitch_s = sizes(f)
    if pre_s > twitch_s + gap_s:
        onset = start + pre_s
        tw_span = (onset - gap_s - twitch_s, onset - gap_s)
    else:
        onset = start + twitch_s + gap_s
        tw_span = (start, start + twitch_s)
    p.cramp_spans.append((onset - 5.0, onset + dur + 5.0))
    if twitch_s:
        plan_twitches(p, rng, None, tw_span, note="before cramp")
    rms = log_uniform(rng, *sp.cramp_rms_uv)
    if weak:
        rms = effort * p.max_effort_rms_uv
    slow = not rng.random() < 1.0 - sp.cramp_slow_rise_probability
    rise = float(rng.uniform(*sp.cramp_slow_rise_s) if slow else rng.uniform(0.5, 3.0))
    end_kind = "fade" if rng.random() < 0.55 else "stretch"
    fall = float(rng.uniform(2.0, 20.0) if end_kind == "fade" else rng.uniform(0.3, 1.0))
    if rise + fall > 0.6 * dur:
        f = 0.6 * dur / (rise + fall)
        rise, fall = rise * f, fall * f
    plat = dur - rise - fall
    pool = p.pool(
        rng, int(rng.integers(60, 121)), 6.0, float(rng.uniform(18, 25)), (0.15, 0.35), 0.6
    )
    pool.calibrate(rms, 1.0)
    fluct = p.fluct(rng, float(rng.uniform(0.15, 0.4)))
    trend = (onset + rise, max(plat, 1.0), float(rng.uniform(-0.4, 0.2)))
    p.add(Muscle(p.seed, p.new_id(), pool, ([onset], [rise], [plat], [fall], [1.0]), fluct, trend))
    notes = [f"rms_uv={rms:.0f}", f"rise_s={rise:.1f}", f"end={end_kind}"]
    if weak:
        notes.append(f"weak ({effort:.0%} of maximal {p.max_effort_rms_uv:.0f} uV)")
    if short:
        notes.append("short")
    if rng.random() < 0.3:  # a flinch at onset
        p.movement(rng, onset, 1.0, (0.02, 0.08), (10, 80), n=(1, 2))
    if dur > 30 and rng.random() < 0.5:  # wakes and moves the foot part-way
        t_move = onset + min(float(rng.uniform(20, 60)), 0.8 * dur)
        mdur = float(rng.uniform(2, 5))
        p.movement(rng, t_move, mdur, (0.05, 0.4), (30, 600))
        if rng.random() < 0.5:
            p.postures.add(
                PostureChange(
                    t_move + 0.3 * mdur, 0.5 * mdur, "tilt", math.radians(rng.uniform(10, 30))
                )
            )
        notes.append(f"moved_at_s={t_move - onset:.0f}")
    if end_kind == "stretch":
        p.movement(
            rng, onset + dur - fall - 0.5, float(rng.uniform(1.5, 3.0)), (0.1, 0.5), (50, 800)
        )
    if onset_move:  # grabbing the foot or kicking, within the first seconds
        t_move = onset + float(side.uniform(0.0, min(3.0, 0.3 * dur)))
        mdur = float(side.uniform(1.0, 4.0))
        p.movement(side, t_move, mdur, (0.1, 1.0), (50, 1000), n=(2, 5))
        notes.append("movement_at_onset")
    if pre:
        rel_on, blen, lead_s = pre
        t0 = onset - pre_s
        add_leg_movements(p, side, t0, rel_on, blen, note=f"{lead_s:.0f} s before a cramp")
        notes.append(f"leg_movement_before_s={lead_s:.0f}")
    p.label("cramp", onset, onset + dur, "; ".join(notes))
