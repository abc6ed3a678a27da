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
code path serves 16-bit EDF and 24-bit BDF, and every header field is checked
against the format (``_edf_header``): a damaged one gets one error naming the
file, the field, the signal, its byte offset and the value.  Memory never
follows what a header claims: records are read 8 MiB at a time, a record
larger than that a slice of the chosen signals at a time.  Only regular files
are read (a FIFO is refused, never waited on).  Files written by pyedflib and
edfio, and a real sleep-lab file (Nox A1, non-ASCII labels), are read back in
the tests.

Without ``--emg`` the EMG channel is a label containing "EMG" or, in a
polysomnography file, a leg channel ("Right Leg", "LAT"/"RAT", "Tib"...):
see :func:`choose_emg_channel`.  EMG is read at 200-4000 Hz, accelerometers
at 20-200 Hz.

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
from crampwatch.firmware_bridge._edf_header import (
    BYTES_PER_SAMPLE,
    parse_fixed,
    parse_signals,
)
from crampwatch.firmware_bridge.readers import format_of_head, open_regular
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo

from crampwatch.errors import ChannelNotFoundError, InputFileError, UnitError

__all__ = [
    "EdfRecording",
    "choose_emg_channel",
    "choose_emg_channels",
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


# --------------------------------------------------------------------------- limits

EMG_FS_RANGE_HZ = (200.0, 4000.0)
ACC_FS_RANGE_HZ = (20.0, 200.0)
# bytes of data records read at a time; a record larger than this is read a
# slice of the chosen signals at a time, so memory never follows a header's claims
READ_CHUNK_BYTES = 8 << 20
# a record's time-keeping annotation is its first TAL: a few dozen bytes
TIME_KEEPING_BYTES = 1024
# onsets (EDF+ time keeping and annotations) beyond this are damage: ~31 years
MAX_ONSET_S = 1e9


# --------------------------------------------------------------------------- channels

_ACC_RE = re.compile(
    r"^(?:acc(?:el(?:erometer|eration)?)?[\s_\-.]*(?P<a>[xyz])"
    r"|(?P<b>[xyz])[\s_\-.]*axis"
    r"|axis[\s_\-.]*(?P<c>[xyz]))$"
)
# PSG leg EMG: "Leg", "Right Leg", "LLEG", "Leg/R", "LAT", "RAT2", "Tib L", "Tibialis R"
_LEG_TOKEN = re.compile(r"^(?:[lr]?legs?[lr12]?|[lr]at[12]?|tib\w*)$")
_RIGHT_TOKEN = re.compile(r"^(?:right|r|rt|droite?|rechts?|derech[oa]|dx|rlegs?\d?|rat\d?|"
                          r"legs?r|tib\w*r)$")
_IMPEDANCE = re.compile(r"(?<![a-z])imp")            # "Imp", "Impedance", "Impédance", "(Imp)"
_CHIN_TOKEN = re.compile(r"^(?:chin\d*|submental|subm|ment\w*)$")
_CALF_TOKEN = re.compile(r"^(?:calf|calves|gastro\w*|soleus|sol)$")


def _norm(label: str) -> str:
    return label.strip().lower()


def _squash(label: str) -> str:
    return re.sub(r"[\s_\-.]+", "", label.strip().lower())


def _tokens(label: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", label.lower())


def _is_impedance(label: str) -> bool:
    return bool(_IMPEDANCE.search(label.lower()))


def _is_leg(label: str) -> bool:
    return any(_LEG_TOKEN.match(t) for t in _tokens(label))


def _is_right(label: str) -> bool:
    return any(_RIGHT_TOKEN.match(t) for t in _tokens(label))


def choose_emg_channel(labels: list[str]) -> tuple[int, str] | None:
    """Index of the EMG channel to read when none is named, and why; None if none fits.

    The rule, in order (impedance channels, "Imp"/"Impédance", never count):

    1. a label containing "EMG" with a calf or leg word ("calf", "gastro...",
       "soleus", or a leg word below), right leg first;
    2. a polysomnography leg channel: a label with a word like "Leg", "LLEG",
       "Leg/R", "LAT"/"RAT" (left/right anterior tibialis) or "Tib...": the first
       right-leg one ("Right", "R", "RLEG", "RAT", "droite", ...), else the first;
    3. the first label containing "EMG" that is not a chin (submental) EMG;
    4. the first label containing "EMG" (a chin EMG: better than nothing).

    Leg channels come before a bare "EMG" because in a sleep-lab file that is
    the chin.  The right leg is preferred only to make the choice
    deterministic: PSG files record both legs, crampwatch follows one channel;
    ``--emg`` names the other.

    Examples
    --------
    >>> choose_emg_channel(["EEG C3", "Left Leg", "Right Leg", "Jambe droite Imp"])
    (2, 'PSG leg channel (right leg preferred)')
    >>> choose_emg_channel(["EMG", "LAT", "RAT"])
    (2, 'PSG leg channel (right leg preferred)')
    >>> choose_emg_channel(["EMG calf", "Acc X"])
    (0, "label contains 'EMG' and a leg word")
    """
    usable = [(i, lab) for i, lab in enumerate(labels) if not _is_impedance(lab)]
    emg = [(i, lab) for i, lab in usable if "emg" in lab.lower()]
    legs = [(i, lab) for i, lab in usable if _is_leg(lab)]

    def right_first(cands):
        return next(((i, lab) for i, lab in cands if _is_right(lab)), cands[0])

    emg_legs = [c for c in emg if _is_leg(c[1]) or any(_CALF_TOKEN.match(t)
                                                       for t in _tokens(c[1]))]
    if emg_legs:
        return right_first(emg_legs)[0], "label contains 'EMG' and a leg word"
    if legs:
        return right_first(legs)[0], "PSG leg channel (right leg preferred)"
    not_chin = [c for c in emg if not any(_CHIN_TOKEN.match(t) for t in _tokens(c[1]))]
    if not_chin:
        return not_chin[0][0], "label contains 'EMG'"
    if emg:
        return emg[0][0], "label contains 'EMG' (a chin EMG: no leg channel in the file)"
    return None


def choose_emg_channels(labels: list[str]) -> list[int]:
    """Indices of every EMG channel (``--emg all``), in file order; [] if none.

    The same rules as :func:`choose_emg_channel`, taking every channel of the
    first rule that finds any: labels with "EMG" and a calf or leg word
    together with the polysomnography leg channels; else every label with
    "EMG" that is not a chin EMG; else the chin EMG.  Impedance channels never.

    Examples
    --------
    >>> choose_emg_channels(["EMG chin", "EMG L calf", "EMG R calf", "Acc X"])
    [1, 2]
    >>> choose_emg_channels(["EEG C3", "Left Leg", "Right Leg", "Left Leg Imp"])
    [1, 2]
    >>> choose_emg_channels(["EMG 1", "EMG 2", "ECG"])
    [0, 1]
    """
    usable = [(i, lab) for i, lab in enumerate(labels) if not _is_impedance(lab)]
    emg = [(i, lab) for i, lab in usable if "emg" in lab.lower()]
    legs = [i for i, lab in usable
            if _is_leg(lab) or ("emg" in lab.lower()
                                and any(_CALF_TOKEN.match(t) for t in _tokens(lab)))]
    if legs:
        return legs
    not_chin = [i for i, lab in emg if not any(_CHIN_TOKEN.match(t) for t in _tokens(lab))]
    return not_chin or [i for i, _ in emg[:1]]


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


# --------------------------------------------------------------------------- annotations

_TAL_ONSET = re.compile(rb"^[+-]\d+(?:\.\d*)?$")
_TAL_DURATION = re.compile(rb"^\d+(?:\.\d*)?$")


def _tal_records(data: bytes):
    """Parse the TALs of one record's annotation bytes -> list of (onset, duration, texts).

    Onsets and durations must be the spec's plain decimals ("+12.5", "0.25");
    a TAL with anything else (or a non-finite value) is skipped.
    """
    out = []
    for tal in data.split(b"\x00"):
        if not tal or tal[:1] not in (b"+", b"-"):
            continue
        parts = tal.split(b"\x14")
        head = parts[0].split(b"\x15")
        if not _TAL_ONSET.match(head[0]) or (
            len(head) > 1 and head[1] and not _TAL_DURATION.match(head[1])
        ):
            continue
        onset = float(head[0])
        duration = float(head[1]) if len(head) > 1 and head[1] else 0.0
        if not (math.isfinite(onset) and math.isfinite(duration)):
            continue
        texts = [p.decode("utf-8", "replace") for p in parts[1:] if p]
        out.append((onset, duration, texts))
    return out


def _time_keeping_onset(data: bytes):
    """Onset of a record's time-keeping TAL (its first TAL), or None."""
    tals = _tal_records(data)
    return tals[0][0] if tals else None


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

    def __init__(self, path: str, emg: str | list[str] | None = None, acc=None):
        self.path = path = os.fspath(path)
        self._fh = open_regular(path)
        try:
            kind = format_of_head(path, self._fh.read(256))
            if kind not in ("edf", "bdf"):
                raise InputFileError(f"{path}: not an EDF/BDF file", path=path, offset=0)
            self._fh.seek(0)
            self._parse_header(kind)
            self._choose_channels(emg, acc)
            self._read_time_keeping()
        except OSError as exc:
            self._fh.close()
            raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}",
                                 path=path) from exc
        except BaseException:
            self._fh.close()
            raise
        self._annotations = None

    # ------------------------------------------------------------ header

    def _parse_header(self, kind):
        path = self.path
        raw = self._fh.read(256)
        fields, ns = parse_fixed(path, raw, kind)
        raw += self._fh.read(256 * ns)
        hdr = parse_signals(path, raw, kind, fields, ns)
        self._kind = kind
        self._bytes = BYTES_PER_SAMPLE[kind]
        self._signals = hdr.signals
        self._record_bytes = rb = hdr.record_bytes
        self._header_bytes = hdr.header_bytes
        self.record_s = hdr.record_s
        self.labels = [s.label for s in hdr.signals]
        self.format = hdr.format
        self._header_start = hdr.start
        self.patient = hdr.patient
        self.recording = hdr.recording
        n_hdr = hdr.n_records
        size = os.fstat(self._fh.fileno()).st_size
        data_bytes = max(0, size - hdr.header_bytes)
        whole, partial = divmod(data_bytes, rb)
        if whole == 0:
            raise InputFileError(
                f"{path}: the file holds no whole data record: its signal headers make a "
                f"record {rb} bytes long, and {data_bytes} bytes follow the header",
                path=path,
                offset=hdr.header_bytes,
            )
        if n_hdr == -1:  # the EDF+ spec allows it only while the file is being recorded
            n = whole
            log.warning(
                "%s: the header's number of data records is -1 (the file was still being "
                "recorded); reading its %d whole records%s",
                path,
                whole,
                f" ({partial} trailing bytes of a partial record ignored)" if partial else "",
            )
        elif whole < n_hdr:
            n = whole
            log.warning(
                "%s: the file is likely truncated: the header says %d data records, the "
                "file holds %d whole records%s; reading those (%.1f of %.1f s)",
                path,
                n_hdr,
                whole,
                f" and {partial} bytes of a partial one" if partial else "",
                whole * self.record_s,
                n_hdr * self.record_s,
            )
        else:
            n = n_hdr
            if whole > n_hdr or partial:
                log.warning(
                    "%s: %d bytes after the last of the %d data records are ignored",
                    path,
                    data_bytes - n * rb,
                    n,
                )
        self.n_records = int(n)

    def _choose_channels(self, emg, acc):
        path = self.path
        data_sigs = [s for s in self._signals if not s.is_annotation]
        available = self.labels
        if isinstance(emg, str) and emg.strip().lower() == "all":
            picks = choose_emg_channels([s.label for s in data_sigs])
            if not picks:
                raise ChannelNotFoundError(
                    f"{path}: no EMG channel (no label contains 'EMG' and none is a leg "
                    f"channel such as 'Leg', 'LAT'/'RAT' or 'Tib'); the file has: "
                    f"{', '.join(available)}; name them with --emg A,B",
                    path=path,
                    available=available,
                )
            chosen = [data_sigs[i] for i in picks
                      if emg_unit_factor(data_sigs[i].dimension) is not None] \
                or [data_sigs[picks[0]]]          # none in volts: the unit error below
        elif emg is not None and not isinstance(emg, str):
            names = [str(e) for e in emg]
            if not names:
                raise ChannelNotFoundError(f"{path}: no EMG channel named", path=path,
                                           available=available)
            chosen = []
            for nm in names:
                sig = _find(path, data_sigs, nm, available)
                if any(sig is c for c in chosen):
                    raise InputFileError(f"{path}: EMG channel {sig.label!r} named twice",
                                         path=path)
                chosen.append(sig)
        elif emg is not None:
            chosen = [_find(path, data_sigs, emg, available)]
        else:
            choice = choose_emg_channel([s.label for s in data_sigs])
            if choice is None:
                raise ChannelNotFoundError(
                    f"{path}: no EMG channel (no label contains 'EMG' and none is a leg "
                    f"channel such as 'Leg', 'LAT'/'RAT' or 'Tib'); the file has: "
                    f"{', '.join(available)}; name one with --emg",
                    path=path,
                    available=available,
                )
            es, why = data_sigs[choice[0]], choice[1]
            first_emg = next((s for s in data_sigs if "emg" in s.label.lower()), None)
            if es is not first_emg:  # not what "the first label containing EMG" would give
                others = [s.label for s in data_sigs if s is not es and _is_leg(s.label)
                          and not _is_impedance(s.label)]
                log.warning(
                    "%s: EMG channel %r chosen: %s%s; name another with --emg",
                    path, es.label, why,
                    f"; other leg channels: {', '.join(map(repr, others))}" if others else "",
                )
            chosen = [es]
        factors = []
        for es in chosen:
            factor = emg_unit_factor(es.dimension)
            if factor is None:
                raise UnitError(
                    f"{path}: channel {es.label!r} has physical dimension "
                    f"{es.dimension or '(empty)'!r}, not a voltage (uV, mV, V)",
                    path=path,
                    channel=es.label,
                    unit=es.dimension,
                )
            es.check_scaling(path, self._kind, factor)
            factors.append(factor)
        if len({es.spr for es in chosen}) > 1:
            rates = ", ".join(f"{es.label!r} {es.spr / self.record_s:g} Hz" for es in chosen)
            raise InputFileError(
                f"{path}: the EMG channels are sampled at different rates ({rates}); "
                f"crampwatch watches channels of one rate together: name them with --emg",
                path=path,
            )
        es = chosen[0]
        fs = es.spr / self.record_s
        lo, hi = EMG_FS_RANGE_HZ
        if not lo * (1 - 1e-9) <= fs <= hi * (1 + 1e-9):
            raise InputFileError(
                f"{path}: EMG channel {es.label!r} is sampled at {fs:g} Hz ({es.spr} samples "
                f"per {self.record_s:g} s data record); crampwatch reads EMG sampled at "
                f"{lo:g}-{hi:g} Hz",
                path=path,
            )
        self._emg_sigs, self._emg_factors = chosen, factors
        self._emg_sig, self._emg_factor = es, factors[0]
        self.emg = StreamInfo("emg", fs, tuple(s.label for s in chosen), "uV")

        axes = None
        named = acc is not None
        if named:
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
                if m:
                    axis = m.group("a") or m.group("b") or m.group("c")
                    found.setdefault(axis, s)
            if len(found) == 3:
                axes = [found["x"], found["y"], found["z"]]
            elif found:
                log.warning(
                    "%s: only accelerometer axes %s found; reading without accelerometer",
                    path,
                    ", ".join(sorted(found)),
                )
        self.acc = None
        self._acc_sigs, self._acc_factors = [], []
        if axes is None:
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
            s.check_scaling(path, self._kind, f)
            factors.append(f)
        sprs = {s.spr for s in axes}
        fs = axes[0].spr / self.record_s
        lo, hi = ACC_FS_RANGE_HZ
        problem = None
        if len(sprs) != 1:
            problem = "have different sample rates"
        elif not lo * (1 - 1e-9) <= fs <= hi * (1 + 1e-9):
            problem = (f"are sampled at {fs:g} Hz; crampwatch reads accelerometers sampled at "
                       f"{lo:g}-{hi:g} Hz")
        if problem is not None:
            labels = ", ".join(repr(s.label) for s in axes)
            if named:
                raise InputFileError(f"{path}: accelerometer channels {labels} {problem}",
                                     path=path)
            log.warning("%s: accelerometer channels %s %s; reading without accelerometer",
                        path, labels, problem)
            return
        self._acc_sigs, self._acc_factors = axes, factors
        self.acc = StreamInfo("acc", fs, tuple(s.label for s in axes), "g")

    def _annotation_signal(self):
        return next((s for s in self._signals if s.is_annotation), None)

    def _record_offset(self, r: int) -> int:
        return self._header_bytes + r * self._record_bytes

    def _read_time_keeping(self):
        """Start sub-second offset, and for EDF+D the onset of every record."""
        path = self.path
        ann = self._annotation_signal()
        self._rec_onsets = None
        self._first_onset = 0.0
        plus = "+" in self.format
        if plus and ann is None:
            if self.format.endswith("+d"):
                raise InputFileError(
                    f"{path}: an EDF+D (discontinuous) file without an 'EDF Annotations' "
                    f"signal: the time of its data records is unknown",
                    path=path,
                    offset=192,
                )
            log.warning("%s: EDF+ file without an 'EDF Annotations' signal; read as EDF", path)
        if plus and ann is not None:
            onsets = np.empty(self.n_records) if self.format.endswith("+d") else None
            last = self.n_records if onsets is not None else 1
            missing = 0
            for r, data in self._annotation_bytes(ann, 0, last, TIME_KEEPING_BYTES):
                t = _time_keeping_onset(data)
                at = self._record_offset(r) + ann.byte_offset
                if t is None:
                    missing += 1
                    t = onsets[r - 1] + self.record_s if r else 0.0
                elif not 0.0 <= t <= MAX_ONSET_S:
                    raise InputFileError(
                        f"{path}: the time-keeping annotation of data record {r + 1} (byte "
                        f"{at}) says {t:+g} s: onsets must be finite, non-negative and at "
                        f"most {MAX_ONSET_S:g} s (corrupt file)",
                        path=path,
                        offset=at,
                    )
                elif r and t < onsets[r - 1] + self.record_s - 1e-6 * (1 + self.record_s):
                    raise InputFileError(
                        f"{path}: data record {r + 1} (byte {at}) starts at {t:g} s, before "
                        f"the end of record {r} ({onsets[r - 1] + self.record_s:g} s): EDF+D "
                        f"records must follow each other in time (corrupt file)",
                        path=path,
                        offset=at,
                    )
                if r == 0:
                    self._first_onset = t
                if onsets is not None:
                    onsets[r] = t
            if missing:
                log.warning(
                    "%s: %d data records have no time-keeping annotation; each is taken to "
                    "follow the one before it",
                    path,
                    missing,
                )
            if onsets is not None:
                self._rec_onsets = onsets - self._first_onset
        frac = self._first_onset if 0 <= self._first_onset < 1 else 0.0
        self.start_time = self._header_start + timedelta(seconds=frac)
        if self._rec_onsets is not None:
            self.duration_s = float(self._rec_onsets[-1] + self.record_s)
        else:
            self.duration_s = float(self.n_records * self.record_s)
        if self.duration_s > MAX_ONSET_S:
            raise InputFileError(
                f"{path}: the file claims {self.duration_s:g} s of recording (more than "
                f"{MAX_ONSET_S:g} s: corrupt header)",
                path=path,
                offset=236,
            )
        # runs of contiguous records: (first record, end record, time offset of first, s)
        if self._rec_onsets is None:
            self._runs = [(0, self.n_records, 0.0)]
        else:
            ends = self._rec_onsets[:-1] + self.record_s
            breaks = np.flatnonzero(np.abs(self._rec_onsets[1:] - ends) > 1e-6) + 1
            bounds = [0, *breaks.tolist(), self.n_records]
            self._runs = [
                (a, b, float(self._rec_onsets[a])) for a, b in zip(bounds[:-1], bounds[1:])
            ]

    # ------------------------------------------------------------ raw access

    def _read_records(self, r0, n):
        """Records r0 .. r0+n-1 as a (n, record_bytes) uint8 array."""
        self._fh.seek(self._record_offset(r0))
        buf = np.fromfile(self._fh, dtype=np.uint8, count=n * self._record_bytes)
        if buf.size < n * self._record_bytes:  # the file shrank under us
            n = buf.size // self._record_bytes
            buf = buf[: n * self._record_bytes]
        return buf.reshape(n, self._record_bytes)

    def _records_per_read(self) -> int:
        return max(1, READ_CHUNK_BYTES // self._record_bytes)

    def _annotation_bytes(self, sig, r0, r1, limit=None):
        """Yield ``(record, bytes)`` of signal ``sig`` (at most ``limit`` bytes of it)
        for records r0..r1-1, reading at most READ_CHUNK_BYTES at a time."""
        nb = sig.spr * self._bytes
        take = nb if limit is None else min(nb, limit)
        if self._record_bytes > READ_CHUNK_BYTES // 4:  # big records: seek to the signal
            for r in range(r0, r1):
                self._fh.seek(self._record_offset(r) + sig.byte_offset)
                data = self._fh.read(take)
                if len(data) < take:
                    return
                yield r, data
            return
        step = self._records_per_read()
        for a in range(r0, r1, step):
            recs = self._read_records(a, min(step, r1 - a))
            cols = recs[:, sig.byte_offset : sig.byte_offset + take]
            for j in range(cols.shape[0]):
                yield a + j, cols[j].tobytes()

    def _read_slice(self, r, sig, a, b):
        """Digital samples a..b-1 of signal ``sig`` in record ``r`` (int32), or None."""
        nbytes = (b - a) * self._bytes
        self._fh.seek(self._record_offset(r) + sig.byte_offset + a * self._bytes)
        buf = np.fromfile(self._fh, dtype=np.uint8, count=nbytes)
        if buf.size < nbytes:
            return None
        return self._decode(buf)

    def _decode(self, buf):
        """Little-endian 16-bit (EDF) or 24-bit (BDF) two's complement -> int32."""
        buf = np.ascontiguousarray(buf).reshape(-1)
        if self._bytes == 2:
            return buf.view("<i2").astype(np.int32)
        b = buf.reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v >= 1 << 23, v - (1 << 24), v)

    def _digital(self, recs, sig):
        return self._decode(recs[:, sig.byte_offset : sig.byte_offset + sig.spr * self._bytes])

    @staticmethod
    def _scale(digital, sig, factor):
        gain, offset = sig.gain_offset()
        return (digital * gain + offset) * factor     # float64: what the filters use

    def _physical(self, recs, sig, factor):
        return self._scale(self._digital(recs, sig), sig, factor)

    # ------------------------------------------------------------ public

    @property
    def annotations(self) -> list[tuple[float, float, str]]:
        """EDF+ annotations as ``(onset_s, duration_s, text)``, onset from the first sample.

        TALs whose onset or duration is not a finite plain decimal (or lies beyond
        ~31 years) are left out.
        """
        if self._annotations is None:
            out = []
            for sig in (s for s in self._signals if s.is_annotation):
                for _, data in self._annotation_bytes(sig, 0, self.n_records):
                    for onset, dur, texts in _tal_records(data):
                        if abs(onset) > MAX_ONSET_S or dur > MAX_ONSET_S:
                            continue
                        out.extend((round(onset - self._first_onset, 6), dur, t) for t in texts)
            out.sort(key=lambda a: a[0])
            self._annotations = out
        return self._annotations

    def blocks(self, block_s: float = 10.0):
        """Yield EMG and accelerometer :class:`SampleBlock` objects in time order.

        Each block is at most ``block_s`` long (and at least one data record, or
        a slice of one when a record is larger than 8 MiB); EMG ``data`` has shape
        (n, k) in microvolts (k: the chosen EMG channels, ``emg.channels``), accelerometer (n, 3) in g.  For EDF+D files a
        ``"gap"`` :class:`SourceEvent` precedes the blocks after a gap (a gap of
        any length costs no memory).  Memory does not grow with the length of
        the file, nor with the size of its records.
        """
        if not block_s > 0:
            raise ValueError(f"block_s must be > 0, got {block_s}")
        t_start = self.start_time.timestamp()
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
            if self._record_bytes <= READ_CHUNK_BYTES:
                run = self._blocks_of_records(r_first, r_end, t_off, block_s)
            else:
                run = self._blocks_of_slices(r_first, r_end, t_off, block_s)
            for item in run:
                if item is None:  # the file shrank under us
                    return
                yield item
            prev_end_s = t_off + (r_end - r_first) * self.record_s

    def _blocks_of_records(self, r_first, r_end, t_off, block_s):
        per_block = max(1, int(math.floor(block_s / self.record_s + 1e-9)))
        per_block = min(per_block, self._records_per_read())
        for r0 in range(r_first, r_end, per_block):
            recs = self._read_records(r0, min(per_block, r_end - r0))
            if recs.shape[0] == 0:
                yield None
                return
            t_rec = t_off + (r0 - r_first) * self.record_s
            emg = np.stack([self._physical(recs, s, f)
                            for s, f in zip(self._emg_sigs, self._emg_factors)], axis=1)
            yield SampleBlock("emg", self.emg.fs_hz, int(round(t_rec * self.emg.fs_hz)), emg)
            if self.acc is not None:
                acc = np.stack(
                    [self._physical(recs, s, f) for s, f in zip(self._acc_sigs, self._acc_factors)],
                    axis=1,
                )
                yield SampleBlock("acc", self.acc.fs_hz, int(round(t_rec * self.acc.fs_hz)), acc)
            if recs.shape[0] < min(per_block, r_end - r0):
                yield None
                return

    def _blocks_of_slices(self, r_first, r_end, t_off, block_s):
        """Records too large to read whole: the chosen signals, a slice at a time."""
        es = self._emg_sig
        spr_a = self._acc_sigs[0].spr if self.acc is not None else 0
        need = max(len(self._emg_sigs) * es.spr, 3 * spr_a) * self._bytes
        n_slices = max(math.ceil(self.record_s / block_s - 1e-9), -(-need // READ_CHUNK_BYTES))
        n_slices = max(1, min(n_slices, es.spr))
        for r in range(r_first, r_end):
            t_rec = t_off + (r - r_first) * self.record_s
            i_e = int(round(t_rec * self.emg.fs_hz))
            for k in range(n_slices):
                a, b = k * es.spr // n_slices, (k + 1) * es.spr // n_slices
                cols = []
                for s, f in zip(self._emg_sigs, self._emg_factors):
                    d = self._read_slice(r, s, a, b)
                    if d is None:
                        yield None
                        return
                    cols.append(self._scale(d, s, f))
                emg = np.stack(cols, axis=1)
                yield SampleBlock("emg", self.emg.fs_hz, i_e + a, emg)
                if self.acc is None:
                    continue
                a, b = k * spr_a // n_slices, (k + 1) * spr_a // n_slices
                if b == a:
                    continue
                cols = []
                for s, f in zip(self._acc_sigs, self._acc_factors):
                    d = self._read_slice(r, s, a, b)
                    if d is None:
                        yield None
                        return
                    cols.append(self._scale(d, s, f))
                i_a = int(round(t_rec * self.acc.fs_hz))
                yield SampleBlock("acc", self.acc.fs_hz, i_a + a, np.stack(cols, axis=1))

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
        if self._record_bytes > READ_CHUNK_BYTES:  # big records: only the samples asked for
            cols = []
            for s, f in zip(sigs, factors):
                parts = []
                for r in range(r0, r1):
                    a = max(start - r * s.spr, 0)
                    b = min(start + n - r * s.spr, s.spr)
                    d = self._read_slice(r, s, a, b)
                    if d is None:
                        raise InputFileError(f"{self.path}: the file shrank while being read",
                                             path=self.path)
                    parts.append(self._scale(d, s, f))
                cols.append(np.concatenate(parts) if parts else np.zeros(0))
            return np.stack(cols, axis=1)
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


def open_edf(path: str, emg: str | list[str] | None = None, acc=None) -> EdfRecording:
    """Open an EDF, EDF+ or BDF(+) file for replay.

    Parameters
    ----------
    path : str
    emg : str or list of str, optional
        Label of the EMG channel (case-insensitive; spaces, ``-`` and ``_``
        ignored if needed), a list of labels (EMG blocks then hold one column
        per label, in that order), or ``"all"`` (every EMG channel, see
        :func:`choose_emg_channels`).  Channels read together must share one
        sample rate.  Default: see :func:`choose_emg_channel` (a label
        containing "EMG", else a polysomnography leg channel such as "Right
        Leg", "LAT"/"RAT" or "Tib", right leg first); the choice is logged when
        it is not simply the label containing "EMG".
    acc : str or sequence of str, optional
        The x, y, z accelerometer labels (``"X,Y,Z"`` or a list).  Default:
        channels labelled like "Acc X", "Accel Y", "ACC_Z", "Acc-X", "AccX",
        "X Axis"; without all three (or at a rate outside 20-200 Hz) the
        recording has no accelerometer (``acc`` None, with a warning).

    Raises
    ------
    InputFileError
        Missing, empty, not a regular file, not EDF/BDF, a header field outside
        the format (the field, the signal's label, its byte offset and value are
        named), EMG sampled outside 200-4000 Hz, EDF+D records out of time order.
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
    emg_label: str | list[str] | None = None,
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
        Gaps between blocks are filled with zeros and annotated.  A source
        with ``emg_labels`` (a two-leg night) renders EMG of shape (n, k):
        one EMG channel per label.
    emg_label : str or list of str, optional
        Label of the EMG channel (default ``"EMG calf"``, or the source's
        ``emg_labels``); a list writes one channel per label (render sources).
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

    if emg_label is None:
        emg_label = list(getattr(source, "emg_labels", None) or ["EMG calf"]) if render \
            else "EMG calf"
    labels_e = [emg_label] if isinstance(emg_label, str) else [str(x) for x in emg_label]
    if len(labels_e) > 1 and not render:
        raise ValueError("write_edf: several EMG labels need a source that renders them")
    n_e = len(labels_e)
    n_ch = n_e + (3 if acc_fs else 0)
    ftype = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    # symmetric digital range: physical 0 is digital 0 exactly
    dmax = (1 << 23) - 1 if bdf else 32767
    dmin = -dmax
    headers = [
        dict(
            label=lab,
            dimension="uV",
            sample_frequency=emg_fs,
            physical_max=emg_range_uv,
            physical_min=-emg_range_uv,
            digital_max=dmax,
            digital_min=dmin,
            transducer="surface EMG electrodes",
            prefilter="",
        )
        for lab in labels_e
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
        spr_a = writer.get_smp_per_record(n_e) if acc_fs else 0
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
            emg = emg.reshape(emg.shape[0], -1)
            rows = [_digital(emg[:, c], -emg_range_uv, emg_range_uv, dmin, dmax).reshape(nrec, spr_e)
                    for c in range(n_e)]
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
