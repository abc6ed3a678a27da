"""OpenBCI Cyton: packet bytes, scaling, replies, accelerometer stream, resync."""

from __future__ import annotations

import numpy as np
import pytest
from crampwatch.firmware_bridge.protocols import cyton, get_protocol
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_helpers import feed_split, normalize, per_sample, stats_tuple

from crampwatch.errors import FrameError

UV24 = 4.5 / 24 / (2**23 - 1) * 1e6      # uV per count at gain 24 (OpenBCI docs)
G = 0.002 / 16                            # g per accelerometer count

# Packets written out by hand from the Cyton data format.
P1 = bytes.fromhex(
    "a0" "05"
    "000001" "ffffff" "7fffff" "800000" "001000" "fff000" "123456" "000000"
    "0010" "fff0" "2000"
    "c0")
P2 = bytes.fromhex("a0" "06" + "00" * 24 + "000000000000" + "c0")
P3 = bytes.fromhex("a0" "07" + "00" * 24 + "010203040506" + "c1")
P1_COUNTS = [1, -1, 8388607, -8388608, 4096, -4096, 0x123456, 0]


def test_hand_built_packets_decode():
    packets = cyton.Decoder().feed(P1 + P2 + P3)
    assert [(p.stream, p.counter, p.offset) for p in packets] == [
        ("emg", 5, 0), ("acc", 0, 0), ("emg", 6, 33), ("emg", 7, 66)]
    np.testing.assert_allclose(packets[0].samples, [np.array(P1_COUNTS) * UV24], rtol=1e-12)
    np.testing.assert_allclose(packets[1].samples, [[16 * G, -16 * G, 8192 * G]], rtol=1e-12)
    assert packets[1].meta == {"emg_counter": 5}
    assert packets[3].meta == {"footer": 0xC1, "aux": bytes([1, 2, 3, 4, 5, 6])}
    assert packets[2].samples.tolist() == [[0.0] * 8]


def test_encoder_writes_the_same_bytes():
    enc = cyton.Encoder()
    assert enc.encode(5, np.array(P1_COUNTS) * UV24, acc_g=(16 * G, -16 * G, 8192 * G)) == P1
    assert enc.encode(6, np.zeros(8)) == P2
    assert enc.encode(0x106, np.zeros(8)) == P2        # sample number wraps at 256


def test_decode_packet_strict():
    d = cyton.decode_packet(P1)
    assert d["sample_number"] == 5 and d["footer"] == 0xC0
    with pytest.raises(FrameError, match="footer") as err:
        cyton.decode_packet(P1[:32] + b"\xc7")
    assert err.value.offset == 32
    with pytest.raises(FrameError, match="33 bytes"):
        cyton.decode_packet(P1[:20])


def test_uv_per_count_and_commands():
    assert cyton.uv_per_count(24) == pytest.approx(UV24)
    assert cyton.channel_settings_command(3, gain=6) == b"x3030110X"
    assert (cyton.start_command(), cyton.stop_command(), cyton.reset_command()) == \
        (b"b", b"s", b"v")
    with pytest.raises(ValueError):
        cyton.channel_settings_command(9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-180_000, 180_000), min_size=8, max_size=8),
       st.sampled_from(cyton.GAINS))
def test_round_trip_within_one_step(values_uv, gain):
    enc = cyton.Encoder(gains=[gain] * 8)
    step = cyton.uv_per_count(gain)
    x = np.clip(values_uv, -(2**23) * step, (2**23 - 1) * step)
    dec = cyton.Decoder(gains=[gain] * 8)
    p = dec.feed(enc.encode(0, x))[0]
    assert np.all(np.abs(p.samples[0] - x) <= step / 2 + 1e-9)


def test_gain_follows_the_commands_the_host_sends():
    enc = cyton.Encoder()
    enc.set_gain(2, 8)
    emg = np.full(8, 1000.0)
    dec = cyton.Decoder()
    before = dec.feed(enc.encode(0, emg))[0].samples[0]
    dec.observe_command(cyton.channel_settings_command(2, gain=8)[:4])   # split write
    dec.observe_command(cyton.channel_settings_command(2, gain=8)[4:])
    after = dec.feed(enc.encode(1, emg))[0].samples[0]
    assert before[1] == pytest.approx(1000.0 * 8 / 24, rel=1e-4)   # decoded with gain 24
    assert after[1] == pytest.approx(1000.0, abs=cyton.uv_per_count(8))
    dec.observe_command(b"d")
    assert dec.gains.tolist() == [24.0] * 8


def test_reset_reply_is_a_reply_packet():
    enc = cyton.Encoder(firmware="v3.1.2")
    stream = enc.reset_reply() + enc.encode(0, np.zeros(8))
    packets = feed_split(cyton.Decoder(), stream, range(1, len(stream), 5))
    assert packets[0].stream == "reply"
    assert packets[0].meta["text"].startswith("OpenBCI V3 8-16 channel\n")
    assert "Firmware: v3.1.2" in packets[0].meta["text"]
    assert [p.stream for p in packets[1:]] == ["emg"]


