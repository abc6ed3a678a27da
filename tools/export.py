"""``crampwatch export``: a recording as EDF+ (for clinicians' tools) or CSV (for spreadsheets).

EDF+ (``--edf OUT.edf``; ``OUT.bdf`` writes 24-bit BDF+): the EMG channel in
uV and the three accelerometer axes in g, written through pyedflib
(:func:`crampwatch.firmware_bridge.edf.write_edf`), with one EDF+ annotation
per episode naming its body site (``cramp left_calf #3 conf 0.87``, plus the
user's verdict and a status other than closed: ``cramp left_calf #3 conf 0.87
false``, ``cramp right_calf #4 conf 0.61 (truncated)``), onset and duration in
seconds from the first sample.  Every site's episodes are annotated (the file
holds the one EMG channel exported; the site says which leg each was on).  EDFbrowser,
MNE (``mne.io.read_raw_edf``), pyedflib and edfio read it.  Gaps in a capture
recording are zero-filled and annotated by the writer.

CSV (``--csv OUT.csv``): one row per EMG sample, ``time_s,emg_uv,acc_x_g,
acc_y_g,acc_z_g``; ``time_s`` counts from the recording's first sample
(whose UTC time is printed and is in the episodes file), the accelerometer
is *held* at the EMG rate (each row carries the latest accelerometer sample
at or before it; cells are empty where there is none, e.g. in a gap), and
rows missing from the recording are missing from the file (``time_s``
jumps).  A whole 8 h night at 1 kHz is 28.8 million rows (about 1 GB), more
than a spreadsheet opens: use ``--start-s``/``--duration-s`` for an excerpt.
Beside it, ``OUT.episodes.csv`` lists the episodes (one row each, onset_s and
offset_s on the same time axis, UTC times, channel and site, verdicts).

The episodes come from the episode log when the recording is in it (matched
by its absolute path; ``--db``, default the data directory's log), otherwise
from running the detector over the recording; the command says which.

Examples
--------
>>> from crampwatch.tools.cli import main
>>> main(["export", "night.cwrec", "--edf", "night.edf"])          # doctest: +SKIP
night.cwrec -> night.edf: EDF+, 8.00 h, ...; 2 episode annotations (from the episode log ...)
0
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
from collections import deque
from datetime import datetime, timedelta, timezone

import numpy as np

from crampwatch._files import atomic_private_write, check_output_path, make_private, private_umask
from crampwatch.errors import ConfigError, InputFileError

__all__ = [
    "EPISODE_CSV_FIELDS",
    "annotation_text",
    "csv_text_cell",
    "episodes_csv_path",
    "episodes_for_recording",
    "export_csv",
    "export_edf",
]

logger = logging.getLogger(__name__)

HELP = "export a recording as EDF+ (episodes as annotations) or CSV"
DESCRIPTION = """Export a recording (crampwatch capture or EDF/BDF) as EDF+ with every episode as
an annotation, for EDFbrowser, MNE and the tools a clinician already uses, or as CSV for
spreadsheets (one row per EMG sample with the accelerometer held at the EMG rate, plus
OUT.episodes.csv). Episodes come from the episode log if the recording is in it, otherwise from
running the detector."""

EPISODE_CSV_FIELDS = ("episode_id", "site", "channel", "onset_s", "offset_s", "duration_s",
                      "onset", "offset", "peak_rms_uv", "mean_rms_uv", "confidence", "status",
                      "verdict", "verdict_note", "source")
ANNOTATION_MAX_CHARS = 40     # what edflib keeps of an annotation's text
#: the text (never numeric) columns of the episodes CSV
EPISODE_CSV_TEXT_FIELDS = ("site", "channel", "onset", "offset", "status", "verdict",
                           "verdict_note", "source")
#: a cell starting with one of these is a formula to a spreadsheet ("CSV injection")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text_cell(value):
    """A text cell of a CSV as a spreadsheet must show it: never as a formula.

    A string starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return gets a leading apostrophe (a note typed by the user, a file name, an
    EDF channel label can start so); anything else, numbers included, is
    returned unchanged.

    Examples
    --------
    >>> csv_text_cell("=HYPERLINK(A1)"), csv_text_cell("turned over"), csv_text_cell(-1.5)
    ("'=HYPERLINK(A1)", 'turned over', -1.5)
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def add_arguments(p) -> None:
    p.add_argument("recording", metavar="RECORDING",
                   help="a crampwatch capture recording or an EDF/EDF+/BDF file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--edf", metavar="OUT.edf",
                   help="write EDF+ (BDF+ if the name ends in .bdf) with episode annotations")
    g.add_argument("--csv", metavar="OUT.csv",
                   help="write CSV (time_s,emg_uv,acc_x_g,acc_y_g,acc_z_g) and OUT.episodes.csv")
    p.add_argument("--db", metavar="FILE",
                   help="episode log to take the episodes from (default: the data directory's "
                        "episodes.sqlite, if the recording is in it)")
    p.add_argument("--start-s", type=float, default=0.0, metavar="S",
                   help="export from S seconds after the recording's first sample (default 0)")
    p.add_argument("--duration-s", type=float, default=None, metavar="S",
                   help="export S seconds (default: to the end)")
    p.add_argument("--emg", metavar="LABEL", help="EMG channel label")
    p.add_argument("--acc", metavar="X,Y,Z", help="accelerometer channel labels")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="detector parameter, when the episodes come from running the detector")
    p.add_argument("--config", metavar="FILE", help="detector TOML config (same use)")


