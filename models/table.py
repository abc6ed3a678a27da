"""The candidate feature table: the rows a candidate model is fitted on.

One row per candidate and stage (``confirm``: the moment the rules would
confirm it; ``end``: its end), gzip-compressed CSV, floats written exactly
(Python's shortest round-trip form) so that reading gives back the same
numbers.  Columns: :data:`META_COLUMNS` then the detector's
:data:`~crampwatch.detector.features.CANDIDATE_FEATURES`.

Examples
--------
>>> from crampwatch.models.table import shipped_table
>>> rows = shipped_table()
>>> sorted({r["label"] for r in rows})
[0, 1]
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
from importlib import resources

from crampwatch.detector.features import CANDIDATE_FEATURES

META_COLUMNS = ("source", "family", "seed", "stage", "onset_s", "t_s", "label")
"""``source``: ``sim:<family>`` or ``real:<dataset>``; ``family`` the simulator family or
the recording's part; ``seed`` the night's seed (0 for real data); ``label`` 1 cramp (or a
real sustained hold), 0 anything else."""

COLUMNS = META_COLUMNS + tuple(CANDIDATE_FEATURES)
TRAINING_TABLE = "cramp_candidate_training_2.0.0.csv.gz"


def table_text(rows: list[dict]) -> str:
    """The CSV text of ``rows`` (what ``training_data_sha256`` is taken over)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([repr(float(r[c])) if isinstance(r[c], float) else r[c] for c in COLUMNS])
    return buf.getvalue()


def table_sha256(rows: list[dict]) -> str:
    return hashlib.sha256(table_text(rows).encode("utf-8")).hexdigest()


def write_table(path, rows: list[dict]) -> str:
    """Write ``rows`` as gzip CSV (0600, atomic, byte-identical for the same rows)."""
    from crampwatch._files import atomic_private_write
    data = gzip.compress(table_text(rows).encode("utf-8"), compresslevel=9, mtime=0)
    with atomic_private_write(path, "wb") as fh:
        fh.write(data)
    return os.fspath(path)


def parse_table(text: str, name: str = "table") -> list[dict]:
    from crampwatch.models import ModelError
    reader = csv.reader(io.StringIO(text))
    header = tuple(next(reader, ()))
    if header != COLUMNS:
        raise ModelError(f"training table {name}: columns do not match the detector's "
                         "candidate features", path=name)
    rows = []
    for line in reader:
        try:
            r = dict(zip(COLUMNS, line, strict=True))
            for c in CANDIDATE_FEATURES + ("onset_s", "t_s"):
                r[c] = float(r[c])
            r["seed"] = int(r["seed"])
            r["label"] = int(r["label"])
        except ValueError as exc:
            raise ModelError(f"training table {name}: line {reader.line_num}: {exc}",
                             path=name) from exc
        rows.append(r)
    return rows


def read_table(path) -> list[dict]:
    """Read a table written by :func:`write_table` (gzip CSV, or plain CSV)."""
    from crampwatch.models import ModelError
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        text = data.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ModelError(f"training table {path}: cannot read ({exc})", path=str(path)) from exc
    return parse_table(text, str(path))


def shipped_table() -> list[dict]:
    """The table the shipped model was fitted on."""
    data = resources.files("crampwatch.models").joinpath(TRAINING_TABLE).read_bytes()
    return parse_table(gzip.decompress(data).decode("utf-8"), TRAINING_TABLE)
