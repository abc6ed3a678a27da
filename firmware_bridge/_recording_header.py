"""The header of a capture recording: stream specs and the recording header
(shared by :mod:`.recording_writer` and :mod:`.recording_reader`)."""

from __future__ import annotations

import errno
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from crampwatch.firmware_bridge._recording_format import (
    STORAGE_DTYPES,
)
from crampwatch.firmware_bridge.types import StreamInfo

logger = logging.getLogger(__name__)

STREAM_IDS = {"emg": 0, "acc": 1}
STREAM_UNITS = {"emg": "uV", "acc": "g"}
# consecutive blocks are merged into one record when the host time of the next
# block is within this of the time predicted from the first one's and fs_hz
HOST_TIME_TOLERANCE_S = 0.005
# errors after which the open descriptor is kept and the write retried; any
# other error closes it and the file is reopened (and re-checked) on retry
_KEEP_FD_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EINTR, errno.EAGAIN}



# ---------------------------------------------------------------------------
# header
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamStorage:
    """How one stream's samples are stored: ``physical = stored * scale + offset``.

    ``"float32"`` (the default) stores physical values; its 24-bit mantissa
    holds every count of a 24-bit ADC exactly, so nothing the board measured
    is lost and no scale has to be trusted.  ``"int16"``/``"int32"`` halve or
    keep the size for boards whose samples are exact multiples of ``scale``
    (e.g. BITalino's 10-bit counts); values are rounded to the nearest step
    and clipped to the type's range.  ``"float64"`` keeps everything.
    """

    dtype: str = "float32"
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self):
        if self.dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage dtype must be one of {sorted(STORAGE_DTYPES)}, "
                             f"not {self.dtype!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"storage scale must be a positive number, not {self.scale!r}")


@dataclass
class RecordingHeader:
    """What the writer puts in the file's self-describing header.

    Attributes
    ----------
    emg : StreamInfo
        The EMG stream (name ``"emg"``, unit ``"uV"``, its channel labels).
    acc : StreamInfo or None
        The accelerometer stream (name ``"acc"``, unit ``"g"``), if any.
    board : str
        Board type (``"cyton"``, ``"bitalino"``, ``"open"``, ``"sim"``...).
    source_url : str
        The URL the samples come from.
    start_time : datetime or None
        Timezone-aware host time of sample index 0 of every stream.  None:
        readers take it from the first EMG record's host time.
    emg_storage, acc_storage : StreamStorage
        Storage type and scale of each stream (float32 by default).
    extra : dict
        Free JSON-able details (leg, firmware version, gains...).
    """

    emg: StreamInfo
    acc: StreamInfo | None = None
    board: str = "unknown"
    source_url: str = ""
    start_time: datetime | None = None
    emg_storage: StreamStorage = field(default_factory=StreamStorage)
    acc_storage: StreamStorage = field(default_factory=StreamStorage)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _StreamSpec:
    id: int
    name: str
    fs_hz: float
    channels: tuple[str, ...]
    unit: str
    dtype: np.dtype
    scale: float
    offset: float

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "fs_hz": self.fs_hz,
                "channels": list(self.channels), "unit": self.unit,
                "dtype": self.dtype.str, "scale": self.scale, "offset": self.offset}

    @property
    def is_identity(self) -> bool:
        return self.dtype.kind == "f" and self.scale == 1.0 and self.offset == 0.0

    def same_layout(self, other: _StreamSpec) -> bool:
        return self.to_json() == other.to_json()


def _spec_from_info(info: StreamInfo, storage: StreamStorage, name: str) -> _StreamSpec:
    if info.name != name:
        raise ValueError(f"the {name} stream's StreamInfo is named {info.name!r}")
    if info.unit != STREAM_UNITS[name]:
        raise ValueError(f"the {name} stream must be in {STREAM_UNITS[name]!r}, not {info.unit!r}")
    if not (math.isfinite(info.fs_hz) and info.fs_hz > 0):
        raise ValueError(f"the {name} stream's fs_hz must be positive, not {info.fs_hz!r}")
    if not info.channels:
        raise ValueError(f"the {name} stream has no channels")
    return _StreamSpec(STREAM_IDS[name], name, float(info.fs_hz), tuple(map(str, info.channels)),
                       info.unit, np.dtype(STORAGE_DTYPES[storage.dtype]),
                       float(storage.scale), float(storage.offset))


def _spec_from_json(obj: dict) -> _StreamSpec:
    dtype = np.dtype(obj["dtype"])
    if dtype.str not in STORAGE_DTYPES.values():
        raise ValueError(f"unsupported storage dtype {obj['dtype']!r}")
    fs_hz = float(obj["fs_hz"])
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise ValueError(f"bad fs_hz {obj['fs_hz']!r}")
    channels = tuple(str(c) for c in obj["channels"])
    if not channels:
        raise ValueError("stream without channels")
    return _StreamSpec(int(obj["id"]), str(obj["name"]), fs_hz, channels, str(obj["unit"]),
                       dtype, float(obj.get("scale", 1.0)), float(obj.get("offset", 0.0)))


def _utc_iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat()


def _parse_utc(text) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _local_zone() -> tuple[int, str]:
    now = datetime.now().astimezone()
    off = now.utcoffset()
    return int(off.total_seconds()) if off is not None else 0, now.tzname() or ""