# --------------------------------------------------------------------------- episodes

def episodes_for_recording(path: str, db: str | None = None, cfg=None, emg: str | None = None,
                           acc=None, use_default_db: bool = True, site: str | None = None):
    """The episodes of one recording, from the episode log or the detector.

    Parameters
    ----------
    path : str
        The recording.
    db : str, optional
        Episode log; it must exist.  None: the default log if it exists
        (``use_default_db``), else none.
    cfg : DetectorConfig, optional
        For the detector when the recording is not in the log.
    site : str, optional
        Only that body site's episodes from the log (default: every site's).

    Returns
    -------
    episodes : list of dict
        ``episode_id``, ``onset_s``, ``offset_s`` (seconds from the
        recording's first sample; an open episode ends at the recording's
        end), ``duration_s``, ``onset``/``offset`` (UTC ISO 8601),
        ``peak_rms_uv``, ``mean_rms_uv``, ``confidence``, ``status``,
        ``verdict``, ``verdict_note``, ``channel``, ``site``, ``source``
        (``"log"`` or ``"detector"``).
    source : str
        Where they came from, for people ("from the episode log X", "found by
        running the detector (...)").
    channel : str or None
        The (first) EMG channel the log used for this recording (None: detector).
    """
    from crampwatch.tools.episode_log import parse_utc
    from crampwatch.tools.review import open_log
    if db is None and use_default_db:
        from crampwatch.tools.paths import db_path
        db = db_path() if os.path.exists(db_path()) else None
        explicit = False
    else:
        explicit = db is not None
    if db is not None:
        with open_log(db) as log:
            row = log.recording_by_path(path)
            if row is not None:
                start = parse_utc(row["started_utc"])
                end_s = ((parse_utc(row["ended_utc"]) - start).total_seconds()
                         if row["ended_utc"] else None)
                eps = []
                for e in log.recording_episodes(row["recording_id"], site=site):
                    on = float(e["onset_s"])
                    off = float(e["offset_s"]) if e["offset_s"] is not None else end_s
                    eps.append({
                        "episode_id": e["episode_id"], "onset_s": on, "offset_s": off,
                        "duration_s": None if off is None else off - on,
                        "onset": e["onset_utc"], "offset": e["offset_utc"],
                        "peak_rms_uv": e["peak_rms_uv"], "mean_rms_uv": e["mean_rms_uv"],
                        "confidence": e["confidence"], "status": e["status"],
                        "verdict": e["verdict"], "verdict_note": e["verdict_note"],
                        "channel": e["channel"], "site": e["site"], "source": "log"})
                channel = (row["channel"] or "").split(",")[0].strip() or None
                return eps, f"from the episode log {os.path.abspath(db)}", channel
            if explicit:
                logger.info("%s is not in the episode log %s: running the detector", path, db)
    from crampwatch.detector import DetectorConfig
    from crampwatch.tools._run import run_recording
    res = run_recording(path, cfg or DetectorConfig(), emg=emg, acc=acc)
    eps = []
    for ep in res.episodes:
        off = ep.offset_s if ep.offset_s is not None else res.duration_s
        eps.append({
            "episode_id": ep.episode_id, "onset_s": ep.onset_s, "offset_s": off,
            "duration_s": off - ep.onset_s,
            "onset": _iso(res.start_time + timedelta(seconds=ep.onset_s)),
            "offset": _iso(res.start_time + timedelta(seconds=off)),
            "peak_rms_uv": ep.peak_rms_uv, "mean_rms_uv": ep.mean_rms_uv,
            "confidence": ep.confidence, "status": ep.status, "verdict": None,
            "verdict_note": None, "channel": res.channel, "site": res.site,
            "source": "detector"})
    where = ("found by running the detector (the recording is not in the episode log "
             f"{os.path.abspath(db)})" if db is not None
             else "found by running the detector (no episode log)")
    return eps, where, None


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def annotation_text(ep: dict) -> str:
    """``cramp left_calf #3 conf 0.87`` (+ `` confirmed``/`` false``, + `` (truncated)``),
    at most 40 characters (what EDF+ readers keep); a long free-text site is shortened.

    Examples
    --------
    >>> annotation_text({"episode_id": 3, "confidence": 0.871, "verdict": None,
    ...                  "status": "closed", "site": "left_calf"})
    'cramp left_calf #3 conf 0.87'
    >>> annotation_text({"episode_id": 4, "confidence": 0.6, "verdict": "false",
    ...                  "status": "truncated", "site": "right_calf"})
    'cramp right_calf #4 conf 0.60 false'
    >>> annotation_text({"episode_id": 5, "confidence": 0.6, "verdict": None,
    ...                  "status": "uncertain"})
    'cramp #5 conf 0.60 (uncertain)'
    """
    conf = ep.get("confidence")
    tail = f" #{ep['episode_id']}" + (f" conf {conf:.2f}" if conf is not None else "")
    site = str(ep.get("site") or "")
    room = ANNOTATION_MAX_CHARS - len("cramp ") - len(tail)
    text = "cramp" + (f" {site[:max(1, room - 1)]}" if site and room > 1 else "") + tail
    for extra in ((f" {ep['verdict']}" if ep.get("verdict") else ""),
                  (f" ({ep['status']})" if ep.get("status") not in (None, "closed") else "")):
        if extra and len(text) + len(extra) <= ANNOTATION_MAX_CHARS:
            text += extra
    return text[:ANNOTATION_MAX_CHARS]


