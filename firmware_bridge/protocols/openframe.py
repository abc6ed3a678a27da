"""crampwatch open frame v1: our own protocol for DIY boards (pure codec).

The full specification is ``firmware_bridge/PROTOCOL.md``; the reference C
encoder is ``firmware_bridge/firmware/cw_frame.c``.  In short: every frame is
``COBS(header + payload + CRC16) + 0x00``; the 18-byte little-endian header is

====== ==== ================================================================
offset size field
====== ==== ================================================================
0      u8   version (1)
1      u8   frame type (0x01 EMG, 0x02 IMU, 0x03 STATUS, 0x04 INFO,
            0x05 TIME_SYNC response; host -> device: 0x81 START, 0x82 STOP,
            0x83 TIME_SYNC request, 0x84 GET_INFO)
2      u16  sequence number of the frame on this link and direction (mod 2**16)
4      u64  device clock, microseconds (0 in host frames)
12     u32  index of the first sample in its stream (mod 2**32)
16     u8   number of samples
17     u8   channel mask (bit k = channel k present)
====== ==== ================================================================

EMG/IMU payloads are int16 little-endian counts, sample-major
(``s0c0 s0c1 ... s1c0 ...``); the CRC is CRC-16/CCITT-FALSE (poly 0x1021, init
0xFFFF, no reflection, no final XOR) over header + payload, stored
little-endian; ``binascii.crc_hqx(data, 0xFFFF)`` computes it.

Scaling is self-describing: INFO frames carry microvolts per EMG count and
accelerometer counts per g.  The decoder keeps the last INFO; before any
arrives it uses :data:`DEFAULT_INFO` and marks ``meta["scaled_by_default"]``.

Examples
--------
>>> import numpy as np
>>> enc = Encoder()
>>> stream = enc.encode_info(0) + enc.encode_emg(0, 1000, np.zeros((20, 2)))
>>> dec = Decoder()
>>> [(p.stream, p.counter) for p in dec.feed(stream)]
[('info', 0), ('emg', 0)]
"""

from __future__ import annotations

import binascii
import logging
import math
import struct
from dataclasses import asdict, dataclass, replace

import numpy as np
from cobs import cobs
from crampwatch.firmware_bridge.protocols.base import BoardSpec, Command, DecoderStats, Packet

from crampwatch.errors import FrameError

__all__ = [
    "BOARD", "VERSION", "Info", "DEFAULT_INFO", "FrameType", "HEADER", "MAX_FRAME_LEN",
    "MAX_ENCODED_LEN", "INDEX_MODULO", "SEQ_MODULO", "STREAM_EMG", "STREAM_IMU", "STREAMS_ALL",
    "crc16", "encode_frame", "decode_frame", "Decoder", "Encoder", "HostEncoder",
    "CommandParser", "start_command", "stop_command", "time_sync_request", "info_request",
    "NUS_SERVICE_UUID", "NUS_RX_UUID", "NUS_TX_UUID",
]

logger = logging.getLogger(__name__)

VERSION = 1
#: Nordic UART Service: the host writes to RX, the device notifies on TX.
NUS_SERVICE_UUID = "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
NUS_RX_UUID = "6e400002-b5a3-f393-e0a9-e50e24dcca9e"   # host -> device (write)
NUS_TX_UUID = "6e400003-b5a3-f393-e0a9-e50e24dcca9e"   # device -> host (notify)

BOARD = BoardSpec(
    name="open",
    emg_fs_hz=2000.0,
    acc_fs_hz=200.0,
    emg_channels=("emg1", "emg2"),
    acc_channels=("acc_x", "acc_y", "acc_z"),
    baudrate=921600,
)


class FrameType:
    """Frame type codes (byte 1 of the header); bit 7 set = host -> device."""

    EMG = 0x01
    IMU = 0x02
    STATUS = 0x03
    INFO = 0x04
    TIME_SYNC = 0x05
    START = 0x81
    STOP = 0x82
    TIME_SYNC_REQUEST = 0x83
    GET_INFO = 0x84


