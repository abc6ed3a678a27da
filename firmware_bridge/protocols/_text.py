"""Text replies mixed into a binary stream (Cyton ``...$$$``, BITalino version).

Boards that stream binary frames also answer some commands with ASCII text.
A decoder hands every byte that is not part of a frame to a
:class:`TextCollector`; runs of printable ASCII that end in the board's
terminator become replies, everything else is garbage that the decoder counts
as skipped.  The collector is a streaming state machine over that byte
sequence, so any split of the input gives the same replies and, once the
input is consumed, the same garbage count.
"""

from __future__ import annotations

import re

# Printable ASCII plus tab, LF, CR: anything else ends a text run.
_NON_TEXT = re.compile(rb"[^\t\n\r\x20-\x7e]")


class TextCollector:
    """Turn non-frame bytes into text replies and a garbage count.

    Parameters
    ----------
    terminator : bytes
        Ends a reply (``b"$$$"`` for the Cyton, ``b"\\n"`` for BITalino).
    require : bytes, optional
        A reply must contain this (e.g. ``b"BITalino"``), else it is garbage.
    max_len : int
        At most this many bytes of text are kept before the terminator; older
        bytes are garbage (bounded memory).
    """

    def __init__(self, terminator: bytes, require: bytes | None = None, max_len: int = 4096):
        self._term = terminator
        self._require = require
        self._max_len = max_len
        self._keep = max_len + len(terminator) - 1
        self._buf = bytearray()
        self._start = 0  # stream offset of _buf[0]

    def push(self, data: bytes, offset: int) -> tuple[list[tuple[int, str]], int]:
        """Add non-frame bytes that began at stream ``offset``.

        Returns
        -------
        replies : list of (offset, text)
            Completed replies (terminator stripped), in stream order.
        garbage : int
            Bytes found to be garbage by this call.
        """
        data = bytes(data)
        replies: list[tuple[int, str]] = []
        garbage = 0
        pos = 0
        for m in _NON_TEXT.finditer(data):
            garbage += self._add(data[pos:m.start()], offset + pos, replies)
            garbage += self.flush() + 1
            pos = m.end()
        garbage += self._add(data[pos:], offset + pos, replies)
        return replies, garbage

    def flush(self) -> int:
        """Drop the pending text (a frame started); return how many bytes that was."""
        n = len(self._buf)
        self._buf.clear()
        return n

    def _add(self, seg: bytes, seg_offset: int, replies: list) -> int:
        if not seg:
            return 0
        if not self._buf:
            self._start = seg_offset
        self._buf += seg
        garbage = 0
        term = self._term
        while True:
            idx = self._buf.find(term)
            if idx < 0:
                break
            first = max(0, idx - self._max_len)
            text = bytes(self._buf[first:idx])
            garbage += first
            if self._require is not None and self._require not in text:
                garbage += idx - first + len(term)
            else:
                replies.append((self._start + first, text.decode("ascii")))
            end = idx + len(term)
            del self._buf[:end]
            self._start += end
        over = len(self._buf) - self._keep
        if over > 0:
            del self._buf[:over]
            self._start += over
            garbage += over
        return garbage


class ResyncAccounting:
    """Shared by the Cyton and BITalino decoders: text replies found between
    frames, and the count of bytes skipped and bad frames while resynchronising.

    Expects ``self._text`` (a :class:`TextCollector`), ``self._base`` (stream
    offset of the buffer's first byte), ``self.stats`` (DecoderStats),
    ``self._run_skipped`` and ``self._seen_good``.
    """

    def _push_text(self, buf: bytearray, start: int, end: int, out: list) -> None:
        from crampwatch.firmware_bridge.protocols.base import Packet
        replies, garbage = self._text.push(buf[start:end], self._base + start)
        self._skip(garbage)
        for off, text in replies:
            self._good()
            out.append(Packet("reply", 0, 1, offset=off, meta={"text": text}))

    def _skip(self, n: int) -> None:
        if n:
            self.stats.bytes_skipped += n
            self._run_skipped += n

    def _good(self) -> None:
        # garbage before the first good frame is the tail of a frame sent before
        # we joined the stream: skipped, but not a bad frame
        if self._run_skipped and self._seen_good:
            self.stats.frames_bad += 1
        self._run_skipped = 0
        self._seen_good = True
