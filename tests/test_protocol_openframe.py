"""crampwatch open frame v1: spec bytes, shared vectors, framing and resync."""

from __future__ import annotations

import binascii
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from cobs import cobs
from crampwatch.firmware_bridge.protocols import get_protocol
from crampwatch.firmware_bridge.protocols import openframe as of
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_helpers import corrupt_byte, feed_split, normalize, per_sample, stats_tuple

from crampwatch.errors import FrameError

VECTORS_PATH = Path(__file__).resolve().parents[1] / "firmware_bridge" / "firmware" / \
    "test_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text())["vectors"]


def python_wire(v: dict) -> bytes:
    """Encode a test vector with the Python encoder."""
    a = v["args"]
    if v["kind"] == "samples":
        enc = of.Encoder()
        enc.seq = a["seq"]
        fn = enc.encode_emg_counts if a["type"] == of.FrameType.EMG else enc.encode_imu_counts
        return fn(a["first_index"], a["device_time_us"], np.array(a["counts"]),
                  channel_mask=a["channel_mask"])
    if v["kind"] == "info":
        info = of.Info(emg_fs_hz=a["emg_fs_hz"], imu_fs_hz=a["imu_fs_hz"],
                       emg_uv_per_count=a["emg_uv_per_count"],
                       acc_counts_per_g=a["acc_counts_per_g"], adc_bits=a["adc_bits"],
                       emg_channel_mask=a["emg_channel_mask"],
                       imu_channel_mask=a["imu_channel_mask"], firmware=tuple(a["firmware"]),
                       emg_frame_samples=a["emg_frame_samples"],
                       frontend_gain=a["frontend_gain"], name=a["name"])
        enc = of.Encoder(info)
        enc.seq = a["seq"]
        return enc.encode_info(a["device_time_us"])
    if v["kind"] == "status":
        enc = of.Encoder()
        enc.seq = a["seq"]
        return enc.encode_status(a["device_time_us"], a["battery_mv"], a["battery_pct"],
                                 a["flags"], a["emg_dropped"], a["imu_dropped"],
                                 a["tx_dropped"], a["uptime_s"])
    if v["kind"] == "time_sync":
        enc = of.Encoder()
        enc.seq = a["seq"]
        return enc.encode_time_sync(a["device_time_us"], a["token"], a["device_rx_us"])
    return of.encode_frame(a["type"], a["seq"], a["device_time_us"], a["first_index"],
                           a["n_samples"], a["channel_mask"], bytes.fromhex(a["payload_hex"]))


def a_stream(n_frames: int = 30, seed: int = 0) -> tuple[bytes, list[int]]:
    """INFO, then EMG frames with IMU and STATUS frames between; frame start offsets."""
    rng = np.random.default_rng(seed)
    enc = of.Encoder(of.Info(emg_uv_per_count=0.5, acc_counts_per_g=4096))
    frames = [enc.encode_info(0)]
    for k in range(n_frames):
        frames.append(enc.encode_emg(20 * k, 10_000 * k, rng.normal(0, 300, (20, 2))))
        if k % 5 == 0:
            frames.append(enc.encode_imu(2 * k, 10_000 * k, rng.normal(0, 1, (2, 3))))
        if k % 11 == 0:
            frames.append(enc.encode_status(10_000 * k, 3700, 90, 2))
    starts = np.cumsum([0] + [len(f) for f in frames])[:-1].tolist()
    return b"".join(frames), starts


# -- the spec, byte for byte ---------------------------------------------------------------

def test_crc16_is_ccitt_false_check_value():
    # The catalogued check value of CRC-16/CCITT-FALSE over "123456789".
    assert of.crc16(b"123456789") == 0x29B1


def test_emg_frame_matches_the_spec_table():
    # Built from PROTOCOL.md's header table with struct, stdlib CRC and the cobs package.
    body = bytes([0x01, 0x01]) + (7).to_bytes(2, "little") + (1_000_000).to_bytes(8, "little") \
        + (100).to_bytes(4, "little") + bytes([2, 0x01]) + struct.pack("<hh", 1000, -1000)
    body += binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "little")
    expected = cobs.encode(body) + b"\x00"
    enc = of.Encoder(of.Info(emg_uv_per_count=0.5, emg_channel_mask=0x01))
    enc.seq = 7
    assert enc.encode_emg(100, 1_000_000, np.array([[500.0], [-500.0]])) == expected