HEADER = struct.Struct("<BBHQIBB")
HEADER_LEN = HEADER.size          # 18
CRC_LEN = 2
MIN_FRAME_LEN = HEADER_LEN + CRC_LEN
#: Largest frame before COBS (header + payload + CRC).
MAX_FRAME_LEN = 1024
#: Largest COBS-encoded frame, without its 0x00 delimiter.
MAX_ENCODED_LEN = MAX_FRAME_LEN + (MAX_FRAME_LEN + 253) // 254
INDEX_MODULO = 2**32
SEQ_MODULO = 2**16
STREAM_EMG = 0x01
STREAM_IMU = 0x02
STREAMS_ALL = 0x00   # START payload 0 (or empty) = every stream

_CRC = struct.Struct("<H")
_INFO = struct.Struct("<ffffBBBBBBHf")
_STATUS = struct.Struct("<HBBIIII")
_TIME_SYNC = struct.Struct("<IQ")
_U32 = struct.Struct("<I")
_U8 = struct.Struct("<B")
_MAX_NAME = 32
_POPCOUNT = [bin(m).count("1") for m in range(256)]
_STATUS_FLAGS = ("charging", "streaming", "lead_off", "low_battery")


@dataclass(frozen=True)
class Info:
    """What an INFO frame says about the board (the scaling is in here).

    Attributes
    ----------
    emg_fs_hz, imu_fs_hz : float
        Sample rates.
    emg_uv_per_count : float
        Microvolts per EMG count (referred to the electrodes, front-end gain
        included).
    acc_counts_per_g : float
        Accelerometer counts per g.
    adc_bits : int
        EMG ADC resolution (informative).
    emg_channel_mask, imu_channel_mask : int
        Channels the board has (bit k = channel k).
    firmware : tuple of 3 int
        Firmware version (major, minor, patch).
    emg_frame_samples : int
        Samples per EMG frame the board sends (informative).
    frontend_gain : float
        Analog gain of the EMG front end, V/V (informative).
    name : str
        Board name, UTF-8, at most 32 bytes.
    """

    emg_fs_hz: float = 2000.0
    imu_fs_hz: float = 200.0
    emg_uv_per_count: float = 1.0
    acc_counts_per_g: float = 4096.0
    adc_bits: int = 12
    emg_channel_mask: int = 0x03
    imu_channel_mask: int = 0x07
    firmware: tuple[int, int, int] = (0, 0, 0)
    emg_frame_samples: int = 20
    frontend_gain: float = 1000.0
    name: str = ""

    def rounded(self) -> Info:
        """The same info with floats rounded to float32, as they travel on the wire."""
        def f32(v: float) -> float:
            return float(np.float32(v))

        return replace(self, emg_fs_hz=f32(self.emg_fs_hz), imu_fs_hz=f32(self.imu_fs_hz),
                       emg_uv_per_count=f32(self.emg_uv_per_count),
                       acc_counts_per_g=f32(self.acc_counts_per_g),
                       frontend_gain=f32(self.frontend_gain))

    def to_payload(self) -> bytes:
        name = self.name.encode("utf-8")[:_MAX_NAME]
        return _INFO.pack(self.emg_fs_hz, self.imu_fs_hz, self.emg_uv_per_count,
                          self.acc_counts_per_g, self.adc_bits, self.emg_channel_mask,
                          self.imu_channel_mask, *self.firmware, self.emg_frame_samples,
                          self.frontend_gain) + name

    @classmethod
    def from_payload(cls, payload: bytes) -> Info:
        v = _INFO.unpack_from(payload)
        name = payload[_INFO.size:_INFO.size + _MAX_NAME].decode("utf-8", "replace")
        return cls(emg_fs_hz=v[0], imu_fs_hz=v[1], emg_uv_per_count=v[2], acc_counts_per_g=v[3],
                   adc_bits=v[4], emg_channel_mask=v[5], imu_channel_mask=v[6],
                   firmware=(v[7], v[8], v[9]), emg_frame_samples=v[10], frontend_gain=v[11],
                   name=name)


