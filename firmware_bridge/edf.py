"""EDF, EDF+ and BDF(+): write a night, read any such file back in blocks.

Writing goes through pyedflib's ``EdfWriter`` (EDF+ or BDF+, one EMG channel
in microvolts and three accelerometer channels in g at their own rate, data
records chosen by pyedflib so both rates fit, written a chunk at a time: flat
memory for an 8 h night).

Reading does not go through a library, on purpose: the header is parsed here
and the data records are read with ``numpy.fromfile`` a block at a time.
pyedflib refuses a truncated file (a night cut short by a crash or a full
disk: fewer records than the header says, or a partial last record), and
edfio loads a whole signal to hand out any of it; here a truncated file is
read up to its last whole record with a logged warning, memory stays flat
(no memory map either: touched pages of a map count as resident memory), one
code path serves 16-bit EDF and 24-bit BDF, and a corrupt header gets an error
naming the field and its byte offset.  Files written by pyedflib and edfio are
read back in the tests.

EDF stores the local clock time of the start without a time zone; crampwatch
treats it as UTC (what ``write_edf`` stores), so ``start_time`` is a
timezone-aware UTC datetime.  An EDF+ sub-second start (the first record's
time-keeping annotation) is added to it.  EDF+D (discontinuous) files are read
with their gaps reported as :class:`SourceEvent` ``"gap"`` and the sample
indices jumping over them.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
from crampwatch.firmware_bridge.readers import sniff_format
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo

from crampwatch.errors import ChannelNotFoundError, InputFileError, UnitError

__all__ = [
    "EdfRecording",
    "EdfWriteResult",
    "open_edf",
    "write_edf",
    "emg_unit_factor",
    "acc_unit_factor",
]

log = logging.getLogger(__name__)

STANDARD_G = 9.80665

# --------------------------------------------------------------------------- units

_EMG_UNITS = {
    "uv": 1.0,
    "\u00b5v": 1.0,
    "\u03bcv": 1.0,
    "mv": 1e3,
    "v": 1e6,
    "nv": 1e-3,
    "microvolt": 1.0,
    "microvolts": 1.0,
    "millivolt": 1e3,
    "millivolts": 1e3,
}
_ACC_UNITS = {
    "g": 1.0,
    "mg": 1e-3,
    "m/s^2": 1 / STANDARD_G,
    "m/s2": 1 / STANDARD_G,
    "m/s\u00b2": 1 / STANDARD_G,
    "ms-2": 1 / STANDARD_G,
    "m*s^-2": 1 / STANDARD_G,
    "ms^-2": 1 / STANDARD_G,
    "m/s/s": 1 / STANDARD_G,
    "m.s-2": 1 / STANDARD_G,
}


def _unit_key(unit: str) -> str:
    return re.sub(r"\s+", "", unit.strip()).lower()


def emg_unit_factor(unit: str) -> float | None:
    """Factor from ``unit`` to microvolts, or None if ``unit`` is not a voltage.

    Examples
    --------
    >>> emg_unit_factor("mV"), emg_unit_factor("\u00b5V"), emg_unit_factor("g")
    (1000.0, 1.0, None)
    """
    return _EMG_UNITS.get(_unit_key(unit))


def acc_unit_factor(unit: str) -> float | None:
    """Factor from ``unit`` to g (standard gravity), or None if not an acceleration.

    Examples
    --------
    >>> round(acc_unit_factor("m/s^2"), 5), acc_unit_factor("mg")
    (0.10197, 0.001)
    """
    return _ACC_UNITS.get(_unit_key(unit))


# --------------------------------------------------------------------------- header


@dataclass
class _Signal:
    index: int
    label: str
    transducer: str
    dimension: str
    phys_min: float
    phys_max: float
    dig_min: int
    dig_max: int
    prefilter: str
    spr: int  # samples per record
    byte_offset: int = 0  # offset of this signal inside a record, bytes

    @property
    def is_annotation(self) -> bool:
        return self.label.strip() in ("EDF Annotations", "BDF Annotations")

    def gain_offset(self):
        span = self.dig_max - self.dig_min
        gain = (self.phys_max - self.phys_min) / span
        return gain, self.phys_min - gain * self.dig_min


def _field(path, raw: bytes, offset: int, width: int, name: str) -> str:
    chunk = raw[offset : offset + width]
    if len(chunk) < width:
        raise InputFileError(
            f"{path}: header ends inside field {name!r} at byte {offset} "
            f"(file too short for an EDF header)",
            path=path,
            offset=offset,
        )
    try:  # EDF says ASCII; in the wild a unit like "µV" comes as UTF-8 or as latin-1
        return chunk.decode("utf-8").strip()
    except UnicodeDecodeError:
        return chunk.decode("latin-1").strip()


def _num(path, raw, offset, width, name, kind=float):
    text = _field(path, raw, offset, width, name)
    try:
        value = kind(text) if kind is float else int(float(text))
        if kind is int and float(text) != int(float(text)):
            raise ValueError
    except ValueError:
        raise InputFileError(
            f"{path}: header field {name!r} at byte {offset} is {text!r}, "
            f"not a number (corrupt header)",
            path=path,
            offset=offset,
        ) from None
    if not math.isfinite(value):
        raise InputFileError(
            f"{path}: header field {name!r} at byte {offset} is {text!r} (corrupt header)",
            path=path,
            offset=offset,
        )
    return value


def _parse_start(path, date_s: str, time_s: str, recording_field: str) -> datetime:
    try:
        dd, mm, yy = (int(x) for x in date_s.split("."))
        hh, mi, ss = (int(x) for x in time_s.replace(":", ".").split("."))
    except ValueError:
        raise InputFileError(
            f"{path}: header start date/time {date_s!r} {time_s!r} at byte 168 "
            f"is not dd.mm.yy hh.mm.ss (corrupt header)",
            path=path,
            offset=168,
        ) from None
    year = 1900 + yy if yy >= 85 else 2000 + yy
    m = re.search(r"Startdate\s+\d{2}-[A-Za-z]{3}-(\d{4})", recording_field)
    if m:  # EDF+ carries the 4-digit year in the recording field
        year = int(m.group(1))
    try:
        return datetime(year, mm, dd, hh, mi, ss, tzinfo=timezone.utc)
    except ValueError:
        raise InputFileError(
            f"{path}: header start date/time {date_s!r} {time_s!r} at byte 168 "
            f"is not a valid date (corrupt header)",
            path=path,
            offset=168,
        ) from None


# --------------------------------------------------------------------------- channels

_ACC_RE = re.compile(r"^acc(?:el(?:erometer|eration)?)?[\s_\-.]*([xyz])$")


def _norm(label: str) -> str:
    return label.strip().lower()


def _squash(label: str) -> str:
    return re.sub(r"[\s_\-.]+", "", label.strip().lower())


def _find(path, signals, wanted: str, available):
    for key in (_norm, _squash):
        hits = [s for s in signals if key(s.label) == key(wanted)]
        if hits:
            return hits[0]
    raise ChannelNotFoundError(
        f"{path}: no channel labelled {wanted!r}; the file has: {', '.join(available)}",
        path=path,
        available=available,
    )


def _tal_records(data: bytes):
    """Parse the TALs of one record's annotation bytes -> list of (onset, duration, texts)."""
    out = []
    for tal in data.split(b"\x00"):
        if not tal or tal[:1] not in (b"+", b"-"):
            continue
        parts = tal.split(b"\x14")
        head = parts[0].split(b"\x15")
        try:
            onset = float(head[0])
            duration = float(head[1]) if len(head) > 1 and head[1] else 0.0
        except ValueError:
            continue
        texts = [p.decode("utf-8", "replace") for p in parts[1:] if p]
        out.append((onset, duration, texts))
    return out


