"""Make ``ble_open_notifications.json``: an open-frame board's BLE notifications.

Run once (``python tests/data/ble_make_recording.py``); the tests replay the
file byte for byte and never regenerate it.  The board is modelled as a
Nordic UART peripheral: frames are made by the open-frame Encoder as their
last sample is acquired, queued in the radio's TX buffer, and sent at each
connection event (every 7.5 ms) as notifications of 244 bytes (the payload
of a 247-byte ATT MTU; a shorter one only when bytes have waited 100 ms), at
most 4 per event; 4 % of events are lost to interference and their data
waits for the next one.  The splits therefore fall anywhere inside frames.
Session 1 ends with the link dropping in the middle of a notification (the
partial frame is lost); the board keeps sampling, and session 2 starts 0.5 s
later in device time.
"""

from __future__ import annotations

import base64
import json
import os

import numpy as np

from crampwatch.firmware_bridge.protocols import openframe
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight

MTU_PAYLOAD = 244
EVENT_S = 0.0075
PER_EVENT = 4
FLUSH_S = 0.1
EMG_FS, ACC_FS = 1000.0, 100.0
SEED, HOURS = 5, 0.01


def session(enc, night, rng, emg_start, emg_end, cut_at_end):
    """Notifications [(t_s, bytes)] of one streaming session (t from START)."""
    frames = []                    # (ready_time_s, wire)
    for i0 in range(emg_start, emg_end, 20):
        emg = night.render_emg(i0, 20).reshape(20, 1)
        t = (i0 + 20 - emg_start) / EMG_FS
        frames.append((t, enc.encode_emg(i0, int(i0 * 1e6 / EMG_FS), emg)))
    a_start, a_end = int(emg_start * ACC_FS / EMG_FS), int(emg_end * ACC_FS / EMG_FS)
    for a0 in range(a_start, a_end, 10):
        t = (a0 + 10 - a_start) / ACC_FS
        frames.append((t, enc.encode_imu(a0, int(a0 * 1e6 / ACC_FS), night.render_acc(a0, 10))))
    frames.append((0.3, enc.encode_status(int((emg_start + 300) * 1e6 / EMG_FS), battery_mv=3870,
                                          battery_pct=76, flags=0b10,
                                          uptime_s=int(emg_start / EMG_FS))))
    frames.sort(key=lambda f: f[0])
    out, buf, k = [], bytearray(), 0
    oldest = None                  # when the oldest byte in the TX buffer was queued
    t_end = (emg_end - emg_start) / EMG_FS + 0.05
    t = EVENT_S
    while t < t_end:
        while k < len(frames) and frames[k][0] <= t:
            if not buf:
                oldest = frames[k][0]
            buf += frames[k][1]
            k += 1
        if buf and rng.random() > 0.04:
            for _ in range(PER_EVENT):
                # fill the MTU for throughput; flush a partial one after FLUSH_S
                if len(buf) < MTU_PAYLOAD and not (buf and t - oldest >= FLUSH_S):
                    break
                out.append((round(t, 4), bytes(buf[:MTU_PAYLOAD])))
                del buf[:MTU_PAYLOAD]
                oldest = t
        t += EVENT_S
    if buf:
        out.append((round(t, 4), bytes(buf[:MTU_PAYLOAD])))
    if cut_at_end:
        # the link drops in the middle of the last notification: its tail never arrives
        t_last, last = out[-1]
        out[-1] = (t_last, last[:len(last) // 2 + 7])
    return out


def main():
    rng = np.random.default_rng(SEED)
    info = openframe.Info(emg_fs_hz=EMG_FS, imu_fs_hz=ACC_FS, emg_uv_per_count=0.25,
                          acc_counts_per_g=4096.0, adc_bits=16, emg_channel_mask=0x01,
                          imu_channel_mask=0x07, firmware=(1, 2, 0), emg_frame_samples=20,
                          frontend_gain=1000.0, name="crampwatch-ble")
    enc = openframe.Encoder(info)
    night = SyntheticNight(NightSpec(hours=HOURS, seed=SEED, emg_fs_hz=EMG_FS, acc_fs_hz=ACC_FS))
    plan = [(0, 1210, True), (1700, 2500, False)]
    sessions = []
    for emg_start, emg_end, cut in plan:
        info_wire = enc.encode_info(int(emg_start * 1e6 / EMG_FS))
        notes = session(enc, night, rng, emg_start, emg_end, cut)
        sessions.append({
            "device_emg_start": emg_start,
            "then": "disconnect" if cut else "stay",
            "info_reply": base64.b64encode(info_wire).decode(),
            "notifications": [[t, base64.b64encode(b).decode()] for t, b in notes],
        })
    doc = {
        "about": __doc__.strip().splitlines()[0],
        "made_by": "tests/data/ble_make_recording.py",
        "signal": {"seed": SEED, "hours": HOURS, "emg_fs_hz": EMG_FS, "acc_fs_hz": ACC_FS},
        "mtu_payload": MTU_PAYLOAD,
        "sessions": sessions,
    }
    path = os.path.join(os.path.dirname(__file__), "ble_open_notifications.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
