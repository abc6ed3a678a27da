"""Labelled events of a recording: what happened when, in seconds from its start.

A labels file is a CSV with the header ``kind,onset_s,offset_s,note``; times
are seconds from the first sample of the recording it belongs to.  Labels of a
recording with several EMG channels (two legs) add a fifth column, ``site``:
the body site the event was on (``left_calf``; empty for events of the whole
body, seen on every channel, such as turning over).  The
simulator writes one beside every night it makes (``night.labels.csv``); the
evaluation reads it.  A JSON Lines file with ``onset_s``/``offset_s`` (and
optionally ``kind``, default ``"cramp"``, and ``note``) per line is read too,
so that the episodes ``crampwatch replay --episodes`` writes can serve as
labels for another run.

Label kinds (:data:`LABEL_KINDS`): ``cramp`` and everything that must not be
reported as one -- ``turn``, ``plm`` (one label per periodic limb movement
burst), ``walk``, ``stretch``, ``resting_tone``, ``twitches`` (behaviour), and
the artifacts ``pop``, ``lead_off``, ``mains``, ``ecg``, ``drift``; and the
kinds only the simulator's randomised families make (:data:`RANDOMIZED_KINDS`):
``stand`` (standing still after a few steps), ``sit`` (on the edge of the bed),
``leg_movement`` (1-3 isolated bursts, not a periodic series), and the
artifacts ``loose_electrode``, ``imu_fault`` (accelerometer zeros, stuck,
saturated or silent), ``settling`` (the electrodes' first minutes) and
``floor_step`` (the noise floor changed level, e.g. at a turn, and stays).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field

from crampwatch.errors import InputFileError

__all__ = [
    "Label",
    "LABEL_KINDS",
    "DISTRACTOR_KINDS",
    "RANDOMIZED_KINDS",
    "TIDY_KINDS",
    "read_labels",
    "write_labels",
]

DISTRACTOR_KINDS: tuple[str, ...] = (
    "turn",
    "plm",
    "walk",
    "stretch",
    "resting_tone",
    "twitches",
    "pop",
    "lead_off",
    "mains",
    "ecg",
    "drift",
    "stand",
    "sit",
    "leg_movement",
    "loose_electrode",
    "imu_fault",
    "settling",
    "floor_step",
)
"""Every kind that is not a cramp (today's tidy kinds, behaviour first, then
artifacts; then the randomised families' kinds)."""

RANDOMIZED_KINDS: tuple[str, ...] = (
    "stand",
    "sit",
    "leg_movement",
    "loose_electrode",
    "imu_fault",
    "settling",
    "floor_step",
)
"""The kinds only the simulator's randomised families make."""

LABEL_KINDS: tuple[str, ...] = ("cramp",) + DISTRACTOR_KINDS
"""Every kind a labels file may hold."""

TIDY_KINDS: tuple[str, ...] = tuple(k for k in LABEL_KINDS if k not in RANDOMIZED_KINDS)
"""The kinds of today's tidy simulated night (every one appears in a default night)."""

CSV_HEADER = ("kind", "onset_s", "offset_s", "note")
CSV_HEADER_SITES = CSV_HEADER + ("site",)


@dataclass(frozen=True)
class Label:
    """One labelled event.

    Attributes
    ----------
    kind : str
        One of :data:`LABEL_KINDS`.
    onset_s : float
        Start, seconds from the recording's first sample.  For a cramp: when
        the sustained contraction starts rising (preceding twitches have their
        own ``"twitches"`` label).
    offset_s : float
        End, seconds from the recording's first sample (``>= onset_s``).
    note : str
        Free text (e.g. the PLM series a burst belongs to, a cramp's RMS).
    site : str
        The body site it happened on (``left_calf``, ``right_calf``; see
        :mod:`crampwatch.sites`), or ``""``: the recording's one site, or the
        whole body (seen on every channel).

    Examples
    --------
    >>> Label("cramp", 120.0, 185.5, "rms_uv=150").duration_s
    65.5
    """

    kind: str
    onset_s: float
    offset_s: float
    note: str = ""
    site: str = field(default="", repr=False)

    @property
    def duration_s(self) -> float:
        """``offset_s - onset_s``."""
        return self.offset_s - self.onset_s


def write_labels(path: str | os.PathLike, labels) -> None:
    """Write labels as CSV (``kind,onset_s,offset_s,note``, and ``site`` if any
    label has one), sorted by onset.

    Times are written with millisecond resolution.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "n.labels.csv")
    >>> write_labels(p, [Label("turn", 10.0, 12.5)])
    >>> read_labels(p)
    [Label(kind='turn', onset_s=10.0, offset_s=12.5, note='')]
    """
    rows = sorted(labels, key=lambda lab: (lab.onset_s, lab.offset_s, lab.kind))
    sites = any(getattr(lab, "site", "") for lab in rows)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CSV_HEADER_SITES if sites else CSV_HEADER)
        for lab in rows:
            note = " ".join(str(lab.note).split())  # one line per label
            row = [lab.kind, f"{lab.onset_s:.3f}", f"{lab.offset_s:.3f}", note]
            w.writerow(row + [" ".join(str(lab.site).split())] if sites else row)
    os.replace(tmp, path)


