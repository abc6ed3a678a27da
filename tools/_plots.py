"""Figures of the morning report: the night's timeline, an episode's close-up,
the trends.  Pure functions: arrays and rows in, PNG bytes out.

A night watched on several body sites gets one lane per site in its timeline
(envelope and signal quality, the site's episodes shaded in its own lane) and
per-site colours in the trends; a night of one site looks as it always has.
Uncertain episodes (below ``min_confidence``: not counted) are drawn hatched,
not filled.

matplotlib is used through :class:`matplotlib.figure.Figure` (the Agg
renderer behind ``savefig``), never through ``pyplot``: no global state, no
GUI backend, nothing left open.  Times on the axes are local wall-clock time
(naive local datetimes); the caller converts from UTC.
"""

from __future__ import annotations

import io
import math
from datetime import datetime

import numpy as np

# Colours: the browser test looks for some of them in the screenshot.
ENVELOPE_COLOR = "#1f77b4"       # EMG envelope (timeline, close-up filtered EMG)
P95_COLOR = "#9ecae1"
FLOOR_COLOR = "#7f7f7f"
MOTION_COLOR = "#7b3294"
GOOD_COLOR = "#4daf4a"
ARTIFACT_COLOR = "#ff7f00"
NODATA_COLOR = "#bdbdbd"
EPISODE_COLOR = "#e41a1c"        # episode spans (alpha) and cramp bars
FALSE_COLOR = "#969696"          # episodes marked false
UNCERTAIN_COLOR = "#b8860b"      # uncertain episodes: hatched outline, hollow markers
#: per-site colours of the trends (the first is EPISODE_COLOR: one site looks as before)
SITE_COLORS = (EPISODE_COLOR, "#a65628", "#f781bf", "#4d9221", "#542788", "#e08214")
RAW_COLOR = "#404040"
CLOSEUP_ENV_COLOR = "#d62728"
ONSET_COLOR = "#00a651"          # close-up onset line
OFFSET_COLOR = "#c51b7d"         # close-up offset line
ACC_COLORS = ("#1b9e77", "#d95f02", "#7570b3")

DPI = 100
WIDTH_IN = 11.0


