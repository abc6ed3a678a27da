"""Writer of the crash-safe capture recording (see :mod:`.recording`)."""

from __future__ import annotations

import atexit
import collections
import dataclasses
import errno
import fcntl
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from crampwatch.firmware_bridge._recording_format import (
    FORMAT_VERSION,
    MAGIC,
    MAX_SAMPLES_PAYLOAD,
    RecordType,
    encode_json,
    encode_record,
    encode_samples,
)
from crampwatch.firmware_bridge._recording_header import (
    _KEEP_FD_ERRNOS,
    HOST_TIME_TOLERANCE_S,
    RecordingHeader,
    _local_zone,
    _spec_from_info,
    _StreamSpec,
    _utc_iso,
    logger,
)
from crampwatch.firmware_bridge.recording_reader import _FileIndex, _TruncatedHeader
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent

from crampwatch import __version__
from crampwatch._files import ensure_private_dir
from crampwatch.errors import CrampwatchError, InputFileError

# ---------------------------------------------------------------------------
# writer
# ---------------------------------------------------------------------------

@dataclass
class WriterStats:
    """Counters of a :class:`CaptureWriter` (a snapshot: ``writer.stats``).

    ``blocks_dropped``/``samples_dropped`` were refused because the in-memory
    queue was full (the disk too slow or failing); every dropped range is
    stored as a ``"gap"`` event with ``detail["cause"] == "recording"`` once
    writing works again.  ``blocks_unwritten``/``samples_unwritten`` were
    still in memory when :meth:`CaptureWriter.close` gave up on a failing disk
    (or when the writer thread died).  ``unstored`` counts, per stream, the
    samples handed to the writer that are not in the file for either reason.
    ``failed`` says why the writer thread stopped when it stopped on its own
    (a bug): nothing more can be written.
    """

    blocks_received: int = 0
    blocks_written: int = 0
    samples_written: int = 0
    events_written: int = 0
    blocks_dropped: int = 0
    samples_dropped: int = 0
    events_dropped: int = 0
    blocks_unwritten: int = 0
    samples_unwritten: int = 0
    unstored: dict = field(default_factory=dict)
    failed: str | None = None
    records_written: int = 0
    bytes_written: int = 0
    writes: int = 0
    fsyncs: int = 0
    write_errors: int = 0
    queue_bytes: int = 0
    recording_ok: bool = True
    last_error: str | None = None
    paused_s: float = 0.0


@dataclass(frozen=True)
class ResumePoint:
    """Where a stream stopped in a file reopened for appending."""

    end_index: int                    # one past the last stored sample
    end_host_time_s: float | None     # host time of that (missing) next sample