def episodes_csv_path(out_csv: str) -> str:
    """``night.csv`` -> ``night.episodes.csv``."""
    stem, _ = os.path.splitext(out_csv)
    return stem + ".episodes.csv"


# --------------------------------------------------------------------------- windows

def _window_blocks(reader, start_s: float, end_s: float | None):
    """The reader's sample blocks inside [start_s, end_s), indices re-based to start there."""
    from crampwatch.firmware_bridge.types import SampleBlock
    lims = {}
    for name, info in (("emg", reader.emg), ("acc", reader.acc)):
        if info is None:
            continue
        lo = int(round(start_s * info.fs_hz))
        hi = int(round(end_s * info.fs_hz)) if end_s is not None else None
        lims[name] = (lo, hi)
    done = set()
    for item in reader.blocks(60.0):
        if not isinstance(item, SampleBlock) or item.stream not in lims:
            continue
        lo, hi = lims[item.stream]
        f0, f1 = item.first_index, item.end_index
        if hi is not None and f0 >= hi:
            done.add(item.stream)
            if len(done) == len(lims):
                return
            continue
        a, b = max(lo, f0), f1 if hi is None else min(hi, f1)
        if b <= a:
            continue
        yield SampleBlock(item.stream, item.fs_hz, a - lo, item.data[a - f0:b - f0],
                          item.host_time_s)


