"""The one interface every source implements, and its thread plumbing.

A source runs its I/O in a background thread that puts
:class:`~crampwatch.firmware_bridge.types.SampleBlock` and
:class:`~crampwatch.firmware_bridge.types.SourceEvent` objects into a bounded
queue; the consumer (the capture daemon, replay, a test) takes them out with
:meth:`Source.read` or :meth:`Source.iter`.  Errors that end the source (a
file that cannot be read, a port that does not exist) are raised in the
consumer's thread by the next ``read``; link trouble (disconnects, stalls) is
reported as events and repaired by the source itself.

The queue is bounded: a consumer that stops reading makes the I/O thread
wait, the port's buffers fill and the board's overflow shows up as gaps,
which is the right place to lose data (counted), never silently in here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np

from crampwatch.errors import CrampwatchError, SourceError
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo

__all__ = ["Source", "SourceUrl", "parse_url", "Item", "coalesce"]

logger = logging.getLogger(__name__)

Item = SampleBlock | SourceEvent

_SCHEMES = ("serial", "socket", "ble", "sim", "file")


@dataclass(frozen=True)
class SourceUrl:
    """A parsed source URL.

    Attributes
    ----------
    url : str
        The URL as given.
    scheme : str
        ``serial``, ``socket``, ``ble``, ``sim`` or ``file``.
    target : str
        What the scheme opens: a device path, ``host:port``, a BLE address,
        a file path, or ``""`` for ``sim://``.
    params : dict of str to str
        Query parameters (``board=cyton``, ``speed=20``...).
    """

    url: str
    scheme: str
    target: str
    params: dict = field(default_factory=dict)

    def get(self, name: str, default=None, type=str):
        """Query parameter ``name`` converted with ``type``; SourceError if it does not convert."""
        if name not in self.params:
            return default
        raw = self.params[name]
        try:
            return type(raw)
        except (TypeError, ValueError) as exc:
            raise SourceError(f"{self.url}: bad value {raw!r} for parameter {name!r} "
                              f"(expected {type.__name__})", url=self.url) from exc

    def check_params(self, known) -> None:
        """Raise SourceError naming any query parameter not in ``known``."""
        unknown = sorted(set(self.params) - set(known))
        if unknown:
            raise SourceError(f"{self.url}: unknown parameter(s) {', '.join(unknown)} for "
                              f"{self.scheme}:// (known: {', '.join(sorted(known))})", url=self.url)


def parse_url(url: str) -> SourceUrl:
    """Split a source URL into scheme, target and parameters.

    Examples
    --------
    >>> u = parse_url("serial:///dev/ttyUSB0?board=cyton")
    >>> u.scheme, u.target, u.params
    ('serial', '/dev/ttyUSB0', {'board': 'cyton'})
    >>> parse_url("file://night.edf?speed=max").target
    'night.edf'
    >>> parse_url("socket://127.0.0.1:7000?board=bitalino").target
    '127.0.0.1:7000'
    """
    if not isinstance(url, str) or "://" not in url and not url.startswith(("file:", "sim:")):
        raise SourceError(f"{url!r}: not a source URL (expected one of "
                          + ", ".join(f"{s}://..." for s in _SCHEMES) + ")", url=str(url))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise SourceError(f"{url}: unknown scheme {scheme!r} (known: {', '.join(_SCHEMES)})",
                          url=url)
    # file://night.edf (relative) puts the name in netloc; file:///abs/night.edf in path
    target = unquote(parts.netloc + parts.path)
    params = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in params:
            raise SourceError(f"{url}: parameter {key!r} given twice", url=url)
        params[key] = value
    return SourceUrl(url=url, scheme=scheme, target=target, params=params)


def coalesce(items: list) -> list:
    """Merge contiguous blocks of the same stream, keeping events in place.

    Two blocks merge when they belong to the same stream, the second starts
    where the first ends and no event about that stream (or about the whole
    link) lies between them.  The merged block takes the position and the
    ``host_time_s`` of its first piece.

    Examples
    --------
    >>> import numpy as np
    >>> b = lambda i: SampleBlock("emg", 250.0, i, np.zeros((5, 1)))
    >>> out = coalesce([b(0), b(5), SourceEvent("gap", 0.0, "emg", 10, 3), b(13)])
    >>> [(type(x).__name__, x.first_index, x.n_samples) for x in out]
    [('SampleBlock', 0, 10), ('SourceEvent', 10, 3), ('SampleBlock', 13, 5)]
    """
    out: list = []
    open_at: dict[str, int] = {}           # stream -> position in out of its open block
    pieces: dict[int, list] = {}
    for item in items:
        if isinstance(item, SampleBlock):
            pos = open_at.get(item.stream)
            if pos is not None:
                head = out[pos]
                end = head.first_index + sum(p.shape[0] for p in pieces[pos])
                if end == item.first_index and pieces[pos][0].shape[1:] == item.data.shape[1:]:
                    pieces[pos].append(item.data)
                    continue
            open_at[item.stream] = len(out)
            pieces[len(out)] = [item.data]
            out.append(item)
        else:
            if item.stream is None:
                open_at.clear()
            else:
                open_at.pop(item.stream, None)
            out.append(item)
    for pos, parts in pieces.items():
        if len(parts) > 1:
            b = out[pos]
            out[pos] = SampleBlock(b.stream, b.fs_hz, b.first_index, np.concatenate(parts),
                                   b.host_time_s)
    return out


_END = object()   # queue marker: the source has nothing more to give


class Source:
    """Base class of every source: a thread fills a queue, the consumer reads it.

    Use :func:`crampwatch.firmware_bridge.sources.open_source` to get one.
    What comes out, in order:

    - ``SourceEvent("connected", detail={transport, target, board, reconnect,
      firmware...})`` each time the link comes up (first for every source);
      :attr:`info` is complete from then on;
    - ``SampleBlock`` per stream (``"emg"`` in uV, ``"acc"`` in g), each with
      ``first_index`` (samples since the session began, continuous across
      reconnects) and ``host_time_s`` (UTC seconds from the drift fit);
    - ``SourceEvent("gap", stream, first_index, n_samples, detail=
      {"measured_from": "counter" | "host_time", "device_reset" |
      "counter_ambiguous": True})`` before the block that resumes after
      lost samples;
    - ``"disconnected"`` (``detail["reason"]``: error or ``"stalled: ..."``),
      ``"crc_error"`` (``frames_bad``, ``bytes_skipped``), ``"corrupt_frame"``
      (a frame whose counter the next frames contradict, dropped: ``stream``,
      ``n_samples``, ``detail`` ``frames``, ``counter``, ``expected``,
      ``reason``; the gap left by its samples has ``detail["cause"] ==
      "corrupt_frame"``), ``"status"`` (board status frames; reconnect
      attempts with ``attempt`` and ``retry_in_s``), ``"info"``.  Strings a
      device sent (names, firmware, replies) are sanitised
      (:func:`crampwatch._text.sanitize_text`).

    Live sources never end by themselves: they reconnect, with backoff,
    until :meth:`close`.  ``sim://`` with ``hours`` and ``file://`` end;
    then :attr:`finished` is True.  Errors that end a source (a device path
    that does not exist, no Bluetooth adapter, an unreadable file) are raised
    by :meth:`read`, in the consumer's thread.

    Attributes
    ----------
    url : str
        The URL the source was opened from.
    info : dict of str to StreamInfo
        ``{"emg": StreamInfo, "acc": StreamInfo}`` once known (a live board's
        rates may be known only after it answered); a stream the source does
        not have is absent.
    stats : dict
        Running counters (``frames_ok``, ``frames_bad``, ``bytes_skipped``,
        ``frames_implausible``, ``reconnects``, per-stream ``samples`` and
        ``gap_samples``), for status lines.

    Examples
    --------
    >>> from crampwatch.firmware_bridge.sources import open_source
    >>> with open_source("sim://?seed=1&hours=0.001&speed=max") as src:
    ...     emg = [x for x in src.iter() if isinstance(x, SampleBlock) and x.stream == "emg"]
    ...     print(emg[0].first_index, src.info["emg"].unit, src.info["emg"].fs_hz)
    0 uV 1000.0
    >>> src.finished
    True
    """

    #: items the queue holds before the producer thread waits for the consumer
    queue_items = 4096

    def __init__(self, url: SourceUrl):
        self._url = url
        self.url = url.url
        self.info: dict[str, StreamInfo] = {}
        self.stats: dict = {}
        self._queue: queue.Queue = queue.Queue(maxsize=self.queue_items)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._ended = threading.Event()
        self._wall_offset_s = time.time() - time.monotonic()

    # --- consumer side -------------------------------------------------
    def start(self) -> Source:
        """Start the I/O thread (``open_source`` does this)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._thread_main, daemon=True,
                                            name=f"crampwatch-source-{self._url.scheme}")
            self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        """True when a finite source (file, ``sim://`` with ``hours``) has
        delivered its last item, or after :meth:`close`."""
        return self._finished

    def read(self, timeout_s: float | None = None) -> list:
        """Everything the source has produced, waiting up to ``timeout_s`` for the first item.

        Parameters
        ----------
        timeout_s : float or None
            Longest wait for something to arrive; None waits until an item
            arrives or the source ends.

        Returns
        -------
        list of SampleBlock and SourceEvent
            In order; contiguous blocks of a stream are merged
            (:func:`coalesce`).  Empty on timeout or once :attr:`finished`.

        Raises
        ------
        CrampwatchError
            The error that ended the source (``SourceError``,
            ``InputFileError``...), raised once, in the consumer's thread.
        """
        if self._finished:
            return []
        items: list = []
        try:
            first = self._queue.get(timeout=timeout_s) if timeout_s is None or timeout_s > 0 \
                else self._queue.get_nowait()
        except queue.Empty:
            return []
        items.append(first)
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if items[-1] is _END or any(x is _END for x in items):
            cut = next(k for k, x in enumerate(items) if x is _END)
            items = items[:cut]
            self._finished = True
            if self._error is not None:
                err, self._error = self._error, None
                if items:
                    # hand over what was produced before the error; raise on the next read
                    self._error = err
                    self._finished = False
                    self._queue.put(_END)
                    return coalesce(items)
                raise err
        return coalesce(items)

    def iter(self, timeout_s: float | None = None) -> Iterator:
        """Yield items one by one until the source ends or is closed.

        Parameters
        ----------
        timeout_s : float or None
            Stop iterating when nothing arrived for this long (None: never;
            live sources then iterate until :meth:`close` from another thread).
        """
        while not self._finished:
            batch = self.read(timeout_s)
            if not batch:
                if timeout_s is not None or self._finished:
                    return
                continue
            yield from batch

    def close(self) -> None:
        """Stop the I/O thread, tell the device to stop streaming, release it."""
        self._stop.set()
        # unblock a producer waiting on a full queue
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)
            if self._thread.is_alive():
                logger.warning("%s: I/O thread did not stop within 10 s", self.url)
        self._finished = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.url}>"

    # --- producer side (the I/O thread) ----------------------------------
    def _thread_main(self) -> None:
        try:
            self._run()
        except CrampwatchError as exc:
            self._error = exc
        except Exception as exc:          # a bug: keep the traceback in the log
            logger.exception("%s: source thread failed", self.url)
            self._error = SourceError(f"{self.url}: source failed: {exc!r}", url=self.url)
        finally:
            self._put(_END, force=True)
            self._ended.set()

    def _run(self) -> None:
        """The I/O loop; subclasses implement it with :meth:`_emit`."""
        raise NotImplementedError

    def _put(self, item, force: bool = False) -> bool:
        while True:
            if self._stop.is_set() and not force:
                return False
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if force and self._stop.is_set():
                    return False
                continue

    def _emit(self, item) -> bool:
        """Hand one item to the consumer; False once the source is closing."""
        return self._put(item)

    def _event(self, kind: str, stream: str | None = None, first_index: int | None = None,
               n_samples: int | None = None, **detail) -> SourceEvent:
        ev = SourceEvent(kind=kind, host_time_s=self.wall_time(), stream=stream,
                         first_index=first_index, n_samples=n_samples, detail=detail)
        self._emit(ev)
        return ev

    def wall_time(self, monotonic_s: float | None = None) -> float:
        """UTC POSIX seconds of a ``time.monotonic()`` reading (now if None).

        The offset between the clocks is taken once when the source is
        created, so a wall-clock step (NTP) in the night does not bend the
        sample times.
        """
        if monotonic_s is None:
            monotonic_s = time.monotonic()
        return monotonic_s + self._wall_offset_s