def _number(path: str, line_no: int, field: str, text) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InputFileError(
            f"{path}: line {line_no}: {field} {text!r} is not a number", path=path
        ) from None
    if not math.isfinite(value) or value < 0:
        raise InputFileError(
            f"{path}: line {line_no}: {field} {text!r} must be a finite number >= 0", path=path
        )
    return value


def _make(path: str, line_no: int, kind, onset, offset, note, site="") -> Label:
    kind = (kind or "").strip()
    if kind not in LABEL_KINDS:
        raise InputFileError(
            f"{path}: line {line_no}: unknown label kind {kind!r} "
            f"(expected one of {', '.join(LABEL_KINDS)})",
            path=path,
        )
    onset_s = _number(path, line_no, "onset_s", onset)
    offset_s = _number(path, line_no, "offset_s", offset)
    if offset_s < onset_s:
        raise InputFileError(
            f"{path}: line {line_no}: offset_s {offset_s:g} is before onset_s {onset_s:g}",
            path=path,
        )
    return Label(kind, onset_s, offset_s, "" if note is None else str(note),
                 "" if site is None else str(site).strip())


def _read_jsonl(path: str, text: str) -> list[Label]:
    out = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(
                f"{path}: line {line_no}: not valid JSON ({exc.msg})", path=path
            ) from None
        if not isinstance(obj, dict):
            raise InputFileError(f"{path}: line {line_no}: expected a JSON object", path=path)
        missing = [k for k in ("onset_s", "offset_s") if k not in obj]
        if missing:
            raise InputFileError(
                f"{path}: line {line_no}: missing {' and '.join(missing)}", path=path
            )
        out.append(
            _make(
                path,
                line_no,
                obj.get("kind", "cramp"),
                obj["onset_s"],
                obj["offset_s"],
                obj.get("note", ""),
                obj.get("site", ""),
            )
        )
    return out


def read_labels(path: str | os.PathLike) -> list[Label]:
    """Read a labels file (CSV as written by :func:`write_labels`, or JSON Lines).

    The format is recognised by content: a first non-blank character ``{``
    means JSON Lines (one object per line with ``onset_s``, ``offset_s`` and
    optionally ``kind`` -- default ``"cramp"`` -- and ``note``).

    Returns
    -------
    list of Label
        In file order.

    Raises
    ------
    InputFileError
        Missing or unreadable file, wrong header, or a bad row (the message
        names the file and the line number).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "episodes.jsonl")
    >>> _ = open(p, "w").write('{"onset_s": 5, "offset_s": 65.5, "peak_uv": 80}\\n')
    >>> read_labels(p)
    [Label(kind='cramp', onset_s=5.0, offset_s=65.5, note='')]
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such labels file", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read labels file ({exc})", path=path) from None
    if text.lstrip().startswith("{"):
        return _read_jsonl(path, text)
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None:
        raise InputFileError(f"{path}: labels file is empty", path=path)
    header = [h.strip() for h in header]
    if header[:3] != list(CSV_HEADER[:3]):
        raise InputFileError(
            f"{path}: line 1: expected header {','.join(CSV_HEADER)}, found {','.join(header)}",
            path=path,
        )
    has_site = header[:5] == list(CSV_HEADER_SITES)
    n_max = 5 if has_site else 4
    out = []
    for line_no, row in enumerate(rows, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < 3 or len(row) > n_max:
            want = ("3 to 5 fields (kind,onset_s,offset_s[,note[,site]])" if has_site
                    else "3 or 4 fields (kind,onset_s,offset_s[,note])")
            raise InputFileError(
                f"{path}: line {line_no}: expected {want}, found {len(row)}", path=path
            )
        note = row[3] if len(row) >= 4 else ""
        site = row[4] if len(row) == 5 else ""
        out.append(_make(path, line_no, row[0], row[1], row[2], note, site))
    return out
