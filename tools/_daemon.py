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
- every block is fed to the very :class:`~crampwatch.detector.Pipeline` that
  replay uses, with the values as the recording stores them (float32), so
  replaying the recording gives the same episodes;
- episodes go to the SQLite :class:`~crampwatch.tools.episode_log.EpisodeLog`
  when their onset is confirmed (``open``) and again at their end; per-minute
  signal summaries and the recording's row are updated as the night goes on.

One night is one recording, ``crampwatch-YYYY-MM-DD.cwrec`` (the date of the
evening).  A restart the same night appends a new segment to it and continues
its sample indices by host time; the detector is first brought up to date by
replaying what the file holds (in a background thread, while recording goes
on), so that its state, and so the episodes, are exactly those of a replay of
the whole file.

Examples
--------
A 6 min simulated night as fast as possible (writes under ``$CRAMPWATCH_HOME``)::

    from crampwatch.tools._daemon import CaptureDaemon
    from crampwatch.tools.capture_config import load_config
    cfg = load_config(None, ["source=sim://?seed=2&hours=0.1&speed=max"])
    summary = CaptureDaemon(cfg.capture, cfg.detector).run()
    print(summary.text())
"""

from __future__ import annotations

import collections
import fcntl
import logging
import math
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from crampwatch._files import ensure_private_dir, private_fd
from crampwatch._text import sanitize_text
from crampwatch.detector import DetectorConfig, EpisodeEnded, EpisodeStarted, Pipeline
from crampwatch.detector.pipeline import LABELS
from crampwatch.errors import ConfigError, CrampwatchError, InputFileError
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo
from crampwatch.models import load_model
from crampwatch.tools.capture_config import CaptureConfig, parse_clock
from crampwatch.tools.episode_log import EpisodeLog, minute_rows, night_date

__all__ = ["CaptureDaemon", "HookRunner", "NightSummary", "recording_name", "sd_notify"]

log = logging.getLogger(__name__)

_BAD_LABELS = (LABELS.index("nodata"), LABELS.index("artifact"))
_PENDING_MAX = 20_000          # items kept while no recording is open yet
#: the detector is fed in chunks of at least this much EMG (s): it decides once per
#: step_s (1 s) anyway, and a call per tiny block costs more than the samples in it
DETECT_BATCH_S = 0.25
#: the main loop turns at most this often while data flow (s)
LOOP_S = 0.1
#: once running, an episode-log write waits at most this long for another process's
#: lock; what could not be written is kept and written later (the loop never stalls)
DB_BUSY_S = 2.0
#: corrupt frames reported one by one in the journal, then only counted
CORRUPT_LOGGED = 10


# --------------------------------------------------------------------------- systemd
def sd_notify(message: str, environ=None) -> bool:
    """Send ``message`` (``"READY=1"``, ``"WATCHDOG=1"``, ``"STATUS=..."``) to
    systemd's notification socket ``$NOTIFY_SOCKET``; False if there is none.

    The protocol is one AF_UNIX datagram; an address starting with ``@`` is
    in the abstract namespace.  Nothing is sent, and nothing fails, when the
    daemon does not run under systemd.

    Examples
    --------
    >>> sd_notify("READY=1", environ={})
    False
    """
    env = os.environ if environ is None else environ
    addr = env.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            # never wait: a manager that does not read must not stall the capture
            sock.send(message.encode("utf-8", "replace"), socket.MSG_DONTWAIT)
        return True
    except OSError as exc:
        log.debug("sd_notify(%r) failed: %s", message[:40], exc)
        return False


def watchdog_interval_s(environ=None) -> float | None:
    """Half of systemd's ``WatchdogSec`` (``$WATCHDOG_USEC``) if it applies to us."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


