"""The morning report as one self-contained HTML file (``crampwatch review --html``).

For each night shown (the selected one, or the N up to it): the summary of
:func:`crampwatch.tools.review.summarize_night`, a timeline of the whole
night from the per-minute summaries in the log (EMG envelope, motion, signal
quality and gaps, episodes shaded), the episode table, and per episode a
close-up read from its recording (raw EMG, filtered EMG, envelope,
accelerometer, onset and offset lines).  Then trends over the last 30 nights
(cramps per night, total cramp minutes, time of night).

A night watched on several body sites gets its cramps and good signal per site,
a timeline with one lane per site (each lane names its site, listed under the
figure too), a site column in the episode table and trends per site (stacked
by site, and a table); a night of one site looks as it always has.  Uncertain
episodes (below ``min_confidence``) are drawn hatched and listed apart from the
cramps, never counted.

Nothing is fetched when the file is opened: figures are PNG images embedded as
``data:`` URIs, the style sheet is inline, there is no script.  A recording
file that has been moved or deleted does not stop the report: its episodes get
a note instead of a close-up.  The file is written owner-only (0600), like the
log: it is health data.

Examples
--------
>>> from crampwatch.tools.review import open_log
>>> from crampwatch.tools.report_html import write_report
>>> with open_log("episodes.sqlite") as log:                     # doctest: +SKIP
...     info = write_report(log, "report.html")
>>> info.n_closeups                                               # doctest: +SKIP
2
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
import struct
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import numpy as np

from crampwatch import CrampwatchError, __version__
from crampwatch._files import atomic_private_write
from crampwatch._text import sanitize_text
from crampwatch.tools import _plots
from crampwatch.sites import site_label
from crampwatch.tools.episode_log import EpisodeLog, episode_kind, parse_utc
from crampwatch.tools.review import (
    NightSummary,
    ep_duration_s,
    format_duration,
    good_signal_text,
    order_sites,
    storage_text,
    summarize_night,
    utc_offset_label,
)

__all__ = ["Excerpt", "ReportInfo", "read_excerpts", "trend_data", "write_report"]

logger = logging.getLogger(__name__)

MAX_CLOSEUPS_PER_NIGHT = 50
CLOSEUP_PAD_MIN_S = 10.0
CLOSEUP_PAD_MAX_S = 30.0
FILTER_WARMUP_S = 2.0


@dataclass
class ReportInfo:
    """What :func:`write_report` wrote."""

    path: str
    nights: list = field(default_factory=list)          # night dates, as shown
    n_episodes: int = 0
    n_closeups: int = 0
    missing: list = field(default_factory=list)         # recording paths not found
    unreadable: list = field(default_factory=list)      # (path, reason)
    trend_nights: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        if not self.nights:
            return f"{self.path}: report written (the episode log holds no night yet)"
        which = ", ".join(self.nights)
        text = (f"{self.path}: report of night {which}: {self.n_episodes} episode"
                f"{'s' if self.n_episodes != 1 else ''}, {self.n_closeups} close-up"
                f"{'s' if self.n_closeups != 1 else ''}, trends over {self.trend_nights} "
                f"nights ({self.seconds:.1f} s)")
        if self.missing:
            text += f"; recording missing: {', '.join(self.missing)}"
        if self.unreadable:
            text += f"; recording unreadable: {', '.join(p for p, _ in self.unreadable)}"
        return text


# --------------------------------------------------------------------------- signal excerpts

@dataclass
class Excerpt:
    """A stretch of a recording: EMG (uV) and acceleration (g), NaN where missing.

    ``emg_t0_s`` / ``acc_t0_s`` are the times of the first samples, seconds
    from the recording's first sample.
    """

    emg_t0_s: float
    emg_fs_hz: float
    emg_uv: np.ndarray
    acc_t0_s: float | None = None
    acc_fs_hz: float | None = None
    acc_g: np.ndarray | None = None


def read_excerpts(path: str, windows_s: list[tuple[float, float]], emg: str | None = None,
                  block_s: float = 30.0) -> list[Excerpt]:
    """Read several ``(start_s, end_s)`` windows of a recording in one pass.

    EDF/BDF files (not EDF+D) are read by sample index; other recordings
    (the capture format) are streamed from the start up to the last window,
    memory bounded by the windows.  Samples outside the recording are NaN.

    Raises
    ------
    InputFileError, ChannelNotFoundError
        As :func:`crampwatch.firmware_bridge.readers.open_recording`.

    Examples
    --------
    >>> ex = read_excerpts("night.edf", [(700.0, 760.0)])          # doctest: +SKIP
    >>> ex[0].emg_uv.shape                                           # doctest: +SKIP
    (60000,)
    """
    from crampwatch.firmware_bridge.readers import open_recording
    from crampwatch.firmware_bridge.types import SampleBlock

    with open_recording(path, emg=emg) as reader:
        fs_e = float(reader.emg.fs_hz)
        fs_a = float(reader.acc.fs_hz) if reader.acc is not None else None
        out, spans = [], []
        for a, b in windows_s:
            i0, i1 = int(math.floor(a * fs_e)), int(math.ceil(b * fs_e))
            ex = Excerpt(i0 / fs_e, fs_e, np.full(max(0, i1 - i0), np.nan, np.float32))
            j0 = j1 = 0
            if fs_a:
                j0, j1 = int(math.floor(a * fs_a)), int(math.ceil(b * fs_a))
                ex.acc_t0_s, ex.acc_fs_hz = j0 / fs_a, fs_a
                ex.acc_g = np.full((max(0, j1 - j0), 3), np.nan, np.float32)
            out.append(ex)
            spans.append((i0, i1, j0, j1))
        if not out:
            return out
        if hasattr(reader, "read_emg") and not str(getattr(reader, "format", "")).endswith("+d"):
            n_e = int(round(reader.duration_s * fs_e))
            n_a = int(round(reader.duration_s * fs_a)) if fs_a else 0
            for ex, (i0, i1, j0, j1) in zip(out, spans):
                lo, hi = max(0, i0), min(n_e, i1)
                if hi > lo:
                    ex.emg_uv[lo - i0:hi - i0] = reader.read_emg(lo, hi - lo)
                lo, hi = max(0, j0), min(n_a, j1)
                if fs_a and hi > lo:
                    ex.acc_g[lo - j0:hi - j0] = reader.read_acc(lo, hi - lo)
            return out
        last = {"emg": max(s[1] for s in spans), "acc": max(s[3] for s in spans)}
        done = {"emg": False, "acc": not fs_a}
        for item in reader.blocks(block_s):
            if not isinstance(item, SampleBlock) or item.stream not in done:
                continue
            f0, f1 = item.first_index, item.end_index
            if f0 >= last[item.stream]:
                done[item.stream] = True
                if all(done.values()):
                    break
                continue
            data = np.asarray(item.data)
            for ex, (i0, i1, j0, j1) in zip(out, spans):
                w0, w1, dst = (i0, i1, ex.emg_uv) if item.stream == "emg" else (j0, j1, ex.acc_g)
                lo, hi = max(w0, f0), min(w1, f1)
                if hi <= lo:
                    continue
                src = data[lo - f0:hi - f0]
                dst[lo - w0:hi - w0] = src[:, 0] if item.stream == "emg" else src
        return out


def _filtered(ex: Excerpt, cfg):
    """Band-passed and notched EMG and its trailing RMS envelope (NaN over gaps)."""
    from crampwatch.detector.filters import EmgFilter
    x = ex.emg_uv.astype(np.float64)
    missing = ~np.isfinite(x)
    flt = EmgFilter(ex.emg_fs_hz, cfg.band_low_hz, cfg.band_high_hz, cfg.band_order,
                    cfg.mains_hz, cfg.notch_width_hz)
    y = flt.process(np.where(missing, 0.0, x))[0] if len(x) else x.copy()
    n = max(1, int(round(cfg.rms_window_s * ex.emg_fs_hz)))
    c = np.concatenate([[0.0], np.cumsum(y * y)])
    k = np.arange(len(y))
    lo = np.maximum(0, k + 1 - n)
    env = np.sqrt(np.maximum(0.0, (c[k + 1] - c[lo]) / (k + 1 - lo)))
    y[missing] = np.nan
    env[missing] = np.nan
    return y, env


# --------------------------------------------------------------------------- trends

def trend_data(log: EpisodeLog, end_date: str, n_days: int = 30):
    """Per calendar night over the ``n_days`` ending at ``end_date`` (inclusive).

    Returns ``(days, per_day)`` as :func:`crampwatch.tools._plots.trends_png`
    takes them: ``per_day[date]`` holds ``recorded_s``, ``n`` (episodes counted
    as cramps, :func:`~crampwatch.tools.episode_log.episode_kind`), ``n_false``,
    ``n_uncertain``, ``cramp_s``, ``onsets``, ``false_onsets`` and
    ``uncertain_onsets`` (hours after noon of the evening, duration_s), and
    ``sites``: site -> ``n``, ``cramp_s``, ``onsets`` of its cramps.
    """
    last = date.fromisoformat(end_date)
    days = [last - timedelta(days=i) for i in range(n_days - 1, -1, -1)]
    recorded, episodes = log.trend_rows(days[0].isoformat(), end_date)
    per_day: dict = {}
    for d, rec_s in recorded.items():
        per_day[date.fromisoformat(d)] = {"recorded_s": rec_s, "n": 0, "n_false": 0,
                                          "n_uncertain": 0, "cramp_s": 0.0, "onsets": [],
                                          "false_onsets": [], "uncertain_onsets": [],
                                          "sites": {}}
    for e in episodes:
        day = date.fromisoformat(e["night_date"])
        info = per_day[day]
        info["recorded_s"] = max(info["recorded_s"], 1.0)   # an episode means it recorded
        noon = datetime(day.year, day.month, day.day, 12)
        hours = (_local_naive(parse_utc(e["onset_utc"])) - noon).total_seconds() / 3600.0
        dur_s = e["duration_s"]
        kind = episode_kind(e)
        if kind == "false":
            info["n_false"] += 1
            info["false_onsets"].append((hours, dur_s))
        elif kind == "uncertain":
            info["n_uncertain"] += 1
            info["uncertain_onsets"].append((hours, dur_s))
        else:
            info["n"] += 1
            info["cramp_s"] += float(dur_s or 0.0)
            info["onsets"].append((hours, dur_s))
            site = info["sites"].setdefault(e["site"], {"n": 0, "cramp_s": 0.0, "onsets": []})
            site["n"] += 1
            site["cramp_s"] += float(dur_s or 0.0)
            site["onsets"].append((hours, dur_s))
    return days, per_day


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:16px auto;max-width:1120px;
color:#222;background:#fff;line-height:1.35}
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.25em;margin:28px 0 6px;border-bottom:2px solid #ddd}
h3{font-size:1.02em;margin:18px 0 4px}
table{border-collapse:collapse;font-size:.9em;margin:6px 0}
th,td{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
table.facts th{font-weight:600;color:#555;border:0}table.facts td{border:0}
img.plot{display:block;max-width:100%;height:auto;margin:6px 0}
.note{color:#8a5300;background:#fff6e5;border-left:4px solid #f0a020;padding:6px 10px}
.muted{color:#777}.false{color:#777;text-decoration:line-through}
.confirmed{color:#1a7f37;font-weight:600}.truncated,.open{color:#9a6700}
tr.uncertain td{color:#8a6d00;font-style:italic}.lanes{font-size:.85em;color:#555;margin:0}
footer{margin-top:32px;font-size:.8em;color:#888}
code{background:#f3f3f3;padding:1px 4px}
"""


