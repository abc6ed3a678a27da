"""Loaders for the public real recordings in ../shared/data (see its README.md).

Each loader returns ``(signal_uv, fs_hz, meta)``: the signal as float64 in
microvolts (1-D for one channel), its sample rate, and a dict of what else the
file says.  The folder is not part of this repository: a loader calls
``pytest.skip`` with the reason when it is missing, as tests/test_detection.py
does.  No dependency beyond numpy (the WFDB reader is a few lines; psg_nox is
read by crampwatch's own EDF reader, which is what its tests test).
"""

from __future__ import annotations

import csv
import os
import re

import numpy as np
import pytest

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def shared_path(*parts: str) -> str:
    """Path of a file in ../shared/data; skips the calling test if it is absent."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"../shared/data (public recordings) not present: {os.path.join(*parts)}")
    return path


# ----------------------------------------------------------------- elderly_isometric

ELDERLY_COLUMNS = ("VL", "BF", "TA", "GL")


def load_elderly_isometric(subject: int = 1, task: str = "ta", muscle: str = "TA"):
    """One channel of one 10 s isometric hold (``task``: vl, bf, ta or gl).

    meta: ``channels`` (the four columns), ``force_kgf`` (the load cell during
    that task), ``subject``.
    """
    path = shared_path("elderly_isometric", f"subject{subject:02d}.npz")
    with np.load(path, allow_pickle=False) as d:
        fs = float(d["fs_hz"])
        channels = tuple(str(c) for c in d["channels"])
        col = channels.index(muscle)
        x = d[f"emg_uv_{task}_task"][:, col].astype(np.float64)
        force = d["force_kgf"][:, ELDERLY_COLUMNS.index(task.upper())].astype(np.float64)
    return x, fs, {"channels": channels, "force_kgf": force, "subject": subject, "path": path}


# ----------------------------------------------------------------- santuz_walking

def load_santuz_walking(muscle: str = "GM", trial: str = "ID0012_TW_01"):
    """One muscle of the treadmill-walking trial (CSV in uV, a time column in s).

    meta: ``time_s``, ``muscles`` (the 13 columns), ``touchdown_s`` and
    ``liftoff_s`` (the gait cycles file).
    """
    path = shared_path("santuz_walking", f"{trial}_emg.csv")
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        names = next(reader)
        rows = np.array([[float(v) for v in row] for row in reader])
    col = names.index(muscle)
    time_s = rows[:, 0]
    fs = 1.0 / float(np.median(np.diff(time_s)))
    with open(shared_path("santuz_walking", f"{trial}_cycles.csv"), newline="") as fh:
        cyc = list(csv.DictReader(fh))
    meta = {"time_s": time_s, "muscles": tuple(names[1:]), "path": path,
            "touchdown_s": np.array([float(r["touchdown_s"]) for r in cyc]),
            "liftoff_s": np.array([float(r["liftoff_s"]) for r in cyc])}
    return rows[:, col].astype(np.float64), round(fs, 6), meta


# ----------------------------------------------------------------- uci_lower_limb

_UCI_CHANNEL = re.compile(r"^Channel \d+: '([^']*)', (\d+) values, engineering units: (\w+)")


def load_uci_lower_limb(name: str = "5Nmar", channel: int = 1):
    """Column ``channel`` (0-based: RF, BF, VM, ST, then the goniometer) of a UCI
    text file, in uV for the EMG columns (the file is in mV; the goniometer's
    degrees are returned as they are).  Sampled at 1000 Hz.

    The file starts with a line per channel giving its name, its number of
    values and its unit; the goniometer column may run longer than the EMG
    (its values were "extrapolated from 50 to 1000 samples per second"): the
    column is cut at its stated number of values.

    meta: ``names``, ``counts``, ``units`` of all columns (from the file's header).
    """
    path = shared_path("uci_lower_limb", f"{name}.txt")
    with open(path, encoding="latin-1") as fh:
        lines = fh.read().splitlines()
    names, counts, units = [], [], []
    body = 0
    for i, line in enumerate(lines[1:], 1):
        m = _UCI_CHANNEL.match(line)
        if m is None:
            body = i + 1 if not line.strip() else i
            break
        names.append(m.group(1))
        counts.append(int(m.group(2)))
        units.append(m.group(3))
    values = []
    for line in lines[body:]:
        cells = line.split("\t")
        if channel < len(cells) and cells[channel].strip():
            values.append(float(cells[channel]))
    x = np.array(values[: counts[channel]], dtype=np.float64)
    unit = units[channel].lower()
    if unit == "mv":
        x = x * 1000.0
    return x, 1000.0, {"names": names, "counts": counts, "units": units, "path": path,
                       "n_values": len(values)}


# ----------------------------------------------------------------- physionet_emgdb

def read_wfdb_header(path: str) -> dict:
    """The record line and the signal lines of a WFDB .hea file (one signal)."""
    with open(path) as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip() and not ln.startswith("#")]
    rec = lines[0].split()
    sig = lines[1].split()
    m = re.match(r"^([\d.eE+-]+)(?:\((-?\d+)\))?(?:/(\w+))?$", sig[2])
    if m is None:
        raise ValueError(f"{path}: ADC gain field {sig[2]!r}")
    adc_zero = int(sig[4])
    return {
        "record": rec[0], "n_signals": int(rec[1]), "fs_hz": float(rec[2]),
        "n_samples": int(rec[3]), "file": sig[0], "format": sig[1],
        "gain_per_unit": float(m.group(1)),
        "baseline": int(m.group(2)) if m.group(2) is not None else adc_zero,
        "unit": m.group(3) or "mV", "adc_resolution": int(sig[3]), "adc_zero": adc_zero,
        "initial_value": int(sig[5]), "checksum": int(sig[6]), "block_size": int(sig[7]),
        "description": " ".join(sig[8:]),
    }


def load_physionet_emgdb(name: str = "emg_healthy"):
    """A PhysioNet emgdb record (WFDB format 16: little-endian int16, one signal).

    Physical value = (stored - baseline) / gain, in the header's unit (mV),
    returned in uV.  meta: the parsed header (``read_wfdb_header``) and the raw
    stored integers (``digital``).
    """
    hea = read_wfdb_header(shared_path("physionet_emgdb", f"{name}.hea"))
    if hea["format"] != "16" or hea["n_signals"] != 1:
        raise ValueError(f"{name}: only single-signal WFDB format 16 is read here")
    digital = np.fromfile(shared_path("physionet_emgdb", hea["file"]), dtype="<i2")
    per_uv = {"mv": 1e3, "uv": 1.0, "v": 1e6}[hea["unit"].lower()]
    # one division by the units per uV (10.0 here, exact): x is correctly rounded
    x = (digital.astype(np.float64) - hea["baseline"]) / (hea["gain_per_unit"] / per_uv)
    return x, hea["fs_hz"], {**hea, "digital": digital}


# ----------------------------------------------------------------- psg_nox

def psg_nox_path() -> str:
    return shared_path("psg_nox", "subject1.edf")


def load_psg_nox(emg: str | None = None):
    """The leg EMG of the Nox A1 sleep recording, through crampwatch's EDF reader
    (without ``emg``: the channel the reader chooses).

    meta: ``label``, ``labels``, ``acc_g`` (n, 3) and ``acc_fs_hz`` (None if no
    accelerometer was found), ``start_time``, ``format``.
    """
    from crampwatch.firmware_bridge.edf import open_edf

    with open_edf(psg_nox_path(), emg=emg) as rec:
        x = rec.read_emg()
        acc = rec.read_acc() if rec.acc is not None else None
        meta = {"label": rec.emg.channels[0], "labels": list(rec.labels), "acc_g": acc,
                "acc_fs_hz": rec.acc.fs_hz if rec.acc is not None else None,
                "acc_labels": rec.acc.channels if rec.acc is not None else None,
                "start_time": rec.start_time, "format": rec.format,
                "duration_s": rec.duration_s, "path": rec.path}
        return x, rec.emg.fs_hz, meta