def _check_window(start_s: float, duration_s: float | None, rec_duration_s: float, path: str):
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ConfigError(f"--start-s {start_s}: give a time >= 0 (seconds)", key="start-s")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"--duration-s {duration_s}: give a positive length (seconds)",
                          key="duration-s")
    if start_s >= rec_duration_s:
        raise ConfigError(f"--start-s {start_s:g}: {path} is only {rec_duration_s:.1f} s long",
                          key="start-s")
    end = rec_duration_s if duration_s is None else min(rec_duration_s, start_s + duration_s)
    return end


def _in_window(episodes, start_s: float, end_s: float):
    """Episodes overlapping the window, times shifted and clipped to it."""
    out = []
    for ep in episodes:
        off = ep["offset_s"] if ep["offset_s"] is not None else ep["onset_s"]
        if off < start_s or ep["onset_s"] >= end_s:
            continue
        e = dict(ep)
        e["onset_s"] = max(ep["onset_s"], start_s) - start_s
        e["offset_s"] = min(off, end_s) - start_s
        out.append(e)
    return out


# --------------------------------------------------------------------------- EDF+

def export_edf(path: str, out: str, episodes: list, emg: str | None = None, acc=None,
               start_s: float = 0.0, duration_s: float | None = None):
    """Write ``path`` (or a window of it) as EDF+/BDF+ with the episodes as annotations.

    Returns the :class:`~crampwatch.firmware_bridge.edf.EdfWriteResult`.

    Examples
    --------
    >>> eps, _, _ = episodes_for_recording("night.cwrec")          # doctest: +SKIP
    >>> export_edf("night.cwrec", "night.edf", eps).n_annotations  # doctest: +SKIP
    2
    """
    from crampwatch.firmware_bridge.edf import write_edf
    from crampwatch.firmware_bridge.readers import open_recording
    with open_recording(path, emg=emg, acc=acc) as reader:
        end_s = _check_window(start_s, duration_s, reader.duration_s, path)
        label = reader.emg.channels[0]
        emg_label = label if "emg" in label.lower() else f"EMG {label}"
        eps = _in_window(episodes, start_s, end_s)
        annotations = [(e["onset_s"], max(0.0, e["offset_s"] - e["onset_s"]), annotation_text(e))
                       for e in eps]
        kw = dict(annotations=annotations, emg_label=emg_label[:16],
                  equipment="crampwatch export", recording_note="crampwatch export")
        # the EDF writer (pyedflib) creates its file itself: the umask 077 makes it
        # owner-only from its first byte, the chmod whatever the writer did
        with private_umask():
            if start_s == 0.0 and duration_s is None:
                res = write_edf(out, reader, **kw)
            else:
                e0 = int(round(start_s * reader.emg.fs_hz)) / reader.emg.fs_hz
                res = write_edf(out, _window_blocks(reader, start_s, end_s),
                                emg_fs_hz=reader.emg.fs_hz,
                                acc_fs_hz=reader.acc.fs_hz if reader.acc is not None else None,
                                duration_s=end_s - start_s,
                                start_time=reader.start_time + timedelta(seconds=e0), **kw)
        make_private(out)
        return res


# --------------------------------------------------------------------------- CSV