def test_spec_example_hex():
    # The worked example printed in PROTOCOL.md ("Example: one EMG frame").
    enc = of.Encoder(of.Info(emg_channel_mask=0x01))
    enc.seq = 7
    wire = enc.encode_emg_counts(100, 1_000_000, np.array([[1000], [-1000]]))
    assert wire.hex(" ") == ("04 01 01 07 04 40 42 0f 01 01 01 01 02 64 01 01 09 02 01 e8 03 "
                             "18 fc c5 4f 00")
    assert wire.hex(" ") in (Path(__file__).resolve().parents[1] / "firmware_bridge" /
                             "PROTOCOL.md").read_text()


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_python_encoder_reproduces_vector(vector):
    assert python_wire(vector).hex() == vector["wire_hex"]


def test_vectors_decode_in_order():
    dec = of.Decoder()
    packets = dec.feed(b"".join(bytes.fromhex(v["wire_hex"]) for v in VECTORS))
    assert len(packets) == len(VECTORS)
    assert dec.stats.frames_bad == 0
    for p, v in zip(packets, VECTORS):
        want = v["expect"]
        assert p.stream == want["stream"], v["name"]
        assert p.counter == want["counter"], v["name"]
        if "samples" in want:
            np.testing.assert_allclose(p.samples, want["samples"], rtol=0, atol=1e-12)
            assert p.meta["scaled_by_default"] is want["scaled_by_default"]
            assert p.device_time_us == want["device_time_us"]
        for key in set(want) - {"stream", "counter", "samples", "scaled_by_default",
                                "device_time_us"}:
            assert p.meta[key] == want[key], (v["name"], key)


# -- scaling ---------------------------------------------------------------------------------

def test_info_sets_scaling_and_defaults_are_marked():
    enc = of.Encoder(of.Info(emg_uv_per_count=0.125))
    raw_counts = np.array([[8, -16]])
    before = enc.encode_emg_counts(0, 0, raw_counts)
    info = enc.encode_info(1)
    after = enc.encode_emg_counts(1, 2, raw_counts)
    p0, p_info, p1 = of.Decoder().feed(before + info + after)
    assert p0.samples.tolist() == (raw_counts * of.DEFAULT_INFO.emg_uv_per_count).tolist()
    assert p0.meta["scaled_by_default"] is True
    assert p_info.meta["emg_uv_per_count"] == 0.125
    assert p1.samples.tolist() == [[1.0, -2.0]]
    assert p1.meta["scaled_by_default"] is False


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-4000, 4000), min_size=2, max_size=40),
       st.floats(0.05, 3.0), st.lists(st.floats(-7.5, 7.5), min_size=3, max_size=3))
def test_round_trip_within_one_step(values_uv, uv_per_count, acc):
    info = of.Info(emg_uv_per_count=uv_per_count, acc_counts_per_g=4096)
    enc = of.Encoder(info)
    emg = np.array(values_uv[: len(values_uv) // 2 * 2]).reshape(-1, 2)
    emg = np.clip(emg, -32767 * enc.info.emg_uv_per_count, 32767 * enc.info.emg_uv_per_count)
    dec = of.Decoder()
    p_info, p_emg, p_acc = dec.feed(enc.encode_info(0) + enc.encode_emg(0, 0, emg)
                                    + enc.encode_imu(0, 0, np.array([acc])))
    step = enc.info.emg_uv_per_count
    assert np.all(np.abs(p_emg.samples - emg) <= step / 2 + 1e-9)
    assert np.all(np.abs(p_acc.samples - np.array([acc])) <= 0.5 / 4096 + 1e-12)


# -- framing: chunking, garbage, corruption -------------------------------------------------

STREAM, STARTS = a_stream()
ONE_SHOT = of.Decoder().feed(STREAM)


def test_one_shot_reference_is_complete():
    assert [p.offset for p in ONE_SHOT] == STARTS
    emg = [p for p in ONE_SHOT if p.stream == "emg"]
    assert [p.counter for p in emg] == [20 * k for k in range(30)]


@pytest.mark.parametrize("chunk", [1, 20, 244, 4096])
def test_ble_notification_sized_chunks(chunk):
    # BLE notifications of MTU-3 bytes split frames anywhere; the bytes are one stream.
    dec = of.Decoder()
    packets = feed_split(dec, STREAM, range(chunk, len(STREAM), chunk))
    assert normalize(packets) == normalize(ONE_SHOT)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_any_split_gives_the_same_packets_and_stats(cuts):
    ref = of.Decoder()
    ref_packets = ref.feed(STREAM)
    dec = of.Decoder()
    assert normalize(feed_split(dec, STREAM, cuts)) == normalize(ref_packets)
    assert stats_tuple(dec.stats) == stats_tuple(ref.stats)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=10))
def test_random_bytes_never_raise_and_are_accounted(data, cuts):
    dec = of.Decoder()
    packets = feed_split(dec, data, [c for c in cuts if c <= len(data)])
    s = dec.stats
    assert s.bytes_in == len(data)
    assert s.bytes_skipped <= len(data)
    assert len(packets) == s.frames_ok
    assert len(dec._framer._buf) <= of.MAX_ENCODED_LEN


