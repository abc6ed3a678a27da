"""Counter unwrapping, gap measurement, the drift fit and the reconnect backoff."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crampwatch.firmware_bridge.backoff import backoff_s
from crampwatch.firmware_bridge.clock import ClockFit, CounterUnwrapper


def _stream(modulo, n_frames, drop_p, rng, samples_per_frame=1, max_run=None):
    """Frames with wrapped counters and a random set dropped (runs shorter than a period)."""
    counts_per_frame = samples_per_frame if modulo > 2**20 else 1
    counters = (np.arange(n_frames) * counts_per_frame) % modulo
    keep = rng.random(n_frames) >= drop_p
    keep[0] = True
    if max_run is not None:              # break runs of drops that a counter cannot see
        run = 0
        for i in range(n_frames):
            run = run + 1 if not keep[i] else 0
            if run >= max_run:
                keep[i] = True
                run = 0
    return counters, keep


def _unwrap_in_batches(u, counters, n, rng):
    """Feed in random batch sizes; collect indices and gaps."""
    idx, gaps = [], []
    pos = 0
    while pos < len(counters):
        k = int(rng.integers(1, 40))
        r = u.unwrap(counters[pos:pos + k], n)
        assert r.reset_at is None
        idx.extend(r.first_index.tolist())
        gaps.extend((g[0], g[1]) for g in r.gaps)
        pos += k
    return np.array(idx), gaps


@pytest.mark.parametrize("modulo", [16, 256])
def test_wraparound_and_gaps_are_exact(modulo):
    rng = np.random.default_rng(modulo)
    counters, keep = _stream(modulo, 5000, 0.05, rng, max_run=modulo - 1)
    u = CounterUnwrapper(modulo)
    idx, gaps = _unwrap_in_batches(u, counters[keep], 1, rng)
    truth = np.flatnonzero(keep)
    np.testing.assert_array_equal(idx, truth)           # the true frame numbers, wraps included
    missing = np.setdiff1d(np.arange(truth[-1] + 1), truth)
    assert sum(n for _, n in gaps) == missing.size
    # every gap starts where a run of missing frames starts
    starts = [m for m in missing.tolist() if m - 1 not in set(missing.tolist())]
    assert [g[0] for g in gaps] == starts


def test_index_counter_advances_by_samples_per_frame_and_gaps_in_samples():
    rng = np.random.default_rng(3)
    spf = 20
    counters, keep = _stream(2**32, 2000, 0.03, rng, samples_per_frame=spf)
    counters = (counters + 2**32 - 5 * spf) % 2**32           # wraps near the start
    u = CounterUnwrapper(2**32)
    idx, gaps = _unwrap_in_batches(u, counters[keep], spf, rng)
    np.testing.assert_array_equal(idx, np.flatnonzero(keep) * spf)
    assert sum(n for _, n in gaps) == (~keep[:np.flatnonzero(keep)[-1]]).sum() * spf


def test_big_counter_going_backwards_is_a_reset_not_a_gap():
    u = CounterUnwrapper(2**32)
    r = u.unwrap([1000, 1010, 1020], 10)
    assert r.first_index.tolist() == [0, 10, 20] and r.reset_at is None
    r = u.unwrap([1030, 40, 50], 10)
    assert r.reset_at == 1 and r.first_index.tolist() == [30] and r.gaps == []
    u.restart(500)
    r = u.unwrap([40, 50], 10)
    assert r.first_index.tolist() == [500, 510]


def test_huge_forward_jump_is_a_reset():
    u = CounterUnwrapper(2**32, max_jump_samples=1000)
    u.unwrap([0, 10], 10)
    assert u.unwrap([5000], 10).reset_at == 0
    assert u.unwrap([900], 10).gaps == [(20, 880, 0)]


@pytest.mark.parametrize("modulo", [16, 256])
def test_host_time_hint_recovers_whole_lost_periods(modulo):
    u = CounterUnwrapper(modulo)
    u.unwrap(np.arange(10) % modulo, 1)
    lost = 3 * modulo + 5                           # more than three whole periods
    nxt = (10 + lost) % modulo
    # the host clock places the frame within a few samples of the truth
    r = u.unwrap([nxt], 1, first_index_hint=10 + lost + 2.7)
    assert r.first_index.tolist() == [10 + lost]
    assert r.gaps == [(10, lost, 0)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=255), min_size=2, max_size=60),
       st.integers(min_value=0, max_value=255))
def test_any_forward_steps_unwrap_to_their_sum(steps, c0):
    u = CounterUnwrapper(256)
    counters = (c0 + np.concatenate(([0], np.cumsum(steps)))) % 256
    r = u.unwrap(counters, 1)
    assert r.first_index.tolist() == np.concatenate(([0], np.cumsum(steps))).tolist()
    assert sum(g[1] for g in r.gaps) == sum(s - 1 for s in steps)


def _night_arrivals(fs_hz, hours, ppm, seed):
    """Chunk arrivals of a board whose crystal is ``ppm`` off: late-only jitter, stalls, drops."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * fs_hz)
    sizes = rng.integers(4, 24, size=n // 4)
    ends = np.cumsum(sizes) - 1
    ends = ends[ends < n]
    t0 = 5000.0
    true_t = t0 + ends / fs_hz * (1.0 + ppm * 1e-6)
    latency = 0.0015 + rng.exponential(0.004, ends.size)           # USB: only ever late
    stalls = rng.random(ends.size) < 0.002
    latency[stalls] += rng.uniform(0.05, 0.8, stalls.sum())          # a busy host
    arrival = np.maximum.accumulate(true_t + latency)                # bytes arrive in order
    keep = rng.random(ends.size) > 0.01                              # lost chunks
    return ends[keep], arrival[keep], t0


@pytest.mark.parametrize("ppm", [50.0, -50.0])
def test_drift_fit_over_a_night(ppm):
    fs = 250.0
    ends, arrival, t0 = _night_arrivals(fs, 8.0, ppm, seed=11)
    fit = ClockFit(fs)
    errs, naive = [], []
    for k, (i, t) in enumerate(zip(ends.tolist(), arrival.tolist(), strict=False)):
        fit.add(i, t)
        if k % 300 == 0 and t - t0 > 60.0:
            truth = t0 + i / fs * (1.0 + ppm * 1e-6) + 0.0015         # + the smallest latency
            errs.append(fit.time_of(i) - truth)
            naive.append(t0 + i / fs + (arrival[0] - t0) - truth)     # nominal rate, first stamp
    errs = np.abs(errs)
    print(f"\nclock fit, 8 h at {ppm:+.0f} ppm: max |error| {errs.max() * 1e3:.3f} ms, "
          f"median {np.median(errs) * 1e3:.3f} ms; nominal-rate error at the end "
          f"{abs(naive[-1]) * 1e3:.0f} ms; fitted drift {fit.drift_ppm:+.3f} ppm")
    assert errs.max() < 0.001                       # under a millisecond all night
    assert abs(fit.drift_ppm - ppm) < 0.05
    assert abs(naive[-1]) > 1.0                     # what the fit removes: > 1 s by morning


def test_drift_fit_index_at_inverts_time_of():
    fit = ClockFit(1000.0)
    for k in range(1, 200):
        fit.add(50 * k, 10.0 + 50 * k / 1000.0 * (1 - 30e-6) + 0.003)
    for i in (0, 12345, 10**6):
        assert fit.index_at(fit.time_of(i)) == pytest.approx(i, abs=1e-6)


def test_backoff_is_capped_jittered_and_reproducible():
    rng = random.Random(42)
    delays = [backoff_s(k, rng, base_s=0.25, cap_s=30.0) for k in range(200)]
    for k, d in enumerate(delays):
        full = min(30.0, 0.25 * 2 ** k)
        assert full / 2 <= d <= full
    assert max(delays) <= 30.0 and min(delays) > 0
    assert len(set(delays[20:])) > 150               # jitter: no lockstep retries
    assert delays[:5] == [backoff_s(k, r) for r in [random.Random(42)] for k in range(5)]
    with pytest.raises(ValueError):
        backoff_s(-1, rng)