# --------------------------------------------------------------------------- reader


class EdfRecording:
    """An EDF/EDF+/BDF file opened for replay (see :mod:`.readers` for the interface).

    Attributes
    ----------
    path : str
    format : str
        ``"edf"``, ``"edf+c"``, ``"edf+d"``, ``"bdf"``, ``"bdf+c"`` or ``"bdf+d"``.
    emg : StreamInfo
        The EMG channel (unit ``"uV"``).
    acc : StreamInfo or None
        The three accelerometer axes x, y, z (unit ``"g"``).
    start_time : datetime
        UTC time of the first sample (the header's clock time taken as UTC).
    duration_s : float
        Length of the readable part (whole records; gaps of EDF+D included).
    labels : list of str
        Every channel label in the file (annotation channels included).
    n_records : int
        Whole data records readable.
    record_s : float
        Duration of a data record.
    """

    def __init__(self, path: str, emg: str | None = None, acc=None):
        self.path = path = os.fspath(path)
        kind = sniff_format(path)
        if kind not in ("edf", "bdf"):
            raise InputFileError(f"{path}: not an EDF/BDF file", path=path, offset=0)
        self._fh = open(path, "rb")
        try:
            self._parse_header(kind)
            self._choose_channels(emg, acc)
            self._read_time_keeping()
        except BaseException:
            self._fh.close()
            raise
        self._annotations = None

    # ------------------------------------------------------------ header

    def _parse_header(self, kind):
        path = self.path
        raw = self._fh.read(256)
        if len(raw) < 256:
            raise InputFileError(
                f"{path}: file too short for an EDF header ({len(raw)} of 256 bytes)",
                path=path,
                offset=len(raw),
            )
        self._bytes = 3 if kind == "bdf" else 2
        recording = _field(path, raw, 88, 80, "recording")
        start = _parse_start(
            path,
            _field(path, raw, 168, 8, "startdate"),
            _field(path, raw, 176, 8, "starttime"),
            recording,
        )
        header_bytes = _num(path, raw, 184, 8, "header bytes", int)
        reserved = _field(path, raw, 192, 44, "reserved")
        n_records_hdr = _num(path, raw, 236, 8, "number of data records", int)
        self.record_s = _num(path, raw, 244, 8, "duration of a data record")
        ns = _num(path, raw, 252, 4, "number of signals", int)
        if ns < 1 or ns > 4096:
            raise InputFileError(
                f"{path}: header field 'number of signals' at byte 252 is {ns} (corrupt header)",
                path=path,
                offset=252,
            )
        if header_bytes != 256 * (ns + 1):
            raise InputFileError(
                f"{path}: header field 'header bytes' at byte 184 is "
                f"{header_bytes}, expected 256 * (1 + {ns} signals) = "
                f"{256 * (ns + 1)} (corrupt header)",
                path=path,
                offset=184,
            )
        if not self.record_s > 0:
            raise InputFileError(
                f"{path}: header field 'duration of a data record' at byte 244 "
                f"is {self.record_s} (must be > 0)",
                path=path,
                offset=244,
            )
        raw += self._fh.read(256 * ns)
        if len(raw) < header_bytes:
            raise InputFileError(
                f"{path}: file ends inside the signal headers ({len(raw)} of {header_bytes} bytes)",
                path=path,
                offset=len(raw),
            )
        widths = [
            ("label", 16),
            ("transducer", 80),
            ("physical dimension", 8),
            ("physical minimum", 8),
            ("physical maximum", 8),
            ("digital minimum", 8),
            ("digital maximum", 8),
            ("prefilter", 80),
            ("samples per record", 8),
            ("reserved", 32),
        ]
        base = 256
        cols = {}
        for name, w in widths:
            cols[name] = [(base + i * w, w) for i in range(ns)]
            base += ns * w
        sigs = []
        off_in_record = 0
        for i in range(ns):
            label = _field(path, raw, *cols["label"][i], f"label of signal {i + 1}")
            f = {name: cols[name][i] for name, _ in widths}
            s = _Signal(
                index=i,
                label=label,
                transducer=_field(path, raw, *f["transducer"], "transducer"),
                dimension=_field(path, raw, *f["physical dimension"], "physical dimension"),
                phys_min=_num(path, raw, *f["physical minimum"], f"physical minimum of {label!r}"),
                phys_max=_num(path, raw, *f["physical maximum"], f"physical maximum of {label!r}"),
                dig_min=_num(
                    path, raw, *f["digital minimum"], f"digital minimum of {label!r}", int
                ),
                dig_max=_num(
                    path, raw, *f["digital maximum"], f"digital maximum of {label!r}", int
                ),
                prefilter=_field(path, raw, *f["prefilter"], "prefilter"),
                spr=_num(
                    path, raw, *f["samples per record"], f"samples per record of {label!r}", int
                ),
                byte_offset=off_in_record,
            )
            if s.spr < 1:
                raise InputFileError(
                    f"{path}: signal {label!r} has {s.spr} samples per record "
                    f"(byte {f['samples per record'][0]}; corrupt header)",
                    path=path,
                    offset=f["samples per record"][0],
                )
            if s.dig_max <= s.dig_min and not s.is_annotation:
                raise InputFileError(
                    f"{path}: signal {label!r}: digital maximum {s.dig_max} is "
                    f"not above digital minimum {s.dig_min} "
                    f"(byte {f['digital maximum'][0]}; corrupt header)",
                    path=path,
                    offset=f["digital maximum"][0],
                )
            off_in_record += s.spr * self._bytes
            sigs.append(s)
        self._signals = sigs
        self._record_bytes = off_in_record
        self._header_bytes = header_bytes
        self.labels = [s.label for s in sigs]
        size = os.fstat(self._fh.fileno()).st_size
        whole = (size - header_bytes) // off_in_record
        partial = (size - header_bytes) % off_in_record
        if n_records_hdr < 0:  # -1: still being recorded / unknown
            n = whole
            if partial:
                log.warning(
                    "%s: header leaves the number of records open; reading %d whole "
                    "records (%d trailing bytes of a partial record ignored)",
                    path,
                    whole,
                    partial,
                )
        elif whole < n_records_hdr:
            n = whole
            log.warning(
                "%s: the file is likely truncated: the header says %d data records, the "
                "file holds %d whole records%s; reading those (%.1f of %.1f s)",
                path,
                n_records_hdr,
                whole,
                f" and {partial} bytes of a partial one" if partial else "",
                whole * self.record_s,
                n_records_hdr * self.record_s,
            )
        else:
            n = n_records_hdr
            if whole > n_records_hdr or partial:
                log.warning(
                    "%s: %d bytes after the last of the %d data records are ignored",
                    path,
                    size - header_bytes - n * off_in_record,
                    n,
                )
        if n == 0:
            raise InputFileError(
                f"{path}: the file holds no whole data record", path=path, offset=header_bytes
            )
        self.n_records = int(n)
        plus = reserved.upper()
        base_fmt = "bdf" if kind == "bdf" else "edf"
        self.format = (
            f"{base_fmt}+d"
            if plus.startswith(("EDF+D", "BDF+D"))
            else f"{base_fmt}+c"
            if plus.startswith(("EDF+C", "BDF+C"))
            else base_fmt
        )
        self._header_start = start
        self.patient = _field(path, raw, 8, 80, "patient")
        self.recording = recording

    def _choose_channels(self, emg, acc):
        path = self.path
        data_sigs = [s for s in self._signals if not s.is_annotation]
        available = self.labels
        if emg is not None:
            es = _find(path, data_sigs, emg, available)
        else:
            hits = [s for s in data_sigs if "emg" in s.label.lower()]
            if not hits:
                raise ChannelNotFoundError(
                    f"{path}: no EMG channel (no label contains 'EMG'); the file has: "
                    f"{', '.join(available)}; name one with --emg",
                    path=path,
                    available=available,
                )
            es = hits[0]
        factor = emg_unit_factor(es.dimension)
        if factor is None:
            raise UnitError(
                f"{path}: channel {es.label!r} has physical dimension "
                f"{es.dimension or '(empty)'!r}, not a voltage (uV, mV, V)",
                path=path,
                channel=es.label,
                unit=es.dimension,
            )
        self._emg_sig, self._emg_factor = es, factor
        self.emg = StreamInfo("emg", es.spr / self.record_s, (es.label,), "uV")

        axes = None
        if acc is not None:
            names = [a.strip() for a in acc.split(",")] if isinstance(acc, str) else list(acc)
            if len(names) != 3:
                raise ChannelNotFoundError(
                    f"{path}: give three accelerometer labels (x,y,z), got {len(names)}: "
                    f"{', '.join(names)}",
                    path=path,
                    available=available,
                )
            axes = [_find(path, data_sigs, nm, available) for nm in names]
        else:
            found = {}
            for s in data_sigs:
                m = _ACC_RE.match(_norm(s.label))
                if m and m.group(1) not in found:
                    found[m.group(1)] = s
            if len(found) == 3:
                axes = [found["x"], found["y"], found["z"]]
            elif found:
                log.warning(
                    "%s: only accelerometer axes %s found; reading without accelerometer",
                    path,
                    ", ".join(sorted(found)),
                )
        if axes is None:
            self.acc = None
            self._acc_sigs, self._acc_factors = [], []
            return
        factors = []
        for s in axes:
            f = acc_unit_factor(s.dimension)
            if f is None:
                raise UnitError(
                    f"{path}: channel {s.label!r} has physical dimension "
                    f"{s.dimension or '(empty)'!r}, not an acceleration (g, mg, m/s^2)",
                    path=path,
                    channel=s.label,
                    unit=s.dimension,
                )
            factors.append(f)
        sprs = {s.spr for s in axes}
        if len(sprs) != 1:
            raise InputFileError(
                f"{path}: accelerometer channels "
                f"{', '.join(s.label for s in axes)} have different sample rates",
                path=path,
            )
        self._acc_sigs, self._acc_factors = axes, factors
        self.acc = StreamInfo("acc", axes[0].spr / self.record_s, tuple(s.label for s in axes), "g")

    def _annotation_signal(self):
        return next((s for s in self._signals if s.is_annotation), None)

    def _read_time_keeping(self):
        """Start sub-second offset, and for EDF+D the onset of every record."""
        ann = self._annotation_signal()
        self._rec_onsets = None
        self._first_onset = 0.0
        if ann is not None and "+" in self.format:
            tals = _tal_records(self._record_bytes_of(ann, 0, 1)[0])
            if tals:
                self._first_onset = tals[0][0]
            if self.format.endswith("+d"):
                onsets = np.empty(self.n_records)
                for r0, chunk in self._iter_annotation_chunks(ann):
                    for j, data in enumerate(chunk):
                        t = _tal_records(data)
                        onsets[r0 + j] = (
                            t[0][0]
                            if t
                            else (onsets[r0 + j - 1] + self.record_s if r0 + j else 0.0)
                        )
                self._rec_onsets = onsets - self._first_onset
        frac = self._first_onset if 0 <= self._first_onset < 1 else 0.0
        self.start_time = self._header_start + timedelta(seconds=frac)
        if self._rec_onsets is not None:
            self.duration_s = float(self._rec_onsets[-1] + self.record_s)
        else:
            self.duration_s = float(self.n_records * self.record_s)
        # runs of contiguous records: (first record, end record, time offset of first, s)
        if self._rec_onsets is None:
            self._runs = [(0, self.n_records, 0.0)]
        else:
            runs = []
            start = 0
            for r in range(1, self.n_records + 1):
                if (
                    r == self.n_records
                    or abs(self._rec_onsets[r] - self._rec_onsets[r - 1] - self.record_s) > 1e-6
                ):
                    runs.append((start, r, float(self._rec_onsets[start])))
                    start = r
            self._runs = runs

    # ------------------------------------------------------------ raw access

    def _read_records(self, r0, n):
        """Records r0 .. r0+n-1 as a (n, record_bytes) uint8 array."""
        self._fh.seek(self._header_bytes + r0 * self._record_bytes)
        buf = np.fromfile(self._fh, dtype=np.uint8, count=n * self._record_bytes)
        if buf.size < n * self._record_bytes:  # the file shrank under us
            n = buf.size // self._record_bytes
            buf = buf[: n * self._record_bytes]
        return buf.reshape(n, self._record_bytes)

    def _record_bytes_of(self, sig, r0, n):
        recs = self._read_records(r0, n)
        nb = sig.spr * self._bytes
        return [bytes(row[sig.byte_offset : sig.byte_offset + nb]) for row in recs]

    def _iter_annotation_chunks(self, sig, chunk_records=2048):
        nb = sig.spr * self._bytes
        for r0 in range(0, self.n_records, chunk_records):
            recs = self._read_records(r0, min(chunk_records, self.n_records - r0))
            yield r0, [bytes(row[sig.byte_offset : sig.byte_offset + nb]) for row in recs]

    def _digital(self, recs, sig):
        cols = recs[:, sig.byte_offset : sig.byte_offset + sig.spr * self._bytes]
        if self._bytes == 2:
            return np.ascontiguousarray(cols).view("<i2").reshape(-1).astype(np.int32)
        b = np.ascontiguousarray(cols).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v >= 1 << 23, v - (1 << 24), v)

    def _physical(self, recs, sig, factor):
        gain, offset = sig.gain_offset()
        return (self._digital(recs, sig) * gain + offset) * factor     # float64: what the filters use

    # ------------------------------------------------------------ public

    @property
    def annotations(self) -> list[tuple[float, float, str]]:
        """EDF+ annotations as ``(onset_s, duration_s, text)``, onset from the first sample."""
        if self._annotations is None:
            out = []
            for sig in (s for s in self._signals if s.is_annotation):
                for _, chunk in self._iter_annotation_chunks(sig):
                    for data in chunk:
                        for onset, dur, texts in _tal_records(data):
                            out.extend((round(onset - self._first_onset, 6), dur, t) for t in texts)
            out.sort(key=lambda a: a[0])
            self._annotations = out
        return self._annotations

    def blocks(self, block_s: float = 10.0):
        """Yield EMG and accelerometer :class:`SampleBlock` objects in time order.

        Each block is at most ``block_s`` long (and at least one data record);
        EMG ``data`` has shape (n, 1) in microvolts, accelerometer (n, 3) in g.
        For EDF+D files a ``"gap"`` :class:`SourceEvent` precedes the blocks
        after a gap.  Memory does not grow with the length of the file.
        """
        if not block_s > 0:
            raise ValueError(f"block_s must be > 0, got {block_s}")
        per_block = max(1, int(math.floor(block_s / self.record_s + 1e-9)))
        t_start = self.start_time.timestamp()
        es = self._emg_sig
        prev_end_s = 0.0
        for r_first, r_end, t_off in self._runs:
            if t_off > prev_end_s + 1e-9:
                for name, info, _spr in self._stream_specs():
                    i0 = int(round(prev_end_s * info.fs_hz))
                    i1 = int(round(t_off * info.fs_hz))
                    yield SourceEvent(
                        "gap",
                        t_start + prev_end_s,
                        stream=name,
                        first_index=i0,
                        n_samples=i1 - i0,
                        detail={"gap_s": t_off - prev_end_s, "source": "edf+d"},
                    )
            for r0 in range(r_first, r_end, per_block):
                n = min(per_block, r_end - r0)
                recs = self._read_records(r0, n)
                if recs.shape[0] == 0:
                    return
                t_rec = t_off + (r0 - r_first) * self.record_s
                emg = self._physical(recs, es, self._emg_factor)[:, None]
                yield SampleBlock("emg", self.emg.fs_hz, int(round(t_rec * self.emg.fs_hz)), emg)
                if self.acc is not None:
                    acc = np.stack(
                        [
                            self._physical(recs, s, f)
                            for s, f in zip(self._acc_sigs, self._acc_factors)
                        ],
                        axis=1,
                    )
                    yield SampleBlock(
                        "acc", self.acc.fs_hz, int(round(t_rec * self.acc.fs_hz)), acc
                    )
            prev_end_s = t_off + (r_end - r_first) * self.record_s

    def _stream_specs(self):
        yield "emg", self.emg, self._emg_sig.spr
        if self.acc is not None:
            yield "acc", self.acc, self._acc_sigs[0].spr

    def read_emg(self, start_index: int = 0, n: int | None = None) -> np.ndarray:
        """EMG samples (uV, float64, shape (n,)) by index; for short excerpts and tests.

        Gaps of EDF+D files are not accounted for here (indices count stored samples).
        """
        return self._read_stream(
            self._emg_sig, [self._emg_factor], [self._emg_sig], start_index, n
        )[:, 0]

    def read_acc(self, start_index: int = 0, n: int | None = None) -> np.ndarray:
        """Accelerometer samples (g, float64, shape (n, 3)) by index."""
        if self.acc is None:
            raise ChannelNotFoundError(
                f"{self.path}: no accelerometer channels", path=self.path, available=self.labels
            )
        return self._read_stream(
            self._acc_sigs[0], self._acc_factors, self._acc_sigs, start_index, n
        )

    def _read_stream(self, sig, factors, sigs, start, n):
        total = self.n_records * sig.spr
        n = total - start if n is None else n
        if start < 0 or n < 0 or start + n > total:
            raise ValueError(f"samples {start}..{start + n} outside 0..{total}")
        r0, r1 = start // sig.spr, (start + n + sig.spr - 1) // sig.spr
        recs = self._read_records(r0, r1 - r0)
        cols = [self._physical(recs, s, f) for s, f in zip(sigs, factors)]
        off = start - r0 * sig.spr
        return np.stack(cols, axis=1)[off : off + n]

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        acc = f", acc {self.acc.fs_hz:g} Hz" if self.acc else ""
        return (
            f"<EdfRecording {self.path!r} {self.format} {self.duration_s:.0f} s, "
            f"EMG {self.emg.channels[0]!r} {self.emg.fs_hz:g} Hz{acc}>"
        )


