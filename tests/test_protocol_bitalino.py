"""BITalino (r)evolution: frame bytes, CRC4, lock/resync, scaling, commands."""

from __future__ import annotations

import numpy as np
import pytest
from crampwatch.firmware_bridge.protocols import bitalino, get_protocol
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_helpers import feed_split, normalize, per_sample, stats_tuple

from crampwatch.errors import FrameError

ALL6 = dict(analog_channels=range(6), emg=(0,), acc=(1, 2, 3))


def crc4_reference(frame: bytes) -> int:
    """CRC4 bit by bit, as the BITalino API documents it (x^4 + x + 1, MSB first)."""
    data = bytearray(frame)
    data[-1] &= 0xF0
    x = 0
    for byte in data:
        for bit in range(7, -1, -1):
            x <<= 1
            if x & 0x10:
                x ^= 0x03
            x ^= (byte >> bit) & 1
    return x & 0x0F


def with_crc(frame_hex: str) -> bytes:
    frame = bytearray.fromhex(frame_hex)
    frame[-1] |= crc4_reference(frame)
    return bytes(frame)


# Frames written out by hand from the bit layout (bytes from the end):
# 6 channels, A1..A6 = 0x3FF 0x155 0x2AA 0x001 0x3F 0x15, I1 I2 O1 O2 = 1 0 1 0, seq 9
F6 = with_crc("d5 1f 80 aa 55 fd af 90")
# 1 channel, A1 = 512, seq 0
F1 = with_crc("00 08 00")


def test_frame_lengths():
    assert [bitalino.frame_length(n) for n in range(1, 7)] == [3, 4, 6, 7, 8, 8]


def test_hand_built_frames_decode():
    assert bitalino.decode_frame(F6, 6) == {
        "seq": 9, "adc": [0x3FF, 0x155, 0x2AA, 0x001, 0x3F, 0x15], "digital": (1, 0, 1, 0)}
    assert bitalino.decode_frame(F1, 1) == {"seq": 0, "adc": [512], "digital": (0, 0, 0, 0)}
    with pytest.raises(FrameError, match="CRC4"):
        bitalino.decode_frame(F6[:-1] + bytes([F6[-1] ^ 0x01]), 6)


def test_encoder_writes_the_same_bytes():
    enc = bitalino.Encoder(**ALL6)
    assert enc.encode_adc(9, [0x3FF, 0x155, 0x2AA, 0x001, 0x3F, 0x15], (1, 0, 1, 0)) == F6
    assert bitalino.Encoder((0,), (0,), ()).encode_adc(16, [512]) == F1


def test_crc4_table_matches_the_bitwise_definition():
    rng = np.random.default_rng(3)
    for _ in range(500):
        frame = rng.integers(0, 256, int(rng.integers(3, 9)), dtype=np.uint8).tobytes()
        assert bitalino.crc4(frame) == crc4_reference(frame)


