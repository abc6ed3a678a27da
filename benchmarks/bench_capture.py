"""Capture daemon benchmark: an 8 h simulated night streamed through ``crampwatch capture``.

Runs the real command (a subprocess, ``CRAMPWATCH_HOME`` in a temporary
directory) on a night paced at ``--speed`` times real time and prints:

- CPU seconds per hour of signal of the daemon process, as a share of one
  core at real time (aim: under 2 % at 1 kHz), and the ratio to a plain
  replay of the same recording (the pipeline alone, in 300 s blocks) measured
  in the same run.  ``--via pty`` (default): ``crampwatch board-sim`` (open
  frame protocol, its own process) on a pty, read as ``serial://``, so the
  daemon's CPU includes decoding the wire as with a real board.  ``--via sim``:
  ``sim://`` in blocks of 0.1 s; its rendering runs in the daemon's process and
  is measured alone in the same run (draining the same source) and subtracted;
- peak RSS, sampled every second, at each quarter of the night, and its slope
  (aim: flat, under 150 MB);
- per cramp: the labelled onset, the logged onset, when the minimum-duration
  rule was met (confirmation), the signal that had to arrive beyond that
  point before the row was written and the processing time, i.e. the latency
  from the rule being met to the row in SQLite (aim: within 2 s);
- unless ``--no-realtime``, a short real-time capture (board-sim on a pty at
  speed 1) that measures that latency on the wall clock directly, for the
  first cramp of a 9 min night, and the daemon's CPU share (about 80 s);
- unless ``--minutes 0``, the figure a Raspberry Pi needs (issue 12): the
  daemon at real time for ``--minutes`` (default 10) reading ``crampwatch
  board-sim`` (open frame, its own process) on a pty, two EMG channels at
  1 kHz plus the accelerometer at 100 Hz, both channels watched when the
  capture config has ``[capture] channels``.  Printed: the whole daemon
  process's CPU (user+sys) as a share of one core after start-up, its main
  thread and the others (source and writer), and RSS sampled every second
  (peak, first and last minute, slope).  The baseline, measured in the same
  run and at the same time on a second board-sim: a bare Python reader of the
  same bytes at the source's cadence (``select`` + ``read`` every
  ``batch_s``, nothing decoded), the least any Python reader spends; the
  daemon's share is also printed as a multiple of it.  ``--readme`` writes
  these figures into README.md between ``<!-- capture-bench:start -->`` and
  ``<!-- capture-bench:end -->``.

Run by hand (not in CI)::

    python benchmarks/bench_capture.py [--hours 8] [--speed 100] [--seed 0] [--via pty|sim]
                                       [--no-night] [--no-realtime] [--minutes 10] [--readme]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import numpy as np
import psutil

_DRAIN = """
import sys, time
from crampwatch.firmware_bridge.sources import open_source
c = time.process_time()
n = 0
with open_source(sys.argv[1]) as src:
    for item in src.iter():
        n += getattr(item, "n_samples", 0) if getattr(item, "stream", None) == "emg" else 0
print(time.process_time() - c, n)
"""

_REPLAY = """
import sys, time
from crampwatch.detector import DetectorConfig
from crampwatch.tools._run import run_recording
c = time.process_time()
res = run_recording(sys.argv[1], DetectorConfig(), progress=False)
print(time.process_time() - c, len(res.episodes))
"""


_BARE = """
import os, select, sys, time, tty
from crampwatch.firmware_bridge.protocols import openframe
path, seconds, batch_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
tty.setraw(fd)
os.write(fd, openframe.HostEncoder().start())
t_end = time.monotonic() + seconds
n = 0
while time.monotonic() < t_end:
    if select.select([fd], [], [], 0.5)[0]:
        time.sleep(batch_s)
        n += len(os.read(fd, 1 << 20))
