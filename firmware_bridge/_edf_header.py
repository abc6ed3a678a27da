"""EDF, EDF+ and BDF(+) headers: parse every field and check it against the format.

Private to :mod:`crampwatch.firmware_bridge.edf`.  Pure byte work, no I/O: the
reader hands in the bytes it read and the file's size.  Every check that fails
raises one :class:`InputFileError` naming the file, the field (and the signal's
label), its byte offset and the value found.

What is checked, and why (EDF: Kemp et al. 1992; EDF+: Kemp & Olivan 2003,
edfplus.info/specs; BDF: BioSemi's 24-bit variant):

- version: ``"0"`` padded to 8 bytes (EDF) or ``0xFF "BIOSEMI"`` (BDF);
- start date ``dd.mm.yy`` and time ``hh.mm.ss`` (a real date and time; years
  1985-2084, or the 4-digit year of EDF+'s "Startdate dd-MMM-yyyy" when its last
  two digits agree or the date field says ``yy``);
- header bytes = 256 x (1 + number of signals); number of signals 1-9999
  (a 4-character field);
- number of data records: a positive count, or -1, which the EDF+ spec allows
  only while a file is being recorded: such a file (a capture cut short) is read
  up to its last whole record;
- duration of a data record: EDF allows any positive duration (0 only for a file
  that holds nothing but annotations, which has no signal to read).  crampwatch
  reads at most 4000 Hz and at least 20 Hz and a record must hold a whole
  number of samples of each signal, so records shorter than 1 ms or longer than
  a day only come from damage: they are refused with the value in the message;
- per signal: samples per record >= 1 (layout of every record, so checked for
  every signal); for the signals read (see :meth:`EdfSignal.check_scaling`: a
  damaged signal that is not read does not make the file unreadable), numbers,
  physical minimum != maximum, digital minimum < maximum and both within the
  format (EDF 16-bit: -32768..32767, BDF 24-bit: -8388608..8388607: a wider
  range would scale the stored values down to almost nothing, silently), all
  numbers finite.

Numbers must be plain ASCII decimals (``nan``, ``inf``, ``1_0`` are refused).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from crampwatch.errors import InputFileError

EDF_VERSION = b"0       "
BDF_VERSION = b"\xffBIOSEMI"
DIGITAL_RANGE = {"edf": (-32768, 32767), "bdf": (-(1 << 23), (1 << 23) - 1)}
BYTES_PER_SAMPLE = {"edf": 2, "bdf": 3}
MAX_SIGNALS = 9999
MIN_RECORD_S = 1e-3
MAX_RECORD_S = 86400.0

_NUMBER = re.compile(rb"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{2}|yy)$")
_TIME = re.compile(r"^(\d{1,2})[.:](\d{1,2})[.:](\d{1,2})$")
_EDFPLUS_DATE = re.compile(r"Startdate\s+(\d{2})-([A-Za-z]{3})-(\d{4})\b")
_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}

SIGNAL_FIELDS = (
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
)


def _bad(path, what: str, offset: int, text, why: str) -> InputFileError:
    return InputFileError(f"{path}: header field {what} (byte {offset}) is {text!r}: {why}",
                          path=path, offset=offset)


def text_field(path, raw: bytes, offset: int, width: int, name: str) -> str:
    """The field's text, stripped.  EDF says ASCII; in the wild labels and units
    come as UTF-8 or Latin-1 (and a 16-byte label may cut a UTF-8 character in
    two): any bytes decode."""
    chunk = raw[offset:offset + width]
    if len(chunk) < width:
        raise InputFileError(f"{path}: header ends inside field {name!r} at byte {offset} "
                             f"(file too short for an EDF header)", path=path, offset=offset)
    try:
        return chunk.decode("utf-8").strip()
    except UnicodeDecodeError:
        return chunk.decode("latin-1").strip()


def number_field(path, raw: bytes, offset: int, width: int, name: str, integer=False):
    """A numeric field: a finite ASCII decimal (an integer where ``integer``)."""
    chunk = raw[offset:offset + width]
    text_field(path, raw, offset, width, name)          # length check
    stripped = chunk.strip(b" \x00")
    shown = stripped.decode("latin-1")
    if not _NUMBER.match(stripped):
        raise _bad(path, repr(name), offset, shown, "not a number (corrupt header)")
    value = float(stripped)
    if not math.isfinite(value):
        raise _bad(path, repr(name), offset, shown, "not a finite number (corrupt header)")
    if integer:
        if value != math.floor(value) or abs(value) > 2**53:
            raise _bad(path, repr(name), offset, shown, "not an integer (corrupt header)")
        return int(value)
    return value


@dataclass
class EdfSignal:
    """One signal's header, with its place in a data record."""

    index: int
    label: str
    transducer: str
    dimension: str
    phys_min: float
    phys_max: float
    dig_min: int
    dig_max: int
    prefilter: str
    spr: int                 # samples per record
    byte_offset: int = 0     # offset of this signal inside a record, bytes
    field_offsets: dict | None = None   # field name -> byte offset in the header
    field_error: InputFileError | None = None   # an unreadable scaling field, raised on use

    @property
    def is_annotation(self) -> bool:
        return self.label.strip() in ("EDF Annotations", "BDF Annotations")

    def gain_offset(self):
        span = self.dig_max - self.dig_min
        gain = (self.phys_max - self.phys_min) / span
        return gain, self.phys_min - gain * self.dig_min

    def check_scaling(self, path, kind: str, factor: float = 1.0) -> None:
        """Check the fields that turn this signal's stored integers into physical
        values (called for the signals crampwatch reads; ``factor`` converts the
        physical unit to crampwatch's, e.g. 1e6 from V to uV)."""
        if self.field_error is not None:
            raise self.field_error
        off = self.field_offsets or {}
        lab = f"of {self.label!r} (signal {self.index + 1})"
        lo, hi = DIGITAL_RANGE[kind]
        bits = "16-bit EDF" if kind == "edf" else "24-bit BDF"
        for name, value in (("digital minimum", self.dig_min), ("digital maximum", self.dig_max)):
            if not lo <= value <= hi:
                raise _bad(path, f"{name!r} {lab}", off.get(name, 0), str(value),
                           f"outside the {bits} range {lo}..{hi}: stored samples cannot reach "
                           f"it, so their scaling would be wrong (corrupt header)")
        if self.dig_max <= self.dig_min:
            raise _bad(path, f"'digital maximum' {lab}", off.get("digital maximum", 0),
                       str(self.dig_max), f"not above the digital minimum {self.dig_min} "
                       f"(corrupt header)")
        if self.phys_max == self.phys_min:
            raise _bad(path, f"'physical maximum' {lab}", off.get("physical maximum", 0),
                       f"{self.phys_max:g}", "equal to the physical minimum: the signal "
                       "would have no scale (corrupt header)")
        gain, offset = self.gain_offset()
        peak = max(abs(self.phys_min), abs(self.phys_max)) * abs(factor)
        if not (math.isfinite(gain) and math.isfinite(offset) and math.isfinite(peak)
                and gain != 0.0):
            raise _bad(path, f"'physical maximum' {lab}", off.get("physical maximum", 0),
                       f"{self.phys_max:g}", f"with physical minimum {self.phys_min:g} and "
                       f"unit {self.dimension!r} the values overflow (corrupt header)")