def export_csv(path: str, out: str, episodes: list, emg: str | None = None, acc=None,
               start_s: float = 0.0, duration_s: float | None = None, progress=None) -> dict:
    """Write the samples CSV and the episodes CSV beside it (see the module docstring).

    Returns
    -------
    dict
        ``rows`` (samples written), ``episodes_path``, ``start_time`` (UTC of
        ``time_s`` 0: the recording's first sample, also with ``start_s``),
        ``fs_hz``, ``has_acc``.
    """
    from crampwatch.firmware_bridge.readers import open_recording
    with open_recording(path, emg=emg, acc=acc) as reader:
        end_s = _check_window(start_s, duration_s, reader.duration_s, path)
        fs_e = float(reader.emg.fs_hz)
        fs_a = float(reader.acc.fs_hz) if reader.acc is not None else None
        t_dec = max(3, int(math.ceil(math.log10(fs_e))))
        fmt = f"%.{t_dec}f,%.3f" + (",%.5f,%.5f,%.5f" if fs_a else "")
        header = "time_s,emg_uv" + (",acc_x_g,acc_y_g,acc_z_g" if fs_a else "")
        e_first = int(round(start_s * fs_e))
        bar = None
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=round(end_s - start_s), unit="s", desc="csv", leave=False,
                       file=sys.stderr)
        rows = 0
        try:
            with atomic_private_write(out, "w", encoding="ascii", newline="") as fh:
                fh.write(header + "\n")
                held = _AccHold(fs_e, fs_a)
                for blk, acc_rows in held.aligned(_window_blocks(reader, start_s, end_s)):
                    idx = np.arange(blk.first_index, blk.end_index)
                    t = (idx + e_first) / fs_e
                    cols = [t, np.asarray(blk.data, np.float64)[:, 0]]
                    if fs_a:
                        cols += [acc_rows[:, 0], acc_rows[:, 1], acc_rows[:, 2]]
                    table = np.column_stack(cols).tolist()
                    text = "\n".join(map(fmt.__mod__, map(tuple, table)))
                    fh.write(text.replace("nan", "") + "\n")   # no value: an empty cell
                    rows += len(idx)
                    if bar is not None:
                        bar.update(round(blk.end_index / fs_e) - bar.n)
        finally:
            if bar is not None:
                bar.close()
        start_time = reader.start_time
    # same time axis as the samples (from the recording's first sample), whole episodes
    eps = [e for e in episodes
           if (e["offset_s"] if e["offset_s"] is not None else e["onset_s"]) >= start_s
           and e["onset_s"] < end_s]
    ep_path = episodes_csv_path(out)
    with atomic_private_write(ep_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=EPISODE_CSV_FIELDS)
        w.writeheader()
        for e in eps:
            row = {k: e.get(k) for k in EPISODE_CSV_FIELDS}
            row.update((k, csv_text_cell(row[k])) for k in EPISODE_CSV_TEXT_FIELDS)
            row["onset_s"] = round(e["onset_s"], 3)
            row["offset_s"] = None if e["offset_s"] is None else round(e["offset_s"], 3)
            row["duration_s"] = (None if e["offset_s"] is None
                                 else round(e["offset_s"] - e["onset_s"], 3))
            w.writerow(row)
    return {"rows": rows, "episodes_path": ep_path, "start_time": start_time, "fs_hz": fs_e,
            "has_acc": fs_a is not None}


