"""A physiologically grounded synthetic night of calf EMG and leg acceleration.

:class:`SyntheticNight` plans every event of a night up front (cheap) and
renders the surface EMG of the calf (microvolts) and a 3-axis accelerometer
strapped to the shank (g) lazily, block by block, with flat memory.  Rendering
is deterministic and block-invariant: the signal is made per fixed 10 s segment
as a pure function of ``(seed, segment index)`` and of the planned events, so
``render(a, n1)`` followed by ``render(a + n1, n2)`` equals ``render(a, n1 + n2)``
exactly, whatever the split.

What a night holds (every kind is labelled, see :mod:`.labels`)
------------------------------------------------------------------
cramp
    Involuntary, strong, sustained contraction of gastrocnemius/soleus: drive
    rises in 0.5-3 s (a quarter of cramps build over 3-15 s), stays high with
    slow fluctuation (3-5 sinusoids of 0.05-1.5 Hz, depth 15-40 %, and a trend
    of -40..+20 % over the cramp) for 10 s to 10 min (log-normal, median 60 s,
    so mostly 20 s - 3 min), then fades over 2-20 s or stops in 0.3-1 s with a
    stretch movement of the foot.  RMS at full drive log-uniform 30-400 uV.
    The leg is still; in half of the cramps longer than 30 s the sleeper wakes
    20-60 s in and moves the foot (acceleration 0.05-0.4 g, motion artifact).
    60 % are preceded by 20-90 s of scattered twitches (own label).
turn
    Turning over: 1-4 s, 1-3 EMG bursts of 20-300 uV RMS, 2-4 low-frequency
    motion artifacts of 100-1500 uV on the EMG, 0.1-0.6 g of movement and a
    new lying posture (supine, prone, left or right side, each with a random
    tilt), i.e. a change of the gravity components.  1.5-4 per hour.
plm
    Periodic limb movement series (AASM): 4-40 bursts of 0.5-5 s (log-uniform,
    within the AASM 0.5-10 s), onset-to-onset intervals 15-40 s per series
    with 20 % jitter, clipped to 5-90 s; 10-150 uV RMS; small leg movement
    0.01-0.08 g.  1-3 series per 8 h.
walk
    Walking to the bathroom and back: getting up (lying -> upright: gravity
    moves onto the shank's long axis, x), a bout of 30-150 s of steps (stride
    0.95-1.3 s, 3 % jitter) each with one calf burst of 0.25-0.45 s at 50-250
    uV RMS at push-off, heel-strike impacts of 0.5-2 g and +-15-30 deg shank
    pitch swing; 1-4 min of standing (soleus tone 5-25 uV RMS, upright); the
    bout back; lying down.  Three labels per trip.  1-2 trips per 8 h.
stretch
    Voluntary stretch / pointing the toes: 2-6 s contraction of 100-500 uV RMS
    with 0.05-0.3 g of movement.  0.3-1 per hour.
resting_tone
    2-20 min of low-level tone: a few low-threshold units at 6-10 Hz adding
    1-6 uV RMS.  1-4 per 8 h.
twitches
    20-90 s of scattered brief twitches (30-250 ms, 1-3 units, 15-80 uV).
    Before 60 % of cramps, plus 1-3 standalone episodes per 8 h.
pop
    Electrode pop: a step of +-100-3000 uV decaying with tau 0.05-1.5 s.
    0.5-2 per hour.
lead_off
    A lead falls off for 10-60 s: mains hum of 300-2000 uV (with harmonics),
    drift of 500-3000 uV, the muscle signal lost, pops at both ends.  Never
    during a cramp.  1-2 per 8 h.
mains
    Mains interference at ``mains_hz`` (+2nd, 3rd, 5th harmonics) of 10-80 uV
    for 1-30 min with 1-10 s ramps, 1-4 episodes per 8 h; in 30 % of nights
    also continuous at 3-30 uV (one label covering the night).
ecg
    ECG crosstalk: QRS complexes of 5-40 uV at 48-72 beats/min with sinus
    arrhythmia, for 5-60 min.  1-3 episodes per 8 h.
drift
    Slow electrode drift: 50-500 uV of 0.01-0.2 Hz wander over 1-15 min.
    1-4 per 8 h.
background
    Amplifier/skin noise of 1.5-5 uV RMS (log-uniform per night) in 20-450 Hz
    (FIR, 129 taps at 1 kHz), level varying +-10-25 % over hours; a lying posture;
    accelerometer white noise of 2-5 mg per axis and a per-axis offset of up
    to 20 mg.  The EMG clips at +-``emg_range_uv`` (amplifier saturation),
    the accelerometer at +-``acc_range_g``.

Kinds only the randomised families make (:mod:`.randomize`, where their
ranges are listed): ``stand`` (standing still after a few steps, postural
tone), ``sit`` (on the edge of the bed), ``leg_movement`` (1-3 isolated
bursts), ``loose_electrode`` (intermittent broadband noise, the muscle signal
attenuated), ``imu_fault`` (accelerometer zeros, stuck, saturated, or silent:
NaN in ``render_acc``), ``settling`` (the floor's first minutes) and
``floor_step`` (the floor changes level at a turn and stays there).  A cramp's
note says ``weak``, ``short``, ``movement_at_onset`` or
``leg_movement_before_s=...`` where those apply.

Counts given "per 8 h" scale with the night's length; with
``NightSpec.every_kind`` (default) every kind appears at least once.
Durations of long events are capped by the night's length (a cramp at most
1/8 of it) so that short nights still hold every kind.

How muscle activity is made, and why
------------------------------------
All muscle activity (cramps and every behavioural distractor) comes from one
motor-unit pool model, so that the detector cannot tell a cramp by *how* it
was synthesised, only by what it does (sustained, still, long).  A pool has
N units (cramp 60-120) with recruitment thresholds rising quadratically with
size (Henneman), MUAP amplitudes spread 30:1 (log-normal jitter), firing rates
rising from 6 Hz at recruitment to a pool maximum (cramp 18-25 Hz, the 6-25 Hz
reported for cramp discharges) and renewal firing with gamma intervals of CV
0.15-0.35 (irregular, as reported for cramps) in operational time, i.e. a
time-varying rate follows the drive envelope.  MUAP templates are first and
second Hermite-Rodriguez functions (sigma 1.15-2.3 ms, 6 classes per pool, all
widths of a night scaled by a "tissue factor" 0.85-1.2), whose spectra peak at
1 / (2 pi sigma) = 58-160 Hz: a cramp's EMG then has its spectral peak at
50-130 Hz and a mean frequency of 70-140 Hz (median 96; measured over 32
cramps), as the real holds below.  MUAP trains rather than filtered noise
because a cramp's EMG is a superposition of discharging units: its amplitude
statistics, the recruitment at onset and the firing-rate structure are those
of real EMG, and shaped noise would make the spectrum the only realistic
property.  Twitches are the same model with 3-6 large units.

Grounding in the shared real recordings (/work/shared/data, 20-450 Hz band)
------------------------------------------------------------------------
- santuz_walking ID0012 (treadmill, 1 kHz): stride 1.04 s; calf bursts above
  3x the baseline envelope last 0.42-0.58 s (GL, SO), GM 0.15-0.47 s; 100 ms
  RMS envelope peaks GM 171-235, SO 139-179, GL 81-108 uV (95th percentile
  to max); baseline envelope 4-8 uV; mean frequency 108-125 Hz.  -> walking
  bursts 50-250 uV, 0.25-0.45 s (slower night walking), stride 0.95-1.3 s.
- elderly_isometric (20 subjects, 2 kHz): sustained TA holds 62-225 uV RMS
  (median 137), mean frequency 92-149 Hz, spectral peak 33-107 Hz, power
  falling to -10 dB at ~200 Hz and -20 dB at ~320 Hz; the 250 ms RMS envelope
  fluctuates with a CV of 0.1-0.3.  -> cramp plateau RMS 30-400 uV, MUAP
  widths giving 60-120 Hz peaks, fluctuation depth 15-40 %.  The GL channel
  there holds almost nothing in-band (1.3-1.5 uV RMS, 88 % of its raw power
  below 20 Hz): the amplifier noise floor, -> floor 1.5-5 uV.

The package, by layer
---------------------
``spec.py``
    :class:`NightSpec`: what night to make.
``randomize.py``
    :func:`randomized_spec`: a spec of one domain-randomised family.
``planner.py``
    :func:`~.planner.plan_night`: the order of the draws and the helpers they
    share; ``cramps.py``, ``behaviour.py`` and ``artifacts.py`` plan each kind.
``motor_units.py``
    MUAP templates, the motor pool and its spike trains.
``events.py``, ``posture.py``
    Event renderers (what each event adds to the signals) and the leg's posture.
``night.py``
    :class:`SyntheticNight`: rendering by segments, with caches;
    ``night.for_file()`` is the night as a file writer should see it (no
    accelerometer channels without one, NaN samples as zeros).

Examples
--------
>>> night = SyntheticNight(NightSpec(hours=0.5, seed=3, n_cramps=2))
>>> emg_uv = night.render_emg(0, 1000)        # first second, float32 uV
>>> acc_g = night.render_acc(0, 100)          # (100, 3) float32 g
>>> sorted({lab.kind for lab in night.labels}) == sorted(night.expected_kinds)
True
>>> shifted = SyntheticNight(randomized_spec(5, "shifted", hours=0.5))
>>> shifted.spec.family, shifted.counts()["loose_electrode"] >= 1
('shifted', True)
"""

from __future__ import annotations

from crampwatch.firmware_bridge.labels import LABEL_KINDS, Label

from ._common import SEGMENT_S
from .night import SyntheticNight
from .randomize import FAMILIES, describe_spec, randomized_spec
from .spec import IMU_FAULT_MODES, NightSpec

__all__ = [
    "NightSpec",
    "SyntheticNight",
    "Label",
    "LABEL_KINDS",
    "SEGMENT_S",
    "FAMILIES",
    "IMU_FAULT_MODES",
    "randomized_spec",
    "describe_spec",
]
