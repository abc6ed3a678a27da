"""Open any recording crampwatch can replay, by content, not by name.

``open_recording(path, emg=None, acc=None)`` returns a reader with this
interface (EDF/EDF+/BDF through :mod:`crampwatch.firmware_bridge.edf`, the
crash-safe capture format through :mod:`crampwatch.firmware_bridge.recording`):

- ``path`` : str
- ``emg`` : StreamInfo of the chosen EMG channel (unit ``"uV"``)
- ``acc`` : StreamInfo of the three accelerometer axes (unit ``"g"``) or None
- ``start_time`` : timezone-aware ``datetime`` (UTC) of the first sample
- ``duration_s`` : float, length of the readable part
- ``labels`` : list of every channel label in the file
- ``blocks(block_s=10.0)`` : iterator of :class:`SampleBlock` (EMG and
  accelerometer blocks interleaved in time order, each at most ``block_s``
  long) and :class:`SourceEvent` (gaps recorded in the file).  Memory does not
  grow with the length of the recording.
- ``close()``; readers are context managers.
"""

from __future__ import annotations

import os

from crampwatch.errors import InputFileError

EDF_MAGIC = b"0       "
BDF_MAGIC = b"\xffBIOSEMI"
CAPTURE_MAGIC = b"CRAMPWATCH-REC"  # first bytes of a crash-safe capture recording


def sniff_format(path: str) -> str:
    """Return ``"edf"``, ``"bdf"`` or ``"capture"`` for the file at ``path``.

    Raises
    ------
    InputFileError
        If the file is missing, empty or of no known format.
    """
    if not os.path.exists(path):
        raise InputFileError(f"{path}: no such file", path=path)
    if os.path.isdir(path):
        raise InputFileError(f"{path}: is a directory, not a recording", path=path)
    with open(path, "rb") as fh:
        head = fh.read(256)
    if not head:
        raise InputFileError(f"{path}: file is empty", path=path)
    if head.startswith(CAPTURE_MAGIC):
        return "capture"
    if head.startswith(BDF_MAGIC):
        return "bdf"
    if head.startswith(EDF_MAGIC):
        return "edf"
    raise InputFileError(
        f"{path}: not an EDF/BDF file or crampwatch recording (unknown header bytes at offset 0)",
        path=path, offset=0)


def open_recording(path: str, emg: str | None = None, acc: str | list[str] | None = None):
    """Open a recording for replay; see the module docstring for the interface."""
    kind = sniff_format(str(path))
    if kind == "capture":
        from crampwatch.firmware_bridge.recording import open_capture
        return open_capture(str(path), emg=emg, acc=acc)
    from crampwatch.firmware_bridge.edf import open_edf
    return open_edf(str(path), emg=emg, acc=acc)
