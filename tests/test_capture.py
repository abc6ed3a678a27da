"""``crampwatch capture`` in this process (``main([...])`` or the daemon in a
thread) on the built-in simulated board: detection, the episode log, the
recording, hooks, sd_notify, the status line, disks that fail, LSL.

The simulated night (seed 2, 9 min) holds three clear cramps; its labels are
the truth the episode log is compared with.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from boardsim_helpers import db_rows

from crampwatch.detector import DetectorConfig
from crampwatch.firmware_bridge.recording import iter_records, open_capture
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
from crampwatch.tools.capture.daemon import CaptureDaemon
from crampwatch.tools.capture.systemd import sd_notify
from crampwatch.tools._run import run_recording
from crampwatch.tools.capture.config import CaptureConfig
from crampwatch.tools.cli import main

HOURS, SEED = 0.15, 2
SIM = f"sim://?seed={SEED}&hours={HOURS}"


@pytest.fixture(scope="module")
def cramps():
    night = SyntheticNight(NightSpec(hours=HOURS, seed=SEED))
    return [lab for lab in night.labels if lab.kind == "cramp"]




rows = db_rows


def wait_until(cond, timeout_s=30.0, what="condition"):
    """Wait for ``cond()`` to be true (polled: SQLite and writer state have no events)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s")
        time.sleep(0.02)


def run_in_thread(cfg: CaptureConfig, **kw):
    daemon = CaptureDaemon(cfg, DetectorConfig(), **kw)
    box = {}

    def target():
        try:
            box["summary"] = daemon.run()
        except BaseException as exc:      # surfaced by the test
            box["error"] = exc
    th = threading.Thread(target=target, daemon=True)
    th.start()
    return daemon, th, box


def assert_matches_labels(eps, cramps, statuses=("closed",)):
    assert len(eps) == len(cramps), [(e["onset_s"], e["status"]) for e in eps]
    for e, lab in zip(eps, cramps):
        assert abs(e["onset_s"] - lab.onset_s) <= 2.0, (e["onset_s"], lab.onset_s)
        assert e["status"] in statuses


