"""Checks for configuration values and config files: type, finiteness, range.

Both configs (``[capture]`` in :mod:`crampwatch.tools.capture.config` and
``[detector]``) take values from TOML and from ``--set NAME=VALUE``; a value
that is NaN, infinite, of the wrong type or outside what the code can work
with must be refused when the config is loaded, with the allowed range in the
message, never discovered at 3 am by a thread that dies on it.

Examples
--------
>>> check_number("fsync_interval_s", "2.5", 0.01, 60.0)
2.5
>>> check_number("band_order", 4.0, 1, 10, type=int)
4
>>> check_number("fsync_interval_s", "inf", 0.01, 60.0, where="--set")
Traceback (most recent call last):
...
crampwatch.errors.ConfigError: --set fsync_interval_s=inf: must be a finite number; allowed: 0.01 <= fsync_interval_s <= 60
>>> check_number("stall_s", 0, 0, 600, lo_open=True, unit="s")
Traceback (most recent call last):
...
crampwatch.errors.ConfigError: config stall_s=0: out of range; allowed: 0 < stall_s <= 600 (s)
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import tomllib

from crampwatch.errors import ConfigError

__all__ = ["check_number", "check_text", "documented", "field_docs", "range_text", "read_toml",
           "MAX_CONFIG_BYTES"]

#: a config file larger than this is refused unread (a real one is a few kB)
MAX_CONFIG_BYTES = 1 << 20
#: tables/arrays nested deeper than this are refused (a real config nests 1 deep)
MAX_CONFIG_DEPTH = 8


def documented(doc: str, lo=None, hi=None, lo_open: bool = False, max_len: int | None = None,
               choices: tuple | None = None, **kw):
    """A documented config field: its one-line meaning and what values it takes.

    The one helper both configs (``[detector]`` and ``[capture]``) declare
    their fields with, so ``crampwatch config show`` and the checks read the
    same metadata: ``doc``, the numeric range (``lo``, ``hi``, ``lo_open``),
    the longest text (``max_len``; None: the config's own limit) and the
    allowed texts (``choices``).  Other keywords (``default``,
    ``default_factory``) go to :func:`dataclasses.field`.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Cfg:
    ...     stall_s: float = documented("stall timeout (s)", default=5.0, lo=0.1, hi=60)
    >>> field_docs(Cfg)
    [('stall_s', 'stall timeout (s)', 5.0)]
    """
    return dataclasses.field(metadata={"doc": doc, "lo": lo, "hi": hi, "lo_open": lo_open,
                                       "max_len": max_len, "choices": choices}, **kw)


def field_docs(cls) -> list[tuple[str, str, object]]:
    """``(name, doc, default)`` of every field of a config dataclass, in
    declaration order (a ``default_factory`` is called for the default)."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        out.append((f.name, f.metadata.get("doc", ""), default))
    return out


def _fmt(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def range_text(name: str, lo=None, hi=None, *, lo_open: bool = False, hi_open: bool = False,
               unit: str = "") -> str:
    """``"0.01 <= name <= 60 (s)"``: the allowed range as messages show it.

    Examples
    --------
    >>> range_text("x", 0, None, lo_open=True)
    '0 < x'
    """
    text = name
    if lo is not None:
        text = f"{_fmt(lo)} {'<' if lo_open else '<='} {text}"
    if hi is not None:
        text = f"{text} {'<' if hi_open else '<='} {_fmt(hi)}"
    return text + (f" ({unit})" if unit else "")


def check_number(name: str, value, lo=None, hi=None, type=float, *, lo_open: bool = False,
                 hi_open: bool = False, where: str = "config", unit: str = ""):
    """Convert ``value`` to ``type`` (float or int) and check it lies in its range.

    Parameters
    ----------
    name : str
        The key, as the user writes it.
    value : int, float or str
        From TOML (int/float) or the command line (str).  Booleans are
        refused (TOML ``true`` is not 1), so are NaN and infinities.
    lo, hi : number or None
        Bounds (None: unbounded on that side); inclusive unless ``lo_open`` /
        ``hi_open``.
    type : {float, int}
        The key's type; an int key takes ``4`` and ``4.0``, not ``4.5``.
    where : str
        Where the value came from, to start the message: ``"config"``,
        ``"--set"``, ``"crampwatch.toml [capture]"``.
    unit : str
        Shown after the range in the message.

    Returns
    -------
    float or int

    Raises
    ------
    ConfigError
        ``"<where> <name>=<value>: <why>; allowed: <range>"``, with ``key=name``.
    """
    allowed = range_text(name, lo, hi, lo_open=lo_open, hi_open=hi_open, unit=unit)
    shown = value.strip() if isinstance(value, str) else value

    def fail(why: str):
        tail = f"; allowed: {allowed}" if (lo is not None or hi is not None) else ""
        text = str(shown)
        text = text if len(text) <= 40 and text.isprintable() else repr(text[:37]) + "..."
        return ConfigError(f"{where} {name}={text}: {why}{tail}", key=name)

    if type not in (int, float):
        raise ValueError(f"check_number: type must be int or float, not {type!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise fail(f"must be {'an integer' if type is int else 'a number'}, "
                   f"not {builtin_type_name(value)}")
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 64:
            raise fail("not a number")
        try:
            num = float(text) if type is float or not text.lstrip("+-").isdigit() else int(text)
        except ValueError:
            raise fail(f"not {'an integer' if type is int else 'a number'}") from None
    else:
        num = value
    if isinstance(num, float) and not math.isfinite(num):
        raise fail(f"must be a finite {'integer' if type is int else 'number'}")
    if type is int:
        if isinstance(num, float):
            if not num.is_integer():
                raise fail("must be an integer")
            num = int(num)
    else:
        try:
            num = float(num)
        except OverflowError:
            raise fail("must be a finite number") from None
    if lo is not None and (num < lo or (lo_open and num == lo)):
        raise fail("out of range")
    if hi is not None and (num > hi or (hi_open and num == hi)):
        raise fail("out of range")
    return num


def builtin_type_name(value) -> str:
    """``"a table"``, ``"a list"``, ``"true"``: what a TOML value is, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def check_text(name: str, value, max_len: int = 4096, *, where: str = "config") -> str:
    """A string value: of type str, at most ``max_len`` characters, no control characters.

    Examples
    --------
    >>> check_text("hook", "paplay bell.oga")
    'paplay bell.oga'
    """
    if not isinstance(value, str):
        raise ConfigError(f"{where} {name}: must be a string, not {builtin_type_name(value)}",
                          key=name)
    if len(value) > max_len:
        raise ConfigError(f"{where} {name}: {len(value)} characters; allowed: at most "
                          f"{max_len}", key=name)
    bad = next((ch for ch in value if not ch.isprintable() and ch != "\t"), None)
    if bad is not None:
        raise ConfigError(f"{where} {name}: contains the control character U+{ord(bad):04X}; "
                          "allowed: printable text", key=name)
    return value


def _depth(obj, limit: int) -> int:
    """Nesting depth of tables and arrays (stops counting past ``limit``)."""
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if d > limit:
            return d
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item if isinstance(v, (dict, list)))
    return deepest


def read_toml(path, max_bytes: int = MAX_CONFIG_BYTES, max_depth: int = MAX_CONFIG_DEPTH) -> dict:
    """Read a TOML config file, turning every way it can be unreadable into ConfigError.

    Missing, a directory, a device or FIFO, unreadable (permissions, I/O),
    larger than ``max_bytes``, not UTF-8 (binary, UTF-16), not TOML, nested
    deeper than ``max_depth``: each is one :class:`~crampwatch.errors.ConfigError`
    naming the file, never another exception.

    Examples
    --------
    >>> read_toml("/nonexistent/crampwatch.toml")
    Traceback (most recent call last):
    ...
    crampwatch.errors.ConfigError: /nonexistent/crampwatch.toml: no such config file
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a config file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: "
                          f"{exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{path}: is a directory, not a config file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file (a device, FIFO or socket)")
        if st.st_size > max_bytes:
            raise ConfigError(f"{path}: {st.st_size} bytes is too large for a config file "
                              f"(at most {max_bytes})")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        raw = b"".join(chunks)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: "
                          f"{exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise ConfigError(f"{path}: too large for a config file (at most {max_bytes} bytes)")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw:
        raise ConfigError(f"{path}: not a text config file (binary or UTF-16 content); save it "
                          "as UTF-8 TOML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                          "TOML") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply for a config file") from None
    if _depth(data, max_depth) > max_depth:
        raise ConfigError(f"{path}: nested too deeply for a config file (at most {max_depth} "
                          "levels)")
    return data
