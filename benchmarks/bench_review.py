"""Morning-review benchmark: the HTML report (and the terminal summary) of a 365-night log.

Builds an episode log of N nights (default 365): the last three are real recordings (simulated
nights written as crash-safe capture recordings, the capture daemon's format, replayed into
the log with ``crampwatch replay --db``), the others are 8 h nights inserted row by row through
``EpisodeLog`` (480 per-minute summaries, 0-3 episodes each, recording files absent).  Then
times, in this process after a warm-up, the report of the last night (timeline, close-ups
read from its recording, trends over 30 nights) on the big log and on a log holding only that
night (the baseline), and the installed command end to end (a fresh process, as the user runs
it).  The target is a 365-night report in under 30 s.

Run by hand (not in CI)::

    python benchmarks/bench_review.py [--nights 365] [--real-hours 0.5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta

import numpy as np

LAST_NIGHT = date(2025, 6, 30)


def capture_from_edf(edf: str, out: str) -> None:
    """Write an EDF night as a crash-safe capture recording (what the daemon writes)."""
    from crampwatch.firmware_bridge.readers import open_recording
    from crampwatch.firmware_bridge.recording import CaptureWriter, RecordingHeader
    from crampwatch.firmware_bridge.types import SampleBlock, StreamInfo
    with open_recording(edf) as r:
        hdr = RecordingHeader(emg=StreamInfo("emg", r.emg.fs_hz, ("gastroc_l",), "uV"),
                              acc=StreamInfo("acc", r.acc.fs_hz, ("x", "y", "z"), "g"),
                              board="sim", source_url="sim://", start_time=r.start_time)
        with CaptureWriter(out, hdr) as w:
            for k, b in enumerate(r.blocks(10.0)):
                if isinstance(b, SampleBlock):
                    w.write_block(b)
                if k % 200 == 199:      # faster than real time: let the writer keep up
                    w.flush()


def synthetic_nights(db: str, n_nights: int, skip_last: int, seed: int = 0) -> int:
    """Insert n_nights - skip_last recorded 8 h nights before the real ones (every 13th
    calendar day without recording)."""
    from crampwatch.detector import Episode
    from crampwatch.tools.episode_log import EpisodeLog, utc_iso
    rng = np.random.default_rng(seed)
    n_eps = 0
    with EpisodeLog(db) as log:
        d, made = LAST_NIGHT - timedelta(days=skip_last), 0
        while made < n_nights - skip_last:
            d -= timedelta(days=1)
            if d.toordinal() % 13 == 7:          # now and then a night without recording
                continue
            made += 1
            start = datetime(d.year, d.month, d.day, 22, 30).astimezone()
            nid = log.night_for(start)
            rid = log.add_recording(nid, os.path.join(os.path.dirname(db), f"{d}.cwrec"),
                                    start, channel="gastroc_l", emg_fs_hz=1000.0,
                                    acc_fs_hz=100.0)
            rms = np.exp(rng.normal(1.0, 0.4, 480))
            log.add_minutes(rid, [{
                "minute_utc": utc_iso(start + timedelta(minutes=m)), "rms_uv": float(rms[m]),
                "rms_p95_uv": float(rms[m] * 3), "floor_uv": 2.0, "motion_g": 0.01,
                "good_s": 57.0, "artifact_s": 2.0, "nodata_s": 1.0} for m in range(480)])
            log.update_recording(rid, ended_utc=start + timedelta(hours=8),
                                 samples=8 * 3600 * 1000)
            for i in range(int(rng.integers(0, 4))):
                on = float(rng.uniform(600, 8 * 3600 - 1200))
                ep = Episode(i + 1, on, on + float(rng.lognormal(4.0, 0.7)), 150.0, 80.0,
                             0.8, 2.0, "closed")
                log.close_episode(log.open_episode(nid, rid, start, ep, 1000.0, "gastroc_l"),
                                  start, ep, 1000.0)
                n_eps += 1
    return n_eps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--real-hours", type=float, default=0.5,
                    help="length of the three real (recorded) nights")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR (kept)")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="cw-bench-review-")
    os.makedirs(work, exist_ok=True)
    from crampwatch.firmware_bridge.edf import write_edf
    from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
    from crampwatch.tools.cli import main as cli
    from crampwatch.tools.episode_log import EpisodeLog
    from crampwatch.tools.report_html import write_report
    from crampwatch.tools.review import format_summary, resolve_night, summarize_night

    big, small = os.path.join(work, "year.sqlite"), os.path.join(work, "one.sqlite")
    for p in (big, small):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(p + suffix):
                os.remove(p + suffix)
    t = time.perf_counter()
    n_syn_eps = synthetic_nights(big, args.nights, 3)
    build_s = time.perf_counter() - t
    caps = []
    t = time.perf_counter()
    for k in range(3):
        d = LAST_NIGHT - timedelta(days=2 - k)
        start = datetime(d.year, d.month, d.day, 22, 30).astimezone()
        edf, cap = os.path.join(work, f"real{k}.edf"), os.path.join(work, f"real{k}.cwrec")
        if not os.path.exists(cap):
            write_edf(edf, SyntheticNight(NightSpec(hours=args.real_hours, seed=3 + k,
                                                    n_cramps=2, start_utc=start)))
            capture_from_edf(edf, cap)
            os.remove(edf)
        caps.append(cap)
    sim_s = time.perf_counter() - t
    with open(os.devnull, "w") as devnull:
        old, sys.stdout = sys.stdout, devnull
        try:
            cli(["replay", *caps, "--db", big, "--quiet"])
            cli(["replay", caps[-1], "--db", small, "--quiet"])
        finally:
            sys.stdout = old

    def timed_report(db: str, out: str):
        with EpisodeLog(db) as log:
            night = resolve_night(log, "last")
            t0 = time.perf_counter()
            info = write_report(log, out, night=night)
            return time.perf_counter() - t0, info

    timed_report(small, os.path.join(work, "warmup.html"))      # imports, font cache
    base_s, base_info = timed_report(small, os.path.join(work, "one.html"))
    year_s, year_info = timed_report(big, os.path.join(work, "year.html"))
    with EpisodeLog(big) as log:
        t0 = time.perf_counter()
        text = format_summary(summarize_night(log, resolve_night(log, "last")), big)
        summary_s = time.perf_counter() - t0
        n_nights = len(log.nights())
        n_eps = len(log.episodes())
    assert "Night of" in text

    exe = [os.path.join(os.path.dirname(sys.executable), "crampwatch")]
    cmd = {}
    for name, extra in (("review", []), ("review_json", ["--json"]),
                        ("review_html", ["--html", os.path.join(work, "cmd.html")])):
        t0 = time.perf_counter()
        subprocess.run(exe + ["review", "--db", big, *extra], check=True,
                       stdout=subprocess.DEVNULL)
        cmd[name] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    subprocess.run(exe + ["--version"], check=True, stdout=subprocess.DEVNULL)
    startup_s = time.perf_counter() - t0

    res = {
        "nights_in_log": n_nights,
        "episodes_in_log": n_eps,
        "synthetic_episodes": n_syn_eps,
        "log_mb": round(os.path.getsize(big) / 2**20, 1),
        "log_build_s": round(build_s, 2),
        "real_nights_h": args.real_hours,
        "simulate_and_capture_s": round(sim_s, 1),
        "report_365_nights_s": round(year_s, 2),
        "report_1_night_baseline_s": round(base_s, 2),
        "ratio_365_to_1_night": round(year_s / base_s, 2),
        "closeups": year_info.n_closeups,
        "html_mb": round(os.path.getsize(os.path.join(work, "year.html")) / 2**20, 2),
        "terminal_summary_s": round(summary_s, 3),
        "command_wall_s": cmd,
        "command_startup_only_s": round(startup_s, 2),
        "target_report_s": 30.0,
        "within_target": cmd["review_html"] < 30.0,
        "work_dir": work,
    }
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
