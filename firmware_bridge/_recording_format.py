"""Byte layout of the crash-safe capture recording, and a resynchronising scanner.

Private to :mod:`crampwatch.firmware_bridge.recording`; the layout is specified
in ``firmware_bridge/RECORDING_FORMAT.md``.  Everything here is pure byte work:
encoding one record, and walking a file record by record, skipping damaged
stretches and reporting where they are.

File::

    b"CRAMPWATCH-REC 1\\n"                       magic line (17 bytes)
    record*                                      HEADER first, then any

Record (little-endian)::

    sync     4 bytes  b"\\x89CWR"
    type     uint8    RecordType
    length   uint32   payload length in bytes (<= MAX_PAYLOAD)
    payload  length bytes
    crc32    uint32   zlib.crc32 of type + length + payload
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

MAGIC = b"CRAMPWATCH-REC 1\n"
MAGIC_PREFIX = b"CRAMPWATCH-REC "
FORMAT_VERSION = 1
SYNC = b"\x89CWR"
REC_HEAD = struct.Struct("<4sBI")          # sync, type, payload length
REC_CRC = struct.Struct("<I")
RECORD_OVERHEAD = REC_HEAD.size + REC_CRC.size   # 13 bytes
MAX_PAYLOAD = 16 * 2**20                   # a longer length field is damage
SAMPLES_HEAD = struct.Struct("<BqdIH")     # stream id, first index, host time, n, channels
MAX_SAMPLES_PAYLOAD = 2**20                # the writer splits larger sample runs

# storage dtypes a stream may use (numpy spelling, little-endian)
STORAGE_DTYPES = {"float32": "<f4", "float64": "<f8", "int16": "<i2", "int32": "<i4"}


class RecordType(IntEnum):
    """Record types; readers skip (and count) types they do not know."""

    HEADER = 1    # JSON: the file's self-description, first record only
    SEGMENT = 2   # JSON: a new session appended to the file (resume, reopen)
    SAMPLES = 3   # binary: SAMPLES_HEAD + n * channels values of the stream's dtype
    EVENT = 4     # JSON: a SourceEvent (gap, connected, disconnected, ...)
    CLOSE = 5     # JSON: the writer closed cleanly; its final statistics


def encode_record(rtype: int, payload: bytes | bytearray | memoryview) -> bytes:
    """Return one whole record (sync, type, length, payload, crc32)."""
    head = REC_HEAD.pack(SYNC, int(rtype), len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head[4:]))
    return b"".join((head, payload, REC_CRC.pack(crc)))


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def encode_json(obj) -> bytes:
    """Compact JSON, never raising on odd values (numpy scalars, non-finite floats)."""
    return json.dumps(obj, separators=(",", ":"), default=_json_default,
                      allow_nan=True).encode("utf-8")


def encode_samples(stream_id: int, first_index: int, host_time_s: float | None,
                   arrays: list[np.ndarray]) -> bytes:
    """One SAMPLES record from consecutive arrays already in the storage dtype."""
    n = sum(a.shape[0] for a in arrays)
    nch = arrays[0].shape[1]
    host = math.nan if host_time_s is None else float(host_time_s)
    head = SAMPLES_HEAD.pack(stream_id, int(first_index), host, n, nch)
    payload = b"".join([head] + [a.tobytes() for a in arrays])
    return encode_record(RecordType.SAMPLES, payload)


@dataclass
class SamplesHead:
    stream_id: int
    first_index: int
    host_time_s: float | None
    n_samples: int
    n_channels: int


def decode_samples_head(payload: bytes) -> SamplesHead:
    """Parse the fixed part of a SAMPLES payload (raises ValueError if too short)."""
    if len(payload) < SAMPLES_HEAD.size:
        raise ValueError("SAMPLES payload shorter than its header")
    sid, first, host, n, nch = SAMPLES_HEAD.unpack_from(payload)
    return SamplesHead(sid, first, None if math.isnan(host) else host, n, nch)


@dataclass
class ScanIssue:
    """A stretch of the file the scanner could not read.

    ``kind`` is ``"corrupt"`` (readable records follow it) or ``"truncated"``
    (nothing readable follows: the tail of a file whose writer was interrupted).
    """

    kind: str
    offset: int      # first unreadable byte
    end: int         # first byte after the stretch (next record, or end of file)

    @property
    def n_bytes(self) -> int:
        return self.end - self.offset


class RecordScanner:
    """Walk the records of an open binary file, resynchronising after damage.

    Iterating yields ``(offset, rtype, payload)`` for every record whose CRC
    matches, in file order.  A record with a bad sync word, length or CRC is
    skipped: the scanner searches for the next sync word that starts a valid
    record and notes the skipped stretch in ``issues`` (``"corrupt"``), or, if
    no valid record follows, notes a ``"truncated"`` tail and stops.  The
    buffer holds at most one record plus one read chunk, so memory does not
    grow with the file.

    Parameters
    ----------
    fh : binary file object
        Opened for reading; the scanner seeks it to ``start``.
    start : int
        Offset of the first record (just after the magic line).
    chunk_size : int
        Bytes per read.
    """

    def __init__(self, fh, start: int, chunk_size: int = 1 << 20):
        self._fh = fh
        self._chunk = int(chunk_size)
        self._buf = bytearray()
        self._base = int(start)          # file offset of _buf[0]
        self._eof = False
        fh.seek(self._base)
        self.issues: list[ScanIssue] = []
        self.records_ok = 0
        self.last_end = int(start)       # end of the last whole valid record
        self.file_end: int | None = None

    # -- buffer -----------------------------------------------------------
    def _fill(self, upto: int) -> None:
        """Read until the buffer covers file offsets below ``upto`` (or EOF)."""
        while not self._eof and self._base + len(self._buf) < upto:
            want = max(self._chunk, upto - (self._base + len(self._buf)))
            data = self._fh.read(want)
            if not data:
                self._eof = True
                self.file_end = self._base + len(self._buf)
                break
            self._buf += data

    def _discard(self, upto: int) -> None:
        k = upto - self._base
        if k > 0:
            del self._buf[:k]
            self._base = upto

    # -- records ----------------------------------------------------------
    def _try(self, pos: int):
        """Return ``("ok", rtype, payload, end)``, ``("bad", ...)`` or ``("short", ...)``."""
        self._fill(pos + REC_HEAD.size)
        i = pos - self._base
        if len(self._buf) - i < REC_HEAD.size:
            return "short", 0, b"", pos
        sync, rtype, length = REC_HEAD.unpack_from(self._buf, i)
        if sync != SYNC or length > MAX_PAYLOAD:
            return "bad", 0, b"", pos
        end = pos + RECORD_OVERHEAD + length
        self._fill(end)
        if self._base + len(self._buf) < end:
            return "short", 0, b"", pos
        body = memoryview(self._buf)[i + 4:i + REC_HEAD.size + length]
        (crc,) = REC_CRC.unpack_from(self._buf, i + REC_HEAD.size + length)
        ok = zlib.crc32(body) == crc
        payload = bytes(body[5:]) if ok else b""
        body.release()
        return ("ok" if ok else "bad"), rtype, payload, end

    def _resync(self, start: int) -> int | None:
        """Offset of the next valid record at or after ``start``, or None."""
        pos = start
        while True:
            self._discard(pos)
            self._fill(pos + len(SYNC))
            idx = self._buf.find(SYNC, pos - self._base)
            if idx < 0:
                if self._eof:
                    return None
                # keep the last bytes: a sync word may straddle the read boundary
                pos = max(pos, self._base + len(self._buf) - len(SYNC) + 1)
                self._fill(self._base + len(self._buf) + self._chunk)
                continue
            cand = self._base + idx
            status, _, _, _ = self._try(cand)
            if status == "ok":
                return cand
            pos = cand + 1

    def __iter__(self):
        pos = self._base
        while True:
            status, rtype, payload, end = self._try(pos)
            if status == "ok":
                self.records_ok += 1
                self.last_end = end
                yield pos, rtype, payload
                pos = end
                self._discard(pos)
                continue
            if status == "short" and self._eof and self._base + len(self._buf) == pos:
                return                                   # clean end of file
            nxt = self._resync(pos + 1)
            if nxt is None:
                end_of_file = self.file_end if self.file_end is not None else pos
                self.issues.append(ScanIssue("truncated", pos, end_of_file))
                return
            self.issues.append(ScanIssue("corrupt", pos, nxt))
            pos = nxt
