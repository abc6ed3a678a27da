"""``crampwatch replay``: run recordings through the pipeline as fast as possible."""

from __future__ import annotations

import csv
import json
import sys
from datetime import timedelta

from crampwatch._files import atomic_private_write, check_output_path
from crampwatch._text import sanitize_text
from crampwatch.errors import ChannelNotFoundError
from crampwatch.sites import site_label
from crampwatch.tools._run import (
    load_config,
    local_str,
    parse_acc_labels,
    parse_emg,
    run_channels,
)

HELP = "replay recordings (EDF/EDF+/BDF or crampwatch captures) through the detector"
DESCRIPTION = """Replay recordings through the very same pipeline as live capture, as fast as
possible, print a table of the episodes found and optionally write them as JSON Lines or CSV."""

FIELDS = ("episode_id", "onset_s", "offset_s", "duration_s", "onset", "offset", "peak_rms_uv",
          "mean_rms_uv", "confidence", "channel", "site", "status", "file")
#: the text columns: a channel label or a file name can start like a spreadsheet formula
TEXT_FIELDS = ("onset", "offset", "channel", "site", "status", "file")


def add_arguments(p) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="recordings to replay")
    p.add_argument("--emg", metavar="LABEL",
                   help="EMG channel label (default: a calf/leg EMG channel, else a sleep-lab "
                        "leg channel such as 'Right Leg', else the first label containing "
                        "'EMG'); 'A,B' watches several channels, 'all' every EMG channel, each "
                        "with its own pipeline and the other leg as context")
    p.add_argument("--acc", metavar="X,Y,Z",
                   help="accelerometer channel labels (default: labels like 'Acc X/Y/Z' or "
                        "'X Axis')")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override a detector parameter (see 'crampwatch config show')")
    p.add_argument("--config", metavar="FILE", help="TOML config file ([detector] table)")
    p.add_argument("--episodes", metavar="OUT.jsonl", help="write episodes as JSON Lines")
    p.add_argument("--csv", metavar="OUT.csv", help="write episodes as CSV")
    p.add_argument("--db", metavar="FILE",
                   help="also store the night, its episodes and a per-minute signal summary in "
                        "this episode log (SQLite), for 'crampwatch review'")
    p.add_argument("--quiet", action="store_true", help="no table on stdout")


def check_outputs(args) -> None:
    """Refuse outputs that name an input (a recording, the config) or each other, before
    the replay begins: ``--csv night.cwrec`` must never overwrite the night."""
    inputs = [*args.files, args.config]
    check_output_path(args.episodes, inputs, "--episodes")
    check_output_path(args.csv, inputs + [args.episodes], "--csv")
    check_output_path(args.db, inputs + [args.episodes, args.csv], "--db")


def _run_file(path, cfg, args, acc):
    emg = parse_emg(args.emg)
    try:
        return run_channels(path, cfg, emg=emg, acc=acc, keep_trace=bool(args.db))
    except ChannelNotFoundError:
        if not isinstance(emg, list):
            raise
        # a label that holds a comma itself
        return run_channels(path, cfg, emg=args.emg, acc=acc, keep_trace=bool(args.db))


def run(args) -> int:
    check_outputs(args)
    cfg = load_config(args.config, args.overrides)
    acc = parse_acc_labels(args.acc)
    records = []
    for path in args.files:
        results = _run_file(path, cfg, args, acc)
        for res in results:
            recs = res.episode_records()
            records.extend(recs)
            if not args.quiet:
                print_table(res, recs, show_site=len(results) > 1)
            if args.db:
                store(args.db, res, cfg.step_s)
    if args.episodes:
        with atomic_private_write(args.episodes, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
    if args.csv:
        from crampwatch.tools.export import csv_text_cell
        with atomic_private_write(args.csv, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=FIELDS)
            w.writeheader()
            for r in records:
                w.writerow({k: csv_text_cell(r.get(k)) if k in TEXT_FIELDS else r.get(k)
                            for k in FIELDS})
    return 0


def store(db_path: str, res, step_s: float) -> None:
    """Write a replay's results into the episode log, replacing what an earlier replay
    of the same recording and site stored (the other sites' rows stay)."""
    from crampwatch.sites import site_for
    from crampwatch.tools.episode_log import EpisodeLog, minute_rows
    site = getattr(res, "site", None) or site_for(res.channel)
    with EpisodeLog(db_path) as log:
        night = log.night_for(res.start_time)
        rec = log.add_recording(night, res.path, res.start_time, source=f"file://{res.path}",
                                channel=res.channel, emg_fs_hz=res.emg_fs_hz,
                                acc_fs_hz=res.acc_fs_hz)
        log.clear_results(rec, site)
        for ep in res.episodes:
            log.add_episode(night, rec, res.start_time, ep, res.emg_fs_hz, res.channel, site,
                            status=ep.status)
        for g in res.gaps:
            fs = res.emg_fs_hz if g.stream == "emg" else (res.acc_fs_hz or res.emg_fs_hz)
            t0 = res.start_time + timedelta(seconds=(g.first_index or 0) / fs)
            log.add_gap(rec, g.stream or "emg", g.first_index, g.n_samples, t0,
                        (g.n_samples or 0) / fs, (g.detail or {}).get("cause"))
        log.add_minutes(rec, minute_rows(res.trace, res.start_time, step_s), site=site)
        log.update_recording(rec, ended_utc=res.start_time + timedelta(seconds=res.duration_s),
                             samples=int(round(res.duration_s * res.emg_fs_hz)),
                             gap_samples=sum(g.n_samples or 0 for g in res.gaps
                                             if g.stream == "emg"))


def print_table(res, recs, out=None, show_site: bool = False) -> None:
    out = out or sys.stdout
    speed = res.duration_s / res.wall_s if res.wall_s > 0 else float("inf")
    hours = res.duration_s / 3600.0
    site = f" ({sanitize_text(site_label(res.site), 60)})" if show_site else ""
    print(f"{sanitize_text(res.path, 300)}: {hours:.2f} h of '{sanitize_text(res.channel, 80)}'"
          f"{site} from {local_str(res.start_time)}, "
          f"replayed in {res.wall_s:.1f} s ({speed:.0f}x real time); "
          f"{len(recs)} episode{'s' if len(recs) != 1 else ''}", file=out)
    if getattr(res, "suppressed", 0):
        print(f"  {res.suppressed} contraction(s) seen on both legs at once: body movement, "
              f"not reported", file=out)
    if res.gaps:
        lost = sum(g.n_samples or 0 for g in res.gaps)
        print(f"  {len(res.gaps)} gap(s) in the recording, {lost} samples missing", file=out)
    if not recs:
        return
    print(f"  {'#':>3}  {'onset (local)':<19} {'offset':<8} {'dur s':>7} {'peak uV':>8} "
          f"{'mean uV':>8} {'conf':>5}", file=out)
    for r, ep in zip(recs, res.episodes):
        onset = res.start_time + timedelta(seconds=ep.onset_s)
        offset = res.start_time + timedelta(seconds=ep.offset_s)
        print(f"  {r['episode_id']:>3}  {onset.astimezone().strftime('%Y-%m-%d %H:%M:%S'):<19} "
              f"{offset.astimezone().strftime('%H:%M:%S'):<8} {r['duration_s']:>7.1f} "
              f"{r['peak_rms_uv']:>8.1f} {r['mean_rms_uv']:>8.1f} {r['confidence']:>5.2f}",
              file=out)
