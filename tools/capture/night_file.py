"""The night's recording file: its name, whether to continue it, when the night ends.

One night is one recording, ``crampwatch-YYYY-MM-DD.cwrec`` (the date of the
evening).  A restart the same night continues that file when its samples can
come after the file's (:func:`choose_file`); otherwise a new file named with
the start time is begun.  A new night begins at local noon (:func:`next_noon`);
``[capture] stop_at`` ends the capture at a clock time (:func:`stop_time`).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone

from crampwatch.errors import InputFileError
from crampwatch.tools.capture.config import parse_clock

__all__ = ["STOP_AT_GRACE_H", "choose_file", "fresh_path", "next_noon", "recording_name",
           "stop_time"]

log = logging.getLogger(__name__)

#: a capture started less than this many hours after ``stop_at`` stops at once: it is
#: a restart after the night ended (08:01 with stop_at 08:00), not a new night
STOP_AT_GRACE_H = 4.0


def recording_name(night: str, start_local: datetime | None = None) -> str:
    """``crampwatch-NIGHT.cwrec``, or with the start time when the night's first
    file cannot be continued (``crampwatch-NIGHT-HHMMSS.cwrec``).

    Examples
    --------
    >>> recording_name("2026-03-05")
    'crampwatch-2026-03-05.cwrec'
    """
    if start_local is None:
        return f"crampwatch-{night}.cwrec"
    return f"crampwatch-{night}-{start_local.strftime('%H%M%S')}.cwrec"


MAX_SLACK_S = 10.0
"""Longest batch (s of signal) allowed for in deciding whether a restart continues."""


def choose_file(out_dir: str, night: str, start_new: datetime, host0: float,
                emg_fs_hz: float, slack_s: float = 0.0) -> tuple[str, bool, datetime, dict]:
    """The night's file to continue, or a new one: ``(path, resume, start_utc, ends)``.

    ``ends`` maps each stream to the file index one past its last sample
    (empty for a new file).  The newest ``crampwatch-NIGHT*.cwrec`` in
    ``out_dir`` is continued unless it cannot be read, its last sample is
    later than ``host0`` (a replayed file, a clock step) or its EMG rate is
    not ``emg_fs_hz``.  ``slack_s``: the length of the first block, whose first
    sample the clock dates back from its arrival by that much (more than the
    wall-clock time it took with a source faster than real time).
    """
    from crampwatch.firmware_bridge.recording import open_capture
    path = os.path.join(out_dir, recording_name(night))
    candidates = sorted(
        (p for p in _listdir(out_dir)
         if p.startswith(f"crampwatch-{night}") and p.endswith(".cwrec")),
        key=lambda p: _mtime(os.path.join(out_dir, p)))
    if not candidates:
        return path, False, start_new, {}
    last = os.path.join(out_dir, candidates[-1])
    try:
        with open_capture(last) as reader:
            hdr_start = reader.header.get("start_time_utc")
            start = datetime.fromisoformat(hdr_start) if hdr_start else reader.start_time
            ends = {}
            end_t = None         # host time just after the last EMG sample
            fs = reader.emg.fs_hz
            for seg in reader.segments:
                for name, ext in seg.streams.items():
                    ends[name] = max(ends.get(name, 0), ext.end_index)
                    if name == "emg" and ext.last_host_time_s is not None:
                        end_t = ext.last_host_time_s + ext.last_n / fs
            if end_t is None:
                end_t = start.timestamp() + ends.get("emg", 0) / fs
    except (InputFileError, OSError, KeyError, ValueError) as exc:
        log.warning("capture: %s cannot be continued (%s); starting a new recording",
                    last, exc)
        return fresh_path(out_dir, night, start_new), False, start_new, {}
    # the host times of both ends are dated from their batches' arrival: each may be
    # early or late by up to a batch's length of signal (many seconds for a simulator
    # faster than real time); capped, so a replayed file never continues a night's file
    slack_s = min(max(0.0, slack_s), MAX_SLACK_S)
    if end_t > host0 + 1.0 + 2.0 * slack_s or fs != emg_fs_hz:
        # the new samples would not come after the file's (a replayed file, a clock
        # step) or the rate differs: never mix them into the old file
        return fresh_path(out_dir, night, start_new), False, start_new, {}
    return last, True, start, ends


def fresh_path(out_dir: str, night: str, start_new: datetime) -> str:
    """A path for a new file of the night, named with its start time, not yet used."""
    base = recording_name(night, start_new.astimezone())
    path = os.path.join(out_dir, base)
    k = 2
    while os.path.exists(path):
        path = os.path.join(out_dir, base.replace(".cwrec", f"-{k}.cwrec"))
        k += 1
    return path


def stop_time(stop_at: str, now: datetime) -> datetime | None:
    """When a capture started at ``now`` (local, aware) ends for ``stop_at`` ("HH:MM").

    The next HH:MM after ``now``; but if the previous one was less than
    :data:`STOP_AT_GRACE_H` ago, that one (already past: stop at once).  None
    without ``stop_at``.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> t = lambda h, m: datetime(2026, 3, 5, h, m, tzinfo=timezone.utc)
    >>> stop_time("08:00", t(22, 30)).isoformat()
    '2026-03-06T08:00:00+00:00'
    >>> stop_time("08:00", t(8, 1)).isoformat()       # a restart after the night
    '2026-03-05T08:00:00+00:00'
    >>> stop_time("08:00", t(12, 30)).isoformat()
    '2026-03-06T08:00:00+00:00'
    """
    hm = parse_clock(stop_at)
    if hm is None:
        return None
    at = now.replace(hour=hm[0], minute=hm[1], second=0, microsecond=0)
    if at <= now:
        at += timedelta(days=1)
    previous = at - timedelta(days=1)
    if (now - previous).total_seconds() < STOP_AT_GRACE_H * 3600:
        return previous
    return at


def next_noon(host_s: float) -> float:
    """Host time (POSIX s) of the first local noon after ``host_s``: a new night
    begins there (the same rule as :func:`~crampwatch.tools.episode_log.night_date`)."""
    local = datetime.fromtimestamp(host_s, timezone.utc).astimezone()
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon <= local:
        noon += timedelta(days=1)
    return noon.timestamp()


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
