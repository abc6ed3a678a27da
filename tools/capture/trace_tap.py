"""The detector's per-step trace, as the daemon uses it: per-minute summaries for
the episode log and the last minute's signal quality for the status line."""

from __future__ import annotations

import collections
import math

import numpy as np

from crampwatch.detector import Pipeline
from crampwatch.detector.pipeline import LABELS

__all__ = ["TraceTap"]

_BAD_LABELS = (LABELS.index("nodata"), LABELS.index("artifact"))


class TraceTap:
    """Per-step rows from one site's pipeline -> per-minute summaries and the recent quality."""

    def __init__(self, step_s: float):
        self.step_s = step_s
        self.pending: list = []
        self.recent: collections.deque = collections.deque(maxlen=max(1, round(60 / step_s)))
        self.columns = Pipeline.TRACE_COLUMNS

    def add(self, rows: list) -> None:
        """Take the new trace rows of this site's pipeline (``Pipeline.TRACE_COLUMNS``)."""
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
