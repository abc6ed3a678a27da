"""Host side of each board protocol: start handshake, stop, stream description.

A session is small: it builds a decoder for each connection, runs the start
sequence over a :class:`~._link.Link`, turns control packets (replies, INFO,
status) into source events and says what the streams are.  Byte layouts live
in :mod:`crampwatch.firmware_bridge.protocols`; sessions only call their
command builders.
"""

from __future__ import annotations

import importlib
import logging

from crampwatch._text import sanitize_text
from crampwatch.errors import SourceError
from crampwatch.firmware_bridge.types import StreamInfo

logger = logging.getLogger(__name__)

#: URL ``board=`` value -> protocol module name
PROTOCOL_MODULES = {"cyton": "cyton", "bitalino": "bitalino", "open": "openframe"}


def protocol_module(board: str, url: str | None = None):
    """The protocol module for a URL's ``board=`` value."""
    try:
        name = PROTOCOL_MODULES[board]
    except KeyError:
        raise SourceError(f"{url or board}: unknown board {board!r} "
                          f"(known: {', '.join(PROTOCOL_MODULES)})", url=url) from None
    return importlib.import_module(f"crampwatch.firmware_bridge.protocols.{name}")


#: longest device string passed on (a firmware line, a board name)
DEVICE_TEXT_MAX = 120


def _reply_text(packet) -> str:
    return str(packet.meta.get("text", "")) if packet.meta else ""


def device_text(value, max_len: int = DEVICE_TEXT_MAX) -> str:
    """A string the board sent, made safe for logs, terminals, file names and reports:
    one printable line, escapes removed, at most ``max_len`` characters."""
    return sanitize_text(value, max_len)


def clean_detail(detail: dict) -> dict:
    """Event details from a board: every string (and list of strings) sanitised."""
    out = {}
    for k, v in detail.items():
        if isinstance(v, (str, bytes, bytearray)):
            v = device_text(v)
        elif isinstance(v, (list, tuple)):
            v = [device_text(x) if isinstance(x, (str, bytes, bytearray)) else x
                 for x in v[:32]]
        out[device_text(k, 40)] = v
    return out


class BoardSession:
    """Base class: see the module docstring."""

    name = "board"
    known_params: tuple[str, ...] = ()

    def __init__(self, proto, url):
        self.proto = proto
        self.url = url
        self.board = proto.BOARD

    def new_decoder(self):
        """The decoder for one connection."""
        return self.proto.Decoder()

    def stream_info(self) -> dict[str, StreamInfo]:
        b = self.board
        out = {"emg": StreamInfo("emg", float(b.emg_fs_hz), tuple(b.emg_channels), "uV")}
        if b.acc_channels:
            out["acc"] = StreamInfo("acc", float(b.acc_fs_hz), tuple(b.acc_channels), "g")
        return out

    def frame_bytes(self, stream: str, decoder) -> int | None:
        """Bytes per frame of ``stream`` when each of its samples comes in one
        fixed-length frame (a packet of ``n`` samples spans ``n`` frames; lets
        the source count unreadable frame slots), else None."""
        return None

    def start(self, link) -> dict:
        """Run the start sequence; return details for the ``connected`` event."""
        raise NotImplementedError

    def stop(self, link) -> None:
        link.transport.write(self.proto.stop_command())

    def on_control(self, packet) -> list[tuple[str, dict]]:
        """A non-sample packet -> ``[(event kind, detail), ...]``."""
        if packet.stream == "reply":
            return [("info", {"reply": device_text(_reply_text(packet), 400)})]
        return [("status", clean_detail({"packet": packet.stream, **(packet.meta or {})}))]


class CytonSession(BoardSession):
    """OpenBCI Cyton: ``s`` (in case it still streams), ``v`` and wait for ``$$$``, then ``b``."""

    name = "cyton"
    reset_timeout_s = 4.0

    def frame_bytes(self, stream, decoder):
        return self.proto.PACKET_LEN if stream == "emg" else None

    def start(self, link) -> dict:
        p = self.proto
        link.write(p.stop_command())
        link.drain(quiet_s=0.05, max_s=0.5)
        link.write(p.reset_command())
        reply = link.wait_for(lambda pk: pk.stream == "reply", self.reset_timeout_s,
                              what="'$$$' after soft reset 'v'")
        link.keep_samples()
        link.write(p.start_command())
        lines = _reply_text(reply).strip().splitlines()
        return {"firmware": device_text(lines[-1] if lines else "")}

    def on_control(self, packet):
        if packet.stream == "reply":
            return []          # handshake text, already in the connected event
        return super().on_control(packet)