#: Scaling used before the first INFO frame (packets then carry
#: ``meta["scaled_by_default"] = True``).
DEFAULT_INFO = Info()


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): ``binascii.crc_hqx(data, 0xFFFF)``.

    Examples
    --------
    >>> hex(crc16(b"123456789"))
    '0x29b1'
    """
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(frame_type: int, seq: int, device_time_us: int = 0, first_index: int = 0,
                 n_samples: int = 0, channel_mask: int = 0, payload: bytes = b"") -> bytes:
    """One complete frame on the wire: COBS(header + payload + CRC) + 0x00.

    Integer fields are taken modulo their width (seq 2**16, time 2**64,
    first_index 2**32).

    Raises
    ------
    ValueError
        If the frame would exceed :data:`MAX_FRAME_LEN`.

    Examples
    --------
    >>> encode_frame(FrameType.STOP, seq=1).hex()
    '0401820101010101010101010101010101010372cc00'
    """
    body = HEADER.pack(VERSION, frame_type, seq % SEQ_MODULO, device_time_us % 2**64,
                       first_index % INDEX_MODULO, n_samples, channel_mask) + payload
    if len(body) + CRC_LEN > MAX_FRAME_LEN:
        raise ValueError(f"frame of {len(body) + CRC_LEN} bytes exceeds the "
                         f"{MAX_FRAME_LEN}-byte limit of open frame v{VERSION}")
    body += _CRC.pack(binascii.crc_hqx(body, 0xFFFF))
    return cobs.encode(body) + b"\x00"


def _check_body(body: bytes) -> str | None:
    """Why ``body`` (COBS-decoded frame) is not a valid v1 frame, or None."""
    if len(body) < MIN_FRAME_LEN:
        return f"frame too short ({len(body)} bytes)"
    crc = _CRC.unpack_from(body, len(body) - CRC_LEN)[0]
    if binascii.crc_hqx(memoryview(body)[:-CRC_LEN], 0xFFFF) != crc:
        return "CRC mismatch"
    if body[0] != VERSION:
        return f"unsupported version {body[0]}"
    ftype, n, mask = body[1], body[16], body[17]
    if ftype in (FrameType.EMG, FrameType.IMU):
        want = n * _POPCOUNT[mask] * 2
        if len(body) - MIN_FRAME_LEN != want:
            return f"payload of {len(body) - MIN_FRAME_LEN} bytes, expected {want}"
    need = {FrameType.INFO: _INFO.size, FrameType.STATUS: _STATUS.size,
            FrameType.TIME_SYNC: _TIME_SYNC.size, FrameType.TIME_SYNC_REQUEST: _U32.size}
    if len(body) - MIN_FRAME_LEN < need.get(ftype, 0):
        return f"payload of frame type 0x{ftype:02X} too short"
    if ftype == FrameType.INFO:
        rates_and_scales = _INFO.unpack_from(body, HEADER_LEN)[:4]
        if not all(math.isfinite(v) and v > 0 for v in rates_and_scales):
            return f"INFO with unusable rates/scaling {rates_and_scales}"
    return None


def decode_frame(wire: bytes) -> dict:
    """Strictly decode one frame (with or without its 0x00 delimiter).

    Returns
    -------
    dict
        ``version, type, seq, device_time_us, first_index, n_samples,
        channel_mask, payload`` (bytes).

    Raises
    ------
    FrameError
        On a COBS, CRC, length or version error.

    Examples
    --------
    >>> decode_frame(stop_command(seq=1))["type"] == FrameType.STOP
    True
    """
    wire = bytes(wire).rstrip(b"\x00")
    try:
        body = cobs.decode(wire)
    except cobs.DecodeError as exc:
        raise FrameError(f"open frame: bad COBS encoding ({exc})", offset=0) from exc
    why = _check_body(body)
    if why:
        raise FrameError(f"open frame: {why}", offset=0)
    v = HEADER.unpack_from(body)
    return {"version": v[0], "type": v[1], "seq": v[2], "device_time_us": v[3],
            "first_index": v[4], "n_samples": v[5], "channel_mask": v[6],
            "payload": body[HEADER_LEN:-CRC_LEN]}


class _Framer:
    """0x00-delimited COBS framing with a bounded buffer.

    ``feed`` returns ``(offset, body)`` for every frame whose COBS decoding,
    length, CRC and version check out, and counts the others in ``stats``
    (``frames_bad`` once per bad segment, ``bytes_skipped`` for its bytes and
    delimiter).  Empty segments (repeated 0x00, used as padding) are ignored.
    A segment longer than :data:`MAX_ENCODED_LEN` is discarded as it arrives.
    The bytes before the first 0x00 are usually the tail of a frame sent
    before we joined the stream: if they are not a valid frame they are
    skipped without counting a bad frame.
    """

    def __init__(self, stats: DecoderStats):
        self.stats = stats
        self._buf = bytearray()
        self._base = 0
        self._discarding = False
        self._joined = False   # a 0x00 was seen: segments are whole frames

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        stats = self.stats
        stats.bytes_in += len(data)
        self._buf += data
        parts = self._buf.split(b"\x00")
        rest = parts.pop()
        pos = self._base
        out = []
        for part in parts:
            off = pos
            pos += len(part) + 1
            joined, self._joined = self._joined, True
            if self._discarding:
                self._discarding = False
                stats.bytes_skipped += len(part) + 1
                continue
            if not part:
                continue
            why = "too long" if len(part) > MAX_ENCODED_LEN else None
            if why is None:
                try:
                    body = cobs.decode(part)
                    why = _check_body(body)
                except cobs.DecodeError:
                    why = "bad COBS"
            if why:
                stats.frames_bad += joined
                stats.bytes_skipped += len(part) + 1
                logger.debug("open frame at byte %d rejected: %s", off, why)
                continue
            out.append((off, body))
        if len(rest) > MAX_ENCODED_LEN or (self._discarding and rest):
            if not self._discarding:
                stats.frames_bad += self._joined
                self._discarding = True
            stats.bytes_skipped += len(rest)
            pos += len(rest)
            rest = bytearray()
        self._buf = rest
        self._base = pos
        return out


class Decoder:
    """Host side: device bytes in, :class:`Packet` objects out.

    Packets: ``"emg"`` (uV) and ``"acc"`` (g) with ``counter`` = index of
    the first sample (mod 2**32), ``samples`` (n, channels in mask order),
    ``device_time_us`` = device clock at the first sample, ``meta`` =
    ``{"seq", "channel_mask", "scaled_by_default"}``; ``"info"`` (``meta``:
    the :class:`Info` fields, firmware as ``"1.2.3"``); ``"status"``
    (``meta``: battery_mv, battery_pct (None if unknown), flags and their
    names, emg_dropped, imu_dropped, tx_dropped, uptime_s); ``"time_sync"``
    (``meta``: token, device_rx_us; ``device_time_us`` = clock when the
    reply was sent); ``"unknown"`` for frame types this version does not know
    (``meta``: type, payload).  Non-sample packets use ``counter`` = the
    link sequence number (mod 2**16); every packet has ``meta["seq"]``.

    Parameters
    ----------
    default_info : Info
        Scaling used until the first INFO frame arrives.
    merge : bool
        False (default): one packet per frame, the same packets for any split
        of the input.  True: one ``"emg"``/``"acc"`` packet per run of frames
        of that stream decoded by one ``feed`` call whose sample indices
        follow on (same channel mask, same scaling; a control frame ends the
        runs): the payloads of a run become one array in one step.  The
        samples and their indices are the same for any split, the packet
        boundaries are not; ``meta`` gets ``"frames"`` (frames in the
        packet) and ``"frame_samples"`` (samples in each), and ``"seq"`` is
        the first frame's.

    Attributes
    ----------
    info : Info or None
        The last INFO received.
    stats : DecoderStats

    Examples
    --------
    >>> import numpy as np
    >>> wire = Encoder().encode_imu(40, 5000, np.array([[0.0, 0.0, 1.0]]))
    >>> p = Decoder().feed(wire)[0]
    >>> p.stream, p.counter, p.samples.tolist(), p.meta["scaled_by_default"]
    ('acc', 40, [[0.0, 0.0, 1.0]], True)
    """

    def __init__(self, default_info: Info = DEFAULT_INFO, merge: bool = False):
        self.default_info = default_info
        self.merge = merge
        self.info: Info | None = None
        self.stats = DecoderStats()
        self._framer = _Framer(self.stats)
        self._set_scaling(default_info)

    def _set_scaling(self, info: Info) -> None:
        self._emg_scale = float(info.emg_uv_per_count)
        self._acc_scale = 1.0 / float(info.acc_counts_per_g) if info.acc_counts_per_g else 0.0

    def feed(self, data: bytes) -> list[Packet]:
        """Decode the next bytes of the stream; return the packets completed."""
        frames = self._framer.feed(data)
        if self.merge:
            return self._merged(frames)
        out = []
        for off, body in frames:
            p = self._packet(off, body)
            self.stats.frames_ok += 1
            out.append(p)
        return out

    def _merged(self, frames: list) -> list[Packet]:
        """Sample frames grouped into runs per stream, each run decoded in one step."""
        out: list[Packet] = []
        self.stats.frames_ok += len(frames)
        runs: dict[int, list] = {}     # frame type -> [bodies, next index, mask, offset]
        pending: list = []             # open runs, in stream order

        for off, body in frames:
            ftype = body[1]
            if ftype == FrameType.EMG or ftype == FrameType.IMU:
                first = _U32.unpack_from(body, 12)[0]
                n, mask = body[16], body[17]
                run = runs.get(ftype)
                if run is not None and run[1] == first and run[2] == mask:
                    run[0].append(body)
                    run[1] = (first + n) % INDEX_MODULO
                    run[4].append(n)
                    continue
                run = [[body], (first + n) % INDEX_MODULO, mask, off, [n]]
                runs[ftype] = run
                pending.append(run)
            else:
                # runs end at a control frame (an INFO changes the scaling after it)
                out.extend(self._run_packet(r[0], r[2], r[3], r[4]) for r in pending)
                pending.clear()
                runs.clear()
                out.append(self._packet(off, body))
        out.extend(self._run_packet(r[0], r[2], r[3], r[4]) for r in pending)
        return out

    def _run_packet(self, bodies: list, mask: int, off: int, n: list) -> Packet:
        head = bodies[0]
        nch = _POPCOUNT[mask]
        if len(bodies) == 1:
            raw = memoryview(head)[HEADER_LEN:-CRC_LEN]
        else:
            raw = b"".join([memoryview(b)[HEADER_LEN:-CRC_LEN] for b in bodies])
        counts = np.frombuffer(raw, "<i2").reshape(-1, nch)
        _, ftype, seq, t_us, first, _, _ = HEADER.unpack_from(head)
        if ftype == FrameType.EMG:
            stream, scale = "emg", self._emg_scale
        else:
            stream, scale = "acc", self._acc_scale
        return Packet(stream, first, INDEX_MODULO, samples=counts * scale, device_time_us=t_us,
                      offset=off, meta={"seq": seq, "channel_mask": mask,
                                        "scaled_by_default": self.info is None,
                                        "frames": len(bodies), "frame_samples": n})

    def _packet(self, off: int, body: bytes) -> Packet:
        _, ftype, seq, t_us, first, n, mask = HEADER.unpack_from(body)
        if ftype == FrameType.EMG or ftype == FrameType.IMU:
            nch = _POPCOUNT[mask]
            counts = np.frombuffer(body, "<i2", count=n * nch, offset=HEADER_LEN).reshape(n, nch)
            scale = self._emg_scale if ftype == FrameType.EMG else self._acc_scale
            return Packet("emg" if ftype == FrameType.EMG else "acc", first, INDEX_MODULO,
                          samples=counts * scale, device_time_us=t_us, offset=off,
                          meta={"seq": seq, "channel_mask": mask,
                                "scaled_by_default": self.info is None})
        payload = body[HEADER_LEN:-CRC_LEN]
        meta: dict = {"seq": seq}
        if ftype == FrameType.INFO:
            info = Info.from_payload(payload)
            self.info = info
            self._set_scaling(info)
            meta.update(asdict(info))
            meta["firmware"] = ".".join(map(str, info.firmware))
            stream = "info"
        elif ftype == FrameType.STATUS:
            mv, pct, flags, emg_d, imu_d, tx_d, up = _STATUS.unpack_from(payload)
            meta.update(battery_mv=mv, battery_pct=None if pct == 255 else pct, flags=flags,
                        flag_names=[f for b, f in enumerate(_STATUS_FLAGS) if flags >> b & 1],
                        emg_dropped=emg_d, imu_dropped=imu_d, tx_dropped=tx_d, uptime_s=up)
            stream = "status"
        elif ftype == FrameType.TIME_SYNC:
            token, rx_us = _TIME_SYNC.unpack_from(payload)
            meta.update(token=token, device_rx_us=rx_us)
            stream = "time_sync"
        else:
            meta.update(type=ftype, payload=bytes(payload))
            stream = "unknown"
        return Packet(stream, seq, SEQ_MODULO, device_time_us=t_us, offset=off, meta=meta)


class Encoder:
    """Device side: physical samples in, exact frames out (mirrors ``cw_frame.c``).

    Parameters
    ----------
    info : Info
        The board's configuration, sent in INFO frames and used to scale.
        Floats are rounded to float32 (as on the wire) so that the host
        decodes with exactly the scale used here.

    Attributes
    ----------
    seq : int
        Sequence number of the next frame (starts at 0, wraps at 2**16).

    Examples
    --------
    >>> import numpy as np
    >>> enc = Encoder(Info(emg_uv_per_count=0.5))
    >>> wire = enc.encode_emg(100, 0, np.array([[1.0, -1.0]]))
    >>> decode_frame(wire)["payload"].hex()
    '0200feff'
    """

    def __init__(self, info: Info = DEFAULT_INFO):
        self.info = info.rounded()
        self.seq = 0

    def _frame(self, ftype: int, device_time_us: int, first_index: int = 0, n: int = 0,
               mask: int = 0, payload: bytes = b"") -> bytes:
        wire = encode_frame(ftype, self.seq, device_time_us, first_index, n, mask, payload)
        self.seq = (self.seq + 1) % SEQ_MODULO
        return wire

    def _samples(self, ftype: int, first_index: int, device_time_us: int, counts: np.ndarray,
                 mask: int) -> bytes:
        counts = np.asarray(counts)
        if counts.ndim != 2 or counts.shape[1] != _POPCOUNT[mask]:
            raise ValueError(f"samples must have shape (n, {_POPCOUNT[mask]}) for channel mask "
                             f"0x{mask:02X}, got {counts.shape}")
        if not 0 < counts.shape[0] <= 255:
            raise ValueError(f"a frame holds 1..255 samples, got {counts.shape[0]}")
        payload = np.clip(counts, -32768, 32767).astype("<i2").tobytes()
        return self._frame(ftype, device_time_us, first_index, counts.shape[0], mask, payload)

    def emg_counts(self, emg_uv: np.ndarray) -> np.ndarray:
        """Microvolts -> int16 counts (rounded to nearest, clipped)."""
        c = np.rint(np.asarray(emg_uv, dtype=np.float64) / self.info.emg_uv_per_count)
        return np.clip(np.nan_to_num(c), -32768, 32767).astype(np.int16)

    def acc_counts(self, acc_g: np.ndarray) -> np.ndarray:
        """g -> int16 counts (rounded to nearest, clipped)."""
        c = np.rint(np.asarray(acc_g, dtype=np.float64) * self.info.acc_counts_per_g)
        return np.clip(np.nan_to_num(c), -32768, 32767).astype(np.int16)

    def encode_emg(self, first_index: int, device_time_us: int, emg_uv: np.ndarray,
                   channel_mask: int | None = None) -> bytes:
        """An EMG frame from ``emg_uv`` (n, channels); mask defaults to the INFO mask."""
        mask = self.info.emg_channel_mask if channel_mask is None else channel_mask
        return self._samples(FrameType.EMG, first_index, device_time_us,
                             self.emg_counts(emg_uv), mask)

    def encode_emg_counts(self, first_index: int, device_time_us: int, counts: np.ndarray,
                          channel_mask: int | None = None) -> bytes:
        """An EMG frame from raw int16 counts (what the C encoder takes)."""
        mask = self.info.emg_channel_mask if channel_mask is None else channel_mask
        return self._samples(FrameType.EMG, first_index, device_time_us, counts, mask)

    def encode_imu(self, first_index: int, device_time_us: int, acc_g: np.ndarray,
                   channel_mask: int | None = None) -> bytes:
        """An IMU frame from ``acc_g`` (n, 3)."""
        mask = self.info.imu_channel_mask if channel_mask is None else channel_mask
        return self._samples(FrameType.IMU, first_index, device_time_us,
                             self.acc_counts(acc_g), mask)

    def encode_imu_counts(self, first_index: int, device_time_us: int, counts: np.ndarray,
                          channel_mask: int | None = None) -> bytes:
        """An IMU frame from raw int16 counts."""
        mask = self.info.imu_channel_mask if channel_mask is None else channel_mask
        return self._samples(FrameType.IMU, first_index, device_time_us, counts, mask)

    def encode_info(self, device_time_us: int) -> bytes:
        """An INFO frame describing this encoder's :class:`Info`."""
        return self._frame(FrameType.INFO, device_time_us, payload=self.info.to_payload())

    def encode_status(self, device_time_us: int, battery_mv: int = 0,
                      battery_pct: int | None = None, flags: int = 0, emg_dropped: int = 0,
                      imu_dropped: int = 0, tx_dropped: int = 0, uptime_s: int = 0) -> bytes:
        """A STATUS frame.  ``flags``: bit 0 charging, 1 streaming, 2 lead-off,
        3 low battery.  Drop counters are cumulative since boot (mod 2**32)."""
        payload = _STATUS.pack(battery_mv, 255 if battery_pct is None else battery_pct, flags,
                               emg_dropped % 2**32, imu_dropped % 2**32, tx_dropped % 2**32,
                               uptime_s % 2**32)
        return self._frame(FrameType.STATUS, device_time_us, payload=payload)

    def encode_time_sync(self, device_time_us: int, token: int, device_rx_us: int) -> bytes:
        """The reply to a TIME_SYNC request: echo ``token``; ``device_rx_us`` is
        the device clock when the request arrived, ``device_time_us`` now."""
        return self._frame(FrameType.TIME_SYNC, device_time_us,
                           payload=_TIME_SYNC.pack(token % 2**32, device_rx_us % 2**64))