@pytest.mark.parametrize("n_channels", range(1, 7))
def test_adc_round_trip_every_channel_count(n_channels):
    rng = np.random.default_rng(n_channels)
    enc = bitalino.Encoder(range(n_channels), (0,), ())
    bits = [bitalino.adc_bits(p) for p in range(n_channels)]
    adc = np.stack([rng.integers(0, 2**b, 100) for b in bits], axis=1)
    digital = rng.integers(0, 2, (100, 4))
    raw = enc.encode_adc_block(5, adc, digital)
    assert len(raw) == 100 * bitalino.frame_length(n_channels)
    frames = [bitalino.decode_frame(raw[k:k + len(raw) // 100], n_channels)
              for k in range(0, len(raw), len(raw) // 100)]
    assert [f["adc"] for f in frames] == adc.tolist()
    assert [list(f["digital"]) for f in frames] == digital.tolist()
    assert [f["seq"] for f in frames] == [(5 + k) % 16 for k in range(100)]


def test_physical_units():
    dec = bitalino.Decoder(**ALL6)
    enc = bitalino.Encoder(**ALL6)
    adc = [[0, 208, 312, 260, 0, 0], [1023, 312, 208, 0, 63, 0]]
    packets = dec.feed(enc.encode_adc_block(0, np.array(adc * 2)))   # 4 frames: lock
    emg = [p.samples[0, 0] for p in packets if p.stream == "emg"]
    acc = [p.samples[0].tolist() for p in packets if p.stream == "acc"]
    vcc_over_gain_uv = 3.3 / 1009 * 1e6
    assert emg[:2] == pytest.approx([-0.5 * vcc_over_gain_uv,
                                     (1023 / 1024 - 0.5) * vcc_over_gain_uv])
    np.testing.assert_allclose(acc[:2], [[-1.0, 1.0, 0.0], [1.0, -1.0, 2 * (0 - 208) / 104 - 1]])


def test_accelerometer_calibration_is_configurable():
    kw = dict(analog_channels=(0, 1), emg=(0,), acc=(1,), acc_cmin=500, acc_cmax=600)
    raw = bitalino.Encoder(**kw).encode_adc_block(0, np.array([[512, 550], [512, 600]] * 2))
    acc = [p.samples[0, 0] for p in bitalino.Decoder(**kw).feed(raw) if p.stream == "acc"]
    assert acc == [0.0, 1.0, 0.0, 1.0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1600, 1600), min_size=5, max_size=5),
       st.lists(st.floats(-3, 3), min_size=5, max_size=5))
def test_physical_round_trip_within_one_step(emg_uv, acc_g):
    # EMG on a 10-bit channel (A1) and on a 6-bit one (A6); acc on A2.
    kw = dict(analog_channels=range(6), emg=(0, 5), acc=(1,))
    enc, dec = bitalino.Encoder(**kw), bitalino.Decoder(**kw)
    emg = np.stack([emg_uv, emg_uv], axis=1)
    acc = np.array(acc_g)[:, None]
    packets = dec.feed(enc.encode(0, emg_uv=emg, acc_g=acc))
    got_emg = np.vstack([p.samples for p in packets if p.stream == "emg"])
    got_acc = np.vstack([p.samples for p in packets if p.stream == "acc"])
    step10, step6 = 3.3 / 1009 * 1e6 / 1024, 3.3 / 1009 * 1e6 / 64
    lo10, hi10 = -0.5 * 1024 * step10, (1023 - 512) * step10
    lo6, hi6 = -0.5 * 64 * step6, (63 - 32) * step6
    assert np.all(np.abs(got_emg[:, 0] - np.clip(emg[:, 0], lo10, hi10)) <= step10 / 2 + 1e-9)
    assert np.all(np.abs(got_emg[:, 1] - np.clip(emg[:, 1], lo6, hi6)) <= step6 / 2 + 1e-9)
    acc_step = 2 / 104
    acc_lo, acc_hi = 2 * (0 - 208) / 104 - 1, 2 * (1023 - 208) / 104 - 1
    assert np.all(np.abs(got_acc[:, 0] - np.clip(acc[:, 0], acc_lo, acc_hi))
                  <= acc_step / 2 + 1e-9)


def a_stream(n: int = 400, seed: int = 5):
    rng = np.random.default_rng(seed)
    enc = bitalino.Encoder()                      # A1 EMG, A2-A4 acc: 7-byte frames
    adc = rng.integers(0, 1024, (n, 4))
    head = b"\x13\x00\xff" + bitalino.Encoder.version_reply()
    return head + enc.encode_adc_block(3, adc), len(head), adc


STREAM, HEAD, ADC = a_stream()
L = bitalino.frame_length(4)


def test_stream_decodes_with_reply_and_offsets():
    dec = bitalino.Decoder()
    packets = dec.feed(STREAM)
    assert packets[0].stream == "reply" and packets[0].meta["text"] == "BITalino_v5.2"
    emg = [p for p in packets if p.stream == "emg"]
    assert [p.counter for p in emg] == [(3 + k) % 16 for k in range(400)]
    assert [p.offset for p in emg] == [HEAD + L * k for k in range(400)]
    assert dec.stats.frames_ok == 400 and dec.stats.bytes_skipped == 3


def test_lock_needs_four_consecutive_frames():
    enc = bitalino.Encoder()
    raw = enc.encode_adc_block(0, np.full((5, 4), 100))
    dec = bitalino.Decoder()
    assert dec.feed(raw[:3 * L]) == []
    assert dec.feed(raw[3 * L:4 * L - 1]) == []
    assert [p.counter for p in dec.feed(raw[4 * L - 1:4 * L]) if p.stream == "emg"] == \
        [0, 1, 2, 3]
    assert [p.counter for p in dec.feed(raw[4 * L:]) if p.stream == "emg"] == [4]


def test_joining_mid_frame_skips_only_the_partial_frame():
    body = STREAM[HEAD:]
    dec = bitalino.Decoder()
    packets = dec.feed(body[L - 2:])
    assert [p.counter for p in packets if p.stream == "emg"][:2] == [4, 5]
    # the partial frame before the first good one is skipped, not a bad frame
    assert (dec.stats.bytes_skipped, dec.stats.frames_bad) == (2, 0)


def test_corrupted_frames_are_counted_and_leave_a_counter_gap():
    bad = [10, 30, 31, 200]                     # 30 and 31 adjacent: one run
    data = bytearray(STREAM)
    for k in bad:
        data[HEAD + L * k + 2] ^= 0x04          # one bit: CRC4 always catches it
    dec = bitalino.Decoder()
    packets = dec.feed(bytes(data))
    emg = [p for p in packets if p.stream == "emg"]
    got = [(p.offset - HEAD) // L for p in emg]
    assert sorted(set(range(400)) - set(got)) == bad
    assert dec.stats.frames_ok == 400 - len(bad)
    assert dec.stats.bytes_skipped == 3 + L * len(bad)
    assert dec.stats.frames_bad == 3            # three runs; the leading garbage is not one


def test_dropped_whole_frames_relock_without_skipping():
    data = STREAM[:HEAD + L * 50] + STREAM[HEAD + L * 53:]
    dec = bitalino.Decoder()
    emg = [p.counter for p in dec.feed(data) if p.stream == "emg"]
    assert emg[49:51] == [(3 + 49) % 16, (3 + 53) % 16]      # the gap the source will count
    assert dec.stats.bytes_skipped == 3 and dec.stats.frames_ok == 397


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_any_split_gives_the_same_packets_and_stats(cuts):
    ref = bitalino.Decoder()
    ref_packets = ref.feed(STREAM)
    dec = bitalino.Decoder()
    assert normalize(feed_split(dec, STREAM, cuts)) == normalize(ref_packets)
    assert stats_tuple(dec.stats) == stats_tuple(ref.stats)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_merged_packets_carry_the_same_samples(cuts):
    data = STREAM[:HEAD + L * 100] + STREAM[HEAD + L * 103:]      # a gap of 3 frames
    ref = bitalino.Decoder().feed(data)
    merged = feed_split(bitalino.Decoder(merge=True), data, cuts)
    for stream in ("emg", "acc"):
        c_ref, s_ref = per_sample(ref, stream)
        c_m, s_m = per_sample(merged, stream)
        assert c_m == c_ref
        np.testing.assert_array_equal(s_m, s_ref)
    dig = np.vstack([p.meta["digital"] for p in merged if p.stream == "emg"])
    assert dig.tolist() == [list(p.meta["digital"]) for p in ref if p.stream == "emg"]
    # no packet spans the gap: the frame after it starts a new packet
    assert HEAD + L * 100 in [p.offset for p in merged if p.stream == "emg"]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=10),
       st.integers(1, 6))
def test_random_bytes_never_raise_and_memory_is_bounded(data, cuts, n_channels):
    dec = bitalino.Decoder(range(n_channels), (0,), ())
    packets = feed_split(dec, data, [c for c in cuts if c <= len(data)])
    s = dec.stats
    assert s.bytes_in == len(data)
    assert s.bytes_skipped + dec.frame_len * s.frames_ok <= len(data)
    assert sum(p.stream == "emg" for p in packets) == s.frames_ok
    assert len(dec._buf) < bitalino.LOCK_FRAMES * dec.frame_len


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(HEAD, len(STREAM) - 1), st.integers(-1, 255)),
                min_size=1, max_size=6))
