"""Trust nothing from the wire: a counter is believed only when the next frame and
the host clock agree with it.

- one open frame with a valid CRC whose sample counter jumps by 10**8 (a firmware
  glitch) is dropped and counted, never read as a 14-hour gap: through the
  assembler, through a real pty from the board simulator, and through a real
  capture process, whose SQLite log then has the cramp after the glitch within
  5 s of when it happened;
- a counter jump the next frames confirm is a real gap (counter) when host time
  allows it, a device restart (gap from host time) when it does not;
- Cyton (no checksum): corrupted sample-number bytes are repaired from their
  neighbours and invent no gaps; a flipped bit in the zero aux bytes invents no
  accelerometer reading.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from boardsim_helpers import BoardSimProcess, collect_until

from crampwatch.firmware_bridge.protocols import cyton, openframe
from crampwatch.firmware_bridge.sources import open_source
from crampwatch.firmware_bridge.sources._assembly import StreamAssembler
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent

FS = 2000.0
SPF = 20                     # samples per open frame
FRAME_S = SPF / FS


def _open_packets(counters, info=openframe.Info()) -> list:
    """Real open-frame packets (encoded, decoded) with the given sample counters;
    sample values carry the true index so a test can see where each one landed."""
    enc = openframe.Encoder(info)
    dec = openframe.Decoder(info)
    wire = b""
    for k, c in enumerate(counters):
        vals = (np.arange(SPF) + k * SPF) % 30000
        wire += enc.encode_emg_counts(c, 0, np.column_stack([vals, vals]))
    return dec.feed(wire)


def _feed_one_by_one(asm, packets, t0=100.0, dt=FRAME_S, stall_at=None, stall_s=0.0):
    out = []
    t = t0
    for k, p in enumerate(packets):
        if stall_at is not None and k == stall_at:
            t += stall_s
        out.extend(asm.feed([p], t))
        t += dt
    return out


def _blocks(items):
    return [x for x in items if isinstance(x, SampleBlock)]


def _events(items, kind):
    return [x for x in items if isinstance(x, SourceEvent) and x.kind == kind]


def test_one_frame_with_a_counter_jump_of_1e8_is_dropped_not_a_gap():
    counters = [k * SPF for k in range(200)]
    counters[100] += 10**8                       # valid CRC, glitched counter
    asm = StreamAssembler("emg", FS)
    items = _feed_one_by_one(asm, _open_packets(counters))
    # no jump: the only hole is the dropped frame's own 20 samples, and it says why
    assert [(g.first_index, g.n_samples, g.detail) for g in _events(items, "gap")] == \
        [(100 * SPF, SPF, {"measured_from": "counter", "cause": "corrupt_frame"})]
    bad = _events(items, "corrupt_frame")
    assert len(bad) == 1 and bad[0].detail["counter"] == 100 * SPF + 10**8
    assert bad[0].detail["expected"] == 100 * SPF and bad[0].n_samples == SPF
    assert asm.frames_implausible == 1
    idx = np.concatenate([np.arange(b.first_index, b.end_index) for b in _blocks(items)])
    # every other frame where it belongs; the glitched frame's slot is simply empty
    # (its samples are not stored: the next block starts after it)
    expected = np.concatenate([np.arange(0, 100 * SPF), np.arange(101 * SPF, 200 * SPF)])
    np.testing.assert_array_equal(idx, expected)
    vals = np.concatenate([b.data[:, 0] for b in _blocks(items)])
    np.testing.assert_array_equal(vals, idx % 30000)


@pytest.mark.parametrize("jump", [-5000 * SPF, 10**8, 2**31 + 7])
def test_a_single_glitch_backwards_or_forwards_is_dropped(jump):
    counters = [k * SPF for k in range(60)]
    counters[30] = (counters[30] + jump) % 2**32
    asm = StreamAssembler("emg", FS)
    items = _feed_one_by_one(asm, _open_packets(counters))
    assert [g.n_samples for g in _events(items, "gap")] == [SPF]
    assert asm.frames_implausible == 1


def test_the_first_frame_of_a_link_is_confirmed_by_the_second():
    counters = [k * SPF for k in range(40)]
    counters[0] = 10**8                          # a glitch before anything was trusted
    asm = StreamAssembler("emg", FS)
    items = _feed_one_by_one(asm, _open_packets(counters))
    assert _blocks(items)[0].first_index == 0
    assert _blocks(items)[0].data[0, 0] == SPF   # the second frame's first sample
    assert asm.frames_implausible == 1 and not _events(items, "gap")


def test_a_confirmed_jump_the_host_clock_cannot_account_for_is_a_restart_timed_by_the_host():
    """The counter really jumps by 10**8 (the frames after it continue from there),
    yet only 0.5 s passed on the host: the device restarted its counter; the gap is
    what host time says (0.5 s), not 14 hours."""
    counters = [k * SPF for k in range(100)] + [10**8 + k * SPF for k in range(100)]
    asm = StreamAssembler("emg", FS)
    items = _feed_one_by_one(asm, _open_packets(counters), stall_at=100, stall_s=0.5)
    gaps = _events(items, "gap")
    assert len(gaps) == 1
    assert gaps[0].detail == {"measured_from": "host_time", "device_reset": True}
    assert gaps[0].first_index == 100 * SPF
    assert 0.3 * FS < gaps[0].n_samples < 0.8 * FS
    assert asm.frames_implausible == 0           # nothing dropped: the data are real
    assert sum(b.n_samples for b in _blocks(items)) + gaps[0].n_samples == \
        _blocks(items)[-1].end_index


def test_a_confirmed_jump_the_host_clock_allows_is_a_gap_from_the_counter():
    """3 s of frames lost on the radio, 3 s passed on the host: the counter's gap stands."""
    lost = int(3.0 / FRAME_S)
    counters = [k * SPF for k in range(100)] + [(100 + lost + k) * SPF for k in range(100)]
    asm = StreamAssembler("emg", FS)
    items = _feed_one_by_one(asm, _open_packets(counters), stall_at=100, stall_s=3.0)
    gaps = _events(items, "gap")
    assert [(g.first_index, g.n_samples, g.detail) for g in gaps] == \
        [(100 * SPF, lost * SPF, {"measured_from": "counter"})]
    assert asm.frames_implausible == 0


