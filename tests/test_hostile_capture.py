"""Trust nothing from the wire, the file, the disk or the user: the capture side.

- a firmware glitch (one open frame, valid CRC, counter + 10**8) through real
  processes: board-sim on a pty -> ``crampwatch capture`` -> SQLite: the cramp
  after it is logged, and its hook fired, within 5 s of when it happened;
- capture settings are checked when loaded (finite, in range, right type, the
  range in the message) and any unreadable config file is one line, exit 2;
- failures are loud: a dead recording writer stops the capture (exit 1, the
  reason in the journal); samples not stored are counted in the summary and
  the review; rows the episode log could not take while another process held
  it locked are written once it is free; the log's schema version is checked.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from boardsim_helpers import BoardSimProcess, db_rows

from crampwatch._validate import check_number
from crampwatch.detector import DetectorConfig
from crampwatch.errors import ConfigError
from crampwatch.firmware_bridge import recording
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
from crampwatch.tools.capture import daemon as capture_daemon
from crampwatch.tools.capture.daemon import CaptureDaemon
from crampwatch.tools.capture.config import CaptureConfig, load_config
from crampwatch.tools.cli import main
from crampwatch.tools.episode_log import SCHEMA_VERSION, EpisodeLog

SIM = "sim://?seed=2&hours=0.05"          # 3 min: cramps at 26, 84 and 131 s




rows = db_rows


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("crampwatch: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# --------------------------------------------------------------------------- 1. the glitch
@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs ptys")
def test_a_counter_glitch_does_not_move_the_cramps_after_it(tmp_path):
    """Real board-sim (open frame at 2 kHz, pty, 35x) with one frame whose counter jumps
    by 10**8 (13.9 h of samples) at 100 s -> real capture process -> every cramp logged
    after the glitch is in SQLite within 5 s of when it happened (they were 14 h late),
    and the onset hook says the same; the recording holds the one dropped frame as a
    20-sample gap, and replay agrees."""
    home = tmp_path / "home"
    hook_out = tmp_path / "hook.txt"
    night = SyntheticNight(NightSpec(hours=0.15, seed=2))
    onsets = [lab.onset_s for lab in night.labels if lab.kind == "cramp"]
    glitch_s, until_s = 100.0, 345.0
    assert any(glitch_s < t < until_s - 20 for t in onsets)
    with BoardSimProcess("--protocol", "open", "--pty", "--speed", "35", "--hours", "0.15",
                         "--seed", "2", "--emg-fs", "2000", "--acc-fs", "200",
                         "--counter-glitch", f"{glitch_s:g}") as sim:
        proc = subprocess.run(
            [sys.executable, "-m", "crampwatch.tools.cli", "capture",
             "--source", f"serial://{sim.where}?board=open", "--duration", f"{until_s:g}",
             "--set", f"hook=sh -c 'echo $CRAMPWATCH_ONSET_S >> {hook_out}'"],
            env={**os.environ, "CRAMPWATCH_HOME": str(home)}, capture_output=True, text=True,
            timeout=90)
        sim.terminate()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sim.tally["glitched"] == [[200_000, 10**8]]
    db = home / "episodes.sqlite"
    rec = rows(db, "SELECT * FROM recordings")[0]
    assert rec["samples"] == until_s * 2000             # not 14 h of "signal"
    eps = rows(db, "SELECT * FROM episodes ORDER BY onset_s")
    after = [e for e in eps if e["onset_s"] > glitch_s]
    assert after, ("the detector found no cramp after the glitch", proc.stderr[-3000:])
    from crampwatch.tools.episode_log import parse_utc
    for e in eps:
        nearest = min(onsets, key=lambda t: abs(t - e["onset_s"]))
        assert abs(e["onset_s"] - nearest) <= 5.0, (e["onset_s"], onsets)
        wall = (parse_utc(e["onset_utc"]) - parse_utc(rec["started_utc"])).total_seconds()
        assert abs(wall - nearest) <= 5.0
    hooks = [float(x) for x in hook_out.read_text().split()]
    assert len(hooks) == len(eps)
    assert all(min(abs(h - t) for t in onsets) <= 5.0 for h in hooks), (hooks, onsets)
    gaps = rows(db, "SELECT * FROM gaps WHERE stream='emg'")
    assert [(g["first_index"], g["n_samples"], g["cause"]) for g in gaps] == \
        [(200_000, 20, "corrupt_frame")]
    assert "implausible counter" in proc.stderr
    out = tmp_path / "replay.jsonl"
    assert main(["replay", rec["path"], "--episodes", str(out), "--quiet"]) == 0
    rep = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(min(abs(r["onset_s"] - t) for t in onsets) <= 5.0 for r in rep)


# --------------------------------------------------------------------------- 3. config
def test_the_range_helper_names_the_range():
    assert check_number("x", "2", 1, 3, int) == 2
    for bad in ("inf", "-inf", "nan", "1e999", 10**400, True, [1], {"a": 1}, "0x10", ""):
        with pytest.raises(ConfigError, match=r"allowed: 1 <= x <= 3"):
            check_number("x", bad, 1, 3, float)


@pytest.mark.parametrize("assignment, words", [
    ("fsync_interval_s=inf", ["fsync_interval_s=inf", "finite", "0.01 <= fsync_interval_s <= 60"]),
    ("fsync_interval_s=nan", ["finite"]),
    ("fsync_interval_s=1e999", ["finite"]),
    ("fsync_interval_s=0", ["out of range"]),
    ("stall_s=-1", ["out of range", "0.1 <= stall_s <= 3600 (s)"]),
    ("write_queue_mb=1e12", ["out of range", "(MB)"]),
    ("log_interval_s=soon", ["not a number"]),
    ("hook_timeout_s=", ["not a number"]),
    ("lsl=maybe", ["not a valid bool"]),
])
def test_bad_set_values_are_refused_with_their_range(home, capsys, assignment, words):
    assert main(["capture", "--source", SIM + "&speed=max", "--set", assignment]) == 2
    err = one_line_error(capsys)
    for w in words:
        assert w in err, (w, err)
    assert not (home / "recordings").exists()           # refused before anything started


@pytest.mark.parametrize("toml, words", [
    ("[capture]\nfsync_interval_s = inf\n", ["fsync_interval_s=inf", "finite", "<= 60"]),
    ("[capture]\nfsync_interval_s = nan\n", ["finite"]),
    ("[capture]\nstall_s = true\n", ["not a boolean"]),
    ("[capture]\nstall_s = [1, 2]\n", ["not a list"]),
    ("[capture]\nsource = 7\n", ["source=7"]),
    ("[capture]\nhook = \"buzz\\u0000 now\"\n", ["hook", "control character"]),
    ("[capture]\nsource = \"" + "x" * 5000 + "\"\n", ["source", "at most 4096"]),
    ("[capture]\n[capture.deeper]\nx = 1\n", ["deeper"]),
    ("[detector]\nmin_duration_s = 1979-05-27\n", ["min_duration_s"]),
])
def test_bad_toml_values_are_one_line_errors(home, tmp_path, capsys, toml, words):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    for argv in (["capture", "--config", str(path)], ["config", "show", "--config", str(path)]):
        assert main(argv) == 2
        err = one_line_error(capsys)
        assert str(path) in err
        for w in words:
            assert w in err, (w, err)


def _unreadable_configs(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)) * 8)
    utf16 = tmp_path / "utf16.toml"
    utf16.write_text("[capture]\nsource = 'sim://'\n", encoding="utf-16")
    latin = tmp_path / "latin1.toml"
    latin.write_bytes("[capture]\nhook = 'caf\xe9'\n".encode("latin-1"))
    nested = tmp_path / "nested.toml"
    nested.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    nested_tables = tmp_path / "tables.toml"
    nested_tables.write_text("[" + ".".join(f"t{k}" for k in range(50)) + "]\nx = 1\n")
    huge = tmp_path / "huge.toml"
    huge.write_text("# padding\n" * 300_000)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    return {"binary": (binary, "binary or UTF-16"), "utf16": (utf16, "binary or UTF-16"),
            "latin1": (latin, "not UTF-8"), "nested": (nested, "nested too deeply"),
            "tables": (nested_tables, "nested too deeply"), "huge": (huge, "too large"),
            "fifo": (fifo, "not a regular file"), "dir": (tmp_path, "is a directory")}


def test_unreadable_config_files_are_one_line_exit_2(home, tmp_path, capsys):
    for name, (path, words) in _unreadable_configs(tmp_path).items():
        for argv in (["capture", "--config", str(path)],
                     ["config", "show", "--config", str(path)]):
            t0 = time.monotonic()
            assert main(argv) == 2, (name, argv)
            err = one_line_error(capsys)
            assert words in err and str(path) in err, (name, err)
            assert time.monotonic() - t0 < 5.0, name


def test_a_valid_config_still_loads(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_bytes(b"\xef\xbb\xbf[capture]\nfsync_interval_s = 2\nstall_s = 3\n")  # with a BOM
    cfg = load_config(str(path), ["log_interval_s=0"])
    assert cfg.capture.fsync_interval_s == 2.0 and cfg.capture.stall_s == 3.0
    assert cfg.capture.log_interval_s == 0.0
    with pytest.raises(ConfigError, match="fsync_interval_s"):
        CaptureConfig(fsync_interval_s=float("inf"))


# --------------------------------------------------------------------------- 4. loud failures
def test_a_dead_recording_writer_stops_the_capture_with_status_1(home, capsys, caplog,
                                                                 monkeypatch):
    """A bug in the writer thread: the capture stops by itself, exit status 1, and the
    reason is in the journal and the summary (it used to run on and exit 0 with an
    empty recording)."""
    def broken(self, closing):
        raise RuntimeError("writer bug for the test")
    monkeypatch.setattr(recording.CaptureWriter, "_attempt", broken)
    caplog.set_level(logging.INFO, logger="crampwatch")
    t0 = time.monotonic()
    assert main(["capture", "--source", SIM + "&speed=20"]) == 1
    assert time.monotonic() - t0 < 20.0                 # it stopped: the night is 9 s at 20x
    out = capsys.readouterr().out
    assert "FAILED: the recording writer stopped: RuntimeError: writer bug for the test" in out
    assert "stopped (recording writer failed)" in out
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("recording writer stopped" in m and "stopping" in m for m in errors), errors


def test_an_unwritable_recordings_directory_is_counted_not_hidden(home, tmp_path, capsys):
    """The recordings 'directory' is a file all night: nothing is stored.  The summary
    counts every sample that was not (it said '0 samples could not be stored'), the
    exit status is 1, and the review says the night is not in any file (it said
    '100 % good signal')."""
    out_dir = tmp_path / "recs"
    out_dir.write_text("not a directory")
    assert main(["capture", "--source", SIM + "&speed=max", "--out", str(out_dir),
                 "--set", "disk_retry_s=0.05"]) == 1
    out = capsys.readouterr().out
    assert not re.search(r"(?<!\d)0 samples could not be stored", out), out
    assert "samples could not be stored (180.0 s of EMG" in out, out
    assert "NO RECORDING FILE" in out
    db = home / "episodes.sqlite"
    rec = rows(db, "SELECT * FROM recordings")[0]
    assert rec["unstored_samples"] == 180_000 and "Not a directory" in rec["recording_error"]
    assert main(["review", "--db", str(db)]) == 0
    review = capsys.readouterr().out
    assert "NOT STORED   3 min 00 s of 3 min 00 s not in the recording" in review, review
    assert "file missing" in review


def _hold_lock(db: str):
    code = ("import sqlite3, sys\n"
            f"c = sqlite3.connect({db!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_rows_the_log_could_not_take_while_locked_are_written_later(home, monkeypatch,
                                                                    caplog, capsys):
    """Another process holds the episode log locked from minute 2 to minute 7 of a 9 min
    night (a cramp in between): the capture goes on, keeps the minute summaries and the
    episode it could not write, and writes them once the log is free.  The review then
    covers the whole night (it showed 2 min 25 s of 6 min 25 s as '100 % good')."""
    monkeypatch.setattr(capture_daemon, "DB_BUSY_S", 0.1)
    caplog.set_level(logging.INFO, logger="crampwatch")
    cfg = CaptureConfig(source="sim://?seed=2&hours=0.15&speed=60", db_update_s=0.2)
    daemon = CaptureDaemon(cfg, DetectorConfig())
    box = {}
    th = threading.Thread(target=lambda: box.update(summary=daemon.run()), daemon=True)
    th.start()
    db = str(home / "episodes.sqlite")
    deadline = time.monotonic() + 60
    while not (os.path.exists(db) and rows(db, "SELECT * FROM minutes")):
        assert time.monotonic() < deadline and th.is_alive()
        time.sleep(0.05)
    locker = _hold_lock(db)
    try:
        while daemon.session_samples < 420_000 and th.is_alive():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        during = rows(db, "SELECT * FROM minutes")
        episodes_during = rows(db, "SELECT * FROM episodes")
    finally:
        locker.stdin.close()
        locker.wait()
    th.join(60)
    assert not th.is_alive() and "summary" in box
    assert len(during) <= 2 and len(episodes_during) <= 1
    assert any("episode log" in r.getMessage() and "locked" in r.getMessage()
               for r in caplog.records if r.levelno >= logging.ERROR)
    minutes = rows(db, "SELECT * FROM minutes ORDER BY minute_utc")
    assert len(minutes) == 9 and all(m["good_s"] > 0 for m in minutes)
    # every episode the detector reported is in the log, closed, those that ended while
    # the log was locked too
    eps = rows(db, "SELECT * FROM episodes ORDER BY onset_s")
    ended = [r.getMessage() for r in caplog.records if " ended: " in r.getMessage()]
    assert len(eps) == len(ended) >= len(episodes_during)
    assert all(e["status"] == "closed" for e in eps)
    assert main(["review", "--db", db]) == 0
    review = capsys.readouterr().out
    assert "no summary" not in review and f"Cramps       {len(eps)}" in review, review


def test_the_review_counts_minutes_without_a_summary_as_unknown(home, capsys):
    assert main(["capture", "--source", SIM + "&speed=max"]) == 0
    capsys.readouterr()
    db = str(home / "episodes.sqlite")
    con = sqlite3.connect(db)
    con.execute("DELETE FROM minutes WHERE minute_utc > (SELECT min(minute_utc) FROM minutes)")
    con.commit()
    con.close()
    good = rows(db, "SELECT good_s FROM minutes")[0]["good_s"]
    assert main(["review", "--db", db]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "Good signal" in ln)
    # of the 3 min recorded, not of the 1 min summarised
    assert f"({100 * good / 180:.0f} %)" in line and "no summary 2 min 00 s" in out, out


# --------------------------------------------------------------------------- 4. schema
_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE nights (night_id INTEGER PRIMARY KEY, night_date TEXT NOT NULL UNIQUE,
    tz_offset_s INTEGER NOT NULL, created_utc TEXT NOT NULL);
CREATE TABLE recordings (recording_id INTEGER PRIMARY KEY, night_id INTEGER NOT NULL,
    path TEXT NOT NULL, source TEXT, channel TEXT, emg_fs_hz REAL, acc_fs_hz REAL,
    started_utc TEXT NOT NULL, ended_utc TEXT, samples INTEGER NOT NULL DEFAULT 0,
    gap_samples INTEGER NOT NULL DEFAULT 0, UNIQUE (path));
CREATE TABLE gaps (gap_id INTEGER PRIMARY KEY, recording_id INTEGER NOT NULL, stream TEXT,
    first_index INTEGER, n_samples INTEGER, start_utc TEXT, duration_s REAL, cause TEXT);
CREATE TABLE minutes (recording_id INTEGER NOT NULL, minute_utc TEXT NOT NULL, rms_uv REAL,
    rms_p95_uv REAL, floor_uv REAL, motion_g REAL, good_s REAL, artifact_s REAL,
    nodata_s REAL, PRIMARY KEY (recording_id, minute_utc));
CREATE TABLE episodes (episode_id INTEGER PRIMARY KEY, night_id INTEGER NOT NULL,
    recording_id INTEGER, onset_utc TEXT NOT NULL, offset_utc TEXT, onset_s REAL NOT NULL,
    offset_s REAL, duration_s REAL, onset_sample INTEGER, offset_sample INTEGER,
    peak_rms_uv REAL, mean_rms_uv REAL, confidence REAL, channel TEXT,
    status TEXT NOT NULL, verdict TEXT, verdict_note TEXT, verdict_utc TEXT,
    created_utc TEXT NOT NULL, updated_utc TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO nights VALUES (1, '2026-03-05', 3600, '2026-03-05T22:00:00+00:00');
INSERT INTO recordings (recording_id, night_id, path, emg_fs_hz, started_utc, ended_utc,
    samples) VALUES (1, 1, '/nowhere/n.cwrec', 1000.0, '2026-03-05T22:00:00.000+00:00',
    '2026-03-05T23:00:00.000+00:00', 3600000);
"""


