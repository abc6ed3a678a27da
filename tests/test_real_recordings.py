"""Every public real recording in ../shared/data, read exactly and run through
crampwatch where it can tell something (loaders in tests/realdata.py).

Reading assertions are exact; detection assertions are few (the detector is
being reworked): a healthy subject's gait is not a cramp, and the filtered
envelope of a needle recording shows its two contractions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import numpy as np
import pytest
from crampwatch.detector import DetectorConfig, EpisodeEnded, Pipeline
from crampwatch.firmware_bridge.edf import choose_emg_channel, open_edf, write_edf
from crampwatch.firmware_bridge.readers import open_recording
from crampwatch.firmware_bridge.recording import CaptureWriter, RecordingHeader
from crampwatch.firmware_bridge.types import SampleBlock, StreamInfo
from realdata import (
    load_elderly_isometric,
    load_physionet_emgdb,
    load_psg_nox,
    load_santuz_walking,
    load_uci_lower_limb,
    psg_nox_path,
)

# ----------------------------------------------------------------- psg_nox (EDF+, Nox A1)


def _psg_signal_raw(path, label):
    """One signal of the PSG file decoded straight from its bytes (not with crampwatch)."""
    raw = open(path, "rb").read()
    ns, hdr = int(raw[252:256]), int(raw[184:192])
    n_rec, rec_s = int(raw[236:244]), float(raw[244:252])

    def col(start, width):
        return [raw[start + i * width:start + (i + 1) * width] for i in range(ns)]

    widths = [16, 80, 8, 8, 8, 8, 8, 80, 8, 32]
    starts = np.cumsum([256] + [w * ns for w in widths[:-1]])
    labels = [b.decode("latin-1").strip() for b in col(starts[0], 16)]
    k = labels.index(label)
    pmin, pmax, dmin, dmax = (float(col(starts[j], 8)[k]) for j in (3, 4, 5, 6))
    dim = col(starts[2], 8)[k].decode().strip()
    spr = [int(b) for b in col(starts[8], 8)]
    rb = 2 * sum(spr)
    off = 2 * sum(spr[:k])
    d = np.concatenate([np.frombuffer(raw, "<i2", spr[k], hdr + r * rb + off)
                        for r in range(n_rec)]).astype(np.float64)
    scale = {"V": 1e6, "mV": 1e3, "uV": 1.0, "g": 1.0}[dim]
    phys = (pmin + (d - dmin) * (pmax - pmin) / (dmax - dmin)) * scale
    return phys, spr[k] / rec_s, (pmax - pmin) / (dmax - dmin) * scale, labels


def test_psg_nox_leg_emg_and_accelerometer_read_exactly():
    path = psg_nox_path()
    x, fs, meta = load_psg_nox()
    assert meta["label"] == "Right Leg" and fs == 200.0
    assert meta["format"] == "edf+c" and meta["duration_s"] == 120.0
    assert meta["start_time"] == dt.datetime(2018, 2, 6, 1, 36, 50, tzinfo=dt.timezone.utc)
    ref, ref_fs, step_uv, labels = _psg_signal_raw(path, "Right Leg")
    assert ref_fs == fs and x.size == 24000
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-9)
    assert step_uv == pytest.approx(31.25, abs=0.01)             # stored coarsely
    steps = np.diff(np.unique(x)) / step_uv
    assert np.allclose(steps, np.round(steps), atol=1e-6)
    # the labels with non-ASCII bytes decode (UTF-8 here), all 90 of them
    assert len(meta["labels"]) == 90 and "1 Impédance" in meta["labels"]
    assert [lab.encode("utf-8").decode("latin-1") for lab in meta["labels"]] == labels
    # accelerometer: X/Y/Z Axis at 20 Hz, in g; the body at rest feels 1 g
    assert meta["acc_labels"] == ("X Axis", "Y Axis", "Z Axis") and meta["acc_fs_hz"] == 20.0
    acc = meta["acc_g"]
    assert acc.shape == (2400, 3)
    for k, lab in enumerate(meta["acc_labels"]):
        np.testing.assert_allclose(acc[:, k], _psg_signal_raw(path, lab)[0], atol=1e-12)
    assert 0.9 < np.median(np.linalg.norm(acc, axis=1)) < 1.1
    left, _, meta_l = load_psg_nox(emg="left leg")
    assert meta_l["label"] == "Left Leg"
    np.testing.assert_allclose(left, _psg_signal_raw(path, "Left Leg")[0], atol=1e-9)


def test_psg_nox_channel_choice_skips_impedance_channels():
    with open_edf(psg_nox_path()) as rec:
        labels = [lab for lab in rec.labels if lab != "EDF Annotations"]
    i, why = choose_emg_channel(labels)
    assert labels[i] == "Right Leg" and "leg" in why
    no_right = [lab for lab in labels if lab != "Right Leg"]
    assert no_right[choose_emg_channel(no_right)[0]] == "Left Leg"
    imp_only = [lab for lab in labels if lab not in ("Right Leg", "Left Leg")]
    assert choose_emg_channel(imp_only) is None        # "Jambe droite Imp" is not a leg EMG


def test_psg_nox_replays_end_to_end(tmp_path, capsys, caplog):
    from crampwatch.tools._run import load_config, run_recording
    from crampwatch.tools.cli import main

    out = tmp_path / "episodes.jsonl"
    with caplog.at_level(logging.WARNING):
        rc = main(["replay", psg_nox_path(), "--episodes", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "'Right Leg'" in captured.out and "0.03 h" in captured.out
    assert any("'Right Leg' chosen" in m and "'Left Leg'" in m for m in caplog.messages)
    assert all(json.loads(line)["channel"] == "Right Leg"
               for line in out.read_text().splitlines())
    res = run_recording(psg_nox_path(), load_config(None, []), progress=False)
    assert res.channel == "Right Leg" and res.emg_fs_hz == 200.0 and res.acc_fs_hz == 20.0
    assert res.duration_s == 120.0 and not res.gaps


# ----------------------------------------------------------------- physionet_emgdb (WFDB)

EMGDB = {"emg_healthy": 50860, "emg_myopathy": 110337, "emg_neuropathy": 147858}


@pytest.mark.parametrize("name", sorted(EMGDB))
def test_physionet_emgdb_samples_match_the_header(name):
    x, fs, hea = load_physionet_emgdb(name)
    d = hea["digital"]
    assert fs == 4000.0 and hea["format"] == "16" and hea["unit"].lower() == "mv"
    assert d.size == hea["n_samples"] == EMGDB[name]
    assert int(d[0]) == hea["initial_value"]
    # WFDB checksum: the 16-bit sum of the samples
    assert (int(d.astype(np.int64).sum()) + 2**15) % 2**16 - 2**15 == hea["checksum"]
    # 10000 units per mV, baseline 0: 10 units per uV, exactly
    assert hea["gain_per_unit"] == 10000.0 and hea["baseline"] == 0
    np.testing.assert_array_equal(x, d.astype(np.float64) / 10.0)


def test_physionet_neuropathy_envelope_shows_its_two_contractions():
    """The neuropathy record (tibialis anterior, needle) as it is actually shaped: a
    steady background, then two dorsiflexions (about 11.6-19 s and 29.6-37 s) that
    rise sharply and ease off.  The pipeline's filtered RMS envelope must show both,
    well above the background between them."""
    x, fs, _ = load_physionet_emgdb("emg_neuropathy")
    p = Pipeline(DetectorConfig(), fs)
    p.process_emg(x, 0)
    p.finish()
    tr = p.trace()
    t, rms = tr["t_end_s"], tr["rms_uv"]
    between = np.median(rms[(t >= 21) & (t <= 29)])
    background = np.median(rms[(t >= 3) & (t <= 11)])
    assert between == pytest.approx(background, rel=0.25)
    for t0, t1 in ((13, 19), (32, 37)):
        assert np.median(rms[(t >= t0) & (t <= t1)]) > 1.6 * between
    rises = t[(rms > 1.5 * between) & (np.concatenate([[0], rms[:-1]]) <= 1.5 * between)]
    assert len(rises) == 2
    assert 11.0 <= rises[0] <= 14.5 and 29.0 <= rises[1] <= 32.5


# ----------------------------------------------------------------- uci_lower_limb


def test_uci_lower_limb_reads_mv_as_uv():
    rf, fs, meta = load_uci_lower_limb("5Nmar", 0)
    assert fs == 1000.0
    assert meta["names"] == ["RF", "BF", "VM", "ST", "FX"]
    assert meta["units"] == ["mV"] * 4 + ["deg"]
    assert meta["counts"][:4] == [6563] * 4
    assert rf.size == meta["n_values"] == 6563                   # every stated value, no more
    assert rf[:3] == pytest.approx([3.7, 1.5, 0.0], abs=1e-9)    # 0.0037, 0.0015, 0 mV
    bf, _, _ = load_uci_lower_limb("5Nmar", 1)
    assert bf[:3] == pytest.approx([-1.5, -1.5, -1.5], abs=1e-9)
    # the abnormal subject's file names its channels differently, same layout
    st_3a, _, meta3 = load_uci_lower_limb("3Amar", 3)
    assert meta3["names"][3] == "EMG Semitendinoso" and st_3a.size == 43665
    assert st_3a[:2] == pytest.approx([-19.5, -22.5], abs=1e-9)


def _episodes(x, fs, cfg=None):
    p = Pipeline(cfg or DetectorConfig(), fs)
    events = p.process_emg(x, 0) + p.finish()
    return [e.episode for e in events if isinstance(e, EpisodeEnded)]


@pytest.mark.parametrize("channel", [0, 1, 2, 3])
def test_uci_healthy_gait_is_not_a_cramp(channel):
    """Subject 5N walking (thigh EMG, 6.6 s): repeated to 66 s so that a 10 s
    contraction could be reported at all.  No episode with default settings."""
    x, fs, _ = load_uci_lower_limb("5Nmar", channel)
    assert _episodes(np.tile(x, 10), fs) == []


def test_uci_abnormal_subject_gait_is_not_a_cramp():
    x, fs, _ = load_uci_lower_limb("3Amar", 2)
    assert _episodes(x, fs) == []


# ----------------------------------------------------------------- elderly_isometric


@pytest.mark.parametrize("bdf,step_uv", [(False, 5000 / 32767), (True, 5000 / 8388607)])
def test_elderly_isometric_hold_survives_an_edf_round_trip(tmp_path, bdf, step_uv):
    """A real 10 s tibialis anterior hold written as EDF+/BDF+ by crampwatch and read back
    by its reader: equal within half a digital step."""
    x, fs, meta = load_elderly_isometric(1, "ta", "TA")
    assert fs == 2000.0 and x.size == 20001 and meta["channels"] == ("VL", "BF", "TA", "GL")
    assert x.dtype == np.float64 and meta["force_kgf"].shape == (20001,)
    path = tmp_path / ("hold.bdf" if bdf else "hold.edf")
    res = write_edf(path, [SampleBlock("emg", fs, 0, x[:, None])], emg_fs_hz=fs,
                    duration_s=10.0, bdf=bdf)
    assert res.n_clipped_emg == 0
    with open_recording(str(path)) as rec:
        assert rec.emg.fs_hz == fs and rec.acc is None
        y = np.concatenate([b.data[:, 0] for b in rec.blocks(3.0)])
    assert y.size == 20000
    assert np.max(np.abs(y - x[:20000])) <= step_uv / 2 + 1e-9


# ----------------------------------------------------------------- santuz_walking


def test_santuz_walking_survives_a_capture_round_trip(tmp_path):
    """Real calf EMG during walking through the crash-safe capture format: the reader
    gives back exactly the float32 values written, in order, with no gap."""
    gm, fs, meta = load_santuz_walking("GM")
    assert fs == 1000.0 and gm.size == meta["time_s"].size
    assert meta["muscles"][-3:] == ("GM", "GL", "SO") and len(meta["muscles"]) == 13
    td, lo = meta["touchdown_s"], meta["liftoff_s"]
    assert len(td) == 6 and np.all(np.diff(td) > 0) and np.all(lo > td)
    so, _, _ = load_santuz_walking("SO")
    data = np.stack([gm, so], axis=1).astype(np.float32)
    hdr = RecordingHeader(emg=StreamInfo("emg", fs, ("GM", "SO"), "uV"), board="file",
                          source_url="file://santuz")
    path = tmp_path / "walk.cwrec"
    with CaptureWriter(path, hdr, fsync_interval_s=0.05) as w:
        for i in range(0, data.shape[0], 777):
            w.write_block(SampleBlock("emg", fs, i, data[i:i + 777], 1.7e9 + i / fs))
    with open_recording(str(path), emg="SO") as rec:
        items = list(rec.blocks(2.0))
    assert all(isinstance(b, SampleBlock) for b in items)
    assert [b.first_index for b in items] == list(range(0, data.shape[0], 2000))
    np.testing.assert_array_equal(np.concatenate([b.data[:, 0] for b in items]), data[:, 1])