print(n)
"""

README_START = "<!-- capture-bench:start -->"
README_END = "<!-- capture-bench:end -->"


def capture_channels_supported() -> bool:
    """True when the capture config has ``[capture] channels`` (every channel watched)."""
    import dataclasses
    import importlib

    for name in ("crampwatch.tools.capture.config", "crampwatch.tools.capture_config"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        cls = getattr(mod, "CaptureConfig", None)
        if cls is not None and dataclasses.is_dataclass(cls):
            return "channels" in {f.name for f in dataclasses.fields(cls)}
    return False


def _board_sim(seed: int, hours: float, speed: str = "1") -> tuple[subprocess.Popen, str]:
    sim = subprocess.Popen([sys.executable, "-m", "crampwatch.tools.board_sim", "--protocol",
                            "open", "--pty", "--speed", speed, "--hours", f"{hours:g}",
                            "--seed", str(seed)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return sim, sim.stdout.readline().strip()


def _thread_cpu(ps) -> dict:
    return {t.id: t.user_time + t.system_time for t in ps.threads()}


def realtime_minutes(minutes: float, seed: int, startup_s: float = 30.0) -> dict:
    """The issue-12 measurement: see the module docstring.  Returns the figures."""
    # the daemon reads serial sources in batches of one turn of its loop
    from crampwatch.tools.capture.daemon import LOOP_S as BATCH_S

    seconds = minutes * 60.0
    total_s = seconds + startup_s
    hours = total_s / 3600 + 0.05
    channels = capture_channels_supported()
    extra = ["--duration", f"{total_s:g}"]
    if channels:
        extra += ["--set", "channels=emg1=left_calf,emg2=right_calf"]
    sim, path = _board_sim(seed, hours)
    base_sim, base_path = _board_sim(seed, hours)
    bare = None
    try:
        url = f"serial://{path}?board=open"
        with tempfile.TemporaryDirectory(prefix="bench-capture-min-") as tmp:
            home = os.path.join(tmp, "home")
            env = {**os.environ, "CRAMPWATCH_HOME": home}
            os.makedirs(home)
            err_path = os.path.join(home, "capture.stderr")
            with open(err_path, "w") as err:
                proc = subprocess.Popen([sys.executable, "-m", "crampwatch.tools.cli", "capture",
                                         "--source", url, "--set", "log_interval_s=60", *extra],
                                        env=env, stdout=subprocess.PIPE, stderr=err, text=True)
                ps = psutil.Process(proc.pid)
                t0 = time.monotonic()
                rows = []      # (wall s, process cpu s, rss bytes, main thread cpu s)
                bare_ps = bare_c0 = None
                while proc.poll() is None:
                    now = time.monotonic() - t0
                    if bare is None and now >= startup_s:
                        # the baseline runs during the measured window, on its own board-sim
                        bare = subprocess.Popen([sys.executable, "-c", _BARE, base_path,
                                                 f"{seconds - 5:g}", f"{BATCH_S:g}"],
                                                stdout=subprocess.PIPE, text=True)
                        bare_ps = psutil.Process(bare.pid)
                        time.sleep(2.0)        # its imports are start-up too
                        ct = bare_ps.cpu_times()
                        bare_c0 = (time.monotonic(), ct.user + ct.system)
                    try:
                        ct = ps.cpu_times()
                        main = _thread_cpu(ps).get(proc.pid, 0.0)
                        rows.append((now, ct.user + ct.system, ps.memory_info().rss, main))
                    except psutil.NoSuchProcess:
                        break
                    if bare_ps is not None and bare.poll() is None:
                        try:
                            ct = bare_ps.cpu_times()
                            bare_last = (time.monotonic(), ct.user + ct.system)
                        except psutil.NoSuchProcess:
                            pass
                    time.sleep(1.0)
                proc.communicate()
            with open(err_path) as fh:
                stderr = fh.read()
            if proc.returncode != 0:
                raise SystemExit(f"capture failed ({proc.returncode}):\n{stderr[-3000:]}")
            eps, rec = episodes(home)
            rec_mb = os.path.getsize(rec["path"]) / 1e6
    finally:
        for p in (bare, sim, base_sim):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait()
    r = np.array(rows)
    steady = r[r[:, 0] >= startup_s]
    span = steady[-1, 0] - steady[0, 0]
    share = (steady[-1, 1] - steady[0, 1]) / span
    main_share = (steady[-1, 3] - steady[0, 3]) / span
    bare_share = (bare_last[1] - bare_c0[1]) / max(bare_last[0] - bare_c0[0], 1e-9)
    rss = steady[:, 2] / 2**20
    t_h = (steady[:, 0] - steady[0, 0]) / 3600
    slope = float(np.polyfit(t_h, rss, 1)[0]) if len(rss) > 2 else float("nan")
    first_min = float(rss[t_h * 60 <= 1.0].mean())
    last_min = float(rss[t_h * 60 >= t_h[-1] * 60 - 1.0].mean())
    return {"minutes": span / 60, "channels_watched": 2 if channels else 1,
            "batch_s": BATCH_S, "share": share, "main_share": main_share,
            "other_share": share - main_share, "bare_share": bare_share,
            "rss_peak_mb": float(rss.max()), "rss_first_min_mb": first_min,
            "rss_last_min_mb": last_min, "rss_slope_mb_per_h": slope,
            "recording_mb": rec_mb, "episodes": len(eps), "gap_samples": rec["gap_samples"],
            "cpu_model": _cpu_model()}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def minutes_lines(f: dict) -> list[str]:
    """The real-time figures as Markdown lines (printed, and the README block)."""
    watched = ("both EMG channels watched (`[capture] channels`)" if f["channels_watched"] == 2
               else "the first EMG channel watched (both recorded)")
    ok_cpu = "met" if f["share"] < 0.01 else "not met"
    flat = abs(f["rss_last_min_mb"] - f["rss_first_min_mb"]) < 5.0
    ok_rss = "met" if f["rss_peak_mb"] < 150 and flat else "not met"
    head = (f"`python benchmarks/bench_capture.py --minutes {f['minutes']:.0f}`: `crampwatch "
            f"capture` at real time for {f['minutes']:.1f} min on `crampwatch board-sim` (open "
            f"frame, a pty, its own process), two EMG channels at 1 kHz + accelerometer at "
            f"100 Hz, {watched}; the source reads every {1000 * f['batch_s']:.0f} ms; "
            f"{f['cpu_model']}.")
    cpu = (f"- CPU, whole daemon process after start-up: **{100 * f['share']:.2f} % of one "
           f"core** (aim < 1 %: {ok_cpu}); main thread (recording, detection, episode log) "
           f"{100 * f['main_share']:.2f} %, source and writer threads "
           f"{100 * f['other_share']:.2f} %.")
    base = (f"- Baseline in the same run: a bare Python reader of the same bytes at the same "
            f"cadence (nothing decoded) {100 * f['bare_share']:.2f} %; the daemon costs "
            f"{f['share'] / max(f['bare_share'], 1e-9):.1f}x that.")
    rss = (f"- RSS: peak **{f['rss_peak_mb']:.0f} MB** (aim < 150 MB, flat: {ok_rss}), first "
           f"minute {f['rss_first_min_mb']:.0f} MB, last minute {f['rss_last_min_mb']:.0f} MB, "
           f"slope {f['rss_slope_mb_per_h']:+.1f} MB/h.")
    rec = (f"- Recording {f['recording_mb']:.1f} MB, {f['gap_samples']} samples missing, "
           f"{f['episodes']} episode(s).")
    return [head, "", cpu, base, rss, rec]


def write_readme(lines: list[str], path: str) -> None:
    """Replace the block between the capture-bench markers in README.md."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    a, b = text.find(README_START), text.find(README_END)
    if a < 0 or b < a:
        raise SystemExit(f"{path}: markers {README_START} ... {README_END} not found")
    new = text[:a + len(README_START)] + "\n" + "\n".join(lines) + "\n" + text[b:]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(new)
    os.chmod(tmp, os.stat(path).st_mode & 0o777)
    os.replace(tmp, path)


