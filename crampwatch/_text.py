"""Make untrusted text safe to show: device strings, notes, labels, file names.

A board's name, its firmware string, an INFO frame, a BLE advertisement, an
EDF channel label or a note typed by the user can hold anything: terminal
escape sequences (which repaint a terminal, set its title or hide text),
carriage returns and newlines (which forge log lines), bidirectional
overrides (which reverse what a reader sees), NUL bytes, megabytes.
:func:`sanitize_text` is the one place that turns such a value into one
printable line of bounded length before it reaches a log, a terminal, a file
name or a report.

Examples
--------
>>> sanitize_text("Cyton\\x1b[2J\\x1b]0;pwned\\x07 v3\\r\\nFAKE LOG LINE")
'Cyton v3\\\\r\\\\nFAKE LOG LINE'
>>> sanitize_text(b"name\\xff\\x00", max_len=40)
'name\\\\xff\\\\x00'
>>> sanitize_text("x" * 100, max_len=10)
'xxxxxxxxx\u2026'
>>> sanitize_text("../../etc/passwd", filename=True)
'_.._etc_passwd'
"""

from __future__ import annotations

import re

__all__ = ["sanitize_text", "DEFAULT_MAX_LEN"]

#: longest text kept by default (characters, the ellipsis included)
DEFAULT_MAX_LEN = 200

# terminal escape sequences, removed whole: CSI (ESC [ ... final), OSC (ESC ] ...
# BEL or ST), DCS/SOS/PM/APC strings (ESC P/X/^/_ ... ST), two-byte escapes, and
# their 8-bit C1 forms (CSI 0x9B, OSC 0x9D, DCS 0x90 ...)
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?")
_FILENAME_BAD = re.compile(r"[^A-Za-z0-9._+-]+")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def sanitize_text(value, max_len: int = DEFAULT_MAX_LEN, *, filename: bool = False) -> str:
    """One printable line of at most ``max_len`` characters from an untrusted value.

    Parameters
    ----------
    value : str, bytes or object
        Bytes are decoded as UTF-8, undecodable bytes shown as ``\\xNN``;
        other objects go through ``str()``; None gives ``""``.
    max_len : int
        Longest result; a longer text is cut and ends with ``\u2026``.
    filename : bool
        For a piece of a file name: only ``A-Z a-z 0-9 . _ + -`` are kept
        (runs of anything else become one ``_``), never ``.`` or ``..``
        alone, never starting with ``-`` or ``.``.

    Returns
    -------
    str
        Terminal escape sequences removed; every other non-printable
        character (control characters, line and paragraph separators,
        bidirectional and zero-width format characters, unassigned code
        points, lone surrogates) shown as a visible escape (``\\x07``,
        ``\\u202e``); a plain printable text comes back unchanged.
    """
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = value if isinstance(value, str) else str(value)
    max_len = max(1, int(max_len))
    # a hostile value can be huge: never scan more than a bounded prefix
    text = text[:max_len * 16 + 64]
    if not (text.isprintable() and text.isascii()) or filename:
        text = _ESCAPES.sub("", text)
        if not text.isprintable():
            text = "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
    if filename:
        text = _FILENAME_BAD.sub("_", text).lstrip("-.") or "_"
    if len(text) > max_len:
        text = text[:max_len - 1] + "\u2026"
    return text
