"""Throughput of the wire-protocol decoders (run by hand).

    python benchmarks/bench_decoders.py [--seconds 60] [--repeat 3]

For each board it encodes ``--seconds`` of a realistic stream with the
protocol's own Encoder, then times ``Decoder.feed`` over it in chunks of the
sizes a transport hands over (serial reads, BLE notifications).  It prints
bytes/s, "x real time" (stream seconds decoded per wall second: the target is
50x the board's rate on one core), and the ratio to a baseline measured in the
same run on the same bytes (the least work any decoder must do):

* open frame: a bare ``bytes.split`` + ``cobs.decode`` + ``binascii.crc_hqx`` loop;
* Cyton and BITalino: ``numpy.frombuffer`` + reshape of the same bytes.

Cyton and BITalino run twice: one packet per frame (default) and
``merge=True`` (one packet per run of consecutive frames).
"""

from __future__ import annotations

import argparse
import binascii
import time

import numpy as np
from cobs import cobs
from crampwatch.firmware_bridge.protocols import bitalino, cyton, openframe


def cyton_stream(seconds: float, rng) -> bytes:
    n = int(250 * seconds)
    acc = np.full((n, 3), np.nan)
    acc[::10] = rng.normal(0, 0.5, (len(range(0, n, 10)), 3))
    return cyton.Encoder().encode_block(0, rng.normal(0, 100, (n, 8)), acc)


def bitalino_stream(seconds: float, rng) -> bytes:
    n = int(1000 * seconds)
    return bitalino.Encoder().encode_adc_block(0, rng.integers(0, 1024, (n, 4)))


def open_stream(seconds: float, rng) -> bytes:
    enc = openframe.Encoder(openframe.Info(emg_uv_per_count=0.5))
    parts = [b"\x00", enc.encode_info(0)]
    emg_per, imu_per = 20, 10
    n_emg = int(2000 * seconds) // emg_per
    emg = rng.normal(0, 300, (n_emg, emg_per, 2))
    imu = rng.normal(0, 1, (n_emg // 10 * 2, imu_per, 3))
    for k in range(n_emg):
        t_us = k * 10_000
        parts.append(enc.encode_emg(k * emg_per, t_us, emg[k]))
        if k % 5 == 0 and k // 5 < len(imu):
            parts.append(enc.encode_imu(k // 5 * imu_per, t_us, imu[k // 5]))
        if k % 100 == 0:
            parts.append(enc.encode_status(t_us, 3700, 80, 2))
        if k % 1000 == 0:
            parts.append(enc.encode_info(t_us))
    return b"".join(parts)


def baseline_open(data: bytes, chunk: int) -> None:
    for seg in data.split(b"\x00"):
        if seg:
            body = cobs.decode(seg)
            binascii.crc_hqx(body[:-2], 0xFFFF)


def baseline_frombuffer(frame_len: int):
    def run(data: bytes, chunk: int) -> None:
        n = len(data) // frame_len * frame_len
        for i in range(0, n, chunk):
            j = min(n, i + chunk)
            j -= (j - i) % frame_len
            np.frombuffer(data[i:j], np.uint8).reshape(-1, frame_len).astype(np.int32)
    return run


def decode_all(make_decoder):
    def run(data: bytes, chunk: int) -> None:
        dec = make_decoder()
        n = 0
        for i in range(0, len(data), chunk):
            n += len(dec.feed(data[i:i + chunk]))
        if dec.stats.frames_bad:
            raise RuntimeError(f"benchmark stream decoded with {dec.stats.frames_bad} bad frames")
    return run


def best_time(fn, data: bytes, chunk: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(data, chunk)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="stream length to encode")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (best is kept)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    cases = [
        ("open 2000 Hz x2 + IMU 200 Hz", open_stream(args.seconds, rng),
         lambda: openframe.Decoder(), baseline_open, (20, 244, 4096)),
    ]
    cy, bi = cyton_stream(args.seconds, rng), bitalino_stream(args.seconds, rng)
    for merge in (False, True):
        tag = " merge" if merge else ""
        cases += [
            (f"cyton 250 Hz x8{tag}", cy, lambda m=merge: cyton.Decoder(merge=m),
             baseline_frombuffer(cyton.PACKET_LEN), (64, 512, 4096)),
            (f"bitalino 1000 Hz x4{tag}", bi, lambda m=merge: bitalino.Decoder(merge=m),
             baseline_frombuffer(bitalino.frame_length(4)), (64, 512, 4096)),
        ]
    print(f"{'decoder':32s} {'chunk B':>8s} {'MB/s':>8s} {'x real time':>12s} "
          f"{'baseline x rt':>14s} {'time/baseline':>14s}")
    for name, data, make, baseline, chunks in cases:
        for chunk in chunks:
            t = best_time(decode_all(make), data, chunk, args.repeat)
            tb = best_time(baseline, data, chunk, args.repeat)
            print(f"{name:32s} {chunk:8d} {len(data) / t / 1e6:8.2f} "
                  f"{args.seconds / t:12.0f} {args.seconds / tb:14.0f} {t / tb:14.1f}")
    print("target: >= 50x real time for every board (one core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
