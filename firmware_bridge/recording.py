"""crampwatch's crash-safe, append-only capture recording: writer and reader.

The capture daemon hands every :class:`SampleBlock` and :class:`SourceEvent`
to a :class:`CaptureWriter` as it arrives.  The writer never blocks the
caller: a thread drains a bounded in-memory queue, appends checksummed records
to the file and ``fsync``\\ s it at least every ``fsync_interval_s``.  After a
SIGKILL or a power loss the file is readable up to its last whole record.
``crampwatch replay`` and ``crampwatch export`` read it with
:func:`open_capture` (through :func:`crampwatch.firmware_bridge.readers.open_recording`).

The byte layout is specified in ``RECORDING_FORMAT.md`` next to this module.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from crampwatch.firmware_bridge.types import SampleBlock, StreamInfo
>>> path = os.path.join(tempfile.mkdtemp(), "night.cwrec")
>>> header = RecordingHeader(emg=StreamInfo("emg", 1000.0, ("gastroc_l",), "uV"),
...                          board="open", source_url="sim://")
>>> with CaptureWriter(path, header) as writer:
...     writer.write_block(SampleBlock("emg", 1000.0, 0, np.zeros((100, 1))))
>>> with open_capture(path) as reader:
...     [b.n_samples for b in reader.blocks()]
[100]
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import errno
import fcntl
import json
import logging
import math
import os
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from crampwatch import __version__
from crampwatch._files import ensure_private_dir
from crampwatch.errors import ChannelNotFoundError, CrampwatchError, InputFileError, UnitError
from crampwatch.firmware_bridge._recording_format import (
    FORMAT_VERSION,
    MAGIC,
    MAGIC_PREFIX,
    MAX_SAMPLES_PAYLOAD,
    REC_CRC,
    REC_HEAD,
    RECORD_OVERHEAD,
    SAMPLES_HEAD,
    STORAGE_DTYPES,
    SYNC,
    RecordScanner,
    RecordType,
    ScanIssue,
    decode_samples_head,
    encode_json,
    encode_record,
    encode_samples,
)
from crampwatch.firmware_bridge.readers import open_regular
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo

__all__ = [
    "CaptureWriter",
    "CaptureReader",
    "RecordingHeader",
    "StreamStorage",
    "WriterStats",
    "ResumePoint",
    "SegmentInfo",
    "StreamExtent",
    "ReadStats",
    "Record",
    "SamplesRecord",
    "open_capture",
    "iter_records",
]

logger = logging.getLogger(__name__)

STREAM_IDS = {"emg": 0, "acc": 1}
STREAM_UNITS = {"emg": "uV", "acc": "g"}
# consecutive blocks are merged into one record when the host time of the next
# block is within this of the time predicted from the first one's and fs_hz
HOST_TIME_TOLERANCE_S = 0.005
# errors after which the open descriptor is kept and the write retried; any
# other error closes it and the file is reopened (and re-checked) on retry
_KEEP_FD_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EINTR, errno.EAGAIN}


# ---------------------------------------------------------------------------
# header
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamStorage:
    """How one stream's samples are stored: ``physical = stored * scale + offset``.

    ``"float32"`` (the default) stores physical values; its 24-bit mantissa
    holds every count of a 24-bit ADC exactly, so nothing the board measured
    is lost and no scale has to be trusted.  ``"int16"``/``"int32"`` halve or
    keep the size for boards whose samples are exact multiples of ``scale``
    (e.g. BITalino's 10-bit counts); values are rounded to the nearest step
    and clipped to the type's range.  ``"float64"`` keeps everything.
    """

    dtype: str = "float32"
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self):
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage dtype must be one of {sorted(STORAGE_DTYPES)}, "
                             f"not {self.dtype!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"storage scale must be a positive number, not {self.scale!r}")


@dataclass
class RecordingHeader:
    """What the writer puts in the file's self-describing header.

    Attributes
    ----------
    emg : StreamInfo
        The EMG stream (name ``"emg"``, unit ``"uV"``, its channel labels).
    acc : StreamInfo or None
        The accelerometer stream (name ``"acc"``, unit ``"g"``), if any.
    board : str
        Board type (``"cyton"``, ``"bitalino"``, ``"open"``, ``"sim"``...).
    source_url : str
        The URL the samples come from.
    start_time : datetime or None
        Timezone-aware host time of sample index 0 of every stream.  None:
        readers take it from the first EMG record's host time.
    emg_storage, acc_storage : StreamStorage
        Storage type and scale of each stream (float32 by default).
    extra : dict
        Free JSON-able details (leg, firmware version, gains...).
    """

    emg: StreamInfo
    acc: StreamInfo | None = None
    board: str = "unknown"
    source_url: str = ""
    start_time: datetime | None = None
    emg_storage: StreamStorage = field(default_factory=StreamStorage)
    acc_storage: StreamStorage = field(default_factory=StreamStorage)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _StreamSpec:
    id: int
    name: str
    fs_hz: float
    channels: tuple[str, ...]
    unit: str
    dtype: np.dtype
    scale: float
    offset: float

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "fs_hz": self.fs_hz,
                "channels": list(self.channels), "unit": self.unit,
                "dtype": self.dtype.str, "scale": self.scale, "offset": self.offset}

    @property
    def is_identity(self) -> bool:
        return self.dtype.kind == "f" and self.scale == 1.0 and self.offset == 0.0

    def same_layout(self, other: _StreamSpec) -> bool:
        return self.to_json() == other.to_json()


def _spec_from_info(info: StreamInfo, storage: StreamStorage, name: str) -> _StreamSpec:
    if info.name != name:
        raise ValueError(f"the {name} stream's StreamInfo is named {info.name!r}")
    if info.unit != STREAM_UNITS[name]:
        raise ValueError(f"the {name} stream must be in {STREAM_UNITS[name]!r}, not {info.unit!r}")
    if not (math.isfinite(info.fs_hz) and info.fs_hz > 0):
        raise ValueError(f"the {name} stream's fs_hz must be positive, not {info.fs_hz!r}")
    if not info.channels:
        raise ValueError(f"the {name} stream has no channels")
    return _StreamSpec(STREAM_IDS[name], name, float(info.fs_hz), tuple(map(str, info.channels)),
                       info.unit, np.dtype(STORAGE_DTYPES[storage.dtype]),
                       float(storage.scale), float(storage.offset))


def _spec_from_json(obj: dict) -> _StreamSpec:
    dtype = np.dtype(obj["dtype"])
    if dtype.str not in STORAGE_DTYPES.values():
        raise ValueError(f"unsupported storage dtype {obj['dtype']!r}")
    fs_hz = float(obj["fs_hz"])
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise ValueError(f"bad fs_hz {obj['fs_hz']!r}")
    channels = tuple(str(c) for c in obj["channels"])
    if not channels:
        raise ValueError("stream without channels")
    return _StreamSpec(int(obj["id"]), str(obj["name"]), fs_hz, channels, str(obj["unit"]),
                       dtype, float(obj.get("scale", 1.0)), float(obj.get("offset", 0.0)))


def _utc_iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat()


def _parse_utc(text) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _local_zone() -> tuple[int, str]:
    now = datetime.now().astimezone()
    off = now.utcoffset()
    return int(off.total_seconds()) if off is not None else 0, now.tzname() or ""


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


# ---------------------------------------------------------------------------
# reader
# ---------------------------------------------------------------------------

class _TruncatedHeader(InputFileError):
    """The file ends inside its magic line or header record."""


@dataclass
class StreamExtent:
    """Which samples of one stream a file (or segment) holds."""

    first_index: int
    end_index: int                      # one past the last stored sample
    n_samples: int                      # samples actually stored (gaps excluded)
    first_host_time_s: float | None
    last_host_time_s: float | None      # host time of the last record's first sample
    last_n: int = 0                     # samples in that last record


@dataclass
class SegmentInfo:
    """One writing session in the file: the first one, or one appended later."""

    index: int
    offset: int                         # byte offset of its HEADER/SEGMENT record
    reason: str                         # "start", "resume" or "reopen"
    created_utc: datetime | None
    source_url: str
    streams: dict = field(default_factory=dict)   # name -> StreamExtent
    closed: bool = False                # ended with a CLOSE record
    discarded_tail_bytes: int = 0       # partial record cut off before this segment


@dataclass
class ReadStats:
    """What a pass over the file found."""

    records_ok: int = 0
    records_bad: int = 0                # damaged stretches skipped (each counted once)
    bytes_skipped: int = 0
    unknown_records: int = 0            # valid records of a type this reader does not know
    truncated_at: int | None = None     # offset of an unreadable tail, if any
    truncated_bytes: int = 0
    last_record_end: int = 0            # end of the last whole record
    file_size: int = 0
    closed: bool = False                # the last segment ended with a CLOSE record


@dataclass
class SamplesRecord:
    """A decoded SAMPLES record: every channel of one stream, physical units."""

    stream: str
    fs_hz: float
    first_index: int
    host_time_s: float | None
    channels: tuple[str, ...]
    data: np.ndarray                    # (n_samples, n_channels) float64

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])


@dataclass
class Record:
    """One record as :func:`iter_records` yields it.

    ``type`` is ``"header"``, ``"segment"``, ``"samples"``, ``"event"``,
    ``"close"`` or ``"unknown"``; ``value`` is a dict (JSON records), a
    :class:`SamplesRecord`, a :class:`SourceEvent` (events) or raw bytes.
    """

    offset: int
    type: str
    value: object


def _read_header(fh, path: str):
    """Read magic + HEADER record; return ``(header_dict, specs, data_offset)``."""
    head = fh.read(len(MAGIC))
    if not head.startswith(MAGIC_PREFIX[:len(head)]) or not head:
        raise InputFileError(f"{path}: not a crampwatch recording (bad magic at byte offset 0)",
                             path=path, offset=0)
    if len(head) < len(MAGIC) and MAGIC.startswith(head):
        raise _TruncatedHeader(f"{path}: file is truncated inside its header (byte offset "
                               f"{len(head)})", path=path, offset=len(head))
    if head != MAGIC:
        version = head[len(MAGIC_PREFIX):].split(b"\n")[0].decode("ascii", "replace")
        raise InputFileError(f"{path}: crampwatch recording format version {version!r} is not "
                             f"supported (this crampwatch reads version {FORMAT_VERSION})",
                             path=path, offset=0)
    off = len(MAGIC)
    rec_head = fh.read(REC_HEAD.size)
    if len(rec_head) < REC_HEAD.size:
        raise _TruncatedHeader(f"{path}: file is truncated inside its header record (byte "
                               f"offset {off})", path=path, offset=off)
    sync, rtype, length = REC_HEAD.unpack(rec_head)
    if sync != SYNC or rtype != RecordType.HEADER or length > 2**20:
        raise InputFileError(f"{path}: header record at byte offset {off} is damaged",
                             path=path, offset=off)
    rest = fh.read(length + REC_CRC.size)
    if len(rest) < length + REC_CRC.size:
        raise _TruncatedHeader(f"{path}: file is truncated inside its header record (byte "
                               f"offset {off})", path=path, offset=off)
    (crc,) = REC_CRC.unpack_from(rest, length)
    if zlib.crc32(rest[:length], zlib.crc32(rec_head[4:])) != crc:
        raise InputFileError(f"{path}: header record at byte offset {off} is damaged (bad "
                             f"checksum)", path=path, offset=off)
    try:
        header = _json_object(rest[:length])
        specs = {}
        for obj in header["streams"]:
            spec = _spec_from_json(obj)
            specs[spec.name] = spec
    except (ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{path}: header record at byte offset {off} is not valid: {exc}",
                             path=path, offset=off) from exc
    return header, specs, off + RECORD_OVERHEAD + length


def _event_from_json(obj: dict) -> SourceEvent:
    return SourceEvent(
        kind=str(obj["kind"]), host_time_s=float(obj.get("host_time_s", math.nan)),
        stream=obj.get("stream"),
        first_index=None if obj.get("first_index") is None else int(obj["first_index"]),
        n_samples=None if obj.get("n_samples") is None else int(obj["n_samples"]),
        detail=dict(obj.get("detail") or {}))


class _Walk:
    """One pass over the records after the header, decoding as it goes.

    Yields ``(offset, type_name, value)``: a dict for SEGMENT/CLOSE, a
    :class:`SourceEvent` for EVENT, ``(SamplesHead, payload)`` for SAMPLES.
    Damage is reported through ``issue_cb(issue)``; undecodable records
    (valid CRC, invalid content: a writer bug) are counted as bad.
    """

    def __init__(self, path, specs, data_offset, issue_cb):
        self.path = path
        self.specs_by_id = {s.id: s for s in specs.values()}
        self.data_offset = data_offset
        self.issue_cb = issue_cb
        self.stats = ReadStats()

    def __iter__(self):
        with open(self.path, "rb") as fh:
            scanner = RecordScanner(fh, self.data_offset)
            seen_issues = 0
            st = self.stats
            for offset, rtype, payload in scanner:
                while seen_issues < len(scanner.issues):
                    self._issue(scanner.issues[seen_issues])
                    seen_issues += 1
                try:
                    item = self._decode(rtype, payload)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    st.records_bad += 1
                    self.issue_cb(ScanIssue("invalid", offset, offset + RECORD_OVERHEAD
                                            + len(payload)), str(exc))
                    continue
                st.records_ok += 1
                if item is None:
                    st.unknown_records += 1
                    continue
                kind, value = item
                if kind in ("segment", "header"):
                    st.closed = False
                elif kind == "close":
                    st.closed = True
                yield offset, kind, value
            while seen_issues < len(scanner.issues):
                self._issue(scanner.issues[seen_issues])
                seen_issues += 1
            st.last_record_end = scanner.last_end
            st.file_size = scanner.file_end if scanner.file_end is not None else scanner.last_end

    def skip(self, offset: int, n_bytes: int, why: str) -> None:
        """Count a record that decoded but cannot be right (see :class:`_IndexGuard`)."""
        self.stats.records_ok -= 1
        self.stats.records_bad += 1
        self.issue_cb(ScanIssue("invalid", offset, offset + n_bytes), why)

    def _issue(self, issue: ScanIssue):
        st = self.stats
        if issue.kind == "truncated":
            st.truncated_at = issue.offset
            st.truncated_bytes = issue.n_bytes
        else:
            st.records_bad += 1
            st.bytes_skipped += issue.n_bytes
        self.issue_cb(issue, None)

    def _decode(self, rtype, payload):
        if rtype == RecordType.SAMPLES:
            head = decode_samples_head(payload)
            spec = self.specs_by_id.get(head.stream_id)
            if spec is None:
                raise ValueError(f"unknown stream id {head.stream_id}")
            if head.n_channels != len(spec.channels):
                raise ValueError(f"{head.n_channels} channels, header says {len(spec.channels)}")
            need = head.n_samples * head.n_channels * spec.dtype.itemsize
            if len(payload) != need + SAMPLES_HEAD.size:
                raise ValueError("SAMPLES length does not match its sample count")
            return "samples", (head, spec, payload)
        if rtype == RecordType.EVENT:
            return "event", _event_from_json(_json_object(payload))
        if rtype == RecordType.SEGMENT:
            return "segment", _json_object(payload)
        if rtype == RecordType.CLOSE:
            return "close", _json_object(payload)
        if rtype == RecordType.HEADER:
            return "header", _json_object(payload)
        return None


class _IndexGuard:
    """Skip SAMPLES records whose sample index contradicts their stream.

    A record can pass its checksum and still carry a wrong ``first_index`` (a
    bit flipped before the CRC was computed, a writer bug).  Taken as it is, such
    a record sends its stream far ahead and every later record looks like a step
    back, so everything after it would be lost.  So a record that jumps ahead is
    held (one per stream) until the stream's next record shows what it was: if
    that one carries on at or after the held record, the jump was a real gap
    (lost records); if it carries on before it, the held record is the damaged
    one and is skipped.  A record that goes back over samples already read, or
    has a negative index, is skipped at once.  A record still held when a gap
    event of its stream, a new segment or the end of the file comes is kept,
    unless its host time says the stream went on without a gap (the jump in its
    index disagrees with the host clock by more than a minute and 10 %).  Each
    skipped record is reported through ``on_bad(offset, n_bytes, why)``.

    Yields ``(offset, kind, value, segment)``: ``segment`` counts the SEGMENT
    records seen before the item was read (a held record keeps its own).
    """

    def __init__(self, items, on_bad):
        self.items = items
        self.on_bad = on_bad
        self.expected: dict = {}        # stream -> end index of the samples passed on
        self.held: dict = {}            # stream -> (item, first, end)
        self.host_end: dict = {}        # stream -> host time just after the samples passed on

    def __iter__(self):
        segment = 0
        for offset, kind, value in self.items:
            item = (offset, kind, value, segment)
            if kind in ("segment", "close", "header"):
                for stream in sorted(self.held, key=lambda name: self.held[name][0][0]):
                    yield from self._release(stream)
            elif kind == "event" and getattr(value, "kind", None) == "gap":
                yield from self._release(value.stream)
            if kind == "segment":
                segment += 1
            if kind != "samples":
                yield item
                continue
            head, spec, payload = value
            yield from self._samples(spec.name, item, head.first_index,
                                     head.first_index + head.n_samples,
                                     RECORD_OVERHEAD + len(payload))
        for stream in sorted(self.held, key=lambda name: self.held[name][0][0]):
            yield from self._release(stream)

    def _release(self, stream):
        """Decide a held record without a next record to compare with."""
        held = self.held.pop(stream, None)
        if held is None:
            return
        item, first, end = held
        head, spec, payload = item[2]
        host_end, expected = self.host_end.get(stream), self.expected.get(stream)
        if None not in (host_end, head.host_time_s, expected):
            by_index = (first - expected) / spec.fs_hz
            by_host = head.host_time_s - host_end
            if abs(by_index - by_host) > 60.0 + 0.1 * abs(by_index):
                self.on_bad(item[0], RECORD_OVERHEAD + len(payload),
                            f"{stream} samples at index {first}: a jump of {by_index:.0f} s "
                            f"where the host clock says {by_host:.0f} s")
                return
        self._passed(stream, item, end)
        yield item

    def _samples(self, stream, item, first, end, n_bytes):
        expected = self.expected.get(stream)
        if first < 0:
            self.on_bad(item[0], n_bytes, f"{stream} samples at negative index {first}")
            return
        if expected is not None and first < expected:
            self.on_bad(item[0], n_bytes, f"{stream} samples at index {first} go back before "
                                          f"index {expected}, already read")
            return
        held = self.held.pop(stream, None)
        if held is not None:
            h_item, h_first, h_end = held
            if first < h_first:
                self.on_bad(h_item[0], RECORD_OVERHEAD + len(h_item[2][2]),
                            f"{stream} samples at index {h_first}, but the stream carries on "
                            f"at index {first}")
            else:
                yield h_item
                self._passed(stream, h_item, h_end)
                expected = h_end
                if first < h_end:
                    self.on_bad(item[0], n_bytes, f"{stream} samples at index {first} "
                                                  f"overlap samples up to index {h_end}")
                    return
        if expected is None or first > expected:
            self.held[stream] = (item, first, end)
        else:
            self._passed(stream, item, end)
            yield item

    def _passed(self, stream, item, end):
        head, spec, _ = item[2]
        self.expected[stream] = end
        self.host_end[stream] = (None if head.host_time_s is None
                                 else head.host_time_s + head.n_samples / spec.fs_hz)


def _json_object(payload: bytes) -> dict:
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError("JSON record is not an object")
    return obj


def _decode_data(head, spec: _StreamSpec, payload: bytes, cols=None) -> np.ndarray:
    raw = np.frombuffer(payload, dtype=spec.dtype, count=head.n_samples * head.n_channels,
                        offset=SAMPLES_HEAD.size).reshape(head.n_samples, head.n_channels)
    if cols is not None:
        raw = raw[:, cols]
    out = raw.astype(np.float64)
    if not spec.is_identity:
        out *= spec.scale
        out += spec.offset
    return out


@dataclass
class _FileIndex:
    """Everything a full pass learns without keeping samples (header, segments, events)."""

    header: dict
    specs: dict
    data_offset: int
    segments: list
    events: list
    extents: dict
    stats: ReadStats

    @classmethod
    def build(cls, path: str, issue_cb=None) -> _FileIndex:
        with open(path, "rb") as fh:
            header, specs, data_offset = _read_header(fh, path)
        walk = _Walk(path, specs, data_offset, issue_cb or (lambda issue, why: None))
        segments = [SegmentInfo(0, len(MAGIC), "start", _parse_utc(header.get("created_utc")),
                                str(header.get("source_url", "")))]
        events: list[SourceEvent] = []
        extents: dict[str, StreamExtent] = {}
        for offset, kind, value, seg in _IndexGuard(walk, walk.skip):
            if kind == "samples":
                head, spec, _ = value
                for table in (extents, segments[seg].streams):
                    ext = table.get(spec.name)
                    if ext is None:
                        table[spec.name] = StreamExtent(
                            head.first_index, head.first_index + head.n_samples, head.n_samples,
                            head.host_time_s, head.host_time_s, head.n_samples)
                    else:
                        ext.first_index = min(ext.first_index, head.first_index)
                        ext.end_index = max(ext.end_index, head.first_index + head.n_samples)
                        ext.n_samples += head.n_samples
                        if ext.first_host_time_s is None:
                            ext.first_host_time_s = head.host_time_s
                        ext.last_host_time_s = head.host_time_s
                        ext.last_n = head.n_samples
            elif kind == "event":
                events.append(value)
            elif kind == "segment":
                segments.append(SegmentInfo(
                    len(segments), offset, str(value.get("reason", "resume")),
                    _parse_utc(value.get("created_utc")), str(value.get("source_url", "")),
                    discarded_tail_bytes=int(value.get("discarded_tail_bytes", 0) or 0)))
            elif kind == "close":
                segments[-1].closed = True
        return cls(header, specs, data_offset, segments, events, extents, walk.stats)


class _Chunker:
    """Re-chunk one stream's records into blocks of at most ``nb`` samples.

    Each buffered part keeps its own first index and host time, so a block's
    ``host_time_s`` is that of the record its first sample came from.
    """

    def __init__(self, name, fs_hz, nb, out, warn):
        self.name, self.fs_hz, self.nb, self.out, self.warn = name, fs_hz, nb, out, warn
        self.parts: list[list] = []        # [first_index, host_time_s, data]
        self.n = 0
        self.expected: int | None = None

    def next_key(self) -> float | None:
        """Earliest time key this stream can still produce, None if unknown."""
        if self.n:
            return self.parts[0][0] / self.fs_hz
        if self.expected is not None:
            return self.expected / self.fs_hz
        return None

    def add(self, first: int, host, data: np.ndarray) -> None:
        if self.expected is not None and first != self.expected:
            self.flush()
            if first > self.expected:
                self._gap(self.expected, first - self.expected, host, first)
            else:
                self.warn(f"{self.name} samples from index {first} overlap earlier ones "
                          f"(up to {self.expected})")
        self.parts.append([first, host, data])
        self.n += data.shape[0]
        self.expected = first + data.shape[0]
        while self.n >= self.nb:
            self._emit(self.nb)

    def gap_event(self, ev: SourceEvent) -> None:
        self.flush()
        if (self.expected is not None and ev.first_index is not None
                and ev.first_index > self.expected):
            self._gap(self.expected, ev.first_index - self.expected, None, ev.first_index)
        key = ev.first_index if ev.first_index is not None else (self.expected or 0)
        self.out.append((key / self.fs_hz, ev))
        if ev.first_index is not None and ev.n_samples is not None:
            end = ev.first_index + ev.n_samples
            self.expected = end if self.expected is None else max(self.expected, end)

    def _gap(self, first, n, host_after, index_after) -> None:
        host = math.nan
        if host_after is not None:
            host = host_after - (index_after - first) / self.fs_hz
        ev = SourceEvent("gap", host, stream=self.name, first_index=int(first), n_samples=int(n),
                         detail={"cause": "missing_in_file"})
        self.out.append((first / self.fs_hz, ev))

    def _emit(self, k: int) -> None:
        first, host = self.parts[0][0], self.parts[0][1]
        pieces = []
        need = k
        while need:
            part = self.parts[0]
            data = part[2]
            if data.shape[0] <= need:
                pieces.append(data)
                need -= data.shape[0]
                self.parts.pop(0)
            else:
                pieces.append(data[:need])
                part[2] = data[need:]
                part[0] += need
                if part[1] is not None:
                    part[1] += need / self.fs_hz
                need = 0
        block = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        self.out.append((first / self.fs_hz,
                         SampleBlock(self.name, self.fs_hz, first,
                                     np.ascontiguousarray(block), host)))
        self.n -= k

    def flush(self) -> None:
        if self.n:
            self._emit(self.n)


class CaptureReader:
    """A capture recording opened for replay (see :func:`open_capture`).

    Attributes
    ----------
    path : str
    header : dict
        The file's header record.
    emg : StreamInfo
        The chosen EMG channel (``channels`` holds its one label, unit ``"uV"``).
    acc : StreamInfo or None
        The three accelerometer axes (unit ``"g"``), or None.
    labels : list of str
        Every channel label in the file (EMG first).
    board, source_url : str
    """

    MAX_LAG_ITEMS = 8

    def __init__(self, path: str, emg: str | None = None, acc: str | list[str] | None = None):
        self.path = os.fspath(path)
        try:
            # regular files only: a FIFO would block, and the reader reads the file 2-3 times
            with open_regular(self.path) as fh:
                self.header, self._specs, self._data_offset = _read_header(fh, self.path)
        except OSError as exc:
            raise InputFileError(f"{self.path}: cannot read: {exc.strerror or exc}",
                                 path=self.path) from exc
        self.board = str(self.header.get("board", ""))
        self.source_url = str(self.header.get("source_url", ""))
        self.labels = [c for s in self._specs.values() for c in s.channels]
        self._warned: set = set()
        self._index: _FileIndex | None = None
        self._closed = False

        emg_spec = self._specs.get("emg")
        if emg_spec is None:
            raise ChannelNotFoundError(f"{self.path}: no EMG stream in this recording "
                                       f"(channels: {', '.join(self.labels) or 'none'})",
                                       path=self.path, available=self.labels)
        self._check_unit(emg_spec)
        self._emg_col = self._find(emg_spec, [emg] if emg else [emg_spec.channels[0]], "EMG")[0]
        self.emg = StreamInfo("emg", emg_spec.fs_hz, (emg_spec.channels[self._emg_col],), "uV")

        acc_spec = self._specs.get("acc")
        self._acc_cols = None
        self.acc = None
        if acc is not None:
            wanted = [a.strip() for a in acc.split(",")] if isinstance(acc, str) else list(acc)
            if acc_spec is None:
                raise ChannelNotFoundError(f"{self.path}: no accelerometer stream in this "
                                           f"recording (channels: {', '.join(self.labels)})",
                                           path=self.path, available=self.labels)
            if len(wanted) != 3:
                raise ChannelNotFoundError(f"{self.path}: give three accelerometer axes, not "
                                           f"{len(wanted)} ({', '.join(map(str, wanted))}); "
                                           f"available: {', '.join(acc_spec.channels)}",
                                           path=self.path, available=list(acc_spec.channels))
            self._acc_cols = self._find(acc_spec, wanted, "accelerometer")
        elif acc_spec is not None and len(acc_spec.channels) >= 3:
            self._acc_cols = [0, 1, 2]
        if self._acc_cols is not None:
            self._check_unit(acc_spec)
            self.acc = StreamInfo("acc", acc_spec.fs_hz,
                                  tuple(acc_spec.channels[c] for c in self._acc_cols), "g")

    def _check_unit(self, spec: _StreamSpec) -> None:
        want = STREAM_UNITS[spec.name]
        if spec.unit != want:
            raise UnitError(f"{self.path}: the {spec.name} stream is in {spec.unit!r}; "
                            f"crampwatch expects {want!r}", path=self.path,
                            channel=spec.channels[0], unit=spec.unit)

    def _find(self, spec: _StreamSpec, wanted: list[str], what: str) -> list[int]:
        lower = [c.lower() for c in spec.channels]
        cols = []
        for w in wanted:
            try:
                cols.append(lower.index(str(w).lower()))
            except ValueError:
                raise ChannelNotFoundError(
                    f"{self.path}: no {what} channel {w!r}; available: "
                    f"{', '.join(spec.channels)}", path=self.path,
                    available=list(spec.channels)) from None
        return cols

    # -- warnings ---------------------------------------------------------
    def _on_issue(self, issue: ScanIssue, why: str | None) -> None:
        key = (issue.kind, issue.offset)
        if key in self._warned:
            return
        self._warned.add(key)
        if issue.kind == "truncated":
            logger.warning("%s: file is likely truncated at byte offset %d: the %d bytes after "
                           "the last whole record cannot be read (the writer was interrupted)",
                           self.path, issue.offset, issue.n_bytes)
        elif issue.kind == "invalid":
            logger.warning("%s: skipped an invalid record at byte offset %d (%s)",
                           self.path, issue.offset, why)
        else:
            logger.warning("%s: skipped %d damaged bytes at byte offset %d (bad record); "
                           "resynchronised at byte offset %d", self.path, issue.n_bytes,
                           issue.offset, issue.end)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s: %s", self.path, message)

    def _after_pass(self, stats: ReadStats) -> None:
        if not stats.closed and stats.truncated_at is None:
            self._warn_once(f"recording was not closed (capture interrupted or still running); "
                            f"read up to byte offset {stats.last_record_end}")

    # -- full-pass facts --------------------------------------------------
    def _get_index(self) -> _FileIndex:
        if self._index is None:
            try:
                self._index = _FileIndex.build(self.path, self._on_issue)
            except OSError as exc:
                raise InputFileError(f"{self.path}: cannot read: {exc.strerror or exc}",
                                     path=self.path) from exc
            self._after_pass(self._index.stats)
        return self._index

    @property
    def start_time(self) -> datetime:
        """UTC time of the first EMG sample in the file."""
        idx = self._get_index()
        spec = self._specs["emg"]
        ext = idx.extents.get("emg")
        first = ext.first_index if ext else 0
        t0 = _parse_utc(self.header.get("start_time_utc"))
        if t0 is not None:
            try:
                return datetime.fromtimestamp(t0.timestamp() + first / spec.fs_hz, timezone.utc)
            except (ValueError, OverflowError, OSError) as exc:
                raise InputFileError(
                    f"{self.path}: the first EMG sample index ({first}) puts the recording "
                    f"outside the calendar: the file is damaged", path=self.path) from exc
        if ext is not None and ext.first_host_time_s is not None:
            return datetime.fromtimestamp(ext.first_host_time_s, timezone.utc)
        created = _parse_utc(self.header.get("created_utc"))
        return created or datetime.fromtimestamp(0, timezone.utc)

    @property
    def duration_s(self) -> float:
        """Time from the first to one past the last stored EMG sample (gaps included)."""
        ext = self._get_index().extents.get("emg")
        if ext is None:
            return 0.0
        return (ext.end_index - ext.first_index) / self._specs["emg"].fs_hz

    @property
    def segments(self) -> list[SegmentInfo]:
        """The writing sessions in the file (:class:`SegmentInfo`), first one first."""
        return self._get_index().segments

    @property
    def stats(self) -> ReadStats:
        """What the full pass found: damaged and truncated stretches, clean close."""
        return self._get_index().stats

    def events(self) -> list[SourceEvent]:
        """Every event stored in the file, in file order."""
        return list(self._get_index().events)

    # -- samples ----------------------------------------------------------
    def blocks(self, block_s: float = 10.0):
        """Iterate :class:`SampleBlock` and gap :class:`SourceEvent` objects.

        EMG blocks are ``(n, 1)`` in uV, accelerometer blocks ``(n, 3)`` in g,
        each at most ``block_s`` long, interleaved in time order (by sample
        index).  Gap events are the ones stored in the file (for the chosen
        streams) plus one for every jump in sample indices that none of them
        covers (``detail["cause"] == "missing_in_file"``: records lost to damage).
        The file is streamed: memory does not grow with its length.

        Examples
        --------
        >>> for item in reader.blocks(block_s=10.0):  # doctest: +SKIP
        ...     if isinstance(item, SampleBlock):
        ...         pipeline.feed(item)
        """
        if self._closed:
            raise ValueError(f"{self.path}: reader is closed")
        if not block_s > 0:
            raise ValueError("block_s must be positive")
        out = {"emg": collections.deque()}
        chunkers = {"emg": _Chunker("emg", self.emg.fs_hz,
                                    max(1, int(round(block_s * self.emg.fs_hz))), out["emg"],
                                    self._warn_once)}
        cols = {"emg": [self._emg_col]}
        if self.acc is not None:
            out["acc"] = collections.deque()
            chunkers["acc"] = _Chunker("acc", self.acc.fs_hz,
                                       max(1, int(round(block_s * self.acc.fs_hz))), out["acc"],
                                       self._warn_once)
            cols["acc"] = self._acc_cols
        walk = _Walk(self.path, self._specs, self._data_offset, self._on_issue)
        non_finite = dict.fromkeys(chunkers, 0)
        try:
            for _offset, kind, value, _seg in _IndexGuard(walk, walk.skip):
                if kind == "samples":
                    head, spec, payload = value
                    ch = chunkers.get(spec.name)
                    if ch is None:
                        continue
                    data = _decode_data(head, spec, payload, cols[spec.name])
                    bad = data.size - int(np.count_nonzero(np.isfinite(data)))
                    if bad:
                        non_finite[spec.name] += bad
                    ch.add(head.first_index, head.host_time_s, data)
                elif kind == "event":
                    if value.kind == "gap" and value.stream in chunkers:
                        chunkers[value.stream].gap_event(value)
                    else:
                        continue
                elif kind == "segment":
                    for ch in chunkers.values():
                        ch.flush()
                yield from self._drain(out, chunkers, final=False)
        except OSError as exc:
            raise InputFileError(f"{self.path}: cannot read: {exc.strerror or exc}",
                                 path=self.path) from exc
        for ch in chunkers.values():
            ch.flush()
        yield from self._drain(out, chunkers, final=True)
        self._after_pass(walk.stats)
        if any(non_finite.values()):
            # float storage can hold NaN/inf (a board's "no value"): no data, never zeros
            counts = " and ".join(f"{n} {'EMG' if name == 'emg' else 'accelerometer'} values"
                                  for name, n in non_finite.items() if n)
            logger.warning("%s: %s are NaN or infinite: read as no data", self.path, counts)

    def _drain(self, out, chunkers, final):
        while True:
            ready = [s for s in out if out[s]]
            if not ready:
                return
            s = min(ready, key=lambda name: out[name][0][0])
            key = out[s][0][0]
            if not final and len(out[s]) <= self.MAX_LAG_ITEMS:
                for other in out:
                    if other == s or out[other]:
                        continue
                    nk = chunkers[other].next_key()
                    if nk is None or nk < key:
                        return            # the other stream may still yield earlier items
            yield out[s].popleft()[1]

    def close(self) -> None:
        """Release the reader (it holds no open file between passes)."""
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (f"<CaptureReader {self.path!r} emg={self.emg.channels[0]!r} "
                f"fs={self.emg.fs_hz:g} Hz acc={'yes' if self.acc else 'no'}>")


def open_capture(path, emg: str | None = None, acc: str | list[str] | None = None) -> CaptureReader:
    """Open a crash-safe capture recording for replay.

    Parameters
    ----------
    path : str or path-like
    emg : str or None
        EMG channel label (case-insensitive); default the first EMG channel.
    acc : str, list of str or None
        Three accelerometer labels (a list or ``"x,y,z"``); default the
        file's three axes if it has them.

    Returns
    -------
    CaptureReader
        With the interface of :mod:`crampwatch.firmware_bridge.readers`.

    Raises
    ------
    InputFileError
        Missing/unreadable file, not a recording, damaged header (with the byte
        offset).  A damaged or truncated *body* does not raise: the readable
        records are returned and the damage is logged as warnings.
    ChannelNotFoundError
        A requested label is not in the file (``available`` lists them).

    Examples
    --------
    >>> with open_capture("night.cwrec", emg="gastroc_l") as rec:  # doctest: +SKIP
    ...     print(rec.start_time, rec.duration_s)
    ...     for item in rec.blocks(block_s=10.0):
    ...         ...
    """
    path = os.fspath(path)
    return CaptureReader(path, emg=emg, acc=acc)


def iter_records(path):
    """Yield every readable record of a capture recording, in file order.

    For tools (export, review, debugging): the header first, then
    :class:`Record` objects for segments, samples (all channels, physical
    units), events and the close record.  Damage is skipped and logged as in
    :func:`open_capture`.

    Raises
    ------
    InputFileError
        As :func:`open_capture`, for a missing file or a damaged header.

    Examples
    --------
    >>> for rec in iter_records("night.cwrec"):  # doctest: +SKIP
    ...     print(rec.offset, rec.type)
    """
    path = os.fspath(path)
    reader = open_capture(path)
    yield Record(len(MAGIC), "header", reader.header)
    walk = _Walk(path, reader._specs, reader._data_offset, reader._on_issue)
    for offset, kind, value in walk:
        if kind == "samples":
            head, spec, payload = value
            value = SamplesRecord(spec.name, spec.fs_hz, head.first_index, head.host_time_s,
                                  spec.channels, _decode_data(head, spec, payload))
        yield Record(offset, kind, value)
    reader._after_pass(walk.stats)