@dataclass
class EdfHeader:
    """The fixed part of the header and every signal's header."""

    kind: str                     # "edf" or "bdf"
    patient: str
    recording: str
    start: datetime               # header clock time, taken as UTC
    header_bytes: int
    reserved: str
    n_records: int                # as the header says: -1 means "unknown"
    record_s: float
    signals: list
    record_bytes: int

    @property
    def format(self) -> str:
        plus = self.reserved.upper()
        if plus.startswith(("EDF+D", "BDF+D")):
            return f"{self.kind}+d"
        if plus.startswith(("EDF+C", "BDF+C")):
            return f"{self.kind}+c"
        return self.kind


def parse_fixed(path, raw: bytes, kind: str):
    """Check the first 256 bytes; return ``(fields, n_signals)``."""
    if len(raw) < 256:
        raise InputFileError(f"{path}: file too short for an EDF header ({len(raw)} of 256 "
                             f"bytes)", path=path, offset=len(raw))
    want = BDF_VERSION if kind == "bdf" else EDF_VERSION
    if raw[:8] != want:
        raise _bad(path, "'version'", 0, raw[:8].decode("latin-1"),
                   f"not {want.decode('latin-1')!r} ({kind.upper()} version)")
    recording = text_field(path, raw, 88, 80, "recording")
    start = parse_start(path, text_field(path, raw, 168, 8, "startdate"),
                        text_field(path, raw, 176, 8, "starttime"), recording)
    header_bytes = number_field(path, raw, 184, 8, "header bytes", integer=True)
    reserved = text_field(path, raw, 192, 44, "reserved")
    n_records = number_field(path, raw, 236, 8, "number of data records", integer=True)
    if n_records == 0 or n_records < -1:
        raise _bad(path, "'number of data records'", 236, str(n_records),
                   "must be a positive count (or -1 while the file is being recorded)")
    record_s = number_field(path, raw, 244, 8, "duration of a data record")
    if not MIN_RECORD_S <= record_s <= MAX_RECORD_S:
        raise _bad(path, "'duration of a data record'", 244, f"{record_s:g}",
                   f"crampwatch reads records of {MIN_RECORD_S:g} s to {MAX_RECORD_S:g} s "
                   f"(must be > 0; shorter or longer ones only come from a damaged header)")
    ns = number_field(path, raw, 252, 4, "number of signals", integer=True)
    if not 1 <= ns <= MAX_SIGNALS:
        raise _bad(path, "'number of signals'", 252, str(ns),
                   f"must be 1 to {MAX_SIGNALS} (corrupt header)")
    if header_bytes != 256 * (ns + 1):
        raise _bad(path, "'header bytes'", 184, str(header_bytes),
                   f"expected 256 * (1 + {ns} signals) = {256 * (ns + 1)} (corrupt header)")
    fields = dict(patient=text_field(path, raw, 8, 80, "patient"), recording=recording,
                  start=start, header_bytes=header_bytes, reserved=reserved,
                  n_records=n_records, record_s=record_s)
    return fields, ns


