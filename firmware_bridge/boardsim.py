"""The board simulator: a process that speaks a board's protocol byte-exactly.

``crampwatch board-sim`` (:mod:`crampwatch.tools.board_sim`) is a thin shell
over this module.  A :class:`BoardSim` answers the host's commands the way the
board does (it waits for the start command before streaming, stops on stop,
resets on the Cyton's ``v``) and sends frames made by the protocol's encoder
from a signal (a :class:`~crampwatch.firmware_bridge.synth.SyntheticNight`
or a recording), paced by a monotonic schedule at ``speed`` times real time.
It can lose frames (``drop_rate``) and flip a bit in frames
(``corrupt_rate``) with a seeded RNG, send open frames whose sample counter
jumps (``counter_glitches``: a firmware glitch with a valid CRC), and keeps a
tally of what it did so tests compare the host's gap accounting with the
truth.

:func:`serve_pty` and :func:`serve_tcp` put a sim behind a pseudo-terminal
(the host opens the slave as a serial port) or a TCP port.

Examples
--------
>>> sim = BoardSim("cyton", SyntheticSignal(hours=0.01, seed=1, emg_fs_hz=250.0,
...                                          acc_fs_hz=25.0), speed=0)
>>> reply = sim.host_bytes(b"v", now_s=0.0)
>>> reply.endswith(b"$$$")
True
>>> sim.host_bytes(b"b", now_s=0.0)
b''
>>> len(sim.due_bytes(now_s=0.0)) % 33
0
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import signal as _signal
import socket
import time
import tty
from dataclasses import dataclass, field

import numpy as np

from crampwatch.errors import ConfigError

__all__ = ["BoardSim", "SyntheticSignal", "RecordingSignal", "Tally", "serve_pty", "serve_tcp",
           "PROTOCOLS"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("cyton", "bitalino", "open")

#: frames at the start of each streaming session that are never dropped or
#: corrupted, so that the host's decoder can lock (BITalino needs 4 in a row)
PROTECT_FRAMES = 8
#: bytes the simulator buffers for a host that does not read before it
#: drops frames (as a board's radio/UART FIFO overflows), counted as overflow
OUT_BUFFER_MAX = 1 << 20


# --- signals ------------------------------------------------------------------
class SyntheticSignal:
    """The synthetic night, rendered at the rates the board asks for.

    Parameters
    ----------
    hours, seed : float, int
        As in :class:`~crampwatch.firmware_bridge.synth.NightSpec`.
    emg_fs_hz, acc_fs_hz : float
        Initial rates; :meth:`at_rates` returns the same night at other rates
        (a BITalino host may set its rate).
    """

    def __init__(self, hours: float = 8.0, seed: int = 0, emg_fs_hz: float = 1000.0,
                 acc_fs_hz: float = 100.0, **spec):
        self.hours, self.seed, self._spec = hours, seed, spec
        self.emg_fs_hz, self.acc_fs_hz = float(emg_fs_hz), float(acc_fs_hz)
        self._night = None
        self.duration_s = float(hours) * 3600.0

    @property
    def night(self):
        """The :class:`~crampwatch.firmware_bridge.synth.SyntheticNight`, planned on first use."""
        if self._night is None:
            from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight

            self._night = SyntheticNight(NightSpec(
                hours=self.hours, seed=self.seed, emg_fs_hz=self.emg_fs_hz,
                acc_fs_hz=self.acc_fs_hz, **self._spec))
            self.duration_s = float(self._night.duration_s)
        return self._night

    def at_rates(self, emg_fs_hz: float, acc_fs_hz: float) -> SyntheticSignal:
        if (float(emg_fs_hz), float(acc_fs_hz)) == (self.emg_fs_hz, self.acc_fs_hz):
            return self
        return SyntheticSignal(self.hours, self.seed, emg_fs_hz, acc_fs_hz, **self._spec)

    def render_emg(self, start: int, n: int) -> np.ndarray:
        """(n,) microvolts; zeros past the end of the night."""
        return _pad(self.night.render_emg, start, n, int(self.duration_s * self.emg_fs_hz), 1)

    def render_acc(self, start: int, n: int) -> np.ndarray:
        """(n, 3) g; the last posture held past the end."""
        return _pad(self.night.render_acc, start, n, int(self.duration_s * self.acc_fs_hz), 3)


def _pad(render, start, n, total, width):
    start = int(start)
    n = int(n)
    out = np.zeros((n, width) if width > 1 else (n,), np.float64)
    k = max(0, min(n, total - start))
    if k:
        out[:k] = render(start, k)
    return out


class RecordingSignal:
    """A recording (EDF/BDF or capture file) as the board's signal.

    Read forward once, block by block (flat memory); rendered at the board's
    rate by linear interpolation when the file's rate differs.  Gaps in the
    file become zeros.  Only forward access is supported, which is all a
    board needs.
    """

    def __init__(self, path: str, emg: str | None = None, acc=None,
                 emg_fs_hz: float | None = None, acc_fs_hz: float | None = None):
        from crampwatch.firmware_bridge.readers import open_recording

        self.path = path
        self._reader = open_recording(path, emg=emg, acc=acc)
        self.duration_s = float(self._reader.duration_s)
        self.file_fs = {"emg": self._reader.emg.fs_hz,
                        "acc": self._reader.acc.fs_hz if self._reader.acc is not None else None}
        self.emg_fs_hz = float(emg_fs_hz or self.file_fs["emg"])
        self.acc_fs_hz = float(acc_fs_hz or self.file_fs["acc"] or 25.0)
        self._blocks = self._reader.blocks(block_s=10.0)
        self._buf = {"emg": np.zeros((0, 1)), "acc": np.zeros((0, 3))}
        self._buf_start = {"emg": 0, "acc": 0}
        self._done = False
        self._views: dict = {}

    def at_rates(self, emg_fs_hz, acc_fs_hz):
        self.emg_fs_hz, self.acc_fs_hz = float(emg_fs_hz), float(acc_fs_hz)
        return self

    def _fill(self, stream: str, upto: int) -> None:
        from crampwatch.firmware_bridge.types import SampleBlock

        while not self._done and self._buf_start[stream] + self._buf[stream].shape[0] <= upto:
            try:
                item = next(self._blocks)
            except StopIteration:
                self._done = True
                self._reader.close()
                break
            if not isinstance(item, SampleBlock) or item.stream not in self._buf:
                continue
            buf = self._buf[item.stream]
            end = self._buf_start[item.stream] + buf.shape[0]
            data = np.asarray(item.data, dtype=np.float64).reshape(item.n_samples, -1)
            if data.shape[1] != buf.shape[1]:
                data = data[:, :buf.shape[1]] if data.shape[1] > buf.shape[1] else \
                    np.pad(data, ((0, 0), (0, buf.shape[1] - data.shape[1])))
            if item.first_index > end:           # a gap in the file: zeros
                data = np.concatenate([np.zeros((item.first_index - end, buf.shape[1])), data])
            elif item.first_index < end:
                data = data[end - item.first_index:]
            self._buf[item.stream] = np.concatenate([buf, data])

    def _render(self, stream: str, start: int, n: int, fs: float) -> np.ndarray:
        ffs = self.file_fs[stream]
        width = self._buf[stream].shape[1]
        if ffs is None:
            out = np.zeros((n, width))
            if stream == "acc":
                out[:, 2] = 1.0
            return out
        pos = (start + np.arange(n)) * (ffs / fs)
        lo = int(math.floor(pos[0])) if n else 0
        hi = int(math.ceil(pos[-1])) + 1 if n else 0
        self._fill(stream, hi)
        buf, b0 = self._buf[stream], self._buf_start[stream]
        out = np.zeros((n, width))
        avail = np.arange(b0, b0 + buf.shape[0])
        if buf.shape[0]:
            for c in range(width):
                out[:, c] = np.interp(pos, avail, buf[:, c], left=0.0, right=0.0)
        # forget what is behind the read position
        keep_from = max(0, lo - 1 - b0)
        if keep_from:
            self._buf[stream] = buf[keep_from:]
            self._buf_start[stream] = b0 + keep_from
        return out

    def render_emg(self, start: int, n: int) -> np.ndarray:
        return self._render("emg", start, n, self.emg_fs_hz)[:, 0]

    def render_acc(self, start: int, n: int) -> np.ndarray:
        return self._render("acc", start, n, self.acc_fs_hz)


# --- board models ---------------------------------------------------------------
@dataclass
class Frames:
    """Encoded frames of one batch: concatenated bytes plus per-frame facts."""

    data: bytes
    lengths: np.ndarray              # bytes per frame
    samples: dict = field(default_factory=dict)   # stream -> samples per frame (array)


class _Model:
    """Device side of one protocol: commands in, replies and frames out."""

    name = ""
    frame_samples = 1

    def __init__(self, signal):
        self.signal = signal
        self.streaming = False
        self.counter0 = 0            # emg sample index where the device counter is 0

    @property
    def emg_fs_hz(self) -> float:
        return self.signal.emg_fs_hz

    def commands(self, data: bytes) -> list:
        return self.parser.feed(data)


class _CytonModel(_Model):
    name = "cyton"

    def __init__(self, signal):
        from crampwatch.firmware_bridge.protocols import cyton

        self.p = cyton
        super().__init__(signal.at_rates(cyton.BOARD.emg_fs_hz, cyton.BOARD.acc_fs_hz))
        self.parser = cyton.CommandParser()
        self.encoder = cyton.Encoder()
        self.decim = int(round(self.signal.emg_fs_hz / self.signal.acc_fs_hz))

    def handle(self, cmd, sim) -> bytes:
        if cmd.name == "reset":
            self.streaming = False
            self.encoder = self.p.Encoder()
            self.counter0 = sim.signal_index
            return self.encoder.reset_reply()
        if cmd.name == "start":
            self.streaming = True
        elif cmd.name == "stop":
            self.streaming = False
        elif cmd.name == "channel_settings":
            self.encoder.set_gain(cmd.args["channel"], cmd.args["gain"])
        elif cmd.name == "defaults":
            self.encoder = self.p.Encoder()
        return b""

    def encode(self, start: int, n_frames: int) -> Frames:
        n = n_frames
        emg = np.zeros((n, self.p.N_CHANNELS))
        emg[:, 0] = self.signal.render_emg(start, n)
        idx = start + np.arange(n)
        has_acc = idx % self.decim == 0
        acc = np.full((n, 3), np.nan)
        if has_acc.any():
            a_idx = idx[has_acc] // self.decim
            acc[has_acc] = self.signal.render_acc(int(a_idx[0]), int(a_idx[-1] - a_idx[0] + 1))
        data = self.encoder.encode_block((start - self.counter0) % 256, emg, acc)
        return Frames(data, np.full(n, self.p.PACKET_LEN),
                      {"emg": np.ones(n, np.int64), "acc": has_acc.astype(np.int64)})


class _BitalinoModel(_Model):
    name = "bitalino"

    def __init__(self, signal):
        from crampwatch.firmware_bridge.protocols import bitalino

        self.p = bitalino
        fs = bitalino.BOARD.emg_fs_hz
        super().__init__(signal.at_rates(fs, fs))
        self.parser = bitalino.CommandParser()
        self.analog = tuple(bitalino.DEFAULT_ANALOG)
        self.encoder = None

    def handle(self, cmd, sim) -> bytes:
        p = self.p
        if cmd.name == "version":
            return p.Encoder.version_reply()
        if cmd.name == "set_rate":
            fs = float(cmd.args["fs_hz"])
            self.signal = self.signal.at_rates(fs, fs)
        elif cmd.name == "start":
            self.analog = tuple(cmd.args["analog_channels"])
            acc = tuple(c for c in p.DEFAULT_ACC if c in self.analog)
            emg = (self.analog[0],) if 0 not in self.analog else (0,)
            self.encoder = p.Encoder(analog_channels=self.analog, emg=emg, acc=acc)
            self.has_acc = bool(acc)
            self.counter0 = sim.signal_index
            self.streaming = True
        elif cmd.name == "stop":
            self.streaming = False
        return b""

    def encode(self, start: int, n_frames: int) -> Frames:
        n = n_frames
        emg = self.signal.render_emg(start, n).reshape(n, 1)
        acc = self.signal.render_acc(start, n) if self.has_acc else None
        if acc is not None:
            acc = acc[:, :len(self.encoder.channels.acc_pos)]
        data = self.encoder.encode((start - self.counter0) % 16, emg_uv=emg, acc_g=acc)
        L = self.encoder.channels.frame_len
        ones = np.ones(n, np.int64)
        return Frames(data, np.full(n, L),
                      {"emg": ones, "acc": ones if self.has_acc else 0 * ones})


class _OpenModel(_Model):
    """The open-frame board: INFO on request, EMG frames of 20 samples, IMU frames
    of up to 10 samples as they complete, a STATUS frame every 10 s of device time.
    Its EMG rate is the signal's (announced in INFO); channel 1 carries the
    signal, channel 2 is a quiet second electrode pair (zeros)."""

    name = "open"
    frame_samples = 20
    imu_frame_samples = 10
    status_every_s = 10.0
    emg_uv_per_count = 0.25
    acc_counts_per_g = 4096.0

    def __init__(self, signal):
        from crampwatch.firmware_bridge.protocols import openframe

        self.p = openframe
        super().__init__(signal)
        self.parser = openframe.CommandParser()
        self.info = openframe.Info(
            emg_fs_hz=self.signal.emg_fs_hz, imu_fs_hz=self.signal.acc_fs_hz,
            emg_uv_per_count=self.emg_uv_per_count, acc_counts_per_g=self.acc_counts_per_g,
            adc_bits=16, emg_channel_mask=0x03, imu_channel_mask=0x07, firmware=(1, 0, 0),
            emg_frame_samples=self.frame_samples, frontend_gain=1000.0, name="crampwatch-sim")
        self.encoder = openframe.Encoder(self.info)
        self.acc_next = 0            # next acc sample index to send
        self.next_status_index = 0
        self.glitches: list = []     # [emg index, counter jump], sorted: see BoardSim
        self.glitched: list = []     # [emg index, counter jump] of each frame sent glitched

    def _us(self, emg_index: int) -> int:
        return int(emg_index * 1_000_000 // self.signal.emg_fs_hz)

    def handle(self, cmd, sim) -> bytes:
        if cmd.name == "info":
            return self.encoder.encode_info(self._us(sim.signal_index))
        if cmd.name == "start":
            if not self.streaming:
                # the index counts samples since the device clock started (it runs on
                # while not streaming), so a host that reconnects sees the gap exactly
                self.acc_next = int(sim.signal_index * self.signal.acc_fs_hz
                                    // self.signal.emg_fs_hz)
            self.streaming = True
        elif cmd.name == "stop":
            self.streaming = False
        elif cmd.name == "time_sync":
            now = self._us(sim.signal_index)
            return self.encoder.encode_time_sync(now, cmd.args["token"], now)
        return b""

    def encode(self, start: int, n_frames: int) -> Frames:
        spf = self.frame_samples
        fs, afs = self.signal.emg_fs_hz, self.signal.acc_fs_hz
        emg = self.signal.render_emg(start, n_frames * spf)
        parts, lens, n_emg, n_acc = [], [], [], []

        def add(wire, first, ne, na):
            parts.append(wire)
            lens.append(len(wire))
            n_emg.append(ne)
            n_acc.append(na)

        for k in range(n_frames):
            i0 = start + k * spf
            block = np.zeros((spf, 2))
            block[:, 0] = emg[k * spf:(k + 1) * spf]
            counter = i0 - self.counter0
            if self.glitches and i0 >= self.glitches[0][0]:
                jump = self.glitches.pop(0)[1]
                counter += jump        # this one frame only: the firmware glitched
                self.glitched.append([int(i0), int(jump)])
            add(self.encoder.encode_emg(counter, self._us(i0), block), i0, spf, 0)
            acc_due = int((i0 + spf) * afs // fs)
            while acc_due - self.acc_next >= self.imu_frame_samples:
                a0, m = self.acc_next, self.imu_frame_samples
                acc = self.signal.render_acc(a0, m)
                add(self.encoder.encode_imu(a0, int(a0 * 1_000_000 // afs), acc),
                    i0, 0, m)
                self.acc_next += m
            if i0 + spf > self.next_status_index:
                self.next_status_index = i0 + int(self.status_every_s * fs)
                add(self.encoder.encode_status(self._us(i0), battery_mv=3900, battery_pct=80,
                                               flags=0b10, uptime_s=int(i0 / fs)), i0, 0, 0)
        return Frames(b"".join(parts), np.array(lens),
                      {"emg": np.array(n_emg), "acc": np.array(n_acc)})


_MODELS = {"cyton": _CytonModel, "bitalino": _BitalinoModel, "open": _OpenModel}


# --- the simulator ----------------------------------------------------------------
@dataclass
class Tally:
    """What the simulator did, for tests to compare with what the host reports."""

    protocol: str = ""
    frames_sent: int = 0
    frames_dropped: int = 0
    frames_corrupted: int = 0
    frames_overflow: int = 0
    bytes_sent: int = 0
    samples_sent: dict = field(default_factory=dict)
    samples_dropped: dict = field(default_factory=dict)
    #: one ``[session, stream, first_index, n_samples]`` per stream of each
    #: dropped frame; ``first_index`` counts that stream's samples from the
    #: start of the streaming session (session 1 is the first start), which
    #: is the index a host that saw the session's first frame gives them
    dropped: list = field(default_factory=list)
    #: ``[session, stream, first_index, n_samples]`` of each corrupted frame
    corrupted: list = field(default_factory=list)
    #: ``[emg index, counter jump]`` of each open frame sent with a glitched counter
    glitched: list = field(default_factory=list)
    sessions: int = 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def line(self) -> str:
        return (f"board-sim {self.protocol}: frames sent {self.frames_sent}, dropped "
                f"{self.frames_dropped}, corrupted {self.frames_corrupted}, overflow "
                f"{self.frames_overflow}")


class BoardSim:
    """A simulated board: host bytes in, replies and paced frames out.

    Parameters
    ----------
    protocol : {"cyton", "bitalino", "open"}
    signal : SyntheticSignal or RecordingSignal
    seed : int
        Seeds the drop/corrupt RNG.
    drop_rate, corrupt_rate : float
        Probability per frame of losing it / flipping one bit in one of its
        bytes (a line error).
    speed : float
        Times real time; 0 (or ``inf``) sends as fast as the host reads.
    max_tally_list : int
        Keep at most this many dropped/corrupted frame records in the tally.
    counter_glitches : list of (float, int)
        Open frame only: ``(seconds, jump)``: the first EMG frame at or after
        ``seconds`` of signal carries its sample counter plus ``jump`` (mod
        2**32), with a valid CRC; the frames after it are normal again.
    """

    def __init__(self, protocol: str, signal, seed: int = 0, drop_rate: float = 0.0,
                 corrupt_rate: float = 0.0, speed: float = 1.0, max_tally_list: int = 100_000,
                 counter_glitches=()):
        if protocol not in _MODELS:
            raise ConfigError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})",
                              key="protocol")
        for name, rate in (("drop", drop_rate), ("corrupt", corrupt_rate)):
            if not 0.0 <= rate < 1.0:
                raise ConfigError(f"--{name} must be a probability in [0, 1), got {rate}",
                                  key=name)
        if speed < 0:
            raise ConfigError(f"--speed must be >= 0, got {speed}", key="speed")
        self.protocol = protocol
        self.model = _MODELS[protocol](signal)
        self.rng = np.random.default_rng(seed)
        self.drop_rate = float(drop_rate)
        self.corrupt_rate = float(corrupt_rate)
        self.speed = float(speed) if speed and math.isfinite(speed) else 0.0
        self.max_tally_list = max_tally_list
        self.tally = Tally(protocol=protocol)
        if counter_glitches:
            if protocol != "open":
                raise ConfigError("--counter-glitch is for the open protocol (its frames carry "
                                  "a 32-bit sample counter)", key="counter_glitch")
            fs = self.model.signal.emg_fs_hz
            self.model.glitches = sorted([int(round(float(t) * fs)), int(j)]
                                         for t, j in counter_glitches)
            self.tally.glitched = self.model.glitched
        self.signal_index = 0            # next emg sample index to send
        self._t0: float | None = None    # origin of the device's sample clock
        self._i0 = 0
        self._fs_sched = 0.0
        self._session_frames = 0
        self._session_counts: dict = {}

    def warm_up(self) -> None:
        """Plan the night and render its first samples now (imports included),
        so that the first frames go out on time once a host starts streaming."""
        self.model.signal.render_emg(0, 1)
        self.model.signal.render_acc(0, 1)

    @property
    def streaming(self) -> bool:
        return self.model.streaming

    @property
    def frame_samples(self) -> int:
        return self.model.frame_samples

    def host_bytes(self, data: bytes, now_s: float) -> bytes:
        """Bytes the host wrote -> the board's immediate replies."""
        out = bytearray()
        for cmd in self.model.commands(data):
            self._advance_idle(now_s)
            was = self.model.streaming
            out += self.model.handle(cmd, self)
            logger.debug("board-sim: command %s %s", cmd.name, cmd.args)
            if self._t0 is not None and self.model.emg_fs_hz != self._fs_sched:
                # the rate changed (BITalino): carry the clock over to the new rate
                self.signal_index = int(self.signal_index * self.model.emg_fs_hz
                                        // self._fs_sched)
                self._t0, self._i0 = now_s, self.signal_index
                self._fs_sched = self.model.emg_fs_hz
            if self.model.streaming and not was:
                if self._t0 is None:            # the device clock starts at the first start
                    self._t0, self._i0 = now_s, self.signal_index
                    self._fs_sched = self.model.emg_fs_hz
                self._session_frames = 0
                self._session_counts = {}
                self.tally.sessions += 1
        return bytes(out)

    def _advance_idle(self, now_s: float) -> None:
        """While not streaming, the board's sample clock runs on (paced mode only):
        samples of that time are never sent, so the next session starts later
        in the signal, as a real board's would."""
        if self._t0 is None or self.speed == 0.0 or self.model.streaming:
            return
        due = self._i0 + int(math.floor((now_s - self._t0) * self._fs_sched * self.speed))
        spf = self.frame_samples
        if due > self.signal_index:
            self.signal_index += (due - self.signal_index) // spf * spf

    def link_lost(self) -> None:
        """The host went away: a board stops streaming when its link drops."""
        self.model.streaming = False
        self.model.parser = type(self.model.parser)()

    def next_due_s(self) -> float | None:
        """Monotonic time the next frame is due, None when not streaming or unpaced."""
        if not self.model.streaming or self.speed == 0.0:
            return None
        fs = self.model.emg_fs_hz * self.speed
        nxt = self.signal_index + self.frame_samples
        return self._t0 + (nxt - self._i0) / fs

    def due_bytes(self, now_s: float, max_frames: int | None = None) -> bytes:
        """Frames due by ``now_s`` on the schedule (or a batch when unpaced), after loss."""
        if not self.model.streaming:
            return b""
        fs = self.model.emg_fs_hz
        spf = self.frame_samples
        if self.speed == 0.0:
            n_frames = max(1, int(0.05 * fs) // spf)
        else:
            due = self._i0 + int(math.floor((now_s - self._t0) * fs * self.speed))
            n_frames = (due - self.signal_index) // spf
        if max_frames is not None:
            n_frames = min(n_frames, max_frames)
        if n_frames <= 0:
            return b""
        fr = self.model.encode(self.signal_index, n_frames)
        self.signal_index += n_frames * spf
        return self._lossy(fr)

    def overflow(self, now_s: float) -> None:
        """The host does not read: frames due now are lost, as in a full FIFO."""
        if self.speed == 0.0 or not self.model.streaming:
            return
        spf = self.frame_samples
        due = self._i0 + int(math.floor((now_s - self._t0) * self.model.emg_fs_hz * self.speed))
        n_frames = (due - self.signal_index) // spf
        if n_frames > 0:
            self.signal_index += n_frames * spf
            self.tally.frames_overflow += n_frames

    def _lossy(self, fr: Frames) -> bytes:
        n = fr.lengths.size
        t = self.tally
        drop = self.rng.random(n) < self.drop_rate
        corrupt = (self.rng.random(n) < self.corrupt_rate) & ~drop
        protect = max(0, PROTECT_FRAMES - self._session_frames)
        drop[:protect] = False
        corrupt[:protect] = False
        self._session_frames += n
        per = {s: np.broadcast_to(np.asarray(c, np.int64), (n,)) for s, c in fr.samples.items()}
        # index of each frame's first sample in its stream, counted from the session start
        first = {}
        for s, c in per.items():
            base = self._session_counts.get(s, 0)
            first[s] = base + np.concatenate(([0], np.cumsum(c)[:-1]))
            self._session_counts[s] = base + int(c.sum())
        buf = np.frombuffer(fr.data, np.uint8).copy()
        starts = np.concatenate(([0], np.cumsum(fr.lengths)[:-1]))

        def record(rows, into):
            for r in rows.tolist():
                for s in per:
                    if per[s][r] and len(into) < self.max_tally_list:
                        into.append([t.sessions, s, int(first[s][r]), int(per[s][r])])

        if corrupt.any():
            rows = np.flatnonzero(corrupt)
            where = starts[rows] + (self.rng.random(rows.size) * fr.lengths[rows]).astype(np.int64)
            bits = self.rng.integers(0, 8, rows.size)
            buf[where] ^= (1 << bits).astype(np.uint8)
            t.frames_corrupted += rows.size
            record(rows, t.corrupted)
        if drop.any():
            rows = np.flatnonzero(drop)
            t.frames_dropped += rows.size
            for s, c in per.items():
                t.samples_dropped[s] = t.samples_dropped.get(s, 0) + int(c[rows].sum())
            record(rows, t.dropped)
        for s, c in per.items():
            t.samples_sent[s] = t.samples_sent.get(s, 0) + int(c[~drop].sum())
        t.frames_sent += int((~drop).sum())
        out = buf[np.repeat(~drop, fr.lengths)].tobytes()
        t.bytes_sent += len(out)
        return out


# --- serving ------------------------------------------------------------------------
def _install_sigterm(flag: dict):
    def handler(signum, frame):
        flag["stop"] = True
    try:
        return _signal.signal(_signal.SIGTERM, handler)
    except ValueError:            # not in the main thread (tests): the caller stops us
        return None


def _loop(sim: BoardSim, write_fn, wait_fds_fn, on_readable, stop_flag: dict,
          max_s: float | None) -> None:
    """The select loop shared by the pty and TCP servers."""
    out = bytearray()
    t_end = None if max_s is None else time.monotonic() + max_s
    while not stop_flag.get("stop"):
        now = time.monotonic()
        if t_end is not None and now >= t_end:
            break
        due = sim.next_due_s()
        timeout = 0.1 if due is None else min(0.1, max(0.0, due - now))
        if sim.streaming and sim.speed == 0.0 and len(out) < 65536:
            timeout = 0.0
        rfds, wfd = wait_fds_fn()
        wl = [wfd] if (out and wfd is not None) else []
        try:
            r, w, _ = select.select(rfds, wl, [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in r:
            reply = on_readable(fd, now)
            if reply is None:        # link lost
                out.clear()
            elif reply:
                out += reply
        if sim.streaming:
            if wfd is None or len(out) >= OUT_BUFFER_MAX:
                sim.overflow(now)            # nobody reads: the board's FIFO overflows
            elif sim.speed == 0.0:
                if len(out) < 65536:
                    out += sim.due_bytes(now)
            else:
                out += sim.due_bytes(now)
        if out and wfd is not None and (w or not wl):
            try:
                n = write_fn(bytes(out[:65536]))
                del out[:n]
            except BlockingIOError:
                pass
            except OSError as exc:
                logger.info("board-sim: write failed: %s", exc)
                out.clear()


def serve_pty(sim: BoardSim, announce, stop_flag: dict | None = None,
              max_s: float | None = None) -> None:
    """Serve ``sim`` on a new pty pair; ``announce(path)`` gets the slave's path.

    The slave is put in raw mode (no echo, no line editing) and the
    simulator keeps it open, so the path stays valid while hosts come and go.
    """
    stop_flag = stop_flag if stop_flag is not None else {}
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    prev = _install_sigterm(stop_flag)
    announce(path)

    def on_readable(fd, now):
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            return b""
        except OSError:
            return b""
        return sim.host_bytes(data, now)

    try:
        _loop(sim, lambda b: os.write(master, b), lambda: ([master], master),
              on_readable, stop_flag, max_s)
    finally:
        os.close(master)
        os.close(slave)
        if prev is not None:
            _signal.signal(_signal.SIGTERM, prev)


def serve_tcp(sim: BoardSim, port: int, announce, host: str = "127.0.0.1",
              stop_flag: dict | None = None, max_s: float | None = None) -> None:
    """Serve ``sim`` on ``host:port`` (0 picks a free port); ``announce(url)``.

    One host at a time: a new connection replaces the old one; when the host
    goes away the board stops streaming, as a board does when its link drops.
    """
    stop_flag = stop_flag if stop_flag is not None else {}
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(1)
    lsock.setblocking(False)
    prev = _install_sigterm(stop_flag)
    announce(f"tcp://{host}:{lsock.getsockname()[1]}")
    state = {"conn": None}

    def drop_conn():
        if state["conn"] is not None:
            try:
                state["conn"].close()
            except OSError:
                pass
            state["conn"] = None
            sim.link_lost()

    def wait_fds():
        fds = [lsock]
        if state["conn"] is not None:
            fds.append(state["conn"])
        return fds, state["conn"]

    def on_readable(fd, now):
        if fd is lsock:
            try:
                conn, _ = lsock.accept()
            except BlockingIOError:
                return b""
            drop_conn()
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state["conn"] = conn
            return None
        try:
            data = fd.recv(4096)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:
            drop_conn()
            return None
        return sim.host_bytes(data, now)

    def write(b):
        return state["conn"].send(b)

    try:
        _loop(sim, write, wait_fds, on_readable, stop_flag, max_s)
    finally:
        drop_conn()
        lsock.close()
        if prev is not None:
            _signal.signal(_signal.SIGTERM, prev)


def write_tally(tally: Tally, path: str) -> None:
    """Write the tally as JSON, atomically (tests read it after the process ends)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(tally.as_dict(), fh)
    os.replace(tmp, path)
