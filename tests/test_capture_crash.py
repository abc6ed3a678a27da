"""SIGKILL during capture, then a restart the same night.

board-sim (real process, real pty, 20x real time) -> ``crampwatch capture``
(real process) SIGKILLed while a cramp is going on:

- the recording reads up to at most about one second (wall time) before the
  kill: every sample the daemon reported handed to the recording 1.5 s before
  the kill (1 s fsync interval + scheduling slack) is in the file;
- the episode is left ``open`` in SQLite; a restart continues the same night
  in the same file (a new segment, the downtime stored as a ``restart`` gap)
  and closes it as ``truncated``;
- replaying the whole file gives the same episodes as the live log (the live
  detector was brought up to date from the file before going on).
"""

from __future__ import annotations

import os

import pytest
from boardsim_helpers import BoardSimProcess
from test_capture_e2e import (HOURS, SEED, CaptureProcess, db_rows, night_cramps, read_emg,
                              replay_episodes)

from crampwatch.firmware_bridge.recording import open_capture

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs ptys")

# a sample handed to the recording this long before the kill must be in the file
MUST_HAVE_S = 1.0 + 0.5


def test_sigkill_mid_cramp_then_restart_continues_the_night(tmp_path):
    home = tmp_path / "home"
    first = night_cramps()[0]
    with BoardSimProcess("--protocol", "open", "--pty", "--speed", "20", "--hours", str(HOURS),
                         "--seed", str(SEED)) as sim:
        # read frame by frame (batch_s=0): at 20x real time a batch of 0.25 s holds 5 s of
        # signal, dated back from its arrival, more than the restart's pause
        url = f"serial://{sim.where}?board=open&batch_s=0"
        cap = CaptureProcess(home, "--source", url, "--set", "log_interval_s=0.1")
        try:
            cap.wait_for(r"cramp onset")
            # kill while the cramp goes on, well after its confirmation reached the disk
            kill_at = int((first.onset_s + 55.0) * 1000)
            while not cap.progress() or cap.progress()[-1][1] < kill_at:
                cap.wait_for(r"progress: ")
            t_kill = cap.lines[-1][0]
            cap.kill()
        finally:
            cap.close()
        db = str(home / "episodes.sqlite")
        rec = db_rows(db, "SELECT * FROM recordings")[0]
        open_rows = db_rows(db, "SELECT * FROM episodes")
        assert [e["status"] for e in open_rows] == ["open"]
        # the recording holds everything handed to it up to ~1 s before the kill
        idx, _ = read_emg(rec["path"])
        must_have = max(n for t, n in cap.progress() if t <= t_kill - MUST_HAVE_S)
        assert idx.size == idx.max() + 1 >= must_have
        assert idx.max() + 1 <= cap.progress()[-1][1] + 20_000     # not more than was handed
        killed_end = idx.size

        # restart the same night: same file, the open episode becomes truncated
        cap2 = CaptureProcess(home, "--source", url, "--duration", "60")
        try:
            assert cap2.finish(timeout_s=90) == 0, cap2.stderr()[-3000:]
        finally:
            cap2.close()
    assert "closed as truncated" in cap2.stderr() and "continuing the night's recording" \
        in cap2.stderr()
    recs = db_rows(db, "SELECT * FROM recordings")
    assert [r["path"] for r in recs] == [rec["path"]]                # the same file
    assert len(db_rows(db, "SELECT * FROM nights")) == 1            # the same night
    eps = db_rows(db, "SELECT * FROM episodes ORDER BY onset_s")
    assert eps[0]["episode_id"] == open_rows[0]["episode_id"]
    assert eps[0]["status"] == "truncated"
    assert abs(eps[0]["onset_s"] - first.onset_s) <= 2.0
    assert eps[0]["offset_s"] >= killed_end / 1000.0 - 10.0
    restart = db_rows(db, "SELECT * FROM gaps WHERE stream='emg'")
    assert [g["cause"] for g in restart] == ["restart"]
    assert restart[0]["first_index"] == killed_end
    with open_capture(rec["path"]) as reader:
        assert [s.reason for s in reader.segments] == ["start", "resume"]
        assert reader.segments[-1].closed
    idx, gaps = read_emg(rec["path"])
    assert [(g.first_index, g.n_samples) for g in gaps] == \
        [(killed_end, restart[0]["n_samples"])]
    assert idx.size == killed_end + 60_000                          # --duration 60 s
    assert recs[0]["samples"] == idx.max() + 1
    # replay of the whole file: the same episodes as the live log
    rep = replay_episodes(rec["path"], tmp_path)
    assert len(rep) == len(eps)
    for r, e in zip(rep, eps):
        assert abs(r["onset_s"] - e["onset_s"]) <= 0.05
        assert abs(r["offset_s"] - e["offset_s"]) <= 0.05
    print(f"\nkilled with {killed_end} EMG samples on disk (reported {must_have} handed "
          f"{MUST_HAVE_S} s before the kill); restart gap {restart[0]['n_samples']} samples; "
          f"episodes live {[(e['onset_s'], e['offset_s'], e['status']) for e in eps]}, "
          f"replay {[(r['onset_s'], r['offset_s'], r['status']) for r in rep]}")
