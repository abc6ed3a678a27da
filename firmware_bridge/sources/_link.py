"""The live source: a transport + a board session + assembly, reconnecting forever.

:class:`LinkSource` is what ``serial://``, ``socket://`` and ``ble://`` URLs
open.  Its thread loops: open the transport, run the board's start handshake,
pump bytes through the protocol decoder into the per-stream assemblers, and
when the link is lost (an error, or no byte for ``stall_timeout_s``) report
``disconnected``, wait ``backoff_s(attempt)`` and start again.  On close it
sends the board's stop command.

While streaming, the thread reads in batches: after a read that brought
bytes it sleeps until ``batch_s`` has passed before reading again, so that
each wake-up decodes, assembles and hands on tens of milliseconds of signal
(a board sends a frame every few ms; one wake-up per frame costs more than
the work on its samples).  After a silence the first byte is taken at once,
and after a read of :data:`FULL_READ_BYTES` or more (the kernel's buffer may
have held back the rest) the next read follows at once.
"""

from __future__ import annotations

import logging
import random
import time

from crampwatch._text import sanitize_text
from crampwatch.errors import SourceError
from crampwatch.firmware_bridge.backoff import backoff_s
from crampwatch.firmware_bridge.sources._assembly import StreamAssembler
from crampwatch.firmware_bridge.sources.base import Source, SourceUrl
from crampwatch.firmware_bridge.sources.transport import LinkLost, Transport

logger = logging.getLogger(__name__)

SAMPLE_STREAMS = ("emg", "acc")
#: default pause between reads while bytes flow (see the module docstring)
BATCH_S = 0.1
#: longest pause between reads a URL may ask for (``batch_s``)
BATCH_MAX_S = 0.5
#: a read of this many bytes or more may have been capped by the kernel (a tty
#: hands over at most its 4 KiB line-discipline buffer per read): read on at once
#: instead of pausing, so a fast stream is never throttled by the batching
FULL_READ_BYTES = 2048


class HandshakeTimeout(LinkLost):
    """The board did not answer a start-up command in time."""


class Link:
    """What a board session sees of the link during its handshake.

    ``write`` sends bytes (and lets the decoder observe them, for boards
    whose scaling depends on commands); ``wait_for(predicate, timeout_s)``
    reads and decodes until a packet satisfies ``predicate``.  Sample
    packets that arrive once :meth:`keep_samples` was called are kept, with
    their arrival time, for the source to assemble after the handshake.
    """

    def __init__(self, transport: Transport, decoder, stop_event):
        self.transport = transport
        self.decoder = decoder
        self._stop = stop_event
        self.pending: list[tuple[float, list]] = []     # (arrival_s, packets)
        self._keep = False
        self.seen: list = []                            # control packets seen

    def write(self, data: bytes) -> None:
        observe = getattr(self.decoder, "observe_command", None)
        if observe is not None:
            observe(data)
        self.transport.write(data)

    def keep_samples(self) -> None:
        """From now on, sample packets belong to the new session: keep them."""
        self._keep = True

    def wait_for(self, predicate, timeout_s: float, what: str = "an answer"):
        """Read until a decoded packet satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HandshakeTimeout(f"{self.transport.description}: no {what} within "
                                       f"{timeout_s:g} s")
            if self._stop.is_set():
                raise LinkLost("closing")
            for t_ns, data in self.transport.read(min(left, 0.1)):
                packets = self.decoder.feed(data)
                found = None
                keep = []
                for p in packets:
                    if p.stream in SAMPLE_STREAMS:
                        if self._keep:
                            keep.append(p)
                    else:
                        self.seen.append(p)
                        if found is None and predicate(p):
                            found = p
                if keep:
                    self.pending.append((t_ns / 1e9, keep))
                if found is not None:
                    return found

    def wait_raw(self, terminator: bytes, contains: bytes, timeout_s: float,
                 what: str = "an answer") -> bytes:
        """Read raw bytes (not decoded) until a line ending in ``terminator``
        that contains ``contains`` arrives; return that line.

        For text replies that a decoder holds back while it looks for
        frames (the BITalino decoder only reports text once it has seen as
        many bytes as it needs to lock onto frames).
        """
        deadline = time.monotonic() + timeout_s
        buf = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HandshakeTimeout(f"{self.transport.description}: no {what} within "
                                       f"{timeout_s:g} s")
            if self._stop.is_set():
                raise LinkLost("closing")
            for _, data in self.transport.read(min(left, 0.1)):
                buf += data
            while True:
                end = buf.find(terminator)
                if end < 0:
                    break
                line = bytes(buf[:end])
                del buf[:end + len(terminator)]
                at = line.find(contains)
                if at >= 0:
                    return line[at:]
            del buf[:-4096]

    def drain(self, quiet_s: float = 0.05, max_s: float = 1.0) -> None:
        """Read and drop bytes until the line has been quiet for ``quiet_s``."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            chunks = self.transport.read(quiet_s)
            if not chunks:
                return
            for _, data in chunks:
                self.decoder.feed(data)


