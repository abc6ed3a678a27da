"""OpenBCI Cyton over its USB radio dongle (115200 8N1): pure decoder and encoder.

Wire format (OpenBCI "Cyton data format", firmware v2/v3), one 33-byte packet
per sample at 250 Hz::

    byte 0       0xA0 header
    byte 1       sample number (0..255, wraps)
    bytes 2-25   8 channels x 24-bit big-endian two's complement (ADS1299 counts)
    bytes 26-31  6 aux bytes; with footer 0xC0: accelerometer X, Y, Z as
                 int16 big-endian (LIS3DH, 0.002/16 g per count), sent at
                 25 Hz, all zero in the packets in between
    byte 32      footer 0xC0..0xC6 (0xC0 = standard packet with accelerometer,
                 0xC1 = raw aux, 0xC2 = user defined, 0xC3..0xC6 = time-stamped)

EMG counts become microvolts with ``uV = count * 4.5 / gain / (2**23 - 1) * 1e6``
where ``gain`` is the channel's programmable gain (24 after reset; changed by
``x...X`` channel-settings commands, see :func:`channel_settings_command`).

Commands are single ASCII characters: ``v`` soft reset (the board answers with
text ending in ``$$$``), ``b`` start streaming, ``s`` stop, ``d`` channel
defaults.

Accelerometer stream
--------------------
The decoder emits a separate ``"acc"`` stream at the accelerometer's 25 Hz: one
packet per packet that carries new accelerometer data (a C0 packet whose aux
bytes are not all zero; a true reading of exactly (0, 0, 0) g is
indistinguishable from "no new data", as in every Cyton host).  Its counter
is derived so that gaps can be counted: it advances by
``max(1, round(d / 10))`` where ``d`` is the (mod 256) difference between the
sample numbers of this and the previous accelerometer packet, so a lost
packet carrying acc data shows as a gap of one acc sample; jitter of the
board's accelerometer timing (9 or 11 samples apart) does not.
``meta["emg_counter"]`` keeps the sample number the value arrived with.  With
``Decoder(acc_mode="held")`` the decoder instead emits one acc sample per EMG
sample (250 Hz) holding the last value (NaN before the first), with the EMG
counter.

Resynchronisation
-----------------
A packet is recognised by its header byte and a valid footer 32 bytes later.
After a bad packet the decoder scans byte by byte; bytes that are not part of
a packet are either printable text (collected into a ``"reply"`` packet when
``$$$`` arrives) or garbage, counted in ``stats.bytes_skipped``.
``stats.frames_bad`` counts runs of garbage between two good packets/replies
(one corrupted packet -> one bad frame; several adjacent corrupted packets
form one run); garbage before the first good packet or reply (joining a
stream mid-packet) is skipped without counting a bad frame.

Sample numbers
--------------
The packet has no checksum, so a line error in the sample-number byte would
read as two gaps (a jump forward, then back) that never happened.  A sample
number that does not follow its predecessor is checked against the next
three packets: when one of them follows the predecessor as if the packets in
between sat in their slots, their bytes were corrupt and are repaired
(``stats.counters_repaired``).  Packets at the end of a ``feed`` are held
back until that is decided (a few packets of delay, only then).  A real loss
(the next packets follow the new number) is left for the host to count.
Likewise a single flipped bit in the all-zero aux bytes of a packet between
two accelerometer readings is not taken as a new reading, nor is a reading
less than half the accelerometer period after the previous one.

Examples
--------
>>> import numpy as np
>>> enc = Encoder()
>>> raw = enc.encode(7, np.full(8, 100.0), acc_g=(0.0, 0.0, 1.0))
>>> len(raw)
33
>>> dec = Decoder()
>>> [(p.stream, p.counter) for p in dec.feed(raw)]
[('emg', 7), ('acc', 0)]
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence

import numpy as np
from crampwatch.firmware_bridge.protocols._text import ResyncAccounting, TextCollector
from crampwatch.firmware_bridge.protocols.base import BoardSpec, Command, DecoderStats, Packet

from crampwatch.errors import FrameError

__all__ = [
    "BOARD", "PACKET_LEN", "N_CHANNELS", "COUNTER_MODULO", "GAINS", "DEFAULT_GAIN",
    "ACC_G_PER_COUNT", "ACC_DECIMATION", "uv_per_count",
    "Decoder", "Encoder", "CommandParser", "start_command", "stop_command", "reset_command",
    "channel_settings_command", "decode_packet",
]

logger = logging.getLogger(__name__)

BOARD = BoardSpec(
    name="cyton",
    emg_fs_hz=250.0,
    acc_fs_hz=25.0,
    emg_channels=tuple(f"ch{i}" for i in range(1, 9)),
    acc_channels=("acc_x", "acc_y", "acc_z"),
    baudrate=115200,
)

PACKET_LEN = 33
HEADER = 0xA0
FOOTER_MIN, FOOTER_MAX = 0xC0, 0xC6
FOOTER_ACCEL = 0xC0
COUNTER_MODULO = 256
N_CHANNELS = 8
#: ADS1299 programmable gains, indexed by the gain digit of ``x...X`` commands.
GAINS = (1, 2, 4, 6, 8, 12, 24)
DEFAULT_GAIN = 24
VREF_V = 4.5
ACC_G_PER_COUNT = 0.002 / 16
#: EMG samples per accelerometer sample (250 Hz / 25 Hz).
ACC_DECIMATION = 10

#: packets looked at after one whose sample number is out of line, to repair it
_REPAIR_LOOKAHEAD = 3
_COUNTS_MAX = 2**23 - 1
_COUNTS_MIN = -(2**23)
_PACK_AUX = struct.Struct(">hhhB")


def uv_per_count(gain: float) -> float:
    """Microvolts per ADS1299 count at programmable ``gain``.

    Examples
    --------
    >>> round(uv_per_count(24), 6)
    0.022352
    """
    return VREF_V / gain / _COUNTS_MAX * 1e6


def start_command() -> bytes:
    """Bytes the host sends to start streaming (``b``)."""
    return b"b"


def stop_command() -> bytes:
    """Bytes the host sends to stop streaming (``s``)."""
    return b"s"


def reset_command() -> bytes:
    """Bytes the host sends for a soft reset (``v``); the reply ends in ``$$$``."""
    return b"v"


def channel_settings_command(channel: int, gain: int = DEFAULT_GAIN, power_down: bool = False,
                             input_type: int = 0, bias: bool = True, srb2: bool = True,
                             srb1: bool = False) -> bytes:
    """The ``x CHANNEL POWER_DOWN GAIN INPUT BIAS SRB2 SRB1 X`` command.

    Parameters
    ----------
    channel : int
        1..8.
    gain : int
        One of :data:`GAINS`.

    Examples
    --------
    >>> channel_settings_command(1, gain=24)
    b'x1060110X'
    """
    if not 1 <= channel <= N_CHANNELS:
        raise ValueError(f"Cyton channel must be 1..{N_CHANNELS}, got {channel}")
    if gain not in GAINS:
        raise ValueError(f"Cyton gain must be one of {GAINS}, got {gain}")
    if not 0 <= input_type <= 7:
        raise ValueError(f"input_type must be 0..7, got {input_type}")
    fields = (channel, int(power_down), GAINS.index(gain), input_type, int(bias), int(srb2),
              int(srb1))
    return b"x" + "".join(str(f) for f in fields).encode("ascii") + b"X"


def _parse_channel_settings(body: bytes) -> dict | None:
    """``body`` = the 7 characters between ``x`` and ``X``; None if malformed."""
    if len(body) != 7 or not body.isdigit():
        return None
    d = [c - 0x30 for c in body]
    if not 1 <= d[0] <= N_CHANNELS or d[2] >= len(GAINS):
        return None
    return {"channel": d[0], "power_down": bool(d[1]), "gain": GAINS[d[2]],
            "input_type": d[3], "bias": bool(d[4]), "srb2": bool(d[5]), "srb1": bool(d[6])}


def _counts24(rows: np.ndarray) -> np.ndarray:
    """(k, 33) uint8 packets -> (k, 8) int32 signed ADS1299 counts."""
    b = rows[:, 2:26].reshape(-1, N_CHANNELS, 3).astype(np.int32)
    v = (b[:, :, 0] << 16) | (b[:, :, 1] << 8) | b[:, :, 2]
    return (v ^ 0x800000) - 0x800000


def _valid_rows(rows: np.ndarray) -> np.ndarray:
    foot = rows[:, 32]
    return (rows[:, 0] == HEADER) & (foot >= FOOTER_MIN) & (foot <= FOOTER_MAX)


def decode_packet(raw: bytes, gains: Sequence[float] = (DEFAULT_GAIN,) * N_CHANNELS) -> dict:
    """Strictly decode one 33-byte packet (for tests and tools).

    Returns
    -------
    dict
        ``sample_number``, ``emg_uv`` (8,), ``footer``, ``aux`` (6 bytes) and
        ``acc_g`` (3,) for C0 packets with non-zero aux, else None.

    Raises
    ------
    FrameError
        If the length, header or footer is wrong.
    """
    if len(raw) != PACKET_LEN:
        raise FrameError(f"Cyton packet must be {PACKET_LEN} bytes, got {len(raw)}", offset=0)
    rows = np.frombuffer(raw, np.uint8).reshape(1, PACKET_LEN)
    if not _valid_rows(rows)[0]:
        bad = 0 if raw[0] != HEADER else 32
        raise FrameError(f"Cyton packet: bad {'header' if bad == 0 else 'footer'} byte "
                         f"0x{raw[bad]:02X} at offset {bad}", offset=bad)
    scale = np.array([uv_per_count(g) for g in gains])
    x, y, z, foot = _PACK_AUX.unpack_from(raw, 26)
    acc = None
    if foot == FOOTER_ACCEL and (x or y or z):
        acc = np.array([x, y, z], dtype=np.float64) * ACC_G_PER_COUNT
    return {"sample_number": raw[1], "emg_uv": _counts24(rows)[0] * scale, "footer": foot,
            "aux": bytes(raw[26:32]), "acc_g": acc}


class Decoder(ResyncAccounting):
    """Stateful Cyton stream decoder: ``feed(bytes) -> list[Packet]``.

    Parameters
    ----------
    gains : sequence of 8 numbers, optional
        Programmable gain of each channel (default 24 for all, the state after
        a reset).  Keep it in step with the board by passing every command the
        host sends to :meth:`observe_command`, or set it with :meth:`set_gain`.
    acc_mode : {"new", "held"}
        ``"new"``: a 25 Hz acc stream, one packet per new accelerometer value,
        with a derived counter (see the module docstring).  ``"held"``: one
        acc sample per EMG sample, holding the last value.
    merge : bool
        False (default): one EMG packet per 33-byte packet, the same packets
        for any split of the input.  True: one EMG packet per run of
        consecutive sample numbers decoded by one ``feed`` call (faster; the
        samples and counters are the same for any split, the packet
        boundaries are not; ``meta`` then holds ``footer``/``aux`` arrays
        when a run has packets other than C0).

    Attributes
    ----------
    stats : DecoderStats
    gains : numpy.ndarray
        Current gain per channel.

    Examples
    --------
    >>> import numpy as np
    >>> raw = Encoder().encode(3, np.arange(8.0))
    >>> dec = Decoder()
    >>> pk = dec.feed(raw[:10]) + dec.feed(raw[10:])
    >>> pk[0].stream, pk[0].counter, pk[0].samples.shape
    ('emg', 3, (1, 8))
    """

    def __init__(self, gains: Sequence[float] | None = None, acc_mode: str = "new",
                 merge: bool = False):
        if acc_mode not in ("new", "held"):
            raise ValueError(f"acc_mode must be 'new' or 'held', got {acc_mode!r}")
        self.gains = np.full(N_CHANNELS, float(DEFAULT_GAIN)) if gains is None else \
            np.asarray(gains, dtype=np.float64).copy()
        if self.gains.shape != (N_CHANNELS,):
            raise ValueError(f"gains must have {N_CHANNELS} values, got {self.gains.shape}")
        self.acc_mode = acc_mode
        self.merge = merge
        self.stats = DecoderStats()
        self._scale = self._make_scale()
        self._buf = bytearray()
        self._base = 0          # stream offset of _buf[0]
        self._locked = False
        self._text = TextCollector(b"$$$")
        self._run_skipped = 0   # garbage bytes since the last good packet/reply
        self._seen_good = False
        self._acc_last = np.full(3, np.nan)
        self._acc_sn: int | None = None
        self._acc_counter = 0
        self._commands = CommandParser()
        self._prev_sn: int | None = None      # sample number of the last packet emitted
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # rows held back, offsets

    def _make_scale(self) -> np.ndarray:
        return VREF_V / self.gains / _COUNTS_MAX * 1e6

    def set_gain(self, channel: int, gain: float) -> None:
        """Set the gain of ``channel`` (1..8) used for later packets."""
        self.gains[channel - 1] = gain
        self._scale = self._make_scale()

    def observe_command(self, data: bytes) -> None:
        """Track gain changes from bytes the host sends to the board.

        ``x...X`` channel settings change that channel's gain, ``d`` and ``v``
        restore the default gain (24) on every channel.  Changes apply to
        packets decoded after this call.
        """
        for cmd in self._commands.feed(data):
            if cmd.name == "channel_settings":
                self.set_gain(cmd.args["channel"], cmd.args["gain"])
            elif cmd.name in ("defaults", "reset"):
                self.gains[:] = DEFAULT_GAIN
                self._scale = self._make_scale()

    # -- framing ---------------------------------------------------------------
    def feed(self, data: bytes) -> list[Packet]:
        """Decode the next bytes of the stream; return the packets completed."""
        self.stats.bytes_in += len(data)
        self._buf += data
        buf = self._buf
        n = len(buf)
        out: list[Packet] = []
        i = 0
        while i < n:
            if self._locked:
                k_avail = (n - i) // PACKET_LEN
                if k_avail == 0:
                    break
                # a copy: views into the bytearray would block its resizing
                rows = np.frombuffer(buf[i:i + k_avail * PACKET_LEN],
                                     np.uint8).reshape(k_avail, PACKET_LEN)
                ok = _valid_rows(rows)
                k = k_avail if ok.all() else int(np.argmin(ok))
                if k:
                    self._emit_rows(rows[:k], self._base + i, out)
                    i += k * PACKET_LEN
                if k < k_avail:
                    self._locked = False
                    logger.debug("Cyton: no packet at byte %d, resynchronising",
                                 self._base + i)
                continue
            j = buf.find(HEADER, i)
            end = n if j < 0 else j
            if end > i:
                self._push_text(buf, i, end, out)
                i = end
            if j < 0 or n - j < PACKET_LEN:
                break
            foot = buf[j + 32]
            if FOOTER_MIN <= foot <= FOOTER_MAX:
                self._skip(self._text.flush())
                self._locked = True
            else:
                self._push_text(buf, j, j + 1, out)
                i = j + 1
        del buf[:i]
        self._base += i
        return out

    def _check_sample_numbers(self, sn: np.ndarray) -> tuple[np.ndarray, int]:
        """Repair corrupted sample numbers from their neighbours (see the module
        docstring); returns (sample numbers, rows at the end to hold back)."""
        sn = sn.astype(np.int64)
        prev = self._prev_sn
        k = sn.size
        if prev is not None and (sn[0] - prev) % COUNTER_MODULO == 1 \
                and (np.diff(sn) % COUNTER_MODULO == 1).all():
            self._prev_sn = int(sn[-1])
            return sn, 0
        r = 0
        while r < k:
            if prev is None or (sn[r] - prev) % COUNTER_MODULO == 1:
                prev = int(sn[r])
                r += 1
                continue
            # out of line: does a packet soon after continue from prev as if the
            # packets in between sat in their slots?
            found = next((j for j in range(r + 1, min(k, r + 1 + _REPAIR_LOOKAHEAD))
                          if (sn[j] - prev) % COUNTER_MODULO == j - r + 1), None)
            if found is None and r + _REPAIR_LOOKAHEAD >= k:
                self._prev_sn = prev
                return sn, k - r                  # decided by the packets still to come
            if found is None:                     # a real jump (packets lost on the radio)
                prev = int(sn[r])
                r += 1
                continue
            for i in range(r, found):
                sn[i] = (prev + i - r + 1) % COUNTER_MODULO
            self.stats.counters_repaired += found - r
            prev = int(sn[found])
            r = found + 1
        self._prev_sn = prev
        return sn, 0

    def _emit_rows(self, rows: np.ndarray, offset: int, out: list[Packet]) -> None:
        self._good()
        offs = offset + np.arange(rows.shape[0], dtype=np.int64) * PACKET_LEN
        if self._pending is not None:
            rows = np.concatenate([self._pending[0], rows])
            offs = np.concatenate([self._pending[1], offs])
            self._pending = None
        sn, n_hold = self._check_sample_numbers(rows[:, 1])
        if (sn != rows[:, 1]).any():
            rows = rows.copy()
            rows[:, 1] = sn
        n_emit = rows.shape[0] - n_hold
        # emit runs that are contiguous in the byte stream (offsets follow from the first)
        cuts = [0] + (np.flatnonzero(np.diff(offs[:n_emit]) != PACKET_LEN) + 1).tolist() \
            + [n_emit]
        for a, b in zip(cuts[:-1], cuts[1:]):
            if b > a:
                self._emit_now(rows[a:b], int(offs[a]), out)
        if n_hold:
            self._pending = (rows[n_emit:].copy(), offs[n_emit:].copy())

    def _emit_now(self, rows: np.ndarray, offset: int, out: list[Packet]) -> None:
        k = rows.shape[0]
        self.stats.frames_ok += k
        emg_uv = _counts24(rows) * self._scale
        sn_arr = rows[:, 1]
        sn = sn_arr.tolist()
        foot = rows[:, 32]
        aux = np.ascontiguousarray(rows[:, 26:32])
        acc_g = aux.view(">i2") * ACC_G_PER_COUNT
        # a reading: C0 with aux bytes not all zero, and not a single flipped bit in zeros
        acc_rows = np.flatnonzero((foot == FOOTER_ACCEL)
                                  & (np.unpackbits(aux, axis=1).sum(axis=1) > 1)).tolist()
        odd = np.flatnonzero(foot != FOOTER_ACCEL).tolist()
        held = self._held(acc_rows, acc_g, k) if self.acc_mode == "held" else None
        new_acc = {} if held is not None else self._new_acc(acc_rows, sn, acc_g, offset)
        append = out.append
        if self.merge:
            cuts = np.flatnonzero(np.diff(sn_arr) != 1).tolist()   # uint8: 255 -> 0 is 1
            bounds = [0] + [c + 1 for c in cuts] + [k]
            for a, b in zip(bounds[:-1], bounds[1:]):
                off = offset + a * PACKET_LEN
                meta = {}
                if any(a <= r < b for r in odd):
                    meta = {"footer": foot[a:b].copy(), "aux": aux[a:b].copy()}
                append(Packet("emg", sn[a], COUNTER_MODULO, emg_uv[a:b], 1, None, off, meta))
                if held is not None:
                    append(Packet("acc", sn[a], COUNTER_MODULO, held[a:b], 1, None, off, {}))
                out.extend(pk for r, pk in new_acc.items() if a <= r < b)
            return
        odd_meta = {r: {"footer": int(foot[r]), "aux": bytes(aux[r])} for r in odd}
        offsets = range(offset, offset + k * PACKET_LEN, PACKET_LEN)
        for r, (s, e, off) in enumerate(zip(sn, emg_uv[:, None, :], offsets)):
            append(Packet("emg", s, COUNTER_MODULO, e, 1, None, off, odd_meta.get(r, {})))
            if held is not None:
                append(Packet("acc", s, COUNTER_MODULO, held[r:r + 1], 1, None, off, {}))
            elif r in new_acc:
                append(new_acc[r])

    def _held(self, acc_rows: list[int], acc_g: np.ndarray, k: int) -> np.ndarray:
        """(k, 3) accelerometer values holding the last new one."""
        held = np.empty((k, 3))
        last, prev = self._acc_last, 0
        for r in acc_rows:
            held[prev:r] = last
            last, prev = acc_g[r], r
        held[prev:] = last
        self._acc_last = np.array(last)
        return held

    def _new_acc(self, acc_rows: list[int], sn: list[int], acc_g: np.ndarray,
                 offset: int) -> dict[int, Packet]:
        """One 25 Hz acc packet per new value, keyed by row, with the derived counter."""
        out = {}
        for r in acc_rows:
            if self._acc_sn is not None:
                d = (sn[r] - self._acc_sn) % COUNTER_MODULO
                if d < ACC_DECIMATION // 2:
                    continue            # not a new reading: a corrupted aux byte
                self._acc_counter = (self._acc_counter
                                     + max(1, round(d / ACC_DECIMATION))) % COUNTER_MODULO
            self._acc_sn = sn[r]
            out[r] = Packet("acc", self._acc_counter, COUNTER_MODULO, acc_g[r:r + 1], 1, None,
                            offset + r * PACKET_LEN, {"emg_counter": sn[r]})
        return out


class Encoder:
    """Board side: physical samples in, the exact bytes a Cyton sends.

    Parameters
    ----------
    gains : sequence of 8 numbers, optional
        Programmable gain per channel (default 24).
    firmware : str
        Version string used in the reset reply.

    Examples
    --------
    >>> import numpy as np
    >>> enc = Encoder()
    >>> enc.encode(0, np.zeros(8)).hex()[:6]
    'a00000'
    >>> enc.reset_reply().endswith(b"$$$")
    True
    """

    def __init__(self, gains: Sequence[float] | None = None, firmware: str = "v3.1.2"):
        self.gains = np.full(N_CHANNELS, float(DEFAULT_GAIN)) if gains is None else \
            np.asarray(gains, dtype=np.float64).copy()
        self.firmware = firmware

    def set_gain(self, channel: int, gain: float) -> None:
        """Set the gain of ``channel`` (1..8) for later samples."""
        self.gains[channel - 1] = gain

    def counts(self, emg_uv: np.ndarray) -> np.ndarray:
        """Microvolts -> ADS1299 counts (rounded, clipped to 24 bits)."""
        scale = VREF_V / self.gains / _COUNTS_MAX * 1e6
        c = np.rint(np.asarray(emg_uv, dtype=np.float64) / scale)
        return np.clip(np.nan_to_num(c), _COUNTS_MIN, _COUNTS_MAX).astype(np.int32)

    def encode(self, sample_number: int, emg_uv: Sequence[float],
               acc_g: Sequence[float] | None = None, footer: int = FOOTER_ACCEL) -> bytes:
        """One 33-byte packet.

        Parameters
        ----------
        sample_number : int
            Taken modulo 256.
        emg_uv : array_like, shape (8,)
        acc_g : array_like, shape (3,), optional
            A new accelerometer value (sent in the aux bytes); None sends zeros.
        footer : int
            0xC0..0xC6.
        """
        acc = None if acc_g is None else np.asarray(acc_g, dtype=np.float64).reshape(1, 3)
        return self.encode_block(sample_number, np.asarray(emg_uv).reshape(1, N_CHANNELS),
                                 acc, footer=footer)

    def encode_block(self, first_sample_number: int, emg_uv: np.ndarray,
                     acc_g: np.ndarray | None = None, footer: int = FOOTER_ACCEL) -> bytes:
        """Consecutive packets, vectorised.

        Parameters
        ----------
        first_sample_number : int
            Sample number of row 0; row ``r`` gets ``(first + r) % 256``.
        emg_uv : numpy.ndarray, shape (n, 8)
        acc_g : numpy.ndarray, shape (n, 3), optional
            Rows of NaN (or None for all) mean "no new accelerometer value":
            the aux bytes are zero.
        """
        emg_uv = np.asarray(emg_uv, dtype=np.float64)
        n = emg_uv.shape[0]
        if emg_uv.shape != (n, N_CHANNELS):
            raise ValueError(f"emg_uv must have shape (n, {N_CHANNELS}), got {emg_uv.shape}")
        if not FOOTER_MIN <= footer <= FOOTER_MAX:
            raise ValueError(f"footer must be 0xC0..0xC6, got 0x{footer:02X}")
        out = np.zeros((n, PACKET_LEN), np.uint8)
        out[:, 0] = HEADER
        out[:, 1] = (first_sample_number + np.arange(n)) % COUNTER_MODULO
        c = self.counts(emg_uv).astype(np.uint32)
        out[:, 2:26] = np.stack([(c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF],
                                axis=-1).reshape(n, 24).astype(np.uint8)
        if acc_g is not None:
            acc = np.asarray(acc_g, dtype=np.float64).reshape(n, 3)
            ac = np.clip(np.rint(np.nan_to_num(acc / ACC_G_PER_COUNT)), -32768, 32767)
            ac[np.isnan(acc).any(axis=1)] = 0
            out[:, 26:32] = ac.astype(">i2").view(np.uint8).reshape(n, 6)
        out[:, 32] = footer
        return out.tobytes()

    def reply(self, text: str) -> bytes:
        """A text reply as the board sends it (``text`` + ``$$$``)."""
        return text.encode("ascii") + b"$$$"

    def reset_reply(self) -> bytes:
        """The board's answer to ``v`` (firmware v2/v3 wording)."""
        return self.reply("OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\n"
                          f"On Board LIS3DH Device ID: 0x33\nFirmware: {self.firmware}\n")


