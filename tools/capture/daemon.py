"""The capture daemon's loop: source -> recording + live detection -> episode log.

:class:`CaptureDaemon` is what ``crampwatch capture`` runs (see
:mod:`crampwatch.tools.capture` for the command and ``docs/capture.md`` for
running it every night under systemd).  One thread does the work and never
waits on the disk:

- items come from a source (:func:`crampwatch.firmware_bridge.sources.open_source`),
  which reconnects by itself, all night, with backoff;
- every block and event goes to a :class:`~crampwatch.firmware_bridge.recording.CaptureWriter`
  (its own thread writes and fsyncs; a full or unwritable disk pauses the
  recording, not the detection);
- every block is fed to the very detector that replay uses
  (:class:`~crampwatch.detector.multi.MultiPipeline`: one pipeline per watched
  channel, ``[capture] channels``, see :mod:`.channels`), with the values as
  the recording stores them (float32), so replaying the recording with the
  same channels gives the same episodes, per site;
- episodes go to the SQLite :class:`~crampwatch.tools.episode_log.EpisodeLog`
  (through its methods: no SQL here) with their site and channel when their
  onset is confirmed (``open``) and again at their end; per-minute signal
  summaries (per site) and the recording's row are updated as the night goes on.

The other jobs live next door: the night's file (:mod:`.night_file`), the
warm-up of a continued recording (:mod:`.warmup`), the onset hook
(:mod:`.hook`), systemd (:mod:`.systemd`), the status line (:mod:`.status`),
the per-minute summaries (:mod:`.trace_tap`) and the summary (:mod:`.summary`).

One night is one recording, ``crampwatch-YYYY-MM-DD.cwrec`` (the date of the
evening).  A restart the same night appends a new segment to it and continues
its sample indices by host time; the detector is first brought up to date by
replaying what the file holds (in a background thread, while recording goes
on), so that its state, and so the episodes, are exactly those of a replay of
the whole file.

Examples
--------
A 6 min simulated night as fast as possible (writes under ``$CRAMPWATCH_HOME``)::

    from crampwatch.tools.capture.daemon import CaptureDaemon
    from crampwatch.tools.capture.config import load_config
    cfg = load_config(None, ["source=sim://?seed=2&hours=0.1&speed=max"])
    summary = CaptureDaemon(cfg.capture, cfg.detector).run()
    print(summary.text())
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from crampwatch._files import ensure_private_dir, private_fd
from crampwatch._text import sanitize_text
from crampwatch.detector import DetectorConfig, EpisodeEnded, EpisodeStarted
from crampwatch.detector.multi import MultiPipeline
from crampwatch.errors import ConfigError, CrampwatchError, InputFileError
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo
from crampwatch.models import load_model
from crampwatch.sites import site_label
from crampwatch.tools.capture.channels import Watched, watched_channels
from crampwatch.tools.capture.config import CaptureConfig
from crampwatch.tools.capture.hook import HookRunner
from crampwatch.tools.capture.night_file import (STOP_AT_GRACE_H, choose_file, fresh_path,
                                                 next_noon, stop_time)
from crampwatch.tools.capture.status import StatusLine, status_text
from crampwatch.tools.capture.summary import NightSummary, local_text
from crampwatch.tools.capture.systemd import sd_notify, watchdog_interval_s
from crampwatch.tools.capture.trace_tap import TraceTap
from crampwatch.tools.capture.warmup import Warmup
from crampwatch.tools.episode_log import EpisodeLog, minute_rows, night_date

__all__ = ["CaptureDaemon"]

log = logging.getLogger(__name__)

_PENDING_MAX = 20_000          # items kept while no recording is open yet
#: the detector is fed in chunks of at least this much EMG (s): it decides once per
#: step_s (1 s) anyway, and a call per tiny block costs more than the samples in it
DETECT_BATCH_S = 0.25
#: the main loop turns at most this often while data flow (s)
LOOP_S = 0.25
"""One turn of the daemon's loop (s): the sources read in batches this long while bytes
flow, and detection, the writer and the status run once per turn.  0.1 s cost 1.6 % of a
core with two channels at 1 kHz, 0.25 s 0.94 % (benchmarks/bench_capture.py); it adds at
most 0.25 s to when an onset is reported."""
#: sources that read a byte stream and take ``batch_s``
BATCHED_SCHEMES = ("serial", "socket", "ble")
#: once running, an episode-log write waits at most this long for another process's
#: lock; what could not be written is kept and written later (the loop never stalls)
DB_BUSY_S = 2.0
#: corrupt frames reported one by one in the journal, then only counted
CORRUPT_LOGGED = 10


# --------------------------------------------------------------------------- state
@dataclass
class _Recording:
    """The recording being written (one per night; a new one after a rollover)."""

    path: str
    night: str
    night_id: int
    rec_id: int
    start_utc: datetime
    emg_info: StreamInfo
    acc_info: StreamInfo | None
    watched: Watched                              # the EMG channels the detector watches
    acc_cols: list | None
    writer: object
    resumed: bool
    ends: dict                                    # stream -> end index before this session
    offsets: dict = field(default_factory=dict)   # stream -> file index - source index
    held: dict = field(default_factory=dict)      # stream -> events waiting for its offset
    pipe: MultiPipeline | None = None             # one pipeline per watched channel
    taps: dict = field(default_factory=dict)      # site -> TraceTap
    warmup: Warmup | None = None
    backlog: list = field(default_factory=list)   # blocks for the pipeline during warm-up
    rows: dict = field(default_factory=dict)      # (site, detector episode id) -> SQLite row
    emg_end: int = 0                              # file index one past the last EMG sample
    session_first: int | None = None              # file index of this session's first EMG sample
    emg_limit: int | None = None                  # --duration: stop at this file index
    src_emg0: int = 0                             # source index of the file's EMG index 0
    rollover_at: float = math.inf                 # host time of the next local noon
    gap_samples: int = 0
    gaps: int = 0
    episodes: int = 0
    dropping: dict = field(default_factory=dict)  # stream -> [first, n] the writer is dropping
    watch_drops: bool = False                     # check each block for a drop (disk trouble)
    dropped_seen: int = 0
    batch: dict = field(default_factory=lambda: {"emg": [], "acc": []})   # for the detector
    batch_n: int = 0                              # EMG samples in the batch
    batch_t: float | None = None                  # when the batch's first block arrived
    unstored_s: float = 0.0                       # at close: EMG time not in the file
    file_missing: bool = False                    # at close: the file was never created
    unstored_base: int = 0                        # EMG samples earlier sessions could not store
    unsaved_minutes: list = field(default_factory=list)   # rows the log could not take yet
    unsaved_gaps: list = field(default_factory=list)      # add_gap arguments, likewise
    unsaved_episodes: list = field(default_factory=list)  # (row or None, site, ep, status)

    @property
    def channels(self) -> str:
        """The watched channels' labels, comma-separated (the recording row's channel)."""
        return ",".join(self.watched.labels)



# --------------------------------------------------------------------------- the daemon
class CaptureDaemon:
    """Source -> crash-safe recording + live detection -> SQLite episode log.

    Parameters
    ----------
    capture : CaptureConfig
        Where from, where to, hooks, status (see ``crampwatch config show``).
    detector : DetectorConfig
        The detection parameters (the same as replay's).
    duration_s : float or None
        Stop after this many seconds of signal (EMG sample time) in this session.
    status_stream : file or None
        Where the live status line goes (default ``sys.stderr``).
    source_options : dict
        Passed to :func:`~crampwatch.firmware_bridge.sources.open_source`.

    Notes
    -----
    :meth:`run` returns when the source ends (``file://``, ``sim://`` with
    ``hours``), after ``duration_s``, at ``stop_at`` or after
    :meth:`request_stop` (the CLI calls it on SIGTERM/SIGINT).  An episode
    still going then is closed as ``truncated`` (at the end of a finite
    source: ``closed``, as replay does).
    """

    def __init__(self, capture: CaptureConfig, detector: DetectorConfig | None = None, *,
                 duration_s: float | None = None, status_stream=None,
                 source_options: dict | None = None):
        from crampwatch.tools import paths
        self.cfg = capture
        self.det = detector or DetectorConfig()
        self.out_dir = os.path.abspath(capture.out_dir or paths.recordings_dir())
        self.db_path = os.path.abspath(capture.db_path or paths.db_path())
        self.url = _with_stall(capture.source, capture.stall_s)
        self.duration_s = duration_s
        if duration_s is not None and not duration_s > 0:
            raise ConfigError(f"--duration must be > 0 s, got {duration_s}")
        self.source_options = dict(source_options or {})
        self.status_stream = status_stream if status_stream is not None else sys.stderr
        self.hooks = HookRunner(capture.hook, capture.hook_timeout_s) if capture.hook else None
        self.lsl = None
        if capture.lsl:
            from crampwatch.tools.lsl_outlet import require_pylsl
            require_pylsl()
        self._stop_reason: str | None = None
        self._urgent = False
        self.rec: _Recording | None = None
        self.src = None
        self.db: EpisodeLog | None = None
        self.connected = False
        self.ever_connected = False
        self.board = ""
        self.night: str | None = None
        self.session_samples = 0
        self._pending: list = []
        self._warned: set = set()
        self._db_failed = False
        self._db_retry_at = 0.0
        self._db_last_failed = False
        self._corrupt_frames = 0
        self._failure: str | None = None
        self._closed_recordings: list = []
        self._t_status = self._t_log = self._t_db = self._t_watchdog = self._t_notify = 0.0
        self._watchdog_s = watchdog_interval_s()
        self._status = None
        if capture.status_line == "on" or (capture.status_line == "auto"
                                           and _isatty(self.status_stream)):
            self._status = StatusLine(self.status_stream)
        self._writer_stats = None
        self._flush_t = time.monotonic()

    # ------------------------------------------------------------------ control
    def request_stop(self, reason: str = "stop requested", urgent: bool = False) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler or another thread).

        ``urgent`` (SIGTERM, SIGINT): do not wait for the detector to catch up
        with a resumed recording; what it did not examine stays recorded.
        """
        if urgent:
            self._urgent = True
        if self._stop_reason is None:
            self._stop_reason = reason

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    # ------------------------------------------------------------------ main loop
    def run(self) -> NightSummary:
        """Capture until the source ends or a stop is requested; returns the summary.

        Raises
        ------
        CrampwatchError
            A source that cannot be opened (bad URL, unknown board, unreadable
            file), a bad config, another capture using the same episode log.
            What was recorded before is kept.
        """
        from crampwatch.firmware_bridge.sources import open_source
        lock_fd = self._lock()
        end_reason = None
        try:
            try:
                self.db = EpisodeLog(self.db_path)
                self.db.set_busy_timeout(DB_BUSY_S)
            except (OSError, sqlite3.Error) as exc:
                raise CrampwatchError(f"cannot open the episode log {self.db_path}: "
                                      f"{exc}") from exc
            self._repair_after_crash()
            n = self._db_call(self.db.close_open)
            if n:
                log.warning("%d episode(s) left open by an interrupted capture closed as "
                            "truncated", n)
            opts = dict(self.source_options)
            if self.url.split(":", 1)[0] in BATCHED_SCHEMES:
                opts.setdefault("batch_s", LOOP_S)     # the URL's batch_s= still wins
            self.src = open_source(self.url, **opts)
            log.info("capture: reading %s; recordings in %s; episode log %s", self.url,
                     self.out_dir, self.db_path)
            sd_notify("READY=1\nSTATUS=waiting for the board")
            if self._status is not None:
                self._status.attach_logging()
            stop_mono = self._stop_at_monotonic()
            while not self.stopping:
                t_loop = time.monotonic()
                items = self.src.read(timeout_s=LOOP_S)
                for item in items:
                    self._handle(item)
                    if self.stopping:
                        break
                if not items and self.src.finished:
                    end_reason = "end of source"
                    break
                self._tick()
                if stop_mono is not None and time.monotonic() >= stop_mono:
                    self.request_stop(f"stop_at {self.cfg.stop_at}")
                # let items gather between turns: a board sends a frame every few ms,
                # and one turn per frame would cost more than the samples in it
                rest = LOOP_S - (time.monotonic() - t_loop)
                if items and rest > 0 and not self.stopping:
                    time.sleep(rest)
        finally:
            reason = end_reason or self._stop_reason or "error"
            summary = self._shutdown(reason, truncated=end_reason is None)
            _unlock(lock_fd)
        return summary

    def _repair_after_crash(self) -> None:
        """Before open episodes are closed as truncated: bring their recordings' rows
        up to what the files really hold (the rows lag by up to ``db_update_s``),
        so the truncated episodes end at the last recorded sample."""
        from crampwatch.firmware_bridge.recording import open_capture
        try:
            rows = self.db.recordings_with_open_episodes()
        except sqlite3.Error as exc:
            self._db_error(exc)
            return
        for row in rows:
            rec_id, path, ended = row["recording_id"], row["path"], row["ended_utc"]
            try:
                with open_capture(path) as reader:
                    if reader.segments[-1].closed:
                        continue
                    hdr = reader.header.get("start_time_utc")
                    start = datetime.fromisoformat(hdr) if hdr else None
                    end_index = max((ext.end_index for seg in reader.segments
                                     for name, ext in seg.streams.items() if name == "emg"),
                                    default=0)
                    fs = reader.emg.fs_hz
            except (InputFileError, OSError) as exc:
                log.warning("capture: %s: cannot check the end of the interrupted recording "
                            "(%s)", path, exc)
                continue
            if start is None:
                continue
            end_utc = start + timedelta(seconds=end_index / fs)
            if ended is None or end_utc > datetime.fromisoformat(ended):
                self._db_call(self.db.update_recording, rec_id, ended_utc=end_utc,
                              samples=end_index)

    def _stop_at_monotonic(self) -> float | None:
        at = stop_time(self.cfg.stop_at, datetime.now().astimezone())
        if at is None:
            return None
        now = datetime.now().astimezone()
        if at <= now:
            log.warning("capture: started within %g h after stop_at %s: the night is over, "
                        "stopping at once", STOP_AT_GRACE_H, self.cfg.stop_at)
        else:
            log.info("capture: will stop by itself at %s", at.strftime("%Y-%m-%d %H:%M"))
        return time.monotonic() + (at - now).total_seconds()

    def _lock(self) -> int:
        path = self.db_path + ".lock"
        from crampwatch.tools import paths
        # crampwatch's own data directory (the platform's, not one the user named with
        # CRAMPWATCH_HOME, --out or --db) is tightened to 0700; new directories are 0700
        own = None if os.environ.get("CRAMPWATCH_HOME") else os.path.abspath(paths.data_dir())
        for d in {os.path.dirname(path), self.out_dir}:
            try:
                ensure_private_dir(d, tighten=own is not None
                                   and os.path.commonpath([own, os.path.abspath(d)]) == own)
            except OSError:
                pass      # the episode log or the recording writer says what is wrong
        fd = private_fd(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise CrampwatchError(f"another crampwatch capture (pid {other or '?'}) is already "
                                  f"using the episode log {self.db_path} (lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    # ------------------------------------------------------------------ items
    def _handle(self, item) -> None:
        if isinstance(item, SampleBlock):
            self._on_block(item)
            return
        ev = item
        if ev.kind == "connected":
            self.connected = True
            self.ever_connected = True
            self.board = sanitize_text(ev.detail.get("board") or ev.detail.get("transport")
                                       or "", 40)
            log.info("capture: %s %s (%s)", "reconnected to" if ev.detail.get("reconnect")
                     else "connected to", sanitize_text(self.src.url, 300),
                     ", ".join(f"{sanitize_text(k, 40)}={sanitize_text(v, 120)}"
                               for k, v in ev.detail.items() if k != "reconnect"))
        elif ev.kind == "disconnected":
            self.connected = False
            log.warning("capture: board disconnected (%s); retrying with backoff",
                        sanitize_text(ev.detail.get("reason", "?"), 300))
        elif ev.kind == "status" and "retry_in_s" in ev.detail:
            log.info("capture: %s (attempt %s, next in %s s)",
                     sanitize_text(ev.detail.get("reason") or ev.detail.get("state"), 300),
                     sanitize_text(ev.detail.get("attempt"), 20),
                     sanitize_text(ev.detail.get("retry_in_s"), 20))
        elif ev.kind == "corrupt_frame":
            self._corrupt_frames += int(ev.detail.get("frames") or 1)
            if self._corrupt_frames <= CORRUPT_LOGGED:
                log.warning("capture: %s frame with an implausible counter dropped (counter "
                            "%s, expected %s; %s)%s", ev.stream,
                            sanitize_text(ev.detail.get("counter"), 20),
                            sanitize_text(ev.detail.get("expected"), 20),
                            sanitize_text(ev.detail.get("reason"), 120),
                            "; further ones are only counted"
                            if self._corrupt_frames == CORRUPT_LOGGED else "")
        self._record_event(ev)

    def _record_event(self, ev: SourceEvent) -> None:
        rec = self.rec
        if rec is None:
            self._hold(ev)
            return
        if ev.stream is not None and ev.first_index is not None:
            off = rec.offsets.get(ev.stream)
            if off is None:
                rec.held.setdefault(ev.stream, []).append(ev)
                return
            ev = SourceEvent(ev.kind, ev.host_time_s, ev.stream, ev.first_index + off,
                             ev.n_samples, dict(ev.detail))
        try:
            rec.writer.write_event(ev)
        except ValueError as exc:
            self._warn_once("event", f"capture: event not recorded: {exc}")
        if ev.kind == "gap" and ev.stream in ("emg", "acc") and ev.n_samples:
            self._store_gap(rec, ev.stream, ev.first_index, ev.n_samples,
                            ev.detail.get("cause") or ("device_reset" if ev.detail.get(
                                "device_reset") else "link"))

    def _store_gap(self, rec: _Recording, stream: str, first: int, n: int, cause: str) -> None:
        fs = rec.emg_info.fs_hz if stream == "emg" else rec.acc_info.fs_hz
        t0 = rec.start_utc + timedelta(seconds=first / fs)
        if stream == "emg":
            rec.gaps += 1
            rec.gap_samples += n
            log.log(logging.WARNING if n >= fs or cause == "restart" else logging.INFO,
                    "capture: %d EMG samples (%.2f s) missing from %s (%s)", n, n / fs,
                    local_text(t0), cause)
        args = (stream, first, n, t0, n / fs, cause)
        if rec.unsaved_gaps or rec.rec_id is None or not self._db_ok(self.db.add_gap,
                                                                      rec.rec_id, *args):
            rec.unsaved_gaps.append(args)

    def _dropped(self, rec: _Recording, stream: str, first: int | None, n: int) -> None:
        """Track ranges the writer had to drop (its memory full while the disk fails):
        stored in the episode log as gaps with cause ``recording`` once they end (the
        detector did see those samples; the recording file stores the same gaps)."""
        run = rec.dropping.get(stream)
        if first is not None and run is not None and run[0] + run[1] == first:
            run[1] += n
            return
        if run is not None:
            del rec.dropping[stream]
            self._store_gap(rec, stream, run[0], run[1], "recording")
        if first is not None:
            rec.dropping[stream] = [first, n]

    def _hold(self, item) -> None:
        self._pending.append(item)
        if len(self._pending) > _PENDING_MAX:
            del self._pending[:len(self._pending) - _PENDING_MAX]
            self._warn_once("pending", "capture: accelerometer data without EMG: the oldest "
                            "items are dropped until EMG arrives")

    def _on_block(self, b: SampleBlock) -> None:
        if b.n_samples == 0:
            return
        if self.rec is None:
            if b.stream != "emg":
                self._hold(b)
                return
            self._open_recording(b)
            pending, self._pending = self._pending, []
            for item in pending:
                (self._on_block if isinstance(item, SampleBlock) else self._record_event)(item)
        rec = self.rec
        info = rec.emg_info if b.stream == "emg" else rec.acc_info
        if info is None:
            self._warn_once(f"nostream-{b.stream}", f"capture: {b.stream} samples arrived but "
                            "the board did not announce that stream: not recorded")
            return
        if b.fs_hz != info.fs_hz or b.data.shape[1] != len(info.channels):
            log.warning("capture: the %s stream changed (%g Hz, %d channels; was %g Hz, %d): "
                        "starting a new recording", b.stream, b.fs_hz, b.data.shape[1],
                        info.fs_hz, len(info.channels))
            self._close_recording(truncated=True)
            self._on_block(b)
            return
        off = rec.offsets.get(b.stream)
        if off is None:
            off = self._start_stream(rec, b)
        first = b.first_index + off
        data = b.data
        host = b.host_time_s
        if first < 0:           # samples from before this recording's first (a new night's)
            data = data[-first:]
            host = None if host is None else host - first / b.fs_hz
            first = 0
            if data.shape[0] == 0:
                return
        if b.stream == "emg":
            if rec.session_first is None:
                rec.session_first = first
                if self.duration_s is not None:
                    rec.emg_limit = first + int(round(self.duration_s * info.fs_hz)) \
                        - self.session_samples
            if host is not None and host + (data.shape[0] - 1) / b.fs_hz >= rec.rollover_at:
                # a new night begins at noon: split the block there
                k = max(0, math.ceil((rec.rollover_at - host) * b.fs_hz - 1e-6))
                if k > 0:
                    self._on_block(SampleBlock("emg", b.fs_hz, b.first_index, b.data[:k],
                                               b.host_time_s))
                    self._on_block(SampleBlock("emg", b.fs_hz, b.first_index + k, b.data[k:],
                                               b.host_time_s + k / b.fs_hz))
                    return
                log.info("capture: noon: the night of %s is over; a new night's recording "
                         "begins", rec.night)
                self._close_recording(truncated=True)
                self._on_block(b)
                return
            limit = rec.emg_limit
        else:
            limit = None if rec.emg_limit is None else int(round(
                rec.emg_limit * info.fs_hz / rec.emg_info.fs_hz))
        if limit is not None and first + data.shape[0] > limit:
            data = data[:max(0, limit - first)]
        if data.shape[0]:
            block = SampleBlock(b.stream, b.fs_hz, first, data, host)
            try:
                if rec.watch_drops:          # the disk is failing or slow: which blocks drop?
                    dropped = rec.writer.stats.blocks_dropped
                    rec.writer.write_block(block)
                    if rec.writer.stats.blocks_dropped != dropped:
                        self._dropped(rec, b.stream, first, data.shape[0])
                    elif b.stream in rec.dropping:
                        self._dropped(rec, b.stream, None, 0)
                else:
                    rec.writer.write_block(block)
            except ValueError as exc:
                self._warn_once(f"write-{b.stream}", f"capture: {b.stream} block not recorded: "
                                f"{exc}")
            self._detect(rec, block)
            if b.stream == "emg":
                rec.emg_end = first + data.shape[0]
                self.session_samples += data.shape[0]
                if self.lsl is not None:
                    self.lsl.push(block.data[:, rec.watched.columns[0]], first, host)
        if b.stream == "emg" and limit is not None and rec.emg_end >= limit:
            self.request_stop(f"--duration {self.duration_s:g} s of signal")

    def _detect(self, rec: _Recording, block: SampleBlock) -> None:
        # the values exactly as the recording stores them (float32), so replay agrees
        if block.stream == "emg":
            data = block.data[:, rec.watched.columns].astype(np.float32)
        elif rec.acc_cols is not None:
            data = block.data[:, rec.acc_cols].astype(np.float32)
        else:
            return
        fb = SampleBlock(block.stream, block.fs_hz, block.first_index, data, block.host_time_s)
        if rec.warmup is not None:
            rec.backlog.append(fb)
            return
        self._batch(rec, fb)

    def _batch(self, rec: _Recording, fb: SampleBlock) -> None:
        """Collect blocks for the detector: fed in chunks of ``DETECT_BATCH_S`` (it
        decides once per ``step_s`` anyway), which costs far less than block by block
        and gives the same result (the pipeline is chunk-invariant)."""
        q = rec.batch[fb.stream]
        if q and q[-1].end_index != fb.first_index:
            self._flush_detect(rec)                  # each stream's batch stays contiguous
        q.append(fb)
        if rec.batch_t is None:
            rec.batch_t = time.monotonic()
        if fb.stream == "emg":
            rec.batch_n += fb.n_samples
            if rec.batch_n >= DETECT_BATCH_S * fb.fs_hz:
                self._flush_detect(rec)

    def _flush_detect(self, rec: _Recording) -> None:
        if rec.warmup is not None or rec.batch_t is None:
            return
        self._flush_t = time.monotonic()
        # the accelerometer first: the detector decides EMG frames once their
        # accelerometer samples are in (or have been missing for acc_wait_s)
        for stream in ("acc", "emg"):
            q = rec.batch[stream]
            if not q:
                continue
            data = q[0].data if len(q) == 1 else np.concatenate([x.data for x in q])
            fb = SampleBlock(stream, q[0].fs_hz, q[0].first_index, data)
            q.clear()
            self._episode_events(rec, rec.pipe.feed(fb), live=True)
        rec.batch_n = 0
        rec.batch_t = None

    # ------------------------------------------------------------------ recordings
    def _open_recording(self, b: SampleBlock) -> None:
        """Open (or resume) the night's recording at the first EMG block."""
        from crampwatch.firmware_bridge.recording import CaptureWriter, RecordingHeader
        info = self.src.info
        emg_info = info.get("emg") or StreamInfo("emg", b.fs_hz, ("emg",), "uV")
        if emg_info.fs_hz != b.fs_hz or len(emg_info.channels) != b.data.shape[1]:
            emg_info = StreamInfo("emg", b.fs_hz, tuple(f"emg{k + 1}"
                                                        for k in range(b.data.shape[1])), "uV")
        acc_info = info.get("acc")
        watched = watched_channels(self.cfg, emg_info.channels)
        acc_cols = [0, 1, 2] if acc_info is not None and len(acc_info.channels) >= 3 else None
        host0 = b.host_time_s if b.host_time_s is not None else time.time()
        start_new = _utc(host0)
        night = night_date(start_new)
        _can_mkdir(self.out_dir)      # if it fails, the writer says so and retries
        path, resume, start_utc, ends = choose_file(self.out_dir, night, start_new, host0,
                                                     emg_info.fs_hz,
                                                     slack_s=b.n_samples / b.fs_hz)
        header = RecordingHeader(
            emg=emg_info, acc=acc_info, board=self.board or self.src.url.split(":", 1)[0],
            source_url=self.src.url, start_time=start_utc,
            extra={"night": night, "detector_channel": watched.labels[0],
                   "detector_channels": dict(zip(watched.labels, watched.sites)),
                   "detector_config": self.det.to_dict()})
        kw = dict(fsync_interval_s=self.cfg.fsync_interval_s,
                  queue_max_bytes=int(self.cfg.write_queue_mb * 2**20),
                  retry_interval_s=self.cfg.disk_retry_s)
        try:
            writer = CaptureWriter(path, header, append=resume, **kw)
        except InputFileError as exc:
            if not resume:
                raise
            log.warning("capture: cannot continue %s (%s); starting a new recording", path, exc)
            path = fresh_path(self.out_dir, night, start_new)
            resume, start_utc, ends = False, start_new, {}
            header.start_time = start_utc
            writer = CaptureWriter(path, header, append=False, **kw)
        night = night_date(start_utc)
        night_id = self._db_call(self.db.night_for, start_utc)
        rec_id = self._db_call(self.db.add_recording, night_id, path, start_utc,
                               source=self.src.url, channel=",".join(watched.labels),
                               emg_fs_hz=emg_info.fs_hz,
                               acc_fs_hz=acc_info.fs_hz if acc_info else None)
        rec = _Recording(path=path, night=night, night_id=night_id, rec_id=rec_id,
                         start_utc=start_utc, emg_info=emg_info, acc_info=acc_info,
                         watched=watched, acc_cols=acc_cols, writer=writer, resumed=resume,
                         ends=ends, src_emg0=b.first_index)
        rec.rollover_at = next_noon(host0)
        if resume and rec_id is not None:
            try:
                row = self.db.recording(rec_id)
                rec.gap_samples = int(row["gap_samples"] or 0) if row else 0
                rec.unstored_base = int(row["unstored_samples"] or 0) if row else 0
            except sqlite3.Error as exc:
                self._db_error(exc)
        pipe = self._new_pipeline(rec)
        if len(watched.labels) > 1 or self.cfg.channels:
            log.info("capture: watching %s", ", ".join(
                f"{label} ({site_label(site)})" for label, site in zip(watched.labels,
                                                                         watched.sites)))
        if resume and any(ends.values()):
            rec.warmup = Warmup(path, ends, pipe, watched.columns, acc_cols)
            rec.warmup.start()
            log.info("capture: continuing the night's recording %s; bringing the detector up "
                     "to date from its %.0f min of signal (in the background)", path,
                     ends.get("emg", 0) / emg_info.fs_hz / 60)
        else:
            log.info("capture: recording to %s", path)
        if self.cfg.lsl and self.lsl is None:
            from crampwatch.tools.lsl_outlet import LslOutlet
            self.lsl = LslOutlet(self.cfg.lsl_name, emg_info.fs_hz, self.det,
                                 source_id=f"crampwatch-{self.board or 'board'}")
        if self.lsl is not None:
            self.lsl.reset()
        self.rec = rec
        self.night = night
        self._t_db = 0.0

    def _start_stream(self, rec: _Recording, b: SampleBlock) -> int:
        """Offset from the source's indices to the file's for a stream's first block."""
        fs = b.fs_hz
        if rec.resumed:
            host = b.host_time_s if b.host_time_s is not None else time.time()
            end = rec.ends.get(b.stream)
            if end is not None and rec.writer.resume_point.get(b.stream) is not None:
                first = rec.writer.resume_stream(b.stream, host)
            else:     # the writer could not read the file yet (disk trouble): from host time
                first = max(end or 0, int(round((host - rec.start_utc.timestamp()) * fs)))
            skip = first - (end or 0)
            if skip > 0:
                self._store_gap(rec, b.stream, end or 0, skip, "restart")
        elif b.stream == "emg":
            first = b.first_index - rec.src_emg0
        else:      # the same instant as the file's EMG index 0 is index 0 (earlier: trimmed)
            first = b.first_index - int(round(rec.src_emg0 * fs / rec.emg_info.fs_hz))
        off = first - b.first_index
        rec.offsets[b.stream] = off
        for ev in rec.held.pop(b.stream, []):
            self._record_event(ev)
        return off

    def _new_pipeline(self, rec: _Recording) -> MultiPipeline:
        """A fresh detector for the recording: one pipeline per watched channel."""
        w = rec.watched
        rec.pipe = MultiPipeline(self.det, rec.emg_info.fs_hz,
                                 rec.acc_info.fs_hz if rec.acc_cols is not None else None,
                                 w.labels, w.sites,
                                 confidence_model=load_model(self.det.model_file or None),
                                 clock=time.monotonic)
        some = next(iter(rec.pipe.pipelines.values()))
        rec.taps = {site: TraceTap(some.step_n * some.frame_dt) for site in w.sites}
        return rec.pipe

    def _poll_trace(self, rec: _Recording) -> None:
        for site, rows in rec.pipe.drain_trace().items():      # memory stays flat all night
            rec.taps[site].add(rows)

    def _close_recording(self, truncated: bool) -> None:
        rec = self.rec
        if rec is None:
            return
        self._finish_warmup(rec, wait=not self._urgent)
        self._flush_detect(rec)
        if rec.warmup is None and rec.pipe is not None:
            self._episode_events(rec, rec.pipe.finish(truncated=truncated), live=True)
            self._poll_trace(rec)
            self._store_minutes(rec, final=True)
        for stream in list(rec.dropping):
            self._dropped(rec, stream, None, 0)
        st = rec.writer.close()
        self._writer_stats = st
        rec.unstored_s = st.unstored.get("emg", 0) / rec.emg_info.fs_hz
        rec.file_missing = not os.path.exists(rec.path)
        if st.blocks_unwritten or not st.recording_ok or rec.file_missing:
            log.error("capture: %s closed with %d block(s) (%.1f s of EMG) not stored (%s)%s",
                      rec.path, st.blocks_unwritten, rec.unstored_s, st.failed or st.last_error,
                      "; the file does not exist" if rec.file_missing else "")
        self._db_retry_at = 0.0          # a last try for what the log could not take yet
        self._update_recording_row(rec)
        if rec.unsaved_minutes or rec.unsaved_gaps or rec.unsaved_episodes:
            log.error("capture: the episode log %s could not take %d minute summaries, %d gaps "
                      "and %d episodes of %s; replay the recording with --db to fill it in",
                      self.db_path, len(rec.unsaved_minutes), len(rec.unsaved_gaps),
                      len(rec.unsaved_episodes), rec.path)
        self._closed_recordings.append(rec)
        self.rec = None

    def _finish_warmup(self, rec: _Recording, wait: bool) -> None:
        w = rec.warmup
        if w is None:
            return
        if not wait:
            w.abort.set()
        w.join()
        if w.abort.is_set():
            log.warning("capture: stopped while the detector was being brought up to date: "
                        "%d block(s) of this session were recorded but not examined live "
                        "(replay the recording to detect in them)", len(rec.backlog))
            rec.backlog = []
            return
        rec.warmup = None
        if w.error is not None:
            log.warning("capture: could not replay the earlier part of %s (%s): detection "
                        "continues without it", rec.path, w.error,
                        exc_info=None if isinstance(w.error, CrampwatchError) else w.error)
            self._new_pipeline(rec)
        else:
            log.info("capture: detector up to date (%.0f min of earlier signal replayed)",
                     w.samples / rec.emg_info.fs_hz / 60)
            self._episode_events(rec, w.events, live=False)
        backlog, rec.backlog = rec.backlog, []
        for fb in backlog:
            self._batch(rec, fb)
        self._flush_detect(rec)

    # ------------------------------------------------------------------ episodes
    def _open_episode(self, rec: _Recording, site: str, ep) -> int | None:
        rec.episodes += 1
        return self._db_call(self.db.open_episode, rec.night_id, rec.rec_id, rec.start_utc, ep,
                             rec.emg_info.fs_hz, rec.pipe.channel_of[site], site=site)

    def _episode_events(self, rec: _Recording, events: list, live: bool) -> None:
        """``(site, event)`` pairs from the detector -> episode rows, hooks, the journal."""
        for site, ev in events:
            ep = ev.episode
            key = (site, ep.episode_id)
            if isinstance(ev, EpisodeStarted):
                row, status = self._row_for(rec, site, ep)
                new = row is None
                if new:
                    row = self._open_episode(rec, site, ep)
                if row is not None:
                    rec.rows[key] = row
                if new and live:
                    self._on_onset(rec, site, ev, row)
            elif isinstance(ev, EpisodeEnded):
                row = rec.rows.pop(key, None)
                if row is None:
                    row, status = self._row_for(rec, site, ep)
                else:
                    status = self._status_of(row)
                if row is None:
                    row = self._open_episode(rec, site, ep)
                elif not live:
                    continue            # an earlier session's episode: already in the log
                final = "truncated" if status == "truncated" else ep.status
                if row is None or not self._db_ok(self.db.close_episode, row, rec.start_utc,
                                                  ep, rec.emg_info.fs_hz, status=final):
                    rec.unsaved_episodes.append((row, site, ep, final))   # written later
                onset = rec.start_utc + timedelta(seconds=ep.onset_s)
                log.info("episode %s ended: %s to %s local, %.1f s, peak %.1f uV RMS, "
                         "confidence %.2f (%s)%s", row, local_text(onset),
                         local_text(rec.start_utc + timedelta(seconds=ep.offset_s))[11:],
                         ep.offset_s - ep.onset_s, ep.peak_rms_uv, ep.confidence, final,
                         f", {site_label(site)}" if len(rec.watched.sites) > 1 else "")

    def _row_for(self, rec: _Recording, site: str, ep) -> tuple[int | None, str | None]:
        """The SQLite row of this recording and site with the same onset (an earlier
        session's)."""
        if self.db is None or rec.rec_id is None:
            return None, None
        s = int(round(ep.onset_s * rec.emg_info.fs_hz))
        try:
            r = self.db.episode_at(rec.rec_id, s, site=site, tolerance_samples=1)
        except sqlite3.Error as exc:     # the log's disk is failing
            self._db_error(exc)
            return None, None
        return (int(r["episode_id"]), str(r["status"])) if r else (None, None)

    def _status_of(self, row: int) -> str | None:
        try:
            return self.db.episode_status(row)
        except sqlite3.Error as exc:
            self._db_error(exc)
            return None

    def _on_onset(self, rec: _Recording, site: str, ev: EpisodeStarted, row) -> None:
        ep = ev.episode
        fs = rec.emg_info.fs_hz
        onset = rec.start_utc + timedelta(seconds=ep.onset_s)
        confirmed = rec.start_utc + timedelta(seconds=ev.confirmed_at_s)
        lag_signal_s = rec.pipe.pipelines[site].next_emg_index / fs - ev.confirmed_at_s
        lag_wall_s = time.monotonic() - self._flush_t
        channel = rec.pipe.channel_of[site]
        log.info("episode %s: cramp onset at %s local%s, confirmed after %.1f s "
                 "[onset_s=%.3f confirmed_s=%.3f latency_signal_s=%.3f latency_wall_s=%.4f "
                 "site=%s channel=%s]", row, local_text(onset),
                 f" ({site_label(site)})" if len(rec.watched.sites) > 1 else "",
                 ev.confirmed_at_s - ep.onset_s, ep.onset_s, ev.confirmed_at_s, lag_signal_s,
                 lag_wall_s, site, sanitize_text(channel, 64).replace(" ", "_"))
        if self.hooks is not None:
            self.hooks.run({
                "CRAMPWATCH_EVENT": "onset",
                "CRAMPWATCH_EPISODE_ID": str(row if row is not None else ""),
                "CRAMPWATCH_SITE": site,
                "CRAMPWATCH_CHANNEL": channel,
                "CRAMPWATCH_NIGHT": rec.night,
                "CRAMPWATCH_ONSET_UTC": onset.isoformat(timespec="milliseconds"),
                "CRAMPWATCH_ONSET_LOCAL": onset.astimezone().isoformat(timespec="seconds"),
                "CRAMPWATCH_ONSET_S": f"{ep.onset_s:.3f}",
                "CRAMPWATCH_CONFIRMED_UTC": confirmed.isoformat(timespec="milliseconds"),
                "CRAMPWATCH_ELAPSED_S": f"{ev.confirmed_at_s - ep.onset_s:.1f}",
                "CRAMPWATCH_PEAK_RMS_UV": f"{ep.peak_rms_uv:.2f}",
                "CRAMPWATCH_MEAN_RMS_UV": f"{ep.mean_rms_uv:.2f}",
                "CRAMPWATCH_CONFIDENCE": f"{ep.confidence:.3f}",
                "CRAMPWATCH_RECORDING": rec.path,
                "CRAMPWATCH_DB": self.db_path,
            })

    # ------------------------------------------------------------------ periodic work
    def _tick(self) -> None:
        now = time.monotonic()
        rec = self.rec
        if rec is not None:
            if rec.warmup is not None and not rec.warmup.is_alive():
                self._finish_warmup(rec, wait=True)
            if rec.warmup is None:
                if rec.batch_t is not None and now - rec.batch_t >= DETECT_BATCH_S:
                    self._flush_detect(rec)
                self._poll_trace(rec)
                self._store_minutes(rec, final=False)
            st = rec.writer.stats
            if st.failed and self._failure is None:
                self._failure = st.failed
                log.error("capture: %s; stopping: the recording cannot go on (a restart "
                          "continues the night's recording)", st.failed)
                self.request_stop("recording writer failed")
            rec.watch_drops = (not st.recording_ok or st.blocks_dropped != rec.dropped_seen
                               or st.queue_bytes > self.cfg.write_queue_mb * 2**20 / 4)
            rec.dropped_seen = st.blocks_dropped
            if now - self._t_db >= self.cfg.db_update_s:
                self._t_db = now
                self._update_recording_row(rec)
        if self.hooks is not None:
            self.hooks.reap()
        if self._watchdog_s is not None and now - self._t_watchdog >= self._watchdog_s:
            self._t_watchdog = now
            sd_notify("WATCHDOG=1")
        text = None
        if self._status is not None and now - self._t_status >= self.cfg.status_interval_s:
            self._t_status = now
            text = self.status_text()
            self._status.show(text)
        if (self._status is None and self.cfg.log_interval_s > 0
                and now - self._t_log >= self.cfg.log_interval_s):
            self._t_log = now
            text = text or self.status_text()
            log.info("progress: %s", text)
        if now - self._t_notify >= 10.0 and os.environ.get("NOTIFY_SOCKET"):
            self._t_notify = now
            sd_notify("STATUS=" + (text or self.status_text()))

    def _store_minutes(self, rec: _Recording, final: bool) -> None:
        for site, tap in rec.taps.items():          # one row per minute per watched site
            cols = tap.take_minutes(final=final)
            if cols is not None:
                rec.unsaved_minutes.extend(minute_rows(cols, rec.start_utc, tap.step_s,
                                                       site=site))
        if rec.unsaved_minutes and rec.rec_id is not None \
                and self._db_ok(self.db.add_minutes, rec.rec_id, rec.unsaved_minutes):
            rec.unsaved_minutes = []

    def _save_unsaved(self, rec: _Recording) -> None:
        """Write what the episode log could not take earlier (its disk failed, another
        process held it locked): the recording's row, gaps, episodes, minutes."""
        if self.db is None:
            return
        if rec.rec_id is None:
            if rec.night_id is None:
                rec.night_id = self._db_call(self.db.night_for, rec.start_utc)
            if rec.night_id is not None:
                rec.rec_id = self._db_call(
                    self.db.add_recording, rec.night_id, rec.path, rec.start_utc,
                    source=self.src.url if self.src else None,
                    channel=rec.channels, emg_fs_hz=rec.emg_info.fs_hz,
                    acc_fs_hz=rec.acc_info.fs_hz if rec.acc_info else None)
            if rec.rec_id is None:
                return
        while rec.unsaved_gaps and self._db_ok(self.db.add_gap, rec.rec_id,
                                               *rec.unsaved_gaps[0]):
            rec.unsaved_gaps.pop(0)
        while rec.unsaved_episodes:
            row, site, ep, final = rec.unsaved_episodes[0]
            if row is None:
                row = self._db_call(self.db.open_episode, rec.night_id, rec.rec_id,
                                    rec.start_utc, ep, rec.emg_info.fs_hz,
                                    rec.watched.labels[rec.watched.sites.index(site)],
                                    site=site)
                if row is None:
                    break
                rec.unsaved_episodes[0] = (row, site, ep, final)
            if not self._db_ok(self.db.close_episode, row, rec.start_utc, ep,
                               rec.emg_info.fs_hz, status=final):
                break
            rec.unsaved_episodes.pop(0)
        if rec.unsaved_minutes and self._db_ok(self.db.add_minutes, rec.rec_id,
                                               rec.unsaved_minutes):
            rec.unsaved_minutes = []

    def _update_recording_row(self, rec: _Recording) -> None:
        self._save_unsaved(rec)
        if rec.rec_id is None:
            return
        fs = rec.emg_info.fs_hz
        st = rec.writer.stats
        unstored = rec.unstored_base + int(st.unstored.get("emg", 0))
        self._db_call(self.db.update_recording, rec.rec_id,
                      ended_utc=rec.start_utc + timedelta(seconds=rec.emg_end / fs),
                      samples=rec.emg_end, gap_samples=rec.gap_samples,
                      unstored_samples=unstored,
                      recording_error=(st.failed or st.last_error) if unstored or st.failed
                      or not st.recording_ok else None)

    def status_text(self) -> str:
        """The one-line status: link, signal quality per site, episodes, recording."""
        return status_text(self)

    def episode_counts(self) -> dict:
        """{site: episodes logged tonight} of the recording's watched sites."""
        rec = self.rec
        if rec is None:
            return {}
        counts = {}
        for site in rec.watched.sites:
            try:
                counts[site] = int(self.db.count_episodes(rec.night_id, site=site)) \
                    if self.db is not None and rec.night_id is not None else 0
            except sqlite3.Error as exc:
                self._db_error(exc)
                counts[site] = sum(1 for (s_, _) in rec.rows if s_ == site)
        return counts

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self, reason: str, truncated: bool) -> NightSummary:
        sd_notify("STOPPING=1\nSTATUS=stopping: " + reason)
        if self._status is not None:
            self._status.close()
        if self.src is not None:
            try:
                if reason != "error":        # what already arrived is recorded too
                    for item in self.src.read(timeout_s=0):
                        self._handle(item)
            except CrampwatchError as exc:
                log.warning("capture: the source failed while stopping: %s", exc)
            finally:
                self.src.close()
        self._close_recording(truncated=truncated)
        if self.hooks is not None:
            self.hooks.close()
        if self.lsl is not None:
            self.lsl.close()
        summary = NightSummary(stop_reason=reason, night=self.night)
        fs = self._closed_recordings[-1].emg_info.fs_hz if self._closed_recordings else 1.0
        summary.session_signal_s = self.session_samples / fs
        st = self._writer_stats
        if st is not None:
            summary.recording_ok = st.recording_ok and not st.blocks_unwritten
            summary.recording_error = st.failed or st.last_error
            summary.samples_dropped = st.samples_dropped
            summary.samples_unwritten = st.samples_unwritten
        for rec in self._closed_recordings:
            summary.unstored_s += rec.unstored_s
            summary.file_missing |= rec.file_missing
        summary.failure = self._failure
        if self._failure or (st is not None and st.blocks_unwritten) or summary.file_missing:
            summary.exit_status = 1          # the night was not recorded as it should be
        if self.db is not None:
            if self._closed_recordings:
                night_id = self._closed_recordings[-1].night_id
                try:
                    summary.recordings = self.db.recordings(night_id)
                    summary.episodes = self.db.episodes(night_id)
                    summary.gaps = self.db.gaps(night_id)
                except sqlite3.Error as exc:
                    self._db_error(exc)
            self.db.close()
        log.info("capture: stopped (%s)", reason)
        return summary

    # ------------------------------------------------------------------ helpers
    def _db_call(self, fn, *args, **kw):
        """Run an episode-log call; a failing database (its disk full) is logged,
        not fatal: recording and detection go on."""
        self._db_last_failed = True
        if self.db is None:
            return None
        if self._db_failed and time.monotonic() < self._db_retry_at:
            return None           # failing: try again at the retry time, never stall the loop
        try:
            result = fn(*args, **kw)
        except sqlite3.Error as exc:
            try:
                self.db.rollback()           # a half-done transaction must not linger
            except sqlite3.Error:
                pass
            self._db_error(exc)
            return None
        self._db_last_failed = False
        if self._db_failed:
            self._db_failed = False
            log.warning("capture: the episode log %s works again", self.db_path)
        return result

    def _db_ok(self, fn, *args, **kw) -> bool:
        """:meth:`_db_call`, True if it worked."""
        self._db_call(fn, *args, **kw)
        return not self._db_last_failed

    def _db_error(self, exc) -> None:
        self._db_retry_at = time.monotonic() + max(1.0, min(self.cfg.db_update_s, 10.0))
        if not self._db_failed:
            self._db_failed = True
            log.error("capture: episode log %s failed: %s; recording and detection go on, "
                      "what it could not take is kept and written when it works again",
                      self.db_path, exc)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)



def _with_stall(url: str, stall_s: float) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("serial", "socket", "ble") or "stall_s=" in url:
        return url
    return url + ("&" if "?" in url else "?") + f"stall_s={stall_s:g}"


def _utc(t_s: float) -> datetime:
    return datetime.fromtimestamp(t_s, timezone.utc)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _can_mkdir(path: str) -> bool:
    try:
        ensure_private_dir(path)
        return True
    except OSError:
        return False       # the writer reports it (and retries): detection goes on


def _unlock(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
