"""Data types shared by every part of firmware_bridge and by its consumers.

Everything that brings samples in (a live source, a recording reader, the
simulator) hands them on as :class:`SampleBlock` objects, one stream at a time,
plus :class:`SourceEvent` objects for what happened on the link.  A block
carries its stream's sample rate and the index of its first sample in that
stream, so the detector can be fed the same way live and in replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

StreamName = Literal["emg", "acc"]


@dataclass(frozen=True)
class StreamInfo:
    """What one stream is: its name, rate, channel labels and physical unit.

    ``unit`` is ``"uV"`` for EMG and ``"g"`` for accelerometer streams: values
    in a :class:`SampleBlock` are always already converted to these units.
    """

    name: str
    fs_hz: float
    channels: tuple[str, ...]
    unit: str


@dataclass
class SampleBlock:
    """Consecutive samples of one stream.

    Attributes
    ----------
    stream : str
        ``"emg"`` (values in microvolts) or ``"acc"`` (values in g).
    fs_hz : float
        Nominal sample rate of the stream.
    first_index : int
        Index of ``data[0]`` in the stream, counted from the first sample of the
        recording/session (device counter, unwrapped; never reset by a gap).
    data : numpy.ndarray
        Shape ``(n_samples, n_channels)``, float32 or float64, physical units.
    host_time_s : float or None
        Host time (UTC, POSIX seconds) of ``data[0]`` from the drift-corrected
        mapping of the device counter; None where unknown (e.g. files).
    """

    stream: str
    fs_hz: float
    first_index: int
    data: np.ndarray
    host_time_s: float | None = None

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def end_index(self) -> int:
        """Index one past the last sample."""
        return self.first_index + self.n_samples


@dataclass
class SourceEvent:
    """Something that happened on the link, stored with the data.

    ``kind`` is one of ``"connected"``, ``"disconnected"``, ``"gap"``,
    ``"crc_error"``, ``"status"``, ``"info"``, ``"warning"``.  For ``"gap"``,
    ``stream``, ``first_index`` (first missing sample) and ``n_samples`` (how
    many are missing) are set; the missing samples are never interpolated.
    """

    kind: str
    host_time_s: float
    stream: str | None = None
    first_index: int | None = None
    n_samples: int | None = None
    detail: dict = field(default_factory=dict)