class HostEncoder:
    """Host side: command frames with the host's own sequence numbers.

    Examples
    --------
    >>> h = HostEncoder()
    >>> [c.name for c in CommandParser().feed(h.start() + h.time_sync_request(9) + h.stop())]
    ['start', 'time_sync', 'stop']
    """

    def __init__(self):
        self.seq = 0

    def _frame(self, ftype: int, payload: bytes = b"") -> bytes:
        wire = encode_frame(ftype, self.seq, payload=payload)
        self.seq = (self.seq + 1) % SEQ_MODULO
        return wire

    def start(self, streams: int = STREAMS_ALL) -> bytes:
        """START: ``streams`` = STREAM_EMG | STREAM_IMU bits, 0 for all."""
        return self._frame(FrameType.START, _U8.pack(streams))

    def stop(self) -> bytes:
        """STOP."""
        return self._frame(FrameType.STOP)

    def time_sync_request(self, token: int) -> bytes:
        """TIME_SYNC request; the device echoes ``token`` (mod 2**32)."""
        return self._frame(FrameType.TIME_SYNC_REQUEST, _U32.pack(token % 2**32))

    def info_request(self) -> bytes:
        """GET_INFO: the device answers with an INFO frame."""
        return self._frame(FrameType.GET_INFO)


def start_command(streams: int = STREAMS_ALL, seq: int = 0) -> bytes:
    """A START frame (see :class:`HostEncoder` for numbered commands)."""
    return encode_frame(FrameType.START, seq, payload=_U8.pack(streams))


