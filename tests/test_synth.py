"""The synthetic night: block invariance, content by kind, grounding, determinism, the CLI."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from crampwatch.firmware_bridge.edf import open_edf
from crampwatch.firmware_bridge.labels import LABEL_KINDS, TIDY_KINDS, read_labels
from crampwatch.firmware_bridge.synth import SEGMENT_S, NightSpec, SyntheticNight
from crampwatch.tools.cli import main
from scipy import signal

FLOOR_UV = 3.0


@pytest.fixture(scope="module")
def night():
    """A 40 min night with a known floor, no continuous mains, two cramps."""
    return SyntheticNight(
        NightSpec(
            hours=40 / 60,
            seed=11,
            n_cramps=2,
            floor_rms_uv=FLOOR_UV,
            mains_continuous_probability=0.0,
        )
    )


def _band(x, fs):
    sos = signal.butter(4, [20.0, 450.0], "bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, np.asarray(x, float))


def _rms_windows(x, fs, win_s=0.25):
    w = int(win_s * fs)
    m = len(x) // w
    return np.sqrt(np.mean(x[: m * w].reshape(m, w) ** 2, axis=1))


def _excerpt(night, a_s, b_s, pad_s=2.0):
    fs = night.emg_fs_hz
    i0 = int(max(0.0, a_s - pad_s) * fs)
    x = _band(night.render_emg(i0, int((b_s + pad_s) * fs) - i0), fs)
    cut = int(a_s * fs) - i0
    return x[cut : cut + int((b_s - a_s) * fs)]


def _free_of(night, a, b, kinds):
    return not any(
        lab.kind in kinds and lab.onset_s < b and lab.offset_s > a for lab in night.labels
    )


# ----------------------------------------------------------------- block invariance


@pytest.mark.parametrize("stream", ["emg", "acc"])
def test_render_is_block_invariant_under_random_splits(night, stream):
    cramp = next(lab for lab in night.labels if lab.kind == "cramp")
    fs = night.emg_fs_hz if stream == "emg" else night.acc_fs_hz
    start = int((cramp.onset_s - 12.0) * fs)  # crosses segment boundaries and the cramp onset
    total = int(37.3 * fs)
    fresh = SyntheticNight(night.spec)
    render = fresh.render_emg if stream == "emg" else fresh.render_acc
    whole = render(start, total)
    rng = np.random.default_rng(5)
    for trial in range(3):
        other = SyntheticNight(night.spec)  # empty caches
        r = other.render_emg if stream == "emg" else other.render_acc
        cuts = np.sort(
            rng.choice(np.arange(1, total), size=int(rng.integers(3, 12)), replace=False)
        )
        bounds = np.concatenate([[0], cuts, [total]])
        pieces = [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        if trial == 1:
            pieces = pieces[::-1]  # out of order too
        got = {a: r(start + a, b - a) for a, b in pieces}
        joined = np.concatenate([got[a] for a, _ in sorted(pieces)])
        assert joined.dtype == np.float32
        np.testing.assert_array_equal(joined, whole)


def test_render_shapes_and_bounds(night):
    assert night.render_emg(0, 0).shape == (0,)
    assert night.render_acc(5, 17).shape == (17, 3)
    past = night.render_emg(night.n_emg_samples - 10, 50)  # past the end: background only
    assert past.shape == (50,) and np.all(np.isfinite(past))
    with pytest.raises(ValueError):
        night.render_emg(-1, 10)


# ----------------------------------------------------------------- content


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_default_night_holds_every_kind_several_times(seed):
    n = SyntheticNight(NightSpec(seed=seed))  # planning only: cheap
    counts = n.counts()
    assert set(counts) == set(LABEL_KINDS)
    assert 1 <= counts["cramp"] <= 4
    assert all(counts[k] >= 1 for k in TIDY_KINDS), counts
    assert not any(counts[k] for k in set(LABEL_KINDS) - set(TIDY_KINDS)), counts
    assert counts["turn"] >= 8 and counts["plm"] >= 4 and counts["pop"] >= 2
    for lab in n.labels:
        assert 0.0 <= lab.onset_s < lab.offset_s <= n.duration_s + 1e-6, lab
    assert [lab.onset_s for lab in n.labels] == sorted(lab.onset_s for lab in n.labels)


def test_short_night_with_two_cramps_holds_every_kind(night):
    assert night.counts()["cramp"] == 2
    assert all(night.counts()[k] >= 1 for k in TIDY_KINDS), night.counts()


def test_behaviour_never_overlaps_cramps(night):
    cramps = [lab for lab in night.labels if lab.kind == "cramp"]
    behaviour = {"turn", "plm", "walk", "stretch", "resting_tone", "lead_off"}
    for c in cramps:
        assert _free_of(night, c.onset_s, c.offset_s, behaviour), c


def test_noise_floor_matches_the_spec(night):
    quiet = [
        (a, a + 20.0)
        for a in np.arange(0.0, night.duration_s - 20.0, 20.0)
        if _free_of(night, a - 3.0, a + 23.0, set(LABEL_KINDS))
    ]
    assert len(quiet) >= 3
    rms = [np.sqrt(np.mean(_excerpt(night, a, b) ** 2)) for a, b in quiet[:6]]
    assert 0.75 * FLOOR_UV < np.median(rms) < 1.3 * FLOOR_UV


def test_cramps_are_strong_and_sustained(night):
    fs = night.emg_fs_hz
    for c in (lab for lab in night.labels if lab.kind == "cramp"):
        a = c.onset_s + 0.2 * c.duration_s
        b = c.offset_s - 0.2 * c.duration_s
        x = _excerpt(night, a, b)
        env = _rms_windows(x, fs)
        assert np.mean(env > 3 * FLOOR_UV) > 0.8, c
        nominal = float(re.search(r"rms_uv=(\d+)", c.note).group(1))
        assert 0.4 * nominal < np.sqrt(np.mean(x**2)) < 1.6 * nominal, c
        # the spectrum of surface calf EMG: mean frequency ~ 60-160 Hz
        f, p = signal.welch(x, fs, nperseg=1024)
        assert 60.0 < np.sum(f * p) / np.sum(p) < 160.0
        # the leg is still for most of it: acceleration varies by a few mg at most
        fa = night.acc_fs_hz
        acc = night.render_acc(int(c.onset_s * fa), int(min(15.0, 0.5 * c.duration_s) * fa))
        assert np.median(np.abs(acc - np.median(acc, axis=0))) < 0.02


def test_walking_bursts_are_rhythmic_near_1_hz_and_upright(night):
    fs = night.emg_fs_hz
    walks = [lab for lab in night.labels if lab.kind == "walk" and "walking" in lab.note]
    assert walks
    for w in walks:
        a, b = w.onset_s + 10.0, min(w.offset_s - 8.0, w.onset_s + 60.0)
        x = _excerpt(night, a, b)
        env = _rms_windows(x, fs, 0.05)
        on = env > 0.3 * np.percentile(env, 99)
        starts = np.nonzero(on[1:] & ~on[:-1])[0] + 1
        ends = np.nonzero(~on[1:] & on[:-1])[0] + 1
        ends = ends[ends > starts[0]]
        n = min(len(starts), len(ends))
        durs = (ends[:n] - starts[:n]) * 0.05
        durs = durs[durs >= 0.1]
        intervals = np.diff(starts) * 0.05
        intervals = intervals[intervals > 0.5]
        assert len(intervals) >= 10
        assert 0.85 < np.median(intervals) < 1.4
        assert np.std(intervals) / np.mean(intervals) < 0.15
        assert 0.15 < np.median(durs) < 0.6
        fa = night.acc_fs_hz
        acc = night.render_acc(int(a * fa), int((b - a) * fa))
        assert np.mean(acc[:, 0]) > 0.75  # gravity on the shank's long axis
        assert np.max(np.linalg.norm(acc, axis=1)) > 1.3  # heel strikes


def test_plm_series_follow_aasm_timing():
    n = SyntheticNight(NightSpec(seed=4))
    series = {}
    for lab in n.labels:
        if lab.kind == "plm":
            sid = re.match(r"series (\d+)", lab.note).group(1)
            series.setdefault(sid, []).append(lab)
    assert series
    for bursts in series.values():
        assert len(bursts) >= 4
        onsets = np.array([b.onset_s for b in bursts])
        iv = np.diff(onsets)
        assert np.all(iv >= 5.0) and np.all(iv <= 90.0)
        assert all(0.5 <= b.duration_s <= 10.0 for b in bursts)


def test_plm_bursts_show_in_the_emg(night):
    plms = [lab for lab in night.labels if lab.kind == "plm"]
    assert len(plms) >= 4
    above = []
    for p in plms[:6]:
        x = _excerpt(night, p.onset_s, p.offset_s)
        above.append(np.max(_rms_windows(x, night.emg_fs_hz)) > 2.5 * FLOOR_UV)
    assert np.mean(above) >= 0.8


def test_posture_changes_at_turns(night):
    fa = night.acc_fs_hz
    turns = [lab for lab in night.labels if lab.kind == "turn"]
    assert turns
    for t in turns:
        before = night.render_acc(int((t.onset_s - 5) * fa), int(2 * fa)).mean(axis=0)
        after = night.render_acc(int((t.offset_s + 3) * fa), int(2 * fa)).mean(axis=0)
        cos = np.dot(before, after) / np.linalg.norm(before) / np.linalg.norm(after)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))) > 25.0, t
        assert 0.9 < np.linalg.norm(before) < 1.1
        # and the EMG carries a large motion artifact / burst
        x = night.render_emg(int(t.onset_s * night.emg_fs_hz), int(t.duration_s * night.emg_fs_hz))
        assert np.max(np.abs(x - np.median(x))) > 10 * FLOOR_UV


@pytest.mark.parametrize("mains_hz", [50.0, 60.0])
def test_mains_interference_at_the_mains_frequency(mains_hz):
    n = SyntheticNight(NightSpec(hours=0.5, seed=8, mains_hz=mains_hz))
    m = next(lab for lab in n.labels if lab.kind == "mains")
    a = m.onset_s + 0.5 * m.duration_s
    fs = n.emg_fs_hz
    x = n.render_emg(int(a * fs), int(4 * fs)).astype(float)
    f, p = signal.welch(x - x.mean(), fs, nperseg=2000)
    band = (f > 30) & (f < 80)
    assert abs(f[band][np.argmax(p[band])] - mains_hz) <= 1.0


def test_every_label_kind_changes_the_signal(night):
    """Each labelled artifact/behaviour is really rendered (compare to the floor)."""
    fs = night.emg_fs_hz
    for kind in ("pop", "lead_off", "drift", "ecg", "stretch", "twitches"):
        lab = next(lab for lab in night.labels if lab.kind == kind)
        a, b = lab.onset_s, min(lab.offset_s, lab.onset_s + 30.0)
        x = night.render_emg(int(a * fs), int((b - a) * fs)).astype(float)
        assert np.max(np.abs(x - np.median(x))) > 4 * FLOOR_UV, lab


def test_lead_off_is_huge_hum(night):
    lab = next(lab for lab in night.labels if lab.kind == "lead_off")
    x = _excerpt(night, lab.onset_s + 1.0, lab.offset_s - 1.0)
    assert np.sqrt(np.mean(x**2)) > 100.0


# ----------------------------------------------------------------- determinism


def test_same_seed_same_night_other_seed_other_night():
    spec = NightSpec(hours=0.2, seed=21)
    a, b = SyntheticNight(spec), SyntheticNight(spec)
    c = SyntheticNight(NightSpec(hours=0.2, seed=22))
    assert a.labels == b.labels
    assert a.labels != c.labels
    i = int(300 * a.emg_fs_hz)
    np.testing.assert_array_equal(a.render_emg(i, 5000), b.render_emg(i, 5000))
    np.testing.assert_array_equal(a.render_acc(3000, 500), b.render_acc(3000, 500))
    assert not np.array_equal(a.render_emg(i, 5000), c.render_emg(i, 5000))
    assert a.start_time == b.start_time and a.start_time.tzinfo is not None


def test_segment_size_is_what_the_cache_assumes(night):
    assert night._seg_emg == int(round(SEGMENT_S * night.emg_fs_hz))


def test_other_sample_rates():
    n = SyntheticNight(NightSpec(hours=0.05, seed=3, emg_fs_hz=250.0, acc_fs_hz=25.0))
    x = n.render_emg(0, n.n_emg_samples)
    assert x.shape == (n.n_emg_samples,) and np.all(np.isfinite(x))
    n2 = SyntheticNight(NightSpec(hours=0.05, seed=3, emg_fs_hz=4000.0, acc_fs_hz=200.0))
    assert n2.render_acc(0, 400).shape == (400, 3)


def test_bad_spec_is_refused():
    with pytest.raises(ValueError):
        NightSpec(hours=0)
    with pytest.raises(ValueError):
        NightSpec(mains_hz=400)


# ----------------------------------------------------------------- crampwatch simulate


def test_simulate_cli_writes_edf_and_labels(tmp_path, capsys):
    out = tmp_path / "n.edf"
    rc = main(
        [
            "simulate",
            str(out),
            "--hours",
            "0.1",
            "--seed",
            "3",
            "--fs",
            "500",
            "--acc-fs",
            "50",
            "--mains",
            "60",
            "--cramps",
            "1",
            "--start",
            "2024-02-03T23:15:00Z",
        ]
    )
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(out)) and "1 cramps" in line and "\n" not in line
    labels = read_labels(tmp_path / "n.labels.csv")
    assert sum(lab.kind == "cramp" for lab in labels) == 1
    with open_edf(str(out)) as rec:
        assert rec.emg.fs_hz == 500.0 and rec.acc.fs_hz == 50.0
        assert rec.duration_s == pytest.approx(360.0)
        assert rec.start_time.isoformat() == "2024-02-03T23:15:00+00:00"
        assert {a[2].split(":")[0] for a in rec.annotations} == {lab.kind for lab in labels}
    spec_night = SyntheticNight(
        NightSpec(hours=0.1, seed=3, emg_fs_hz=500.0, acc_fs_hz=50.0, mains_hz=60.0, n_cramps=1)
    )
    assert [(lab.kind, lab.onset_s) for lab in spec_night.labels] == [
        (lab.kind, lab.onset_s) for lab in labels
    ]


@pytest.mark.parametrize(
    "argv", [["--fs", "50"], ["--acc-fs", "1000"], ["--start", "yesterday"], ["--hours", "-1"]]
)
def test_simulate_cli_bad_arguments_exit_2(tmp_path, capsys, argv):
    rc = main(["simulate", str(tmp_path / "x.edf"), *argv])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("crampwatch: ") and "Traceback" not in err
    assert not os.path.exists(tmp_path / "x.edf")


def test_floor_noise_is_seamless_across_segments(night):
    """The floor is one FIR-filtered white sequence: segments k and k+1 joined equal the
    filter run over the joined white noise (no restart transient at the boundary)."""
    from crampwatch.firmware_bridge.synth._common import rng_for

    seg = night._seg_emg
    m = night._floor_taps
    seed = night.spec.seed

    def white(k):
        body = rng_for(seed, 12, k).standard_normal(seg - (m - 1))
        tail = rng_for(seed, 11, k + 1).standard_normal(m - 1)
        return np.concatenate([body, tail])

    k = 7
    w = np.concatenate([rng_for(seed, 11, k).standard_normal(m - 1), white(k), white(k + 1)])
    direct = np.convolve(w, night._floor_fir, mode="valid")
    joined = np.concatenate([night._floor_segment(k), night._floor_segment(k + 1)])
    level = joined / direct
    # the only difference is the slowly varying level: smooth across the boundary
    assert np.all(np.abs(np.diff(level)) < 1e-4 * np.abs(level[1:]))
    assert np.median(level) == pytest.approx(FLOOR_UV, rel=0.3)


# ----------------------------------------------------------------- the sample night

RECORDINGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recordings")


def test_sample_night_is_small_and_holds_every_kind():
    edf = os.path.join(RECORDINGS, "sample_night.edf")
    assert os.path.getsize(edf) < 5_000_000
    labels = read_labels(os.path.join(RECORDINGS, "sample_night.labels.csv"))
    kinds = [lab.kind for lab in labels]
    assert kinds.count("cramp") >= 2 and set(kinds) == set(TIDY_KINDS)
    with open_edf(edf) as rec:
        assert rec.emg.unit == "uV" and rec.acc is not None
        assert max(lab.offset_s for lab in labels) <= rec.duration_s


def test_sample_night_is_what_the_readme_command_makes():
    """recordings/README.md gives the command; if the simulator's plan changes, re-run it."""
    readme = open(os.path.join(RECORDINGS, "README.md")).read()
    cmd = (
        re.search(r"crampwatch simulate recordings/sample_night.edf (.*)", readme).group(1).split()
    )
    opts = dict(zip(cmd[::2], cmd[1::2]))
    night = SyntheticNight(
        NightSpec(
            hours=float(opts["--hours"]),
            seed=int(opts["--seed"]),
            acc_fs_hz=float(opts["--acc-fs"]),
            n_cramps=int(opts["--cramps"]),
        )
    )
    stored = read_labels(os.path.join(RECORDINGS, "sample_night.labels.csv"))
    assert [(lab.kind, lab.onset_s, lab.offset_s) for lab in stored] == [
        (lab.kind, lab.onset_s, lab.offset_s) for lab in night.labels
    ]