def open_edf(path: str, emg: str | None = None, acc=None) -> EdfRecording:
    """Open an EDF, EDF+ or BDF(+) file for replay.

    Parameters
    ----------
    path : str
    emg : str, optional
        Label of the EMG channel (case-insensitive; spaces, ``-`` and ``_``
        ignored if needed).  Default: the first channel whose label contains
        "EMG".
    acc : str or sequence of str, optional
        The x, y, z accelerometer labels (``"X,Y,Z"`` or a list).  Default:
        channels labelled like "Acc X", "Accel Y", "ACC_Z", "Acc-X", "AccX";
        without all three the recording has no accelerometer (``acc`` None).

    Raises
    ------
    InputFileError
        Missing, empty, not EDF/BDF, corrupt header (field and byte offset named).
    ChannelNotFoundError
        The EMG channel (or a named accelerometer channel) is missing; lists the labels.
    UnitError
        A chosen channel's physical dimension cannot be converted.

    Examples
    --------
    >>> from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "n.edf")
    >>> _ = write_edf(p, SyntheticNight(NightSpec(hours=0.01, seed=1)))
    >>> with open_edf(p) as rec:
    ...     kinds = [b.stream for b in rec.blocks(10.0)]
    >>> kinds[:4]
    ['emg', 'acc', 'emg', 'acc']
    """
    return EdfRecording(path, emg=emg, acc=acc)