def test_deletions_and_insertions_resynchronise(edits):
    data = bytearray(STREAM)
    for pos, byte in sorted(edits, reverse=True):
        if byte < 0:
            del data[pos]
        else:
            data.insert(pos, byte)
    dec = bitalino.Decoder()
    packets = dec.feed(bytes(data))
    emg = [p for p in packets if p.stream == "emg"]
    # an edit costs the frame it hits and at most the LOCK_FRAMES - 1 after it ...
    assert len(emg) >= 400 - bitalino.LOCK_FRAMES * len(edits)
    # ... and what is decoded is real, but for the rare frame whose damage the
    # 4-bit CRC and the sequence check both miss (1 in 256), at most one per edit
    ref = {(p.counter, p.samples[0, 0]) for p in bitalino.Decoder().feed(STREAM)
           if p.stream == "emg"}
    assert sum((p.counter, p.samples[0, 0]) not in ref for p in emg) <= len(edits)


def test_channel_map_errors():
    with pytest.raises(ValueError, match="not among"):
        bitalino.Decoder(analog_channels=(0, 1), emg=(2,), acc=())
    with pytest.raises(ValueError, match="0..5"):
        bitalino.Decoder(analog_channels=(0, 6), emg=(0,), acc=())


def test_host_commands():
    assert bitalino.rate_command(1000) == b"\xc3"
    assert bitalino.rate_command(1) == b"\x03"
    assert bitalino.start_command((0, 1, 2, 3)) == bytes([0b00111101])
    assert bitalino.start_command((5,), simulated=True) == bytes([0b10000010])
    assert bitalino.stop_command() == b"\x00"
    with pytest.raises(ValueError):
        bitalino.rate_command(500)


def test_command_parser_tracks_mode():
    p = bitalino.CommandParser()
    cmds = p.feed(bitalino.version_command() + bitalino.start_command((0, 4), fs_hz=10)
                  + b"\xb7" + b"\x00" + b"\x00" + b"\xa3\x80" + b"\xff")
    assert [(c.name, c.args) for c in cmds] == [
        ("version", {}), ("set_rate", {"fs_hz": 10}),
        ("start", {"analog_channels": [0, 4], "simulated": False}),
        ("trigger", {"outputs": [1, 0]}), ("stop", {}), ("battery_threshold", {"value": 0}),
        ("pwm", {"value": 0x80}), ("stop", {})]


def test_registry():
    assert get_protocol("bitalino") is bitalino
    assert bitalino.BOARD.emg_fs_hz == 1000.0
