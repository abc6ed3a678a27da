"""Write test_vectors.json: open frame v1 frames shared by the Python and C tests.

Run by hand after a deliberate change of the wire format (which needs a new
protocol version, see PROTOCOL.md):

    python firmware_bridge/firmware/gen_test_vectors.py

The vectors form one valid stream, in order: the Python decoder decodes them
one after the other (the first EMG/IMU frames precede the INFO frame and so
are scaled by the defaults).  ``args`` are what both encoders take;
``wire_hex`` the exact bytes; ``expect`` what the decoder must report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from crampwatch.firmware_bridge.protocols import openframe as of

OUT = Path(__file__).with_name("test_vectors.json")


def _samples(name, ftype, seq, t_us, first, mask, counts, scale, by_default):
    counts = np.asarray(counts, dtype=np.int64)
    wire = of.encode_frame(ftype, seq, t_us, first, counts.shape[0], mask,
                           counts.astype("<i2").tobytes())
    stream = "emg" if ftype == of.FrameType.EMG else "acc"
    return {"name": name, "kind": "samples",
            "args": {"type": ftype, "seq": seq, "device_time_us": t_us, "first_index": first,
                     "channel_mask": mask, "counts": counts.tolist()},
            "wire_hex": wire.hex(),
            "expect": {"stream": stream, "counter": first, "device_time_us": t_us,
                       "samples": (counts * scale).tolist(), "scaled_by_default": by_default}}


def main() -> None:
    d = of.DEFAULT_INFO
    info = of.Info(emg_fs_hz=2000.0, imu_fs_hz=200.0, emg_uv_per_count=0.25,
                   acc_counts_per_g=8192.0, adc_bits=12, emg_channel_mask=0x03,
                   imu_channel_mask=0x07, firmware=(1, 2, 3), emg_frame_samples=20,
                   frontend_gain=1000.0, name="cw-open-1")
    vec = [
        _samples("emg_before_info", of.FrameType.EMG, 0, 1_000_000, 0, 0x03,
                 [[0, 1], [-1, 32767], [-32768, 100], [5, -5]], d.emg_uv_per_count, True),
        _samples("imu_before_info", of.FrameType.IMU, 1, 1_000_500, 0, 0x07,
                 [[0, 0, 4096], [-4096, 2048, 0]], 1 / d.acc_counts_per_g, True),
    ]
    info_args = {"seq": 2, "device_time_us": 1_001_000, "emg_fs_hz": info.emg_fs_hz,
                 "imu_fs_hz": info.imu_fs_hz, "emg_uv_per_count": info.emg_uv_per_count,
                 "acc_counts_per_g": info.acc_counts_per_g, "adc_bits": info.adc_bits,
                 "emg_channel_mask": info.emg_channel_mask,
                 "imu_channel_mask": info.imu_channel_mask, "firmware": list(info.firmware),
                 "emg_frame_samples": info.emg_frame_samples,
                 "frontend_gain": info.frontend_gain, "name": info.name}
    enc = of.Encoder(info)
    enc.seq = 2
    vec.append({"name": "info", "kind": "info", "args": info_args,
                "wire_hex": enc.encode_info(1_001_000).hex(),
                "expect": {"stream": "info", "counter": 2, "emg_uv_per_count": 0.25,
                           "acc_counts_per_g": 8192.0, "firmware": "1.2.3", "name": "cw-open-1"}})
    status = {"seq": 3, "device_time_us": 1_002_000, "battery_mv": 3700, "battery_pct": 81,
              "flags": 0x02, "emg_dropped": 0, "imu_dropped": 1, "tx_dropped": 2,
              "uptime_s": 3600}
    enc.seq = 3
    vec.append({"name": "status", "kind": "status", "args": status,
                "wire_hex": enc.encode_status(
                    1_002_000, 3700, 81, 0x02, 0, 1, 2, 3600).hex(),
                "expect": {"stream": "status", "counter": 3, "battery_mv": 3700,
                           "battery_pct": 81, "flag_names": ["streaming"], "imu_dropped": 1,
                           "tx_dropped": 2, "uptime_s": 3600}})
    enc.seq = 4
    vec.append({"name": "time_sync", "kind": "time_sync",
                "args": {"seq": 4, "device_time_us": 1_003_000, "token": 0xDEADBEEF,
                         "device_rx_us": 1_002_990},
                "wire_hex": enc.encode_time_sync(1_003_000, 0xDEADBEEF, 1_002_990).hex(),
                "expect": {"stream": "time_sync", "counter": 4, "token": 0xDEADBEEF,
                           "device_rx_us": 1_002_990, "device_time_us": 1_003_000}})
    rng = np.random.default_rng(20240601)
    vec.append(_samples("emg_after_info_index_wrap", of.FrameType.EMG, 5, 2**40 + 123,
                        2**32 - 10, 0x03, rng.integers(-3000, 3000, (50, 2)),
                        info.emg_uv_per_count, False))
    # a run of > 254 non-zero bytes: exercises COBS's 0xFF blocks
    vec.append(_samples("emg_long_nonzero_run", of.FrameType.EMG, 6, 0x0101010101010101,
                        0x01010101, 0x01, np.full((200, 1), 0x0101), info.emg_uv_per_count,
                        False))
    vec.append(_samples("emg_one_channel_mask_0x04", of.FrameType.EMG, 0xFFFF, 2**64 - 1,
                        40, 0x04, [[7], [-7]], info.emg_uv_per_count, False))
    for name, ftype, seq, payload in (("host_start", of.FrameType.START, 0, b"\x03"),
                                      ("host_stop", of.FrameType.STOP, 1, b""),
                                      ("host_time_sync_request", of.FrameType.TIME_SYNC_REQUEST,
                                       2, (42).to_bytes(4, "little")),
                                      ("host_get_info", of.FrameType.GET_INFO, 3, b"")):
        vec.append({"name": name, "kind": "frame",
                    "args": {"type": ftype, "seq": seq, "device_time_us": 0, "first_index": 0,
                             "n_samples": 0, "channel_mask": 0, "payload_hex": payload.hex()},
                    "wire_hex": of.encode_frame(ftype, seq, payload=payload).hex(),
                    "expect": {"stream": "unknown", "counter": seq, "type": ftype}})
    head = {"format": "crampwatch open frame v1 test vectors",
            "spec": "firmware_bridge/PROTOCOL.md",
            "note": "One valid stream, in order; regenerate only with gen_test_vectors.py."}
    lines = [json.dumps(head)[:-1] + ', "vectors": [']
    lines += [" " + json.dumps(v) + ("," if k < len(vec) - 1 else "") for k, v in enumerate(vec)]
    OUT.write_text("\n".join(lines) + "\n]}\n")
    print(f"wrote {len(vec)} vectors to {OUT}")


if __name__ == "__main__":
    main()
