"""Reader of the crash-safe capture recording (see :mod:`.recording`)."""

from __future__ import annotations

import collections
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from crampwatch.firmware_bridge._recording_format import (
    FORMAT_VERSION,
    MAGIC,
    MAGIC_PREFIX,
    REC_CRC,
    REC_HEAD,
    RECORD_OVERHEAD,
    SAMPLES_HEAD,
    SYNC,
    RecordScanner,
    RecordType,
    ScanIssue,
    decode_samples_head,
)
from crampwatch.firmware_bridge._recording_header import (
    STREAM_UNITS,
    _parse_utc,
    _spec_from_json,
    _StreamSpec,
    logger,
)
from crampwatch.firmware_bridge.readers import open_regular
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo

from crampwatch.errors import ChannelNotFoundError, InputFileError, UnitError

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
        The chosen EMG channels (``channels`` holds their labels, in the column
        order of the EMG blocks; unit ``"uV"``).
    acc : StreamInfo or None
        The three accelerometer axes (unit ``"g"``), or None.
    labels : list of str
        Every channel label in the file (EMG first).
    board, source_url : str
    """

    MAX_LAG_ITEMS = 8

    def __init__(self, path: str, emg: str | list[str] | None = None,
                 acc: str | list[str] | None = None):
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
        if isinstance(emg, str) and emg.strip().lower() == "all":
            wanted = list(emg_spec.channels)          # every column of the emg stream
        elif emg is not None and not isinstance(emg, str):
            wanted = [str(e) for e in emg]
        else:
            wanted = [emg] if emg else [emg_spec.channels[0]]
        if not wanted:
            raise ChannelNotFoundError(f"{self.path}: no EMG channel named; available: "
                                       f"{', '.join(emg_spec.channels)}", path=self.path,
                                       available=list(emg_spec.channels))
        self._emg_cols = self._find(emg_spec, wanted, "EMG")
        if len(set(self._emg_cols)) != len(self._emg_cols):
            raise InputFileError(f"{self.path}: an EMG channel is named twice "
                                 f"({', '.join(map(str, wanted))})", path=self.path)
        self._emg_col = self._emg_cols[0]
        self.emg = StreamInfo("emg", emg_spec.fs_hz,
                              tuple(emg_spec.channels[c] for c in self._emg_cols), "uV")

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
        cols = {"emg": list(self._emg_cols)}
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


def open_capture(path, emg: str | list[str] | None = None,
                 acc: str | list[str] | None = None) -> CaptureReader:
    """Open a crash-safe capture recording for replay.

    Parameters
    ----------
    path : str or path-like
    emg : str, list of str or None
        EMG channel label (case-insensitive), a list of labels (EMG blocks then
        hold one column per label, in that order) or ``"all"`` (every column of
        the emg stream); default the first EMG channel.
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