def stop_command(seq: int = 0) -> bytes:
    """A STOP frame."""
    return encode_frame(FrameType.STOP, seq)


def time_sync_request(token: int, seq: int = 0) -> bytes:
    """A TIME_SYNC request frame."""
    return encode_frame(FrameType.TIME_SYNC_REQUEST, seq, payload=_U32.pack(token % 2**32))


def info_request(seq: int = 0) -> bytes:
    """A GET_INFO frame."""
    return encode_frame(FrameType.GET_INFO, seq)


class CommandParser:
    """Device side: host bytes in, :class:`Command` objects out.

    Names: ``start`` (args ``streams``: 0 = all, else STREAM_EMG|STREAM_IMU
    bits), ``stop``, ``time_sync`` (``token``), ``info``, ``unknown``
    (``type``).  Every command has ``args["seq"]``.  Bad frames are counted
    in ``stats`` and skipped.
    """

    def __init__(self):
        self.stats = DecoderStats()
        self._framer = _Framer(self.stats)

    def feed(self, data: bytes) -> list[Command]:
        """Parse the next bytes the host wrote."""
        out = []
        for _, body in self._framer.feed(data):
            self.stats.frames_ok += 1
            _, ftype, seq, *_ = HEADER.unpack_from(body)
            payload = body[HEADER_LEN:-CRC_LEN]
            raw = cobs.encode(body) + b"\x00"
            args: dict = {"seq": seq}
            if ftype == FrameType.START:
                args["streams"] = payload[0] if payload else STREAMS_ALL
                out.append(Command("start", args, raw))
            elif ftype == FrameType.STOP:
                out.append(Command("stop", args, raw))
            elif ftype == FrameType.TIME_SYNC_REQUEST:
                args["token"] = _U32.unpack_from(payload)[0]
                out.append(Command("time_sync", args, raw))
            elif ftype == FrameType.GET_INFO:
                out.append(Command("info", args, raw))
            else:
                args["type"] = ftype
                out.append(Command("unknown", args, raw))
        return out