# --------------------------------------------------------------------------- writer


@dataclass
class EdfWriteResult:
    """What :func:`write_edf` wrote."""

    path: str
    duration_s: float
    n_records: int
    record_s: float
    n_clipped_emg: int
    n_clipped_acc: int
    n_annotations: int


def _digital(x, lo, hi, dmin, dmax):
    x = np.asarray(x, float)
    d = np.rint((x - lo) * ((dmax - dmin) / (hi - lo)) + dmin)
    return np.clip(d, dmin, dmax).astype(np.int32)


def write_edf(
    path,
    source,
    *,
    emg_fs_hz: float | None = None,
    acc_fs_hz: float | None = None,
    duration_s: float | None = None,
    start_time: datetime | None = None,
    annotations=None,
    emg_label: str = "EMG calf",
    acc_labels=("Acc X", "Acc Y", "Acc Z"),
    emg_range_uv: float = 5000.0,
    acc_range_g: float = 4.0,
    bdf: bool | None = None,
    chunk_s: float = 60.0,
    equipment: str = "crampwatch",
    recording_note: str = "",
    progress=None,
) -> EdfWriteResult:
    """Write EMG (uV) and 3-axis acceleration (g) to an EDF+ (or BDF+) file, in chunks.

    Parameters
    ----------
    path : str
        Output file; ``.bdf`` (or ``bdf=True``) writes 24-bit BDF+.
    source
        One of: an object with ``render_emg(start, n)`` / ``render_acc(start, n)``,
        ``emg_fs_hz``, ``acc_fs_hz``, ``duration_s`` (a
        :class:`~crampwatch.firmware_bridge.synth.SyntheticNight`; its
        ``start_time`` is used if present); a reader (``emg``/``acc``
        StreamInfo and ``blocks()``); or an iterable of :class:`SampleBlock`
        (then give ``emg_fs_hz`` and, if there is acceleration, ``acc_fs_hz``).
        Gaps between blocks are filled with zeros and annotated.
    duration_s : float, optional
        Length to write (default: all of the source).  Only whole data records
        are written.
    start_time : datetime, optional
        Start of the recording; stored as UTC clock time.  Default: the
        source's ``start_time``, else now.
    annotations : iterable, optional
        ``(onset_s, duration_s, text)`` tuples or objects with ``onset_s``,
        ``offset_s``, ``kind`` and ``note`` (labels) to store as EDF+
        annotations.
    emg_range_uv, acc_range_g : float
        Physical range (+-): 5000 uV over 16 bits is 0.153 uV per step; values
        beyond it are clipped (and counted).
    progress : callable, optional
        Called as ``progress(written_s, total_s)`` after each chunk.

    Returns
    -------
    EdfWriteResult

    Examples
    --------
    >>> from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
    >>> import tempfile, os
    >>> night = SyntheticNight(NightSpec(hours=0.01, seed=2))
    >>> res = write_edf(os.path.join(tempfile.mkdtemp(), "n.edf"), night,
    ...                 annotations=night.labels)
    >>> res.duration_s, res.record_s
    (36.0, 1.0)
    """
    import pyedflib  # imported here: reading never needs it

    path = os.fspath(path)
    if bdf is None:
        bdf = path.lower().endswith(".bdf")
    render = hasattr(source, "render_emg")
    reader = not render and hasattr(source, "blocks") and hasattr(source, "emg")
    if render:
        emg_fs = float(source.emg_fs_hz)
        acc_fs = float(source.acc_fs_hz) if getattr(source, "acc_fs_hz", None) else None
        total_s = float(duration_s if duration_s is not None else source.duration_s)
    elif reader:
        emg_fs = float(source.emg.fs_hz)
        acc_fs = float(source.acc.fs_hz) if source.acc is not None else None
        total_s = float(duration_s if duration_s is not None else source.duration_s)
    else:
        if emg_fs_hz is None:
            raise ValueError("write_edf: give emg_fs_hz (and acc_fs_hz) with an iterable of blocks")
        emg_fs, acc_fs = float(emg_fs_hz), (float(acc_fs_hz) if acc_fs_hz else None)
        total_s = float(duration_s) if duration_s is not None else math.inf
    if start_time is None:
        start_time = getattr(source, "start_time", None) or datetime.now(timezone.utc)
    if start_time.tzinfo is not None:
        start_time = start_time.astimezone(timezone.utc)
    start_naive = start_time.replace(tzinfo=None)

    n_ch = 1 + (3 if acc_fs else 0)
    ftype = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    # symmetric digital range: physical 0 is digital 0 exactly
    dmax = (1 << 23) - 1 if bdf else 32767
    dmin = -dmax
    headers = [
        dict(
            label=emg_label,
            dimension="uV",
            sample_frequency=emg_fs,
            physical_max=emg_range_uv,
            physical_min=-emg_range_uv,
            digital_max=dmax,
            digital_min=dmin,
            transducer="surface EMG electrodes",
            prefilter="",
        )
    ]
    if acc_fs:
        headers += [
            dict(
                label=lab,
                dimension="g",
                sample_frequency=acc_fs,
                physical_max=acc_range_g,
                physical_min=-acc_range_g,
                digital_max=dmax,
                digital_min=dmin,
                transducer="accelerometer",
                prefilter="",
            )
            for lab in acc_labels
        ]
    tmp = path + ".part"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyedflib warns about header field lengths
        writer = pyedflib.EdfWriter(tmp, n_ch, file_type=ftype)
    n_ann = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            writer.setSignalHeaders(headers)
            writer.setStartdatetime(start_naive)
            writer.setEquipment(equipment[:30])
            if recording_note:
                writer.setRecordingAdditional(recording_note[:30])
        rec_s = float(writer.record_duration)
        spr_e = writer.get_smp_per_record(0)
        spr_a = writer.get_smp_per_record(1) if acc_fs else 0
        per_chunk = max(1, int(round(chunk_s / rec_s)))
        total_records = int(math.floor(total_s / rec_s + 1e-9)) if math.isfinite(total_s) else None
        if total_records is not None and total_s - total_records * rec_s > 1e-6:
            log.info(
                "%s: the last %.3f s (less than one %g s data record) are not written",
                path,
                total_s - total_records * rec_s,
                rec_s,
            )
        clipped = [0, 0]

        def write_chunk(emg, acc):
            nrec = emg.shape[0] // spr_e
            clipped[0] += int(np.count_nonzero(np.abs(emg) > emg_range_uv))
            rows = [_digital(emg, -emg_range_uv, emg_range_uv, dmin, dmax).reshape(nrec, spr_e)]
            if acc_fs:
                clipped[1] += int(np.count_nonzero(np.abs(acc) > acc_range_g))
                for ax in range(3):
                    rows.append(
                        _digital(acc[:, ax], -acc_range_g, acc_range_g, dmin, dmax).reshape(
                            nrec, spr_a
                        )
                    )
            recs = np.ascontiguousarray(np.hstack(rows), dtype=np.int32)
            for row in recs:
                if writer.blockWriteDigitalSamples(row) < 0:
                    raise OSError(f"{path}: pyedflib failed to write a data record")
            return nrec

        written = 0
        gap_notes = []
        if render:
            while written < total_records:
                n = min(per_chunk, total_records - written)
                emg = source.render_emg(written * spr_e, n * spr_e)
                acc = source.render_acc(written * spr_a, n * spr_a) if acc_fs else None
                written += write_chunk(emg, acc)
                if progress is not None:
                    progress(written * rec_s, total_records * rec_s)
        else:
            blocks = source.blocks() if reader else source
            written, gap_notes = _write_from_blocks(
                blocks,
                write_chunk,
                spr_e,
                spr_a,
                acc_fs,
                emg_fs,
                per_chunk,
                total_records,
                progress,
                rec_s,
            )
        if annotations is not None:
            for a in annotations:
                if hasattr(a, "onset_s"):
                    onset, dur = a.onset_s, a.offset_s - a.onset_s
                    text = a.kind + (f": {a.note}" if getattr(a, "note", "") else "")
                else:
                    onset, dur, text = a
                if onset <= written * rec_s:
                    # edflib keeps at most 40 characters of an annotation's text
                    writer.writeAnnotation(float(onset), float(dur), str(text)[:40])
                    n_ann += 1
        for onset, dur, text in gap_notes:
            writer.writeAnnotation(onset, dur, text)
            n_ann += 1
    except BaseException:
        writer.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    writer.close()
    if written == 0:
        os.remove(tmp)
        raise InputFileError(
            f"{path}: nothing to write (less than one {rec_s:g} s data record)", path=path
        )
    os.replace(tmp, path)
    if clipped[0] or clipped[1]:
        log.info(
            "%s: %d EMG and %d accelerometer samples clipped to the physical range",
            path,
            clipped[0],
            clipped[1],
        )
    return EdfWriteResult(path, written * rec_s, written, rec_s, clipped[0], clipped[1], n_ann)


