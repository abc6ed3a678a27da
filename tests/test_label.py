"""crampwatch label: verdicts stored in the log, shown and counted by review, used as labels
by evaluate --db; unknown ids and missing logs are one-line errors."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timezone

import pytest
from crampwatch.firmware_bridge.edf import write_edf
from crampwatch.firmware_bridge.labels import write_labels
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
from crampwatch.tools.cli import main

START = datetime(2025, 2, 3, 22, 15, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A 15 min night with two cramps (EDF+) and its labels file."""
    d = tmp_path_factory.mktemp("label")
    edf = d / "night.edf"
    sim = SyntheticNight(NightSpec(hours=0.25, seed=3, n_cramps=2, start_utc=START))
    write_edf(edf, sim)
    write_labels(d / "night.labels.csv", sim.labels)
    return edf


@pytest.fixture()
def night(recording, tmp_path):
    """The recording replayed into a fresh log (two detected episodes)."""
    edf, d = recording, recording.parent
    db = tmp_path / "episodes.sqlite"
    assert main(["replay", str(edf), "--db", str(db), "--quiet"]) == 0
    con = sqlite3.connect(db)
    ids = [r[0] for r in con.execute("SELECT episode_id FROM episodes ORDER BY onset_utc")]
    con.close()
    assert len(ids) >= 2
    return {"edf": str(edf), "db": str(db), "ids": ids, "labels": str(d / "night.labels.csv")}


def _verdicts(db):
    con = sqlite3.connect(db)
    try:
        return {r[0]: (r[1], r[2], r[3]) for r in con.execute(
            "SELECT episode_id, verdict, verdict_note, verdict_utc FROM episodes")}
    finally:
        con.close()