def test_chunked_arrival_gives_the_same_blocks():
    counters = [k * SPF for k in range(300)]
    counters[150] += 10**8
    counters[151] += 1                           # two odd frames in a row
    packets = _open_packets(counters)
    one = StreamAssembler("emg", FS)
    a = _feed_one_by_one(one, packets)
    many = StreamAssembler("emg", FS)
    b = []
    for k in range(0, 300, 7):
        b.extend(many.feed(packets[k:k + 7], 100.0 + k * FRAME_S))
    key = [(x.first_index, x.n_samples) for x in _blocks(a)]
    cat = np.concatenate
    assert cat([np.arange(x.first_index, x.end_index) for x in _blocks(b)]).tolist() == \
        cat([np.arange(f, f + n) for f, n in key]).tolist()
    assert one.frames_implausible == many.frames_implausible == 2


# --------------------------------------------------------------------------- Cyton
def _cyton_stream(n: int, rng) -> tuple[bytes, np.ndarray]:
    enc = cyton.Encoder()
    emg = np.zeros((n, cyton.N_CHANNELS))
    emg[:, 0] = np.arange(n) % 1000                     # uV: the value names the sample
    acc = np.full((n, 3), np.nan)
    acc[::10] = rng.uniform(-1, 1, (len(acc[::10]), 3))
    return enc.encode_block(0, emg, acc), acc


