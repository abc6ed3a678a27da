"""``file://PATH?speed=1``: a recording played as if it were live.

Any file :func:`~crampwatch.firmware_bridge.readers.open_recording` reads
(EDF, EDF+, BDF, the crash-safe capture format), block by block with flat
memory, paced by a monotonic schedule at ``speed`` times real time
(``speed=max`` or ``0``: as fast as the consumer takes them).  Gaps recorded
in the file come out as ``gap`` events, as they did live.

``file://night.edf`` is relative to the working directory,
``file:///data/night.edf`` absolute.  Parameters: ``speed`` (default 1),
``emg`` (EMG channel label), ``acc`` (three labels, comma-separated),
``block_s`` (default 1).

Examples
--------
>>> from crampwatch.firmware_bridge.sources import open_source
>>> src = open_source("file://night.edf?speed=max&emg=EMG%20Gastroc")   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time

from crampwatch._text import sanitize_text
from crampwatch.errors import SourceError
from crampwatch.firmware_bridge.sources.base import Source, SourceUrl
from crampwatch.firmware_bridge.sources.sim_source import parse_speed
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent

PARAMS = ("speed", "emg", "acc", "block_s")


class FileSource(Source):
    """A recording replayed through the source interface; see the module docstring."""

    def __init__(self, url: SourceUrl):
        super().__init__(url)
        url.check_params(PARAMS)
        if not url.target:
            raise SourceError(f"{url.url}: no file name (file://night.edf)", url=url.url)
        self.path = url.target
        self.speed = parse_speed(url)
        self.block_s = url.get("block_s", 1.0, float)
        if not self.block_s > 0:
            raise SourceError(f"{url.url}: block_s must be positive", url=url.url)
        acc = url.params.get("acc")
        acc = [a for a in acc.split(",") if a] if acc else None
        from crampwatch.firmware_bridge.readers import open_recording

        # open now, so a missing/corrupt file is an error of open_source
        self.reader = open_recording(self.path, emg=url.params.get("emg"), acc=acc)
        # channel labels come from the file: shown in logs and reports, so sanitised
        self.info = {"emg": _clean_info(self.reader.emg)}
        if self.reader.acc is not None:
            self.info["acc"] = _clean_info(self.reader.acc)
        self.start_time = self.reader.start_time
        self.stats.update(samples={})

    def _run(self) -> None:
        t_start = self.start_time.timestamp()
        self._event("connected", transport="file", path=self.path,
                    start_time=self.start_time.isoformat(), duration_s=self.reader.duration_s,
                    speed=self.speed or "max")
        t0 = time.monotonic()
        try:
            for item in self.reader.blocks(block_s=self.block_s):
                if self._stop.is_set():
                    break
                if isinstance(item, SampleBlock):
                    if self.speed:
                        due = t0 + (item.end_index / item.fs_hz) / self.speed
                        delay = due - time.monotonic()
                        if delay > 0 and self._stop.wait(delay):
                            break
                    if item.host_time_s is None:
                        item.host_time_s = t_start + item.first_index / item.fs_hz
                    self.stats["samples"][item.stream] = item.end_index
                elif not isinstance(item, SourceEvent):
                    continue
                if not self._emit(item):
                    break
        finally:
            self.reader.close()


def _clean_info(info):
    labels = tuple(sanitize_text(c, 80) for c in info.channels)
    if labels == tuple(info.channels) and sanitize_text(info.unit, 16) == info.unit:
        return info
    return dataclasses.replace(info, channels=labels, unit=sanitize_text(info.unit, 16))


def open_file(url: SourceUrl) -> FileSource:
    """Build (not start) the source for a ``file://`` URL."""
    return FileSource(url)
