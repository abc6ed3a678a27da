"""Trust nothing from the device, the user or the umask: what crampwatch shows and writes.

- device strings (a board's name in its INFO frame, over a real socket), notes and
  channel labels reach the journal, the status line, the terminal review and the
  HTML report without control characters or escape sequences, length capped;
- every file crampwatch writes is 0600 and every directory it makes 0700, under
  the umasks 000 and 277;
- an output path that names an input (also through a symlink or a hard link) is
  refused before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import stat
import threading
import types
from datetime import datetime

import numpy as np
import pytest

from crampwatch._files import (atomic_private_write, check_output_path, ensure_private_dir,
                               private_open, same_file)
from crampwatch._text import sanitize_text
from crampwatch.errors import ConfigError
from crampwatch.firmware_bridge import boardsim
from crampwatch.firmware_bridge.protocols import openframe
from crampwatch.firmware_bridge.recording import CaptureWriter, RecordingHeader
from crampwatch.firmware_bridge.sources import open_source
from crampwatch.firmware_bridge.types import SampleBlock, StreamInfo
from crampwatch.tools.capture.status import StatusLine
from crampwatch.tools.cli import main
from crampwatch.tools.episode_log import EpisodeLog

EVIL = "\x1b]0;owned\x07\x1b[2J\x1b[31mev\u202eil\r\nFAKE\x00"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def no_escapes(text: str) -> bool:
    return not any(c in text for c in ("\x1b", "\x07", "\r", "\x00", "\u202e", "\x9b"))


# --------------------------------------------------------------------------- sanitize
@pytest.mark.parametrize("raw, want", [
    ("plain name", "plain name"),
    ("\x1b[31mred\x1b[0m", "red"),
    ("a\x1b]0;title\x07b", "ab"),
    ("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "alink"),
    ("line\r\nforged", "line\\r\\nforged"),
    ("rtl\u202eevil", "rtl\\u202eevil"),
    ("nul\x00bel\x07", "nul\\x00bel\\x07"),
    ("c1\x9b2Jx", "c1x"),
    (b"\xff\xfebytes", "\\xff\\xfebytes"),
    ("Gastroc M\u00fcller", "Gastroc M\u00fcller"),
    (None, ""),
    (42, "42"),
])
def test_sanitize_text(raw, want):
    assert sanitize_text(raw) == want


def test_sanitize_caps_length_and_makes_file_name_parts():
    assert len(sanitize_text("x" * 10**6, 50)) == 50
    assert sanitize_text("x" * 10**6, 50).endswith("\u2026")
    assert sanitize_text("../../etc/passwd", filename=True) == "_.._etc_passwd"
    assert sanitize_text("..", filename=True) == "_"
    assert sanitize_text("-rf \x1b[2J", filename=True) == "rf_"


def _evil_board():
    """An open-frame board simulator whose INFO frame carries a hostile name,
    served on a real TCP port from a thread."""
    sig = boardsim.SyntheticSignal(hours=0.01, seed=1, emg_fs_hz=500.0, acc_fs_hz=50.0)
    sim = boardsim.BoardSim("open", sig, speed=5.0)
    info = dataclasses.replace(sim.model.info, name=EVIL)
    sim.model.info = info
    sim.model.encoder = openframe.Encoder(info)
    where, stop = {}, {}
    ready = threading.Event()

    def announce(url):
        where["url"] = url
        ready.set()
    th = threading.Thread(target=boardsim.serve_tcp, args=(sim, 0, announce),
                          kwargs={"stop_flag": stop}, daemon=True)
    th.start()
    assert ready.wait(10)
    return where["url"].replace("tcp://", "socket://") + "?board=open", stop, th


def test_a_hostile_board_name_is_sanitised_at_the_source_and_in_the_journal(
        tmp_path, monkeypatch, caplog, capsys):
    url, stop, th = _evil_board()
    try:
        with open_source(url) as src:
            items = src.read(timeout_s=10)
            connected = next(x for x in items if getattr(x, "kind", None) == "connected")
        name = connected.detail["name"]
        assert no_escapes(name) and "ev" in name and len(name) <= 64
        monkeypatch.setenv("CRAMPWATCH_HOME", str(tmp_path / "home"))
        caplog.set_level(logging.INFO, logger="crampwatch")
        assert main(["capture", "--source", url, "--duration", "2"]) == 0
    finally:
        stop["stop"] = True
        th.join(10)
    messages = [r.getMessage() for r in caplog.records]
    assert any("connected to" in m and "name=" in m for m in messages)
    assert all(no_escapes(m) for m in messages), [m for m in messages if not no_escapes(m)]
    assert no_escapes(capsys.readouterr().out)


def test_the_status_line_shows_no_escape_from_its_content():
    out = io.StringIO()
    StatusLine(out).show("connected; board " + EVIL + "; rec 1.0 MB ok")
    text = out.getvalue()
    assert text.startswith("\r\x1b[K") and no_escapes(text[len("\r\x1b[K"):])


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """A 3 min captured night (recording + episode log) with one episode."""
    home = tmp_path_factory.mktemp("night") / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("CRAMPWATCH_HOME", str(home))
    try:
        assert main(["capture", "--source", "sim://?seed=2&hours=0.05&speed=max"]) == 0
    finally:
        mp.undo()
    db = str(home / "episodes.sqlite")
    with EpisodeLog(db) as log:                # an episode of our own: whatever the detector
        rec_id, rec, night_id, start = log.db.execute(
            "SELECT recording_id, path, night_id, started_utc FROM recordings").fetchone()
        ep = types.SimpleNamespace(onset_s=30.0, offset_s=50.0, peak_rms_uv=90.0,
                                   mean_rms_uv=60.0, confidence=0.8, status="closed")
        t0 = datetime.fromisoformat(start)
        row = log.open_episode(night_id, rec_id, t0, ep, 1000.0, "emg1")
        log.close_episode(row, t0, ep, 1000.0)
    return {"home": home, "db": db, "rec": rec, "episode": row}


def test_notes_in_the_review_and_the_report_are_shown_not_obeyed(night, tmp_path, capsys):
    note = "turned over " + EVIL + " <script>alert(1)</script>"
    ep = str(night["episode"])
    assert main(["label", ep, "--false", "--note", note, "--db", night["db"]]) == 0
    assert no_escapes(capsys.readouterr().out)
    assert main(["review", "--db", night["db"]]) == 0
    out = capsys.readouterr().out
    assert no_escapes(out) and "turned over" in out and "\\r\\nFAKE" in out
    html_path = tmp_path / "report.html"
    assert main(["review", "--db", night["db"], "--html", str(html_path)]) == 0
    capsys.readouterr()
    doc = html_path.read_text()
    assert no_escapes(doc) and "<script>alert" not in doc and "&lt;script&gt;" in doc
    assert main(["label", ep, "--note", "x" * 5000, "--false", "--db", night["db"]]) == 2
    assert "at most 2000" in capsys.readouterr().err


def test_channel_labels_from_a_file_are_shown_sanitised(tmp_path, capsys):
    path = tmp_path / "odd.cwrec"
    hdr = RecordingHeader(emg=StreamInfo("emg", 1000.0, ("EMG \x1b[31mcalf\x1b[0m",), "uV"))
    with CaptureWriter(path, hdr) as w:
        rng = np.random.default_rng(0)
        w.write_block(SampleBlock("emg", 1000.0, 0, rng.normal(0, 2, (60_000, 1)),
                                  host_time_s=1.7e9))
    assert main(["replay", str(path), "--emg", "EMG \x1b[31mcalf\x1b[0m"]) == 0
    out = capsys.readouterr().out
    assert no_escapes(out) and "EMG calf" in out


# --------------------------------------------------------------------------- 0600 / 0700
@pytest.fixture(params=[0o000, 0o277], ids=["umask000", "umask277"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_helpers_make_private_files_and_dirs_whatever_the_umask(tmp_path, umask):
    d = tmp_path / "a" / "b"
    ensure_private_dir(d)
    assert mode(tmp_path / "a") == mode(d) == 0o700
    with private_open(d / "x.txt", "w") as fh:
        fh.write("x")
    assert mode(d / "x.txt") == 0o600
    with atomic_private_write(d / "y.txt") as fh:
        fh.write("y")
    assert mode(d / "y.txt") == 0o600 and (d / "y.txt").read_text() == "y"
    assert sorted(p.name for p in d.iterdir()) == ["x.txt", "y.txt"]     # no temp file left


def test_every_file_crampwatch_writes_is_0600(tmp_path, umask, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("CRAMPWATCH_HOME", str(home))
    assert main(["capture", "--source", "sim://?seed=2&hours=0.01&speed=max"]) == 0
    recs = home / "recordings"
    rec = next(recs.iterdir())
    assert mode(home) == mode(recs) == 0o700
    assert mode(rec) == 0o600
    for name in ("episodes.sqlite", "episodes.sqlite.lock"):
        assert mode(home / name) == 0o600, name
    with EpisodeLog(str(home / "episodes.sqlite")) as log:      # -wal/-shm exist while open
        log.set_verdict(1, "false")
        for suffix in ("-wal", "-shm"):
            p = home / f"episodes.sqlite{suffix}"
            assert p.exists() and mode(p) == 0o600, suffix
    out = tmp_path / "out"
    jobs = [
        ["replay", str(rec), "--quiet", "--episodes", str(out / "e.jsonl"),
         "--csv", str(out / "e.csv"), "--db", str(out / "log" / "r.sqlite")],
        ["export", str(rec), "--csv", str(out / "x.csv")],
        ["export", str(rec), "--edf", str(out / "x.edf")],
        ["review", "--db", str(home / "episodes.sqlite"), "--html", str(out / "r.html")],
        ["simulate", str(out / "sim.edf"), "--hours", "0.01"],
    ]
    for argv in jobs:
        assert main(argv) == 0, argv
    from crampwatch.firmware_bridge.labels import write_labels
    write_labels(tmp_path / "labels.csv", [])
    assert main(["tune", str(rec), "--labels", str(tmp_path / "labels.csv"),
                 "--try", "min_duration_s=10", "--write", str(out / "best.toml")]) == 0
    capsys.readouterr()
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert written == ["best.toml", "e.csv", "e.jsonl", "log", "log/r.sqlite", "r.html",
                       "sim.edf", "sim.labels.csv", "x.csv", "x.edf", "x.episodes.csv"]
    for p in out.rglob("*"):
        assert mode(p) == (0o700 if p.is_dir() else 0o600), p


# --------------------------------------------------------------------------- outputs vs inputs
def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_an_output_that_names_an_input_is_refused(night, tmp_path, capsys):
    rec = night["rec"]
    before = _digest(rec)
    link = tmp_path / "link.cwrec"
    link.symlink_to(rec)
    hard = tmp_path / "hard.cwrec"
    os.link(rec, hard)
    labels = tmp_path / "labels.csv"
    labels.write_text("kind,onset_s,offset_s,note\n")
    cases = [
        (["replay", rec, "--csv", rec], "--csv"),
        (["replay", rec, "--episodes", str(link)], "--episodes"),
        (["replay", str(link), "--csv", str(hard)], "--csv"),
        (["replay", rec, "--db", rec], "--db"),
        (["replay", rec, "--episodes", str(tmp_path / "a"), "--csv", str(tmp_path / "a")],
         "--csv"),
        (["export", rec, "--csv", str(hard)], "--csv"),
        (["export", rec, "--edf", str(link)], "--edf"),
        (["tune", rec, "--labels", str(labels), "--write", str(labels)], "--write"),
        (["review", "--db", night["db"], "--html", night["db"]], "--html"),
    ]
    for argv, option in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"crampwatch: {option} ") and "is one of the inputs" in err, err
        assert err.count("\n") == 1
    assert _digest(rec) == before and _digest(hard) == before
    assert labels.read_text() == "kind,onset_s,offset_s,note\n"
    assert not (tmp_path / "a").exists()


def test_same_file_and_check_output_path(tmp_path):
    a = tmp_path / "a"
    a.write_text("x")
    assert same_file(a, tmp_path / "." / "a") and not same_file(a, tmp_path / "b")
    assert same_file(tmp_path / "new", tmp_path / "sub" / ".." / "new")   # neither exists
    check_output_path(tmp_path / "b", [a, None], "--out")
    with pytest.raises(ConfigError, match="--out .*: is one of the inputs"):
        check_output_path(a, [None, str(a)], "--out")
