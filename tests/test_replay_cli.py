"""`crampwatch replay` / `evaluate` as a user runs them: outputs, and one clear
line with exit status 2 for every kind of bad input."""

import json
import os
import shutil

import numpy as np
import pyedflib
import pytest

from crampwatch.tools.cli import main


def _edf(path, signals, fs=1000.0, seconds=30):
    """Write an EDF+ with pyedflib; signals: list of (label, unit, data-or-None)."""
    rng = np.random.default_rng(0)
    with pyedflib.EdfWriter(str(path), len(signals), file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        hdrs, data = [], []
        for label, unit, x in signals:
            x = rng.normal(0, 5.0, int(fs * seconds)) if x is None else x
            hdrs.append({"label": label, "dimension": unit, "sample_frequency": fs,
                         "physical_min": -5000.0, "physical_max": 5000.0,
                         "digital_min": -32768, "digital_max": 32767})
            data.append(np.asarray(x, dtype=np.float64))
        w.setSignalHeaders(hdrs)
        w.writeSamples(data)
    return str(path)


def _err(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return [line for line in err if line.startswith("crampwatch:")]


def test_replay_sample_night_writes_episodes(sim_night, tmp_path, capsys):
    edf, labels = sim_night
    out = tmp_path / "eps.jsonl"
    csv_out = tmp_path / "eps.csv"
    assert main(["replay", edf, "--episodes", str(out), "--csv", str(csv_out)]) == 0
    table = capsys.readouterr().out
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    from crampwatch.firmware_bridge.labels import read_labels
    # the fixture night holds a 3 min cramp and one of exactly 10 s (at the 10 s
    # minimum duration: its rising edge leaves about 9 s above the floor)
    cramps = [lb for lb in read_labels(labels) if lb.kind == "cramp"]
    assert len(cramps) == 2
    long_ones = [c for c in cramps if c.offset_s - c.onset_s > 12.0]
    assert len(recs) >= len(long_ones) >= 1
    for r in recs:
        for key in ("onset_s", "offset_s", "duration_s", "onset", "offset", "peak_rms_uv",
                    "mean_rms_uv", "confidence", "channel"):
            assert key in r
        assert r["duration_s"] == pytest.approx(r["offset_s"] - r["onset_s"], abs=1e-3)
        assert 0.0 <= r["confidence"] <= 1.0 and r["onset"].endswith("+00:00")
        assert r["channel"] == "EMG calf"
    assert f"{len(recs)} episode" in table
    assert csv_out.read_text().count("\n") == len(recs) + 1
    for c in long_ones:
        assert min(abs(r["onset_s"] - c.onset_s) for r in recs) < 2.0


def test_set_overrides_change_the_result(sim_night, tmp_path):
    edf, _ = sim_night
    out = tmp_path / "eps.jsonl"
    assert main(["replay", edf, "--episodes", str(out), "--quiet",
                 "--set", "min_duration_s=600"]) == 0
    assert out.read_text() == ""               # no cramp in the night lasts 10 minutes


def test_evaluate_reports_metrics(sim_night, tmp_path, capsys):
    edf, labels = sim_night
    js = tmp_path / "m.json"
    assert main(["evaluate", edf, "--labels", labels, "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "precision / recall / F1" in out
    m = json.loads(js.read_text())["pooled"]
    assert m["n_labelled"] == 2 and m["true_positives"] >= 1
    assert m["false_positives"] == 0
    # with a shorter minimum duration the 10 s cramp is found too
    assert main(["evaluate", edf, "--labels", labels, "--json", str(js),
                 "--set", "min_duration_s=8"]) == 0
    m = json.loads(js.read_text())["pooled"]
    assert m["recall"] == 1.0 and m["false_positives"] == 0


@pytest.mark.parametrize("case", ["missing", "not_edf", "empty", "directory"])
def test_unreadable_files(case, tmp_path, capsys):
    p = tmp_path / "x.edf"
    if case == "not_edf":
        p.write_text("time,emg\n0,1\n")
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "directory":
        p.mkdir()
    assert main(["replay", str(p)]) == 2
    (line,) = _err(capsys)
    assert str(p) in line


def test_no_emg_channel_lists_the_labels(tmp_path, capsys):
    p = _edf(tmp_path / "eeg.edf", [("Fp1", "uV", None), ("Fp2", "uV", None)])
    assert main(["replay", p]) == 2
    (line,) = _err(capsys)
    assert "Fp1" in line and "Fp2" in line
    assert main(["replay", p, "--emg", "Fp2", "--quiet"]) == 0      # chosen by label


def test_unknown_unit_names_channel_and_unit(tmp_path, capsys):
    p = _edf(tmp_path / "u.edf", [("EMG calf", "furlong", None)])
    assert main(["replay", p]) == 2
    (line,) = _err(capsys)
    assert "EMG calf" in line and "furlong" in line


def test_flat_emg_is_a_clear_error(tmp_path, capsys):
    p = _edf(tmp_path / "flat.edf", [("EMG calf", "uV", np.full(30000, 12.0))])
    assert main(["replay", p]) == 2
    (line,) = _err(capsys)
    assert "flat" in line and "EMG calf" in line


def test_bad_set_is_a_clear_error(sim_night, capsys):
    assert main(["replay", sim_night[0], "--set", "min_duration=3"]) == 2
    (line,) = _err(capsys)
    assert "min_duration" in line


def test_millivolt_channel_and_low_rate_warning(tmp_path, caplog):
    rng = np.random.default_rng(1)
    fs = 250.0
    x_mv = rng.normal(0, 0.002, int(90 * fs))
    x_mv[int(30 * fs):int(60 * fs)] += rng.normal(0, 0.1, int(30 * fs))   # 100 uV, 30 s
    p = _edf(tmp_path / "mv.edf", [("EMG gastro", "mV", x_mv)], fs=fs, seconds=90)
    out = tmp_path / "e.jsonl"
    assert main(["replay", p, "--episodes", str(out), "--quiet"]) == 0
    assert "narrowed" in caplog.text and "250" in caplog.text
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert abs(rec["onset_s"] - 30.0) < 1.0 and abs(rec["offset_s"] - 60.0) < 2.0
    assert 40.0 < rec["mean_rms_uv"] < 140.0          # mV converted to uV (band-limited)


def test_truncated_edf_is_read_up_to_its_last_record(sim_night, tmp_path, capsys, caplog):
    src, _ = sim_night
    cut = tmp_path / "cut.edf"
    shutil.copy(src, cut)
    size = os.path.getsize(cut)
    with open(cut, "r+b") as fh:
        fh.truncate(int(size * 0.6) + 123)          # cut mid-record
    out = tmp_path / "e.jsonl"
    assert main(["replay", str(cut), "--episodes", str(out)]) == 0
    captured = capsys.readouterr()
    assert "truncated" in caplog.text
    assert "0.25 h" in captured.out or "0.24 h" in captured.out   # 60 % of 25 min