def parse_signals(path, raw: bytes, kind: str, fields: dict, ns: int) -> EdfHeader:
    """Parse the signal headers (``raw`` holds the whole header)."""
    if len(raw) < 256 * (ns + 1):
        raise InputFileError(f"{path}: file ends inside the signal headers ({len(raw)} of "
                             f"{256 * (ns + 1)} bytes)", path=path, offset=len(raw))
    base = 256
    cols = {}
    for name, w in SIGNAL_FIELDS:
        cols[name] = [(base + i * w, w) for i in range(ns)]
        base += ns * w
    nbytes = BYTES_PER_SAMPLE[kind]
    sigs = []
    in_record = 0
    for i in range(ns):
        f = {name: cols[name][i] for name, _ in SIGNAL_FIELDS}
        label = text_field(path, raw, *f["label"], f"label of signal {i + 1}")
        lab = f"of {label!r} (signal {i + 1})"

        errors = []

        def num(name, integer=False, _f=f, _lab=lab, _errors=errors):
            """A scaling field: an unreadable one matters only if the signal is read."""
            try:
                return number_field(path, raw, *_f[name], f"{name} {_lab}", integer)
            except InputFileError as exc:
                _errors.append(exc)
                return 0

        s = EdfSignal(
            index=i, label=label,
            transducer=text_field(path, raw, *f["transducer"], f"transducer {lab}"),
            dimension=text_field(path, raw, *f["physical dimension"],
                                 f"physical dimension {lab}"),
            phys_min=num("physical minimum"), phys_max=num("physical maximum"),
            dig_min=num("digital minimum", True), dig_max=num("digital maximum", True),
            prefilter=text_field(path, raw, *f["prefilter"], f"prefilter {lab}"),
            spr=number_field(path, raw, *f["samples per record"],
                             f"samples per record {lab}", True),
            byte_offset=in_record,
            field_offsets={name: off for name, (off, _) in f.items()},
            field_error=errors[0] if errors else None)
        if s.spr < 1:
            raise _bad(path, f"'samples per record' {lab}", f["samples per record"][0],
                       str(s.spr), "must be at least 1 (corrupt header)")
        in_record += s.spr * nbytes
        sigs.append(s)
    return EdfHeader(kind=kind, signals=sigs, record_bytes=in_record, **fields)


def parse_start(path, date_s: str, time_s: str, recording_field: str) -> datetime:
    """Start of the recording (clock time of the header, taken as UTC)."""
    md, mt = _DATE.match(date_s), _TIME.match(time_s)
    if md is None:
        raise _bad(path, "'startdate'", 168, date_s, "not dd.mm.yy (corrupt header)")
    if mt is None:
        raise _bad(path, "'starttime'", 176, time_s, "not hh.mm.ss (corrupt header)")
    dd, mm, yy = int(md.group(1)), int(md.group(2)), md.group(3)
    year = None
    plus = _EDFPLUS_DATE.search(recording_field)
    if plus:  # EDF+ carries the 4-digit year in the recording field
        y4 = int(plus.group(3))
        if yy == "yy" or y4 % 100 == int(yy):
            year = y4
    if year is None:
        if yy == "yy":
            raise _bad(path, "'startdate'", 168, date_s,
                       "the year 'yy' needs an EDF+ 'Startdate dd-MMM-yyyy' in the recording "
                       "field, which this file lacks")
        year = 1900 + int(yy) if int(yy) >= 85 else 2000 + int(yy)
    if not 1900 <= year <= 9000:
        raise _bad(path, "'startdate'", 168, date_s, f"year {year} is not a plausible year")
    try:
        return datetime(year, mm, dd, int(mt.group(1)), int(mt.group(2)), int(mt.group(3)),
                        tzinfo=timezone.utc)
    except ValueError:
        raise _bad(path, "'startdate'/'starttime'", 168, f"{date_s} {time_s}",
                   "not a valid date and time (corrupt header)") from None
