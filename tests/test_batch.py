"""``crampwatch batch``: many recordings on one process, a process pool and a Dask
cluster give the same outputs byte for byte; failures are rows, not crashes; a
batch killed with SIGKILL resumes without replaying the nights it finished.

The recordings are short simulated nights (4 min, EMG 500 Hz, accelerometer
50 Hz) written once per module: three with labels (two share the stem ``n1`` in
different folders), one two-channel recording (left and right calf) and three
copies of a night under other names.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from crampwatch.tools.cli import main

NIGHT_MIN = 4.0


def _night(seed: int, cramps: int = 1):
    from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
    return SyntheticNight(NightSpec(hours=NIGHT_MIN / 60, seed=seed, emg_fs_hz=500.0,
                                    acc_fs_hz=50.0, mains_hz=50.0, n_cramps=cramps))


def _write_two_channel(path, left, right) -> None:
    """An EDF+ with 'EMG calf left', 'EMG calf right' and the left night's accelerometer."""
    import pyedflib
    n_e = int(left.duration_s * left.emg_fs_hz)
    n_a = int(left.duration_s * left.acc_fs_hz)
    emg_l = left.render_emg(0, n_e)
    emg_r = right.render_emg(0, n_e)
    acc = left.render_acc(0, n_a)
    chans = [("EMG calf left", "uV", 500, emg_l, -5000, 5000),
             ("EMG calf right", "uV", 500, emg_r, -5000, 5000)]
    chans += [(f"Acc {a}", "g", 50, acc[:, k], -4, 4) for k, a in enumerate("XYZ")]
    w = pyedflib.EdfWriter(str(path), len(chans), file_type=pyedflib.FILETYPE_EDFPLUS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w.setSignalHeaders([{"label": lab, "dimension": dim, "sample_frequency": fs,
                             "physical_min": lo, "physical_max": hi, "digital_min": -32768,
                             "digital_max": 32767, "transducer": "", "prefilter": ""}
                            for lab, dim, fs, _, lo, hi in chans])
        w.setStartdatetime(left.start_time.replace(tzinfo=None))
        w.writeSamples([np.asarray(c[3], float) for c in chans])
    w.close()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(folder of recordings, folder of labels, [recording paths], [labelled paths])."""
    from crampwatch.firmware_bridge.edf import write_edf
    from crampwatch.firmware_bridge.labels import write_labels
    root = tmp_path_factory.mktemp("study")
    rec, lab = root / "recordings", root / "labels"
    for d in (rec / "a", rec / "b", lab):
        d.mkdir(parents=True)
    labelled = []
    # b/n1 is the night of a/n1 again (same seed): labels are found by stem, and
    # 'n1.labels.csv' labels both
    for folder, stem, seed in (("a", "n1", 3), ("a", "n2", 4), ("b", "n1", 3)):
        night = _night(seed)
        path = rec / folder / f"{stem}.edf"
        write_edf(path, night)
        labelled.append(str(path))
        write_labels(lab / f"{stem}.labels.csv", night.labels)
    _write_two_channel(rec / "b" / "legs.edf", _night(6), _night(7, cramps=2))
    # copies under other names (no labels): more nights for the resume test to cut
    (rec / "c").mkdir()
    for k in range(3):
        (rec / "c" / f"copy{k}.edf").write_bytes((rec / "a" / "n2.edf").read_bytes())
    (rec / "b" / "notes.txt").write_text("not a recording\n")
    paths = sorted(str(p) for p in rec.rglob("*.edf"))
    return str(rec), str(lab), paths, sorted(labelled)


def _batch(out, *args) -> int:
    return main(["batch", *args, "--out", str(out)])


def _outputs(out) -> dict:
    """Every output file's bytes (not the manifest, which holds finishing times)."""
    files = {name: (out / name).read_bytes() for name in ("episodes.csv", "nights.csv")}
    for p in sorted((out / "episodes").iterdir()):
        files["episodes/" + p.name] = p.read_bytes()
    return files


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------- one result, any engine
@pytest.fixture(scope="module")
def serial_out(study, tmp_path_factory):
    """The reference outputs: ``--jobs 1`` (in this process) over the study folder."""
    rec, _, _, _ = study
    out = tmp_path_factory.mktemp("serial") / "out"
    assert _batch(out, rec, "--jobs", "1") == 0
    return out


def test_serial_outputs(study, serial_out):
    _, _, paths, _ = study
    nights = _rows(serial_out / "nights.csv")
    assert [r["file"] for r in nights] == paths            # sorted by path, .txt left out
    assert all(r["error"] == "" for r in nights)
    episodes = _rows(serial_out / "episodes.csv")
    assert [e["file"] for e in episodes] == sorted(e["file"] for e in episodes)
    assert sum(int(r["cramps"]) for r in nights) == len(episodes) >= 3
    # same stem in two folders: two episode files, one per recording
    jsonl = sorted(p.name for p in (serial_out / "episodes").iterdir())
    assert len(jsonl) == len(paths) and sum(n.startswith("n1-") for n in jsonl) == 2
    n_lines = sum(len(p.read_text().splitlines()) for p in (serial_out / "episodes").iterdir())
    assert n_lines == len(episodes)


def test_two_workers_give_the_serial_outputs(study, serial_out, tmp_path):
    rec, _, _, _ = study
    out = tmp_path / "pool"
    assert _batch(out, rec, "--jobs", "2") == 0
    assert _outputs(out) == _outputs(serial_out)


def test_a_dask_cluster_gives_the_serial_outputs(study, serial_out, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    rec, _, _, _ = study
    # two worker processes: the jobs and the results cross process boundaries as they
    # would to other machines
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        out = tmp_path / "dask"
        assert _batch(out, rec, "--cluster", cluster.scheduler_address) == 0
    assert "on tcp://" in capsys.readouterr().out
    assert _outputs(out) == _outputs(serial_out)


def test_two_channels_give_one_row_with_both_legs(study, tmp_path):
    _, _, paths, _ = study
    legs = [p for p in paths if p.endswith("legs.edf")]
    out = tmp_path / "out"
    assert _batch(out, *legs, "--jobs", "1", "--emg", "EMG calf left,EMG calf right") == 0
    (night,) = _rows(out / "nights.csv")
    assert night["channels"] == "EMG calf left;EMG calf right"
    assert night["sites"].count(";") == 1
    eps = _rows(out / "episodes.csv")
    assert eps and {e["channel"] for e in eps} <= {"EMG calf left", "EMG calf right"}
    assert int(night["cramps"]) + int(night["uncertain"]) == len(eps)
    assert 0 < float(night["good_signal_s"]) <= float(night["span_s"]) == NIGHT_MIN * 60
    # every EMG channel: the same two
    out_all = tmp_path / "all"
    assert _batch(out_all, *legs, "--jobs", "2", "--emg", "all") == 0
    assert _outputs(out_all) == _outputs(out)


def test_uncertain_episodes_are_listed_but_not_counted_as_cramps(study, serial_out, tmp_path):
    _, _, paths, _ = study
    out = tmp_path / "out"
    # every episode below confidence 1: all kept as 'uncertain'
    assert _batch(out, paths[0], "--jobs", "1", "--set", "min_confidence=1") == 0
    (night,) = _rows(out / "nights.csv")
    eps = _rows(out / "episodes.csv")
    ref = [e for e in _rows(serial_out / "episodes.csv") if e["file"] == paths[0]]
    assert len(eps) == len(ref) > 0 and {e["status"] for e in eps} == {"uncertain"}
    assert (night["cramps"], night["uncertain"]) == ("0", str(len(eps)))


# ----------------------------------------------------------------- faults
def test_a_corrupt_file_among_good_ones_is_reported_and_the_rest_done(study, serial_out,
                                                                       tmp_path, capsys):
    rec, _, paths, _ = study
    bad_dir = tmp_path / "more"
    bad_dir.mkdir()
    garbage = bad_dir / "garbage.edf"
    garbage.write_bytes(np.random.default_rng(1).bytes(4000))
    out = tmp_path / "out"
    assert _batch(out, rec, str(bad_dir), "--jobs", "2") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"crampwatch: {garbage}: not an EDF/BDF file" in err
    nights = {r["file"]: r for r in _rows(out / "nights.csv")}
    assert nights[str(garbage)]["error"].startswith(f"{garbage}: not an EDF/BDF")
    assert nights[str(garbage)]["cramps"] == ""
    good = [nights[p] for p in paths]
    assert all(r["error"] == "" and r["span_s"] for r in good)
    # the good ones are what a batch without the bad file gives
    assert (out / "episodes.csv").read_bytes() == (serial_out / "episodes.csv").read_bytes()


def test_outputs_are_private(study, tmp_path):
    rec, lab, _, _ = study
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert _batch(out, rec, "--jobs", "1", "--labels", lab) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"episodes.csv", "nights.csv", "evaluation.json",
                                       ".batch-state"}
    for p in files:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


def test_bad_arguments_are_one_line(study, tmp_path, capsys):
    rec, _, _, _ = study
    assert _batch(tmp_path / "o", rec, "--cluster", "nonsense") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crampwatch: --cluster nonsense: cannot reach the Dask scheduler")
    assert len(err.splitlines()) == 1
    assert _batch(tmp_path / "o", str(tmp_path / "nowhere")) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert _batch(tmp_path / "o", rec, "--jobs", "0") == 2
    assert _batch(tmp_path / "o", rec, "--set", "on_ratio=-3") == 2


# ----------------------------------------------------------------- evaluation
def test_labels_evaluate_the_whole_set_as_evaluate_does(study, tmp_path, capsys):
    from crampwatch.detector import DetectorConfig
    from crampwatch.tools.evaluate import evaluate_files
    rec, lab, _, labelled = study
    out = tmp_path / "out"
    assert _batch(out, rec, "--jobs", "1", "--labels", lab) == 0
    assert "precision / recall / F1" in capsys.readouterr().out
    ev = json.loads((out / "evaluation.json").read_text())
    with_labels = labelled
    assert sorted(f["file"] for f in ev["files"]) == sorted(with_labels)
    assert ev["left_out"] == [p for p in study[2] if p not in with_labels]
    lab_files = [os.path.join(lab, os.path.basename(p)[:-4] + ".labels.csv")
                 for p in sorted(with_labels)]
    pooled, _ = evaluate_files(sorted(with_labels), lab_files, DetectorConfig(), progress=False,
                               jobs=2)
    assert ev["pooled"]["n_labelled"] == pooled["n_labelled"] >= 3
    for k in ("precision", "recall", "f1", "false_positives_per_hour"):
        assert ev["pooled"][k] == pytest.approx(pooled[k]), k
    assert pooled["recall"] > 0


def test_evaluate_files_is_the_same_on_one_or_two_workers(study):
    from crampwatch.detector import DetectorConfig
    from crampwatch.tools.evaluate import evaluate_files
    _, lab, _, labelled = study
    files = [p for p in labelled if "/a/" in p]
    labels = [os.path.join(lab, os.path.basename(p)[:-4] + ".labels.csv") for p in files]
    one = evaluate_files(files, labels, DetectorConfig(), progress=False)
    two = evaluate_files(files, labels, DetectorConfig(), progress=False, jobs=2)
    assert json.dumps(one) == json.dumps(two)


# ----------------------------------------------------------------- resume
def _state_lines(out) -> list[dict]:
    p = out / ".batch-state"
    if not p.exists():
        return []
    lines = []
    for ln in p.read_bytes().split(b"\n"):
        try:
            lines.append(json.loads(ln))
        except ValueError:
            pass                                  # empty or torn last line
    return lines


def test_rerun_skips_done_recordings_and_redoes_changed_ones(study, tmp_path, capsys):
    rec, _, paths, _ = study
    out = tmp_path / "out"
    assert _batch(out, rec, "--jobs", "1") == 0
    first = _outputs(out)
    capsys.readouterr()
    assert _batch(out, rec, "--jobs", "1") == 0
    assert "0 replayed with 1 worker(s)" in capsys.readouterr().out
    assert len(_state_lines(out)) == len(paths)
    assert _outputs(out) == first
    # a touched file and changed settings are replayed again
    os.utime(paths[0], ns=(time.time_ns(), time.time_ns()))
    assert _batch(out, rec, "--jobs", "1") == 0
    assert "1 replayed" in capsys.readouterr().out
    assert _batch(out, rec, "--jobs", "1", "--set", "on_ratio=3.5") == 0
    assert f"{len(paths)} replayed" in capsys.readouterr().out


def test_killed_with_sigkill_the_rerun_finishes_without_redoing_finished_nights(
        study, serial_out, tmp_path):
    rec, _, paths, _ = study
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "crampwatch.tools.cli", "batch", rec, "--out", str(out),
           "--jobs", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _state_lines(out):              # wait for the first finished night
            assert proc.poll() is None, "the batch ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done_before = [e["abspath"] for e in _state_lines(out)]
    assert 1 <= len(done_before) < len(paths), "killed too late to test the resume"

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done_before)} already done" in rerun.stdout
    entries = _state_lines(out)
    # the finished nights were not replayed: no second line for them, the others once
    assert [e["abspath"] for e in entries[:len(done_before)]] == done_before
    redone = [e["abspath"] for e in entries[len(done_before):]]
    assert sorted(redone + done_before) == sorted(os.path.abspath(p) for p in paths)
    assert _outputs(out) == _outputs(serial_out)
