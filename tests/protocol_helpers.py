"""Helpers shared by the wire-protocol tests (test_protocol_*.py)."""

from __future__ import annotations

import numpy as np


def feed_split(decoder, data: bytes, cuts) -> list:
    """Feed ``data`` to ``decoder`` cut at the sorted positions ``cuts``."""
    out = []
    prev = 0
    for c in sorted(set(cuts)) + [len(data)]:
        out += decoder.feed(data[prev:c])
        prev = c
    return out


def random_cuts(rng: np.random.Generator, n: int, k: int) -> list[int]:
    """``k`` random cut positions in ``data`` of length ``n``."""
    return rng.integers(0, n + 1, size=k).tolist() if n else []


def normalize(packets) -> list:
    """Packets as comparable tuples (arrays as lists, NaN-safe)."""
    out = []
    for p in packets:
        s = None if p.samples is None else np.nan_to_num(p.samples, nan=1e300).tolist()
        meta = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in p.meta.items()}
        out.append((p.stream, p.counter, p.counter_modulo, p.offset, p.device_time_us, s,
                    repr(sorted(meta.items()))))
    return out


def stats_tuple(stats) -> tuple:
    return (stats.frames_ok, stats.frames_bad, stats.bytes_skipped, stats.bytes_in)


def corrupt_byte(value: int) -> int:
    """A different, non-zero byte (a 0x00 would add a COBS delimiter)."""
    x = value ^ 0x55
    return x if x else value ^ 0xAA


def per_sample(packets, stream: str) -> tuple[list[int], np.ndarray]:
    """The counters and samples of ``stream``, one entry per sample."""
    counters, samples = [], []
    for p in packets:
        if p.stream == stream:
            n = p.samples.shape[0]
            counters += [(p.counter + j) % p.counter_modulo for j in range(n)]
            samples.append(p.samples)
    return counters, (np.vstack(samples) if samples else np.empty((0, 0)))
