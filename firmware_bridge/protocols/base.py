"""The interface every wire protocol module implements.

A protocol module (``cyton``, ``bitalino``, ``openframe``) is pure: bytes in,
packets out, no I/O, no clocks.  It provides:

- ``BOARD``: a :class:`BoardSpec` (name, default rates, channel labels, the
  command bytes a host sends to start/stop/reset the stream).
- ``Decoder``: a small stateful framer + parser.  ``feed(chunk) -> list[Packet]``
  accepts any split of the byte stream (one byte at a time or megabytes),
  never raises on arbitrary bytes, keeps a bounded buffer, resynchronises after
  a bad CRC/length/footer and counts what it skipped in ``stats``.
- ``Encoder``: the board side, used by the board simulator and by tests:
  physical samples in, the exact bytes a board would send out.

Counters: every packet carries the raw (wrapped) device counter it was sent
with (``counter``) and the counter's modulus (``counter_modulo``: 256 for a
1-byte counter, 16 for BITalino's 4-bit one, 2**32 for the open frame's
first-sample index).  Unwrapping and gap accounting happen in the source, not
here, so decoders stay pure functions of bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class BoardSpec:
    """Static description of a board type.

    Attributes
    ----------
    name : str
        ``"cyton"``, ``"bitalino"`` or ``"open"`` (the URL's ``board=`` value).
    emg_fs_hz, acc_fs_hz : float
        Default sample rates (the open board announces its own in INFO frames).
    emg_channels, acc_channels : tuple of str
        Channel labels as the board names them.
    baudrate : int
        Serial line rate (ignored over BLE / TCP).
    """

    name: str
    emg_fs_hz: float
    acc_fs_hz: float
    emg_channels: tuple[str, ...]
    acc_channels: tuple[str, ...] = ("acc_x", "acc_y", "acc_z")
    baudrate: int = 115200


@dataclass
class Packet:
    """One decoded frame.

    Attributes
    ----------
    stream : str
        ``"emg"`` and ``"acc"`` carry samples; control/status frames use other
        names (``"status"``, ``"info"``, ``"time_sync"``, ``"reply"``...).
    counter : int
        Raw device counter of the frame (wrapped), see ``counter_modulo``.
    counter_modulo : int
        Modulus of ``counter``.
    samples : numpy.ndarray or None
        ``(n_samples, n_channels)`` float64 in physical units (uV for EMG,
        g for accelerometer); None for frames without samples.
    samples_per_count : int
        How many samples one counter step stands for (1 for per-sample
        counters; the open frame counts samples directly so it is 1 too,
        with ``counter`` the index of the first sample).
    device_time_us : int or None
        Device clock at the frame, where the protocol carries one.
    offset : int
        Byte offset of the frame's first byte in the decoder's input stream.
    meta : dict
        Protocol-specific extras (battery, firmware version, gains, ...).
    """

    stream: str
    counter: int
    counter_modulo: int
    samples: np.ndarray | None = None
    samples_per_count: int = 1
    device_time_us: int | None = None
    offset: int = 0
    meta: dict = field(default_factory=dict)


@dataclass
class DecoderStats:
    """What a decoder saw: good frames, bad frames, bytes thrown away."""

    frames_ok: int = 0
    frames_bad: int = 0          # CRC/length/footer failures
    bytes_skipped: int = 0       # bytes discarded while resynchronising
    bytes_in: int = 0
    counters_repaired: int = 0   # frame counters corrupted on the line, fixed from neighbours


@dataclass
class Command:
    """One host->device command as the board receives it (device side).

    The board simulator feeds the bytes the host wrote into a protocol's
    ``CommandParser`` and answers each ``Command``.

    Attributes
    ----------
    name : str
        Protocol-independent where possible: ``"start"``, ``"stop"``,
        ``"reset"``, ``"time_sync"``, ``"info"``, ``"set_rate"``,
        ``"channel_settings"``...; ``"unknown"`` for bytes the board ignores.
    args : dict
        Decoded arguments (e.g. ``{"fs_hz": 1000}``, ``{"token": 7}``).
    raw : bytes
        The command's bytes as received.
    """

    name: str
    args: dict = field(default_factory=dict)
    raw: bytes = b""