class CaptureWriter:
    """Append samples and events to a crash-safe recording, without blocking.

    Parameters
    ----------
    path : str or path-like
        The recording file.  Missing parent directories are created (0700);
        the file is created owner-only (0600), and an existing file is set to
        0600 too.
    header_info : RecordingHeader or dict
        The self-description written at the top of the file (a dict is passed
        to ``RecordingHeader(**header_info)``).
    append : bool
        Resume the same night's file: an existing recording with the same
        streams gets a SEGMENT record and the new samples after it.  A partial
        record left at its end by an interrupted writer is cut off first.
        Without ``append`` an existing non-empty file is an error.
    fsync_interval_s : float
        The writer thread writes what is queued and ``fsync``\\ s at least this
        often (1 s: a crash loses at most about the last second).
    queue_max_bytes : int
        Memory for samples not yet on disk.  When it is full (disk too slow,
        full or gone) new blocks are dropped, counted, and their ranges stored
        as gap events once writing works again.  16 MiB hold about 50 minutes
        of 1 kHz EMG + 100 Hz accelerometer.
    retry_interval_s : float
        After a disk error, how often to try again.

    Attributes
    ----------
    path : str
    stats : WriterStats
        A snapshot of the counters (property).
    resume_point : dict of str to ResumePoint
        In a resumed file, where each stream stopped (empty for a new file);
        :meth:`resume_stream` turns it into the next session's first index.

    Notes
    -----
    ``write_block``/``write_event`` only convert and enqueue: the caller never
    waits on the disk.  Disk errors (ENOSPC, EACCES, EIO, an unwritable
    directory) are logged once as an error, then retried quietly; recording
    resumes on its own when the disk works again.  Programming errors (a
    stream not in the header, a wrong channel count) raise ``ValueError``.

    Blocks of one stream must arrive in order of ``first_index``.  Send a gap
    event *before* the first block after the gap.  Events are stored in order
    relative to the samples of their own stream.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo
    >>> path = os.path.join(tempfile.mkdtemp(), "night.cwrec")
    >>> hdr = RecordingHeader(emg=StreamInfo("emg", 1000.0, ("emg",), "uV"),
    ...                       acc=StreamInfo("acc", 100.0, ("x", "y", "z"), "g"))
    >>> w = CaptureWriter(path, hdr, fsync_interval_s=1.0)
    >>> w.write_block(SampleBlock("emg", 1000.0, 0, np.ones((100, 1)), host_time_s=1.7e9))
    >>> w.write_event(SourceEvent("gap", 1.7e9 + 0.1, stream="emg", first_index=100,
    ...                           n_samples=50))
    >>> w.write_block(SampleBlock("emg", 1000.0, 150, np.ones((100, 1))))
    >>> w.flush()
    True
    >>> w.close().blocks_written
    2
    """

    def __init__(self, path, header_info: RecordingHeader | dict, *, append: bool = False,
                 fsync_interval_s: float = 1.0, queue_max_bytes: int = 16 * 2**20,
                 retry_interval_s: float = 5.0, _os_write=os.write, _os_fsync=None):
        self.path = os.fspath(path)
        if isinstance(header_info, dict):
            header_info = RecordingHeader(**header_info)
        self._header = header_info
        self._specs: dict[str, _StreamSpec] = {
            "emg": _spec_from_info(header_info.emg, header_info.emg_storage, "emg")}
        if header_info.acc is not None:
            self._specs["acc"] = _spec_from_info(header_info.acc, header_info.acc_storage, "acc")
        if header_info.start_time is not None and header_info.start_time.tzinfo is None:
            raise ValueError("RecordingHeader.start_time must be timezone-aware")
        if not (0 < fsync_interval_s < math.inf and 0 < retry_interval_s < math.inf):
            raise ValueError("fsync_interval_s and retry_interval_s must be positive and finite, "
                             f"got {fsync_interval_s} and {retry_interval_s}")
        self._append = bool(append)
        self._fsync_interval_s = float(fsync_interval_s)
        self._retry_interval_s = float(retry_interval_s)
        self._queue_max_bytes = int(queue_max_bytes)
        self._high_water = max(1, self._queue_max_bytes // 4)
        self._os_write = _os_write
        self._os_fsync = _os_fsync or getattr(os, "fdatasync", os.fsync)

        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque = collections.deque()
        self._mem_bytes = 0
        self._lost: dict[str, list[list]] = {}        # stream -> [[first, end, n_blocks, host]]
        self._stats = WriterStats()
        self._closing = False
        self._closed = False
        self._flush_req = 0
        self._flush_done = 0
        self._flush_ok = True
        self._dropping = False
        self._last_end: dict[str, int] = {}           # per stream, to warn on disorder
        self._disorder_warned: set[str] = set()

        # state owned by the writer thread (and by __init__ before it starts)
        self._fd: int | None = None
        self._file_end = 0
        self._needs_trim = False
        self._ever_opened = False
        self._segment_count = 0
        self._pending: list = []
        self._failing = False
        self._pause_started: float | None = None
        self._pause_error = ""
        self._pause_dropped = 0
        self._last_attempt = time.monotonic()
        self.resume_point: dict[str, ResumePoint] = {}

        try:
            self._open(reopen=False)
        except OSError as exc:
            self._fail(exc, "open")
        self._thread = threading.Thread(target=self._run, name="crampwatch-recording",
                                        daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- public API -------------------------------------------------------
    @property
    def stats(self) -> WriterStats:
        """A snapshot of the writer's counters (:class:`WriterStats`)."""
        with self._cond:
            snap = dataclasses.replace(self._stats)
            snap.unstored = dict(self._stats.unstored)
            snap.queue_bytes = self._mem_bytes
            snap.recording_ok = not self._failing
            if self._pause_started is not None:
                snap.paused_s += time.monotonic() - self._pause_started
        return snap

    def write_block(self, block: SampleBlock) -> None:
        """Queue one block for the file; never waits on the disk.

        The data are converted to the stream's storage type here (a copy), so
        the caller may reuse its array afterwards.

        Raises
        ------
        ValueError
            If the stream is not in the header, the channel count differs from
            the header's, or the writer is closed.
        """
        spec = self._specs.get(block.stream)
        if spec is None:
            raise ValueError(f"stream {block.stream!r} is not in this recording's header "
                             f"({', '.join(self._specs)})")
        arr = np.asarray(block.data)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != len(spec.channels):
            raise ValueError(f"{block.stream} block has shape {arr.shape}; the header has "
                             f"{len(spec.channels)} channel(s)")
        if arr.shape[0] == 0:
            return
        stored = _to_storage(arr, spec)
        first = int(block.first_index)
        host = None if block.host_time_s is None else float(block.host_time_s)
        if host is not None and not math.isfinite(host):
            host = None
        pieces = _split_rows(stored, first, host, spec)
        with self._cond:
            if self._closing:
                raise ValueError(f"{self.path}: recording writer is closed")
            self._stats.blocks_received += 1
            if self._stats.failed:            # the thread is gone: count, never queue
                self._stats.blocks_unwritten += 1
                self._stats.samples_unwritten += stored.shape[0]
                self._stats.unstored[spec.name] = \
                    self._stats.unstored.get(spec.name, 0) + stored.shape[0]
                return
            prev_end = self._last_end.get(spec.name)
            if prev_end is not None and first < prev_end and spec.name not in self._disorder_warned:
                self._disorder_warned.add(spec.name)
                logger.warning("%s: %s block starts at sample %d, before the end of the previous "
                               "one (%d); stored as is", self.path, spec.name, first, prev_end)
            self._last_end[spec.name] = first + stored.shape[0]
            size = stored.nbytes + 64 * len(pieces)
            if self._mem_bytes + size > self._queue_max_bytes:
                self._drop_block(spec, first, stored.shape[0], host)
                return
            wake = not self._queue
            self._dropping = False
            self._emit_lost_events(spec.name)
            for piece in pieces:
                self._queue.append(("b", spec, piece[0], piece[1], piece[2]))
            self._mem_bytes += size
            if wake or self._mem_bytes >= self._high_water:
                self._cond.notify_all()     # start the writer's timer, or write early

    def write_event(self, event: SourceEvent) -> None:
        """Queue one event (gap, connected, disconnected, status...) for the file.

        Raises
        ------
        ValueError
            If the writer is closed.
        """
        obj = _event_to_json(event)
        payload = encode_json(obj)
        size = len(payload) + 64
        with self._cond:
            if self._closing:
                raise ValueError(f"{self.path}: recording writer is closed")
            if self._mem_bytes + size > self._queue_max_bytes:
                self._stats.events_dropped += 1
                return
            wake = not self._queue
            if event.stream in self._specs:
                self._emit_lost_events(event.stream)
            self._queue.append(("e", payload, event.stream, size))
            self._mem_bytes += size
            if wake:
                self._cond.notify_all()

    def resume_stream(self, stream: str, host_time_s: float) -> int:
        """First sample index for ``stream`` in a session appended to this file.

        Continues the file's indices from where the stream stopped, advanced by
        the host time that passed (so EMG and accelerometer stay aligned), and
        queues a gap event (``detail["cause"] == "restart"``) for the samples
        missed in between.  Returns 0 for a file that was not resumed.

        Examples
        --------
        >>> first = writer.resume_stream("emg", time.time())  # doctest: +SKIP
        """
        spec = self._specs[stream]
        rp = self.resume_point.get(stream)
        if rp is None:
            return 0
        skip = 0
        if rp.end_host_time_s is not None and math.isfinite(host_time_s):
            skip = max(0, int(round((host_time_s - rp.end_host_time_s) * spec.fs_hz)))
        if skip:
            self.write_event(SourceEvent(
                "gap", float(host_time_s) - skip / spec.fs_hz, stream=stream,
                first_index=rp.end_index, n_samples=skip, detail={"cause": "restart"}))
        return rp.end_index + skip

    def flush(self, timeout_s: float | None = 30.0) -> bool:
        """Write and fsync everything queued so far now, and wait for it.

        Returns True if all of it is on disk, False if the disk failed (the
        data stay queued and are retried) or ``timeout_s`` passed.
        """
        with self._cond:
            if self._closed:
                return self._flush_ok
            self._flush_req += 1
            mine = self._flush_req
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: self._flush_done >= mine or self._closed,
                                       timeout_s)
            return bool(done and self._flush_ok)

    def close(self, timeout_s: float = 30.0) -> WriterStats:
        """Write what is queued plus a CLOSE record, fsync, close the file.

        A disk that still fails gets one last attempt; what cannot be written
        is counted in ``blocks_unwritten`` and logged.  Returns the final
        :class:`WriterStats`.
        """
        with self._cond:
            already = self._closing
            self._closing = True
            self._cond.notify_all()
        if not already:
            atexit.unregister(self.close)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.error("%s: the recording writer did not finish within %g s "
                             "(disk hung?); the last data may be missing", self.path, timeout_s)
        return self.stats

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- queue helpers (called with the lock held) --------------------------
    @property
    def failed(self) -> str | None:
        """Why the writer thread stopped on its own (None while it works or after
        :meth:`close`): the recording cannot go on."""
        return self._stats.failed

    def _drop_block(self, spec: _StreamSpec, first: int, n: int, host) -> None:
        self._stats.blocks_dropped += 1
        self._stats.samples_dropped += n
        self._stats.unstored[spec.name] = self._stats.unstored.get(spec.name, 0) + n
        self._pause_dropped += 1
        ranges = self._lost.setdefault(spec.name, [])
        if ranges and ranges[-1][1] == first:
            ranges[-1][1] = first + n
            ranges[-1][2] += 1
        else:
            ranges.append([first, first + n, 1, host])
        if not self._dropping:
            self._dropping = True
            logger.warning("%s: recording queue full (%d bytes not yet on disk); dropping %s "
                           "samples from index %d on, until the disk catches up (the lost "
                           "ranges are stored as gaps)", self.path, self._mem_bytes, spec.name,
                           first)

    def _emit_lost_events(self, stream: str) -> None:
        ranges = self._lost.pop(stream, None)
        if not ranges:
            return
        for first, end, n_blocks, host in ranges:
            obj = {"kind": "gap", "host_time_s": host if host is not None else time.time(),
                   "stream": stream, "first_index": first, "n_samples": end - first,
                   "detail": {"cause": "recording", "blocks": n_blocks,
                              "error": self._stats.last_error or "queue full (disk too slow)"}}
            payload = encode_json(obj)
            self._queue.append(("e", payload, stream, len(payload) + 64))
            self._mem_bytes += len(payload) + 64

    # -- writer thread ----------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:      # a bug: the thread ends, and says so loudly
            why = f"the recording writer stopped: {type(exc).__name__}: {exc}"
            logger.critical("%s: %s", self.path, why, exc_info=exc)
            with self._cond:
                self._stats.failed = why
                self._stats.last_error = why
                self._failing = True
                self._pending.extend(self._queue)
                self._queue.clear()
            try:
                self._finish()
            finally:
                with self._cond:
                    self._closed = True
                    self._flush_ok = False
                    self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closing or self._flush_req > self._flush_done:
                        break
                    has_work = bool(self._queue) or bool(self._pending) or self._fd is None
                    if not has_work:
                        self._cond.wait()
                        continue
                    if self._failing:
                        due = self._last_attempt + self._retry_interval_s
                    else:
                        if self._mem_bytes >= self._high_water:
                            break
                        due = self._last_attempt + self._fsync_interval_s
                    now = time.monotonic()
                    if now >= due:
                        break
                    self._cond.wait(min(due - now, 60.0))
                closing = self._closing
                if closing:
                    for stream in list(self._lost):
                        self._emit_lost_events(stream)
                self._pending.extend(self._queue)
                self._queue.clear()
                flush_req = self._flush_req
            ok = self._attempt(closing)        # a bug raises: see _run
            with self._cond:
                self._flush_done = max(self._flush_done, flush_req)
                self._flush_ok = ok
                self._cond.notify_all()
            if closing:
                break
        self._finish()

    def _attempt(self, closing: bool) -> bool:
        """Open if needed, write pending records, fsync.  Thread only."""
        self._last_attempt = time.monotonic()
        if self._fd is None:
            try:
                self._open(reopen=self._ever_opened)
            except (OSError, CrampwatchError) as exc:
                self._fail(exc, "open")
                return False
        items = self._pending
        if not items and not closing:
            return True
        parts = []
        if self._failing and self._pause_started is not None:
            parts.append(encode_record(RecordType.EVENT, encode_json({
                "kind": "warning", "host_time_s": time.time(),
                "detail": {"cause": "recording", "error": self._pause_error,
                           "paused_s": round(time.monotonic() - self._pause_started, 3),
                           "blocks_dropped": self._pause_dropped}})))
        data_parts, n_blocks, n_samples, n_events, n_records, mem = _encode_batch(items)
        parts.extend(data_parts)
        if closing:
            st = self.stats
            parts.append(encode_record(RecordType.CLOSE, encode_json({
                "closed_utc": _utc_iso(datetime.now(timezone.utc)),
                "blocks_written": st.blocks_written + n_blocks,
                "blocks_dropped": st.blocks_dropped, "samples_dropped": st.samples_dropped,
                "events_dropped": st.events_dropped, "write_errors": st.write_errors})))
        data = b"".join(parts)
        try:
            if self._needs_trim:
                os.ftruncate(self._fd, self._file_end)
                self._needs_trim = False
            self._write_all(self._fd, data)
        except OSError as exc:
            self._rollback()
            self._fail(exc, "write to")
            return False
        self._file_end += len(data)
        self._pending = []
        with self._cond:
            s = self._stats
            s.blocks_written += n_blocks
            s.samples_written += n_samples
            s.events_written += n_events
            s.records_written += n_records + (len(parts) - len(data_parts))
            s.bytes_written += len(data)
            s.writes += 1
            self._mem_bytes -= mem
        try:
            self._os_fsync(self._fd)
        except OSError as exc:
            self._fail(exc, "fsync")
            return False
        with self._cond:
            self._stats.fsyncs += 1
        if self._failing:
            self._recovered()
        return True

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        done = 0
        while done < len(data):
            n = self._os_write(fd, view[done:])
            if n <= 0:
                raise OSError(errno.EIO, "write returned 0 bytes")
            done += n

    def _rollback(self) -> None:
        """Cut a partly written batch off again, so no half record stays in the file."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._file_end)
        except OSError:
            self._needs_trim = True

    def _fail(self, exc: Exception, what: str) -> None:
        message = f"cannot {what} {self.path}: {getattr(exc, 'strerror', None) or exc}"
        with self._cond:
            self._stats.write_errors += 1
            self._stats.last_error = message
            first = not self._failing
            self._failing = True
            if first:
                self._pause_started = time.monotonic()
                self._pause_error = message
                self._pause_dropped = 0
        if first:
            logger.error("recording paused: %s. Detection and the episode log go on; samples "
                         "are kept in memory (up to %.0f MB), then dropped and stored as gaps; "
                         "retrying every %g s", message, self._queue_max_bytes / 2**20,
                         self._retry_interval_s)
        else:
            logger.debug("recording still failing: %s", message)
        code = getattr(exc, "errno", None)
        if self._fd is not None and code not in _KEEP_FD_ERRNOS:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _recovered(self) -> None:
        with self._cond:
            paused = time.monotonic() - (self._pause_started or time.monotonic())
            self._stats.paused_s += paused
            self._failing = False
            self._pause_started = None
            dropped = self._pause_dropped
        logger.warning("%s: recording resumed after %.1f s (%d blocks dropped meanwhile, "
                       "stored as gaps)", self.path, paused, dropped)

    def _finish(self) -> None:
        with self._cond:
            unwritten = 0
            for it in self._pending:
                if it[0] == "b":
                    unwritten += 1
                    n = int(it[4].shape[0])
                    self._stats.samples_unwritten += n
                    name = it[1].name
                    self._stats.unstored[name] = self._stats.unstored.get(name, 0) + n
            self._pending = []
            self._stats.blocks_unwritten += unwritten
            self._closed = True
            self._cond.notify_all()
        if unwritten:
            logger.error("%s: recording closed with %d blocks that could not be written (%s)",
                         self.path, unwritten, self._stats.last_error)
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError as exc:
                logger.error("%s: closing the recording failed: %s", self.path, exc)
            self._fd = None

    # -- opening ----------------------------------------------------------
    def _header_dict(self) -> dict:
        utc_offset_s, tzname = _local_zone()
        h = self._header
        return {
            "format": "crampwatch-rec", "format_version": FORMAT_VERSION,
            "created_utc": _utc_iso(datetime.now(timezone.utc)),
            "crampwatch_version": __version__,
            "board": h.board, "source_url": h.source_url,
            "start_time_utc": _utc_iso(h.start_time) if h.start_time else None,
            "utc_offset_s": utc_offset_s, "timezone": tzname,
            "fsync_interval_s": self._fsync_interval_s,
            "streams": [s.to_json() for s in self._specs.values()],
            "extra": dict(h.extra),
        }

    def _open(self, reopen: bool) -> None:
        """Open (create or resume) the file and write its HEADER or SEGMENT record."""
        parent = os.path.dirname(os.path.abspath(self.path))
        ensure_private_dir(parent)            # 0700 whatever the umask
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        size0 = None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputFileError(f"{self.path}: another process is writing this recording",
                                     path=self.path) from None
            os.fchmod(fd, 0o600)
            size0 = os.fstat(fd).st_size
            if size0 > 0 and not (self._append or reopen):
                raise InputFileError(
                    f"{self.path}: file already exists; resume it with append=True or choose "
                    f"another name", path=self.path)
            preamble, new_file = self._preamble(fd, size0, reopen)
            size1 = os.fstat(fd).st_size
            self._write_all(fd, preamble)
            self._os_fsync(fd)
            if new_file:
                _fsync_dir(parent)
        except BaseException:
            if size0 is not None:
                try:
                    size_now = os.fstat(fd).st_size
                    if size_now > size0:
                        os.ftruncate(fd, size0)
                except OSError:
                    pass
            os.close(fd)
            raise
        self._fd = fd
        self._file_end = size1 + len(preamble)
        self._needs_trim = False
        self._ever_opened = True
        with self._cond:
            self._stats.bytes_written += len(preamble)
            self._stats.records_written += 1
            self._stats.fsyncs += 1

    def _preamble(self, fd: int, size: int, reopen: bool) -> tuple[bytes, bool]:
        header = self._header_dict()
        if size == 0:
            return MAGIC + encode_record(RecordType.HEADER, encode_json(header)), True
        try:
            index = _FileIndex.build(self.path)
        except _TruncatedHeader:
            logger.warning("%s: existing file holds only an incomplete header; starting it anew",
                           self.path)
            os.ftruncate(fd, 0)
            return MAGIC + encode_record(RecordType.HEADER, encode_json(header)), True
        for name, spec in self._specs.items():
            old = index.specs.get(name)
            if old is None or not old.same_layout(spec):
                raise InputFileError(
                    f"{self.path}: cannot resume: the file's {name} stream "
                    f"({old.to_json() if old else 'absent'}) differs from this session's "
                    f"({spec.to_json()}); record into a new file", path=self.path)
        # when the file was last written (before the cut below touches it): every sample
        # it stores had reached the host by then
        written_s = os.fstat(fd).st_mtime
        discarded = 0
        if index.stats.last_record_end < size:
            discarded = size - index.stats.last_record_end
            os.ftruncate(fd, index.stats.last_record_end)
            logger.warning("%s: cut off %d bytes of an incomplete record at byte offset %d "
                           "left by an interrupted writer", self.path, discarded,
                           index.stats.last_record_end)
        self.resume_point = {}
        for name, ext in index.extents.items():
            end_host = None
            if ext.last_host_time_s is not None:
                fs = index.specs[name].fs_hz
                end_host = ext.last_host_time_s + ext.last_n / fs
                # the last record at the nominal rate puts its end up to last_n/fs after
                # its first sample; a record that came faster (a backlog read in one go,
                # a source faster than real time) was on the host earlier than that: it
                # was written by ``written_s``, so the next sample was due at most one
                # sample period later.  Otherwise a restart sooner than that overrun
                # would find no time missing and store no restart gap.
                if math.isfinite(written_s):
                    end_host = min(end_host, written_s + 1.0 / fs)
            self.resume_point[name] = ResumePoint(ext.end_index, end_host)
        self._segment_count = len(index.segments)
        segment = {
            "segment": len(index.segments), "reason": "reopen" if reopen else "resume",
            "created_utc": header["created_utc"], "crampwatch_version": __version__,
            "board": header["board"], "source_url": header["source_url"],
            "utc_offset_s": header["utc_offset_s"], "timezone": header["timezone"],
            "discarded_tail_bytes": discarded, "streams": header["streams"],
            "extra": header["extra"],
        }
        return encode_record(RecordType.SEGMENT, encode_json(segment)), False


def _fsync_dir(path: str) -> None:
    """Make a new file's directory entry durable too (best effort)."""
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _to_storage(arr: np.ndarray, spec: _StreamSpec) -> np.ndarray:
    if spec.is_identity:
        return np.array(arr, dtype=spec.dtype, order="C", copy=True)
    x = (np.asarray(arr, dtype=np.float64) - spec.offset) / spec.scale
    if spec.dtype.kind == "i":
        info = np.iinfo(spec.dtype)
        x = np.clip(np.rint(np.nan_to_num(x)), info.min, info.max)
    return np.ascontiguousarray(x, dtype=spec.dtype)


def _split_rows(stored: np.ndarray, first: int, host, spec: _StreamSpec) -> list:
    row_bytes = stored.shape[1] * stored.dtype.itemsize
    max_rows = max(1, MAX_SAMPLES_PAYLOAD // row_bytes)
    if stored.shape[0] <= max_rows:
        return [(first, host, stored)]
    out = []
    for k in range(0, stored.shape[0], max_rows):
        h = None if host is None else host + k / spec.fs_hz
        out.append((first + k, h, stored[k:k + max_rows]))
    return out


def _event_to_json(ev: SourceEvent) -> dict:
    return {"kind": str(ev.kind), "host_time_s": float(ev.host_time_s), "stream": ev.stream,
            "first_index": None if ev.first_index is None else int(ev.first_index),
            "n_samples": None if ev.n_samples is None else int(ev.n_samples),
            "detail": dict(ev.detail or {})}


def _host_continues(run_host, run_n, fs_hz, host) -> bool:
    if run_host is None or host is None:
        return run_host is None and host is None
    return abs(run_host + run_n / fs_hz - host) <= HOST_TIME_TOLERANCE_S


def _encode_batch(items: list):
    """Encode queued items, merging contiguous blocks of a stream into one record.

    Returns ``(parts, n_blocks, n_samples, n_events, n_records, mem_bytes)``.
    """
    parts: list[bytes] = []
    runs: dict[str, list] = {}   # stream -> [spec, first, host, arrays, n, nbytes]
    n_blocks = n_samples = n_events = mem = 0

    def close_run(name):
        run = runs.pop(name, None)
        if run is not None:
            parts.append(encode_samples(run[0].id, run[1], run[2], run[3]))

    for it in items:
        if it[0] == "b":
            _, spec, first, host, arr = it
            run = runs.get(spec.name)
            if run is not None and not (
                    first == run[1] + run[4]
                    and run[5] + arr.nbytes <= MAX_SAMPLES_PAYLOAD
                    and _host_continues(run[2], run[4], spec.fs_hz, host)):
                close_run(spec.name)
                run = None
            if run is None:
                runs[spec.name] = [spec, first, host, [arr], arr.shape[0], arr.nbytes]
            else:
                run[3].append(arr)
                run[4] += arr.shape[0]
                run[5] += arr.nbytes
            n_blocks += 1
            n_samples += arr.shape[0]
            mem += arr.nbytes + 64
        else:
            _, payload, stream, size = it
            if stream is not None:
                close_run(stream)
            parts.append(encode_record(RecordType.EVENT, payload))
            n_events += 1
            mem += size
    for name in list(runs):
        close_run(name)
    return parts, n_blocks, n_samples, n_events, len(parts), mem
