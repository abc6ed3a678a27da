"""How much the source's own work (counters, clock fit, blocks) adds to decoding.

Run by hand: ``python benchmarks/bench_sources.py [seconds] [chunk_s]``.  For each
protocol, the board simulator makes ``seconds`` of its byte stream (3 % of
frames dropped); then, in chunks of ``chunk_s`` of signal (default 0.1 s, the
live source's batch), it is (a) only decoded (the
baseline, measured in the same run) and (b) decoded and assembled into
blocks and gap events as a live source does.  Printed: real-time factor of
(b) and the ratio (b)/(a).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from crampwatch.firmware_bridge.boardsim import BoardSim, SyntheticSignal
from crampwatch.firmware_bridge.protocols import bitalino, cyton, openframe
from crampwatch.firmware_bridge.sources._assembly import StreamAssembler

SETUP = {
    # decoder, start command, rates, bytes per frame per stream (as the sessions say)
    "cyton": (cyton.Decoder, cyton.start_command(), {"emg": 250.0, "acc": 25.0},
              {"emg": cyton.PACKET_LEN}),
    "bitalino": (bitalino.Decoder, bitalino.start_command(fs_hz=1000),
                 {"emg": 1000.0, "acc": 1000.0}, {"emg": 7, "acc": 7}),
    # the open frame merged as the live source decodes it (one packet per run of frames)
    "open": (lambda: openframe.Decoder(merge=True), openframe.HostEncoder().start(),
             {"emg": 1000.0, "acc": 100.0}, {}),
}


def stream_bytes(proto: str, seconds: float) -> tuple[bytes, float]:
    sim = BoardSim(proto, SyntheticSignal(hours=seconds / 3600 + 0.01, seed=1), seed=1,
                   drop_rate=0.03, speed=0)
    sim.host_bytes(SETUP[proto][1], 0.0)
    parts = []
    while sim.signal_index < seconds * sim.model.emg_fs_hz:
        parts.append(sim.due_bytes(0.0))
    return b"".join(parts), sim.model.emg_fs_hz


def chunks(data: bytes, chunk_s: float, bytes_per_s: float):
    n = max(1, int(chunk_s * bytes_per_s))
    return [data[i:i + n] for i in range(0, len(data), n)]


def run(proto: str, seconds: float, chunk_s: float = 0.1) -> None:
    make_decoder, _, rates, frame_bytes = SETUP[proto]
    data, _ = stream_bytes(proto, seconds)
    parts = chunks(data, chunk_s, len(data) / seconds)        # a read every chunk_s
    t = time.perf_counter()
    dec = make_decoder()
    for p in parts:
        dec.feed(p)
    base = time.perf_counter() - t
    t = time.perf_counter()
    dec = make_decoder()
    asm = {s: StreamAssembler(s, fs, frame_bytes=frame_bytes.get(s)) for s, fs in rates.items()}
    n_items = 0
    for k, p in enumerate(parts):
        by = {}
        for pk in dec.feed(p):
            if pk.stream in asm:
                by.setdefault(pk.stream, []).append(pk)
        for s, lst in by.items():
            n_items += len(asm[s].feed(lst, 1000.0 + k * chunk_s))
    full = time.perf_counter() - t
    gaps = {s: a.gap_samples for s, a in asm.items()}
    print(f"{proto:9s} {seconds:.0f} s of stream: decode {base:.3f} s, decode+assemble "
          f"{full:.3f} s = {seconds / full:.0f}x real time, ratio {full / base:.2f} "
          f"({n_items} items, gaps {gaps})")


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    chunk = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    np.seterr(all="ignore")
    for proto in SETUP:
        run(proto, secs, chunk)