def _e(x, max_len: int = 2000) -> str:
    """Text for HTML: control characters and terminal escapes made visible, length
    capped (notes, labels and paths come from users and devices), then escaped."""
    return html.escape(sanitize_text(x, max_len), quote=True)


def _local_naive(dt: datetime) -> datetime:
    return dt.astimezone().replace(tzinfo=None)


def _png_size(png: bytes) -> tuple[int, int]:
    w, h = struct.unpack(">II", png[16:24])
    return int(w), int(h)


def _img(png: bytes, alt: str, ident: str, cls: str) -> str:
    w, h = _png_size(png)
    data = base64.b64encode(png).decode("ascii")
    return (f'<img id="{_e(ident)}" class="plot {cls}" alt="{_e(alt)}" width="{w}" '
            f'height="{h}" src="data:image/png;base64,{data}">')


def _episode_spans(s: NightSummary):
    """(episode_id, onset, offset, verdict, site, kind) as naive local datetimes."""
    out = []
    for e in s.episodes:
        on = parse_utc(e["onset_utc"])
        if e["offset_utc"]:
            off = parse_utc(e["offset_utc"])
        else:
            off = s.end_utc or on
        out.append((e["episode_id"], _local_naive(on), _local_naive(max(on, off)),
                    e["verdict"], e["site"], episode_kind(e)))
    return out