def _write_from_blocks(
    blocks, write_chunk, spr_e, spr_a, acc_fs, emg_fs, per_chunk, total_records, progress, rec_s
):
    """Buffer SampleBlocks per stream; write whole records as both streams allow."""
    buf = {"emg": [], "acc": []}
    have = {"emg": 0, "acc": 0}
    nxt = {"emg": 0, "acc": 0}
    gap_notes = []
    written = 0
    need_acc = bool(acc_fs)

    def take(name, n):
        parts, got = [], 0
        while got < n:
            head = buf[name][0]
            k = min(n - got, head.shape[0])
            parts.append(head[:k])
            if k == head.shape[0]:
                buf[name].pop(0)
            else:
                buf[name][0] = head[k:]
            got += k
        have[name] -= n
        return np.concatenate(parts)

    def flush(final=False):
        nonlocal written
        while True:
            nrec = have["emg"] // spr_e
            if need_acc:
                nrec = min(nrec, have["acc"] // spr_a)
            if total_records is not None:
                nrec = min(nrec, total_records - written)
            if nrec <= 0 or (nrec < per_chunk and not final):
                return
            nrec = min(nrec, per_chunk)
            emg = take("emg", nrec * spr_e)
            acc = take("acc", nrec * spr_a) if need_acc else None
            written += write_chunk(emg, acc)
            if progress is not None:
                progress(written * rec_s, (total_records or written) * rec_s)

    for blk in blocks:
        if isinstance(blk, SourceEvent) or blk.stream not in buf:
            continue
        if blk.stream == "acc" and not need_acc:
            continue
        data = np.asarray(blk.data, np.float64)
        data = data[:, 0] if blk.stream == "emg" and data.ndim == 2 else data
        if blk.first_index > nxt[blk.stream]:
            missing = blk.first_index - nxt[blk.stream]
            fill = np.zeros((missing,) + data.shape[1:])
            buf[blk.stream].append(fill)
            have[blk.stream] += missing
            if blk.stream == "emg":
                gap_notes.append(
                    (
                        nxt["emg"] / emg_fs,
                        missing / emg_fs,
                        f"crampwatch: gap, {missing} EMG samples missing (zero-filled)",
                    )
                )
                log.warning(
                    "gap of %d EMG samples at %.3f s zero-filled in the EDF",
                    missing,
                    nxt["emg"] / emg_fs,
                )
        elif blk.first_index < nxt[blk.stream]:
            data = data[nxt[blk.stream] - blk.first_index :]
        if data.shape[0]:
            buf[blk.stream].append(data)
            have[blk.stream] += data.shape[0]
            nxt[blk.stream] = max(nxt[blk.stream], blk.first_index + blk.n_samples)
        flush()
        if total_records is not None and written >= total_records:
            break
    flush(final=True)
    return written, gap_notes
