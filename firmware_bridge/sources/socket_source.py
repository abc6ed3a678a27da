"""``socket://HOST:PORT?board=NAME``: a board (or board simulator) behind TCP.

Parameters as for ``serial://`` (``board``, ``stall_s``, ``batch_s`` and the board's own).
The source reconnects by itself when the peer goes away, with backoff.

Examples
--------
>>> from crampwatch.firmware_bridge.sources import open_source
>>> src = open_source("socket://127.0.0.1:7000?board=bitalino")   # doctest: +SKIP
"""

from __future__ import annotations

from crampwatch.errors import SourceError
from crampwatch.firmware_bridge.sources._boards import make_session
from crampwatch.firmware_bridge.sources._link import BATCH_S, LinkSource
from crampwatch.firmware_bridge.sources.base import SourceUrl
from crampwatch.firmware_bridge.sources.serial_source import COMMON_PARAMS
from crampwatch.firmware_bridge.sources.transport import SocketTransport


def open_socket(url: SourceUrl, batch_s: float = BATCH_S) -> LinkSource:
    """Build (not start) the source for a ``socket://`` URL (``batch_s``: as for
    :func:`~.serial_source.open_serial`)."""
    session = make_session(url)
    url.check_params(COMMON_PARAMS + session.known_params)
    host, sep, port = url.target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SourceError(f"{url.url}: expected socket://HOST:PORT?board=...", url=url.url)
    stall_s = url.get("stall_s", 5.0, float)
    host = host.strip("[]")
    return LinkSource(url, lambda: SocketTransport(host, int(port)), session,
                      stall_timeout_s=stall_s, batch_s=url.get("batch_s", batch_s, float))