class CommandParser:
    """Device side: the host's bytes in, :class:`Command` objects out.

    Single characters: ``v`` -> reset, ``b`` -> start, ``s`` -> stop,
    ``d`` -> defaults, ``1``..``8`` -> channel_off, ``!@#$%^&*`` ->
    channel_on; ``x`` + 7 digits + ``X`` -> channel_settings (args: channel,
    gain, power_down, input_type, bias, srb2, srb1).  Anything else ->
    ``unknown``.  Commands split across writes are reassembled.

    Examples
    --------
    >>> p = CommandParser()
    >>> [c.name for c in p.feed(b"vx1060")] + [c.name for c in p.feed(b"110Xb")]
    ['reset', 'channel_settings', 'start']
    """

    _SIMPLE = {ord("v"): "reset", ord("b"): "start", ord("s"): "stop", ord("d"): "defaults",
               ord("D"): "query_defaults", ord("?"): "query_registers"}
    _ON = b"!@#$%^&*"

    def __init__(self):
        self._cmd_tail = b""

    def feed(self, data: bytes) -> list[Command]:
        """Parse the next bytes the host wrote."""
        data = self._cmd_tail + bytes(data)
        self._cmd_tail = b""
        out = []
        i = 0
        while i < len(data):
            c = data[i]
            if c == ord("x"):
                if len(data) - i < 9:
                    self._cmd_tail = data[i:]
                    break
                raw = data[i:i + 9]
                args = _parse_channel_settings(raw[1:8]) if raw[8] == ord("X") else None
                if args is None:
                    out.append(Command("unknown", {}, raw[:1]))
                    i += 1
                    continue
                out.append(Command("channel_settings", args, raw))
                i += 9
                continue
            if c in self._SIMPLE:
                out.append(Command(self._SIMPLE[c], {}, bytes([c])))
            elif ord("1") <= c <= ord("8"):
                out.append(Command("channel_off", {"channel": c - ord("0")}, bytes([c])))
            elif c in self._ON:
                out.append(Command("channel_on", {"channel": self._ON.index(c) + 1}, bytes([c])))
            else:
                out.append(Command("unknown", {}, bytes([c])))
            i += 1
        return out
