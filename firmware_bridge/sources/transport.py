"""Byte transports under the live sources: what moves bytes, nothing more.

A transport opens a link, reads chunks of bytes with their host arrival time,
writes commands and closes.  It knows no protocol.  ``read`` raises
:class:`LinkLost` when the link is gone (port vanished, peer closed, BLE
disconnected); stalls (link open, no bytes) are detected above it, by the
source.

Implementations: :class:`SerialTransport` (pyserial), :class:`SocketTransport`
(TCP), and ``BleTransport`` in :mod:`.ble_source` (bleak).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time

from crampwatch.errors import SourceError

__all__ = ["Transport", "LinkLost", "SerialTransport", "SocketTransport", "set_ftdi_low_latency"]

logger = logging.getLogger(__name__)

#: bytes asked for per read(2); a read that may have been capped (a socket's
#: ``_READ_BYTES``, a tty's line-discipline buffer of 4 KiB) is followed by
#: more, up to ``_READ_MAX_PARTS`` reads per call
_READ_BYTES = 65536
_TTY_READ_BYTES = 2048
_READ_MAX_PARTS = 16


class LinkLost(Exception):
    """The link under a source is gone; the source reconnects."""


class Transport:
    """Interface of a byte transport.

    ``open()`` connects (raises ``OSError``/``LinkLost`` for trouble worth a
    retry, :class:`~crampwatch.errors.SourceError` for trouble that will not
    go away by retrying); ``read(timeout_s)`` returns a list of
    ``(arrival_monotonic_ns, bytes)`` chunks, empty on timeout;
    ``write(data)``; ``close()`` (idempotent, never raises).
    """

    kind = "transport"
    description = ""

    def open(self) -> None:
        raise NotImplementedError

    def read(self, timeout_s: float) -> list[tuple[int, bytes]]:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def set_ftdi_low_latency(port: str, ser=None) -> bool:
    """Ask the OS for the FTDI chip's 1 ms latency timer; failures are only logged.

    FTDI USB-serial chips (the Cyton dongle) hold bytes up to 16 ms before
    sending them to the host.  On Linux the latency timer is in
    ``/sys/bus/usb-serial/devices/ttyUSBx/latency_timer``; the
    ``ASYNC_LOW_LATENCY`` serial flag (``ser.set_low_latency_mode``) asks
    the driver for the same.  Neither works on ptys or without permission,
    which is fine: only the timestamps' jitter grows, the clock fit copes.

    Returns
    -------
    bool
        True if either setting took.
    """
    done = False
    name = os.path.basename(os.path.realpath(port))
    sysfs = f"/sys/bus/usb-serial/devices/{name}/latency_timer"
    try:
        with open(sysfs, "w") as fh:
            fh.write("1")
        done = True
    except OSError as exc:
        logger.debug("%s: cannot set FTDI latency timer via %s: %s", port, sysfs, exc)
    if ser is not None and hasattr(ser, "set_low_latency_mode"):
        try:
            ser.set_low_latency_mode(True)
            done = True
        except (ValueError, OSError) as exc:
            logger.debug("%s: ASYNC_LOW_LATENCY not available: %s", port, exc)
    return done


class SerialTransport(Transport):
    """A serial port through pyserial (USB dongles, ptys, Bluetooth rfcomm).

    Parameters
    ----------
    port : str
        Device path (``/dev/ttyUSB0``, ``/dev/pts/5``, ``COM3``).
    baudrate : int
    low_latency : bool
        Try :func:`set_ftdi_low_latency` after opening.
    """

    kind = "serial"

    def __init__(self, port: str, baudrate: int = 115200, low_latency: bool = True):
        self.port = port
        self.baudrate = int(baudrate)
        self.low_latency = low_latency
        self.description = port
        self._ser = None
        self.opened_once = False
        self._identity = None

    def _node_identity(self):
        """A pty node is made anew for each pseudo-terminal: its ctime tells a
        reused /dev/pts/N (someone else's) from the one we had.  None for
        other devices, whose node stays the same across unplug/replug."""
        if not self.port.startswith("/dev/pts/"):
            return None
        st = os.stat(self.port)
        return (st.st_rdev, st.st_ctime_ns)

    def open(self) -> None:
        import serial

        if not os.path.exists(self.port) and not self.port.upper().startswith("COM"):
            exc = FileNotFoundError(errno.ENOENT, "no such device", self.port)
            if not self.opened_once:
                raise SourceError(f"serial://{self.port}: no such device "
                                  "(see `crampwatch scan` for the ports here)",
                                  url=self.port) from exc
            raise exc
        identity = self._node_identity()
        if self._identity is not None and identity != self._identity:
            raise LinkLost(f"{self.port}: the pty we used is gone; this path is now another one")
        try:
            ser = serial.Serial(self.port, self.baudrate, timeout=0, write_timeout=2.0,
                                exclusive=True)
        except serial.SerialException as exc:
            cause = exc.__cause__ or exc.__context__
            if not self.opened_once and isinstance(cause, PermissionError):
                raise SourceError(f"serial://{self.port}: permission denied (add yourself to "
                                  "the 'dialout' group)", url=self.port) from exc
            raise LinkLost(f"{self.port}: {exc}") from exc
        self._ser = ser
        self.opened_once = True
        self._identity = identity
        if self.low_latency:
            set_ftdi_low_latency(self.port, ser)
        try:
            ser.reset_input_buffer()
        except (OSError, serial.SerialException):
            pass

    def read(self, timeout_s: float) -> list[tuple[int, bytes]]:
        import serial

        ser = self._ser
        if ser is None:
            raise LinkLost(f"{self.port}: not open")
        try:
            ready, _, _ = select.select([ser.fileno()], [], [], max(0.0, timeout_s))
            if not ready:
                return []
            t_ns = time.monotonic_ns()
            fd = ser.fileno()
            data = os.read(fd, _READ_BYTES)
            if len(data) >= _TTY_READ_BYTES:
                # the tty may hold more than one read(2) hands over: take what is there
                parts = [data]
                while len(parts) < _READ_MAX_PARTS:
                    try:
                        more = os.read(fd, _READ_BYTES)
                    except BlockingIOError:
                        break
                    if not more:
                        break
                    parts.append(more)
                t_ns = time.monotonic_ns()
                data = b"".join(parts)
        except BlockingIOError:
            return []
        except OSError as exc:          # EIO: the pty master or the USB device went away
            raise LinkLost(f"{self.port}: {exc}") from exc
        except (serial.SerialException, ValueError, TypeError) as exc:
            raise LinkLost(f"{self.port}: {exc}") from exc
        if not data:
            raise LinkLost(f"{self.port}: device reports readiness to read but returned no data "
                           "(disconnected?)")
        return [(t_ns, data)]

    def write(self, data: bytes) -> None:
        import serial

        if self._ser is None:
            raise LinkLost(f"{self.port}: not open")
        try:
            self._ser.write(data)
            self._ser.flush()
        except (OSError, serial.SerialException) as exc:
            raise LinkLost(f"{self.port}: write failed: {exc}") from exc

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception as exc:     # closing a vanished device can fail in odd ways
                logger.debug("%s: close: %s", self.port, exc)


class SocketTransport(Transport):
    """A TCP connection (board simulators, Wi-Fi shields, serial-over-TCP bridges).

    Parameters
    ----------
    host : str
    port : int
    connect_timeout_s : float
    """

    kind = "socket"

    def __init__(self, host: str, port: int, connect_timeout_s: float = 3.0):
        self.host = host
        self.port = int(port)
        self.connect_timeout_s = connect_timeout_s
        self.description = f"{host}:{port}"
        self._sock: socket.socket | None = None

    def open(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except socket.gaierror as exc:
            raise SourceError(f"socket://{self.host}:{self.port}: unknown host: {exc}",
                              url=f"socket://{self.host}:{self.port}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        sock.setblocking(False)
        self._sock = sock

    def read(self, timeout_s: float) -> list[tuple[int, bytes]]:
        sock = self._sock
        if sock is None:
            raise LinkLost(f"{self.description}: not connected")
        try:
            ready, _, _ = select.select([sock], [], [], max(0.0, timeout_s))
            if not ready:
                return []
            t_ns = time.monotonic_ns()
            data = sock.recv(_READ_BYTES)
            if len(data) == _READ_BYTES:
                parts = [data]
                while len(parts) < _READ_MAX_PARTS:
                    try:
                        more = sock.recv(_READ_BYTES)
                    except BlockingIOError:
                        break
                    if not more:
                        break          # the peer closed: the next read says so
                    parts.append(more)
                    if len(more) < _READ_BYTES:
                        break
                t_ns = time.monotonic_ns()
                data = b"".join(parts)
        except BlockingIOError:
            return []
        except OSError as exc:
            raise LinkLost(f"{self.description}: {exc}") from exc
        if not data:
            raise LinkLost(f"{self.description}: connection closed by the peer")
        return [(t_ns, data)]

    def write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise LinkLost(f"{self.description}: not connected")
        try:
            sock.setblocking(True)
            sock.settimeout(2.0)
            sock.sendall(data)
        except OSError as exc:
            raise LinkLost(f"{self.description}: write failed: {exc}") from exc
        finally:
            try:
                sock.setblocking(False)
            except OSError:
                pass

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
