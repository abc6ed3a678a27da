"""BITalino (r)evolution over serial / Bluetooth serial: pure decoder and encoder.

Commands (one byte each, host -> board; layout as in the official
revolution-python-api):

==========================  ==================================================
``(code << 6) | 0x03``      set the sample rate (idle): code 0..3 = 1, 10,
                            100, 1000 Hz
``(mask << 2) | 0x01``      start live acquisition of the analog channels in
                            ``mask`` (bit 0 = A1 ... bit 5 = A6)
``(mask << 2) | 0x02``      start simulated acquisition
``0x00``                    stop (in acquisition)
``0x07``                    version (idle); the board answers ``BITalino...\\n``
``0xFF``                    go idle from any mode
==========================  ==================================================

Frames (board -> host), one per sample, ``L`` bytes for ``n`` acquired
channels: ``L = ceil((12 + 10 n) / 8)`` for ``n <= 4``, else
``ceil((52 + 6 (n - 4)) / 8)`` (3, 4, 6, 7, 8, 8 bytes).  Counting from the
end of the frame (``b[-1]`` is the last byte)::

    b[-1]  seq (4 bits, wraps at 16) << 4 | CRC4
    b[-2]  I1 I2 O1 O2 (bits 7..4) | ch0 bits 9..6
    b[-3]  ch0 bits 5..0 << 2 | ch1 bits 9..8
    b[-4]  ch1 bits 7..0
    b[-5]  ch2 bits 9..2
    b[-6]  ch2 bits 1..0 << 6 | ch3 bits 9..4
    b[-7]  ch3 bits 3..0 << 4 | ch4 bits 5..2
    b[-8]  ch4 bits 1..0 << 6 | ch5 (6 bits)

``ch0..ch5`` are the acquired channels in ascending order: the first four
have 10 bits, the fifth and sixth 6 bits (so A5/A6 are 6-bit only when five or
six channels are on; put EMG and accelerometer on the first four).  The CRC4
(polynomial x^4 + x + 1, initial 0, MSB first) covers the whole frame with the
CRC nibble itself set to zero.

Units: EMG ``uV = (adc / 2**nbits - 1/2) * 3.3 / 1009 * 1e6`` (the sensor's
transfer function ``mV = (adc / 2**n - 1/2) * VCC / G_EMG`` with VCC 3.3 V and
gain 1009, in microvolts); accelerometer ``g = 2 (adc - Cmin) / (Cmax - Cmin) - 1``
with the calibration ``Cmin``/``Cmax`` in the channel's own counts (defaults
208/312 for a 10-bit channel, the values BITalino's ACC examples use; 13/19.5
for a 6-bit one).  Calibrate your own sensor: values vary per unit.

Synchronisation: a 4-bit CRC passes one random frame in 16, so the decoder
locks only on :data:`LOCK_FRAMES` consecutive frames that all pass the CRC and
carry consecutive sequence numbers.  While locked, a frame that fails the CRC
or breaks the sequence unlocks it and it searches again from that byte (a
genuine gap with intact frames relocks at once, nothing skipped).  Bytes that
belong to no frame are counted in ``stats.bytes_skipped``; each run of them
between two good frames counts as one ``stats.frames_bad`` (not the bytes
before the first good frame: joining a stream mid-frame).  Text lines
containing ``BITalino`` (the version reply) become ``"reply"`` packets.

Examples
--------
>>> import numpy as np
>>> enc = Encoder(analog_channels=(0, 1, 2, 3), emg=(0,), acc=(1, 2, 3))
>>> raw = enc.encode_adc_block(0, np.full((5, 4), 512))
>>> len(raw)
35
>>> dec = Decoder(analog_channels=(0, 1, 2, 3), emg=(0,), acc=(1, 2, 3))
>>> [p.counter for p in dec.feed(raw) if p.stream == "emg"]
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from crampwatch.firmware_bridge.protocols._text import ResyncAccounting, TextCollector
from crampwatch.firmware_bridge.protocols.base import BoardSpec, Command, DecoderStats, Packet

from crampwatch.errors import FrameError

__all__ = [
    "BOARD", "COUNTER_MODULO", "RATES_HZ", "LOCK_FRAMES", "frame_length", "crc4",
    "adc_bits", "Decoder", "Encoder", "CommandParser", "start_command", "stop_command",
    "rate_command", "version_command", "decode_frame", "DEFAULT_ANALOG", "DEFAULT_EMG",
    "DEFAULT_ACC", "ACC_CAL_10BIT",
]

logger = logging.getLogger(__name__)

BOARD = BoardSpec(
    name="bitalino",
    emg_fs_hz=1000.0,
    acc_fs_hz=1000.0,
    emg_channels=("A1",),
    acc_channels=("A2", "A3", "A4"),
    baudrate=115200,
)

COUNTER_MODULO = 16
RATES_HZ = (1, 10, 100, 1000)
#: Consecutive valid frames (CRC and sequence) needed to lock.
LOCK_FRAMES = 4
VCC_V = 3.3
EMG_GAIN = 1009.0
ACC_CAL_10BIT = (208.0, 312.0)
DEFAULT_ANALOG = (0, 1, 2, 3)
DEFAULT_EMG = (0,)
DEFAULT_ACC = (1, 2, 3)
_SEARCH_CHUNK = 4096  # lock positions tested per vectorised step


def frame_length(n_channels: int) -> int:
    """Bytes per frame for ``n_channels`` acquired analog channels (1..6).

    Examples
    --------
    >>> [frame_length(n) for n in range(1, 7)]
    [3, 4, 6, 7, 8, 8]
    """
    if not 1 <= n_channels <= 6:
        raise ValueError(f"BITalino acquires 1..6 analog channels, got {n_channels}")
    bits = 12 + 10 * n_channels if n_channels <= 4 else 52 + 6 * (n_channels - 4)
    return -(-bits // 8)


def adc_bits(position: int) -> int:
    """Resolution of the ``position``-th acquired channel (10 for 0..3, else 6)."""
    return 10 if position < 4 else 6


def _crc_table() -> np.ndarray:
    table = np.zeros((16, 256), np.uint8)
    for crc in range(16):
        for byte in range(256):
            x = crc
            for bit in range(7, -1, -1):
                x <<= 1
                if x & 0x10:
                    x ^= 0x03
                x ^= (byte >> bit) & 1
                x &= 0x0F
            table[crc, byte] = x
    return table


_CRC_TABLE = _crc_table()


def crc4(frame: bytes) -> int:
    """CRC4 of a frame (its last byte's low nibble is treated as zero).

    Examples
    --------
    >>> crc4(bytes([0x12, 0x34, 0x50]))
    8
    """
    x = 0
    for b in frame[:-1]:
        x = _CRC_TABLE[x, b]
    return int(_CRC_TABLE[x, frame[-1] & 0xF0])


def _positional_crc_tables() -> np.ndarray:
    """(4, 65536) tables: CRC4 contribution of each byte pair of an 8-byte frame.

    With initial value 0 the CRC is linear and leading zero bytes leave it
    unchanged, so a frame left-padded with zeros to 8 bytes has the same CRC,
    and that CRC is the XOR of each byte's contribution at its position.
    """
    xs = np.arange(256)
    contrib = np.empty((8, 256), np.uint8)
    for pos in range(8):
        state = _CRC_TABLE[0, xs & 0xF0 if pos == 7 else xs]
        for _ in range(7 - pos):
            state = _CRC_TABLE[state, 0]
        contrib[pos] = state
    return np.stack([(contrib[2 * j][:, None] ^ contrib[2 * j + 1][None, :]).ravel()
                     for j in range(4)])


_CRC_PAIRS = _positional_crc_tables().ravel()
_PAIR_OFFSETS = np.arange(4) * 65536
# Left-padded to 8 bytes and read little-endian, a frame is one 64-bit word:
# seq = bits 63..60, CRC 59..56, I1 I2 O1 O2 55..52, then the channels.
_SHIFTS = np.array([42, 32, 22, 12, 6, 0], np.uint64)
_MASKS = np.array([0x3FF, 0x3FF, 0x3FF, 0x3FF, 0x3F, 0x3F], np.uint64)
_DIGITAL_SHIFTS = np.array([55, 54, 53, 52], np.uint64)
_DIGITAL_TUPLES = [tuple((d >> b) & 1 for b in (3, 2, 1, 0)) for d in range(16)]


def _pad8(rows: np.ndarray) -> np.ndarray:
    """(k, L) frames -> (k, 8) uint8, left-padded with zeros."""
    pad = np.zeros((rows.shape[0], 8), np.uint8)
    pad[:, 8 - rows.shape[1]:] = rows
    return pad


def _crc_pad(pad: np.ndarray) -> np.ndarray:
    """CRC4 of (k, 8) left-padded frames (the CRC nibble is ignored)."""
    pairs = pad.view(">u2").astype(np.intp) + _PAIR_OFFSETS
    return np.bitwise_xor.reduce(_CRC_PAIRS[pairs], axis=1)


def _words(pad: np.ndarray) -> np.ndarray:
    return pad.view("<u8")[:, 0]


def _check(pad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(crc_ok (k,) bool, seq (k,) int) of left-padded frames."""
    crc_field = pad[:, 7] & 0x0F
    return _crc_pad(pad) == crc_field, (pad[:, 7] >> 4).astype(np.int64)


def _unpack(pad: np.ndarray, n_ch: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, 8) left-padded frames -> (adc (k, n_ch), digital (k, 4))."""
    v = _words(pad)[:, None]
    adc = ((v >> _SHIFTS[:n_ch]) & _MASKS[:n_ch]).astype(np.int64)
    digital = ((v >> _DIGITAL_SHIFTS) & np.uint64(1)).astype(np.int64)
    return adc, digital


class _ChannelMap:
    """Which analog inputs are acquired, which are EMG, which accelerometer."""

    def __init__(self, analog_channels, emg, acc, acc_cmin, acc_cmax):
        self.analog = tuple(sorted(set(int(c) for c in analog_channels)))
        if not self.analog or any(not 0 <= c <= 5 for c in self.analog):
            raise ValueError(f"analog_channels must be 1..6 distinct values in 0..5 "
                             f"(A1 = 0), got {analog_channels}")
        for name, group in (("emg", emg), ("acc", acc)):
            missing = [c for c in group if c not in self.analog]
            if missing:
                raise ValueError(f"{name} channels {missing} are not among the acquired "
                                 f"analog channels {self.analog}")
        self.n = len(self.analog)
        self.frame_len = frame_length(self.n)
        self.emg_pos = [self.analog.index(c) for c in emg]
        self.acc_pos = [self.analog.index(c) for c in acc]
        self.emg_labels = tuple(f"A{c + 1}" for c in emg)
        self.acc_labels = tuple(f"A{c + 1}" for c in acc)
        self.emg_full = np.array([2.0 ** adc_bits(p) for p in self.emg_pos])
        cmin_d = [ACC_CAL_10BIT[0] / (16 if adc_bits(p) == 6 else 1) for p in self.acc_pos]
        cmax_d = [ACC_CAL_10BIT[1] / (16 if adc_bits(p) == 6 else 1) for p in self.acc_pos]
        self.cmin = np.broadcast_to(np.asarray(cmin_d if acc_cmin is None else acc_cmin,
                                               dtype=np.float64), (len(acc),)).copy()
        self.cmax = np.broadcast_to(np.asarray(cmax_d if acc_cmax is None else acc_cmax,
                                               dtype=np.float64), (len(acc),)).copy()
        self.max_adc = np.array([2 ** adc_bits(p) - 1 for p in range(self.n)])
        # g = 2 (adc - cmin) / (cmax - cmin) - 1 = adc * acc_a + acc_b
        self.acc_a = 2.0 / (self.cmax - self.cmin)
        self.acc_b = -self.cmin * self.acc_a - 1.0
        self.emg_a = VCC_V / EMG_GAIN * 1e6 / self.emg_full
        self.emg_b = -0.5 * VCC_V / EMG_GAIN * 1e6
        # the EMG then the acc columns straight from the 64-bit frame words
        sel = self.emg_pos + self.acc_pos
        self.n_emg = len(self.emg_pos)
        self.sel_shifts, self.sel_masks = _SHIFTS[sel], _MASKS[sel]
        self.sel_scale = np.concatenate([self.emg_a, self.acc_a])
        self.sel_offset = np.concatenate([np.full(self.n_emg, self.emg_b), self.acc_b])

    def physical(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(k,) frame words -> (emg_uv (k, n_emg), acc_g (k, n_acc))."""
        adc = (words[:, None] >> self.sel_shifts) & self.sel_masks
        phys = adc * self.sel_scale + self.sel_offset
        return phys[:, :self.n_emg], phys[:, self.n_emg:]


def decode_frame(raw: bytes, n_channels: int) -> dict:
    """Strictly decode one frame (for tests and tools).

    Returns
    -------
    dict
        ``seq``, ``adc`` (list of ``n_channels`` ints), ``digital`` (I1, I2, O1, O2).

    Raises
    ------
    FrameError
        On a wrong length or CRC.
    """
    L = frame_length(n_channels)
    if len(raw) != L:
        raise FrameError(f"BITalino frame for {n_channels} channels must be {L} bytes, "
                         f"got {len(raw)}", offset=0)
    if crc4(raw) != raw[-1] & 0x0F:
        raise FrameError(f"BITalino frame: CRC4 mismatch (got {raw[-1] & 0x0F}, "
                         f"computed {crc4(raw)})", offset=L - 1)
    adc, dig = _unpack(_pad8(np.frombuffer(raw, np.uint8).reshape(1, L)), n_channels)
    return {"seq": raw[-1] >> 4, "adc": adc[0].tolist(), "digital": tuple(dig[0].tolist())}


class Decoder(ResyncAccounting):
    """Stateful BITalino stream decoder: ``feed(bytes) -> list[Packet]``.

    Parameters
    ----------
    analog_channels : sequence of int
        The acquired analog inputs, 0-based as in the official API (A1 = 0);
        must match the start command.
    emg, acc : sequence of int
        Which of them carry EMG (emitted as stream ``"emg"`` in uV) and the
        accelerometer axes (stream ``"acc"`` in g; empty for none).
    acc_cmin, acc_cmax : float or sequence, optional
        Accelerometer calibration in counts, per acc channel.
    merge : bool
        False (default): one packet per frame, the same packets for any
        split of the input.  True: one packet per run of consecutive frames
        decoded by one ``feed`` call (several times faster; the samples and
        counters are the same for any split, the packet boundaries are not).

    Each valid frame gives one ``"emg"`` sample (counter = the frame's 4-bit
    sequence number, ``meta["digital"]`` = (I1, I2, O1, O2), with ``merge``
    an (n, 4) array) and, if acc channels are configured, one ``"acc"``
    sample with the same counter.

    Examples
    --------
    >>> import numpy as np
    >>> enc = Encoder(analog_channels=(0,), emg=(0,), acc=())
    >>> raw = enc.encode(3, emg_uv=np.zeros((6, 1)))
    >>> dec = Decoder(analog_channels=(0,), emg=(0,), acc=())
    >>> [p.counter for p in dec.feed(raw)]
    [3, 4, 5, 6, 7, 8]
    """

    def __init__(self, analog_channels: Sequence[int] = DEFAULT_ANALOG,
                 emg: Sequence[int] = DEFAULT_EMG, acc: Sequence[int] = DEFAULT_ACC,
                 acc_cmin=None, acc_cmax=None, merge: bool = False):
        self.channels = _ChannelMap(analog_channels, emg, acc, acc_cmin, acc_cmax)
        self.merge = merge
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._base = 0
        self._locked = False
        self._last_seq = 0
        self._text = TextCollector(b"\n", require=b"BITalino", max_len=256)
        self._run_skipped = 0
        self._seen_good = False

    @property
    def frame_len(self) -> int:
        """Bytes per frame for the configured channels."""
        return self.channels.frame_len

    def feed(self, data: bytes) -> list[Packet]:
        """Decode the next bytes of the stream; return the packets completed."""
        self.stats.bytes_in += len(data)
        self._buf += data
        buf = self._buf
        n = len(buf)
        L = self.channels.frame_len
        out: list[Packet] = []
        i = 0
        while True:
            if self._locked:
                k_avail = (n - i) // L
                if k_avail == 0:
                    break
                pad = _pad8(np.frombuffer(buf[i:i + k_avail * L], np.uint8).reshape(k_avail, L))
                crc_ok, seq = _check(pad)
                expect = (self._last_seq + 1 + np.arange(k_avail)) % COUNTER_MODULO
                ok = crc_ok & (seq == expect)
                k = k_avail if ok.all() else int(np.argmin(ok))
                if k:
                    self._emit(pad[:k], L, self._base + i, out)
                    i += k * L
                if k < k_avail:
                    self._locked = False
                    logger.debug("BITalino: frame at byte %d fails CRC/sequence, "
                                 "resynchronising", self._base + i)
                    continue
                break
            # unlocked: find the first position where LOCK_FRAMES frames check out
            span = LOCK_FRAMES * L
            n_pos = min(n - i - span + 1, _SEARCH_CHUNK)
            if n_pos <= 0:
                break
            win = np.lib.stride_tricks.sliding_window_view(
                np.frombuffer(buf[i:i + n_pos + span - 1], np.uint8), L)
            good, seq = _check(_pad8(win))
            lock = good[:n_pos].copy()
            for w in range(1, LOCK_FRAMES):
                lock &= good[w * L:w * L + n_pos]
                lock &= seq[w * L:w * L + n_pos] == (seq[:n_pos] + w) % COUNTER_MODULO
            p = int(np.argmax(lock)) if lock.any() else n_pos
            if p:
                self._push_text(buf, i, i + p, out)
                i += p
            if p < n_pos:
                self._skip(self._text.flush())
                self._locked = True
                self._last_seq = (int(seq[p]) - 1) % COUNTER_MODULO
        del buf[:i]
        self._base += i
        return out

    def _emit(self, pad: np.ndarray, L: int, offset: int, out: list[Packet]) -> None:
        ch = self.channels
        k = pad.shape[0]
        self._good()
        self.stats.frames_ok += k
        words = _words(pad)
        seq = (pad[:, 7] >> 4).tolist()
        self._last_seq = seq[-1]
        emg, acc = ch.physical(words)
        if not ch.acc_pos:
            acc = None
        if self.merge:       # a locked run has consecutive sequence numbers
            digital = ((words[:, None] >> _DIGITAL_SHIFTS) & np.uint64(1)).astype(np.int64)
            out.append(Packet("emg", seq[0], COUNTER_MODULO, emg, 1, None, offset,
                              {"digital": digital}))
            if acc is not None:
                out.append(Packet("acc", seq[0], COUNTER_MODULO, acc, 1, None, offset, {}))
            return
        append = out.append
        offsets = range(offset, offset + k * L, L)
        nibbles = ((words >> np.uint64(52)) & np.uint64(0xF)).tolist()
        dig = [_DIGITAL_TUPLES[d] for d in nibbles]
        if acc is None:
            for s, e, off, d in zip(seq, emg[:, None, :], offsets, dig):
                append(Packet("emg", s, COUNTER_MODULO, e, 1, None, off, {"digital": d}))
            return
        for s, e, a, off, d in zip(seq, emg[:, None, :], acc[:, None, :], offsets, dig):
            append(Packet("emg", s, COUNTER_MODULO, e, 1, None, off, {"digital": d}))
            append(Packet("acc", s, COUNTER_MODULO, a, 1, None, off, {}))


class Encoder:
    """Board side: ADC values or physical values in, the exact frames out.

    Parameters are those of :class:`Decoder`.

    Examples
    --------
    >>> enc = Encoder(analog_channels=(0, 1), emg=(0,), acc=(1,))
    >>> enc.encode_adc(5, [1023, 0]).hex()
    '00fc0f56'
    """

    def __init__(self, analog_channels: Sequence[int] = DEFAULT_ANALOG,
                 emg: Sequence[int] = DEFAULT_EMG, acc: Sequence[int] = DEFAULT_ACC,
                 acc_cmin=None, acc_cmax=None):
        self.channels = _ChannelMap(analog_channels, emg, acc, acc_cmin, acc_cmax)

    def encode_adc(self, seq: int, adc: Sequence[int],
                   digital: Sequence[int] = (0, 0, 0, 0)) -> bytes:
        """One frame from raw ADC values (one per acquired channel, ascending)."""
        return self.encode_adc_block(seq, np.asarray(adc).reshape(1, -1),
                                     np.asarray(digital).reshape(1, 4))

    def encode_adc_block(self, first_seq: int, adc: np.ndarray,
                         digital: np.ndarray | None = None) -> bytes:
        """Consecutive frames, vectorised.

        Parameters
        ----------
        first_seq : int
            Sequence number of row 0 (row ``r`` gets ``(first_seq + r) % 16``).
        adc : array_like, shape (k, n_channels)
            Clipped to each channel's range (10 or 6 bits).
        digital : array_like, shape (k, 4), optional
            I1, I2, O1, O2 bits.
        """
        ch = self.channels
        adc = np.asarray(adc)
        k = adc.shape[0]
        if adc.shape != (k, ch.n):
            raise ValueError(f"adc must have shape (k, {ch.n}), got {adc.shape}")
        a = np.clip(adc, 0, ch.max_adc).astype(np.int32)
        a = np.concatenate([a, np.zeros((k, 6 - ch.n), np.int32)], axis=1)
        dig = np.zeros((k, 4), np.int32) if digital is None else \
            (np.asarray(digital, dtype=np.int32).reshape(k, 4) & 1)
        seq = ((first_seq + np.arange(k)) % COUNTER_MODULO).astype(np.uint64)
        v = (seq << np.uint64(60)) | (dig.astype(np.uint64) << _DIGITAL_SHIFTS).sum(
            axis=1, dtype=np.uint64)
        v |= np.bitwise_or.reduce(a.astype(np.uint64) << _SHIFTS, axis=1)
        pad = v.astype("<u8").view(np.uint8).reshape(k, 8).copy()
        pad[:, 7] |= _crc_pad(pad)
        rows = pad[:, 8 - ch.frame_len:]
        return rows.tobytes()

    def to_adc(self, emg_uv: np.ndarray | None = None, acc_g: np.ndarray | None = None,
               other_adc: np.ndarray | None = None) -> np.ndarray:
        """Physical values -> (k, n_channels) ADC values (rounded, clipped).

        Channels that are neither EMG nor acc take ``other_adc`` (a (k, n)
        array whose EMG/acc columns are ignored) or mid-scale.
        """
        ch = self.channels
        k = next(np.asarray(x).shape[0] for x in (emg_uv, acc_g, other_adc) if x is not None)
        adc = np.empty((k, ch.n), np.float64)
        adc[:] = ch.max_adc // 2 + 1 if other_adc is None else np.asarray(other_adc)
        if emg_uv is not None and ch.emg_pos:
            x = np.asarray(emg_uv, dtype=np.float64).reshape(k, len(ch.emg_pos))
            adc[:, ch.emg_pos] = (x / (VCC_V / EMG_GAIN * 1e6) + 0.5) * ch.emg_full
        if acc_g is not None and ch.acc_pos:
            g = np.asarray(acc_g, dtype=np.float64).reshape(k, len(ch.acc_pos))
            adc[:, ch.acc_pos] = (g + 1.0) / 2.0 * (ch.cmax - ch.cmin) + ch.cmin
        return np.clip(np.rint(np.nan_to_num(adc)), 0, ch.max_adc).astype(np.int32)

    def encode(self, first_seq: int, emg_uv: np.ndarray | None = None,
               acc_g: np.ndarray | None = None, other_adc: np.ndarray | None = None,
               digital: np.ndarray | None = None) -> bytes:
        """Frames from physical values: ``emg_uv`` (k, n_emg), ``acc_g`` (k, n_acc)."""
        return self.encode_adc_block(first_seq, self.to_adc(emg_uv, acc_g, other_adc), digital)

    @staticmethod
    def version_reply(version: str = "BITalino_v5.2") -> bytes:
        """The board's answer to the version command (idle mode)."""
        return version.encode("ascii") + b"\n"


def rate_command(fs_hz: int) -> bytes:
    """Set the sample rate (1, 10, 100 or 1000 Hz; idle mode only).

    Examples
    --------
    >>> rate_command(1000).hex()
    'c3'
    """
    if int(fs_hz) not in RATES_HZ:
        raise ValueError(f"BITalino sample rate must be one of {RATES_HZ} Hz, got {fs_hz}")
    return bytes([(RATES_HZ.index(int(fs_hz)) << 6) | 0x03])


def start_command(analog_channels: Sequence[int] = DEFAULT_ANALOG,
                  fs_hz: int | None = None, simulated: bool = False) -> bytes:
    """Start acquisition of ``analog_channels`` (0-based), live or simulated.

    With ``fs_hz`` the rate command is sent first (both are idle-mode
    commands; the board handles them in order).

    Examples
    --------
    >>> start_command((0, 1, 2, 3), fs_hz=1000).hex()
    'c33d'
    """
    chans = sorted(set(int(c) for c in analog_channels))
    if not chans or any(not 0 <= c <= 5 for c in chans):
        raise ValueError(f"analog_channels must be distinct values in 0..5, got {analog_channels}")
    mask = sum(1 << c for c in chans)
    cmd = bytes([(mask << 2) | (0x02 if simulated else 0x01)])
    return (rate_command(fs_hz) if fs_hz is not None else b"") + cmd


def stop_command() -> bytes:
    """Stop acquisition (``0x00``)."""
    return b"\x00"


def version_command() -> bytes:
    """Ask for the version string (idle mode)."""
    return b"\x07"


class CommandParser:
    """Device side: host bytes in, :class:`Command` objects out.

    Tracks idle/acquisition mode, as the board interprets bytes by mode.
    Names: ``start`` (args ``analog_channels``, ``simulated``), ``stop``,
    ``set_rate`` (``fs_hz``), ``version``, ``state``, ``battery_threshold``
    (``value``), ``trigger`` (``outputs``), ``pwm`` (``value``), ``unknown``.

    Examples
    --------
    >>> p = CommandParser()
    >>> for c in p.feed(start_command((0, 2), fs_hz=100) + stop_command()):
    ...     print(c.name, c.args)
    set_rate {'fs_hz': 100}
    start {'analog_channels': [0, 2], 'simulated': False}
    stop {}
    """

    def __init__(self):
        self.acquiring = False
        self._pwm_pending = False

    def feed(self, data: bytes) -> list[Command]:
        """Parse the next bytes the host wrote."""
        out = []
        for b in bytes(data):
            raw = bytes([b])
            if self._pwm_pending:
                self._pwm_pending = False
                out.append(Command("pwm", {"value": b}, b"\xa3" + raw))
            elif b == 0xFF or (self.acquiring and b == 0x00):
                self.acquiring = False
                out.append(Command("stop", {}, raw))
            elif b == 0xA3:
                self._pwm_pending = True
            elif b & 0xF3 == 0xB3:
                out.append(Command("trigger", {"outputs": [(b >> 2) & 1, (b >> 3) & 1]}, raw))
            elif self.acquiring:
                out.append(Command("unknown", {}, raw))
            elif b == 0x07:
                out.append(Command("version", {}, raw))
            elif b == 0x0B:
                out.append(Command("state", {}, raw))
            elif b & 0x3F == 0x03:
                out.append(Command("set_rate", {"fs_hz": RATES_HZ[b >> 6]}, raw))
            elif b & 0x03 in (0x01, 0x02):
                self.acquiring = True
                chans = [c for c in range(6) if (b >> (2 + c)) & 1]
                out.append(Command("start", {"analog_channels": chans,
                                             "simulated": b & 0x03 == 0x02}, raw))
            elif b & 0x03 == 0x00:
                out.append(Command("battery_threshold", {"value": b >> 2}, raw))
            else:
                out.append(Command("unknown", {}, raw))
        return out