def a_stream(n: int = 200, seed: int = 1):
    """Garbage, a reply, n packets with acc data every ~10 samples (jittered)."""
    rng = np.random.default_rng(seed)
    enc = cyton.Encoder()
    acc = np.full((n, 3), np.nan)
    acc_rows = np.cumsum(rng.choice([9, 10, 11], size=n // 10))
    acc_rows = acc_rows[acc_rows < n]
    acc[acc_rows] = rng.normal(0, 0.5, (acc_rows.size, 3))
    emg = rng.normal(0, 100, (n, 8))
    head = b"\x8f\x9c" + enc.reset_reply()
    return head + enc.encode_block(200, emg, acc), len(head), emg, acc_rows


STREAM, HEAD, EMG, ACC_ROWS = a_stream()


def test_acc_stream_is_25_hz_with_consecutive_counters():
    packets = cyton.Decoder().feed(STREAM)
    acc = [p for p in packets if p.stream == "acc"]
    assert [p.meta["emg_counter"] for p in acc] == [(200 + r) % 256 for r in ACC_ROWS]
    assert [p.counter for p in acc] == list(range(len(ACC_ROWS)))


def test_lost_acc_packet_shows_as_an_acc_gap():
    lost = int(ACC_ROWS[5])
    data = STREAM[:HEAD + 33 * lost] + STREAM[HEAD + 33 * (lost + 1):]
    acc = [p.counter for p in cyton.Decoder().feed(data) if p.stream == "acc"]
    assert acc == [k for k in range(len(ACC_ROWS)) if k != 5]


def test_held_acc_mode_gives_one_acc_sample_per_emg_sample():
    packets = cyton.Decoder(acc_mode="held").feed(STREAM)
    emg = [p for p in packets if p.stream == "emg"]
    acc = np.vstack([p.samples for p in packets if p.stream == "acc"])
    assert [p.counter for p in packets if p.stream == "acc"] == [p.counter for p in emg]
    first = int(ACC_ROWS[0])
    assert np.isnan(acc[:first]).all()
    expected = cyton.Decoder().feed(STREAM)
    new_values = np.vstack([p.samples for p in expected if p.stream == "acc"])
    np.testing.assert_array_equal(acc[first:first + 3], np.repeat(new_values[:1], 3, axis=0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_any_split_gives_the_same_packets_and_stats(cuts):
    ref = cyton.Decoder()
    ref_packets = ref.feed(STREAM)
    dec = cyton.Decoder()
    assert normalize(feed_split(dec, STREAM, cuts)) == normalize(ref_packets)
    assert stats_tuple(dec.stats) == stats_tuple(ref.stats)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=30), st.sampled_from(["new", "held"]))
def test_merged_packets_carry_the_same_samples(cuts, acc_mode):
    data = STREAM[:HEAD + 33 * 100] + STREAM[HEAD + 33 * 101:]   # packet 100 lost
    ref = cyton.Decoder(acc_mode=acc_mode).feed(data)
    dec = cyton.Decoder(acc_mode=acc_mode, merge=True)
    merged = feed_split(dec, data, cuts)
    for stream in ("emg", "acc"):
        c_ref, s_ref = per_sample(ref, stream)
        c_m, s_m = per_sample(merged, stream)
        assert c_m == c_ref
        np.testing.assert_array_equal(s_m, s_ref)
    # no packet spans the gap (sample number 44 is missing): 45 starts a packet
    emg = [p for p in merged if p.stream == "emg"]
    assert 45 in [p.counter for p in emg]


def test_corrupted_packets_are_counted_and_leave_a_counter_gap():
    bad = {12: 32, 40: 0, 41: 32, 150: 32}        # packet -> corrupted byte (footer/header)
    data = bytearray(STREAM)
    for k, byte in bad.items():
        data[HEAD + 33 * k + byte] = 0x55
    dec = cyton.Decoder()
    emg = [p.counter for p in dec.feed(bytes(data)) if p.stream == "emg"]
    missing = sorted(set((200 + k) % 256 for k in range(200)) - set(emg))
    assert missing == sorted((200 + k) % 256 for k in bad)
    assert dec.stats.frames_ok == 200 - len(bad)
    # packets 40 and 41 form one run; garbage before the first reply is no bad frame
    assert dec.stats.frames_bad == 3
    assert dec.stats.bytes_skipped == 2 + 33 * len(bad)   # + the 2 garbage bytes up front


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=10))
def test_random_bytes_never_raise_and_memory_is_bounded(data, cuts):
    dec = cyton.Decoder()
    packets = feed_split(dec, data, [c for c in cuts if c <= len(data)])
    assert dec.stats.bytes_in == len(data)
    assert dec.stats.bytes_skipped + 33 * dec.stats.frames_ok <= len(data)
    assert sum(p.stream == "emg" for p in packets) == dec.stats.frames_ok
    assert len(dec._buf) < cyton.PACKET_LEN


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
    dec = cyton.Decoder()
    packets = dec.feed(bytes(data))
    assert dec.stats.frames_ok >= 200 - 2 * len(edits)
    assert sum(p.stream == "emg" for p in packets) == dec.stats.frames_ok


def test_long_text_without_terminator_is_bounded_garbage():
    dec = cyton.Decoder()
    text = b"no terminator here " * 1000
    feed_split(dec, text, range(0, len(text), 333))
    packets = dec.feed(P2)
    assert [p.stream for p in packets] == ["emg"]
    assert dec.stats.bytes_skipped == len(text)
    assert dec.stats.frames_bad == 0          # before the first packet: joining mid-stream
    dec.feed(text + P2)
    assert dec.stats.frames_bad == 1


def test_command_parser_device_side():
    p = cyton.CommandParser()
    cmds = p.feed(b"v" + cyton.channel_settings_command(4, gain=2)[:5]) + p.feed(b"110Xb1!sz")
    assert [(c.name, c.args.get("channel"), c.args.get("gain")) for c in cmds] == [
        ("reset", None, None), ("channel_settings", 4, 2), ("start", None, None),
        ("channel_off", 1, None), ("channel_on", 1, None), ("stop", None, None),
        ("unknown", None, None)]


def test_registry():
    assert get_protocol("cyton") is cyton
    assert cyton.BOARD.emg_fs_hz == 250.0 and len(cyton.BOARD.emg_channels) == 8