class BitalinoSession(BoardSession):
    """BITalino: go idle, ask the version, set the rate, start with a channel mask.

    URL parameters: ``rate`` (1, 10, 100, 1000 Hz; default 1000),
    ``channels`` (acquired analog inputs, 1-based, default ``1,2,3,4``),
    ``emg`` (default ``1``), ``acc`` (default ``2,3,4``; empty for none).
    """

    name = "bitalino"
    known_params = ("rate", "channels", "emg", "acc")
    version_timeout_s = 3.0

    def __init__(self, proto, url):
        super().__init__(proto, url)

        def chans(key, default):
            raw = url.params.get(key)
            if raw is None:
                return default
            try:
                return tuple(int(c) - 1 for c in raw.split(",") if c.strip())
            except ValueError:
                raise SourceError(f"{url.url}: {key}= takes 1-based analog inputs like 1,2,3",
                                  url=url.url) from None

        self.rate_hz = url.get("rate", int(self.board.emg_fs_hz), int)
        if self.rate_hz not in proto.RATES_HZ:
            raise SourceError(f"{url.url}: BITalino rate must be one of {proto.RATES_HZ}",
                              url=url.url)
        self.analog = chans("channels", proto.DEFAULT_ANALOG)
        self.emg = chans("emg", proto.DEFAULT_EMG)
        self.acc = chans("acc", proto.DEFAULT_ACC)
        try:
            self.new_decoder()
        except ValueError as exc:
            raise SourceError(f"{url.url}: {exc}", url=url.url) from exc

    def new_decoder(self):
        return self.proto.Decoder(analog_channels=self.analog, emg=self.emg, acc=self.acc)

    def frame_bytes(self, stream, decoder):
        return decoder.frame_len

    def stream_info(self):
        out = {"emg": StreamInfo("emg", float(self.rate_hz),
                                 tuple(f"A{c + 1}" for c in self.emg), "uV")}
        if self.acc:
            out["acc"] = StreamInfo("acc", float(self.rate_hz),
                                    tuple(f"A{c + 1}" for c in self.acc), "g")
        return out

    def start(self, link) -> dict:
        p = self.proto
        link.write(b"\xff")                       # idle, from whatever mode
        link.drain(quiet_s=0.05, max_s=0.5)
        link.write(p.version_command())
        # read the reply raw: the decoder surfaces text only once it has
        # enough bytes to try locking onto frames, more than a short reply
        reply = link.wait_raw(b"\n", b"BITalino", self.version_timeout_s, what="version reply")
        link.keep_samples()
        link.write(p.start_command(self.analog, fs_hz=self.rate_hz))
        return {"firmware": device_text(reply.strip())}

    def on_control(self, packet):
        if packet.stream == "reply":
            return []
        return super().on_control(packet)


class OpenSession(BoardSession):
    """The open frame (serial, TCP or BLE): STOP, GET_INFO and wait for INFO, START.

    The board describes itself: rates, channels and scaling come from its
    INFO frame, so :attr:`Source.info` is complete only after connecting.
    STATUS frames become ``status`` events (battery, lead-off, the board's
    own drop counters).
    """

    name = "open"
    info_timeout_s = 3.0

    def __init__(self, proto, url):
        super().__init__(proto, url)
        self.host = proto.HostEncoder()
        self.device_info = None

    def new_decoder(self):
        """``merge=True``: one packet per run of frames of a stream in each read.
        (The open frame's 32-bit sample index lets the counter screen judge a
        run as it judges a frame; the 4- and 8-bit counters of BITalino and
        Cyton cannot tell a run of more than a period from a jump, so those
        boards keep one packet per frame.)"""
        return self.proto.Decoder(merge=True)

    def stream_info(self):
        inf = self.device_info
        if inf is None:
            return super().stream_info()
        emg = tuple(f"emg{k + 1}" for k in range(8) if inf.emg_channel_mask >> k & 1)
        acc_names = ("acc_x", "acc_y", "acc_z") + tuple(f"imu{k + 1}" for k in range(3, 8))
        acc = tuple(acc_names[k] for k in range(8) if inf.imu_channel_mask >> k & 1)
        out = {"emg": StreamInfo("emg", float(inf.emg_fs_hz), emg, "uV")}
        if acc:
            out["acc"] = StreamInfo("acc", float(inf.imu_fs_hz), acc, "g")
        return out

    def start(self, link) -> dict:
        link.write(self.host.stop())
        link.drain(quiet_s=0.05, max_s=0.5)
        link.write(self.host.info_request())
        link.wait_for(lambda pk: pk.stream == "info", self.info_timeout_s, what="INFO frame")
        self.device_info = link.decoder.info
        link.keep_samples()
        link.write(self.host.start())
        inf = self.device_info
        return {"firmware": "%d.%d.%d" % inf.firmware, "name": device_text(inf.name, 64)}

    def stop(self, link) -> None:
        link.transport.write(self.host.stop())

    def on_control(self, packet):
        if packet.stream == "info":
            return []
        meta = clean_detail({k: v for k, v in (packet.meta or {}).items()
                             if k not in ("payload",)})
        if packet.stream == "status":
            return [("status", meta)]
        return [("info", {"packet": packet.stream, **meta})]


SESSIONS = {"cyton": CytonSession, "bitalino": BitalinoSession, "open": OpenSession}


def make_session(url) -> BoardSession:
    """The session for ``url.params['board']``; SourceError if missing or unknown."""
    board = url.params.get("board")
    if board is None:
        raise SourceError(f"{url.url}: say which board speaks on this link: add ?board="
                          + "|".join(PROTOCOL_MODULES), url=url.url)
    proto = protocol_module(board, url.url)
    return SESSIONS[board](proto, url)
