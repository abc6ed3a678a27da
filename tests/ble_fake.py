"""A fake bleak client that replays recorded Nordic UART notifications.

It stands in for ``bleak.BleakClient`` at the one seam the BLE source offers
(``client_class``), with the methods bleak gives: ``connect``, ``disconnect``,
``start_notify(char, callback)``, ``write_gatt_char(char, data, response)``,
``is_connected`` and the ``disconnected_callback`` taken at construction.
It answers the host's open-frame commands from the recording
(``tests/data/ble_open_notifications.json``): GET_INFO -> the recorded INFO
notification, START -> the recorded notifications of the session, paced by
their recorded times / ``speed``; a session marked ``"disconnect"`` ends with
the link dropping (bleak calls ``disconnected_callback``).  The reconnect
after it fails once, as radios do, before it succeeds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os

from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from crampwatch.firmware_bridge.protocols import openframe

RECORDING = os.path.join(os.path.dirname(__file__), "data", "ble_open_notifications.json")
ADDRESS = "C0:FF:EE:00:00:01"


def load_recording(path: str = RECORDING) -> dict:
    with open(path) as fh:
        doc = json.load(fh)
    for s in doc["sessions"]:
        s["info_reply"] = base64.b64decode(s["info_reply"])
        s["notifications"] = [(t, base64.b64decode(b)) for t, b in s["notifications"]]
    return doc


async def find_device(address: str, timeout_s: float):
    """Stands in for ``BleakScanner.find_device_by_address``."""
    return BLEDevice(address, "crampwatch-ble", details={})


def make_client_class(recording: dict, speed: float = 4.0, fail_reconnect_once: bool = True):
    """A client class bound to one recording (state shared by its instances)."""

    class FakeNusClient:
        script = {"session": 0, "connects": 0, "failed": 0, "writes": []}

        def __init__(self, device, disconnected_callback=None, services=None, **kwargs):
            self.device = device
            self._disconnected_callback = disconnected_callback
            self._connected = False
            self._notify = None
            self._task = None
            self._parser = openframe.CommandParser()

        @property
        def address(self):
            return self.device.address

        @property
        def is_connected(self) -> bool:
            return self._connected

        async def connect(self, **kwargs) -> bool:
            st = self.script
            st["connects"] += 1
            if st["session"] > 0 and fail_reconnect_once and not st["failed"]:
                st["failed"] += 1
                raise BleakError("simulated: le-connection-abort-by-local")
            if st["session"] >= len(recording["sessions"]):
                raise BleakError("simulated: the board is gone")
            self._connected = True
            return True

        async def disconnect(self) -> bool:
            if self._task is not None:
                self._task.cancel()
            was, self._connected = self._connected, False
            if was and self._disconnected_callback is not None:
                self._disconnected_callback(self)
            return True

        async def start_notify(self, char, callback, **kwargs) -> None:
            assert str(char).lower() == openframe.NUS_TX_UUID
            self._notify = callback

        async def write_gatt_char(self, char, data, response=None) -> None:
            assert str(char).lower() == openframe.NUS_RX_UUID
            if not self._connected:
                raise BleakError("simulated: not connected")
            self.script["writes"].append(bytes(data))
            session = recording["sessions"][self.script["session"]]
            for cmd in self._parser.feed(bytes(data)):
                if cmd.name == "info":
                    self._send(session["info_reply"])
                elif cmd.name == "start" and self._task is None:
                    self._task = asyncio.get_running_loop().create_task(self._stream(session))

        def _send(self, payload: bytes) -> None:
            self._notify(openframe.NUS_TX_UUID, bytearray(payload))

        async def _stream(self, session) -> None:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for t_s, payload in session["notifications"]:
                delay = t0 + t_s / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)          # pacing of the replay, not a sync
                if not self._connected:
                    return
                self._send(payload)
            if session["then"] == "disconnect":
                self.script["session"] += 1
                self._connected = False
                self._task = None
                if self._disconnected_callback is not None:
                    self._disconnected_callback(self)

    return FakeNusClient
