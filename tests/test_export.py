"""crampwatch export: EDF+ written with pyedflib read back with edfio (samples within one
quantisation step, episode annotations equal to the log), from a crash-safe capture with a
gap and from EDF; windows; the detector when the recording is not in the log; CSV with the
accelerometer held at the EMG rate and an episodes file; one-line errors."""

from __future__ import annotations

import csv
import json
import math
import warnings
from datetime import datetime, timedelta, timezone

import edfio
import numpy as np
import pyedflib
import pytest
from crampwatch.firmware_bridge.edf import write_edf
from crampwatch.firmware_bridge.readers import open_recording
from crampwatch.firmware_bridge.recording import CaptureWriter, RecordingHeader
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo
from crampwatch.tools.cli import main

START = datetime(2025, 3, 2, 22, 50, tzinfo=timezone.utc)
GAP_S = (200.0, 220.0)                       # lost in the capture (a radio drop-out)
EMG_STEP_UV = 2 * 5000.0 / (2 * 32767)       # write_edf's default range over 16 bits
ACC_STEP_G = 2 * 4.0 / (2 * 32767)


def _read_all(path):
    """Every sample of a recording by index: EMG (uV) and acc (g), NaN where missing."""
    with open_recording(path) as r:
        n_e = int(round(r.duration_s * r.emg.fs_hz))
        n_a = int(round(r.duration_s * r.acc.fs_hz))
        emg, acc = np.full(n_e, np.nan), np.full((n_a, 3), np.nan)
        for b in r.blocks(30.0):
            if isinstance(b, SampleBlock):
                dst = emg if b.stream == "emg" else acc
                dst[b.first_index:b.end_index] = b.data[:, 0] if b.stream == "emg" else b.data
        return emg, acc, r.start_time


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """The same 15 min night as EDF+ and as a capture recording with a 20 s gap, both
    replayed into one episode log."""
    d = tmp_path_factory.mktemp("export")
    edf = d / "night.edf"
    write_edf(edf, SyntheticNight(NightSpec(hours=0.25, seed=3, n_cramps=2, start_utc=START)))
    cap = d / "night.cwrec"
    hdr = RecordingHeader(emg=StreamInfo("emg", 1000.0, ("gastroc_l",), "uV"),
                          acc=StreamInfo("acc", 100.0, ("x", "y", "z"), "g"),
                          board="sim", source_url="sim://", start_time=START)
    with open_recording(edf) as r, CaptureWriter(cap, hdr) as w:
        gap_written = set()
        for k, b in enumerate(r.blocks(5.0)):
            if k % 100 == 99:      # far faster than real time: let the writer keep up
                w.flush()
            if not isinstance(b, SampleBlock):
                continue
            t0, t1 = b.first_index / b.fs_hz, b.end_index / b.fs_hz
            if t1 > GAP_S[0] and t0 < GAP_S[1]:
                if b.stream not in gap_written:
                    i0 = int(GAP_S[0] * b.fs_hz)
                    w.write_event(SourceEvent("gap", START.timestamp() + GAP_S[0],
                                              stream=b.stream, first_index=i0,
                                              n_samples=int(GAP_S[1] * b.fs_hz) - i0))
                    gap_written.add(b.stream)
                continue
            w.write_block(b)
    db = d / "episodes.sqlite"
    assert main(["replay", str(edf), str(cap), "--db", str(db), "--quiet"]) == 0
    return {"dir": d, "edf": str(edf), "cap": str(cap), "db": str(db)}


def _log_episodes(db, path):
    import sqlite3
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute(
        "SELECT e.* FROM episodes e JOIN recordings r USING (recording_id) WHERE r.path=? "
        "ORDER BY onset_s", (path,))]
    con.close()
    return rows


def _edfio_annotations(edf):
    return [(a.onset, a.duration, a.text) for a in edf.annotations]