def test_verdicts_are_stored_shown_and_not_counted_when_false(night, capsys):
    a, b = night["ids"][:2]
    n = len(night["ids"])
    assert main(["label", str(a), "--confirmed", "--db", night["db"]]) == 0
    assert main(["label", str(b), "--false", "--note", "I was stretching", "--db",
                 night["db"]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"episode #{a} (night 2025-02-03, ") and "marked confirmed" in out[0]
    assert out[1].endswith("marked false; note: I was stretching")
    v = _verdicts(night["db"])
    assert v[a][:2] == ("confirmed", None) and v[b][:2] == ("false", "I was stretching")
    assert v[a][2] and v[b][2]                                   # when, in UTC

    assert main(["review", "--db", night["db"]]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"Cramps\s+{n - 1}\b", out) and re.search(r"Marked false\s+1\b", out)
    assert f"note #{b}: I was stretching" in out
    assert re.search(rf"^\s+{b}\s.*\bfalse\s*$", out, re.M)
    assert main(["review", "--db", night["db"], "--json"]) == 0
    recs = {r["episode_id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert recs[a]["verdict"] == "confirmed" and recs[b]["verdict_note"] == "I was stretching"

    assert main(["label", str(b), "--clear", "--db", night["db"]]) == 0
    assert "verdict cleared" in capsys.readouterr().out
    assert _verdicts(night["db"])[b][:2] == (None, None)
    assert main(["review", "--db", night["db"]]) == 0
    assert re.search(rf"Cramps\s+{n}\b", capsys.readouterr().out)


def test_unknown_episode_and_missing_log_are_one_line_errors(night, tmp_path, capsys):
    before = _verdicts(night["db"])
    assert main(["label", "9999", "--false", "--db", night["db"]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no episode #9999" in err
    assert f"ids {min(night['ids'])} to {max(night['ids'])}" in err
    assert _verdicts(night["db"]) == before
    missing = tmp_path / "none.sqlite"
    assert main(["label", "1", "--confirmed", "--db", str(missing)]) == 2
    assert "no episode log at" in capsys.readouterr().err
    assert not missing.exists()
    with pytest.raises(SystemExit) as exc:            # a verdict is required
        main(["label", "1", "--db", night["db"]])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["label", "1", "--false", "--confirmed", "--db", night["db"]])


def test_evaluate_takes_the_verdicts_as_labels(night, tmp_path, capsys):
    a, b = night["ids"][:2]
    others = len(night["ids"]) - 2            # without a verdict
    main(["label", str(a), "--confirmed", "--db", night["db"]])
    main(["label", str(b), "--false", "--db", night["db"]])
    out_json = tmp_path / "m.json"
    assert main(["evaluate", night["edf"], "--db", night["db"], "--json", str(out_json)]) == 0
    assert "2 verdict(s) from the log" in capsys.readouterr().out
    m = json.loads(out_json.read_text())["pooled"]
    assert m["n_reported"] == 2 and m["n_labelled"] == 1 and m["true_positives"] == 1
    assert m["false_positives"] == 1 and m["false_positives_by_kind"] == {"user_false": 1}

    # without a verdict the second episode is neither a hit nor a false positive
    main(["label", str(b), "--clear", "--db", night["db"]])
    assert main(["evaluate", night["edf"], "--db", night["db"], "--json", str(out_json)]) == 0
    assert f"{1 + others} episode(s) without a verdict left out" in capsys.readouterr().out
    m = json.loads(out_json.read_text())["pooled"]
    assert (m["n_reported"], m["true_positives"], m["false_positives"]) == (1, 1, 0)

    # the labels file still works as before, and adds to the verdicts
    assert main(["evaluate", night["edf"], "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["pooled"]["n_labelled"] == 2
    assert main(["evaluate", night["edf"], "--labels", night["labels"], "--db", night["db"],
                 "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["pooled"]["n_labelled"] == 3   # 2 + 1 confirmed
    capsys.readouterr()


def test_evaluate_db_errors(night, tmp_path, capsys):
    other = tmp_path / "other.edf"
    write_edf(other, SyntheticNight(NightSpec(hours=0.02, seed=1, n_cramps=1,
                                              start_utc=START, every_kind=False)))
    assert main(["evaluate", str(other), "--db", night["db"]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not in the episode log" in err
    assert main(["evaluate", night["edf"], "--db", night["db"]]) == 2      # no verdict yet
    err = capsys.readouterr().err
    assert "no verdicts" in err and "crampwatch label" in err


def test_a_confirmed_uncertain_episode_counts_and_verdicts_keep_to_their_leg(tmp_path, capsys):
    """An uncertain episode is not counted until the sleeper confirms it; verdict labels
    for evaluation can be taken for one leg of a two-site recording."""
    from crampwatch.detector import Episode
    from crampwatch.tools.episode_log import EpisodeLog
    from crampwatch.tools.label import verdict_labels
    db = str(tmp_path / "episodes.sqlite")
    path = str(tmp_path / "two.cwrec")
    with EpisodeLog(db) as log:
        nid = log.night_for(START)
        rid = log.add_recording(nid, path, START, channel="EMG L calf,EMG R calf",
                                emg_fs_hz=1000.0)
        ids = [log.add_episode(nid, rid, START, Episode(i, on, on + 20.0, 90.0, 45.0, conf,
                                                        2.0, status), 1000.0, ch, site)
               for i, (on, conf, status, ch, site) in enumerate((
                   (100.0, 0.9, "closed", "EMG L calf", "left_calf"),
                   (400.0, 0.2, "uncertain", "EMG R calf", "right_calf")))]
    assert main(["review", "--db", db]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Cramps\s+1,", out) and re.search(r"Uncertain\s+1 ", out)
    assert main(["label", str(ids[1]), "--confirmed", "--db", db]) == 0
    assert main(["review", "--db", db]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Cramps\s+2,", out) and "Uncertain" not in out
    main(["label", str(ids[0]), "--false", "--db", db])
    with EpisodeLog(db, create=False) as log:
        assert verdict_labels(log, path, site="right_calf") == ([("cramp", 400.0, 420.0)], [])
        assert verdict_labels(log, path, site="left_calf") == (
            [("user_false", 100.0, 120.0)], [])
        assert len(verdict_labels(log, path)[0]) == 2
        assert verdict_labels(log, str(tmp_path / "other.cwrec")) is None