def _figure(height_in: float, n_rows: int, height_ratios=None):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI)
    axes = fig.subplots(n_rows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    return fig, [a[0] for a in axes]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def minmax_decimate(t: np.ndarray, y: np.ndarray, max_points: int = 6000):
    """Thin a trace for plotting without losing its extremes: per bin, the
    minimum and the maximum (in time order).  NaN bins stay NaN (gaps show).

    Examples
    --------
    >>> t = np.arange(100000) / 1000.0
    >>> y = np.sin(t)
    >>> t2, y2 = minmax_decimate(t, y, 1000)
    >>> len(t2) <= 1000, float(y2.max()) == float(y.max())
    (True, True)
    """
    n = len(y)
    if n <= max_points:
        return t, y
    nb = max(1, max_points // 2)
    per = int(math.ceil(n / nb))
    pad = nb * per - n
    yy = np.concatenate([y, np.full(pad, np.nan)]).reshape(nb, per)
    tt = np.concatenate([t, np.full(pad, t[-1])]).reshape(nb, per)
    allnan = np.all(np.isnan(yy), axis=1)
    filled = np.where(np.isnan(yy), 0.0, yy)
    lo_i = np.argmin(np.where(np.isnan(yy), np.inf, yy), axis=1)
    hi_i = np.argmax(np.where(np.isnan(yy), -np.inf, yy), axis=1)
    first = np.minimum(lo_i, hi_i)
    second = np.maximum(lo_i, hi_i)
    rows = np.arange(nb)
    t_out = np.column_stack([tt[rows, first], tt[rows, second]]).reshape(-1)
    y_out = np.column_stack([filled[rows, first], filled[rows, second]])
    y_out[allnan] = np.nan
    return t_out, y_out.reshape(-1)


def site_color(index: int) -> str:
    """The trends' colour of the ``index``-th site of a report."""
    return SITE_COLORS[index % len(SITE_COLORS)]


def _shade_episodes(axes, episodes, label_ax=None):
    """episodes: (episode_id, onset, offset, verdict[, site, kind]) with x values of
    the axes; kind ``uncertain`` is hatched, not filled."""
    for eid, a, b, verdict, *more in episodes:
        kind = more[1] if len(more) > 1 else None
        if kind == "uncertain":
            color = UNCERTAIN_COLOR
            for ax in axes:
                ax.axvspan(a, b, facecolor="none", edgecolor=color, hatch="xxx", lw=1.2,
                           zorder=0)
        else:
            color = FALSE_COLOR if verdict == "false" else EPISODE_COLOR
            for ax in axes:
                ax.axvspan(a, b, color=color, alpha=0.28, lw=0, zorder=0)
        if label_ax is not None:
            label_ax.annotate(f"#{eid}", xy=(a, 1.0), xycoords=("data", "axes fraction"),
                              xytext=(0, 2), textcoords="offset points", fontsize=8,
                              color=color, ha="left", va="bottom")


def _envelope_lane(ax_env, tc, minutes, legend: bool) -> None:
    rms = np.array([m["rms_uv"] if m["rms_uv"] is not None else np.nan for m in minutes], float)
    p95 = np.array([m["rms_p95_uv"] if m["rms_p95_uv"] is not None else np.nan
                    for m in minutes], float)
    floor = np.array([m["floor_uv"] if m["floor_uv"] is not None else np.nan
                      for m in minutes], float)
    ax_env.plot(tc, p95, color=P95_COLOR, lw=1.0, label="95th percentile")
    ax_env.plot(tc, rms, color=ENVELOPE_COLOR, lw=1.6, label="median")
    ax_env.plot(tc, floor, color=FLOOR_COLOR, lw=1.0, ls="--", label="noise floor")
    pos = np.concatenate([rms[rms > 0], p95[p95 > 0]]) if len(rms) else np.array([])
    if pos.size:
        ax_env.set_yscale("log")
        ax_env.set_ylim(max(0.3, np.nanmin(pos) * 0.7), np.nanmax(pos) * 1.6)
    if legend:
        ax_env.legend(loc="upper right", fontsize=7, ncol=3, frameon=False)


def _quality_lane(ax_q, t, minutes, legend: bool) -> None:
    edges = np.concatenate([t, [t[-1] + 1.0 / 1440.0]])
    good = np.array([m["good_s"] or 0.0 for m in minutes], float)
    art = np.array([m["artifact_s"] or 0.0 for m in minutes], float)
    nod = np.array([m["nodata_s"] or 0.0 for m in minutes], float)
    for lo, hi, color, label in ((0 * good, good, GOOD_COLOR, "good"),
                                 (good, good + art, ARTIFACT_COLOR, "artifact"),
                                 (good + art, good + art + nod, NODATA_COLOR, "no data")):
        ax_q.stairs(hi, edges, baseline=lo, fill=True, color=color, label=label, lw=0)
    ax_q.set_ylim(0, 60)
    if legend:
        ax_q.legend(loc="upper right", fontsize=7, ncol=3, frameon=False)


def timeline_png(minutes: list[dict], episodes: list, gaps: list, recordings: list,
                 title: str, sites: list | None = None, site_labels: list | None = None
                 ) -> bytes:
    """The whole night: EMG envelope, motion, signal quality, episodes shaded.

    Parameters
    ----------
    minutes : list of dict
        Per-minute rows with ``t`` (naive local datetime of the minute's start)
        and the ``minutes`` table's columns (``site`` among them).
    episodes : list of (episode_id, onset, offset, verdict[, site, kind])
        Onset and offset as naive local datetimes; ``kind`` ``"uncertain"`` is
        drawn hatched.
    gaps : list of (start, end)
        Stretches without data (naive local datetimes).
    recordings : list of (start, end)
        Recording spans (naive local datetimes).
    sites : list of str, optional
        More than one: one lane per site (its envelope and its signal quality,
        its episodes shaded there), the motion below them all; ``site_labels``
        name the lanes.
    """
    import matplotlib.dates as mdates

    lanes = list(sites) if sites and len(sites) > 1 else [None]
    names = list(site_labels or lanes)
    if lanes == [None]:
        fig, (ax_env, ax_mot, ax_q) = _figure(5.2, 3, [2.2, 1.0, 1.0])
        envs, quals = [ax_env], [ax_q]
    else:
        ratios = [r for _ in lanes for r in (1.8, 0.6)] + [0.9]
        fig, axes = _figure(1.2 + 1.9 * len(lanes), len(ratios), ratios)
        envs, quals, ax_mot = axes[0:-1:2], axes[1:-1:2], axes[-1]
    all_axes = [*envs, *quals, ax_mot]
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    if minutes:
        for k, (site, ax_env, ax_q) in enumerate(zip(lanes, envs, quals)):
            rows = [m for m in minutes if site is None or m.get("site") == site]
            if not rows:
                ax_env.text(0.5, 0.5, "no signal summary for this site",
                            transform=ax_env.transAxes, ha="center", va="center",
                            color=FLOOR_COLOR)
                continue
            t = mdates.date2num([m["t"] for m in rows])
            _envelope_lane(ax_env, t + 0.5 / 1440.0, rows, legend=k == 0)
            _quality_lane(ax_q, t, rows, legend=k == 0)
        # motion: one accelerometer for all sites (the first site's rows carry it)
        mrows = [m for m in minutes if lanes[0] is None or m.get("site") == lanes[0]] or minutes
        tm = mdates.date2num([m["t"] for m in mrows]) + 0.5 / 1440.0
        motion = np.array([m["motion_g"] if m["motion_g"] is not None else np.nan
                           for m in mrows], float)
        if np.isfinite(motion).any():
            ax_mot.plot(tm, motion, color=MOTION_COLOR, lw=1.4)
            ax_mot.set_ylim(0, max(0.02, float(np.nanmax(motion)) * 1.2))
        else:
            ax_mot.text(0.5, 0.5, "no accelerometer", transform=ax_mot.transAxes,
                        ha="center", va="center", color=FLOOR_COLOR)
    else:
        envs[0].text(0.5, 0.5, "no per-minute signal summary for this night",
                     transform=envs[0].transAxes, ha="center", va="center", color=FLOOR_COLOR)
        for ax in all_axes:
            ax.set_yticks([])
    for a, b in gaps:
        for ax in all_axes:
            ax.axvspan(mdates.date2num(a), mdates.date2num(b), facecolor="none",
                       edgecolor=NODATA_COLOR, hatch="///", lw=0, zorder=0)
    for a, _ in recordings:
        for ax in all_axes:
            ax.axvline(mdates.date2num(a), color="#cccccc", lw=0.8, zorder=0)
    spans = [mdates.date2num(x) for r in recordings for x in r]
    # a 20 s cramp in an 8 h night is under a pixel wide: keep every episode visible
    min_w = (max(spans) - min(spans)) / 250.0 if spans else 0.0
    eps = [(eid, mdates.date2num(a), max(mdates.date2num(b), mdates.date2num(a) + min_w),
            v, *more) for eid, a, b, v, *more in episodes]
    if lanes == [None]:
        _shade_episodes(all_axes, eps, label_ax=envs[0])
    else:
        for site, ax_env, ax_q in zip(lanes, envs, quals):
            _shade_episodes((ax_env, ax_q), [e for e in eps if len(e) > 4 and e[4] == site],
                            label_ax=ax_env)
    if spans:
        lo, hi = min(spans), max(spans)
        if hi <= lo:
            hi = lo + 1.0 / 1440.0
        ax_mot.set_xlim(lo, hi)
    if lanes == [None]:
        envs[0].set_ylabel("EMG RMS (uV)", fontsize=8)
        quals[0].set_ylabel("signal (s/min)", fontsize=8)
    else:
        for name, ax_env, ax_q in zip(names, envs, quals):
            ax_env.set_ylabel(f"{name}\nEMG RMS (uV)", fontsize=8)
            ax_q.set_ylabel("s/min", fontsize=7)
    ax_mot.set_ylabel("motion (g)", fontsize=8)
    bottom = all_axes[-1] if lanes != [None] else quals[0]
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    bottom.set_xlabel("local time", fontsize=8)
    for ax in all_axes:
        ax.tick_params(labelsize=8)
        ax.grid(True, axis="x", color="#eeeeee", lw=0.6)
    if lanes == [None]:
        fig.subplots_adjust(left=0.07, right=0.99, top=0.9, bottom=0.09, hspace=0.12)
    else:
        height_in = fig.get_figheight()
        fig.subplots_adjust(left=0.09, right=0.99, top=1.0 - 0.55 / height_in,
                            bottom=0.5 / height_in, hspace=0.14)
    return _png(fig)


def closeup_png(t_emg_s: np.ndarray, raw_uv: np.ndarray, filt_uv: np.ndarray,
                env_uv: np.ndarray, t_acc_s: np.ndarray | None, acc_g: np.ndarray | None,
                onset_s: float, offset_s: float | None, title: str,
                floor_uv: float | None = None) -> bytes:
    """One episode: raw and filtered EMG, envelope, accelerometer, onset/offset lines.

    Times in seconds from the episode's onset (``onset_s`` is normally 0);
    ``offset_s`` None: still open at the end of the recording.
    """
    fig, axes = _figure(6.4, 4, [1.0, 1.0, 1.0, 0.9])
    ax_raw, ax_f, ax_env, ax_acc = axes
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    t, y = minmax_decimate(t_emg_s, raw_uv)
    ax_raw.plot(t, y, color=RAW_COLOR, lw=0.6)
    t, y = minmax_decimate(t_emg_s, filt_uv)
    ax_f.plot(t, y, color=ENVELOPE_COLOR, lw=0.6)
    ax_env.plot(t_emg_s[:: max(1, len(t_emg_s) // 8000)],
                env_uv[:: max(1, len(env_uv) // 8000)], color=CLOSEUP_ENV_COLOR, lw=1.3)
    if floor_uv is not None and floor_uv > 0:
        ax_env.axhline(floor_uv, color=FLOOR_COLOR, lw=0.9, ls="--")
    if t_acc_s is not None and acc_g is not None and len(t_acc_s):
        for k, name in enumerate("xyz"):
            ax_acc.plot(t_acc_s, acc_g[:, k], color=ACC_COLORS[k], lw=0.9, label=name)
        ax_acc.legend(loc="upper right", fontsize=7, ncol=3, frameon=False)
    else:
        ax_acc.text(0.5, 0.5, "no accelerometer", transform=ax_acc.transAxes,
                    ha="center", va="center", color=FLOOR_COLOR)
    for ax in axes:
        ax.axvline(onset_s, color=ONSET_COLOR, lw=1.8)
        if offset_s is not None:
            ax.axvline(offset_s, color=OFFSET_COLOR, lw=1.8, ls="--")
        ax.tick_params(labelsize=8)
    for ax, lab in ((ax_raw, "raw EMG (uV)"), (ax_f, "filtered (uV)"),
                    (ax_env, "envelope (uV)"), (ax_acc, "acc (g)")):
        ax.set_ylabel(lab, fontsize=8)
    finite = np.isfinite(raw_uv)
    if finite.any():   # a pop or a lead-off must not flatten the picture: robust limits
        for ax, sig in ((ax_raw, raw_uv), (ax_f, filt_uv)):
            v = sig[np.isfinite(sig)]
            lo, hi = np.percentile(v, [0.1, 99.9])
            m = max(abs(lo), abs(hi)) * 1.15 or 1.0
            if ax is ax_f:
                ax.set_ylim(-m, m)
            else:
                c = 0.5 * (lo + hi)
                h = 0.5 * (hi - lo) * 1.15 or 1.0
                ax.set_ylim(c - h, c + h)
    if len(t_emg_s):
        ax_acc.set_xlim(t_emg_s[0], t_emg_s[-1])
    ax_acc.set_xlabel("seconds from onset", fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.92, bottom=0.08, hspace=0.12)
    return _png(fig)


def trends_png(days: list, per_day: dict, title: str, sites: list | None = None,
               site_labels: list | None = None) -> bytes:
    """Cramps per night, total cramp minutes, time of night, over ``days``.

    Parameters
    ----------
    days : list of datetime.date
        The calendar nights shown (by the date of their evening), oldest first.
    per_day : dict
        date -> {"recorded_s": float, "n": int, "n_false": int, "cramp_s": float,
        "onsets": [(hours after noon of the evening, duration_s), ...],
        "uncertain_onsets": [...], "sites": {site: {"n", "cramp_s", "onsets"}}}; a
        date missing from it had no recording.
    sites : list of str, optional
        More than one: cramps and minutes stacked per site and onsets coloured
        by site (:func:`site_color`), named by ``site_labels`` in the legend.
    """
    import matplotlib.dates as mdates

    fig, (ax_n, ax_min, ax_tod) = _figure(6.0, 3, [1.0, 1.0, 1.3])
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    x = mdates.date2num([datetime(d.year, d.month, d.day) for d in days])
    n = np.array([per_day.get(d, {}).get("n", 0) for d in days], float)
    nf = np.array([per_day.get(d, {}).get("n_false", 0) for d in days], float)
    mins = np.array([per_day.get(d, {}).get("cramp_s", 0.0) / 60.0 for d in days], float)
    multi = bool(sites) and len(sites) > 1
    if multi:
        names = list(site_labels or sites)
        below = np.zeros(len(days))
        below_min = np.zeros(len(days))
        for k, site in enumerate(sites):
            ns = np.array([per_day.get(d, {}).get("sites", {}).get(site, {}).get("n", 0)
                           for d in days], float)
            ms = np.array([per_day.get(d, {}).get("sites", {}).get(site, {}).get("cramp_s", 0.0)
                           / 60.0 for d in days], float)
            ax_n.bar(x, ns, width=0.8, bottom=below, color=site_color(k),
                     label=f"cramps, {names[k]}")
            ax_min.bar(x, ms, width=0.8, bottom=below_min, color=site_color(k))
            below += ns
            below_min += ms
    else:
        ax_n.bar(x, n, width=0.8, color=EPISODE_COLOR, label="cramps")
    ax_n.bar(x, nf, width=0.8, bottom=n, color=FALSE_COLOR, label="marked false")
    ax_n.set_ylim(0, max(3.0, float((n + nf).max()) + 1.0) if len(n) else 3.0)
    ax_n.yaxis.get_major_locator().set_params(integer=True)
    ax_n.legend(loc="upper left", fontsize=7, ncol=4 if multi else 2, frameon=False)
    if not multi:
        ax_min.bar(x, mins, width=0.8, color="#fb6a4a")
    ax_min.set_ylim(0, max(1.0, float(mins.max()) * 1.2) if len(mins) else 1.0)
    for d, xi in zip(days, x):
        info = per_day.get(d)
        if info is None or info.get("recorded_s", 0.0) <= 0:
            for ax in (ax_n, ax_min, ax_tod):
                ax.axvspan(xi - 0.5, xi + 0.5, color="#f0f0f0", lw=0, zorder=0)
            continue
        if multi:
            for k, site in enumerate(sites):
                for hours, dur_s in info.get("sites", {}).get(site, {}).get("onsets", []):
                    size = 12 + min(dur_s or 0.0, 600.0) / 4.0
                    ax_tod.scatter([xi], [hours], s=size, color=site_color(k), alpha=0.75,
                                   lw=0)
        else:
            for hours, dur_s in info.get("onsets", []):
                size = 12 + min(dur_s or 0.0, 600.0) / 4.0
                ax_tod.scatter([xi], [hours], s=size, color=EPISODE_COLOR, alpha=0.75, lw=0)
        for hours, _ in info.get("uncertain_onsets", []):
            ax_tod.scatter([xi], [hours], s=24, facecolors="none", edgecolors=UNCERTAIN_COLOR,
                           lw=1.2)
        for hours, _ in info.get("false_onsets", []):
            ax_tod.scatter([xi], [hours], s=12, color=FALSE_COLOR, alpha=0.75, lw=0)
    hours = [h for info in per_day.values() for h, _ in
             info.get("onsets", []) + info.get("false_onsets", [])
             + info.get("uncertain_onsets", [])]
    lo = min([6.0] + [math.floor(h) for h in hours])
    hi = max([24.0] + [math.ceil(h) for h in hours])
    ax_tod.set_ylim(hi + 0.5, lo - 0.5)      # evening at the top, morning at the bottom
    ticks = [h for h in range(int(lo), int(hi) + 1) if h % 3 == 0]
    ax_tod.set_yticks(ticks)
    ax_tod.set_yticklabels([f"{(12 + h) % 24:02d}:00" for h in ticks])
    ax_n.set_ylabel("cramps", fontsize=8)
    ax_min.set_ylabel("cramp minutes", fontsize=8)
    ax_tod.set_ylabel("time of onset", fontsize=8)
    if len(x):
        ax_tod.set_xlim(x[0] - 0.6, x[-1] + 0.6)
    ax_tod.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    ax_tod.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=10))
    ax_tod.set_xlabel("night (date of the evening; grey: nothing recorded)", fontsize=8)
    for ax in (ax_n, ax_min, ax_tod):
        ax.tick_params(labelsize=8)
        ax.grid(True, axis="y", color="#eeeeee", lw=0.6)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.92, bottom=0.09, hspace=0.15)
    return _png(fig)
