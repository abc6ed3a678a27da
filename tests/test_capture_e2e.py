"""End to end: ``crampwatch board-sim`` (a real process on a real pty or TCP port)
-> ``crampwatch capture`` (a real process) -> recording + SQLite episode log.

- the episodes in SQLite are the simulator's labelled cramps (onset within 2 s)
  and ``crampwatch replay`` on the recording gives the same episodes;
- the simulator killed and restarted mid-night: capture reconnects by itself
  and the gap is recorded with its exact sample count, in the recording and in
  SQLite, and the data resume exactly after it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from boardsim_helpers import BoardSimProcess, db_rows

from crampwatch.firmware_bridge.recording import open_capture
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
from crampwatch.firmware_bridge.types import SampleBlock

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs ptys")

# a 9 min night whose three cramps are clear (see test_sim_night_has_clear_cramps)
HOURS = 0.15
SEED = 2
NIGHT_S = 540.0


class CaptureProcess:
    """``crampwatch capture ...`` as a real process with ``CRAMPWATCH_HOME`` set.

    Its stderr lines are collected by a thread with their arrival time, so a
    test waits on a line (never sleeps) and knows when it came.
    """

    def __init__(self, home: str, *args: str, env: dict | None = None):
        cmd = [sys.executable, "-m", "crampwatch.tools.cli", "capture", *args]
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, "CRAMPWATCH_HOME": str(home), **(env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self._q: queue.Queue = queue.Queue()
        self._out: list[str] = []
        threading.Thread(target=self._read_err, daemon=True).start()
        threading.Thread(target=lambda: self._out.extend(self.proc.stdout), daemon=True).start()

    def _read_err(self):
        for line in self.proc.stderr:
            self._q.put((time.monotonic(), line.rstrip("\n")))
        self._q.put(None)

    def wait_for(self, pattern: str, timeout_s: float = 60.0) -> tuple[float, str]:
        """Wait for a stderr line matching the regex ``pattern``; (arrival time, line)."""
        deadline = time.monotonic() + timeout_s
        rx = re.compile(pattern)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line /{pattern}/ within {timeout_s} s:\n"
                                     + self.stderr()[-3000:])
            try:
                item = self._q.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if item is None:
                raise AssertionError(f"capture ended (status {self.proc.wait()}) before "
                                     f"/{pattern}/:\n" + self.stderr()[-3000:])
            self.lines.append(item)
            if rx.search(item[1]):
                return item

    def progress(self) -> list[tuple[float, int]]:
        """(arrival time, EMG samples handed to the recording) of each progress line seen."""
        return [(t, int(m.group(1))) for t, line in self.lines
                if (m := re.search(r"progress: .*samples=(\d+)", line))]

    def finish(self, timeout_s: float = 60.0) -> int:
        """Wait for the process to end by itself; returns its exit status."""
        rc = self.proc.wait(timeout_s)
        self._drain()
        return rc

    def terminate(self, timeout_s: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout_s)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._drain()

    def _drain(self):
        while True:
            try:
                item = self._q.get(timeout=5.0)
            except queue.Empty:
                return
            if item is None:
                return
            self.lines.append(item)

    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def stdout(self) -> str:
        time.sleep(0)  # the reader thread ends with the process
        return "".join(self._out)

    def close(self):
        if self.proc.poll() is None:
            self.kill()


def night_cramps(hours: float = HOURS, seed: int = SEED) -> list:
    night = SyntheticNight(NightSpec(hours=hours, seed=seed))
    return [lab for lab in night.labels if lab.kind == "cramp"]




def replay_episodes(path: str, tmp_path) -> list[dict]:
    """``crampwatch replay PATH --episodes OUT`` (the CLI's main, in this process)."""
    from crampwatch.tools.cli import main
    out = tmp_path / f"replay-{os.path.basename(path)}.jsonl"
    assert main(["replay", str(path), "--episodes", str(out), "--quiet"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def read_emg(path: str):
    """(sample indices present, gap events) of a recording's EMG stream."""
    idx, gaps = [], []
    with open_capture(path) as r:
        for item in r.blocks(block_s=60.0):
            if isinstance(item, SampleBlock):
                if item.stream == "emg":
                    idx.append(np.arange(item.first_index, item.end_index))
            elif item.stream == "emg":
                gaps.append(item)
    return (np.concatenate(idx) if idx else np.zeros(0, int)), gaps


def test_board_sim_over_a_pty_to_sqlite_matches_the_labels_and_replay(tmp_path):
    """board-sim (open frame, real pty, 40x real time) -> capture (real process) ->
    the SQLite episodes are the labelled cramps, onsets within 2 s; replay of the
    recording gives the same episodes (onsets within one frame)."""
    home = tmp_path / "home"
    cramps = night_cramps()
    with BoardSimProcess("--protocol", "open", "--pty", "--speed", "40", "--hours", str(HOURS),
                         "--seed", str(SEED)) as sim:
        cap = CaptureProcess(home, "--source", f"serial://{sim.where}?board=open",
                             "--duration", str(NIGHT_S))
        try:
            assert cap.finish(timeout_s=90) == 0, cap.stderr()[-3000:]
        finally:
            cap.close()
    db = str(home / "episodes.sqlite")
    eps = db_rows(db, "SELECT * FROM episodes ORDER BY onset_s")
    recs = db_rows(db, "SELECT * FROM recordings")
    assert len(recs) == 1
    rec = recs[0]
    assert rec["samples"] == int(NIGHT_S * 1000) and rec["gap_samples"] == 0
    assert [e["status"] for e in eps] == ["closed"] * len(cramps)
    for e, lab in zip(eps, cramps):
        assert abs(e["onset_s"] - lab.onset_s) <= 2.0, (e["onset_s"], lab.onset_s)
        assert e["offset_s"] > e["onset_s"] and e["recording_id"] == rec["recording_id"]
    # the same episodes from the recording, through the replay command
    path = rec["path"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    rep = replay_episodes(path, tmp_path)
    assert len(rep) == len(eps)
    for r, e in zip(rep, eps):
        assert abs(r["onset_s"] - e["onset_s"]) <= 0.05
        assert abs(r["offset_s"] - e["offset_s"]) <= 0.05
    # per-minute summaries for the morning review, every minute of the night
    minutes = db_rows(db, "SELECT * FROM minutes ORDER BY minute_utc")
    assert len(minutes) == int(NIGHT_S // 60)
    assert all(m["good_s"] > 0 for m in minutes)
    assert "3 episodes" in cap.stdout() and "stopped (--duration" in cap.stdout()


def test_board_sim_killed_and_restarted_capture_reconnects_and_records_the_exact_gap(tmp_path):
    """SIGKILL the simulator behind a TCP port mid-night and start a new one on the
    same port: capture reconnects by itself; the gap it was told about is the one in
    the recording and in SQLite, sample for sample, and the data resume right after."""
    home = tmp_path / "home"
    args = ("--protocol", "open", "--speed", "5", "--hours", str(HOURS), "--seed", str(SEED),
            "--emg-fs", "500", "--acc-fs", "50")
    with BoardSimProcess(*args, "--tcp", "0") as sim1:
        port = int(sim1.where.rsplit(":", 1)[1])
        cap = CaptureProcess(home, "--source", f"socket://127.0.0.1:{port}?board=open",
                             "--set", "stall_s=1", "--set", "log_interval_s=0.2")
        try:
            cap.wait_for(r"progress: connected; 00:00:0[2-9]")
            sim1.kill()
            cap.wait_for(r"board disconnected")
            with BoardSimProcess(*args, "--tcp", str(port)) as sim2:
                assert sim2.where.endswith(f":{port}")
                _, gap_line = cap.wait_for(r"EMG samples .* missing")
                cap.wait_for(r"progress: connected; .*gaps=1/")
                first_after = len(cap.progress())
                cap.wait_for(r"progress: connected; ")     # more signal after the gap
                assert len(cap.progress()) > first_after
                assert cap.terminate() == 0, cap.stderr()[-3000:]
        finally:
            cap.close()
    assert "reconnected to" in cap.stderr()
    logged = int(re.search(r"(\d+) EMG samples", gap_line).group(1))
    db = str(home / "episodes.sqlite")
    gaps = db_rows(db, "SELECT * FROM gaps WHERE stream='emg'")
    rec = db_rows(db, "SELECT * FROM recordings")[0]
    assert len(gaps) == 1 and gaps[0]["n_samples"] == logged > 0
    assert rec["gap_samples"] == logged
    assert gaps[0]["cause"] == "device_reset"           # a new board: its counter restarted
    assert gaps[0]["duration_s"] == pytest.approx(logged / 500.0)
    idx, file_gaps = read_emg(rec["path"])
    assert [(g.first_index, g.n_samples) for g in file_gaps] == \
        [(gaps[0]["first_index"], logged)]
    # the stored samples stop where the gap begins and resume right after it
    g0 = gaps[0]["first_index"]
    assert idx[idx < g0].max() == g0 - 1
    assert idx[idx >= g0].min() == g0 + logged
    assert idx.size + logged == idx.max() + 1                # nothing else missing
    assert rec["samples"] == idx.max() + 1