def run_capture(url: str, home: str, extra=()) -> dict:
    """Run ``crampwatch capture`` on ``url``; sample its CPU and RSS every second."""
    env = {**os.environ, "CRAMPWATCH_HOME": home}
    err_path = os.path.join(home, "capture.stderr")
    os.makedirs(home, exist_ok=True)
    with open(err_path, "w") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "crampwatch.tools.cli", "capture",
                                 "--source", url, "--set", "log_interval_s=60", *extra],
                                env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        ps = psutil.Process(proc.pid)
        samples = []          # (wall s, cpu s, rss bytes, main thread cpu s)
        while proc.poll() is None:
            try:
                ct = ps.cpu_times()
                main = sum(t.user_time + t.system_time for t in ps.threads() if t.id == proc.pid)
                samples.append((time.monotonic() - t0, ct.user + ct.system,
                                ps.memory_info().rss, main))
            except psutil.NoSuchProcess:
                break
            time.sleep(1.0)
        out = proc.communicate()[0]
        wall = time.monotonic() - t0
    with open(err_path) as fh:
        stderr = fh.read()
    if proc.returncode != 0:
        raise SystemExit(f"capture failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"samples": samples, "wall_s": wall, "stdout": out, "stderr": stderr}


def episodes(home: str) -> tuple[list[dict], str]:
    con = sqlite3.connect(os.path.join(home, "episodes.sqlite"))
    con.row_factory = sqlite3.Row
    eps = [dict(r) for r in con.execute("SELECT * FROM episodes ORDER BY onset_s")]
    rec = dict(con.execute("SELECT * FROM recordings").fetchone())
    con.close()
    return eps, rec


def onset_lines(stderr: str) -> dict:
    """onset_s -> {confirmed_s, latency_signal_s, latency_wall_s} from the daemon's log."""
    out = {}
    for m in re.finditer(r"onset_s=([\d.]+) confirmed_s=([\d.]+) latency_signal_s=([-\d.]+) "
                         r"latency_wall_s=([-\d.]+)", stderr):
        out[round(float(m.group(1)), 3)] = {"confirmed_s": float(m.group(2)),
                                            "latency_signal_s": float(m.group(3)),
                                            "latency_wall_s": float(m.group(4))}
    return out


def child(code: str, *args: str) -> list[float]:
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True)
    return [float(x) for x in res.stdout.split()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=8.0)
    ap.add_argument("--speed", type=float, default=100.0,
                    help="times real time (default 100: 8 h in under 5 min)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--via", choices=["pty", "sim"], default="pty",
                    help="board-sim on a pty (default) or the in-process sim:// source")
    ap.add_argument("--no-realtime", dest="realtime", action="store_false",
                    help="skip the ~70 s real-time latency check")
    ap.add_argument("--no-night", dest="night", action="store_false",
                    help="skip the night at --speed (and the short real-time check after it)")
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="real-time CPU/RSS measurement, two EMG channels (default 10; 0 skips)")
    ap.add_argument("--readme", action="store_true",
                    help="write the --minutes figures into README.md between the markers")
    args = ap.parse_args()
    if args.readme and not args.minutes:
        ap.error("--readme needs the --minutes measurement")
    figures = None
    if args.minutes:
        print(f"real time, {args.minutes:g} min: board-sim (open frame, 2 EMG channels at 1 kHz "
              "+ accelerometer) on a pty, the daemon and, in the same run, a bare reader ...",
              flush=True)
        figures = realtime_minutes(args.minutes, args.seed)
        print("\n".join(minutes_lines(figures)))
        print(json.dumps(figures))
        if args.readme:
            readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "README.md")
            write_readme(minutes_lines(figures), readme)
            print(f"figures written to {readme}")
    if not args.night:
        return 0
    from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight

    labels = [lab for lab in SyntheticNight(NightSpec(hours=args.hours, seed=args.seed)).labels
              if lab.kind == "cramp"]
    signal_h = args.hours
    sim = None
    if args.via == "sim":
        url = f"sim://?seed={args.seed}&hours={args.hours:g}&speed={args.speed:g}&block_s=0.1"
    else:
        sim = subprocess.Popen([sys.executable, "-m", "crampwatch.tools.board_sim", "--protocol",
                                "open", "--pty", "--speed", f"{args.speed:g}", "--hours",
                                f"{args.hours:g}", "--seed", str(args.seed)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        url = f"serial://{sim.stdout.readline().strip()}?board=open"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
            home = os.path.join(tmp, "home")
            print(f"capture of {url} at {args.speed:g}x ...", flush=True)
            run = run_capture(url, home, ("--duration", f"{args.hours * 3600:g}"))
            eps, rec = episodes(home)
            src_cpu = 0.0
            if sim is None:
                src_cpu = child(_DRAIN, url.replace(f"speed={args.speed:g}", "speed=max"))[0]
            replay_cpu, n_replay = child(_REPLAY, rec["path"])
            rec_mb = os.path.getsize(rec["path"]) / 1e6
            gaps = rec["gap_samples"]
    finally:
        if sim is not None:
            sim.terminate()
            sim.wait()

    s = np.array(run["samples"])
    cpu_total = s[-1, 1]
    net = cpu_total - src_cpu
    print(f"\n{signal_h:g} h of 1 kHz EMG + 100 Hz accelerometer ({args.via}) at {args.speed:g}x "
          f"real time: {run['wall_s']:.0f} s wall, recording {rec_mb:.0f} MB, {gaps} samples "
          f"missing, {len(eps)} episodes (replay of the recording: {n_replay:.0f})")
    print("CPU (user+sys) per hour of signal:")
    print(f"  daemon process       {cpu_total / signal_h:7.1f} s/h")
    if sim is None:
        print(f"  simulated board only {src_cpu / signal_h:7.1f} s/h (rendering the signal; "
              "measured by draining the same source)")
    print(f"  daemon net           {net / signal_h:7.1f} s/h = {100 * net / signal_h / 3600:.2f} % "
          "of one core at real time (aim < 2 %)")
    print(f"  replay of the recording (pipeline only) {replay_cpu / signal_h:.1f} s/h: daemon net "
          f"/ replay = {net / max(replay_cpu, 1e-9):.2f}")
    rss = s[:, 2] / 2**20
    n = len(rss)
    quarters = [rss[min(n - 1, int(q * (n - 1)))] for q in (0.25, 0.5, 0.75, 1.0)]
    t_sig_h = s[:, 0] / s[-1, 0] * signal_h
    late = t_sig_h > 0.1 * signal_h
    slope = np.polyfit(t_sig_h[late], rss[late], 1)[0] if late.sum() > 2 else float("nan")
    print(f"RSS: peak {rss.max():.0f} MB (aim < 150); at 1/4, 1/2, 3/4, end of the night: "
          + ", ".join(f"{q:.0f}" for q in quarters)
          + f" MB; slope after the first 10 %: {slope:+.2f} MB per hour of signal")
    logged = onset_lines(run["stderr"])
    print("cramps (s of signal): labelled onset -> logged onset; rule met (confirmed) after; "
          "then signal waited + processing until the row was written (the wait is in signal "
          f"time: the daemon turns every 0.1 s of wall time, {args.speed / 10:g} s of signal at "
          f"{args.speed:g}x; the real-time check below measures it on the wall clock)")
    for lab in labels:
        e = min(eps, key=lambda e: abs(e["onset_s"] - lab.onset_s), default=None)
        if e is None or abs(e["onset_s"] - lab.onset_s) > 5:
            print(f"  {lab.onset_s:9.1f} -> not detected")
            continue
        info = logged.get(round(e["onset_s"], 3), {})
        conf = info.get("confirmed_s", float("nan"))
        print(f"  {lab.onset_s:9.1f} -> {e['onset_s']:9.2f} ({e['onset_s'] - lab.onset_s:+.2f} s); "
              f"rule met {conf - e['onset_s']:.1f} s after onset; row after "
              f"{info.get('latency_signal_s', float('nan')):.2f} s of signal + "
              f"{1000 * info.get('latency_wall_s', float('nan')):.1f} ms processing")
    extra = [e for e in eps if all(abs(e["onset_s"] - lab.onset_s) > 5 for lab in labels)]
    if extra:
        print("  other episodes (not labelled cramps): "
              + ", ".join(f"{e['onset_s']:.0f} s" for e in extra))

    if args.realtime:
        print("\nreal-time check (board-sim on a pty at speed 1, seed 2, first cramp at 54 s; "
              "about 80 s) ...", flush=True)
        sim = subprocess.Popen([sys.executable, "-m", "crampwatch.tools.board_sim", "--protocol",
                                "open", "--pty", "--speed", "1", "--hours", "0.15", "--seed", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = f"serial://{sim.stdout.readline().strip()}?board=open"
            with tempfile.TemporaryDirectory(prefix="bench-capture-rt-") as tmp:
                home = os.path.join(tmp, "home")
                rt = run_capture(url, home, ("--duration", "75"))
                eps, rec = episodes(home)
        finally:
            sim.terminate()
            sim.wait()
        logged = onset_lines(rt["stderr"])
        start = datetime.fromisoformat(rec["started_utc"])
        smp = np.array(rt["samples"])
        steady = smp[smp[:, 0] >= 10.0]          # after start-up (imports, planning the night)
        span = max(steady[-1, 0] - steady[0, 0], 1e-9)
        share = (steady[-1, 1] - steady[0, 1]) / span
        main_share = (steady[-1, 3] - steady[0, 3]) / span
        for e in eps:
            info = logged.get(round(e["onset_s"], 3))
            if not info:
                continue
            rule_met = start.timestamp() + info["confirmed_s"]
            created = datetime.fromisoformat(e["created_utc"]).timestamp()
            print(f"  episode at {e['onset_s']:.2f} s: rule met at {info['confirmed_s']:.1f} s; "
                  f"row in SQLite {created - rule_met:.2f} s later on the wall clock "
                  "(aim < 2 s)")
        print(f"  daemon CPU at real time after start-up: {100 * share:.2f} % of one core "
              f"(aim < 2 %): its main loop (recording, detection, episode log) "
              f"{100 * main_share:.2f} %, the other threads (the serial source decoding each "
              f"frame as it arrives, the recording writer) {100 * (share - main_share):.2f} %")
    print(json.dumps({"cpu_s_per_signal_h": cpu_total / signal_h,
                      "net_cpu_s_per_signal_h": net / signal_h,
                      "net_core_share_at_real_time": net / signal_h / 3600,
                      "rss_peak_mb": float(rss.max()), "rss_slope_mb_per_h": float(slope)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
