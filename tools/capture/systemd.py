"""systemd's side of the capture daemon: readiness, status and the watchdog.

``Type=notify`` services tell systemd they are ready (``READY=1``), what they
do (``STATUS=...``) and that they still live (``WATCHDOG=1``, at least every
half ``WatchdogSec``), all through :func:`sd_notify`.  Outside systemd both
functions do nothing.
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["sd_notify", "watchdog_interval_s"]

log = logging.getLogger(__name__)


def sd_notify(message: str, environ=None) -> bool:
    """Send ``message`` (``"READY=1"``, ``"WATCHDOG=1"``, ``"STATUS=..."``) to
    systemd's notification socket ``$NOTIFY_SOCKET``; False if there is none.

    The protocol is one AF_UNIX datagram; an address starting with ``@`` is
    in the abstract namespace.  Nothing is sent, and nothing fails, when the
    daemon does not run under systemd.

    Examples
    --------
    >>> sd_notify("READY=1", environ={})
    False
    """
    env = os.environ if environ is None else environ
    addr = env.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            # never wait: a manager that does not read must not stall the capture
            sock.send(message.encode("utf-8", "replace"), socket.MSG_DONTWAIT)
        return True
    except OSError as exc:
        log.debug("sd_notify(%r) failed: %s", message[:40], exc)
        return False


def watchdog_interval_s(environ=None) -> float | None:
    """Half of systemd's ``WatchdogSec`` (``$WATCHDOG_USEC``) if it applies to us."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None
