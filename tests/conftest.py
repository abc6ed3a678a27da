"""Shared fixtures.

``sim_night``: a short synthetic night (25 min, EMG 1000 Hz, accelerometer
100 Hz, 2 cramps and every distractor kind) written once per test session as
EDF+ with its labels file beside it.
"""

from __future__ import annotations

import os
import time

import pytest


def _away_from_noon() -> None:
    """The capture daemon starts a new file for the new night at local noon.  A capture
    test streams a simulated night as fast as it can, its samples dated up to an hour or so
    ahead of the clock: started shortly before noon, it would cross noon and see two
    recordings.  Between 09:00 and 12:30 local time the tests therefore run in a fixed
    time zone 8 h behind (01:00-04:30 local), far from noon either way."""
    now = time.localtime()
    if not (9 <= now.tm_hour < 12 or (now.tm_hour == 12 and now.tm_min < 30)):
        return
    offset_h = round((now.tm_gmtoff or 0) / 3600) - 8
    # POSIX TZ signs are inverted: "CWT3" is UTC-3, "CWT-3" UTC+3
    os.environ["TZ"] = f"CWT{-offset_h:+d}".replace("+", "")
    time.tzset()


_away_from_noon()

SIM_NIGHT_SPEC = dict(
    hours=25 / 60, seed=2024, emg_fs_hz=1000.0, acc_fs_hz=100.0, mains_hz=50.0, n_cramps=2
)


@pytest.fixture(scope="session")
def sim_night_spec():
    """The NightSpec behind ``sim_night``."""
    from crampwatch.firmware_bridge.synth import NightSpec

    return NightSpec(**SIM_NIGHT_SPEC)


@pytest.fixture(scope="session")
def sim_night(tmp_path_factory, sim_night_spec):
    """(edf_path, labels_path) of a 25 min synthetic night written as EDF+.

    The EDF holds "EMG calf" (uV, 1000 Hz) and "Acc X/Y/Z" (g, 100 Hz); the
    labels CSV lists every cramp and distractor (kind,onset_s,offset_s,note).
    """
    from crampwatch.firmware_bridge.edf import write_edf
    from crampwatch.firmware_bridge.labels import write_labels
    from crampwatch.firmware_bridge.synth import SyntheticNight

    out = tmp_path_factory.mktemp("sim_night")
    night = SyntheticNight(sim_night_spec)
    edf_path = out / "night.edf"
    labels_path = out / "night.labels.csv"
    write_edf(edf_path, night)
    write_labels(labels_path, night.labels)
    return str(edf_path), str(labels_path)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """CRAMPWATCH_HOME in tmp, no systemd/config variables from the environment; the
    log levels the capture command sets are restored."""
    import logging

    h = tmp_path / "home"
    monkeypatch.setenv("CRAMPWATCH_HOME", str(h))
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CRAMPWATCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    levels = {n: logging.getLogger(n).level for n in ("crampwatch", "crampwatch.detector")}
    yield h
    for n, lv in levels.items():
        logging.getLogger(n).setLevel(lv)
