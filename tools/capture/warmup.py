"""The warm-up: a resumed night's recording replayed into a new pipeline, so that
the detector's state, and so its episodes, are those of a replay of the whole file."""

from __future__ import annotations

import threading

from crampwatch.firmware_bridge.types import SampleBlock

__all__ = ["Warmup"]


class Warmup(threading.Thread):
    """Replay the part of a resumed recording that earlier sessions wrote, into a
    new pipeline, while the daemon records on (it reads only records before the
    new segment: indices below each stream's end)."""

    def __init__(self, path: str, ends: dict, pipe, emg_cols: list, acc_cols):
        super().__init__(name="crampwatch-warmup", daemon=True)
        self.path, self.ends, self.pipe = path, dict(ends), pipe      # a MultiPipeline
        self.emg_cols, self.acc_cols = list(emg_cols), acc_cols
        self.events: list = []
        self.error: BaseException | None = None
        self.abort = threading.Event()
        self.samples = 0

    def run(self) -> None:
        from crampwatch.firmware_bridge.recording import iter_records
        todo = {s for s, e in self.ends.items() if e > 0}
        try:
            for rec in iter_records(self.path):
                if self.abort.is_set() or not todo:
                    break
                if rec.type != "samples":
                    continue
                v = rec.value
                end = self.ends.get(v.stream, 0)
                if v.first_index >= end:
                    continue
                data = v.data[:end - v.first_index]
                if v.stream == "emg":
                    data = data[:, self.emg_cols]
                    self.samples += data.shape[0]
                elif self.acc_cols is None:
                    data = None
                else:
                    data = data[:, self.acc_cols]
                if data is not None:
                    self.events += self.pipe.feed(SampleBlock(v.stream, v.fs_hz, v.first_index,
                                                              data))
                if v.first_index + v.n_samples >= end:
                    todo.discard(v.stream)
        except Exception as exc:          # a damaged file: detection starts afresh
            self.error = exc