def test_an_older_log_is_migrated_a_newer_one_refused(tmp_path, capsys):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.executescript(_V1_SCHEMA)
    con.close()
    assert main(["review", "--db", str(db), "--night", "2026-03-05"]) == 0
    assert "Night of Thu 2026-03-05" in capsys.readouterr().out
    assert rows(db, "SELECT value FROM meta")[0]["value"] == str(SCHEMA_VERSION)
    assert rows(db, "SELECT unstored_samples FROM recordings")[0]["unstored_samples"] == 0
    with EpisodeLog(str(db)) as log:                    # idempotent
        assert log.recordings(1)[0]["samples"] == 3_600_000

    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    before = db.read_bytes()
    for argv in (["review", "--db", str(db)], ["label", "1", "--false", "--db", str(db)],
                 ["replay", "--db", str(db), "recordings/sample_night.edf", "--quiet"]):
        assert main(argv) == 2, argv
        err = one_line_error(capsys)
        assert "schema version 99" in err and "upgrade crampwatch" in err, err
    assert db.read_bytes() == before                     # never touched

    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE photos (id INTEGER)")
    con.commit()
    con.close()
    assert main(["review", "--db", str(other)]) == 2
    assert "not a crampwatch episode log" in one_line_error(capsys)
    assert rows(other, "SELECT name FROM sqlite_master") == [{"name": "photos"}]


def test_a_locked_log_says_it_is_locked(tmp_path, capsys):
    db = str(tmp_path / "episodes.sqlite")
    EpisodeLog(db).close()
    code = ("import sqlite3, sys\n"
            f"c = sqlite3.connect({db!r}, isolation_level=None)\n"
            "c.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "c.execute(\"INSERT INTO meta VALUES ('x', 'y')\")\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        assert main(["review", "--db", db]) == 2
        err = one_line_error(capsys)
        assert "locked by another process" in err and "not a crampwatch" not in err
        assert time.monotonic() - t0 < 10
    finally:
        p.stdin.close()
        p.wait()
    assert main(["review", "--db", db]) == 0
