"""Open any recording crampwatch can replay, by content, not by name.

``open_recording(path, emg=None, acc=None)`` returns a reader with this
interface (EDF/EDF+/BDF through :mod:`crampwatch.firmware_bridge.edf`, the
crash-safe capture format through :mod:`crampwatch.firmware_bridge.recording`):

- ``path`` : str
- ``emg`` : StreamInfo of the chosen EMG channels (unit ``"uV"``): one by
  default or by label, several for a list of labels or ``"all"`` (every EMG
  channel), ``emg.channels`` in the column order of the EMG blocks
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
import stat

from crampwatch.errors import InputFileError

EDF_MAGIC = b"0       "
BDF_MAGIC = b"\xffBIOSEMI"
CAPTURE_MAGIC = b"CRAMPWATCH-REC"  # first bytes of a crash-safe capture recording


def open_regular(path: str):
    """Open ``path`` for binary reading, refusing anything but a regular file.

    A FIFO, a character device or a socket would block the open or the reads
    (or never end), and the readers need to seek and to read a file more than
    once; they are refused with a clear error.  The file is opened without
    blocking and checked on the open descriptor, so a FIFO never hangs.

    Raises
    ------
    InputFileError
        Missing, a directory, not a regular file, or not readable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file", path=path) from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not a recording", path=path) from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open: {exc.strerror or exc}", path=path) from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InputFileError(f"{path}: is a directory, not a recording", path=path)
        if not stat.S_ISREG(mode):
            kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
                    "a character device" if stat.S_ISCHR(mode) else
                    "a block device" if stat.S_ISBLK(mode) else
                    "a socket" if stat.S_ISSOCK(mode) else "not a file")
            raise InputFileError(f"{path}: is not a regular file ({kind}): crampwatch reads "
                                 f"recordings from regular files; copy the data to a file first",
                                 path=path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sniff_format(path: str) -> str:
    """Return ``"edf"``, ``"bdf"`` or ``"capture"`` for the file at ``path``.

    Raises
    ------
    InputFileError
        If the file is missing, empty, not a regular file (see
        :func:`open_regular`) or of no known format.
    """
    with open_regular(path) as fh:
        try:
            head = fh.read(256)
        except OSError as exc:
            raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}",
                                 path=path) from exc
    return format_of_head(path, head)


def format_of_head(path: str, head: bytes) -> str:
    """``"edf"``, ``"bdf"`` or ``"capture"`` from the first bytes of the file at ``path``."""
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


def open_recording(path: str, emg: str | list[str] | None = None,
                   acc: str | list[str] | None = None):
    """Open a recording for replay; see the module docstring for the interface."""
    kind = sniff_format(str(path))
    if kind == "capture":
        from crampwatch.firmware_bridge.recording import open_capture
        return open_capture(str(path), emg=emg, acc=acc)
    from crampwatch.firmware_bridge.edf import open_edf
    return open_edf(str(path), emg=emg, acc=acc)
