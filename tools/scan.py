"""``crampwatch scan``: list serial ports and nearby BLE boards (Nordic UART Service).

Each line starts with the source URL to give ``crampwatch capture``.  A
machine without Bluetooth gets one line saying so; the serial ports are
listed anyway and the exit status is 0.
"""

from __future__ import annotations

import asyncio
import logging

from crampwatch._text import sanitize_text

HELP = "list serial ports and nearby BLE boards that advertise the Nordic UART Service"

logger = logging.getLogger(__name__)

#: USB vendor/product ids of known board dongles -> board= value
KNOWN_USB = {
    (0x0403, 0x6015): "cyton",      # OpenBCI dongle (FTDI FT231X)
}


def add_arguments(parser) -> None:
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="seconds to listen for BLE advertisements (default 5)")
    parser.add_argument("--no-ble", action="store_true", help="list serial ports only")


def serial_lines() -> list[str]:
    """One line per serial port: URL, description, hardware id."""
    from serial.tools import list_ports

    lines = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        board = KNOWN_USB.get((p.vid, p.pid), "...")
        # the description comes from the USB device's own strings: untrusted
        desc = (sanitize_text(p.description, 80)
                if p.description and p.description != "n/a" else "")
        hwid = f"[{sanitize_text(p.hwid, 120)}]" if p.hwid and p.hwid != "n/a" else ""
        lines.append(f"  serial://{sanitize_text(p.device, 200)}?board={board}  {desc}  "
                     f"{hwid}".rstrip())
    return lines


async def _discover(timeout_s: float):
    from bleak import BleakScanner

    from crampwatch.firmware_bridge.sources.ble_source import NUS_SERVICE_UUID

    found = await BleakScanner.discover(timeout=timeout_s, return_adv=True,
                                        service_uuids=[NUS_SERVICE_UUID])
    out = []
    for device, adv in found.values():
        uuids = {u.lower() for u in (adv.service_uuids or [])}
        if NUS_SERVICE_UUID in uuids:
            # a board names itself: a hostile one can send escapes, newlines, megabytes
            out.append((sanitize_text(device.address, 64),
                        sanitize_text(adv.local_name or device.name or "", 64), adv.rssi))
    return sorted(out, key=lambda d: -(d[2] if d[2] is not None else -999))


def ble_lines(timeout_s: float) -> list[str]:
    """One line per NUS board in range, or one line saying why there are none."""
    from crampwatch.firmware_bridge.sources.ble_source import bluetooth_unavailable

    try:
        boards = asyncio.run(_discover(timeout_s))
    except Exception as exc:        # bleak's errors differ per OS; sort out the hopeless ones
        if bluetooth_unavailable(exc):
            if isinstance(exc, FileNotFoundError):
                why = "cannot reach BlueZ on the D-Bus system bus"
            else:
                why = sanitize_text(str(exc), 300) or type(exc).__name__
            return [f"  no Bluetooth adapter: {why} ({type(exc).__name__})"]
        logger.debug("BLE scan failed", exc_info=True)
        return [f"  Bluetooth scan failed: {sanitize_text(repr(exc), 300)}"]
    if not boards:
        return [f"  (no board advertising the Nordic UART Service within {timeout_s:g} s)"]
    return [f"  ble://{addr}?board=open  {name}  {rssi} dBm" for addr, name, rssi in boards]


def run(args) -> int:
    print("serial ports:")
    print("\n".join(serial_lines() or ["  (none found)"]), flush=True)
    if not args.no_ble:
        print("BLE boards (Nordic UART Service):")
        print("\n".join(ble_lines(args.timeout)), flush=True)
    return 0
