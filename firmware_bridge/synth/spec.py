"""What night to make: :class:`NightSpec`, one frozen dataclass of parameters.

Its defaults give today's tidy night (the one every test and the sample night
were made from).  The fields after ``acc_range_g`` switch on the real-world
shifts of the domain-randomised families (:mod:`.randomize`); at their
defaults they are off and draw nothing, so a default spec renders exactly as
before they existed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

__all__ = ["NightSpec", "IMU_FAULT_MODES"]

IMU_FAULT_MODES = ("zeros", "stuck", "saturated", "silent")
"""How an accelerometer stretch fails: all zeros, stuck at one value, at +-range,
or no samples at all (NaN in ``render_acc``)."""


@dataclass(frozen=True)
class NightSpec:
    """Parameters of a synthetic night.  Defaults give a realistic, tidy 8 h night.

    Ranges ``(lo, hi)`` are drawn from per night or per event; counts "per 8 h"
    scale with ``hours``.  See :mod:`crampwatch.firmware_bridge.synth` for what
    each kind looks like and :func:`~.randomize.randomized_spec` for the
    families that widen them.
    """

    hours: float = 8.0
    """Length of the night, hours."""
    seed: int = 0
    """Seed: the same spec renders the same night, sample for sample."""
    emg_fs_hz: float = 1000.0
    """EMG sample rate, Hz (200-4000)."""
    acc_fs_hz: float = 100.0
    """Accelerometer sample rate, Hz (20-200)."""
    mains_hz: float = 50.0
    """Mains frequency of the interference, Hz (50 or 60)."""
    start_utc: datetime | None = None
    """Wall-clock time of the first sample (UTC); None: a night start between
    21:00 and 00:30 UTC on a day of 2024 chosen by the seed."""
    n_cramps: int | None = None
    """Number of cramps; None: random 1-4 (at least 1)."""
    cramp_rms_uv: tuple[float, float] = (30.0, 400.0)
    """Range of a cramp's RMS at full drive, uV (log-uniform)."""
    cramp_duration_s: tuple[float, float] = (10.0, 600.0)
    """Range of a cramp's duration, s (log-normal, clipped)."""
    cramp_median_duration_s: float = 60.0
    """Median cramp duration, s (log-normal sigma 0.75: mostly 20 s - 3 min)."""
    floor_rms_uv: float | None = None
    """Noise floor in 20-450 Hz, uV RMS; None: log-uniform in floor_rms_uv_range."""
    floor_rms_uv_range: tuple[float, float] = (1.5, 5.0)
    """Range of the noise floor when floor_rms_uv is None, uV RMS."""
    turns_per_hour: tuple[float, float] = (1.5, 4.0)
    """Rate of turning over in bed, per hour."""
    plm_series_per_8h: tuple[float, float] = (1.0, 3.0)
    """Periodic limb movement series per 8 h."""
    walks_per_8h: tuple[float, float] = (1.0, 2.0)
    """Walks to the bathroom (and back) per 8 h."""
    stretches_per_hour: tuple[float, float] = (0.3, 1.0)
    """Voluntary stretches (pointing the toes) per hour."""
    resting_tone_per_8h: tuple[float, float] = (1.0, 4.0)
    """Episodes of low-level resting tone per 8 h."""
    twitch_episodes_per_8h: tuple[float, float] = (1.0, 3.0)
    """Standalone twitch episodes per 8 h (besides the ones before cramps)."""
    pops_per_hour: tuple[float, float] = (0.5, 2.0)
    """Electrode pops per hour."""
    lead_offs_per_8h: tuple[float, float] = (1.0, 2.0)
    """Lead-off episodes per 8 h."""
    mains_episodes_per_8h: tuple[float, float] = (1.0, 4.0)
    """Episodes of mains interference per 8 h."""
    mains_continuous_probability: float = 0.3
    """Probability that the night also has continuous mains interference."""
    ecg_episodes_per_8h: tuple[float, float] = (1.0, 3.0)
    """Episodes of ECG crosstalk per 8 h."""
    drift_episodes_per_8h: tuple[float, float] = (1.0, 4.0)
    """Episodes of slow electrode drift per 8 h."""
    every_kind: bool = True
    """Make every label kind the spec can produce appear at least once."""
    acc_noise_g: tuple[float, float] = (0.002, 0.005)
    """Range of the accelerometer white noise per axis, g RMS."""
    emg_range_uv: float = 5000.0
    """Amplifier input range: EMG is clipped to +-this, uV."""
    acc_range_g: float = 4.0
    """Accelerometer range: clipped to +-this, g."""

    # ---------------------------------------------------------------- board
    adc_step_uv: float = 0.0
    """ADC quantisation step of the EMG, uV (the EMG is rounded to it); 0: none."""
    settling_factor: float = 1.0
    """Electrode settling: at the start the floor is this many times its later
    level, decaying (exponentially, 95 % gone) over ``settling_s``; 1: none."""
    settling_s: float = 300.0
    """Time over which the settling excess decays, s."""
    floor_step_probability: float = 0.0
    """Probability that the floor steps (contact pressure, a shifted electrode) at
    a turn, and stays at its new level."""
    floor_step_factor: tuple[float, float] = (0.5, 2.0)
    """Range of a floor step's factor (log-uniform)."""

    # ---------------------------------------------------------------- behaviour
    stand_trips_per_8h: tuple[float, float] = (0.0, 0.0)
    """Bathroom trips of only a few steps, then standing still, per 8 h."""
    stand_trip_steps: tuple[int, int] = (3, 10)
    """Number of steps each way on such a trip."""
    stand_s: tuple[float, float] = (60.0, 360.0)
    """How long the sleeper stands still there, s."""
    stand_tone_uv: tuple[float, float] = (5.0, 40.0)
    """Soleus/gastrocnemius postural tone while standing, uV RMS (log-uniform)."""
    sits_per_8h: tuple[float, float] = (0.0, 0.0)
    """Sitting on the edge of the bed (shank vertical, calf relaxed), per 8 h."""
    sit_s: tuple[float, float] = (60.0, 300.0)
    """How long the sleeper sits there, s."""
    gait_tone_probability: float = 0.0
    """Probability that a walking bout has background tone between its bursts
    (the envelope does not return to the floor between steps)."""
    gait_tone_uv: tuple[float, float] = (5.0, 40.0)
    """That background tone, uV RMS (log-uniform, at most half the bursts' RMS)."""
    leg_movement_before_cramp_probability: float = 0.0
    """Probability that a cramp is preceded, 5-60 s before, by isolated leg
    movements (1-3 bursts of 0.5-5 s: not a periodic series)."""
    leg_movements_per_8h: tuple[float, float] = (0.0, 0.0)
    """Standalone isolated leg movements (1-3 bursts) per 8 h."""
    cramp_onset_movement_probability: float = 0.0
    """Probability that the sleeper grabs the foot or kicks at a cramp's onset
    (1-4 s of 0.1-1 g and motion artifact within its first seconds)."""

    # ---------------------------------------------------------------- faults
    loose_electrodes_per_8h: tuple[float, float] = (0.0, 0.0)
    """Loose-electrode stretches per 8 h: intermittent broadband noise (white up
    to Nyquist), pops and drift; the muscle signal partially attenuated."""
    loose_electrode_s: tuple[float, float] = (10.0, 600.0)
    """Length of a loose-electrode stretch, s (log-uniform)."""
    loose_electrode_uv: tuple[float, float] = (10.0, 300.0)
    """Its broadband noise, uV RMS (log-uniform)."""
    imu_faults_per_8h: tuple[float, float] = (0.0, 0.0)
    """Accelerometer failures per 8 h (one of :data:`IMU_FAULT_MODES` each)."""
    imu_fault_s: tuple[float, float] = (10.0, 1800.0)
    """Length of an accelerometer failure, s (log-uniform)."""
    has_accelerometer: bool = True
    """False: the night has no accelerometer at all (``render_acc`` gives NaN)."""

    # ---------------------------------------------------------------- strength
    weak_cramp_probability: float = 0.0
    """Probability that a cramp is weak: ``weak_cramp_effort`` of the sleeper's
    maximal-effort RMS."""
    weak_cramp_effort: tuple[float, float] = (0.08, 0.15)
    """A weak cramp's fraction of maximal effort."""
    max_effort_rms_uv: tuple[float, float] = (200.0, 1000.0)
    """The sleeper's maximal-effort calf RMS, uV (log-uniform per night)."""
    short_cramp_probability: float = 0.0
    """Probability that a cramp lasts only ``short_cramp_s``."""
    short_cramp_s: tuple[float, float] = (10.0, 20.0)
    """A short cramp's duration, s (uniform)."""
    cramp_slow_rise_probability: float = 0.25
    """Probability that a cramp builds slowly (rise in ``cramp_slow_rise_s``)
    rather than in 0.5-3 s."""
    cramp_slow_rise_s: tuple[float, float] = (3.0, 15.0)
    """A slowly building cramp's rise time, s (uniform)."""

    family: str = ""
    """Which randomised family drew this spec ("" for a hand-made one); informative only."""

    def __post_init__(self):
        if not self.hours > 0:
            raise ValueError(f"hours must be > 0, got {self.hours}")
        if not 100.0 <= self.emg_fs_hz <= 20000.0:
            raise ValueError(f"emg_fs_hz must be within 100-20000 Hz, got {self.emg_fs_hz}")
        if not 10.0 <= self.acc_fs_hz <= 2000.0:
            raise ValueError(f"acc_fs_hz must be within 10-2000 Hz, got {self.acc_fs_hz}")
        if not 40.0 <= self.mains_hz <= 70.0:
            raise ValueError(f"mains_hz must be 50 or 60, got {self.mains_hz}")
        if self.n_cramps is not None and self.n_cramps < 0:
            raise ValueError(f"n_cramps must be >= 0, got {self.n_cramps}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.start_utc is not None and self.start_utc.tzinfo is None:
            raise ValueError("start_utc must be timezone-aware (UTC)")
        if self.adc_step_uv < 0:
            raise ValueError(f"adc_step_uv must be >= 0, got {self.adc_step_uv}")
        if self.settling_factor < 1.0 or self.settling_s <= 0:
            raise ValueError(
                f"settling_factor must be >= 1 and settling_s > 0, got "
                f"{self.settling_factor}, {self.settling_s}"
            )
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_probability") and not 0.0 <= v <= 1.0:
                raise ValueError(f"{f.name} must be within 0-1, got {v}")
            if isinstance(v, tuple) and not (len(v) == 2 and 0 <= v[0] <= v[1]):
                raise ValueError(f"{f.name} must be a range (lo, hi) with 0 <= lo <= hi, got {v}")
