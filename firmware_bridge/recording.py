"""crampwatch's crash-safe, append-only capture recording: writer and reader.

The writer lives in :mod:`.recording_writer`, the reader in
:mod:`.recording_reader`, the header both share in :mod:`._recording_header`;
this module gathers their public names.

The capture daemon hands every :class:`SampleBlock` and :class:`SourceEvent`
to a :class:`CaptureWriter` as it arrives.  The writer never blocks the
caller: a thread drains a bounded in-memory queue, appends checksummed records
to the file and ``fsync``\\ s it at least every ``fsync_interval_s``.  After a
SIGKILL or a power loss the file is readable up to its last whole record.
``crampwatch replay`` and ``crampwatch export`` read it with
:func:`open_capture` (through :func:`crampwatch.firmware_bridge.readers.open_recording`).

The byte layout is specified in ``RECORDING_FORMAT.md`` next to this module.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from crampwatch.firmware_bridge.types import SampleBlock, StreamInfo
>>> path = os.path.join(tempfile.mkdtemp(), "night.cwrec")
>>> header = RecordingHeader(emg=StreamInfo("emg", 1000.0, ("gastroc_l",), "uV"),
...                          board="open", source_url="sim://")
>>> with CaptureWriter(path, header) as writer:
...     writer.write_block(SampleBlock("emg", 1000.0, 0, np.zeros((100, 1))))
>>> with open_capture(path) as reader:
...     [b.n_samples for b in reader.blocks()]
[100]
"""


from __future__ import annotations

from crampwatch.firmware_bridge._recording_header import (  # noqa: F401
    RecordingHeader,
    StreamStorage,
)
from crampwatch.firmware_bridge.recording_reader import (  # noqa: F401
    CaptureReader,
    ReadStats,
    Record,
    SamplesRecord,
    SegmentInfo,
    StreamExtent,
    iter_records,
    open_capture,
)
from crampwatch.firmware_bridge.recording_writer import (  # noqa: F401
    CaptureWriter,
    ResumePoint,
    WriterStats,
)

__all__ = [
    "CaptureWriter",
    "CaptureReader",
    "RecordingHeader",
    "StreamStorage",
    "WriterStats",
    "ResumePoint",
    "SegmentInfo",
    "StreamExtent",
    "ReadStats",
    "Record",
    "SamplesRecord",
    "open_capture",
    "iter_records",
]