def test_cyton_corrupted_sample_numbers_are_repaired_and_invent_no_gap():
    rng = np.random.default_rng(4)
    n = 5000
    raw, acc = _cyton_stream(n, rng)
    buf = bytearray(raw)
    hit = rng.choice(np.arange(20, n - 2), size=250, replace=False)  # 5 % of packets
    for k in hit:
        buf[k * cyton.PACKET_LEN + 1] ^= 1 << int(rng.integers(0, 8))  # the counter byte
    quiet = [k for k in range(25, n - 2) if k % 10 and k not in set(hit)][:100]
    for k in quiet:                                  # one bit in the zero aux bytes
        buf[k * cyton.PACKET_LEN + 26 + int(rng.integers(0, 6))] ^= 1 << int(rng.integers(0, 8))
    dec = cyton.Decoder()
    asm = {"emg": StreamAssembler("emg", 250.0, frame_bytes=cyton.PACKET_LEN),
           "acc": StreamAssembler("acc", 25.0)}
    items = []
    t = 10.0
    for k in range(0, len(buf), 333):              # reads of ~10 packets, as a dongle gives
        packets = dec.feed(bytes(buf[k:k + 333]))
        t += 333 / cyton.PACKET_LEN / 250.0
        for s in ("emg", "acc"):
            items.extend(asm[s].feed([p for p in packets if p.stream == s], t))
    assert dec.stats.counters_repaired >= 200       # all but two hits in a row...
    assert not _events(items, "gap")                # ...which the host screens out
    emg = [b for b in _blocks(items) if b.stream == "emg"]
    idx = np.concatenate([np.arange(b.first_index, b.end_index) for b in emg])
    np.testing.assert_array_equal(idx, np.arange(idx.size))
    assert idx.size >= n - 2
    vals = np.concatenate([b.data[:, 0] for b in emg])
    np.testing.assert_allclose(vals, idx % 1000, atol=0.05)
    accb = [b for b in _blocks(items) if b.stream == "acc"]
    a_idx = np.concatenate([np.arange(b.first_index, b.end_index) for b in accb])
    np.testing.assert_array_equal(a_idx, np.arange(a_idx.size))     # acc stays aligned
    a_val = np.concatenate([b.data for b in accb])
    np.testing.assert_allclose(a_val, acc[::10][:a_idx.size], atol=2 * cyton.ACC_G_PER_COUNT)


# --------------------------------------------------------------------------- real pty
pty = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs ptys")


@pty
def test_open_frame_glitch_through_a_real_pty_leaves_the_timeline_intact():
    with BoardSimProcess("--protocol", "open", "--pty", "--speed", "10", "--hours", "0.02",
                         "--seed", "3", "--counter-glitch", "1.5") as sim, \
            open_source(f"serial://{sim.where}?board=open") as src:
        got = collect_until(src, lambda g: g.n("emg") >= 4000)
        stats = dict(src.stats)
        assert sim.terminate() == 0
    assert sim.tally["glitched"] == [[1500, 10**8]]
    bad = got.kinds("corrupt_frame", "emg")
    assert len(bad) == 1 and bad[0].detail["counter"] == 1500 + 10**8
    assert stats["frames_implausible"] == 1
    gaps = got.kinds("gap", "emg")
    # the one dropped frame is the only hole: 20 samples, where the glitch was
    assert [(g.first_index, g.n_samples, g.detail["cause"]) for g in gaps] == \
        [(1500, 20, "corrupt_frame")]
    assert got.end_index("emg") < 10_000                 # not 10**8


@pty
def test_cyton_line_errors_through_a_real_pty_invent_no_gaps():
    """5 % of Cyton packets with one flipped bit: a gap appears only where a packet
    really became unreadable (its header or footer hit), one sample long."""
    with BoardSimProcess("--protocol", "cyton", "--pty", "--speed", "20", "--hours", "0.02",
                         "--seed", "5", "--corrupt", "0.05") as sim, \
            open_source(f"serial://{sim.where}?board=cyton") as src:
        got = collect_until(src, lambda g: g.n("emg") >= 3000)
        assert sim.terminate() == 0
        collect_until(src, lambda g: g.kinds("disconnected"), into=got)
    corrupted = {first for sess, s, first, n in sim.tally["corrupted"] if s == "emg"}
    assert len(corrupted) > 100
    gaps = got.kinds("gap", "emg")
    assert all(g.n_samples <= 2 for g in gaps), [(g.first_index, g.n_samples) for g in gaps]
    assert all(g.first_index in corrupted for g in gaps)
    assert got.gap_samples("emg") < 0.2 * len(corrupted)
    assert got.n("emg") + got.gap_samples("emg") == got.end_index("emg")
