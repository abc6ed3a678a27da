"""Domain-randomised nights: :func:`randomized_spec` draws a :class:`~.spec.NightSpec`
of one family, with every parameter from ranges wider than the detector assumes.

Detection tuned on today's tidy nights scored F1 0.98 on them and 0.45 on nights
with ordinary real-world shifts they never drew.  These families draw those
shifts, each on top of the tidy defaults, so detection can be tuned on some
seeds and families and reported on held-out ones (leave one family out).

Families (:data:`FAMILIES`)
---------------------------
tidy
    Today's defaults (``NightSpec(seed=seed)``).
board
    Noise floor log-uniform 0.5-30 uV RMS; electrode settling in 70 % of nights
    (the floor 2-6x its later level at the start, decaying over 2-10 min);
    floor steps x0.5-x2 (log-uniform) that persist, at 10-40 % of turns;
    ADC quantisation step log-uniform 0.1-5 uV; EMG rate from
    {200, 250, 500, 1000, 2000, 4000} Hz; accelerometer from
    {20, 25, 50, 52, 100, 104, 200} Hz; mains 50 or 60 Hz.
behaviour
    1-3 bathroom trips per 8 h of only 3-10 steps each way, then standing still
    for 1-6 min (postural tone 5-40 uV RMS, steady, with slow sway); half of
    the walking bouts with background tone (5-40 uV, at most half the bursts)
    between the bursts; 1-3 sits per 8 h on the edge of the bed (shank
    vertical, calf relaxed) for 1-5 min; 1-4 isolated leg movements per 8 h
    (1-3 bursts of 0.5-5 s, 1-15 s apart) and, before half of the cramps,
    such movements ending 5-60 s before the onset; at half of the cramps'
    onsets the sleeper grabs the foot or kicks (1-4 s of 0.1-1 g and motion
    artifact of 50-1000 uV within the first 3 s).
faults
    1-4 loose-electrode stretches per 8 h (10 s - 10 min, log-uniform;
    intermittent white noise up to Nyquist of 10-300 uV RMS, bursts of 0.3-20 s
    at a duty of 30-100 %, drift of 100-2000 uV, 2-7 pops; the muscle signal
    attenuated by 20-80 %; never during a cramp); 1-4 accelerometer failures
    per 8 h (10 s - 30 min: zeros, stuck, saturated at +-range, or silent =
    NaN); in 25 % of nights no accelerometer at all.
strength
    Cramps of 30-1000 uV RMS; 35 % weak (8-15 % of the sleeper's maximal
    effort, itself log-uniform 200-1000 uV: about 16-150 uV); 30 % short
    (10-20 s); half build slowly (rise 3-40 s instead of 0.5-3 s).
shifted
    All of the above at once.

Examples
--------
>>> spec = randomized_spec(7, "board", hours=0.5)
>>> spec.family, spec.seed
('board', 7)
>>> randomized_spec(7, "board", hours=0.5) == spec      # deterministic per (seed, family)
True
>>> randomized_spec(7, "tidy") == NightSpec(seed=7, family="tidy")
True
"""

from __future__ import annotations

from ._common import log_uniform, rng_for
from .spec import NightSpec

__all__ = ["FAMILIES", "EMG_RATES_HZ", "ACC_RATES_HZ", "randomized_spec", "describe_spec"]

FAMILIES = ("tidy", "board", "behaviour", "faults", "strength", "shifted")
"""The randomised families, in a fixed order (their index keys the random stream)."""

EMG_RATES_HZ = (200.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0)
"""EMG sample rates the board family draws from."""

ACC_RATES_HZ = (20.0, 25.0, 50.0, 52.0, 100.0, 104.0, 200.0)
"""Accelerometer sample rates the board family draws from."""


def _board(rng, kw):
    kw["floor_rms_uv"] = log_uniform(rng, 0.5, 30.0)
    if rng.random() < 0.7:
        kw["settling_factor"] = float(rng.uniform(2.0, 6.0))
        kw["settling_s"] = float(rng.uniform(120.0, 600.0))
    kw["floor_step_probability"] = float(rng.uniform(0.1, 0.4))
    kw["floor_step_factor"] = (0.5, 2.0)
    kw["adc_step_uv"] = log_uniform(rng, 0.1, 5.0)
    kw["emg_fs_hz"] = float(rng.choice(EMG_RATES_HZ))
    kw["acc_fs_hz"] = float(rng.choice(ACC_RATES_HZ))
    kw["mains_hz"] = float(rng.choice([50.0, 60.0]))


