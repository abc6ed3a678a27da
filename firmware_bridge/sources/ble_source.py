"""``ble://ADDRESS?board=open``: an open-frame board over BLE (Nordic UART Service).

A thin facade over bleak.  The board notifies its byte stream on the NUS TX
characteristic (6E400003-...) and takes commands written to RX (6E400002-...).
The notification callback only enqueues ``(time.monotonic_ns(), bytes)``;
decoding, assembly and the clock fit happen in the source's own thread, like
every other byte transport.  Connecting goes through bleak-retry-connector's
``establish_connection(client_class, device, name, ...)``; bleak's
``disconnected_callback`` ends the link, and the source reconnects with
backoff, forever.

The client class is a parameter (default ``bleak.BleakClient``) and so is
the device lookup (default ``BleakScanner.find_device_by_address``): tests
inject a fake client at that seam and run without a radio.

Examples
--------
>>> from crampwatch.firmware_bridge.sources import open_source
>>> src = open_source("ble://C0:FF:EE:00:00:01?board=open")       # doctest: +SKIP
>>> src = open_source("ble://C0:FF:EE:00:00:01?board=open",
...                   client_class=FakeClient, find_device=fake_find)   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time

from crampwatch.errors import SourceError
from crampwatch.firmware_bridge.sources._boards import make_session
from crampwatch.firmware_bridge.sources._link import BATCH_S, LinkSource
from crampwatch.firmware_bridge.sources.base import SourceUrl
from crampwatch.firmware_bridge.sources.serial_source import COMMON_PARAMS
from crampwatch.firmware_bridge.sources.transport import LinkLost, Transport

__all__ = ["NUS_SERVICE_UUID", "NUS_RX_UUID", "NUS_TX_UUID", "BleTransport", "open_ble",
           "bluetooth_unavailable"]

logger = logging.getLogger(__name__)

NUS_SERVICE_UUID = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
NUS_RX_UUID = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"   # host -> board (write)
NUS_TX_UUID = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"   # board -> host (notify)

_LOST = object()       # queued by the disconnected callback


def bluetooth_unavailable(exc: BaseException) -> bool:
    """True if ``exc`` says this machine has no usable Bluetooth (not a passing failure).

    On Linux, bleak talks to BlueZ over the D-Bus system bus: no bus socket
    (``FileNotFoundError``) or bleak's ``BleakBluetoothNotAvailableError``
    (no adapter, powered off, denied) mean retrying will not help.
    """
    try:
        from bleak.exc import BleakBluetoothNotAvailableError
    except ImportError:                      # older bleak
        BleakBluetoothNotAvailableError = ()  # noqa: N806
    return isinstance(exc, (FileNotFoundError, BleakBluetoothNotAvailableError))


class _LoopThread:
    """One asyncio event loop in a daemon thread, shared by every BLE transport."""

    _instance: _LoopThread | None = None
    _lock = threading.Lock()

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="crampwatch-ble-loop")
        self.thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(self, coro, timeout_s: float):
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout_s)
        except TimeoutError:
            fut.cancel()
            raise


async def _default_find_device(address: str, timeout_s: float):
    from bleak import BleakScanner

    return await BleakScanner.find_device_by_address(address, timeout=timeout_s)


class BleTransport(Transport):
    """Bytes from a board's NUS TX notifications; writes to NUS RX.

    Parameters
    ----------
    address : str
        The board's BLE address (or, on macOS, its CoreBluetooth UUID).
    client_class : type, optional
        bleak's ``BleakClient`` or anything with the same methods
        (``connect``, ``disconnect``, ``start_notify``, ``write_gatt_char``,
        ``is_connected``, and ``disconnected_callback`` taken at construction).
    find_device : coroutine function, optional
        ``await find_device(address, timeout_s) -> BLEDevice | None``.
    scan_timeout_s, connect_timeout_s : float
    """

    kind = "ble"

    def __init__(self, address: str, client_class=None, find_device=None,
                 scan_timeout_s: float = 10.0, connect_timeout_s: float = 40.0):
        if client_class is None:
            from bleak import BleakClient
            client_class = BleakClient
        self.address = address
        self.description = address
        self.client_class = client_class
        self.find_device = find_device or _default_find_device
        self.scan_timeout_s = scan_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._client = None
        self._lost = False
        self._loop = _LoopThread.get()

    # bleak calls these two on the event loop's thread: only enqueue
    def _on_notify(self, _char, data) -> None:
        self._q.put((time.monotonic_ns(), bytes(data)))

    def _on_disconnect(self, _client) -> None:
        self._q.put(_LOST)

    async def _connect(self):
        from bleak_retry_connector import establish_connection

        device = await self.find_device(self.address, self.scan_timeout_s)
        if device is None:
            raise LinkLost(f"{self.address}: not found (out of range, off, or connected "
                           "to another host?)")
        client = await establish_connection(self.client_class, device, f"crampwatch {self.address}",
                                            disconnected_callback=self._on_disconnect,
                                            max_attempts=3)
        try:
            await client.start_notify(NUS_TX_UUID, self._on_notify)
        except Exception:
            await client.disconnect()
            raise
        return client

    def open(self) -> None:
        self._q = queue.SimpleQueue()
        self._lost = False
        try:
            self._client = self._loop.run(self._connect(), self.connect_timeout_s)
        except LinkLost:
            raise
        except Exception as exc:       # bleak raises many types; sort the hopeless ones out
            if bluetooth_unavailable(exc):
                raise SourceError(f"ble://{self.address}: no Bluetooth adapter: {exc}",
                                  url=f"ble://{self.address}") from exc
            raise LinkLost(f"{self.address}: connect failed: {exc!r}") from exc

    def read(self, timeout_s: float) -> list[tuple[int, bytes]]:
        if self._lost:
            raise LinkLost(f"{self.address}: disconnected")
        out = []
        try:
            item = self._q.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return out
        while True:
            if item is _LOST:
                self._lost = True
                if not out:
                    raise LinkLost(f"{self.address}: disconnected")
                return out
            out.append(item)
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return out

    def write(self, data: bytes) -> None:
        client = self._client
        if client is None or self._lost:
            raise LinkLost(f"{self.address}: not connected")
        try:
            self._loop.run(client.write_gatt_char(NUS_RX_UUID, bytes(data), response=False), 5.0)
        except Exception as exc:
            raise LinkLost(f"{self.address}: write failed: {exc!r}") from exc

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            self._loop.run(client.disconnect(), 5.0)
        except Exception as exc:
            logger.debug("%s: disconnect: %r", self.address, exc)


def open_ble(url: SourceUrl, client_class=None, find_device=None,
             batch_s: float = BATCH_S) -> LinkSource:
    """Build (not start) the source for a ``ble://`` URL.

    Parameters
    ----------
    url : SourceUrl
    client_class : type, optional
        Default ``bleak.BleakClient``; tests pass a fake with the same methods.
    find_device : coroutine function, optional
        Default ``BleakScanner.find_device_by_address``.
    batch_s : float
        Default of the URL's ``batch_s`` (see :mod:`.serial_source`).
    """
    if "board" not in url.params:
        url = SourceUrl(url.url, url.scheme, url.target, {**url.params, "board": "open"})
    session = make_session(url)
    url.check_params(COMMON_PARAMS + ("scan_s",) + session.known_params)
    if not url.target:
        raise SourceError(f"{url.url}: no BLE address (ble://AA:BB:CC:DD:EE:FF?board=open)",
                          url=url.url)
    scan_s = url.get("scan_s", 10.0, float)
    stall_s = url.get("stall_s", 5.0, float)
    return LinkSource(url, lambda: BleTransport(url.target, client_class, find_device,
                                                scan_timeout_s=scan_s),
                      session, stall_timeout_s=stall_s,
                      batch_s=url.get("batch_s", batch_s, float))
