"""The live status line: one carriage-return updated line on a terminal, and
what it says (:func:`status_text`, also the journal's progress line and
systemd's ``STATUS=``)."""

from __future__ import annotations

import logging
import os
import shutil

from crampwatch._text import sanitize_text
from crampwatch.sites import site_label

__all__ = ["StatusLine", "status_text"]


def status_text(daemon) -> str:
    """The one-line status of a :class:`~crampwatch.tools.capture.daemon.CaptureDaemon`:
    link, signal, then per watched site its quality, envelope and episodes, then the
    recording.  One site reads as before issue 12 (no site names)."""
    if not daemon.ever_connected:
        state = "waiting for the board"
    else:
        state = "connected" if daemon.connected else "DISCONNECTED, retrying"
    rec = daemon.rec
    if rec is None:
        return f"{state}; no signal yet"
    fs = rec.emg_info.fs_hz
    parts = [state, (f"{_hms(daemon.session_samples / fs)} of signal "
                     f"(samples={rec.emg_end}, gaps={rec.gaps}/{rec.gap_samples})")]
    sites = rec.watched.sites
    counts = daemon.episode_counts()
    for site in sites:
        named = len(sites) > 1
        part = []
        if rec.warmup is not None:
            part.append("detector catching up")
        else:
            good, env = rec.taps[site].quality()
            if good is not None:
                part.append(f"signal {100 * good:.0f} % good")
                part.append(f"EMG {env:.1f} uV (floor "
                            f"{rec.pipe.pipelines[site].floor_uv:.1f})")
        n_open = sum(1 for (s, _) in rec.rows if s == site)
        n = counts.get(site, 0)
        part.append(f"{n} episode(s)" + (f", {n_open} in progress" if n_open else ""))
        parts.append(f"{site_label(site)}: " + ", ".join(part) if named else "; ".join(part))
    st = rec.writer.stats
    size = _size(rec.path)
    parts.append(f"rec {size / 1e6:.1f} MB " + ("ok" if st.recording_ok
                                                else f"PAUSED: {st.last_error}"))
    return "; ".join(parts)


def _hms(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class StatusLine:
    """A carriage-return updated line on a terminal; log records clear it first."""

    def __init__(self, stream):
        self.stream = stream
        self.shown = False
        self._filtered: list[logging.Handler] = []

    def attach_logging(self) -> None:
        for h in logging.getLogger().handlers:
            h.addFilter(self._before_log)
            self._filtered.append(h)

    def _before_log(self, record) -> bool:
        self.clear()
        return True

    def show(self, text: str) -> None:
        width = shutil.get_terminal_size((100, 24)).columns
        text = sanitize_text(text, max(20, width - 1))     # device strings in it: no escapes
        self.stream.write("\r\x1b[K" + text)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def close(self) -> None:
        self.clear()
        for h in self._filtered:
            h.removeFilter(self._before_log)
        self._filtered = []
