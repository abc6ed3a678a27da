"""crampwatch review: the terminal summary (local time, 80 columns, colour only on a real
terminal), --json against replay --episodes, --list, one-line errors, an empty log, a night
without recording, a night without episodes, a 365-night log, and a new user's first morning
with the installed command."""

from __future__ import annotations

import json
import os
import pty
import re
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from crampwatch.detector import Episode
from crampwatch.firmware_bridge.edf import write_edf
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
from crampwatch.tools.cli import main
from crampwatch.tools.episode_log import EpisodeLog, utc_iso

TZ_NAME = "America/New_York"
START = datetime(2025, 1, 15, 3, 40, tzinfo=timezone.utc)   # 22:40 on the 14th in New York
SECOND_START = START + timedelta(minutes=25)                 # after a 10 min hole
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CLI = os.path.join(os.path.dirname(sys.executable), "crampwatch")


@pytest.fixture(scope="module", autouse=True)
def new_york_time():
    """Local time is New York for the whole module (and the commands it starts)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = TZ_NAME
    time.tzset()
    yield ZoneInfo(TZ_NAME)
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture(scope="module")
def night(tmp_path_factory, new_york_time):
    """One night of two recordings (15 min, a 10 min hole, 6 min), replayed into a log."""
    d = tmp_path_factory.mktemp("review")
    a, b = d / "a.edf", d / "b.edf"
    write_edf(a, SyntheticNight(NightSpec(hours=0.25, seed=3, n_cramps=2, start_utc=START)))
    write_edf(b, SyntheticNight(NightSpec(hours=0.1, seed=5, n_cramps=1,
                                          start_utc=SECOND_START)))
    db = d / "episodes.sqlite"
    jsonl = d / "replay.jsonl"
    assert main(["replay", str(a), str(b), "--db", str(db), "--episodes", str(jsonl),
                 "--quiet"]) == 0
    replay = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(replay) >= 2
    return {"dir": d, "db": str(db), "a": str(a), "b": str(b), "replay": replay}


def _rows(db, sql, args=()):
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()


def test_summary_is_local_time_and_fits_80_columns(night, capsys, new_york_time):
    assert main(["review", "--db", night["db"]]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert not ANSI.search(out), "colour codes although stdout is not a terminal"
    assert max(len(line) for line in lines) <= 80
    eps = _rows(night["db"], "SELECT * FROM episodes ORDER BY onset_utc")
    assert len(eps) == len(night["replay"])
    tz = new_york_time
    for e in eps:
        on = datetime.fromisoformat(e["onset_utc"]).astimezone(tz)
        off = datetime.fromisoformat(e["offset_utc"]).astimezone(tz)
        row = [ln for ln in lines if re.match(rf"\s+{e['episode_id']}\s+{on:%H:%M:%S}\s", ln)]
        assert len(row) == 1, f"no table row for episode {e['episode_id']} at {on:%H:%M:%S}"
        assert f"{off:%H:%M:%S}" in row[0]
        assert f"{e['duration_s']:.1f}" in row[0]
    assert "Night of Tue 2025-01-14" in lines[0]
    assert "UTC-05:00" in lines[0]
    end_b = (SECOND_START + timedelta(hours=0.1)).astimezone(tz)
    assert f"Recorded     Tue 22:40 -> {end_b:%H:%M}, 21 min 00 s (2 recordings)" in out
    assert re.search(rf"Cramps\s+{len(eps)}\b", out)
    hole_start = (START + timedelta(hours=0.25)).astimezone(tz)
    assert re.search(rf"Gaps\s+1, 10 min 00 s: {hole_start:%H:%M:%S} \(10 min 00 s, "
                     r"between recordings\)", out)
    good, art, nod = _rows(night["db"], "SELECT sum(good_s) g, sum(artifact_s) a, "
                                        "sum(nodata_s) n FROM minutes")[0].values()
    assert f"({100 * good / (good + art + nod):.0f} %)" in out


def test_json_has_replay_fields_counted_from_the_first_recording(night, capsys):
    assert main(["review", "--db", night["db"], "--json"]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = night["replay"]
    assert len(got) == len(want)
    shift = {night["a"]: 0.0, night["b"]: (SECOND_START - START).total_seconds()}
    for g, w in zip(got, sorted(want, key=lambda r: r["onset"])):
        assert set(w) <= set(g)
        assert g["onset_s"] == pytest.approx(w["onset_s"] + shift[w["file"]], abs=1e-3)
        assert g["offset_s"] == pytest.approx(w["offset_s"] + shift[w["file"]], abs=1e-3)
        for key in ("duration_s", "onset", "offset", "peak_rms_uv", "mean_rms_uv",
                    "confidence", "channel", "status", "file"):
            assert g[key] == w[key], key
        assert g["night"] == "2025-01-14" and g["verdict"] is None
    ids = [r["episode_id"] for r in _rows(night["db"], "SELECT episode_id FROM episodes "
                                                       "ORDER BY onset_utc")]
    assert [g["episode_id"] for g in got] == ids       # the ids 'crampwatch label' takes


def _run_on_pty(args, env):
    """Run the installed command with its stdout on a real pseudo-terminal."""
    master, slave = pty.openpty()
    p = subprocess.Popen([CLI, *args], stdout=slave, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:          # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    os.close(master)
    return p.returncode, b"".join(chunks).decode().replace("\r\n", "\n"), err


def test_colour_on_a_terminal_only_and_never_with_no_color(night):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    rc, out, err = _run_on_pty(["review", "--db", night["db"]], env)
    assert rc == 0, err
    assert ANSI.search(out), "no colour on a terminal"
    assert max(len(ANSI.sub("", line)) for line in out.splitlines()) <= 80
    rc, plain, err = _run_on_pty(["review", "--db", night["db"]], dict(env, NO_COLOR="1"))
    assert rc == 0, err
    assert not ANSI.search(plain)
    assert plain == ANSI.sub("", out)


def test_errors_are_one_line_with_exit_status_2(night, tmp_path, capsys):
    missing = tmp_path / "nothing.sqlite"
    cases = [
        (["review", "--db", str(missing)], "no episode log at"),
        (["review", "--db", night["db"], "--night", "2025-02-30"], "not a valid date"),
        (["review", "--db", night["db"], "--night", "yesterday"], "give 'last' or a date"),
        (["review", "--db", night["db"], "--night", "2025-01-20"],
         "no night 2025-01-20 in the episode log"),
        (["review", "--db", night["db"], "--night", "2025-01-20"], "2025-01-14 to 2025-01-14"),
    ]
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    cases.append((["review", "--db", str(junk)], "not a crampwatch episode log"))
    for argv, text in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("crampwatch: ") and err.count("\n") == 1, err
        assert text in err
    assert not missing.exists(), "review must not create a log"


def _night_with_recording(log, start, minutes, path, episodes=()):
    nid = log.night_for(start)
    rid = log.add_recording(nid, path, start, channel="EMG calf", emg_fs_hz=1000.0,
                            acc_fs_hz=100.0)
    log.add_minutes(rid, [{"minute_utc": utc_iso(start + timedelta(minutes=m)), "rms_uv": 2.0,
                           "rms_p95_uv": 3.0, "floor_uv": 1.8, "motion_g": 0.01,
                           "good_s": 57.0, "artifact_s": 3.0, "nodata_s": 0.0}
                          for m in range(minutes)])
    log.update_recording(rid, ended_utc=start + timedelta(minutes=minutes))
    out = []
    for i, (on, off) in enumerate(episodes):
        ep = Episode(i + 1, on, off, 90.0, 45.0, 0.8, 2.0, "closed")
        eid = log.open_episode(nid, rid, start, ep, 1000.0, "EMG calf")
        log.close_episode(eid, start, ep, 1000.0)
        out.append(eid)
    return nid, out


def test_empty_log_empty_night_and_night_without_episodes(tmp_path, capsys):
    db = str(tmp_path / "episodes.sqlite")
    EpisodeLog(db).close()
    assert main(["review", "--db", db]) == 0
    assert "no nights in the episode log" in capsys.readouterr().out
    assert main(["review", "--db", db, "--json"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and "no nights" in cap.err
    html = tmp_path / "empty.html"
    assert main(["review", "--db", db, "--html", str(html)]) == 0
    assert "holds no night yet" in html.read_text()
    capsys.readouterr()

    with EpisodeLog(db) as log:
        log.night_for(datetime(2025, 1, 10, 23, 0).astimezone())          # nothing recorded
        _night_with_recording(log, datetime(2025, 1, 12, 23, 0).astimezone(), 90,
                              str(tmp_path / "quiet.edf"))                 # no episodes
    assert main(["review", "--db", db, "--night", "2025-01-10"]) == 0
    out = capsys.readouterr().out
    assert "Recorded     nothing" in out and re.search(r"Cramps\s+0\b", out)
    assert main(["review", "--db", db, "--night", "2025-01-10", "--html", str(html)]) == 0
    assert "Nothing was recorded this night" in html.read_text()
    capsys.readouterr()

    assert main(["review", "--db", db]) == 0                     # last night: 2025-01-12
    out = capsys.readouterr().out
    assert "2025-01-12" in out and re.search(r"Cramps\s+0\b", out)
    assert re.search(r"Good signal\s+1 h 26 min \(95 %\)", out)     # 57 of 60 s, 90 min
    assert "onset" not in out                                    # no table
    assert main(["review", "--db", db, "--json"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["review", "--db", db, "--html", str(html)]) == 0
    text = html.read_text()
    assert text.count('class="plot timeline"') == 1 and "No episodes this night" in text
    assert text.count('class="plot closeup"') == 0


def build_year(path, n_nights=365, last=date(2025, 1, 14), minutes=60, seed=1):
    """A log of ``n_nights`` nights up to ``last`` (every 11th calendar day not recorded)
    written row by row through EpisodeLog; returns {night date: (episodes, cramp seconds)}."""
    rng = np.random.default_rng(seed)
    expected = {}
    d = last + timedelta(days=1)
    with EpisodeLog(str(path)) as log:
        while len(expected) < n_nights:
            d -= timedelta(days=1)
            if d.toordinal() % 11 == 5 and d != last:
                continue
            start = datetime(d.year, d.month, d.day, 22, 30).astimezone()
            n = int(rng.integers(0, 4))
            eps = []
            for _ in range(n):
                on = float(rng.uniform(60, minutes * 60 - 700))
                eps.append((on, on + float(rng.uniform(10, 600))))
            eps.sort()
            _night_with_recording(log, start, minutes, str(path.parent / f"gone-{d}.cwrec"),
                                  eps)
            expected[d] = (n, sum(b - a for a, b in eps))
    return expected


def test_a_year_of_nights(tmp_path, capsys):
    db = tmp_path / "year.sqlite"
    expected = build_year(db)
    last = max(expected)
    assert main(["review", "--db", str(db), "--list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(expected) == 365 and len(listing) == 365 + 2
    assert listing[-1].startswith("365 nights in ")
    middle = sorted(expected)[len(expected) // 2]
    assert main(["review", "--db", str(db), "--night", middle.isoformat()]) == 0
    assert re.search(rf"Cramps\s+{expected[middle][0]}\b", capsys.readouterr().out)
    assert main(["review", "--db", str(db), "--night", middle.isoformat(), "--json"]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(got) == expected[middle][0]
    assert sum(g["duration_s"] for g in got) == pytest.approx(expected[middle][1], abs=0.01)

    from crampwatch.tools.report_html import trend_data
    with EpisodeLog(str(db)) as log:
        days, per_day = trend_data(log, last.isoformat(), 30)
    assert days[0] == last - timedelta(days=29) and days[-1] == last
    for d in days:
        if d in expected:
            assert per_day[d]["n"] == expected[d][0]
            assert per_day[d]["cramp_s"] == pytest.approx(expected[d][1], abs=0.01)
        else:
            assert d not in per_day

    html = tmp_path / "year.html"
    assert main(["review", "--db", str(db), "--html", str(html)]) == 0
    assert "trends over 30 nights" in capsys.readouterr().out
    text = html.read_text()
    assert text.count('class="plot timeline"') == 1           # the selected night only
    assert text.count('class="plot trends"') == 1
    n_last = expected[last][0]
    assert text.count("is missing (moved or deleted)") == n_last   # recordings never existed


def test_new_user_first_morning(night, tmp_path, monkeypatch, capsys):
    """As a new user runs it: the default data directory, no --db but replay's; the report
    and the export from the installed command (fresh processes)."""
    monkeypatch.setenv("CRAMPWATCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_COLOR", "1")
    assert main(["review"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no episode log at" in err
    db = tmp_path / "home" / "episodes.sqlite"
    assert not db.exists()
    assert main(["replay", night["a"], "--db", str(db), "--quiet"]) == 0
    assert main(["review"]) == 0
    out = capsys.readouterr().out
    first = int(re.search(r"^\s+(\d+)\s+\d\d:\d\d:\d\d", out, re.M).group(1))
    assert main(["label", str(first), "--confirmed", "--note", "woke me up"]) == 0
    assert "marked confirmed; note: woke me up" in capsys.readouterr().out

    def cw(*args):
        p = subprocess.run([CLI, *args], capture_output=True, text=True, env=os.environ,
                           cwd=tmp_path, timeout=120)
        assert p.returncode == 0, (args, p.stderr)
        return p.stdout

    out = cw("review", "--html", "morning.html")
    assert "close-up" in out
    text = (tmp_path / "morning.html").read_text()
    assert "woke me up" in text and text.count('class="plot closeup"') >= 2
    out = cw("export", night["a"], "--edf", "night-export.edf")
    assert "from the episode log" in out and (tmp_path / "night-export.edf").exists()
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "morning.html").stat().st_mode & 0o777) == "0o600"


# --------------------------------------------------------------------------- sites
def _two_site_night(log, start, path):
    """A 40 min night on both calves, built through EpisodeLog as the capture writes it:
    minutes per site (the right leg's signal worse), cramps on either leg, one uncertain
    episode and one marked false.  Returns the episodes written, as (id, site, kind, s)."""
    nid = log.night_for(start)
    rid = log.add_recording(nid, path, start, channel="EMG L calf,EMG R calf",
                            emg_fs_hz=1000.0, acc_fs_hz=100.0)
    log.update_recording(rid, ended_utc=start + timedelta(minutes=40))
    for site, good in (("left_calf", 57.0), ("right_calf", 30.0)):
        log.add_minutes(rid, [{"minute_utc": utc_iso(start + timedelta(minutes=m)),
                               "rms_uv": 2.0, "rms_p95_uv": 3.0, "floor_uv": 1.8,
                               "motion_g": 0.01, "good_s": good, "artifact_s": 60.0 - good,
                               "nodata_s": 0.0} for m in range(40)], site=site)
    out = []
    for i, (site, on, dur, status) in enumerate((
            ("left_calf", 300.0, 45.0, "closed"), ("right_calf", 900.0, 125.0, "closed"),
            ("left_calf", 1500.0, 30.0, "closed"), ("right_calf", 1800.0, 12.0, "uncertain"),
            ("right_calf", 2100.0, 20.0, "closed"))):
        ep = Episode(i + 1, on, on + dur, 90.0, 45.0, 0.8 if status == "closed" else 0.2,
                     2.0, status)
        channel = "EMG L calf" if site == "left_calf" else "EMG R calf"
        eid = log.open_episode(nid, rid, start, ep, 1000.0, channel, site=site)
        log.close_episode(eid, start, ep, 1000.0, status=status)
        out.append([eid, site, "uncertain" if status == "uncertain" else "cramp", dur])
    log.set_verdict(out[-1][0], "false", "scratched my leg")
    out[-1][2] = "false"
    return nid, out


def test_a_night_on_both_calves_is_reviewed_per_site(tmp_path, capsys):
    db = str(tmp_path / "episodes.sqlite")
    start = datetime(2025, 1, 15, 3, 40, tzinfo=timezone.utc)
    with EpisodeLog(db) as log:
        _night_with_recording(log, start - timedelta(days=1), 30, str(tmp_path / "one.edf"),
                              [(100.0, 130.0)])          # the night before: one site
        _, eps = _two_site_night(log, start, str(tmp_path / "two.cwrec"))
    assert main(["review", "--db", db]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    cramps = {s: [e for e in eps if e[1] == s and e[2] == "cramp"]
              for s in ("left_calf", "right_calf")}
    assert re.search(r"^  Cramps       3, total 3 min 20 s, longest 2 min 05 s", out, re.M)
    assert re.search(r"^    left calf   2, total 1 min 15 s, longest 45\.0 s", out, re.M)
    right = next(i for i, ln in enumerate(lines) if ln.startswith("    right calf  1, "))
    assert "longest 2 min 05 s" in lines[right]
    assert "1 uncertain; 1 marked false" in " ".join(lines[right:right + 2])
    assert re.search(r"^  Uncertain    1 \(not counted", out, re.M)
    assert re.search(r"^  Marked false 1 ", out, re.M)
    assert re.search(r"^    left calf   38 min 00 s \(95 %\)", out, re.M)     # 57 of 60 s
    assert re.search(r"^    right calf  20 min 00 s \(50 %\)", out, re.M)     # 30 of 60 s
    # the table grouped by site: every episode under its own leg's heading
    heads = {ln.strip(): i for i, ln in enumerate(lines) if ln.strip() in ("left calf",
                                                                           "right calf")}
    assert heads["left calf"] < heads["right calf"]
    for eid, site, _, _ in eps:
        row = next(i for i, ln in enumerate(lines) if re.match(rf"\s+{eid}\s+\d\d:\d\d", ln))
        assert (row > heads["right calf"]) == (site == "right_calf"), eid

    assert main(["review", "--db", db, "--json"]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(g["episode_id"], g["site"]) for g in got] == [(e[0], e[1]) for e in eps]
    assert [g["counted"] for g in got] == [e[2] == "cramp" for e in eps]
    assert main(["review", "--db", db, "--json-summary"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["cramps"], summary["uncertain"], summary["marked_false"]) == (3, 1, 1)
    for site, rows in cramps.items():
        per = summary["sites"][site]
        assert per["cramps"] == len(rows)
        assert per["total_cramp_s"] == pytest.approx(sum(r[3] for r in rows))
        assert per["longest_episode_id"] == max(rows, key=lambda r: r[3])[0]
    assert summary["sites"]["right_calf"]["uncertain"] == 1
    assert summary["sites"]["right_calf"]["good_s"] == pytest.approx(40 * 30.0)

    assert main(["review", "--db", db, "--list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "per site" in listing[0]
    assert re.search(r"2025-01-14 .*\s3\s+1\s+1\s+left calf 2, right calf 1$", listing[2])
    assert listing[1].rstrip().endswith("calf 1")         # the one-site night before

    # the night before (one site) reads as it always did
    assert main(["review", "--db", db, "--night", "2025-01-13"]) == 0
    one = capsys.readouterr().out
    assert re.search(r"^  Good signal  \d", one, re.M) and "calf" not in one
    assert "Uncertain" not in one and re.search(r"Cramps\s+1, total 30\.0 s", one)


_V2_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE nights (night_id INTEGER PRIMARY KEY, night_date TEXT NOT NULL UNIQUE,
    tz_offset_s INTEGER NOT NULL, created_utc TEXT NOT NULL);
CREATE TABLE recordings (recording_id INTEGER PRIMARY KEY,
    night_id INTEGER NOT NULL REFERENCES nights(night_id), path TEXT NOT NULL, source TEXT,
    channel TEXT, emg_fs_hz REAL, acc_fs_hz REAL, started_utc TEXT NOT NULL, ended_utc TEXT,
    samples INTEGER NOT NULL DEFAULT 0, gap_samples INTEGER NOT NULL DEFAULT 0,
    unstored_samples INTEGER NOT NULL DEFAULT 0, recording_error TEXT, UNIQUE (path));
CREATE TABLE gaps (gap_id INTEGER PRIMARY KEY,
    recording_id INTEGER NOT NULL REFERENCES recordings(recording_id), stream TEXT NOT NULL,
    first_index INTEGER, n_samples INTEGER, start_utc TEXT, duration_s REAL, cause TEXT);
CREATE TABLE minutes (recording_id INTEGER NOT NULL REFERENCES recordings(recording_id),
    minute_utc TEXT NOT NULL, rms_uv REAL, rms_p95_uv REAL, floor_uv REAL, motion_g REAL,
    good_s REAL, artifact_s REAL, nodata_s REAL, PRIMARY KEY (recording_id, minute_utc));
CREATE TABLE episodes (episode_id INTEGER PRIMARY KEY,
    night_id INTEGER NOT NULL REFERENCES nights(night_id),
    recording_id INTEGER REFERENCES recordings(recording_id), onset_utc TEXT NOT NULL,
    offset_utc TEXT, onset_s REAL NOT NULL, offset_s REAL, duration_s REAL,
    onset_sample INTEGER, offset_sample INTEGER, peak_rms_uv REAL, mean_rms_uv REAL,
    confidence REAL, channel TEXT,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed', 'truncated')),
    verdict TEXT CHECK (verdict IN ('confirmed', 'false')), verdict_note TEXT,
    verdict_utc TEXT, created_utc TEXT NOT NULL, updated_utc TEXT NOT NULL);
CREATE INDEX episodes_night ON episodes(night_id);
CREATE INDEX minutes_time ON minutes(minute_utc);
INSERT INTO meta VALUES ('schema_version', '2');
INSERT INTO nights VALUES (1, '2025-01-14', -18000, '2025-01-15T03:40:00+00:00');
INSERT INTO recordings (recording_id, night_id, path, channel, emg_fs_hz, started_utc,
    ended_utc, samples) VALUES (1, 1, '/nowhere/a.edf', 'Right Leg', 1000.0,
    '2025-01-15T03:40:00.000+00:00', '2025-01-15T04:40:00.000+00:00', 3600000);
INSERT INTO minutes VALUES (1, '2025-01-15T03:40:00.000+00:00', 2, 3, 1.8, 0.01, 58, 2, 0);
INSERT INTO minutes VALUES (1, '2025-01-15T03:41:00.000+00:00', 2, 3, 1.8, 0.01, 50, 10, 0);
INSERT INTO episodes VALUES (7, 1, 1, '2025-01-15T03:45:00.000+00:00',
    '2025-01-15T03:45:30.000+00:00', 300, 330, 30, 300000, 330000, 90, 45, 0.8, 'Right Leg',
    'closed', 'confirmed', 'woke me', '2025-01-15T12:00:00+00:00', 'x', 'x');
INSERT INTO episodes VALUES (8, 1, 1, '2025-01-15T03:50:00.000+00:00', NULL, 600, NULL,
    NULL, 600000, NULL, 60, 30, 0.5, 'EMG L gastroc', 'truncated', NULL, NULL, NULL, 'x', 'x');
"""


def test_a_v2_log_is_migrated_to_sites_in_one_transaction(tmp_path, capsys):
    from crampwatch.tools.episode_log import SCHEMA_VERSION
    db = tmp_path / "v2.sqlite"
    con = sqlite3.connect(db)
    con.executescript(_V2_SCHEMA)
    con.close()
    assert main(["review", "--db", str(db), "--night", "2025-01-14"]) == 0
    assert re.search(r"Cramps\s+2\b", capsys.readouterr().out)
    assert SCHEMA_VERSION == 3
    assert _rows(db, "SELECT value FROM meta")[0]["value"] == "3"
    eps = _rows(db, "SELECT * FROM episodes ORDER BY episode_id")
    assert [(e["episode_id"], e["site"], e["status"], e["verdict"], e["verdict_note"])
            for e in eps] == [(7, "right_leg", "closed", "confirmed", "woke me"),
                              (8, "left_calf", "truncated", None, None)]
    mins = _rows(db, "SELECT * FROM minutes ORDER BY minute_utc")
    assert [(m["site"], m["good_s"]) for m in mins] == [("right_leg", 58.0), ("right_leg", 50.0)]
    assert {r["name"] for r in _rows(db, "SELECT name FROM sqlite_master")} >= {
        "episodes_night", "minutes_time", "episodes", "minutes"}
    assert not [r for r in _rows(db, "SELECT name FROM sqlite_master") if "_v3" in r["name"]]
    con = sqlite3.connect(db)                 # the rebuilt CHECK: uncertain in, junk out
    try:
        con.execute("UPDATE episodes SET status='uncertain' WHERE episode_id=8")
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("UPDATE episodes SET status='maybe' WHERE episode_id=8")
        with pytest.raises(sqlite3.IntegrityError):           # one row per minute and site
            con.execute("INSERT INTO minutes (recording_id, site, minute_utc) VALUES "
                        "(1, 'right_leg', '2025-01-15T03:40:00.000+00:00')")
        con.execute("INSERT INTO minutes (recording_id, site, minute_utc) VALUES "
                    "(1, 'left_leg', '2025-01-15T03:40:00.000+00:00')")
        con.commit()
    finally:
        con.close()
    assert main(["review", "--db", str(db), "--night", "2025-01-14"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Cramps\s+1\b", out) and re.search(r"Uncertain\s+1 ", out)

    # all or nothing: a v2 log whose rebuild fails is left exactly as it was
    bad = tmp_path / "bad.sqlite"
    con = sqlite3.connect(bad)
    con.executescript(_V2_SCHEMA)
    con.execute("CREATE TABLE episodes_v3 (x)")       # in the way of the rebuild
    con.commit()
    con.close()
    before = _rows(bad, "SELECT * FROM episodes ORDER BY episode_id")
    assert main(["review", "--db", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("crampwatch: ")
    assert _rows(bad, "SELECT value FROM meta")[0]["value"] == "2"
    assert _rows(bad, "SELECT * FROM episodes ORDER BY episode_id") == before


def test_the_log_methods_the_capture_calls_keep_the_legs_apart(tmp_path):
    """What the daemon asks the log (a resumed capture finds its rows by onset sample, the
    count of the night, the rows left open), with the same onset on both legs."""
    start = datetime(2025, 1, 15, 3, 40, tzinfo=timezone.utc)
    with EpisodeLog(str(tmp_path / "episodes.sqlite")) as log:
        log.set_busy_timeout(0.5)
        nid = log.night_for(start)
        rid = log.add_recording(nid, str(tmp_path / "n.cwrec"), start,
                                channel="EMG L calf,EMG R calf", emg_fs_hz=1000.0)
        log.update_recording(rid, gap_samples=12, unstored_samples=3)
        ep = Episode(1, 60.0, None, 90.0, 45.0, 0.8, 2.0, "open")
        left = log.open_episode(nid, rid, start, ep, 1000.0, "EMG L calf", site="left_calf")
        right = log.open_episode(nid, rid, start, ep, 1000.0, "EMG R calf")   # site guessed
        assert log.episode(right)["site"] == "right_calf"
        assert log.episode_at(rid, 60_001, site="left_calf")["episode_id"] == left
        assert log.episode_at(rid, 60_000, site="right_calf")["episode_id"] == right
        assert log.episode_at(rid, 60_002, site="left_calf") is None
        assert [r["recording_id"] for r in log.recordings_with_open_episodes()] == [rid]
        rec = log.recording(rid)
        assert (rec["gap_samples"], rec["unstored_samples"]) == (12, 3)
        done = Episode(1, 60.0, 75.0, 90.0, 45.0, 0.2, 2.0, "uncertain")
        log.close_episode(right, start, done, 1000.0, status="uncertain")
        with pytest.raises(ValueError):
            log.close_episode(left, start, done, 1000.0, status="maybe")
        assert log.episode_status(right) == "uncertain" and log.episode_status(left) == "open"
        assert log.count_episodes(nid) == 2
        assert log.count_episodes(nid, kind="cramp") == 1
        assert log.count_episodes(nid, site="right_calf", kind="uncertain") == 1
        assert log.close_open() == 1 and log.recordings_with_open_episodes() == []
        log.clear_results(rid, "right_calf")              # a replay of one leg again
        assert [e["site"] for e in log.episodes(nid)] == ["left_calf"]