# --------------------------------------------------------------------------- hook
class HookRunner:
    """Run the user's command at each episode onset, without waiting for it.

    The command is split like a shell would (``shlex``) but run without one;
    the episode is in ``CRAMPWATCH_*`` environment variables.  A command that
    is still running after ``timeout_s`` is killed (with its process group);
    failures are logged, never fatal.

    Examples
    --------
    >>> hooks = HookRunner("true", timeout_s=5.0)
    >>> hooks.run({"CRAMPWATCH_EVENT": "onset"})
    True
    >>> hooks.close()
    """

    def __init__(self, command: str, timeout_s: float = 30.0):
        self.command = command
        self.argv = shlex.split(command)
        self.timeout_s = float(timeout_s)
        self._procs: list[tuple[subprocess.Popen, float]] = []
        self.started = 0
        self.failed = 0
        exe = self.argv[0]
        if shutil.which(exe) is None:
            raise ConfigError(f"config [capture] hook: command {exe!r} not found (give a full "
                              "path or a command on PATH)", key="hook")

    def run(self, env: dict) -> bool:
        """Start the command with ``env`` added to the environment."""
        self.reap()
        try:
            proc = subprocess.Popen(self.argv, env={**os.environ, **env},
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            self.failed += 1
            log.error("hook %r could not be started: %s", self.command, exc)
            return False
        self.started += 1
        self._procs.append((proc, time.monotonic() + self.timeout_s))
        return True

    def reap(self) -> None:
        """Collect finished hooks, kill overdue ones (call it now and then)."""
        keep = []
        now = time.monotonic()
        for proc, deadline in self._procs:
            rc = proc.poll()
            if rc is None and now > deadline:
                log.warning("hook %r still running after %g s: killed", self.command,
                            self.timeout_s)
                _kill_group(proc)
                rc = proc.wait()
            if rc is None:
                keep.append((proc, deadline))
            elif rc != 0:
                self.failed += 1
                log.warning("hook %r exited with status %d", self.command, rc)
        self._procs = keep

    def close(self, wait_s: float = 5.0) -> None:
        """Wait a little for running hooks, then kill what is left."""
        deadline = time.monotonic() + wait_s
        for proc, _ in self._procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
        self._procs = []


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass


# --------------------------------------------------------------------------- status line
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


# --------------------------------------------------------------------------- trace
class _TraceTap:
    """Per-step rows from the pipeline -> per-minute summaries and the recent quality."""

    def __init__(self, step_s: float):
        self.step_s = step_s
        self.pending: list = []
        self.recent: collections.deque = collections.deque(maxlen=max(1, round(60 / step_s)))
        self.columns = Pipeline.TRACE_COLUMNS

    def poll(self, pipe: Pipeline) -> None:
        rows = pipe.drain_trace()     # memory stays flat all night
        if rows:
            self.pending.extend(rows)
            self.recent.extend(rows)

    def take_minutes(self, final: bool = False) -> dict | None:
        """Columns of the rows of every complete minute (all rows if ``final``)."""
        if not self.pending:
            return None
        ti = self.columns.index("t_end_s")

        def minute(row):          # the minute a step belongs to, as minute_rows() counts
            return math.floor((row[ti] - self.step_s) / 60.0)
        if final:
            k = len(self.pending)
        else:
            last = minute(self.pending[-1])
            k = 0
            while k < len(self.pending) and minute(self.pending[k]) < last:
                k += 1
        if k == 0:
            return None
        arr = np.asarray(self.pending[:k], dtype=np.float64).reshape(k, len(self.columns))
        del self.pending[:k]
        return {c: arr[:, i] for i, c in enumerate(self.columns)}

    def quality(self) -> tuple[float | None, float | None]:
        """(fraction of usable steps in the last minute, last envelope level in uV)."""
        if not self.recent:
            return None, None
        li, ri = self.columns.index("label"), self.columns.index("rms_uv")
        good = sum(1 for r in self.recent if int(r[li]) not in _BAD_LABELS) / len(self.recent)
        return good, float(self.recent[-1][ri])


# --------------------------------------------------------------------------- names
def recording_name(night: str, start_local: datetime | None = None) -> str:
    """``crampwatch-NIGHT.cwrec``, or with the start time when the night's first
    file cannot be continued (``crampwatch-NIGHT-HHMMSS.cwrec``)."""
    if start_local is None:
        return f"crampwatch-{night}.cwrec"
    return f"crampwatch-{night}-{start_local.strftime('%H%M%S')}.cwrec"


def _with_stall(url: str, stall_s: float) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("serial", "socket", "ble") or "stall_s=" in url:
        return url
    return url + ("&" if "?" in url else "?") + f"stall_s={stall_s:g}"


def _utc(t_s: float) -> datetime:
    return datetime.fromtimestamp(t_s, timezone.utc)


def _local(dt: datetime) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _hms(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


# --------------------------------------------------------------------------- warm-up
class _Warmup(threading.Thread):
    """Replay the part of a resumed recording that earlier sessions wrote, into a
    new pipeline, while the daemon records on (it reads only records before the
    new segment: indices below each stream's end)."""

    def __init__(self, path: str, ends: dict, pipe: Pipeline, emg_col: int, acc_cols):
        super().__init__(name="crampwatch-warmup", daemon=True)
        self.path, self.ends, self.pipe = path, dict(ends), pipe
        self.emg_col, self.acc_cols = emg_col, acc_cols
        self.events: list = []
        self.error: BaseException | None = None
        self.abort = threading.Event()
        self.samples = 0

    def run(self) -> None:
        from crampwatch.firmware_bridge.recording import iter_records
        todo = {s for s, e in self.ends.items() if e > 0}
        try:
            for rec in iter_records(self.path):
                if self.abort.is_set() or not todo:
                    break
                if rec.type != "samples":
                    continue
                v = rec.value
                end = self.ends.get(v.stream, 0)
                if v.first_index >= end:
                    continue
                data = v.data[:end - v.first_index]
                if v.stream == "emg":
                    data = data[:, [self.emg_col]]
                    self.samples += data.shape[0]
                elif self.acc_cols is None:
                    data = None
                else:
                    data = data[:, self.acc_cols]
                if data is not None:
                    self.events += self.pipe.feed(SampleBlock(v.stream, v.fs_hz, v.first_index,
                                                              data))
                if v.first_index + v.n_samples >= end:
                    todo.discard(v.stream)
        except Exception as exc:          # a damaged file: detection starts afresh
            self.error = exc


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
    emg_col: int
    acc_cols: list | None
    writer: object
    resumed: bool
    ends: dict                                    # stream -> end index before this session
    offsets: dict = field(default_factory=dict)   # stream -> file index - source index
    held: dict = field(default_factory=dict)      # stream -> events waiting for its offset
    pipe: Pipeline | None = None
    tap: _TraceTap | None = None
    warmup: _Warmup | None = None
    backlog: list = field(default_factory=list)   # blocks for the pipeline during warm-up
    rows: dict = field(default_factory=dict)      # detector episode id -> SQLite row id
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
    unsaved_episodes: list = field(default_factory=list)  # (row or None, ep, status)


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
            out.append(f"  {r['path']}: {_local(started)} to {_local(ended)[11:]}, "
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
        out.append(f"  {n} episode{'s' if n != 1 else ''}" + (":" if n else ""))
        if n:
            out.append(f"    {'#':>4}  {'onset (local)':<19}  {'offset':<8}  {'dur s':>6}  "
                       f"{'peak uV':>7}  {'conf':>4}  status")
            for e in self.episodes:
                onset = datetime.fromisoformat(e["onset_utc"])
                off = _local(datetime.fromisoformat(e["offset_utc"]))[11:] \
                    if e.get("offset_utc") else "-"
                dur = f"{e['duration_s']:.1f}" if e.get("duration_s") is not None else "-"
                out.append(f"    {e['episode_id']:>4}  {_local(onset):<19}  {off:<8}  {dur:>6}  "
                           f"{e['peak_rms_uv'] or 0:>7.1f}  {e['confidence'] or 0:>4.2f}  "
                           f"{e['status']}")
        return "\n".join(out)


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
                self.db.db.execute(f"PRAGMA busy_timeout={int(DB_BUSY_S * 1000)}")
            except (OSError, sqlite3.Error) as exc:
                raise CrampwatchError(f"cannot open the episode log {self.db_path}: "
                                      f"{exc}") from exc
            self._repair_after_crash()
            n = self._db_call(self.db.close_open)
            if n:
                log.warning("%d episode(s) left open by an interrupted capture closed as "
                            "truncated", n)
            self.src = open_source(self.url, **self.source_options)
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
            rows = self.db.db.execute(
                "SELECT DISTINCT r.recording_id, r.path, r.ended_utc FROM episodes e "
                "JOIN recordings r USING (recording_id) WHERE e.status='open'").fetchall()
        except sqlite3.Error as exc:
            self._db_error(exc)
            return
        for rec_id, path, ended in rows:
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
                    _local(t0), cause)
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
                    self.lsl.push(block.data[:, rec.emg_col], first, host)
        if b.stream == "emg" and limit is not None and rec.emg_end >= limit:
            self.request_stop(f"--duration {self.duration_s:g} s of signal")

    def _detect(self, rec: _Recording, block: SampleBlock) -> None:
        # the values exactly as the recording stores them (float32), so replay agrees
        if block.stream == "emg":
            data = block.data[:, [rec.emg_col]].astype(np.float32)
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
        emg_col = 0
        if self.cfg.emg_channel:
            lower = [c.lower() for c in emg_info.channels]
            if self.cfg.emg_channel.lower() not in lower:
                raise ConfigError(f"config [capture] emg_channel={self.cfg.emg_channel!r}: the "
                                  f"board's EMG channels are {', '.join(emg_info.channels)}",
                                  key="emg_channel")
            emg_col = lower.index(self.cfg.emg_channel.lower())
        acc_cols = [0, 1, 2] if acc_info is not None and len(acc_info.channels) >= 3 else None
        host0 = b.host_time_s if b.host_time_s is not None else time.time()
        start_new = _utc(host0)
        night = night_date(start_new)
        _can_mkdir(self.out_dir)      # if it fails, the writer says so and retries
        path, resume, start_utc, ends = self._choose_file(night, start_new, host0, emg_info,
                                                          acc_info)
        header = RecordingHeader(
            emg=emg_info, acc=acc_info, board=self.board or self.src.url.split(":", 1)[0],
            source_url=self.src.url, start_time=start_utc,
            extra={"night": night, "detector_channel": emg_info.channels[emg_col],
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
            path = self._fresh_path(night, start_new)
            resume, start_utc, ends = False, start_new, {}
            header.start_time = start_utc
            writer = CaptureWriter(path, header, append=False, **kw)
        night = night_date(start_utc)
        night_id = self._db_call(self.db.night_for, start_utc)
        rec_id = self._db_call(self.db.add_recording, night_id, path, start_utc,
                               source=self.src.url, channel=emg_info.channels[emg_col],
                               emg_fs_hz=emg_info.fs_hz,
                               acc_fs_hz=acc_info.fs_hz if acc_info else None)
        rec = _Recording(path=path, night=night, night_id=night_id, rec_id=rec_id,
                         start_utc=start_utc, emg_info=emg_info, acc_info=acc_info,
                         emg_col=emg_col, acc_cols=acc_cols, writer=writer, resumed=resume,
                         ends=ends, src_emg0=b.first_index)
        rec.rollover_at = _next_noon(host0)
        if resume and rec_id is not None:
            try:
                row = self.db.db.execute("SELECT gap_samples, unstored_samples FROM recordings "
                                         "WHERE recording_id=?", (rec_id,)).fetchone()
                rec.gap_samples = int(row[0] or 0) if row else 0
                rec.unstored_base = int(row[1] or 0) if row else 0
            except sqlite3.Error as exc:
                self._db_error(exc)
        pipe = Pipeline(self.det, emg_fs_hz=emg_info.fs_hz,
                        acc_fs_hz=acc_info.fs_hz if acc_cols is not None else None,
                        confidence_model=load_model(), clock=time.monotonic)
        rec.pipe = pipe
        rec.tap = _TraceTap(pipe.step_n * pipe.frame_dt)
        if resume and any(ends.values()):
            rec.warmup = _Warmup(path, ends, pipe, emg_col, acc_cols)
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

    def _choose_file(self, night, start_new, host0, emg_info, acc_info):
        """The night's file to continue, or a new one: (path, resume, start_utc, ends)."""
        from crampwatch.firmware_bridge.recording import open_capture
        path = os.path.join(self.out_dir, recording_name(night))
        candidates = sorted(
            (p for p in _listdir(self.out_dir)
             if p.startswith(f"crampwatch-{night}") and p.endswith(".cwrec")),
            key=lambda p: _mtime(os.path.join(self.out_dir, p)))
        if not candidates:
            return path, False, start_new, {}
        last = os.path.join(self.out_dir, candidates[-1])
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
            return self._fresh_path(night, start_new), False, start_new, {}
        if end_t > host0 + 1.0 or fs != emg_info.fs_hz:
            # the new samples would not come after the file's (a replayed file, a clock
            # step) or the rate differs: never mix them into the old file
            return self._fresh_path(night, start_new), False, start_new, {}
        return last, True, start, ends

    def _fresh_path(self, night: str, start_new: datetime) -> str:
        base = recording_name(night, start_new.astimezone())
        path = os.path.join(self.out_dir, base)
        k = 2
        while os.path.exists(path):
            path = os.path.join(self.out_dir, base.replace(".cwrec", f"-{k}.cwrec"))
            k += 1
        return path

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

    def _close_recording(self, truncated: bool) -> None:
        rec = self.rec
        if rec is None:
            return
        self._finish_warmup(rec, wait=not self._urgent)
        self._flush_detect(rec)
        if rec.warmup is None and rec.pipe is not None:
            self._episode_events(rec, rec.pipe.finish(truncated=truncated), live=True)
            rec.tap.poll(rec.pipe)
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
            rec.pipe = Pipeline(self.det, emg_fs_hz=rec.emg_info.fs_hz,
                                acc_fs_hz=rec.acc_info.fs_hz if rec.acc_cols else None,
                                confidence_model=load_model(), clock=time.monotonic)
            rec.tap = _TraceTap(rec.pipe.step_n * rec.pipe.frame_dt)
        else:
            log.info("capture: detector up to date (%.0f min of earlier signal replayed)",
                     w.samples / rec.emg_info.fs_hz / 60)
            self._episode_events(rec, w.events, live=False)
        backlog, rec.backlog = rec.backlog, []
        for fb in backlog:
            self._batch(rec, fb)
        self._flush_detect(rec)

    # ------------------------------------------------------------------ episodes
    def _episode_events(self, rec: _Recording, events: list, live: bool) -> None:
        for ev in events:
            ep = ev.episode
            if isinstance(ev, EpisodeStarted):
                row, status = self._row_for(rec, ep)
                new = row is None
                if new:
                    row = self._db_call(self.db.open_episode, rec.night_id, rec.rec_id,
                                        rec.start_utc, ep, rec.emg_info.fs_hz,
                                        rec.emg_info.channels[rec.emg_col])
                    rec.episodes += 1
                if row is not None:
                    rec.rows[ep.episode_id] = row
                if new and live:
                    self._on_onset(rec, ev, row)
            elif isinstance(ev, EpisodeEnded):
                row = rec.rows.pop(ep.episode_id, None)
                if row is None:
                    row, status = self._row_for(rec, ep)
                else:
                    status = self._status_of(row)
                if row is None:
                    row = self._db_call(self.db.open_episode, rec.night_id, rec.rec_id,
                                        rec.start_utc, ep, rec.emg_info.fs_hz,
                                        rec.emg_info.channels[rec.emg_col])
                    rec.episodes += 1
                elif not live:
                    continue            # an earlier session's episode: already in the log
                final = "truncated" if status == "truncated" else ep.status
                if row is None or not self._db_ok(self.db.close_episode, row, rec.start_utc,
                                                  ep, rec.emg_info.fs_hz, status=final):
                    rec.unsaved_episodes.append((row, ep, final))   # written when it can be
                onset = rec.start_utc + timedelta(seconds=ep.onset_s)
                log.info("episode %s ended: %s to %s local, %.1f s, peak %.1f uV RMS, "
                         "confidence %.2f (%s)", row, _local(onset),
                         _local(rec.start_utc + timedelta(seconds=ep.offset_s))[11:],
                         ep.offset_s - ep.onset_s, ep.peak_rms_uv, ep.confidence, final)

    def _row_for(self, rec: _Recording, ep) -> tuple[int | None, str | None]:
        """The SQLite row of this recording with the same onset (an earlier session's)."""
        if self.db is None or rec.rec_id is None:
            return None, None
        s = int(round(ep.onset_s * rec.emg_info.fs_hz))
        try:
            r = self.db.db.execute(
                "SELECT episode_id, status FROM episodes WHERE recording_id=? AND "
                "onset_sample BETWEEN ? AND ? ORDER BY episode_id LIMIT 1",
                (rec.rec_id, s - 1, s + 1)).fetchone()
        except sqlite3.Error as exc:     # the log's disk is failing
            self._db_error(exc)
            return None, None
        return (int(r[0]), str(r[1])) if r else (None, None)

    def _status_of(self, row: int) -> str | None:
        try:
            r = self.db.db.execute("SELECT status FROM episodes WHERE episode_id=?",
                                   (row,)).fetchone()
        except sqlite3.Error as exc:
            self._db_error(exc)
            return None
        return str(r[0]) if r else None

    def _on_onset(self, rec: _Recording, ev: EpisodeStarted, row) -> None:
        ep = ev.episode
        fs = rec.emg_info.fs_hz
        onset = rec.start_utc + timedelta(seconds=ep.onset_s)
        confirmed = rec.start_utc + timedelta(seconds=ev.confirmed_at_s)
        lag_signal_s = rec.pipe.next_emg_index / fs - ev.confirmed_at_s
        lag_wall_s = time.monotonic() - self._flush_t
        log.info("episode %s: cramp onset at %s local, confirmed after %.1f s "
                 "[onset_s=%.3f confirmed_s=%.3f latency_signal_s=%.3f latency_wall_s=%.4f]",
                 row, _local(onset), ev.confirmed_at_s - ep.onset_s, ep.onset_s,
                 ev.confirmed_at_s, lag_signal_s, lag_wall_s)
        if self.hooks is not None:
            self.hooks.run({
                "CRAMPWATCH_EVENT": "onset",
                "CRAMPWATCH_EPISODE_ID": str(row if row is not None else ""),
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
                rec.tap.poll(rec.pipe)
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
        cols = rec.tap.take_minutes(final=final)
        if cols is not None:
            rec.unsaved_minutes.extend(minute_rows(cols, rec.start_utc, rec.tap.step_s))
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
                    channel=rec.emg_info.channels[rec.emg_col], emg_fs_hz=rec.emg_info.fs_hz,
                    acc_fs_hz=rec.acc_info.fs_hz if rec.acc_info else None)
            if rec.rec_id is None:
                return
        while rec.unsaved_gaps and self._db_ok(self.db.add_gap, rec.rec_id,
                                               *rec.unsaved_gaps[0]):
            rec.unsaved_gaps.pop(0)
        while rec.unsaved_episodes:
            row, ep, final = rec.unsaved_episodes[0]
            if row is None:
                row = self._db_call(self.db.open_episode, rec.night_id, rec.rec_id,
                                    rec.start_utc, ep, rec.emg_info.fs_hz,
                                    rec.emg_info.channels[rec.emg_col])
                if row is None:
                    break
                rec.unsaved_episodes[0] = (row, ep, final)
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
        """The one-line status: link, signal quality, envelope, episodes, recording."""
        if not self.ever_connected:
            state = "waiting for the board"
        else:
            state = "connected" if self.connected else "DISCONNECTED, retrying"
        rec = self.rec
        if rec is None:
            return f"{state}; no signal yet"
        fs = rec.emg_info.fs_hz
        parts = [state, (f"{_hms(self.session_samples / fs)} of signal "
                         f"(samples={rec.emg_end}, gaps={rec.gaps}/{rec.gap_samples})")]
        if rec.warmup is not None:
            parts.append("detector catching up")
        else:
            good, env = rec.tap.quality()
            if good is not None:
                parts.append(f"signal {100 * good:.0f} % good")
                parts.append(f"EMG {env:.1f} uV (floor {rec.pipe.floor_uv:.1f})")
        n_open = len(rec.rows)
        parts.append(f"{self._night_episode_count()} episode(s)"
                     + (f", {n_open} in progress" if n_open else ""))
        st = rec.writer.stats
        size = _size(rec.path)
        parts.append(f"rec {size / 1e6:.1f} MB " + ("ok" if st.recording_ok
                                                    else f"PAUSED: {st.last_error}"))
        return "; ".join(parts)

    def _night_episode_count(self) -> int:
        rec = self.rec
        if rec is None or self.db is None:
            return 0
        try:
            return int(self.db.db.execute("SELECT COUNT(*) FROM episodes WHERE night_id=?",
                                          (rec.night_id,)).fetchone()[0])
        except sqlite3.Error as exc:
            self._db_error(exc)
            return rec.episodes

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
                self.db.db.rollback()        # a half-done transaction must not linger
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


#: a capture started less than this many hours after ``stop_at`` stops at once: it is
#: a restart after the night ended (08:01 with stop_at 08:00), not a new night
STOP_AT_GRACE_H = 4.0


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


def _next_noon(host_s: float) -> float:
    """Host time (POSIX s) of the first local noon after ``host_s``: a new night
    begins there (the same rule as :func:`~crampwatch.tools.episode_log.night_date`)."""
    local = _utc(host_s).astimezone()
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon <= local:
        noon += timedelta(days=1)
    return noon.timestamp()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


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