class LinkSource(Source):
    """A live board behind a byte transport.

    Parameters
    ----------
    url : SourceUrl
    make_transport : callable
        Returns a new, unopened :class:`~.transport.Transport` per attempt.
    session : BoardSession
        The board's host-side protocol (handshake, stop, stream info).
    stall_timeout_s : float
        No byte for this long while streaming counts as a disconnect.
    rng : random.Random, optional
        Jitter source for the reconnect backoff.
    batch_s : float
        While bytes flow, read at most once per ``batch_s`` (0: read each
        chunk as it arrives).  The samples reach the consumer up to this
        much later; every wake-up of the thread handles that much signal.
    """

    def __init__(self, url: SourceUrl, make_transport, session, stall_timeout_s: float = 5.0,
                 rng: random.Random | None = None, backoff_cap_s: float = 30.0,
                 batch_s: float = BATCH_S):
        super().__init__(url)
        if not 0.0 <= batch_s <= BATCH_MAX_S:
            raise SourceError(f"{url.url}: batch_s must be between 0 and {BATCH_MAX_S:g} s, "
                              f"got {batch_s:g}", url=url.url)
        self.batch_s = float(batch_s)
        self._make_transport = make_transport
        self.session = session
        self.stall_timeout_s = float(stall_timeout_s)
        self._rng = rng or random.Random()
        self._backoff_cap_s = backoff_cap_s
        self._attempt = 0
        self._asm: dict[str, StreamAssembler] = {}
        self._totals = {"frames_ok": 0, "frames_bad": 0, "bytes_skipped": 0, "bytes_in": 0,
                        "counters_repaired": 0}
        self._dec_seen = dict.fromkeys(self._totals, 0)
        self.stats.update(self._totals, reconnects=0, gap_samples={}, samples={},
                          frames_implausible=0)
        self.info.update(session.stream_info())
        self._transport: Transport | None = None
        self._decoder = None

    # -- the I/O thread ------------------------------------------------------
    def _run(self) -> None:
        connected_before = False
        while not self._stop.is_set():
            transport = self._make_transport()
            self._transport = transport
            decoder = self._decoder = self.session.new_decoder()
            link = Link(transport, decoder, self._stop)
            self._dec_seen = dict.fromkeys(self._totals, 0)
            try:
                transport.open()
                details = self.session.start(link)
            except SourceError:
                transport.close()
                if not connected_before:
                    raise
                self._retry("open failed", None)
                continue
            except (OSError, LinkLost, TimeoutError) as exc:
                transport.close()
                if self._stop.is_set():
                    break
                self._retry("connect failed", exc)
                continue
            self.info.update(self.session.stream_info())
            if connected_before:
                for asm in self._asm.values():
                    asm.relinked()
            self._event("connected", transport=transport.kind, target=transport.description,
                        board=self.session.name, reconnect=connected_before, **(details or {}))
            connected_before = True
            for p in link.seen:
                self._control(p, time.monotonic())
            for arrival_s, packets in link.pending:
                self._samples(packets, arrival_s)
            reason = self._pump(transport, decoder)
            if reason is None:                       # closing
                try:
                    self.session.stop(link)
                except (OSError, LinkLost) as exc:
                    logger.debug("%s: stop command not delivered: %s", self.url, exc)
                transport.close()
                break
            transport.close()
            self.stats["reconnects"] += 1
            self._event("disconnected", reason=reason)
            logger.warning("%s: link lost (%s); reconnecting", self.url, reason)
            self._retry("reconnecting", None)
        if self._transport is not None:
            self._transport.close()

    def _retry(self, state: str, exc) -> None:
        delay = backoff_s(self._attempt, self._rng, cap_s=self._backoff_cap_s)
        self._attempt += 1
        if exc is not None:
            logger.info("%s: %s: %s (attempt %d, next in %.2f s)", self.url, state, exc,
                        self._attempt, delay)
            self._event("status", state=state, reason=sanitize_text(exc, 300),
                        attempt=self._attempt, retry_in_s=round(delay, 3))
        self._stop.wait(delay)

    def _pump(self, transport: Transport, decoder) -> str | None:
        """Bytes -> items until the link is lost (returns why) or the source closes (None).

        One batch per turn: everything the transport holds (all its chunks,
        stamped with the arrival of the last one) is decoded in one call,
        and each stream's packets are assembled together.
        """
        last_byte = time.monotonic()
        next_read = last_byte
        stop = self._stop
        batch_s = self.batch_s
        while not stop.is_set():
            if batch_s:
                wait = next_read - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    break
            try:
                chunks = transport.read(0.1)
            except LinkLost as exc:
                return sanitize_text(exc, 300)
            now = time.monotonic()
            if not chunks:
                if now - last_byte > self.stall_timeout_s:
                    return f"stalled: no data for {self.stall_timeout_s:g} s"
                continue
            last_byte = now
            if len(chunks) == 1:
                t_ns, data = chunks[0]
            else:
                t_ns, data = chunks[-1][0], b"".join(d for _, d in chunks)
            next_read = now + batch_s if len(data) < FULL_READ_BYTES else now
            arrival_s = t_ns / 1e9
            packets = decoder.feed(data)
            self._decoder_stats(decoder, arrival_s)
            if not packets:
                continue
            samples = []
            for p in packets:
                if p.stream in SAMPLE_STREAMS:
                    samples.append(p)
                else:
                    self._control(p, arrival_s)
            if samples:
                self._samples(samples, arrival_s)
                self._attempt = 0
        return None

    def _decoder_stats(self, decoder, arrival_s: float) -> None:
        st = decoder.stats
        seen = self._dec_seen
        totals = self._totals
        bad = 0
        skipped = 0
        for k in totals:
            v = getattr(st, k)
            d = v - seen[k]
            if d:
                seen[k] = v
                totals[k] += d
                self.stats[k] = totals[k]
                if k == "frames_bad":
                    bad = d
                elif k == "bytes_skipped":
                    skipped = d
        if bad > 0:
            self._emit_event("crc_error", arrival_s, frames_bad=bad, bytes_skipped=skipped)

    def _emit_event(self, kind, arrival_s, **detail):
        from crampwatch.firmware_bridge.types import SourceEvent
        self._emit(SourceEvent(kind=kind, host_time_s=self.wall_time(arrival_s), detail=detail))

    def _control(self, packet, arrival_s: float) -> None:
        for kind, detail in self.session.on_control(packet):
            self.info.update(self.session.stream_info())
            for name, asm in self._asm.items():
                if name in self.info:
                    asm.set_fs(self.info[name].fs_hz)
            self._emit_event(kind, arrival_s, **detail)

    def _samples(self, packets: list, arrival_s: float) -> None:
        by_stream: dict[str, list] = {}
        for p in packets:
            by_stream.setdefault(p.stream, []).append(p)
        for name, plist in by_stream.items():
            asm = self._asm.get(name)
            if asm is None:
                info = self.info.get(name)
                if info is None:
                    logger.debug("%s: packets of unknown stream %r dropped", self.url, name)
                    continue
                asm = self._asm[name] = StreamAssembler(
                    name, info.fs_hz, self._wall_offset_s,
                    frame_bytes=self.session.frame_bytes(name, self._decoder))
            for item in asm.feed(plist, arrival_s):
                self._emit(item)
            self.stats["gap_samples"][name] = asm.gap_samples
            self.stats["samples"][name] = asm.samples
        self.stats["frames_implausible"] = sum(a.frames_implausible for a in self._asm.values())
