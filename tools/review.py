"""``crampwatch review``: the morning summary of one night from the episode log.

What the user opens every morning.  Reads the episode log (SQLite, written by
``crampwatch capture`` live or ``crampwatch replay --db``) and prints, for one
night: the recording span, the time with good signal and the gaps, the number
of cramps with their total and longest duration, and a table of the episodes
(local time, 80 columns, colour only on a terminal and never with
``NO_COLOR``).  ``--json`` prints the night's episodes one JSON object a line
instead (the fields of ``crampwatch replay --episodes``, ``onset_s`` counted
from the start of the night's first recording); ``--html OUT.html`` also
writes a self-contained report with plots (:mod:`crampwatch.tools.report_html`).

An episode the user marked false (``crampwatch label ID --false``) is listed
but not counted as a cramp; nor is an ``uncertain`` one (the detector's
confidence was below ``min_confidence``), counted apart ("Uncertain 1 (not
counted)") unless the user confirms it.  A night watched on several body sites
(both calves...) gets its counts and good signal per site and the episode
table grouped by site; ``--json`` gives each episode its ``site`` and
``--json-summary`` prints the night's counts, per site too, as one JSON object;
``--list`` shows the cramps per site when the log holds more than one site.  A
night of one site reads as it always has.  A log without any night is not an error (a
message, exit status 0, no JSON lines); a missing log file or an unknown night
is (exit status 2).

Examples
--------
>>> from crampwatch.tools.review import format_duration
>>> format_duration(21.25), format_duration(185.0), format_duration(4000.0)
('21.2 s', '3 min 05 s', '1 h 07 min')
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from crampwatch._files import check_output_path
from crampwatch._text import sanitize_text
from crampwatch.errors import ConfigError, FileLockedError, InputFileError
from crampwatch.sites import KNOWN_SITES, site_label
from crampwatch.tools.episode_log import EpisodeLog, episode_kind, is_locked_error, parse_utc

__all__ = [
    "NightSummary",
    "episode_json",
    "format_duration",
    "format_summary",
    "good_signal_text",
    "night_json",
    "order_sites",
    "open_log",
    "resolve_night",
    "storage_text",
    "summarize_night",
    "use_color",
    "utc_offset_label",
]

HELP = "summarise a night from the episode log (terminal, --json or --html report)"
DESCRIPTION = """Summarise one night of the episode log: recording span, time with good signal
and the gaps, number of cramps, total and longest cramp time, and a table of the episodes in
local time. --json prints the episodes as JSON Lines for scripts; --html OUT.html writes a
self-contained report (timeline of the night, a close-up of every episode, trends over the
last 30 nights). Episodes marked false with 'crampwatch label' are listed but not counted."""

MAX_GAPS_LISTED = 6
#: readers wait this long for another process's lock on the log, then say it is locked
OPEN_TIMEOUT_S = 3.0
# holes between two recordings of a night shorter than this are not gaps
RECORDING_HOLE_MIN_S = 1.0


def add_arguments(p) -> None:
    p.add_argument("--night", default="last", metavar="last|YYYY-MM-DD",
                   help="the night to review, named by the date of its evening "
                        "(default: last, the most recent night in the log)")
    p.add_argument("--db", metavar="FILE",
                   help="episode log (default: the data directory's episodes.sqlite; "
                        "CRAMPWATCH_HOME overrides the data directory)")
    p.add_argument("--json", action="store_true",
                   help="print the night's episodes as JSON Lines (one object a line, with its "
                        "site) instead of the summary")
    p.add_argument("--json-summary", action="store_true",
                   help="print the night's counts (cramps, uncertain, marked false, time, "
                        "longest, good signal), in all and per site, as one JSON object")
    p.add_argument("--html", metavar="OUT.html",
                   help="also write a self-contained HTML report (no network needed to view)")
    p.add_argument("--nights", type=int, default=1, metavar="N",
                   help="with --html: include the N nights up to the selected one, each with "
                        "its timeline and close-ups (default 1)")
    p.add_argument("--trend-nights", type=int, default=30, metavar="N",
                   help="with --html: length of the trends, in nights (default 30)")
    p.add_argument("--list", action="store_true",
                   help="list every night in the log (date, hours recorded, cramps) and exit")


# --------------------------------------------------------------------------- data

@dataclass
class NightSummary:
    """What the morning review says about one night (times are UTC datetimes).

    Attributes
    ----------
    night : dict
        The ``nights`` row (``night_id``, ``night_date``, ``tz_offset_s``).
    recordings : list of dict
        Its ``recordings`` rows, first first.
    start_utc, end_utc : datetime or None
        First sample of the first recording, last sample of the last (None: no
        recording).
    recorded_s : float
        Sum of the recordings' lengths.
    good_s, artifact_s, nodata_s : float or None
        From the per-minute summaries (None: the night has none).
    gaps : list of dict
        ``start_utc`` (datetime), ``duration_s``, ``cause``: gaps in the EMG
        stream and holes between recordings, in time order.
    episodes : list of dict
        Its ``episodes`` rows in onset order, each with ``t_onset_s`` and
        ``t_offset_s`` added (seconds from ``start_utc``; ``t_offset_s`` None
        while open) and ``path`` (the recording file).
    cramps : list of dict
        The episodes counted as cramps: not marked false by the user, and not
        ``uncertain`` unless the user confirmed them.
    uncertain : list of dict
        Uncertain episodes without a verdict (shown apart, not counted).
    marked_false : list of dict
        Episodes the user marked false.
    sites : list of str
        The body sites watched this night (from the per-minute summaries and
        the episodes), left before right, calf before tibialis.
    site_signal : dict
        site -> ``good_s``, ``artifact_s``, ``nodata_s``, ``minutes``.  With
        several sites, ``good_s`` etc. of the night are their mean over sites.
    unstored_s : float
        Signal the detector saw that is not in any recording file: samples the
        capture could not store, and whole recordings whose file is missing.
    storage_problems : list of str
        Why (the capture's error, "file missing: PATH").
    """

    night: dict
    recordings: list = field(default_factory=list)
    start_utc: datetime | None = None
    end_utc: datetime | None = None
    recorded_s: float = 0.0
    good_s: float | None = None
    artifact_s: float | None = None
    nodata_s: float | None = None
    gaps: list = field(default_factory=list)
    episodes: list = field(default_factory=list)
    cramps: list = field(default_factory=list)
    uncertain: list = field(default_factory=list)
    marked_false: list = field(default_factory=list)
    sites: list = field(default_factory=list)
    site_signal: dict = field(default_factory=dict)
    unstored_s: float = 0.0
    storage_problems: list = field(default_factory=list)

    @property
    def multi_site(self) -> bool:
        """More than one body site watched: the review shows them apart."""
        return len(self.sites) > 1

    def site_counts(self) -> dict:
        """Per site (in :attr:`sites` order): ``cramps``, ``uncertain``, ``false``
        (numbers), ``total_cramp_s``, ``longest`` (the row, or None)."""
        out = {site: {"cramps": 0, "uncertain": 0, "false": 0, "total_cramp_s": 0.0,
                      "longest": None} for site in self.sites}
        for e in self.episodes:
            c = out.setdefault(e["site"], {"cramps": 0, "uncertain": 0, "false": 0,
                                           "total_cramp_s": 0.0, "longest": None})
            kind = episode_kind(e)
            c["cramps" if kind == "cramp" else kind] += 1
            if kind != "cramp":
                continue
            dur = ep_duration_s(e)
            c["total_cramp_s"] += dur or 0.0
            if dur is not None and (c["longest"] is None or dur > ep_duration_s(c["longest"])):
                c["longest"] = e
        return out

    @property
    def summarised_s(self) -> float:
        """Seconds of the night the per-minute summaries cover."""
        if self.good_s is None:
            return 0.0
        return self.good_s + self.artifact_s + self.nodata_s

    @property
    def span_s(self) -> float:
        if self.start_utc is None or self.end_utc is None:
            return 0.0
        return (self.end_utc - self.start_utc).total_seconds()

    @property
    def total_cramp_s(self) -> float:
        return sum(ep_duration_s(e) or 0.0 for e in self.cramps)

    @property
    def longest(self) -> dict | None:
        timed = [e for e in self.cramps if ep_duration_s(e) is not None]
        return max(timed, key=ep_duration_s) if timed else None


def ep_duration_s(ep: dict) -> float | None:
    """Duration of an episode row (None while it is open)."""
    if ep.get("offset_s") is None:
        return None
    return float(ep["offset_s"]) - float(ep["onset_s"])


def open_log(db_path: str | None) -> EpisodeLog:
    """Open an existing episode log (never creates one).

    Raises
    ------
    InputFileError
        The file does not exist, is not an episode log, or has a newer schema.
    FileLockedError
        Another process holds it locked (for more than a few seconds).

    Examples
    --------
    >>> open_log("/nonexistent/episodes.sqlite")
    Traceback (most recent call last):
    ...
    crampwatch.errors.InputFileError: no episode log at /nonexistent/episodes.sqlite: record a night with 'crampwatch capture', or load a recording with 'crampwatch replay FILE --db /nonexistent/episodes.sqlite'
    """
    if db_path is None:
        from crampwatch.tools.paths import db_path as default_db
        db_path = default_db()
    if not os.path.exists(db_path):
        raise InputFileError(
            f"no episode log at {db_path}: record a night with 'crampwatch capture', or load a "
            f"recording with 'crampwatch replay FILE --db {db_path}'", path=db_path)
    if os.path.isdir(db_path):
        raise InputFileError(f"{db_path}: is a directory, not an episode log", path=db_path)
    log = EpisodeLog(db_path, create=False, timeout_s=OPEN_TIMEOUT_S)
    try:
        log.count_episodes()
    except sqlite3.DatabaseError as exc:
        log.close()
        if is_locked_error(exc):
            raise FileLockedError(f"{db_path}: the episode log is locked by another process; "
                                  "try again when it is done", path=db_path) from exc
        raise InputFileError(f"{db_path}: not a crampwatch episode log ({exc})",
                             path=db_path) from exc
    return log


def resolve_night(log: EpisodeLog, spec: str | None) -> dict | None:
    """The ``nights`` row named by ``spec`` (``"last"`` or ``YYYY-MM-DD``).

    Returns None for ``"last"`` in a log without nights.

    Raises
    ------
    ConfigError
        ``spec`` is neither ``last`` nor a date.
    InputFileError
        No night of that date in the log (the message gives the range it holds).
    """
    spec = (spec or "last").strip()
    if spec == "last":
        return log.last_night()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", spec):
        raise ConfigError(f"--night {spec!r}: give 'last' or a date YYYY-MM-DD (the evening "
                          f"the night began)", key="night")
    try:
        date.fromisoformat(spec)
    except ValueError:
        raise ConfigError(f"--night {spec!r} is not a valid date", key="night") from None
    night = log.night_by_date(spec)
    if night is None:
        first, last, n = log.night_range()
        held = (f"it holds {n} night{'s' if n != 1 else ''}, {first} to {last}" if n
                else "it holds no night yet")
        raise InputFileError(f"no night {spec} in the episode log {log.path} ({held})",
                             path=log.path)
    return night


def summarize_night(log: EpisodeLog, night: dict) -> NightSummary:
    """Gather what the review shows about ``night`` (a ``nights`` row)."""
    nid = night["night_id"]
    s = NightSummary(night=night, recordings=log.recordings(nid))
    spans = []
    for r in s.recordings:
        t0 = parse_utc(r["started_utc"])
        t1 = parse_utc(r["ended_utc"]) if r["ended_utc"] else t0
        spans.append((t0, max(t0, t1), r))
    if spans:
        s.start_utc = min(a for a, _, _ in spans)
        s.end_utc = max(b for _, b, _ in spans)
        s.recorded_s = sum((b - a).total_seconds() for a, b, _ in spans)
    for a, b, r in spans:
        fs = float(r.get("emg_fs_hz") or 0.0)
        length_s = (b - a).total_seconds()
        lost_s = (r.get("unstored_samples") or 0) / fs if fs > 0 else 0.0
        if not os.path.exists(r["path"]):
            lost_s = length_s
            s.storage_problems.append(f"file missing: {r['path']}")
        if lost_s > 0 and r.get("recording_error"):
            s.storage_problems.append(str(r["recording_error"]))
        s.unstored_s += min(lost_s, length_s) if length_s > 0 else lost_s
    s.site_signal = log.signal_by_site(nid)
    if s.site_signal:
        n_sites = len(s.site_signal)
        s.good_s, s.artifact_s, s.nodata_s = (
            sum(v[k] for v in s.site_signal.values()) / n_sites
            for k in ("good_s", "artifact_s", "nodata_s"))
    for g in log.gaps(nid):
        if g["stream"] not in (None, "emg") or g["start_utc"] is None:
            continue
        s.gaps.append({"start_utc": parse_utc(g["start_utc"]),
                       "duration_s": float(g["duration_s"] or 0.0), "cause": g["cause"]})
    # holes between recordings (a capture restarted, the board unplugged...)
    ordered = sorted(spans, key=lambda x: x[0])
    reach = None
    for a, b, _ in ordered:
        if reach is not None and (a - reach).total_seconds() >= RECORDING_HOLE_MIN_S:
            s.gaps.append({"start_utc": reach, "duration_s": (a - reach).total_seconds(),
                           "cause": "between recordings"})
        reach = b if reach is None else max(reach, b)
    s.gaps.sort(key=lambda g: g["start_utc"])
    by_id = {r["recording_id"]: (a, r) for a, _, r in spans}
    for ep in log.episodes(nid):
        ep = dict(ep)
        rec = by_id.get(ep["recording_id"])
        if rec is not None and s.start_utc is not None:
            base = (rec[0] - s.start_utc).total_seconds()
            ep["t_onset_s"] = base + float(ep["onset_s"])
            ep["t_offset_s"] = None if ep["offset_s"] is None else base + float(ep["offset_s"])
            ep["path"] = rec[1]["path"]
        else:   # no recording row: fall back on the UTC times
            ref = s.start_utc or parse_utc(ep["onset_utc"])
            ep["t_onset_s"] = (parse_utc(ep["onset_utc"]) - ref).total_seconds()
            ep["t_offset_s"] = (None if ep["offset_utc"] is None
                                else (parse_utc(ep["offset_utc"]) - ref).total_seconds())
            ep["path"] = None
        s.episodes.append(ep)
    s.episodes.sort(key=lambda e: (e["onset_utc"], e["episode_id"]))
    s.cramps = [e for e in s.episodes if episode_kind(e) == "cramp"]
    s.uncertain = [e for e in s.episodes if episode_kind(e) == "uncertain"]
    s.marked_false = [e for e in s.episodes if episode_kind(e) == "false"]
    s.sites = order_sites(set(s.site_signal) | {e["site"] for e in s.episodes})
    return s


def order_sites(sites) -> list[str]:
    """Sites as the review lists them: left before right, calf before tibialis
    before foot (:data:`crampwatch.sites.KNOWN_SITES` order), free text last.

    Examples
    --------
    >>> order_sites({"right_calf", "bed_partner", "left_calf"})
    ['left_calf', 'right_calf', 'bed_partner']
    """
    def key(site):
        return ((KNOWN_SITES.index(site), "") if site in KNOWN_SITES
                else (len(KNOWN_SITES), str(site)))
    return sorted((x for x in sites if x), key=key)


def episode_json(ep: dict, night_date: str | None = None) -> dict:
    """The JSON Lines record of one episode row of a :class:`NightSummary`.

    The fields of ``crampwatch replay --episodes`` (``episode_id`` is the
    log's id, the one ``crampwatch label`` takes; ``onset_s``/``offset_s``
    count from the start of the night's first recording), plus ``night``,
    ``verdict`` and ``verdict_note``.
    """
    off = ep["t_offset_s"]
    dur = ep_duration_s(ep)
    rec = {
        "episode_id": ep["episode_id"],
        "onset_s": round(ep["t_onset_s"], 3),
        "offset_s": None if off is None else round(off, 3),
        "duration_s": None if dur is None else round(dur, 3),
        "onset": ep["onset_utc"],
        "offset": ep["offset_utc"],
        "peak_rms_uv": None if ep["peak_rms_uv"] is None else round(ep["peak_rms_uv"], 2),
        "mean_rms_uv": None if ep["mean_rms_uv"] is None else round(ep["mean_rms_uv"], 2),
        "confidence": ep["confidence"],
        "channel": ep["channel"],
        "site": ep.get("site"),
        "status": ep["status"],
        "file": ep["path"],
        "night": night_date,
        "verdict": ep["verdict"],
        "verdict_note": ep["verdict_note"],
        "counted": episode_kind(ep) == "cramp",
    }
    return rec


def night_json(s: NightSummary) -> dict:
    """The night's counts as one JSON object (``review --json-summary``): in all and
    per site (``sites``: site -> ``label``, ``cramps``, ``uncertain``,
    ``marked_false``, ``total_cramp_s``, ``longest_s``, ``longest_episode_id``,
    ``good_s``)."""
    def rnd(x):
        return None if x is None else round(float(x), 3)
    lg = s.longest
    sites = {}
    for site, c in s.site_counts().items():
        sig = s.site_signal.get(site, {})
        sites[site] = {"label": site_label(site), "cramps": c["cramps"],
                       "uncertain": c["uncertain"], "marked_false": c["false"],
                       "total_cramp_s": rnd(c["total_cramp_s"]),
                       "longest_s": rnd(ep_duration_s(c["longest"])) if c["longest"] else None,
                       "longest_episode_id": c["longest"]["episode_id"] if c["longest"] else None,
                       "good_s": rnd(sig.get("good_s"))}
    return {
        "night": s.night["night_date"],
        "start": None if s.start_utc is None else s.start_utc.isoformat(),
        "end": None if s.end_utc is None else s.end_utc.isoformat(),
        "recorded_s": rnd(s.recorded_s),
        "good_s": rnd(s.good_s),
        "cramps": len(s.cramps),
        "uncertain": len(s.uncertain),
        "marked_false": len(s.marked_false),
        "total_cramp_s": rnd(s.total_cramp_s),
        "longest_s": rnd(ep_duration_s(lg)) if lg else None,
        "longest_episode_id": lg["episode_id"] if lg else None,
        "gaps": len(s.gaps),
        "sites": sites,
    }


# --------------------------------------------------------------------------- text

def use_color(stream) -> bool:
    """ANSI colour only on a terminal, and never with ``NO_COLOR`` set or ``TERM=dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def _paint(text: str, style: str | None, color: bool) -> str:
    if not color or not style:
        return text
    return f"\033[{_SGR[style]}m{text}\033[0m"


def format_duration(seconds: float | None) -> str:
    """``21.2 s``, ``3 min 05 s``, ``1 h 06 min`` (``-`` for None)."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m} min {s:02d} s"
    h, m = divmod(int(round(seconds / 60.0)), 60)
    return f"{h} h {m:02d} min"


def _local(dt: datetime) -> datetime:
    return dt.astimezone()


def utc_offset_label(dt: datetime) -> str:
    """The local UTC offset at ``dt``, as people read it: ``UTC+01:00``."""
    off = _local(dt).utcoffset() or timedelta(0)
    sign = "-" if off < timedelta(0) else "+"
    mins = abs(int(off.total_seconds())) // 60
    return f"UTC{sign}{mins // 60:02d}:{mins % 60:02d}"


def _wrap(prefix: str, items: list[str], width: int = 80) -> list[str]:
    lines, cur = [], prefix
    indent = " " * len(prefix)
    for i, it in enumerate(items):
        piece = it + (", " if i < len(items) - 1 else "")
        if len(cur) + len(piece.rstrip()) > width and cur.strip():
            lines.append(cur.rstrip())
            cur = indent
        cur += piece
    lines.append(cur.rstrip())
    return lines


def good_signal_text(s: NightSummary, site: str | None = None) -> tuple[str, float | None]:
    """``"2 min 25 s (38 %); artifact ...; no data ...; no summary 4 min 00 s"`` and the
    percentage (None: unknown), of the night or of one ``site``.  The percentage is of
    the recorded time: minutes the log has no summary of (its disk failed during the
    night) are not counted as good."""
    if site is not None:
        sig = s.site_signal.get(site)
        if not sig:
            return "unknown (no per-minute summary in the log)", None
        good, art, nod = sig["good_s"], sig["artifact_s"], sig["nodata_s"]
    elif s.good_s is None:
        return "unknown (no per-minute summary in the log)", None
    else:
        good, art, nod = s.good_s, s.artifact_s, s.nodata_s
    covered = good + art + nod
    whole = max(s.recorded_s, covered)
    pct = 100.0 * good / whole if whole > 0 else 0.0
    text = (f"{format_duration(good)} ({pct:.0f} %); artifact "
            f"{format_duration(art)}; no data {format_duration(nod)}")
    unknown = whole - covered
    if unknown >= 1.0:
        text += f"; no summary {format_duration(unknown)}"
    return text, pct


def storage_text(s: NightSummary) -> str | None:
    """What the recordings of the night do not hold (None: all was stored)."""
    if s.unstored_s <= 0 and not s.storage_problems:
        return None
    why = "; ".join(dict.fromkeys(sanitize_text(p, 160) for p in s.storage_problems))
    return (f"{format_duration(s.unstored_s)} of {format_duration(s.recorded_s)} not in the "
            f"recording" + (f" ({why})" if why else ""))


def _wrap_text(prefix: str, text: str, width: int = 80) -> list[str]:
    """``text`` after ``prefix`` in ``width`` columns, broken after its ``"; "``
    (a duration is never split) and, inside a part too long for a line, at spaces."""
    room = width - len(prefix)
    parts = text.split("; ")
    lines: list[str] = []
    cur = ""
    for i, part in enumerate(parts):
        piece = part + (";" if i < len(parts) - 1 else "")
        if cur and len(cur) + 1 + len(piece) > room:
            lines.append(cur)
            cur = ""
        if len(piece) > room:
            wrapped = textwrap.wrap((cur + " " + piece).strip(), room, break_on_hyphens=False)
            lines += wrapped[:-1]
            cur = wrapped[-1]
        else:
            cur = f"{cur} {piece}" if cur else piece
    lines.append(cur)
    return [prefix + lines[0]] + [" " * len(prefix) + ln for ln in lines[1:]]


def format_summary(s: NightSummary, db_path: str, color: bool = False) -> str:
    """The terminal summary of a night: at most 80 columns (colour codes aside)."""
    night = s.night
    d = date.fromisoformat(night["night_date"])
    ref = s.start_utc or datetime.now(timezone.utc)
    out = [_paint(f"Night of {d:%a} {night['night_date']}", "bold", color)
           + f"  (local time, {utc_offset_label(ref)})"]
    out.append(f"  Log          "
               f"{_short_path(sanitize_text(os.path.abspath(db_path), 400), 80 - 15)}")
    if not s.recordings:
        out.append("  Recorded     nothing (the night has no recording)")
    else:
        a, b = _local(s.start_utc), _local(s.end_utc)
        end = f"{b:%H:%M}" if a.date() == b.date() else f"{b:%a %H:%M}"
        n = len(s.recordings)
        out.append(f"  Recorded     {a:%a %H:%M} -> {end}, {format_duration(s.recorded_s)} "
                   f"({n} recording{'s' if n != 1 else ''})")
    stored = storage_text(s)
    if stored is not None:
        out += [_paint(line, "red", color) for line in _wrap_text("  NOT STORED   ", stored)]
    if s.multi_site:
        out.append("  Good signal")
        for site in s.sites:
            out += _good_signal_lines(s, site, f"    {site_label(site)[:24]:<11} ", color)
    else:
        out += _good_signal_lines(s, None, "  Good signal  ", color)
    if not s.gaps:
        out.append("  Gaps         none")
    else:
        total = sum(g["duration_s"] for g in s.gaps)
        items = [f"{_local(g['start_utc']):%H:%M:%S} ({format_duration(g['duration_s'])}"
                 + (", between recordings" if g["cause"] == "between recordings" else "") + ")"
                 for g in s.gaps[:MAX_GAPS_LISTED]]
        if len(s.gaps) > MAX_GAPS_LISTED:
            items.append(f"and {len(s.gaps) - MAX_GAPS_LISTED} more")
        out += _wrap(f"  Gaps         {len(s.gaps)}, {format_duration(total)}: ", items)
    n = len(s.cramps)
    out.append(f"  Cramps       {_paint(str(n), 'bold', color)}"
               + _cramp_details(n, s.total_cramp_s, s.longest))
    if s.multi_site:
        for site, c in s.site_counts().items():
            extra = "".join(f"; {c[k]} {what}" for k, what in
                            (("uncertain", "uncertain"), ("false", "marked false")) if c[k])
            out += _wrap_text(f"    {site_label(site)[:24]:<11} ",
                              f"{c['cramps']}" + _cramp_details(c["cramps"], c["total_cramp_s"],
                                                                c["longest"]) + extra)
    if s.uncertain:
        out.append(f"  Uncertain    {len(s.uncertain)} (not counted: the detector was not "
                   "confident)")
    if s.marked_false:
        out.append(f"  Marked false {len(s.marked_false)} (listed, not counted)")
    if s.episodes:
        # 80 columns with every field at its widest
        head = _paint(f"  {'#':>4}  {'onset':<8}  {'offset':<8}  {'dur s':>7}  "
                      f"{'peak uV':>7} {'mean uV':>7}  {'conf':>4}  {'status':<9}  "
                      f"{'verdict':<9}".rstrip(), "dim", color)
        groups = ([(site, [e for e in s.episodes if e["site"] == site]) for site in s.sites]
                  if s.multi_site else [(None, s.episodes)])
        for site, eps in groups:
            if not eps:
                continue
            out.append("")
            if site is not None:
                out.append(_paint(f"  {sanitize_text(site_label(site), 60)}", "bold", color))
            out.append(head)
            out += [_episode_line(e, color) for e in eps]
        notes = [e for e in s.episodes if e["verdict_note"]]
        for e in notes:
            prefix = f"  note #{e['episode_id']}: "
            lines = textwrap.wrap(sanitize_text(e["verdict_note"], 300),
                                  80 - len(prefix)) or [""]
            out += [prefix + lines[0]] + [" " * len(prefix) + ln for ln in lines[1:]]
    return "\n".join(out)


def _good_signal_lines(s: NightSummary, site: str | None, prefix: str,
                       color: bool) -> list[str]:
    text, pct = good_signal_text(s, site)
    lines = _wrap_text(prefix, text)
    if pct is not None:
        style = None if pct >= 80 else ("yellow" if pct >= 50 else "red")
        dur = text.split(" (", 1)[0]
        lines[0] = lines[0].replace(dur, _paint(dur, style, color), 1)
    return lines


def _cramp_details(n: int, total_s: float, longest: dict | None) -> str:
    """``, total 1 min 05 s, longest 45.0 s (#3 at 23:10)`` ("" without cramps)."""
    if not n:
        return ""
    text = f", total {format_duration(total_s)}"
    if longest is not None:
        text += (f", longest {format_duration(ep_duration_s(longest))} "
                 f"(#{longest['episode_id']} at "
                 f"{_local(parse_utc(longest['onset_utc'])):%H:%M})")
    return text


def _episode_line(e: dict, color: bool) -> str:
    on = _local(parse_utc(e["onset_utc"]))
    off = f"{_local(parse_utc(e['offset_utc'])):%H:%M:%S}" if e["offset_utc"] else "-"
    dur = _num(ep_duration_s(e), 7, 1)
    status = e["status"]
    st = _paint(f"{status:<9}", None if status == "closed" else "yellow", color)
    v = e["verdict"] or "-"
    vs = _paint(f"{v:<9}", {"false": "red", "confirmed": "green"}.get(v), color)
    line = (f"  {e['episode_id']:>4}  {on:%H:%M:%S}  {off:<8}  {dur}  "
            f"{_num(e['peak_rms_uv'], 7, 1)} {_num(e['mean_rms_uv'], 7, 1)}  "
            f"{_num(e['confidence'], 4, 2)}  {st}  {vs}".rstrip())
    return _paint(line, "dim", color) if episode_kind(e) == "uncertain" else line


def _num(x, width: int, decimals: int) -> str:
    if x is None:
        return f"{'-':>{width}}"
    text = f"{x:.{decimals}f}"
    if len(text) > width:
        text = f"{x:.0f}"
    return f"{text:>{width}}"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _short_path(path: str, n: int) -> str:
    return path if len(path) <= n else "..." + path[-(n - 3):]


def format_night_list(log: EpisodeLog) -> str:
    """One line per night: date, hours recorded, cramps (as :func:`episode_kind` counts
    them), marked false, uncertain; and the cramps per site when the log holds more
    than one site."""
    rows = log.night_list()
    by_site = log.site_counts_by_night()
    sites = order_sites({site for v in by_site.values() for site in v})
    per_site = len(sites) > 1
    out = [f"{'night':<10}  {'recorded':>10}  {'cramps':>6}  {'false':>5}"
           + (f"  {'uncert':>6}  per site" if per_site else "")]
    for r in rows:
        line = (f"{r['night_date']:<10}  {format_duration(r['recorded_s']):>10}  "
                f"{r['n_cramps']:>6}  {r['n_false']:>5}")
        if per_site:
            counts = by_site.get(r["night_date"], {})
            line += f"  {r['n_uncertain']:>6}  " + ", ".join(
                f"{sanitize_text(site_label(site), 24)} {counts[site]['cramps']}"
                for site in sites if site in counts)
        out.append(line.rstrip())
    out.append(f"{len(rows)} night{'s' if len(rows) != 1 else ''} in "
               f"{os.path.abspath(log.path)}")
    return "\n".join(out)


# --------------------------------------------------------------------------- command

def run(args) -> int:
    if args.nights < 1 or args.trend_nights < 1:
        raise ConfigError("--nights and --trend-nights must be at least 1")
    with open_log(args.db) as log:
        if args.list:
            print(format_night_list(log))
            return 0
        night = resolve_night(log, args.night)
        if night is None:
            msg = (f"no nights in the episode log {log.path} yet: record one with "
                   f"'crampwatch capture' or load a recording with "
                   f"'crampwatch replay FILE --db {log.path}'")
            print(msg, file=sys.stderr if args.json or args.json_summary else sys.stdout)
        else:
            summary = summarize_night(log, night)
            if args.json_summary:
                sys.stdout.write(json.dumps(night_json(summary)) + "\n")
            elif args.json:
                for ep in summary.episodes:
                    sys.stdout.write(json.dumps(episode_json(ep, night["night_date"])) + "\n")
            else:
                print(format_summary(summary, log.path, use_color(sys.stdout)))
        if args.html:
            from crampwatch.tools.report_html import write_report
            check_output_path(args.html, [log.path], "--html")
            info = write_report(log, args.html, night=night, n_nights=args.nights,
                                trend_nights=args.trend_nights)
            print(info.describe(),
                  file=sys.stderr if args.json or args.json_summary else sys.stdout)
    return 0