class _AccHold:
    """Pairs each EMG block with the accelerometer sample held at every EMG sample
    (the latest one at or before it; NaN where there is none)."""

    MAX_PENDING = 16

    def __init__(self, fs_e: float, fs_a: float | None):
        self.fs_e, self.fs_a = fs_e, fs_a
        self.buf = np.zeros((0, 3))
        self.buf0 = 0          # acc index of buf[0]
        self.pending: deque = deque()

    def _need(self, blk) -> int:
        """Index of the last accelerometer sample that block needs."""
        return int(math.floor((blk.end_index - 1) * self.fs_a / self.fs_e + 1e-9))

    def _emit(self, blk):
        if self.fs_a is None:
            return blk, None
        idx = np.arange(blk.first_index, blk.end_index)
        j = np.floor(idx * (self.fs_a / self.fs_e) + 1e-9).astype(np.int64)
        rel = j - self.buf0
        ok = (rel >= 0) & (rel < len(self.buf))
        rows = np.full((len(idx), 3), np.nan)
        rows[ok] = self.buf[rel[ok]]
        drop = int(j[-1]) - self.buf0          # keep the last one: it may be held longer
        if drop > 0:
            self.buf = self.buf[drop:]
            self.buf0 += drop
        return blk, rows

    def aligned(self, blocks):
        for blk in blocks:
            if blk.stream == "acc" and self.fs_a is not None:
                data = np.asarray(blk.data, np.float64)
                end = self.buf0 + len(self.buf)
                if not len(self.buf) and blk.first_index > self.buf0:
                    self.buf0 = blk.first_index
                    end = self.buf0
                if blk.first_index > end:           # a gap: nothing to hold there
                    self.buf = np.vstack([self.buf, np.full((blk.first_index - end, 3), np.nan)])
                elif blk.first_index < end:          # overlap: keep what we have
                    data = data[end - blk.first_index:]
                self.buf = np.vstack([self.buf, data])
            elif blk.stream == "emg":
                self.pending.append(blk)
            else:
                continue
            # readers interleave the streams within a few blocks; past that the
            # accelerometer has stopped (or has a gap) and EMG must not pile up
            while self.pending and (self.fs_a is None or len(self.pending) > self.MAX_PENDING
                                    or self._need(self.pending[0]) < self.buf0 + len(self.buf)):
                yield self._emit(self.pending.popleft())
        while self.pending:
            yield self._emit(self.pending.popleft())


# --------------------------------------------------------------------------- command

def run(args) -> int:
    from crampwatch.tools._run import load_config, local_str, parse_acc_labels
    path = args.recording
    if not os.path.exists(path):
        raise InputFileError(f"{path}: no such file", path=path)
    out = args.edf or args.csv
    option = "--edf" if args.edf else "--csv"
    inputs = [path, args.db, args.config]
    check_output_path(out, inputs, option)
    if args.csv:
        check_output_path(episodes_csv_path(out), inputs, f"{option} (its episodes file)")
    acc = parse_acc_labels(args.acc)
    cfg = load_config(args.config, args.overrides)
    if args.db is not None and not os.path.exists(args.db):
        raise InputFileError(f"no episode log at {args.db}", path=args.db)
    episodes, source, channel = episodes_for_recording(path, args.db, cfg, emg=args.emg,
                                                       acc=acc)
    emg = args.emg or channel
    n = len(episodes)
    if args.edf:
        res = export_edf(path, args.edf, episodes, emg=emg, acc=acc, start_s=args.start_s,
                         duration_s=args.duration_s)
        kind = "BDF+" if args.edf.lower().endswith(".bdf") else "EDF+"
        n_ep = sum(1 for e in _in_window(episodes, args.start_s, args.start_s + res.duration_s))
        print(f"{path} -> {args.edf}: {kind}, {res.duration_s / 3600:.2f} h "
              f"({res.duration_s:.0f} s in {res.n_records} records of {res.record_s:g} s); "
              f"{n_ep} episode annotation{'s' if n_ep != 1 else ''}, {source}")
        if res.n_clipped_emg or res.n_clipped_acc:
            print(f"  note: {res.n_clipped_emg} EMG and {res.n_clipped_acc} accelerometer "
                  f"samples were beyond the EDF range and clipped", file=sys.stderr)
    else:
        info = export_csv(path, args.csv, episodes, emg=emg, acc=acc, start_s=args.start_s,
                          duration_s=args.duration_s)
        with open(info["episodes_path"], encoding="utf-8") as fh:
            n_ep = max(0, sum(1 for _ in fh) - 1)
        print(f"{path} -> {args.csv}: {info['rows']} rows at {info['fs_hz']:g} Hz, time_s 0 = "
              f"{local_str(info['start_time'])} ({_iso(info['start_time'])})"
              + ("" if info["has_acc"] else ", no accelerometer"))
        print(f"  {info['episodes_path']}: {n_ep} of {n} episode{'s' if n != 1 else ''}, "
              f"{source}")
    return 0