def test_capture_to_edf_reads_back_with_edfio(nights, tmp_path, capsys):
    out = tmp_path / "clinic.edf"
    assert main(["export", nights["cap"], "--edf", str(out), "--db", nights["db"]]) == 0
    assert "from the episode log" in capsys.readouterr().out
    emg, acc, start = _read_all(nights["cap"])

    e = edfio.read_edf(out)                      # not the writer's library
    assert [s.label for s in e.signals] == ["EMG gastroc_l", "Acc X", "Acc Y", "Acc Z"]
    assert [s.sampling_frequency for s in e.signals] == [1000.0, 100.0, 100.0, 100.0]
    assert e.startdatetime == START.replace(tzinfo=None)
    got_emg = e.signals[0].data
    assert len(got_emg) == len(emg)
    have = np.isfinite(emg)
    assert have.sum() == len(emg) - 20_000                       # the gap is missing...
    assert np.max(np.abs(got_emg[have] - emg[have])) <= EMG_STEP_UV / 2 + 1e-6
    assert np.all(got_emg[~have] == 0.0)                         # ...zero-filled in the EDF
    for k in range(3):
        got = e.signals[1 + k].data
        ok = np.isfinite(acc[:, k])
        assert np.max(np.abs(got[ok] - acc[ok, k])) <= ACC_STEP_G / 2 + 1e-9

    eps = _log_episodes(nights["db"], nights["cap"])
    assert eps
    ann = _edfio_annotations(e)
    cramps = [a for a in ann if a[2].startswith("cramp ")]
    assert len(cramps) == len(eps)
    for (onset, dur, text), ep in zip(cramps, eps):
        assert onset == pytest.approx(ep["onset_s"], abs=1e-3)
        assert dur == pytest.approx(ep["offset_s"] - ep["onset_s"], abs=1e-3)
        assert ep["site"] == "left_calf"                      # from the label gastroc_l
        assert text == f"cramp left_calf #{ep['episode_id']} conf {ep['confidence']:.2f}"
    gaps = [a for a in ann if "gap" in a[2]]
    assert len(gaps) == 1 and gaps[0][0] == pytest.approx(GAP_S[0], abs=1e-3)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pyedflib.EdfReader(str(out)) as r:          # edflib's strict EDF+ check
            texts = list(r.readAnnotations()[2])
    assert [t for t in texts if t.startswith("cramp ")] == [a[2] for a in cramps]


def test_edf_window_with_verdicts(nights, tmp_path, capsys):
    eps = _log_episodes(nights["db"], nights["edf"])
    first = eps[0]
    assert main(["label", str(first["episode_id"]), "--false", "--db", nights["db"]]) == 0
    out = tmp_path / "window.edf"
    t0, dur = math.floor(first["onset_s"]) - 5.0, 60.0
    assert main(["export", nights["edf"], "--edf", str(out), "--db", nights["db"],
                 "--start-s", str(t0), "--duration-s", str(dur)]) == 0
    assert "1 episode annotation," in capsys.readouterr().out
    emg, acc, start = _read_all(nights["edf"])
    e = edfio.read_edf(out)
    assert e.startdatetime == (START + timedelta(seconds=t0)).replace(tzinfo=None)
    got = e.signals[0].data
    assert len(got) == int(dur * 1000)
    ref = emg[int(t0 * 1000):int((t0 + dur) * 1000)]
    assert np.max(np.abs(got - ref)) <= 1e-3        # EDF to EDF, same range: same steps
    (onset, d, text), = [a for a in _edfio_annotations(e) if a[2].startswith("cramp")]
    assert onset == pytest.approx(first["onset_s"] - t0, abs=1e-3)
    assert d == pytest.approx(min(first["offset_s"], t0 + dur) - first["onset_s"], abs=1e-3)
    assert text == (f"cramp {first['site']} #{first['episode_id']} conf "
                    f"{first['confidence']:.2f} false")
    main(["label", str(first["episode_id"]), "--clear", "--db", nights["db"]])
    capsys.readouterr()