def test_corrupted_frames_are_counted_and_leave_a_counter_gap():
    frames = [p for p in ONE_SHOT if p.stream == "emg"]
    bad = [3, 9, 10, 22]          # two adjacent ones too: delimiters keep them apart
    data = bytearray(STREAM)
    for k in bad:
        start = frames[k].offset
        data[start + 5] = corrupt_byte(data[start + 5])
    dec = of.Decoder()
    packets = dec.feed(bytes(data))
    got = [p.counter for p in packets if p.stream == "emg"]
    assert dec.stats.frames_bad == len(bad)
    assert sorted(set(range(0, 600, 20)) - set(got)) == [frames[k].counter for k in bad]
    lengths = {p.offset: n for p, n in zip(ONE_SHOT, np.diff(STARTS + [len(STREAM)]))}
    assert dec.stats.bytes_skipped == sum(lengths[frames[k].offset] for k in bad)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(STREAM) - 1), st.integers(-1, 255)),
                min_size=1, max_size=8))
def test_deletions_and_insertions_resynchronise(edits):
    data = bytearray(STREAM)
    for pos, byte in sorted(edits, reverse=True):
        if byte < 0:
            del data[pos]
        else:
            data.insert(pos, byte)
    dec = of.Decoder()
    packets = dec.feed(bytes(data))
    # every frame not touched by an edit decodes; CRC keeps damaged ones out
    ref = {(p.stream, p.counter, p.meta.get("seq")) for p in ONE_SHOT}
    assert {(p.stream, p.counter, p.meta.get("seq")) for p in packets} <= ref
    assert len(packets) >= len(ONE_SHOT) - 2 * len(edits)


def test_joining_mid_frame_skips_the_partial_frame_without_counting_it_bad():
    dec = of.Decoder()
    packets = dec.feed(STREAM[STARTS[1] + 7:])
    assert normalize(packets)[0][1:3] == normalize(ONE_SHOT)[2][1:3]
    assert (dec.stats.frames_bad, dec.stats.bytes_skipped) == (0, STARTS[2] - STARTS[1] - 7)
    assert len(packets) == len(ONE_SHOT) - 2


def test_oversized_garbage_is_discarded_with_bounded_memory():
    dec = of.Decoder()
    junk = bytes(range(1, 256)) * 40       # 10200 bytes, no 0x00
    frame = of.Encoder().encode_status(5, 3600)
    data = b"\x00" + junk + b"\x00" + frame
    packets = feed_split(dec, data, range(100, len(data), 100))
    assert len(dec._framer._buf) <= of.MAX_ENCODED_LEN
    assert [p.stream for p in packets] == ["status"]
    assert packets[0].offset == len(junk) + 2
    assert (dec.stats.frames_bad, dec.stats.bytes_skipped) == (1, len(junk) + 1)


def test_unsupported_version_is_bad_and_unknown_type_is_reported():
    body = bytearray(cobs.decode(of.encode_frame(of.FrameType.STOP, 0)[:-1]))
    body[0] = 2
    body[-2:] = binascii.crc_hqx(bytes(body[:-2]), 0xFFFF).to_bytes(2, "little")
    v2 = cobs.encode(bytes(body)) + b"\x00"
    unknown = of.encode_frame(0x10, 9, payload=b"\x01\x02")
    dec = of.Decoder()
    packets = dec.feed(b"\x00" + v2 + unknown)
    assert dec.stats.frames_bad == 1
    assert [(p.stream, p.meta["type"], p.meta["payload"]) for p in packets] == \
        [("unknown", 0x10, b"\x01\x02")]


def test_sample_frame_with_wrong_payload_length_is_bad():
    body = bytearray(cobs.decode(of.Encoder().encode_emg_counts(0, 0, np.zeros((3, 2)))[:-1]))
    body[16] = 4                                    # claims 4 samples, carries 3
    body[-2:] = binascii.crc_hqx(bytes(body[:-2]), 0xFFFF).to_bytes(2, "little")
    dec = of.Decoder()
    assert dec.feed(b"\x00" + cobs.encode(bytes(body)) + b"\x00") == []
    assert dec.stats.frames_bad == 1
    with pytest.raises(FrameError, match="payload"):
        of.decode_frame(cobs.encode(bytes(body)))


def test_info_with_unusable_scaling_is_rejected():
    enc = of.Encoder()
    bad_info = of.encode_frame(of.FrameType.INFO, 0,
                               payload=of.Info(emg_uv_per_count=float("nan")).to_payload())
    zero_info = of.encode_frame(of.FrameType.INFO, 1, payload=of.Info(
        acc_counts_per_g=0.0).to_payload())
    dec = of.Decoder()
    packets = dec.feed(b"\x00" + bad_info + zero_info + enc.encode_emg_counts(0, 0, [[4, 4]]))
    assert dec.stats.frames_bad == 2
    assert [p.stream for p in packets] == ["emg"]
    assert packets[0].meta["scaled_by_default"] is True


