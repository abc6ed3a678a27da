"""``serial://PATH?board=NAME``: a board on a serial port (USB dongle, rfcomm, pty).

Parameters: ``board`` (cyton, bitalino, open; required), ``baud`` (default:
the board's rate), ``stall_s`` (seconds without a byte that count as a
disconnect, default 5), ``batch_s`` (while bytes flow, read at most once per
this many seconds, default 0.1; 0 reads every chunk as it comes),
``low_latency`` (0 to leave the FTDI latency timer
alone), plus the board's own (BITalino: ``rate``, ``channels``, ``emg``,
``acc``; open: ``emg_fs``, ``acc_fs``).

Examples
--------
>>> from crampwatch.firmware_bridge.sources import open_source
>>> src = open_source("serial:///dev/ttyUSB0?board=cyton")      # doctest: +SKIP
"""

from __future__ import annotations

from crampwatch.errors import SourceError
from crampwatch.firmware_bridge.sources._boards import make_session
from crampwatch.firmware_bridge.sources._link import BATCH_S, LinkSource
from crampwatch.firmware_bridge.sources.base import SourceUrl
from crampwatch.firmware_bridge.sources.transport import SerialTransport

COMMON_PARAMS = ("board", "stall_s", "batch_s")


def open_serial(url: SourceUrl, batch_s: float = BATCH_S) -> LinkSource:
    """Build (not start) the source for a ``serial://`` URL; ``batch_s`` is the
    default of the URL's ``batch_s`` (a consumer that turns every 0.25 s passes 0.25)."""
    session = make_session(url)
    url.check_params(COMMON_PARAMS + ("baud", "low_latency") + session.known_params)
    if not url.target:
        raise SourceError(f"{url.url}: no device path (serial:///dev/ttyUSB0?board=...)",
                          url=url.url)
    baud = url.get("baud", session.board.baudrate, int)
    low_latency = url.get("low_latency", 1, int) != 0
    stall_s = url.get("stall_s", 5.0, float)
    transport = SerialTransport(url.target, baud, low_latency=low_latency)
    # one transport object across reconnects: it remembers it was opened once,
    # so a vanished device is retried instead of reported as a typo
    return LinkSource(url, lambda: transport, session, stall_timeout_s=stall_s,
                      batch_s=url.get("batch_s", batch_s, float))
