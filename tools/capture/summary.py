"""The night's summary: what ``crampwatch capture`` prints when it stops."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from crampwatch._text import sanitize_text
from crampwatch.sites import site_label

__all__ = ["NightSummary", "local_text"]


def local_text(dt: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in the host's local time (what people read)."""
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class NightSummary:
    """What the daemon did (returned by :meth:`CaptureDaemon.run`)."""

    stop_reason: str = ""
    night: str | None = None
    recordings: list = field(default_factory=list)   # SQLite recording rows of the night
    episodes: list = field(default_factory=list)     # SQLite episode rows of the night
    gaps: list = field(default_factory=list)         # SQLite gap rows of the night
    session_signal_s: float = 0.0
    recording_ok: bool = True
    recording_error: str | None = None
    samples_dropped: int = 0
    samples_unwritten: int = 0
    unstored_s: float = 0.0                         # EMG time seen but not in the file
    file_missing: bool = False                      # the recording file was never created
    failure: str | None = None                      # why the capture stopped on its own
    exit_status: int = 0                            # of ``crampwatch capture``

    def text(self) -> str:
        """The night's summary as people read it (local times)."""
        if self.night is None:
            return f"crampwatch capture: stopped ({self.stop_reason}) before any sample arrived"
        out = [(f"crampwatch capture: night of {self.night}, stopped ({self.stop_reason}); "
                f"{self.session_signal_s / 3600:.2f} h of signal this session")]
        for r in self.recordings:
            fs = r.get("emg_fs_hz") or 1.0
            started = datetime.fromisoformat(r["started_utc"])
            ended = datetime.fromisoformat(r["ended_utc"]) if r.get("ended_utc") else started
            out.append(f"  {r['path']}: {local_text(started)} to {local_text(ended)[11:]}, "
                       f"{(r['samples'] or 0) / fs / 3600:.2f} h, {r['samples'] or 0} EMG samples, "
                       f"{r['gap_samples'] or 0} missing ({(r['gap_samples'] or 0) / fs:.1f} s)")
        if self.gaps:
            lost = sum(g["duration_s"] or 0.0 for g in self.gaps if g["stream"] == "emg")
            out.append(f"  {sum(1 for g in self.gaps if g['stream'] == 'emg')} EMG gap(s), "
                       f"{lost:.1f} s without signal")
        if self.failure:
            out.append(f"  FAILED: {sanitize_text(self.failure, 300)}")
        lost = self.samples_dropped + self.samples_unwritten
        if not self.recording_ok or lost or self.file_missing:
            out.append(f"  recording trouble: "
                       f"{sanitize_text(self.recording_error or 'disk too slow', 300)}; "
                       f"{lost} samples could not be stored ({self.unstored_s:.1f} s of EMG; "
                       f"{self.samples_dropped} dropped while the disk failed, stored as gaps, "
                       f"{self.samples_unwritten} still unwritten at the end)")
            if self.file_missing:
                out.append("  NO RECORDING FILE was written this session: only the episode "
                           "log holds the night")
        n = len(self.episodes)
        sites = sorted({e.get("site") or "" for e in self.episodes})
        named = len(sites) > 1
        out.append(f"  {n} episode{'s' if n != 1 else ''}" + (":" if n else ""))
        if named:         # several legs: how many on each, then a site column
            for site in sites:
                k = sum(1 for e in self.episodes if (e.get("site") or "") == site)
                secs = sum(e.get("duration_s") or 0.0 for e in self.episodes
                           if (e.get("site") or "") == site)
                out.append(f"    {sanitize_text(site_label(site), 40) or '?'}: {k} episode{'s' if k != 1 else ''}, "
                           f"{secs:.0f} s")
        width = max((len(sanitize_text(site_label(x), 40)) for x in sites), default=4) \
            if named else 0
        if n:
            out.append(f"    {'#':>4}  {'onset (local)':<19}  {'offset':<8}  {'dur s':>6}  "
                       f"{'peak uV':>7}  {'conf':>4}  "
                       + (f"{'site':<{width}}  " if named else "") + "status")
            for e in self.episodes:
                onset = datetime.fromisoformat(e["onset_utc"])
                off = local_text(datetime.fromisoformat(e["offset_utc"]))[11:] \
                    if e.get("offset_utc") else "-"
                dur = f"{e['duration_s']:.1f}" if e.get("duration_s") is not None else "-"
                where = (f"{sanitize_text(site_label(e.get('site') or ''), 40):<{width}}  "
                         if named else "")
                out.append(f"    {e['episode_id']:>4}  {local_text(onset):<19}  {off:<8}  {dur:>6}  "
                           f"{e['peak_rms_uv'] or 0:>7.1f}  {e['confidence'] or 0:>4.2f}  "
                           f"{where}{e['status']}")
        return "\n".join(out)