def test_encoder_refuses_frames_over_the_limit():
    with pytest.raises(ValueError, match="1024"):
        of.Encoder(of.Info(emg_channel_mask=0xFF)).encode_emg_counts(0, 0, np.zeros((100, 8)))


# -- host commands and the device side -------------------------------------------------------

def test_command_parser_reads_host_frames_and_counts_bad_ones():
    host = of.HostEncoder()
    wire = host.start(of.STREAM_EMG) + host.time_sync_request(2**32 + 5) + b"\x13\x37\x00" \
        + host.info_request() + host.stop()
    parser = of.CommandParser()
    cmds = feed_split(parser, wire, range(3, len(wire), 7))
    assert [(c.name, c.args) for c in cmds] == [
        ("start", {"seq": 0, "streams": of.STREAM_EMG}), ("time_sync", {"seq": 1, "token": 5}),
        ("info", {"seq": 2}), ("stop", {"seq": 3})]
    assert parser.stats.frames_bad == 1
    assert cmds[0].raw == of.start_command(of.STREAM_EMG)


def test_time_sync_reply_round_trip():
    enc = of.Encoder()
    p = of.Decoder().feed(enc.encode_time_sync(5_000_123, 77, 5_000_100))[0]
    assert (p.stream, p.meta["token"], p.meta["device_rx_us"], p.device_time_us) == \
        ("time_sync", 77, 5_000_100, 5_000_123)


def test_registry():
    assert get_protocol("open") is of
    assert of.BOARD.name == "open"


# -- merge=True: one packet per run of frames (what the live source uses) -----------------


def _per_sample_with_scale(packets, stream):
    counters, samples = per_sample(packets, stream)
    return counters, samples.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=40),
       st.lists(st.integers(0, len(STREAM) - 1), max_size=4))
def test_merged_runs_hold_the_same_samples_for_any_split(cuts, damaged):
    data = bytearray(STREAM)
    for pos in damaged:                       # corrupt frames: runs must not bridge them
        data[pos] = corrupt_byte(data[pos])
    ref = of.Decoder()
    ref_packets = ref.feed(bytes(data))
    dec = of.Decoder(merge=True)
    packets = feed_split(dec, bytes(data), cuts)
    for stream in ("emg", "acc"):
        assert _per_sample_with_scale(packets, stream) == _per_sample_with_scale(ref_packets,
                                                                                 stream)
    assert stats_tuple(dec.stats) == stats_tuple(ref.stats)
    # control packets are not merged, and come in the same order
    ctl = [(p.stream, p.counter) for p in packets if p.samples is None]
    assert ctl == [(p.stream, p.counter) for p in ref_packets if p.samples is None]
    # each run's first frame is a frame of the reference, with its offset
    firsts = {(p.stream, p.counter): p.offset for p in ref_packets}
    for p in packets:
        assert firsts[(p.stream, p.counter)] == p.offset
        if p.samples is not None:
            assert sum(p.meta["frame_samples"]) == p.samples.shape[0]
            assert len(p.meta["frame_samples"]) == p.meta["frames"]


def test_merged_runs_are_one_packet_per_stream_and_end_at_a_counter_jump_or_info():
    enc = of.Encoder(of.Info(emg_uv_per_count=0.5))
    z = np.zeros((20, 2))
    wire = (enc.encode_emg(0, 0, z + 1) + enc.encode_imu(0, 0, np.zeros((10, 3)))
            + enc.encode_emg(20, 0, z + 2) + enc.encode_emg(60, 0, z + 3)   # 20 lost
            + of.Encoder(of.Info(emg_uv_per_count=2.0)).encode_info(0)      # new scaling
            + enc.encode_emg_counts(80, 0, np.ones((20, 2), np.int16)))
    packets = of.Decoder(merge=True).feed(wire)
    got = [(p.stream, p.counter, None if p.samples is None else p.samples.shape[0])
           for p in packets]
    assert got == [("emg", 0, 40), ("acc", 0, 10), ("emg", 60, 20), ("info", 0, None),
                   ("emg", 80, 20)]
    assert packets[0].meta["frame_samples"] == [20, 20]
    # the frames before the INFO were scaled by the default (1 uV per count), rounded by
    # the encoder at 0.5: 2 counts per uV; the run after it by 2 uV per count
    assert packets[0].samples[:20].max() == 2.0 and packets[0].samples[20:].max() == 4.0
    assert packets[-1].samples.max() == 2.0
    assert packets[0].meta["scaled_by_default"] and not packets[-1].meta["scaled_by_default"]
