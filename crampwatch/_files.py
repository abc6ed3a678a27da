"""Files crampwatch writes: owner-only (0600, directories 0700) whatever the umask,
and never over one of its own inputs.

A night of calf EMG with its cramps is health data.  Every file crampwatch
creates (recordings, the SQLite episode log, exports, reports, tuned
configs, simulated nights) goes through this module, which sets the mode
with ``fchmod``/``chmod`` after creating, so that neither a permissive
umask (``0002``, ``0000``) nor a strange one (``0277``, which would make a
file unwritable for its owner) changes it.

Examples
--------
>>> import os, tempfile
>>> d = os.path.join(tempfile.mkdtemp(), "a", "b")
>>> ensure_private_dir(d) == d
True
>>> with private_open(os.path.join(d, "x.csv"), "w") as fh:
...     _ = fh.write("time_s,emg_uv\\n")
>>> oct(os.stat(os.path.join(d, "x.csv")).st_mode & 0o777), oct(os.stat(d).st_mode & 0o777)
('0o600', '0o700')
>>> check_output_path(os.path.join(d, "x.csv"), [os.path.join(d, "x.csv")],
...                   "--csv")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
crampwatch.errors.ConfigError: --csv .../x.csv: is one of the inputs (.../x.csv); refusing to overwrite it
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import threading

from crampwatch.errors import ConfigError, InputFileError

__all__ = ["PRIVATE_FILE_MODE", "PRIVATE_DIR_MODE", "ensure_private_dir", "private_open",
           "private_fd", "make_private", "atomic_private_write", "private_umask", "same_file",
           "check_output_path"]

logger = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

_UMASK_LOCK = threading.Lock()


def ensure_private_dir(path, *, tighten: bool = False) -> str:
    """Create ``path`` and its missing parents as 0700 directories; return it.

    Directories that already exist keep their mode (a user's own directory
    is not crampwatch's to change) unless ``tighten`` is True, which sets
    the last one to 0700 too when it belongs to us (crampwatch's own data
    directory).

    Raises
    ------
    OSError
        As :func:`os.makedirs` (callers that can retry, like the recording
        writer, catch it).
    """
    path = os.fspath(path)
    if not path:
        return path
    missing = []
    p = os.path.abspath(path)
    while p and not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(d):        # a file where the directory should be
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), d) from None
            continue
        os.chmod(d, PRIVATE_DIR_MODE)        # mkdir's mode is masked by the umask
    if tighten and not missing:
        try:
            st = os.stat(path)
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                os.chmod(path, PRIVATE_DIR_MODE)
        except OSError as exc:
            logger.debug("cannot tighten %s: %s", path, exc)
    return path


def make_private(path) -> bool:
    """Set an existing file to 0600 (files another library created); False if it
    does not exist or is not ours."""
    try:
        os.chmod(path, PRIVATE_FILE_MODE)
        return True
    except OSError:
        return False


_FLAGS = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
          "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL, "r+": os.O_RDWR | os.O_CREAT}


def private_fd(path, flags: int) -> int:
    """``os.open(path, flags, 0o600)`` then ``fchmod`` to 0600 (whatever the umask);
    missing parent directories are created 0700."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        ensure_private_dir(parent)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    except OSError as exc:          # not our file (another user's): leave its mode
        logger.debug("cannot set %s to 0600: %s", path, exc)
    return fd


def private_open(path, mode: str = "w", *, encoding: str | None = None,
                 newline: str | None = None):
    """``open()`` for writing a file that ends up 0600 whatever the umask.

    Parameters
    ----------
    mode : str
        ``"w"``, ``"a"``, ``"x"`` or ``"r+"``, with ``"b"`` for bytes.
    encoding, newline
        As :func:`open` (text modes; default encoding UTF-8).
    """
    binary = "b" in mode
    base = mode.replace("b", "").replace("t", "")
    if base not in _FLAGS:
        raise ValueError(f"private_open: unsupported mode {mode!r}")
    fd = private_fd(path, _FLAGS[base])
    try:
        if binary:
            return os.fdopen(fd, base + "b" if base != "r+" else "r+b")
        return os.fdopen(fd, base, encoding=encoding or "utf-8", newline=newline)
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def atomic_private_write(path, mode: str = "w", *, encoding: str | None = "utf-8",
                         newline: str | None = None):
    """Write ``path`` through a 0600 temporary file beside it, renamed over it at the
    end: readers never see half a file, and a failure leaves the old file alone.

    Yields the open file object.  The temporary file is removed on error.

    Raises
    ------
    InputFileError
        The directory cannot be written (the path is named in the message).
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        if not os.path.isdir(parent):
            ensure_private_dir(parent)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part",
                                   dir=parent)
        os.fchmod(fd, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write: {exc.strerror or exc}", path=path) from exc
    try:
        if "b" in mode:
            fh = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def private_umask():
    """Run a block with the umask 077, for files made by code that does not take a
    mode (a C library's ``fopen``): they are created 0600/0700.

    The umask is process-wide: use this around a whole write in a command,
    not in a daemon's worker threads.
    """
    with _UMASK_LOCK:
        old = os.umask(0o077)
        try:
            yield
        finally:
            os.umask(old)


def same_file(a, b) -> bool:
    """True if ``a`` and ``b`` name the same file: the same inode when both
    exist (hard links, symlinks, ``./x`` and ``x``), else the same real path."""
    a, b = os.fspath(a), os.fspath(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_output_path(out, inputs, option: str = "output") -> None:
    """Refuse an output path that names one of the inputs.

    Parameters
    ----------
    out : str or path-like
        The file about to be written (None: nothing to check).
    inputs : iterable of str or None
        Files the command reads (None entries are skipped).
    option : str
        How the user gave ``out`` (``"--csv"``), for the message.

    Raises
    ------
    ConfigError
        ``"--csv night.cwrec: is one of the inputs (night.cwrec); refusing to
        overwrite it"``.
    """
    if out is None:
        return
    for inp in inputs:
        if inp is not None and same_file(out, inp):
            raise ConfigError(f"{option} {os.fspath(out)}: is one of the inputs "
                              f"({os.fspath(inp)}); refusing to overwrite it", key=option)

