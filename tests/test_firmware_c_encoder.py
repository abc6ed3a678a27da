"""The reference C frame encoder (firmware/cw_frame.c) against the Python one.

The C encoder is compiled with the system compiler into a small harness
(cw_frame_cli.c: frame descriptions on stdin, hex on stdout); its bytes must
equal the Python Encoder's and decode with the Python Decoder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from crampwatch.firmware_bridge.protocols import openframe as of

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware_bridge" / "firmware"
VECTORS = json.loads((FIRMWARE / "test_vectors.json").read_text())["vectors"]


@pytest.fixture(scope="module")
def c_encoder(tmp_path_factory):
    """A function: list of description lines -> list of hex lines from the C harness."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc/gcc/clang) on PATH: cannot build firmware/cw_frame.c")
    exe = tmp_path_factory.mktemp("cw_frame") / "cw_frame_cli"
    build = subprocess.run(
        [cc, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O2",
         str(FIRMWARE / "cw_frame.c"), str(FIRMWARE / "cw_frame_cli.c"), "-o", str(exe)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr

    def run(lines: list[str]) -> list[str]:
        res = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                             text=True, timeout=60, check=True)
        return res.stdout.splitlines()

    run.cc = cc
    return run


def cli_line(v: dict) -> str:
    a = v["args"]
    if v["kind"] == "samples":
        counts = np.asarray(a["counts"])
        return " ".join(map(str, ["samples", a["type"], a["seq"], a["device_time_us"],
                                  a["first_index"], a["channel_mask"], counts.shape[0],
                                  *counts.ravel().tolist()]))
    if v["kind"] == "info":
        return " ".join(map(str, ["info", a["seq"], a["device_time_us"], a["emg_fs_hz"],
                                  a["imu_fs_hz"], a["emg_uv_per_count"], a["acc_counts_per_g"],
                                  a["adc_bits"], a["emg_channel_mask"], a["imu_channel_mask"],
                                  *a["firmware"], a["emg_frame_samples"], a["frontend_gain"],
                                  a["name"]]))
    if v["kind"] == "status":
        return " ".join(map(str, ["status", a["seq"], a["device_time_us"], a["battery_mv"],
                                  a["battery_pct"], a["flags"], a["emg_dropped"],
                                  a["imu_dropped"], a["tx_dropped"], a["uptime_s"]]))
    if v["kind"] == "time_sync":
        return " ".join(map(str, ["time_sync", a["seq"], a["device_time_us"], a["token"],
                                  a["device_rx_us"]]))
    return " ".join(map(str, ["frame", a["type"], a["seq"], a["device_time_us"],
                              a["first_index"], a["n_samples"], a["channel_mask"],
                              a["payload_hex"] or "-"]))


def test_c_encoder_reproduces_every_vector(c_encoder):
    got = c_encoder([cli_line(v) for v in VECTORS])
    assert got == [v["wire_hex"] for v in VECTORS]


def test_c_frames_decode_with_the_python_decoder(c_encoder):
    got = c_encoder([cli_line(v) for v in VECTORS if v["kind"] != "frame"])
    dec = of.Decoder()
    packets = dec.feed(b"".join(bytes.fromhex(h) for h in got))
    assert dec.stats.frames_bad == 0
    assert [p.stream for p in packets] == ["emg", "acc", "info", "status", "time_sync", "emg",
                                           "emg", "emg"]
    assert packets[2].meta["name"] == "cw-open-1"
    assert packets[2].meta["firmware"] == "1.2.3"


def test_c_and_python_agree_on_random_sample_frames(c_encoder):
    rng = np.random.default_rng(7)
    lines, expected, counts_all = [], [], []
    for _ in range(300):
        ftype = int(rng.choice([of.FrameType.EMG, of.FrameType.IMU]))
        mask = int(rng.integers(1, 256))
        n_ch = bin(mask).count("1")
        n = int(rng.integers(1, min(255, (of.MAX_FRAME_LEN - 20) // (2 * n_ch)) + 1))
        # mostly small values: many zero bytes, and runs of non-zero ones
        counts = np.where(rng.random((n, n_ch)) < 0.5, rng.integers(-3, 4, (n, n_ch)),
                          rng.integers(-32768, 32768, (n, n_ch)))
        seq, t_us, first = int(rng.integers(0, 2**16)), int(rng.integers(0, 2**63)), \
            int(rng.integers(0, 2**32))
        lines.append(" ".join(map(str, ["samples", ftype, seq, t_us, first, mask, n,
                                        *counts.ravel().tolist()])))
        enc = of.Encoder()
        enc.seq = seq
        fn = enc.encode_emg_counts if ftype == of.FrameType.EMG else enc.encode_imu_counts
        expected.append(fn(first, t_us, counts, channel_mask=mask).hex())
        counts_all.append(counts)
    got = c_encoder(lines)
    assert got == expected
    frames = [of.decode_frame(bytes.fromhex(h)) for h in got]
    for f, counts in zip(frames, counts_all):
        assert np.frombuffer(f["payload"], "<i2").tolist() == counts.ravel().tolist()


def test_c_cobs_block_boundaries(c_encoder):
    # Frames with no zero byte at all, 200..520 bytes long: every COBS block
    # boundary case (254-byte runs ending exactly at the end, one past, ...).
    lines, expected = [], []
    for length in range(200, 521):
        payload = bytes([1 + (i % 255) for i in range(length)])
        lines.append(f"frame 16 257 {0x0101010101010101} {0x01010101} 1 1 {payload.hex()}")
        expected.append(of.encode_frame(16, 257, 0x0101010101010101, 0x01010101, 1, 1,
                                        payload).hex())
    assert c_encoder(lines) == expected


def test_c_refuses_frames_over_the_limit(c_encoder):
    too_long = "ab" * (of.MAX_FRAME_LEN - 19)           # header + payload + CRC = 1025
    just_fits = "ab" * (of.MAX_FRAME_LEN - 20)
    got = c_encoder([f"frame 16 0 0 0 0 0 {too_long}", f"frame 16 0 0 0 0 0 {just_fits}"])
    assert got[0] == "error"
    assert got[1] == of.encode_frame(16, 0, payload=bytes.fromhex(just_fits)).hex()
    with pytest.raises(ValueError):
        of.encode_frame(16, 0, payload=bytes.fromhex(too_long))


def test_c_receiver_parses_host_commands_like_the_python_parser(c_encoder):
    host = of.HostEncoder()
    wire = (b"\x00" + host.start(of.STREAM_IMU) + host.time_sync_request(123456)
            + b"\x13\x37\x00"                       # garbage frame: dropped
            + host.info_request() + b"\x01" * 100 + b"\x00"   # over CW_RX_MAX: dropped
            + host.stop())
    corrupt = bytearray(host.stop())
    corrupt[3] ^= 0x40
    wire += bytes(corrupt)
    # split across two lines: the C receiver keeps its state between reads
    got = c_encoder([f"decode {wire[:23].hex()}", f"decode {wire[23:].hex()}"])
    frames = [line.split() for line in got if line.startswith("frame")]
    py = of.CommandParser().feed(wire)
    assert [(int(f[1]), int(f[2])) for f in frames] == [
        (of.FrameType.START, 0), (of.FrameType.TIME_SYNC_REQUEST, 1), (of.FrameType.GET_INFO, 2),
        (of.FrameType.STOP, 3)]
    assert [c.name for c in py] == ["start", "time_sync", "info", "stop"]
    assert frames[0][-1] == "02" and frames[1][-1] == (123456).to_bytes(4, "little").hex()
    assert got.count("end") == 2


def test_c_receiver_decodes_device_frames_it_encoded(c_encoder):
    # round trip inside C: encode, then decode with cw_frame_decode
    vec = [v for v in VECTORS if v["kind"] == "samples" and len(v["wire_hex"]) < 120]
    got = c_encoder([f"decode {v['wire_hex']}" for v in vec])
    frames = [line.split() for line in got if line.startswith("frame")]
    assert len(frames) == len(vec)
    for f, v in zip(frames, vec):
        a = v["args"]
        assert [int(x) for x in f[1:7]] == [a["type"], a["seq"], a["device_time_us"],
                                            a["first_index"], len(a["counts"]),
                                            a["channel_mask"]]
        assert bytes.fromhex(f[7]) == np.asarray(a["counts"], "<i2").tobytes()


def test_example_main_compiles(c_encoder, tmp_path):
    res = subprocess.run([c_encoder.cc, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror",
                          "-c", str(FIRMWARE / "example_main.c"), "-o",
                          str(tmp_path / "example_main.o")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
