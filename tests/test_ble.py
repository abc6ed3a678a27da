"""The BLE source against recorded notifications, through a fake bleak client.

No radio: the fake client (tests/ble_fake.py) is injected at the one seam the
source has, ``client_class``, and connecting still goes through
bleak-retry-connector's ``establish_connection``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from ble_fake import ADDRESS, find_device, load_recording, make_client_class
from boardsim_helpers import Collected, collect_until

from crampwatch.errors import SourceError
from crampwatch.firmware_bridge.protocols import openframe
from crampwatch.firmware_bridge.sources import open_source
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight


def _complete_frames(notifications):
    """What a decoder makes of one session's bytes: the device indices per stream."""
    dec = openframe.Decoder()
    out = {"emg": [], "acc": []}
    for _, payload in notifications:
        for p in dec.feed(payload):
            if p.stream in out:
                out[p.stream].append((p.counter, p.samples.shape[0]))
    return out


@pytest.fixture(scope="module")
def recording():
    return load_recording()


@pytest.fixture(scope="module")
def replay(recording):
    """Run the BLE source over the whole recording once; share what it yielded."""
    client_class = make_client_class(recording, speed=4.0)
    url = f"ble://{ADDRESS}?board=open"
    with open_source(url, client_class=client_class, find_device=find_device) as src:
        s2 = _complete_frames(recording["sessions"][1]["notifications"])
        end2 = s2["emg"][-1][0] + s2["emg"][-1][1]
        got = collect_until(src, lambda g: g.end_index("emg") >= end2
                            and g.end_index("acc") >= s2["acc"][-1][0] + s2["acc"][-1][1],
                            timeout_s=30, into=Collected())
        info = dict(src.info)
        stats = dict(src.stats)
    return got, info, stats, client_class.script


def test_ble_samples_match_the_recorded_signal(recording, replay):
    got, info, _, _ = replay
    sig = recording["signal"]
    night = SyntheticNight(NightSpec(hours=sig["hours"], seed=sig["seed"],
                                     emg_fs_hz=sig["emg_fs_hz"], acc_fs_hz=sig["acc_fs_hz"]))
    assert info["emg"].fs_hz == sig["emg_fs_hz"] and info["emg"].unit == "uV"
    assert info["emg"].channels == ("emg1",)
    assert info["acc"].fs_hz == sig["acc_fs_hz"] and info["acc"].unit == "g"
    for stream, step in (("emg", 0.25), ("acc", 1 / 4096)):
        idx, val = got.data(stream)
        assert np.all(np.diff(idx) > 0)
        # the first session started at device index 0, so host index = device index
        truth = (night.render_emg(0, int(idx[-1]) + 1)[idx].reshape(-1, 1) if stream == "emg"
                 else night.render_acc(0, int(idx[-1]) + 1)[idx])
        assert np.abs(val - truth).max() <= step / 2 * 1.0001


def test_ble_gap_is_measured_from_the_counter_and_never_filled(recording, replay):
    got, _, _, _ = replay
    s1 = _complete_frames(recording["sessions"][0]["notifications"])
    s2 = _complete_frames(recording["sessions"][1]["notifications"])
    for stream in ("emg", "acc"):
        end1 = s1[stream][-1][0] + s1[stream][-1][1]      # after the last whole frame
        start2 = s2[stream][0][0]
        gaps = got.kinds("gap", stream)
        assert [(g.first_index, g.n_samples) for g in gaps] == [(end1, start2 - end1)]
        assert gaps[0].detail == {"measured_from": "counter"}
        # nothing was made up: exactly the recorded whole frames arrived
        assert got.n(stream) == sum(n for _, n in s1[stream] + s2[stream])
        assert got.n(stream) + got.gap_samples(stream) == got.end_index(stream)


def test_ble_reconnects_after_the_link_drops(replay):
    got, _, stats, script = replay
    connected = got.kinds("connected")
    assert [c.detail["reconnect"] for c in connected] == [False, True]
    assert all(c.detail["transport"] == "ble" and c.detail["name"] == "crampwatch-ble"
               for c in connected)
    assert "disconnected" in got.kinds("disconnected")[0].detail["reason"]
    # establish_connection retried the failed attempt by itself: 1 + failed + good
    assert script["connects"] == 3 and script["failed"] == 1
    cmds = [c.name for w in script["writes"] for c in openframe.CommandParser().feed(w)]
    assert cmds.count("start") == 2 and cmds.count("info") == 2
    assert stats["reconnects"] == 1
    # the status frame the board sent in each session came out as an event
    assert [e.detail["battery_pct"] for e in got.kinds("status") if "battery_pct" in e.detail] \
        == [76, 76]


def test_ble_source_closes_with_a_stop_command(recording):
    client_class = make_client_class(recording, speed=20.0)
    with open_source(f"ble://{ADDRESS}?board=open", client_class=client_class,
                     find_device=find_device) as src:
        collect_until(src, lambda g: g.n("emg") > 0)
    cmds = [c.name for w in client_class.script["writes"]
            for c in openframe.CommandParser().feed(w)]
    assert cmds[-1] == "stop"


def _has_bluetooth() -> bool:
    d = "/sys/class/bluetooth"
    return os.path.isdir(d) and bool(os.listdir(d))


@pytest.mark.skipif(_has_bluetooth(), reason="this machine has a Bluetooth adapter")
def test_ble_without_an_adapter_fails_cleanly_with_the_real_bleak():
    with open_source("ble://AA:BB:CC:DD:EE:FF?board=open&scan_s=1") as src:
        with pytest.raises(SourceError, match="no Bluetooth adapter"):
            while True:
                src.read(timeout_s=10.0)


def test_scan_lists_serial_ports_and_reports_bluetooth(capsys):
    from crampwatch.tools.cli import main

    assert main(["scan", "--timeout", "0.5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("serial ports:\n")
    assert "BLE boards (Nordic UART Service):" in out
    if not _has_bluetooth():
        assert "no Bluetooth adapter: " in out