def _timeline(log: EpisodeLog, s: NightSummary) -> bytes:
    rows = []
    for m in log.minutes(s.night["night_id"]):
        m = dict(m)
        m["t"] = _local_naive(parse_utc(m["minute_utc"]))
        rows.append(m)
    gaps = [(_local_naive(g["start_utc"]),
             _local_naive(g["start_utc"] + timedelta(seconds=g["duration_s"])))
            for g in s.gaps]
    recs = []
    for r in s.recordings:
        a = parse_utc(r["started_utc"])
        b = parse_utc(r["ended_utc"]) if r["ended_utc"] else a
        recs.append((_local_naive(a), _local_naive(b)))
    title = f"Night of {s.night['night_date']}: the whole night (local time)"
    return _plots.timeline_png(rows, _episode_spans(s), gaps, recs, title, sites=s.sites,
                               site_labels=[sanitize_text(site_label(x), 24) for x in s.sites])


def _closeups(log: EpisodeLog, s: NightSummary, cfg, info: ReportInfo) -> dict:
    """episode_id -> html (an image, or a note saying why there is none)."""
    out = {}
    eps = s.episodes[:MAX_CLOSEUPS_PER_NIGHT]
    recs = {r["path"]: r for r in s.recordings}
    by_path: dict = {}
    for e in eps:      # one pass per recording and channel (each site has its own)
        rec_channel = (recs.get(e["path"], {}).get("channel") or "").split(",")[0].strip()
        by_path.setdefault((e["path"], e.get("channel") or rec_channel or None), []).append(e)
    for (path, channel), group in by_path.items():
        if path is None:
            for e in group:
                out[e["episode_id"]] = ('<p class="note">No recording is linked to this '
                                        'episode in the log: no close-up.</p>')
            continue
        if not os.path.exists(path):
            if path not in info.missing:
                info.missing.append(path)
            for e in group:
                out[e["episode_id"]] = (f'<p class="note">The recording <code>{_e(path)}</code> '
                                        f'is missing (moved or deleted): no close-up.</p>')
            continue
        windows, pads = [], []
        for e in group:
            on = float(e["onset_s"])
            off = float(e["offset_s"]) if e["offset_s"] is not None else None
            dur = (off - on) if off is not None else 0.0
            pad = min(CLOSEUP_PAD_MAX_S, max(CLOSEUP_PAD_MIN_S, 0.5 * dur))
            end = (off if off is not None else on) + pad
            windows.append((on - pad - FILTER_WARMUP_S, end))
            pads.append(pad)
        try:
            excerpts = read_excerpts(path, windows, emg=channel)
        except (CrampwatchError, OSError, ValueError) as exc:
            reason = str(exc)
            info.unreadable.append((path, reason))
            logger.warning("%s: cannot read it for close-ups: %s", path, reason)
            for e in group:
                out[e["episode_id"]] = (f'<p class="note">Cannot read the recording '
                                        f'<code>{_e(path)}</code>: {_e(reason)}</p>')
            continue
        for e, ex, pad in zip(group, excerpts, pads):
            on = float(e["onset_s"])
            off = float(e["offset_s"]) if e["offset_s"] is not None else None
            filt, env = _filtered(ex, cfg)
            t = ex.emg_t0_s + np.arange(len(ex.emg_uv)) / ex.emg_fs_hz - on
            keep = t >= -pad
            t_acc = acc = None
            if ex.acc_g is not None:
                t_acc = ex.acc_t0_s + np.arange(len(ex.acc_g)) / ex.acc_fs_hz - on
                k2 = t_acc >= -pad
                t_acc, acc = t_acc[k2], ex.acc_g[k2]
            if not np.isfinite(ex.emg_uv[keep]).any():
                out[e["episode_id"]] = (f'<p class="note">The recording <code>{_e(path)}'
                                        f'</code> holds no samples around this episode.</p>')
                continue
            onset_local = _local_naive(parse_utc(e["onset_utc"]))
            where = f", {sanitize_text(site_label(e['site']), 24)}" if s.multi_site else ""
            title = (f"Episode #{e['episode_id']}{where} at {onset_local:%H:%M:%S}: "
                     f"{format_duration(ep_duration_s(e))}, peak {e['peak_rms_uv'] or 0:.0f} uV, "
                     f"confidence {e['confidence'] or 0:.2f} ({e['status']})")
            png = _plots.closeup_png(t[keep], ex.emg_uv[keep].astype(np.float64), filt[keep],
                                     env[keep], t_acc, acc, 0.0,
                                     None if off is None else off - on, title,
                                     floor_uv=log.floor_near(e["recording_id"], e["onset_utc"],
                                                             e["site"]))
            out[e["episode_id"]] = _img(png, f"close-up of episode {e['episode_id']}",
                                        f"closeup-{e['episode_id']}", "closeup")
            info.n_closeups += 1
    for e in s.episodes[MAX_CLOSEUPS_PER_NIGHT:]:
        out[e["episode_id"]] = ('<p class="muted">No close-up: only the first '
                                f'{MAX_CLOSEUPS_PER_NIGHT} episodes of a night get one.</p>')
    return out


