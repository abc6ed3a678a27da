"""Planning artifacts: what the electrodes, the amplifier and the sensor add.

Today's tidy night: electrode pops, lead-off, mains interference, ECG
crosstalk and slow drift, anywhere in the night (a lead-off never during a
cramp).  The randomised families add loose electrodes (never during a cramp
either), accelerometer failures, electrode settling and steps of the noise
floor.  Every function takes the :class:`~.planner.Planner` ``p`` and a random
stream.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import TWO_PI, log_uniform
from .events import Drift, Ecg, FloorGain, Hum, ImuFault, LeadOff, LooseElectrode, Pop
from .spec import IMU_FAULT_MODES

__all__ = [
    "plan_pop",
    "hum",
    "plan_lead_off",
    "plan_mains",
    "plan_ecg",
    "plan_drift",
    "plan_loose_electrode",
    "plan_imu_fault",
    "plan_floor_gain",
]


def plan_pop(p, rng):
    tau = log_uniform(rng, 0.05, 1.5)
    t = p.random_time(rng, 5 * tau)
    amp = log_uniform(rng, 100, 3000) * float(rng.choice([-1.0, 1.0]))
    p.add(Pop(t, amp, tau))
    p.label("pop", t, t + max(5 * tau, 0.2), f"amp_uv={amp:.0f}; tau_s={tau:.2f}")


def hum(p, rng, on, off, amp, ramp):
    f = p.mains_hz + float(rng.uniform(-0.02, 0.02))
    amps = amp * np.array(
        [1.0, rng.uniform(0.05, 0.2), rng.uniform(0.2, 0.5), 0.0, rng.uniform(0.05, 0.2)]
    )
    return Hum(on, off, ramp, f, amps, rng.uniform(0, TWO_PI, 5))


def plan_lead_off(p, rng):
    dur = float(rng.uniform(10, 60))
    t = p.random_time(rng, dur, avoid_cramps=True)
    if t is None:
        return
    h = hum(p, rng, t, t + dur, log_uniform(rng, 300, 2000), 0.05)
    k = 3
    drift = Drift(
        t,
        t + dur,
        rng.uniform(300, 1000, k) * (log_uniform(rng, 500, 3000) / 1500),
        np.exp(rng.uniform(math.log(0.05), math.log(0.5), k)),
        rng.uniform(0, TWO_PI, k),
        0.05,
    )
    p.add(LeadOff(t, t + dur, h, drift))
    for tp in (t, t + dur):
        p.add(
            Pop(
                tp,
                log_uniform(rng, 300, 3000) * float(rng.choice([-1.0, 1.0])),
                log_uniform(rng, 0.1, 1.0),
            )
        )
    p.label("lead_off", t, t + dur)


def plan_mains(p, rng, continuous):
    T = p.duration_s
    if continuous:
        amp = log_uniform(rng, 3, 30)
        p.add(hum(p, rng, 0.0, T + 1e6, amp, 1e-3))
        p.label("mains", 0.0, T, f"continuous {p.mains_hz:g} Hz, {amp:.0f} uV")
        return
    dur = min(log_uniform(rng, 60, 1800), T / 4)
    t = p.random_time(rng, dur)
    amp = log_uniform(rng, 10, 80)
    p.add(hum(p, rng, t, t + dur, amp, float(rng.uniform(1, 10))))
    p.label("mains", t, t + dur, f"{p.mains_hz:g} Hz, {amp:.0f} uV")


def plan_ecg(p, rng):
    dur = min(log_uniform(rng, 300, 3600), p.duration_s / 3)
    t = p.random_time(rng, dur)
    hr = float(rng.uniform(48, 72)) / 60.0
    n = int(dur * hr) + 2
    rr = (1.0 / hr) * (1 + 0.02 * rng.standard_normal(n))
    beats = t + np.cumsum(rr)
    beats = beats + 0.04 / hr * np.sin(TWO_PI * 0.25 * beats)  # sinus arrhythmia
    beats = beats[beats < t + dur]
    if beats.size < 2:
        return
    amp = log_uniform(rng, 5, 40)
    p.add(Ecg(beats, amp, float(rng.choice([-1.0, 1.0]))))
    p.label("ecg", t, t + dur, f"qrs_uv={amp:.0f}; hr_bpm={hr * 60:.0f}")


def plan_drift(p, rng):
    dur = min(log_uniform(rng, 60, 900), p.duration_s / 6)
    t = p.random_time(rng, dur)
    amp = log_uniform(rng, 50, 500)
    k = 3
    a = rng.uniform(0.5, 1.0, k)
    a *= amp / a.sum()
    p.add(
        Drift(
            t,
            t + dur,
            a,
            np.exp(rng.uniform(math.log(0.01), math.log(0.2), k)),
            rng.uniform(0, TWO_PI, k),
            min(30.0, 0.2 * dur),
        )
    )
    p.label("drift", t, t + dur, f"amp_uv={amp:.0f}")


# --------------------------------------------------------------------------- randomised families


def plan_loose_electrode(p, rng):
    """A loose electrode for 10 s - 10 min: intermittent white noise of 10-300 uV
    RMS up to Nyquist, drift, pops; the muscle signal attenuated by 20-80 %."""
    sp = p.spec
    dur = min(log_uniform(rng, *sp.loose_electrode_s), p.duration_s / 6)
    t = p.random_time(rng, dur, avoid_cramps=True, margin_s=10.0)
    if t is None:
        return
    level = log_uniform(rng, *sp.loose_electrode_uv)
    duty = float(rng.uniform(0.3, 1.0))
    on, off, uv = [], [], []
    cur = t + float(rng.uniform(0.0, 0.5))
    while cur < t + dur:
        blen = log_uniform(rng, 0.3, 20.0)
        on.append(cur)
        off.append(min(cur + blen, t + dur))
        uv.append(level * log_uniform(rng, 0.5, 2.0))
        cur = off[-1] + blen * (1.0 - duty) / duty * float(rng.uniform(0.5, 1.5))
    k = 3
    drift = Drift(
        t,
        t + dur,
        rng.uniform(0.5, 1.0, k) * log_uniform(rng, 100, 2000) / 2.0,
        np.exp(rng.uniform(math.log(0.05), math.log(0.5), k)),
        rng.uniform(0, TWO_PI, k),
        min(2.0, 0.1 * dur),
    )
    attenuation = float(rng.uniform(0.2, 0.8))
    p.add(LooseElectrode(p.seed, p.new_id(), t, t + dur, on, off, uv, attenuation, drift))
    n_pops = int(rng.integers(0, 6))
    for tp in [t, t + dur] + list(t + np.sort(rng.uniform(0, dur, n_pops))):
        p.add(
            Pop(
                tp,
                log_uniform(rng, 100, 3000) * float(rng.choice([-1.0, 1.0])),
                log_uniform(rng, 0.05, 1.0),
            )
        )
    p.label(
        "loose_electrode",
        t,
        t + dur,
        f"noise_uv={level:.0f}; duty={duty:.2f}; muscle attenuated {attenuation:.0%}",
    )


def plan_imu_fault(p, rng, acc_bias):
    """An accelerometer failure: all zeros, stuck at its last reading, saturated at
    +-range, or silent (no samples, NaN)."""
    sp = p.spec
    dur = min(log_uniform(rng, *sp.imu_fault_s), p.duration_s / 3)
    t = float(rng.uniform(0, max(1.0, p.duration_s - dur)))
    mode = str(rng.choice(IMU_FAULT_MODES))
    value = None
    if mode == "stuck":
        value = p.postures.gravity([t])[0] + acc_bias + 0.003 * rng.standard_normal(3)
    elif mode == "saturated":
        value = rng.choice([-1.0, 1.0], 3) * sp.acc_range_g
    p.imu_faults.append(ImuFault(t, t + dur, mode, value))
    p.label("imu_fault", t, t + dur, f"mode={mode}")


def plan_floor_gain(p, rng):
    """Electrode settling at the start and floor steps at some turns (labelled)."""
    sp = p.spec
    gain = FloorGain(sp.settling_factor, sp.settling_s)
    if sp.settling_factor > 1.0:
        p.label(
            "settling",
            0.0,
            min(sp.settling_s, p.duration_s),
            f"floor x{sp.settling_factor:.1f} at the start, settling over {sp.settling_s:.0f} s",
        )
    if sp.floor_step_probability > 0:
        for i, (t, dur) in enumerate(p.turns):
            forced = sp.every_kind and i == 0
            if rng.random() < sp.floor_step_probability or forced:
                f = log_uniform(rng, *sp.floor_step_factor)
                ts = t + 0.5 * dur
                gain.step_t.append(ts)
                gain.step_factor.append(f)
                end = min(ts + 60.0, p.duration_s)
                p.label("floor_step", ts, end, f"floor x{f:.2f} from here on (at a turn)")
    return gain