# ----------------------------------------------------------------------------- basics
def test_capture_on_the_simulated_board_logs_the_labelled_cramps(home, cramps, capsys):
    """Default paths under CRAMPWATCH_HOME; episodes, minutes, recording row and the
    summary; replaying the recording gives the very same episodes."""
    assert main(["capture", "--source", SIM + "&speed=max"]) == 0
    out = capsys.readouterr().out
    db = home / "episodes.sqlite"
    eps = rows(db, "SELECT * FROM episodes ORDER BY onset_s")
    assert_matches_labels(eps, cramps)
    rec = rows(db, "SELECT * FROM recordings")[0]
    assert rec["samples"] == 540_000 and rec["gap_samples"] == 0 and rec["emg_fs_hz"] == 1000.0
    assert os.path.dirname(rec["path"]) == str(home / "recordings")
    assert stat.S_IMODE(os.stat(rec["path"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert len(rows(db, "SELECT * FROM minutes")) == 9
    res = run_recording(rec["path"], DetectorConfig(), progress=False)
    assert [(round(e.onset_s, 3), round(e.offset_s, 3)) for e in res.episodes] == \
        [(round(e["onset_s"], 3), round(e["offset_s"], 3)) for e in eps]
    assert "stopped (end of source)" in out and "3 episodes" in out
    with open_capture(rec["path"]) as r:            # a self-describing header
        assert r.header["board"] == "sim" and r.header["extra"]["night"] == \
            rows(db, "SELECT night_date FROM nights")[0]["night_date"]
        assert r.stats.closed

    # the same recording as a file:// source: ends at its end, same episodes, a new file
    assert main(["capture", "--source", f"file://{rec['path']}?speed=max"]) == 0
    recs = rows(db, "SELECT * FROM recordings ORDER BY recording_id")
    assert len(recs) == 2 and recs[1]["path"] != rec["path"] and recs[1]["samples"] == 540_000
    eps2 = rows(db, "SELECT * FROM episodes WHERE recording_id=? ORDER BY onset_s",
                (recs[1]["recording_id"],))
    assert [(e["onset_s"], e["offset_s"]) for e in eps2] == \
        [(e["onset_s"], e["offset_s"]) for e in eps]


def test_bad_input_is_one_line_and_exit_2(home, capsys, tmp_path):
    assert main(["capture", "--source", "serial:///dev/ttyUSB9?board=nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("crampwatch: ") and "unknown board 'nope'" in err[-1]
    assert main(["capture", "--source", f"file://{tmp_path}/missing.cwrec"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["capture", "--duration", "-5", "--source", SIM]) == 2
    assert "--duration" in capsys.readouterr().err


def test_a_second_capture_on_the_same_episode_log_is_refused(home, capsys):
    home.mkdir(parents=True)
    fd = os.open(home / "episodes.sqlite.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        assert main(["capture", "--source", SIM + "&speed=max"]) == 2
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert "another crampwatch capture (pid 4242)" in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- hook
HOOK = """
import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith("CRAMPWATCH_")}
with open(os.path.join(sys.argv[1], env["CRAMPWATCH_EPISODE_ID"] + ".json"), "w") as fh:
    json.dump(env, fh)
"""


def test_hook_runs_at_each_onset_with_the_episode_in_its_environment(home, cramps, tmp_path):
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    out = tmp_path / "hook-out"
    out.mkdir()
    cfg = CaptureConfig(source=SIM + "&speed=max", hook=f"{sys.executable} {script} {out}")
    summary = CaptureDaemon(cfg, DetectorConfig()).run()
    assert summary.stop_reason == "end of source"
    eps = rows(home / "episodes.sqlite", "SELECT * FROM episodes ORDER BY onset_s")
    assert_matches_labels(eps, cramps)
    got = {p.stem: json.loads(p.read_text()) for p in out.iterdir()}
    assert sorted(got) == sorted(str(e["episode_id"]) for e in eps)
    for e in eps:
        env = got[str(e["episode_id"])]
        assert env["CRAMPWATCH_EVENT"] == "onset"
        assert env["CRAMPWATCH_ONSET_UTC"] == e["onset_utc"]
        assert float(env["CRAMPWATCH_ONSET_S"]) == pytest.approx(e["onset_s"], abs=1e-3)
        assert float(env["CRAMPWATCH_ELAPSED_S"]) >= DetectorConfig().min_duration_s - 1.0
        assert env["CRAMPWATCH_RECORDING"] == rows(home / "episodes.sqlite",
                                                   "SELECT path FROM recordings")[0]["path"]
        assert 0.0 < float(env["CRAMPWATCH_CONFIDENCE"]) <= 1.0


def test_a_hook_that_is_not_there_is_a_config_error(home, capsys):
    assert main(["capture", "--source", SIM, "--set", "hook=/nonexistent/buzz --now"]) == 2
    assert "hook: command '/nonexistent/buzz' not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- systemd
@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_ready_watchdog_status_and_stopping(home, tmp_path, monkeypatch, abstract):
    """A real AF_UNIX datagram socket stands in for systemd's."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"crampwatch-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    else:
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "40000")           # WatchdogSec=40ms: ping each 20 ms
    msgs = []

    def listen():                                          # as systemd does
        while True:
            data = sock.recv(4096)
            if data == b"":
                return
            msgs.append(data.decode())
            if data.startswith(b"STOPPING=1"):
                return
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    cfg = CaptureConfig(source=SIM + "&speed=20")
    CaptureDaemon(cfg, DetectorConfig(), duration_s=15.0).run()
    listener.join(10)
    sock.close()
    assert msgs[0].startswith("READY=1") and "STATUS=" in msgs[0]
    assert msgs.count("WATCHDOG=1") >= 3
    assert msgs[-1].startswith("STOPPING=1")
    assert not sd_notify("READY=1", environ={})


# ----------------------------------------------------------------------------- terminal
def test_status_line_on_a_terminal_and_sigterm_prints_the_summary(home, cramps):
    """stderr on a real pty: a carriage-return status line; SIGTERM mid-cramp: exit 0,
    the night's summary on stdout, the cramp going on closed as truncated."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crampwatch.tools.cli", "capture", "--source", SIM + "&speed=25",
         "--set", "status_interval_s=0.05"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=os.environ.copy())
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"cramp onset" not in seen:
            assert time.monotonic() < deadline, seen[-2000:]
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                seen += os.read(master, 65536)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if not r:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "\r\x1b[Kconnected; " in text and "signal 100 % good" in text
    assert "\r\x1b[Kcrampwatch: INFO: episode" in text          # logs clear the line first
    out = out.decode()
    assert "stopped (SIGTERM)" in out and "truncated" in out
    eps = rows(home / "episodes.sqlite", "SELECT * FROM episodes")
    assert_matches_labels(eps, cramps[:1], statuses=("truncated",))


# ----------------------------------------------------------------------------- disks
def test_unwritable_recordings_directory_detection_and_log_go_on(home, cramps, tmp_path,
                                                                 caplog):
    """The recordings 'directory' is a file: a clear error, detection and the episode
    log go on; fixed mid-night: recording resumes and nothing was lost."""
    caplog.set_level(logging.INFO, logger="crampwatch")
    out = tmp_path / "recs"
    out.write_text("not a directory")
    cfg = CaptureConfig(source=SIM + "&speed=150", out_dir=str(out), disk_retry_s=0.1)
    daemon, th, box = run_in_thread(cfg)
    db = home / "episodes.sqlite"
    wait_until(lambda: os.path.exists(db) and rows(db, "SELECT * FROM episodes"),
               what="first episode in the log")
    st = daemon.rec.writer.stats
    assert not st.recording_ok and str(out) in st.last_error
    out.unlink()                                           # the user fixes it
    th.join(60)
    assert not th.is_alive() and "error" not in box, box.get("error")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "recording paused" in errors[0] and str(out) in errors[0]
    assert any("recording resumed" in m for m in caplog.messages)
    eps = rows(db, "SELECT * FROM episodes ORDER BY onset_s")
    assert_matches_labels(eps, cramps)
    rec = rows(db, "SELECT * FROM recordings")[0]
    res = run_recording(rec["path"], DetectorConfig(), progress=False)
    assert res.duration_s == 540.0 and not res.gaps
    assert [round(e.onset_s, 3) for e in res.episodes] == [round(e["onset_s"], 3) for e in eps]


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                          str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({res.stderr.strip()}); the unwritable "
                    "directory test covers the daemon's side")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_detection_goes_on_and_recording_resumes_with_gaps(home, cramps, small_fs):
    """A real full filesystem (tmpfs): samples that cannot be kept in memory are
    dropped and stored as gaps when space returns; detection never missed them."""
    filler = small_fs / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * (4096 - 64) * 1024)                 # ~50 s of signal left
    cfg = CaptureConfig(source=SIM + "&speed=150", out_dir=str(small_fs / "recs"),
                        disk_retry_s=0.1, write_queue_mb=0.5)
    daemon, th, box = run_in_thread(cfg)
    wait_until(lambda: daemon.rec is not None and daemon.rec.writer.stats.blocks_dropped > 0,
               what="blocks dropped on the full disk")
    assert "No space left" in daemon.rec.writer.stats.last_error
    filler.unlink()                                         # space returns
    th.join(60)
    assert not th.is_alive() and "error" not in box, box.get("error")
    summary = box["summary"]
    assert summary.samples_dropped > 0 and "could not be stored" in summary.text()
    db = home / "episodes.sqlite"
    assert_matches_labels(rows(db, "SELECT * FROM episodes ORDER BY onset_s"), cramps)
    rec = rows(db, "SELECT * FROM recordings")[0]
    stored, lost = 0, 0
    for r in iter_records(rec["path"]):
        if r.type == "samples" and r.value.stream == "emg":
            stored += r.value.n_samples
        elif r.type == "event" and r.value.kind == "gap" and r.value.stream == "emg":
            assert r.value.detail["cause"] == "recording"
            lost += r.value.n_samples
    assert 0 < lost <= summary.samples_dropped               # (+ any accelerometer samples)
    assert stored + lost == 540_000 and stored > 100_000     # it resumed
    # the episode log knows the recording's holes too, sample for sample
    gaps = rows(db, "SELECT * FROM gaps WHERE stream='emg'")
    assert {g["cause"] for g in gaps} == {"recording"}
    assert sum(g["n_samples"] for g in gaps) == lost == rec["gap_samples"]


# ----------------------------------------------------------------------------- LSL
def test_lsl_enabled_without_pylsl_is_a_clear_error(home, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pylsl", None)          # as if not installed
    assert main(["capture", "--source", SIM, "--set", "lsl=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crampwatch: ") and "pip install 'crampwatch[lsl]'" in err
    assert len(err.splitlines()) == 1


def test_lsl_outlet_streams_the_filtered_emg_and_its_envelope():
    try:
        import pylsl
    except (ImportError, OSError, RuntimeError):
        pytest.skip("pylsl (the optional 'lsl' extra) is not installed")
    from crampwatch.detector.filters import EmgFilter
    from crampwatch.tools.lsl_outlet import LslOutlet
    name = f"cwtest{os.getpid()}"
    cfg = DetectorConfig()
    outlet = LslOutlet(name, 1000.0, cfg, source_id=name)
    found = pylsl.resolve_byprop("name", f"{name}-emg", 1, 10.0)
    assert found, "the outlet is not visible on this host"
    inlet = pylsl.StreamInlet(found[0])
    inlet.open_stream(10.0)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 20, 3000)
    t0 = time.time()
    pushed = []
    for k in range(0, 3000, 250):
        pushed.append(outlet.push(x[k:k + 250], k, t0 + k / 1000.0)[0])
    got, stamps = [], []
    deadline = time.monotonic() + 10
    while sum(len(g) for g in got) < 3000 and time.monotonic() < deadline:
        data, ts = inlet.pull_chunk(timeout=0.5)
        got += [data]
        stamps += ts
    values = np.concatenate([np.asarray(g, dtype=np.float64).reshape(-1) for g in got if g])
    ref = EmgFilter(1000.0, cfg.band_low_hz, cfg.band_high_hz, cfg.band_order, cfg.mains_hz,
                    cfg.notch_width_hz).process(x)[0]
    assert values.size == 3000
    np.testing.assert_allclose(values, ref.astype(np.float32), rtol=1e-6, atol=1e-4)
    assert np.allclose(np.diff(stamps), 1e-3, atol=1e-6)     # one stamp per sample
    outlet.close()


# ----------------------------------------------------------------------------- the clock
def test_stop_at_ends_the_night_and_a_late_restart_stops_at_once(home):
    from datetime import datetime, timedelta, timezone

    from crampwatch.tools.capture.night_file import stop_time
    t = datetime(2026, 3, 5, 22, 30, tzinfo=timezone.utc)
    assert stop_time("08:00", t) == datetime(2026, 3, 6, 8, 0, tzinfo=timezone.utc)
    assert stop_time("08:00", t.replace(hour=8, minute=1)) < t.replace(hour=8, minute=1)
    assert stop_time("", t) is None
    just_past = (datetime.now().astimezone() - timedelta(minutes=1)).strftime("%H:%M")
    summary = CaptureDaemon(CaptureConfig(source=SIM, stop_at=just_past), DetectorConfig()).run()
    assert summary.stop_reason == f"stop_at {just_past}" and summary.night is None


def test_a_new_night_begins_at_noon(home, tmp_path):
    """A recording whose samples cross local noon (played through file://) is split
    into two nights' recordings exactly there, as a capture left running would be."""
    from datetime import datetime, timedelta

    from crampwatch.firmware_bridge.recording import CaptureWriter, RecordingHeader
    from crampwatch.firmware_bridge.types import SampleBlock, StreamInfo
    noon = datetime.now().astimezone().replace(hour=12, minute=0, second=0, microsecond=0)
    t0 = (noon - timedelta(seconds=30)).timestamp()
    src = tmp_path / "across-noon.cwrec"
    rng = np.random.default_rng(5)
    hdr = RecordingHeader(emg=StreamInfo("emg", 1000.0, ("emg",), "uV"),
                          acc=StreamInfo("acc", 100.0, ("x", "y", "z"), "g"), board="test")
    with CaptureWriter(src, hdr) as w:
        for k in range(60):
            w.write_block(SampleBlock("emg", 1000.0, k * 1000, rng.normal(0, 5, (1000, 1)),
                                      t0 + k))
            w.write_block(SampleBlock("acc", 100.0, k * 100, np.tile([0.0, 0.0, 1.0], (100, 1)),
                                      t0 + k))
    CaptureDaemon(CaptureConfig(source=f"file://{src}?speed=max"), DetectorConfig()).run()
    db = home / "episodes.sqlite"
    recs = rows(db, "SELECT r.*, n.night_date FROM recordings r JOIN nights n USING (night_id) "
                    "ORDER BY started_utc")
    assert len(recs) == 2 and recs[0]["night_date"] < recs[1]["night_date"]
    assert [r["samples"] for r in recs] == [30_000, 30_000]
    assert datetime.fromisoformat(recs[1]["started_utc"]) == noon
    for r in recs:
        with open_capture(r["path"]) as reader:
            assert reader.duration_s == 30.0 and reader.stats.closed