def test_recording_not_in_the_log_runs_the_detector(nights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRAMPWATCH_HOME", str(tmp_path / "fresh"))     # no log at all
    jsonl = tmp_path / "replay.jsonl"
    assert main(["replay", nights["edf"], "--episodes", str(jsonl), "--quiet"]) == 0
    want = [json.loads(x) for x in jsonl.read_text().splitlines()]
    out = tmp_path / "detected.edf"
    assert main(["export", nights["edf"], "--edf", str(out)]) == 0
    assert "found by running the detector (no episode log)" in capsys.readouterr().out
    got = [a for a in _edfio_annotations(edfio.read_edf(out)) if a[2].startswith("cramp")]
    assert [(round(a[0], 3), a[2]) for a in got] == \
        [(w["onset_s"], f"cramp {w['site']} #{w['episode_id']} conf {w['confidence']:.2f}")
         for w in want]
    assert not (tmp_path / "fresh" / "episodes.sqlite").exists()


def test_csv_holds_the_accelerometer_and_lists_the_episodes(nights, tmp_path, capsys):
    eps = _log_episodes(nights["db"], nights["cap"])
    first = eps[0]
    t0 = math.floor(first["offset_s"]) - 30.0           # the end of a cramp, then the gap
    t1 = GAP_S[1] + 10.0
    out = tmp_path / "night.csv"
    assert main(["export", nights["cap"], "--csv", str(out), "--db", nights["db"],
                 "--start-s", str(t0), "--duration-s", str(t1 - t0)]) == 0
    msg = capsys.readouterr().out
    assert "time_s 0 = " in msg and "night.episodes.csv: 1 of" in msg
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["time_s", "emg_uv", "acc_x_g", "acc_y_g", "acc_z_g"]
    table = np.array([[float(x) if x else np.nan for x in r] for r in rows[1:]])
    emg, acc, _ = _read_all(nights["cap"])
    idx = np.rint(table[:, 0] * 1000).astype(int)
    expect_idx = np.array([i for i in range(int(t0 * 1000), int(t1 * 1000))
                           if np.isfinite(emg[i])])
    assert np.array_equal(idx, expect_idx)                       # the gap rows are absent
    assert np.max(np.abs(table[:, 1] - emg[idx])) <= 0.0005 + 1e-9
    held = acc[np.floor(idx / 10).astype(int)]                  # latest acc sample at/before
    both = np.isfinite(held[:, 0])
    assert both.sum() > 0.9 * len(idx)
    assert np.max(np.abs(table[both, 2:] - held[both])) <= 0.000005 + 1e-9
    with open(tmp_path / "night.episodes.csv", newline="") as fh:
        ep_rows = list(csv.DictReader(fh))
    assert len(ep_rows) == 1
    assert int(ep_rows[0]["episode_id"]) == first["episode_id"]
    assert float(ep_rows[0]["onset_s"]) == pytest.approx(first["onset_s"], abs=1e-3)
    assert ep_rows[0]["onset"] == first["onset_utc"] and ep_rows[0]["source"] == "log"
    assert (ep_rows[0]["site"], ep_rows[0]["channel"]) == ("left_calf", first["channel"])


def test_export_errors_are_one_line(nights, tmp_path, capsys):
    cases = [
        (["export", str(tmp_path / "nope.cwrec"), "--edf", str(tmp_path / "o.edf")],
         "no such file"),
        (["export", nights["edf"], "--edf", str(tmp_path / "o.edf"), "--db",
          str(tmp_path / "none.sqlite")], "no episode log at"),
        (["export", nights["edf"], "--csv", str(tmp_path / "o.csv"), "--db", nights["db"],
          "--start-s", "99999"], "is only 900.0 s long"),
        (["export", nights["edf"], "--edf", nights["edf"], "--db", nights["db"]],
         "is one of the inputs"),
    ]
    for argv, text in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("crampwatch: ") and err.count("\n") == 1 and text in err, err
    assert not list(tmp_path.glob("o.*"))