def _facts(s: NightSummary) -> str:
    rows = []
    if s.recordings:
        a, b = s.start_utc.astimezone(), s.end_utc.astimezone()
        n = len(s.recordings)
        rows.append(("Recorded", (f"{a:%a %d %b %H:%M} to {b:%a %d %b %H:%M} "
                                 f"({utc_offset_label(s.start_utc)}), "
                                 f"{format_duration(s.recorded_s)} in {n} recording"
                                 f"{'s' if n != 1 else ''}")))
    else:
        rows.append(("Recorded", "nothing: this night has no recording"))
    stored = storage_text(s)
    if stored is not None:
        rows.append(("NOT STORED", stored))
    if s.multi_site:
        for site in s.sites:
            rows.append((f"Good signal, {site_label(site)}", good_signal_text(s, site)[0]))
    else:
        rows.append(("Good signal", good_signal_text(s)[0]))
    if s.gaps:
        total = sum(g["duration_s"] for g in s.gaps)
        items = ", ".join(f"{g['start_utc'].astimezone():%H:%M:%S} "
                          f"({format_duration(g['duration_s'])})" for g in s.gaps[:20])
        more = f" and {len(s.gaps) - 20} more" if len(s.gaps) > 20 else ""
        rows.append(("Gaps", f"{len(s.gaps)}, {format_duration(total)}: {items}{more}"))
    else:
        rows.append(("Gaps", "none"))
    text = str(len(s.cramps))
    if s.cramps:
        text += f", total {format_duration(s.total_cramp_s)}"
        lg = s.longest
        if lg is not None:
            text += (f", longest {format_duration(ep_duration_s(lg))} (#{lg['episode_id']} at "
                     f"{parse_utc(lg['onset_utc']).astimezone():%H:%M})")
    if s.marked_false:
        text += f"; {len(s.marked_false)} more marked false"
    rows.append(("Cramps", text))
    if s.multi_site:
        for site, c in s.site_counts().items():
            text = f"{c['cramps']}"
            if c["cramps"]:
                text += f", total {format_duration(c['total_cramp_s'])}"
            lg = c["longest"]
            if lg is not None:
                text += (f", longest {format_duration(ep_duration_s(lg))} (#{lg['episode_id']} "
                         f"at {parse_utc(lg['onset_utc']).astimezone():%H:%M})")
            for key, what in (("uncertain", "uncertain"), ("false", "marked false")):
                if c[key]:
                    text += f"; {c[key]} {what}"
            rows.append((f"Cramps, {site_label(site)}", text))
    if s.uncertain:
        rows.append(("Uncertain", f"{len(s.uncertain)} (not counted: the detector was not "
                                  "confident)"))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def _episode_table(s: NightSummary) -> str:
    if not s.episodes:
        return '<p class="muted">No episodes this night.</p>'
    site_col = s.multi_site
    head = ("<tr><th class=num>#</th>" + ("<th>site</th>" if site_col else "")
            + "<th>onset</th><th>offset</th><th class=num>duration</th>"
            "<th class=num>peak uV</th><th class=num>mean uV</th><th class=num>confidence</th>"
            "<th>status</th><th>verdict</th><th>note</th></tr>")
    rows = []
    for e in s.episodes:
        on = parse_utc(e["onset_utc"]).astimezone()
        off = parse_utc(e["offset_utc"]).astimezone() if e["offset_utc"] else None
        kind = episode_kind(e)
        cls = {"false": "false", "uncertain": "uncertain"}.get(kind, "")
        site = (f'<td class="site" data-site="{_e(e["site"])}">{_e(site_label(e["site"]))}</td>'
                if site_col else "")
        rows.append(
            f'<tr class="{cls}"><td class=num>{e["episode_id"]}</td>{site}<td>{on:%H:%M:%S}</td>'
            f'<td>{"-" if off is None else f"{off:%H:%M:%S}"}</td>'
            f'<td class=num>{_e(format_duration(ep_duration_s(e)))}</td>'
            f'<td class=num>{_fmt(e["peak_rms_uv"], 1)}</td>'
            f'<td class=num>{_fmt(e["mean_rms_uv"], 1)}</td>'
            f'<td class=num>{_fmt(e["confidence"], 2)}</td>'
            f'<td class="{_e(e["status"])}">{_e(e["status"])}</td>'
            f'<td class="{_e(e["verdict"] or "")}">{_e(e["verdict"] or "-")}</td>'
            f'<td>{_e(e["verdict_note"] or "")}</td></tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _site_trend_table(days: list, per_day: dict, sites: list) -> str:
    """Per site over the trend's nights: cramps, cramp minutes, nights with a cramp
    ("" with fewer than two sites)."""
    if len(sites) < 2:
        return ""
    rows = []
    for k, site in enumerate(sites):
        per = [per_day.get(d, {}).get("sites", {}).get(site, {}) for d in days]
        n = sum(p.get("n", 0) for p in per)
        mins = sum(p.get("cramp_s", 0.0) for p in per) / 60.0
        nights = sum(1 for p in per if p.get("n", 0))
        rows.append(f'<tr data-site="{_e(site)}"><td><span style="color:'
                    f'{_plots.site_color(k)}">&#9632;</span> {_e(site_label(site))}</td>'
                    f"<td class=num>{n}</td><td class=num>{mins:.1f}</td>"
                    f"<td class=num>{nights}</td></tr>")
    return ('<table class="sites"><tr><th>site</th><th class=num>cramps</th>'
            "<th class=num>cramp minutes</th><th class=num>nights with a cramp</th></tr>"
            + "".join(rows) + "</table>")


def _fmt(x, decimals: int) -> str:
    return "-" if x is None else f"{x:.{decimals}f}"


def _night_section(log: EpisodeLog, night: dict, cfg, info: ReportInfo) -> str:
    s = summarize_night(log, night)
    info.nights.append(night["night_date"])
    info.n_episodes += len(s.episodes)
    d = date.fromisoformat(night["night_date"])
    parts = [f'<section class="night" id="night-{_e(night["night_date"])}">',
             f"<h2>Night of {d:%A} {d.day} {d:%B %Y}</h2>", _facts(s)]
    if s.recordings or s.episodes:
        lanes = ", ".join(site_label(x) for x in s.sites)
        alt = f"timeline of the night of {night['night_date']}"
        if s.multi_site:
            alt += f", one lane per site: {lanes}"
        parts.append(_img(_timeline(log, s), alt, f"timeline-{night['night_date']}",
                          "timeline"))
        if s.multi_site:
            items = "".join(f'<span class="lane" data-site="{_e(x)}">{_e(site_label(x))}</span>'
                            + (", " if i < len(s.sites) - 1 else "")
                            for i, x in enumerate(s.sites))
            parts.append(f'<p class="lanes">Lanes, top to bottom: {items}; then the motion '
                         "of the body (one accelerometer).</p>")
    else:
        parts.append('<p class="muted">Nothing was recorded this night: no timeline.</p>')
    parts.append("<h3>Episodes</h3>")
    parts.append(_episode_table(s))
    if s.episodes:
        parts.append('<p class="muted">Your verdict on an episode: <code>crampwatch label ID '
                     '--confirmed</code> or <code>--false</code> (with <code>--note TEXT</code>)'
                     '. Episodes marked false are not counted.</p>')
        closeups = _closeups(log, s, cfg, info)
        for e in s.episodes:
            on = parse_utc(e["onset_utc"]).astimezone()
            where = f"{_e(site_label(e['site']))}, " if s.multi_site else ""
            note = " (uncertain: not counted)" if episode_kind(e) == "uncertain" else ""
            parts.append(f'<h3 id="episode-{e["episode_id"]}">Episode #{e["episode_id"]}: '
                         f'{where}{on:%H:%M:%S}, {_e(format_duration(ep_duration_s(e)))}'
                         f'{note}</h3>')
            parts.append(closeups.get(e["episode_id"], ""))
    parts.append("</section>")
    return "\n".join(parts)


def write_report(log: EpisodeLog, out_path: str, night: dict | None = None, n_nights: int = 1,
                 trend_nights: int = 30, cfg=None) -> ReportInfo:
    """Write the HTML report of ``night`` (a ``nights`` row; None: the last one).

    Parameters
    ----------
    log : EpisodeLog
    out_path : str
        The HTML file (replaced atomically, mode 0600).
    night : dict, optional
        The night to report; ``n_nights`` > 1 adds the nights before it.
    trend_nights : int
        Trends cover this many calendar nights, ending with ``night``.
    cfg : DetectorConfig, optional
        Filter settings of the close-ups (default: the detector's defaults).

    Returns
    -------
    ReportInfo
    """
    from crampwatch.detector import DetectorConfig
    t0 = time.perf_counter()
    cfg = cfg or DetectorConfig()
    info = ReportInfo(path=str(out_path))
    if night is None:
        night = log.last_night()
    sections = []
    if night is None:
        title = "crampwatch: no nights yet"
        sections.append('<p class="note">The episode log holds no night yet. Record one with '
                        '<code>crampwatch capture</code>, or load a recording with '
                        '<code>crampwatch replay FILE --db LOG</code>.</p>')
    else:
        title = f"crampwatch: night of {night['night_date']}"
        for row in log.nights_up_to(night["night_date"], n_nights):
            sections.append(_night_section(log, row, cfg, info))
        days, per_day = trend_data(log, night["night_date"], trend_nights)
        info.trend_nights = trend_nights
        recorded = sum(1 for d in days if per_day.get(d, {}).get("recorded_s", 0) > 0)
        sites = order_sites({x for v in per_day.values() for x in v["sites"]})
        png = _plots.trends_png(days, per_day, f"The last {trend_nights} nights, "
                                               f"{days[0]:%d %b} to {days[-1]:%d %b %Y}",
                                sites=sites,
                                site_labels=[sanitize_text(site_label(x), 24) for x in sites])
        n_cr = sum(v["n"] for v in per_day.values())
        mins = sum(v["cramp_s"] for v in per_day.values()) / 60.0
        n_unc = sum(v["n_uncertain"] for v in per_day.values())
        unc = (f" {n_unc} uncertain episode{'s' if n_unc != 1 else ''} not counted (hollow "
               "circles)." if n_unc else "")
        sections.append(
            f'<section id="trends"><h2>Trends over the last {trend_nights} nights</h2>'
            f"<p>{recorded} of {trend_nights} nights recorded; {n_cr} cramp"
            f"{'s' if n_cr != 1 else ''}, {mins:.1f} cramp minutes in all.{unc}</p>"
            f'{_img(png, "trends over the last nights", "trends", "trends")}'
            f"{_site_trend_table(days, per_day, sites)}</section>")
    now = datetime.now(timezone.utc).astimezone()
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
           f"<h1>{_e(title)}</h1>"
           f'<p class="muted">Times are local ({utc_offset_label(now)}). Generated '
           f"{now:%Y-%m-%d %H:%M} by crampwatch {__version__} from <code>{_e(log.path)}</code>."
           f"</p>\n" + "\n".join(sections) +
           "<footer>crampwatch is not a medical device: talk to a clinician about what "
           "this report shows.</footer></body></html>\n")
    _write_private(out_path, doc)
    info.seconds = time.perf_counter() - t0
    return info


def _write_private(path: str, text: str) -> None:
    """The report, 0600 whatever the umask, replaced atomically."""
    with atomic_private_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)
