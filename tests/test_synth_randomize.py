"""The domain-randomised simulator: families cover their ranges, new kinds render
what their labels say, rendering stays block-invariant, the CLI writes them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from crampwatch.firmware_bridge.edf import open_edf
from crampwatch.firmware_bridge.labels import LABEL_KINDS, RANDOMIZED_KINDS, TIDY_KINDS, read_labels
from crampwatch.firmware_bridge.synth import (
    FAMILIES,
    IMU_FAULT_MODES,
    NightSpec,
    SyntheticNight,
    randomized_spec,
)
from crampwatch.firmware_bridge.synth.events import Muscle
from crampwatch.firmware_bridge.synth.randomize import ACC_RATES_HZ, EMG_RATES_HZ
from crampwatch.tools.cli import main
from scipy import signal


def _num(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def _band(x, fs, lo=20.0, hi=450.0):
    sos = signal.butter(4, [lo, min(hi, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, np.asarray(x, float))


@pytest.fixture(scope="module")
def shifted_nights():
    """40 planned (not rendered) 8 h nights of the shifted family: cheap."""
    return [SyntheticNight(randomized_spec(seed, "shifted")) for seed in range(40)]


def _labels(nights, kind):
    return [lab for n in nights for lab in n.labels if lab.kind == kind]


# ----------------------------------------------------------------- the families' draws


def test_board_draws_cover_their_ranges():
    specs = [randomized_spec(seed, "board") for seed in range(300)]
    floors = np.array([s.floor_rms_uv for s in specs])
    assert floors.min() < 1.0 and floors.max() > 20.0 and np.all((floors >= 0.5) & (floors <= 30))
    assert {s.emg_fs_hz for s in specs} == set(EMG_RATES_HZ)
    assert {s.acc_fs_hz for s in specs} == set(ACC_RATES_HZ)
    assert min(ACC_RATES_HZ) == 20.0 and max(ACC_RATES_HZ) == 200.0
    assert {s.mains_hz for s in specs} == {50.0, 60.0}
    steps = np.array([s.adc_step_uv for s in specs])
    assert steps.min() < 0.15 and steps.max() > 3.5 and np.all((steps >= 0.1) & (steps <= 5))
    settling = [s for s in specs if s.settling_factor > 1.0]
    assert 0.55 < len(settling) / len(specs) < 0.85
    factors = [s.settling_factor for s in settling]
    times = [s.settling_s for s in settling]
    assert min(factors) < 2.3 and max(factors) > 5.7
    assert min(times) < 150 and max(times) > 570


def test_faults_family_sometimes_has_no_accelerometer():
    specs = [randomized_spec(seed, "faults") for seed in range(200)]
    share = np.mean([not s.has_accelerometer for s in specs])
    assert 0.15 < share < 0.35
    assert all(s.has_accelerometer for s in (randomized_spec(k, "board") for k in range(50)))


def test_tidy_family_is_the_default_night():
    assert randomized_spec(7, "tidy", hours=1.0) == NightSpec(hours=1.0, seed=7, family="tidy")
    n = SyntheticNight(NightSpec(seed=3))
    assert n.expected_kinds == TIDY_KINDS
    with pytest.raises(ValueError):
        randomized_spec(1, "weird")


def test_same_seed_and_family_same_night_other_family_other_night():
    a = SyntheticNight(randomized_spec(12, "shifted", hours=0.2))
    b = SyntheticNight(randomized_spec(12, "shifted", hours=0.2))
    c = SyntheticNight(randomized_spec(12, "behaviour", hours=0.2))
    assert a.labels == b.labels and a.labels != c.labels
    i = int(200 * a.emg_fs_hz)
    np.testing.assert_array_equal(a.render_emg(i, 3000), b.render_emg(i, 3000))
    np.testing.assert_array_equal(a.render_acc(0, 300), b.render_acc(0, 300))


def test_event_draws_cover_their_ranges(shifted_nights):
    nights = shifted_nights
    loose = _labels(nights, "loose_electrode")
    noise = [_num(r"noise_uv=(\d+)", lab.note) for lab in loose]
    assert min(noise) < 20 and max(noise) > 150
    assert min(lab.duration_s for lab in loose) < 40 and max(lab.duration_s for lab in loose) > 300
    imu = _labels(nights, "imu_fault")
    assert {lab.note.split("=")[1] for lab in imu} == set(IMU_FAULT_MODES)
    assert min(lab.duration_s for lab in imu) < 60 and max(lab.duration_s for lab in imu) > 900
    stand = _labels(nights, "stand")
    tone = [_num(r"tone (\d+) uV", lab.note) for lab in stand]
    assert min(tone) < 10 and max(tone) > 25
    assert min(lab.duration_s for lab in stand) < 120 and max(lab.duration_s for lab in stand) > 270
    steps = [_num(r"taking (\d+) steps", lab.note) for lab in _labels(nights, "walk")]
    steps = [s for s in steps if s is not None]
    assert min(steps) <= 4 and max(steps) >= 9 and all(3 <= s <= 10 for s in steps)
    sits = [_num(r"bed, (\d+) s", lab.note) for lab in _labels(nights, "sit")]
    assert min(sits) < 100 and max(sits) > 240
    legs = _labels(nights, "leg_movement")
    assert {int(lab.note[0]) for lab in legs} == {1, 2, 3}
    assert any("isolated" in lab.note for lab in legs)
    steps_x = [_num(r"floor x([\d.]+)", lab.note) for lab in _labels(nights, "floor_step")]
    assert min(steps_x) < 0.65 and max(steps_x) > 1.6

    cramps = _labels(nights, "cramp")
    weak = [c for c in cramps if "weak" in c.note]
    rms_weak = [_num(r"rms_uv=(\d+)", c.note) for c in weak]
    assert 0.2 < len(weak) / len(cramps) < 0.5
    assert min(rms_weak) < 30 and max(rms_weak) > 80
    assert all(15 <= r <= 151 for r in rms_weak)
    rms_other = [_num(r"rms_uv=(\d+)", c.note) for c in cramps if "weak" not in c.note]
    assert max(rms_other) > 700
    short = [c for c in cramps if "short" in c.note]
    assert short and all(9.99 <= c.duration_s <= 20.01 for c in short)
    assert max(_num(r"rise_s=([\d.]+)", c.note) for c in cramps) > 20
    before = [_num(r"leg_movement_before_s=(\d+)", c.note) for c in cramps]
    before = [b for b in before if b is not None]
    assert min(before) < 15 and max(before) > 50
    assert 0.3 < np.mean(["movement_at_onset" in c.note for c in cramps]) < 0.7


def test_labels_cover_every_new_kind(shifted_nights):
    seen = {lab.kind for n in shifted_nights for lab in n.labels}
    assert seen == set(LABEL_KINDS)
    for n in shifted_nights[:10]:
        assert set(n.expected_kinds) <= {lab.kind for lab in n.labels}, n.spec.seed
    for fam in FAMILIES:
        kinds = {lab.kind for lab in SyntheticNight(randomized_spec(3, fam)).labels}
        assert kinds >= set(TIDY_KINDS)
        if fam == "tidy":
            assert not kinds & set(RANDOMIZED_KINDS)


def test_cramps_are_exact_and_never_hidden(shifted_nights):
    crowded = [
        SyntheticNight(
            NightSpec(
                hours=2.0,
                seed=seed,
                n_cramps=4,
                loose_electrodes_per_8h=(40.0, 40.0),
                lead_offs_per_8h=(20.0, 20.0),
                leg_movement_before_cramp_probability=1.0,
            )
        )
        for seed in range(5)
    ]
    for n in shifted_nights + crowded:
        muscles = [ev for ev in n._events if isinstance(ev, Muscle) and ev.on.size == 1]
        for c in (lab for lab in n.labels if lab.kind == "cramp"):
            # the cramp's own drive starts rising at the onset and has ended at the offset
            ev = [m for m in muscles if abs(m.on[0] - c.onset_s) < 1e-3]
            assert len(ev) == 1, c
            assert ev[0].end[0] == pytest.approx(c.offset_s, abs=1e-3)
            for lab in n.labels:
                if lab.kind in ("lead_off", "loose_electrode", "stand", "sit", "walk"):
                    assert lab.offset_s <= c.onset_s or lab.onset_s >= c.offset_s, (c, lab)


# ----------------------------------------------------------------- what is rendered


def _seed_with(family, hours, pred, seeds=range(200)):
    for seed in seeds:
        n = SyntheticNight(randomized_spec(seed, family, hours=hours))
        if pred(n):
            return n
    raise AssertionError("no such night")


def test_randomised_night_is_block_invariant():
    night = _seed_with(
        "shifted",
        0.5,
        lambda n: (
            n.has_accelerometer
            and any(lab.kind == "loose_electrode" for lab in n.labels)
            and any(lab.kind == "imu_fault" and "silent" not in lab.note for lab in n.labels)
        ),
    )
    rng = np.random.default_rng(3)
    for kind in ("loose_electrode", "imu_fault"):
        lab = next(lab for lab in night.labels if lab.kind == kind)
        for stream in ("emg", "acc"):
            fs = night.emg_fs_hz if stream == "emg" else night.acc_fs_hz
            start = int(max(0.0, lab.onset_s - 7.0) * fs)
            total = int(23.7 * fs)
            whole = getattr(SyntheticNight(night.spec), f"render_{stream}")(start, total)
            render = getattr(SyntheticNight(night.spec), f"render_{stream}")
            cuts = np.sort(rng.choice(np.arange(1, total), size=9, replace=False))
            bounds = np.concatenate([[0], cuts, [total]])
            pieces = list(zip(bounds[:-1], bounds[1:]))[::-1]  # out of order too
            got = {a: render(start + a, b - a) for a, b in pieces}
            joined = np.concatenate([got[a] for a, _ in sorted(pieces)])
            np.testing.assert_array_equal(joined, whole)


def test_failed_imu_stretches_render_what_they_say():
    found = {}
    for seed in range(60):
        spec = NightSpec(
            hours=0.25, seed=seed, imu_faults_per_8h=(60.0, 60.0), imu_fault_s=(10.0, 20.0)
        )
        n = SyntheticNight(spec)
        faults = [lab for lab in n.labels if lab.kind == "imu_fault"]
        for lab in faults:
            alone = all(
                o is lab or o.offset_s + 2 < lab.onset_s or o.onset_s > lab.offset_s + 2
                for o in faults
            )
            if alone:
                found.setdefault(lab.note.split("=")[1], (n, lab))
        if len(found) == len(IMU_FAULT_MODES):
            break
    assert set(found) == set(IMU_FAULT_MODES)
    for mode, (n, lab) in found.items():
        fa = n.acc_fs_hz
        a, b = int(np.ceil(lab.onset_s * fa)) + 1, int(lab.offset_s * fa) - 1
        x = n.render_acc(a, b - a)
        before = n.render_acc(int((lab.onset_s - 2) * fa), int(fa))
        assert np.all(np.isfinite(before)) and np.ptp(before[:, 0]) > 0  # a live sensor before
        if mode == "zeros":
            assert np.all(x == 0.0)
        elif mode == "silent":
            assert np.all(np.isnan(x))
        elif mode == "saturated":
            assert np.all(np.abs(x) == n.spec.acc_range_g)
        else:  # stuck at the reading it had: one value, near the posture's gravity
            assert np.all(x == x[0]) and 0.8 < np.linalg.norm(x[0]) < 1.2


def test_night_without_accelerometer_renders_nan():
    n = _seed_with("faults", 0.1, lambda n: not n.has_accelerometer)
    assert np.all(np.isnan(n.render_acc(0, 500)))
    assert not any(lab.kind == "imu_fault" for lab in n.labels)
    assert np.all(np.isfinite(n.render_emg(0, 5000)))


@pytest.mark.parametrize("step_uv", [0.0, 2.5, 0.37])
def test_adc_step_quantises_the_emg(step_uv):
    n = SyntheticNight(NightSpec(hours=0.05, seed=1, adc_step_uv=step_uv))
    x = n.render_emg(0, 20000).astype(float)
    if step_uv == 0:
        assert np.mean(np.abs(x / 2.5 - np.round(x / 2.5)) < 1e-3) < 0.05  # not quantised
        return
    q = x / step_uv
    assert np.max(np.abs(q - np.round(q))) < 1e-3
    assert len(np.unique(np.round(q))) > 5


def test_settling_and_floor_steps_change_the_floor():
    spec = NightSpec(
        hours=0.5,
        seed=5,
        floor_rms_uv=4.0,
        settling_factor=5.0,
        settling_s=300.0,
        floor_step_probability=1.0,
        mains_continuous_probability=0.0,
    )
    n = SyntheticNight(spec)
    fs = n.emg_fs_hz
    gain = n._floor_gain
    assert gain(np.array([0.0]))[0] == pytest.approx(5.0)
    assert gain(np.array([300.0]))[0] == pytest.approx(1.0, abs=0.25)
    # the rendered floor follows: compare quiet stretches at the start and after settling
    quiet = [
        a
        for a in np.arange(0.0, n.duration_s - 10.0, 5.0)
        if not any(
            lab.onset_s < a + 13 and lab.offset_s > a - 3
            for lab in n.labels
            if lab.kind not in ("settling", "floor_step", "ecg")
        )
    ]
    early = [a for a in quiet if a < 20]
    assert early

    def rms(a):
        x = _band(n.render_emg(int(a * fs), int(10 * fs)), fs)[int(fs) : -int(fs)]
        return float(np.sqrt(np.mean(x**2)))

    ratio = rms(early[0]) / (4.0 * gain(np.array([early[0] + 5.0]))[0])
    assert 0.6 < ratio < 1.5
    steps = [lab for lab in n.labels if lab.kind == "floor_step"]
    assert steps and len(steps) == len(gain.step_t)


def test_behaviour_renders_what_its_labels_say():
    n = _seed_with(
        "behaviour",
        1.0,
        lambda n: (
            {"stand", "sit"} <= {lab.kind for lab in n.labels}
            and any("movement_at_onset" in lab.note for lab in n.labels)
        ),
    )
    fs, fa = n.emg_fs_hz, n.acc_fs_hz
    stand = next(lab for lab in n.labels if lab.kind == "stand")
    mid = 0.5 * (stand.onset_s + stand.offset_s)
    x = _band(n.render_emg(int((mid - 12) * fs), int(24 * fs)), fs)[int(2 * fs) : -int(2 * fs)]
    tone = _num(r"tone (\d+) uV", stand.note)
    assert 0.5 * tone < np.sqrt(np.mean(x**2)) < 1.6 * tone + 3 * n.floor_rms_uv
    acc = n.render_acc(int((mid - 5) * fa), int(10 * fa))
    assert np.mean(acc[:, 0]) > 0.85  # upright: gravity along the shank
    sit = next(lab for lab in n.labels if lab.kind == "sit")
    mid = 0.5 * (sit.onset_s + sit.offset_s)
    acc = n.render_acc(int((mid - 5) * fa), int(10 * fa))
    assert np.mean(acc[:, 0]) > 0.85
    x = _band(n.render_emg(int((mid - 5) * fs), int(10 * fs)), fs)[int(fs) : -int(fs)]
    assert np.sqrt(np.mean(x**2)) < 3 * n.floor_rms_uv + 20  # relaxed calf (mains may add)
    c = next(lab for lab in n.labels if "movement_at_onset" in lab.note)
    acc = n.render_acc(int(c.onset_s * fa), int(8 * fa))
    assert np.max(np.linalg.norm(acc - np.median(acc, axis=0), axis=1)) > 0.08


def test_loose_electrode_is_broadband_and_weak_cramps_are_weak():
    n = _seed_with(
        "shifted",
        1.0,
        lambda n: (
            n.emg_fs_hz >= 2000
            and any(
                lab.kind == "loose_electrode" and _num(r"noise_uv=(\d+)", lab.note) > 60
                for lab in n.labels
            )
        ),
    )
    fs = n.emg_fs_hz
    lab = next(
        lab
        for lab in n.labels
        if lab.kind == "loose_electrode" and _num(r"noise_uv=(\d+)", lab.note) > 60
    )
    x = n.render_emg(int(lab.onset_s * fs), int(min(lab.duration_s, 60) * fs)).astype(float)
    f, p = signal.welch(x - x.mean(), fs, nperseg=1024)
    high = np.sum(p[f > 600]) / np.sum(p[(f > 20) & (f < 450)])
    assert high > 0.5  # white up to Nyquist, not band-limited like EMG
    nights = [SyntheticNight(randomized_spec(s, "strength", hours=0.5)) for s in range(30)]
    weak = [(m, c) for m in nights for c in m.labels if c.kind == "cramp" and "weak" in c.note]
    m, c = weak[0]
    fs = m.emg_fs_hz
    a = c.onset_s + 0.3 * c.duration_s
    x = _band(m.render_emg(int(a * fs), int(0.4 * c.duration_s * fs)), fs)
    nominal = _num(r"rms_uv=(\d+)", c.note)
    assert nominal < 151 and 0.4 * nominal < np.sqrt(np.mean(x**2)) < 1.8 * nominal + 10


# ----------------------------------------------------------------- crampwatch simulate --randomize


def test_simulate_randomize_writes_an_edf_that_reads_back(tmp_path, capsys):
    out = tmp_path / "r.edf"
    rc = main(
        [
            "simulate",
            str(out),
            "--randomize",
            "--family",
            "shifted",
            "--seed",
            "3",
            "--hours",
            "0.1",
        ]
    )
    assert rc == 0
    line = capsys.readouterr().out.strip()
    spec = randomized_spec(3, "shifted", hours=0.1)
    assert "family shifted" in line and "floor" in line and f"EMG {spec.emg_fs_hz:g} Hz" in line
    labels = read_labels(tmp_path / "r.labels.csv")
    night = SyntheticNight(spec)
    assert [(lab.kind, lab.onset_s) for lab in labels] == [
        (lab.kind, lab.onset_s) for lab in night.labels
    ]
    with open_edf(str(out)) as rec:
        assert rec.emg.fs_hz == spec.emg_fs_hz
        assert (rec.acc is not None) == spec.has_accelerometer
        if rec.acc is not None:
            assert rec.acc.fs_hz == spec.acc_fs_hz
        blocks = [b for b in rec.blocks(60.0) if b.stream == "emg"]
    emg = np.concatenate([b.data[:, 0] for b in blocks])
    ref = night.render_emg(0, emg.size)
    assert np.max(np.abs(emg - ref)) < 0.2  # 16-bit EDF over +-5000 uV: 0.15 uV per step


def test_simulate_randomize_without_accelerometer(tmp_path, capsys):
    seed = next(s for s in range(50) if not randomized_spec(s, "faults").has_accelerometer)
    out = tmp_path / "n.edf"
    rc = main(
        [
            "simulate",
            str(out),
            "--randomize",
            "--family",
            "faults",
            "--seed",
            str(seed),
            "--hours",
            "0.05",
            "--fs",
            "250",
        ]
    )
    assert rc == 0
    assert "no accelerometer" in capsys.readouterr().out
    with open_edf(str(out)) as rec:
        assert rec.acc is None and rec.emg.fs_hz == 250.0


@pytest.mark.parametrize("argv", [["--family", "board"], ["--fs", "150"], ["--acc-fs", "10"]])
def test_simulate_randomize_bad_arguments_exit_2(tmp_path, capsys, argv):
    rc = main(["simulate", str(tmp_path / "x.edf"), *argv])
    assert rc == 2
    assert capsys.readouterr().err.startswith("crampwatch: ")
    assert not (tmp_path / "x.edf").exists()


def test_simulate_help_lists_the_families(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "x.edf", "--randomize", "--family", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(f in err for f in FAMILIES)