def _behaviour(rng, kw):
    kw["stand_trips_per_8h"] = (1.0, 3.0)
    kw["stand_trip_steps"] = (3, 10)
    kw["stand_s"] = (60.0, 360.0)
    kw["stand_tone_uv"] = (5.0, 40.0)
    kw["gait_tone_probability"] = 0.5
    kw["gait_tone_uv"] = (5.0, 40.0)
    kw["sits_per_8h"] = (1.0, 3.0)
    kw["sit_s"] = (60.0, 300.0)
    kw["leg_movements_per_8h"] = (1.0, 4.0)
    kw["leg_movement_before_cramp_probability"] = 0.5
    kw["cramp_onset_movement_probability"] = 0.5


def _faults(rng, kw):
    kw["loose_electrodes_per_8h"] = (1.0, 4.0)
    kw["loose_electrode_s"] = (10.0, 600.0)
    kw["loose_electrode_uv"] = (10.0, 300.0)
    kw["imu_faults_per_8h"] = (1.0, 4.0)
    kw["imu_fault_s"] = (10.0, 1800.0)
    kw["has_accelerometer"] = bool(rng.random() >= 0.25)


def _strength(rng, kw):
    kw["cramp_rms_uv"] = (30.0, 1000.0)
    kw["weak_cramp_probability"] = 0.35
    kw["weak_cramp_effort"] = (0.08, 0.15)
    kw["max_effort_rms_uv"] = (200.0, 1000.0)
    kw["short_cramp_probability"] = 0.3
    kw["short_cramp_s"] = (10.0, 20.0)
    kw["cramp_slow_rise_probability"] = 0.5
    kw["cramp_slow_rise_s"] = (3.0, 40.0)


_PARTS = {
    "tidy": (),
    "board": (_board,),
    "behaviour": (_behaviour,),
    "faults": (_faults,),
    "strength": (_strength,),
    "shifted": (_board, _behaviour, _faults, _strength),
}


def randomized_spec(
    seed: int, family: str = "shifted", *, hours: float = 8.0, **changes
) -> NightSpec:
    """The night of ``family`` drawn for ``seed`` (deterministic per (seed, family)).

    Parameters
    ----------
    seed : int
        Seed of the night (also the seed of the drawn spec).
    family : str
        One of :data:`FAMILIES`.
    hours : float
        Length of the night.
    **changes
        Any other :class:`NightSpec` field, applied last (e.g. ``n_cramps=2``).

    Raises
    ------
    ValueError
        Unknown family.
    """
    if family not in _PARTS:
        raise ValueError(f"unknown family {family!r} (expected one of {', '.join(FAMILIES)})")
    rng = rng_for(seed, 900, FAMILIES.index(family))
    kw: dict = {}
    for part in _PARTS[family]:
        part(rng, kw)
    kw.update(changes)
    return NightSpec(hours=hours, seed=seed, family=family, **kw)


def describe_spec(spec: NightSpec, floor_rms_uv: float | None = None) -> str:
    """One line naming a spec's board-level draws: family, floor, rates, mains, ADC
    step, settling, no accelerometer (``floor_rms_uv``: the night's, if drawn)."""
    floor = spec.floor_rms_uv if spec.floor_rms_uv is not None else floor_rms_uv
    parts = [f"family {spec.family or 'custom'}"]
    if floor is not None:
        parts.append(f"floor {floor:.2g} uV")
    parts.append(f"EMG {spec.emg_fs_hz:g} Hz")
    parts.append(f"acc {spec.acc_fs_hz:g} Hz" if spec.has_accelerometer else "no accelerometer")
    parts.append(f"mains {spec.mains_hz:g} Hz")
    if spec.adc_step_uv > 0:
        parts.append(f"ADC step {spec.adc_step_uv:.2g} uV")
    if spec.settling_factor > 1.0:
        parts.append(f"settling x{spec.settling_factor:.1f} over {spec.settling_s:.0f} s")
    return ", ".join(parts)
