"""EDF/EDF+/BDF: write with pyedflib, read back; files from pyedflib and edfio; truncated
files; units; channel choice; corrupt headers; flat memory."""

from __future__ import annotations

import datetime as dt
import logging
import tracemalloc
import warnings

import numpy as np
import pyedflib
import pytest
from crampwatch.firmware_bridge.edf import open_edf, write_edf
from crampwatch.firmware_bridge.labels import read_labels
from crampwatch.firmware_bridge.readers import open_recording
from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent

from crampwatch.errors import ChannelNotFoundError, InputFileError, UnitError

START = dt.datetime(2024, 3, 5, 23, 10, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def small_night():
    return SyntheticNight(
        NightSpec(hours=0.05, seed=7, n_cramps=1, start_utc=START, every_kind=False)
    )


@pytest.fixture(scope="module")
def small_edf(tmp_path_factory, small_night):
    p = tmp_path_factory.mktemp("edf") / "small.edf"
    write_edf(p, small_night, annotations=small_night.labels)
    return str(p)


def _pyedflib_file(path, channels, file_type=pyedflib.FILETYPE_EDFPLUS, start=START):
    """channels: list of (label, dimension, fs_hz, data, phys_min, phys_max)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # header field lengths
        _pyedflib_write(path, channels, file_type, start)
    return str(path)


def _pyedflib_write(path, channels, file_type, start):
    w = pyedflib.EdfWriter(str(path), len(channels), file_type=file_type)
    bdf = file_type in (pyedflib.FILETYPE_BDF, pyedflib.FILETYPE_BDFPLUS)
    dmin, dmax = (-(1 << 23), (1 << 23) - 1) if bdf else (-32768, 32767)
    w.setSignalHeaders(
        [
            dict(
                label=lab,
                dimension=dim,
                sample_frequency=fs,
                physical_min=lo,
                physical_max=hi,
                digital_min=dmin,
                digital_max=dmax,
                transducer="",
                prefilter="",
            )
            for lab, dim, fs, _, lo, hi in channels
        ]
    )
    w.setStartdatetime(start.replace(tzinfo=None))
    w.writeSamples([np.asarray(c[3], float) for c in channels])
    w.close()


def _sine_channels(
    seconds=20,
    emg_unit="uV",
    acc_unit="g",
    emg_scale=1.0,
    acc_scale=1.0,
    acc_labels=("Acc X", "Acc Y", "Acc Z"),
    emg_label="EMG calf",
):
    t_e = np.arange(seconds * 500) / 500.0
    t_a = np.arange(seconds * 50) / 50.0
    emg = 100.0 * np.sin(2 * np.pi * 7.0 * t_e)
    acc = [0.5 * np.sin(2 * np.pi * 0.5 * t_a + k) for k in range(3)]
    chans = [(emg_label, emg_unit, 500, emg * emg_scale, -5000 * emg_scale, 5000 * emg_scale)]
    chans += [
        (lab, acc_unit, 50, a * acc_scale, -4 * acc_scale, 4 * acc_scale)
        for lab, a in zip(acc_labels, acc)
    ]
    return chans, emg, np.stack(acc, axis=1)


# ----------------------------------------------------------------- round trip


def test_round_trip_matches_the_night(small_edf, small_night):
    with open_edf(small_edf) as rec:
        assert rec.format == "edf+c"
        assert rec.labels[:4] == ["EMG calf", "Acc X", "Acc Y", "Acc Z"]
        assert (
            rec.emg.unit == "uV" and rec.emg.fs_hz == 1000.0 and rec.emg.channels == ("EMG calf",)
        )
        assert rec.acc.unit == "g" and rec.acc.fs_hz == 100.0
        assert rec.start_time == START and rec.start_time.tzinfo is not None
        assert rec.duration_s == pytest.approx(small_night.duration_s)
        blocks = list(rec.blocks(4.0))
    emg = [b for b in blocks if b.stream == "emg"]
    acc = [b for b in blocks if b.stream == "acc"]
    assert [b.stream for b in blocks[:4]] == ["emg", "acc", "emg", "acc"]
    assert all(b.n_samples <= 4000 for b in emg) and all(b.data.shape[1] == 1 for b in emg)
    assert all(b.data.shape[1] == 3 for b in acc)
    assert [b.first_index for b in emg] == [4000 * i for i in range(len(emg))]
    e = np.concatenate([b.data[:, 0] for b in emg])
    a = np.concatenate([b.data for b in acc])
    ref_e = np.clip(small_night.render_emg(0, e.size), -5000, 5000)
    assert np.max(np.abs(e - ref_e)) <= 5000 / 32767 + 1e-3  # one digital step
    assert np.max(np.abs(a - small_night.render_acc(0, a.shape[0]))) <= 4 / 32767 + 1e-5


def test_annotations_round_trip(small_edf, small_night):
    with open_edf(small_edf) as rec:
        ann = rec.annotations
    assert len(ann) == len(small_night.labels)
    for (onset, dur, text), lab in zip(ann, small_night.labels):
        assert onset == pytest.approx(lab.onset_s, abs=1e-3)
        assert dur == pytest.approx(lab.duration_s, abs=1e-3)
        assert text.split(":")[0] == lab.kind


def test_open_recording_dispatches_to_edf(small_edf):
    with open_recording(small_edf) as rec:
        assert rec.emg.channels == ("EMG calf",)


def test_sim_night_fixture(sim_night):
    edf_path, labels_path = sim_night
    labels = read_labels(labels_path)
    assert sum(lab.kind == "cramp" for lab in labels) == 2
    with open_edf(edf_path) as rec:
        assert rec.duration_s == pytest.approx(25 * 60)
        assert max(lab.offset_s for lab in labels) <= rec.duration_s


def test_read_back_with_pyedflib(small_edf, small_night):
    """Our writer's file is standard: pyedflib reads the same physical values."""
    with pyedflib.EdfReader(small_edf) as f:
        x = f.readSignal(0, 1000, 2000)
        assert f.getPhysicalDimension(0) == "uV"
    with open_edf(small_edf) as rec:
        np.testing.assert_allclose(rec.read_emg(1000, 2000), x, atol=1e-3)


# ----------------------------------------------------------------- other writers


def test_bdf_from_our_writer(tmp_path, small_night):
    p = tmp_path / "n.bdf"
    res = write_edf(p, small_night, duration_s=30)
    assert res.n_records == 30
    with open_edf(str(p)) as rec:
        assert rec.format == "bdf+c"
        e = rec.read_emg()
    ref = np.clip(small_night.render_emg(0, e.size), -5000, 5000)
    assert np.max(np.abs(e - ref)) < 0.002  # 24 bits: 0.0006 uV per step


def test_plain_bdf_from_pyedflib(tmp_path):
    chans, emg, acc = _sine_channels()
    p = _pyedflib_file(tmp_path / "p.bdf", chans, pyedflib.FILETYPE_BDF)
    with open_edf(p) as rec:
        assert rec.format == "bdf" and rec.annotations == []
        np.testing.assert_allclose(rec.read_emg(), emg, atol=0.002)
        np.testing.assert_allclose(rec.read_acc(), acc, atol=1e-5)
        assert rec.start_time == START


def test_file_written_by_edfio(tmp_path):
    import edfio

    t = np.arange(10 * 1000) / 1000.0
    emg = 50.0 * np.sin(2 * np.pi * 80 * t)
    acc = np.stack([np.full(500, v) for v in (0.1, -0.2, 0.97)], axis=1)
    signals = [
        edfio.EdfSignal(
            emg, 1000, label="EMG GM", physical_dimension="uV", physical_range=(-1000, 1000)
        )
    ]
    signals += [
        edfio.EdfSignal(
            acc[:, k], 50, label=f"Accel {ax}", physical_dimension="g", physical_range=(-2, 2)
        )
        for k, ax in enumerate("XYZ")
    ]
    edf = edfio.Edf(
        signals,
        starttime=dt.time(23, 59, 58),
        recording=edfio.Recording(startdate=dt.date(2023, 12, 31)),
        annotations=[edfio.EdfAnnotation(2.5, 1.0, "cramp")],
    )
    p = tmp_path / "edfio.edf"
    edf.write(p)
    with open_edf(str(p)) as rec:
        assert rec.emg.channels == ("EMG GM",) and rec.acc.channels == (
            "Accel X",
            "Accel Y",
            "Accel Z",
        )
        assert rec.start_time == dt.datetime(2023, 12, 31, 23, 59, 58, tzinfo=dt.timezone.utc)
        np.testing.assert_allclose(rec.read_emg(), emg, atol=2000 / 65535)
        np.testing.assert_allclose(rec.read_acc(), acc, atol=4 / 65535)
        assert rec.annotations == [(2.5, 1.0, "cramp")]


def test_mv_and_m_per_s2_are_converted(tmp_path):
    chans, emg, acc = _sine_channels(
        emg_unit="mV", acc_unit="m/s^2", emg_scale=1e-3, acc_scale=9.80665
    )
    p = _pyedflib_file(tmp_path / "units.edf", chans)
    with open_edf(p) as rec:
        assert rec.emg.unit == "uV" and rec.acc.unit == "g"
        np.testing.assert_allclose(rec.read_emg(), emg, atol=0.2)
        np.testing.assert_allclose(rec.read_acc(), acc, atol=1e-3)


@pytest.mark.parametrize("unit,factor", [("V", 1e-6), ("nV", 1e3), ("mv", 1e-3)])
def test_other_voltage_units(tmp_path, unit, factor):
    chans, emg, _ = _sine_channels(emg_unit=unit, emg_scale=factor)
    p = _pyedflib_file(tmp_path / "u.edf", chans)
    with open_edf(p) as rec:
        np.testing.assert_allclose(rec.read_emg(), emg, atol=0.2)


@pytest.mark.parametrize("raw", [b"\xb5V", b"\xc2\xb5V", b"\xce\xbcV"])
def test_micro_sign_in_latin1_or_utf8(tmp_path, raw):
    """edflib cannot write a micro sign; patch the header as other software writes it."""
    chans, emg, _ = _sine_channels()
    p = _pyedflib_file(tmp_path / "mu.edf", chans)
    data = bytearray(open(p, "rb").read())
    ns = int(data[252:256])
    off = 256 + ns * (16 + 80)  # physical dimension of the first signal
    data[off : off + 8] = raw.ljust(8, b" ")
    open(p, "wb").write(bytes(data))
    with open_edf(p) as rec:
        np.testing.assert_allclose(rec.read_emg(), emg, atol=0.2)


def test_unknown_unit_raises_unit_error(tmp_path):
    chans, _, _ = _sine_channels(emg_unit="degC")
    p = _pyedflib_file(tmp_path / "bad_unit.edf", chans)
    with pytest.raises(UnitError) as exc:
        open_edf(p)
    assert exc.value.channel == "EMG calf" and exc.value.unit == "degC"
    assert p in str(exc.value) and "EMG calf" in str(exc.value) and "degC" in str(exc.value)
    chans, _, _ = _sine_channels(acc_unit="rad")
    p2 = _pyedflib_file(tmp_path / "bad_acc.edf", chans)
    with pytest.raises(UnitError, match="Acc X"):
        open_edf(p2)


# ----------------------------------------------------------------- channels


def test_wrong_label_lists_the_labels(small_edf):
    with pytest.raises(ChannelNotFoundError) as exc:
        open_edf(small_edf, emg="EMG thigh")
    assert exc.value.available[:4] == ["EMG calf", "Acc X", "Acc Y", "Acc Z"]
    assert "EMG calf, Acc X" in str(exc.value) and "EMG thigh" in str(exc.value)


def test_no_emg_channel_lists_the_labels(tmp_path):
    chans, _, _ = _sine_channels(emg_label="Calf")
    p = _pyedflib_file(tmp_path / "noemg.edf", chans)
    with pytest.raises(ChannelNotFoundError) as exc:
        open_edf(p)
    assert "Calf" in exc.value.available
    with open_edf(p, emg=" calf ") as rec:  # case-insensitive, spaces stripped
        assert rec.emg.channels == ("Calf",)


def test_accelerometer_label_variants_in_any_order(tmp_path):
    chans, _, acc = _sine_channels(acc_labels=("ACC_X", "Acc-Y", "AccZ"))
    chans = [chans[0], chans[3], chans[1], chans[2]]  # file order: z, x, y
    p = _pyedflib_file(tmp_path / "variants.edf", chans)
    with open_edf(p) as rec:
        assert rec.acc.channels == ("ACC_X", "Acc-Y", "AccZ")
        np.testing.assert_allclose(rec.read_acc(), acc, atol=1e-3)
    with open_edf(p, acc="AccZ, ACC_X, Acc-Y") as rec:  # named explicitly: that order
        np.testing.assert_allclose(rec.read_acc(), acc[:, [2, 0, 1]], atol=1e-3)
    with pytest.raises(ChannelNotFoundError):
        open_edf(p, acc="X,Y,Q")


def test_without_accelerometer_channels(tmp_path):
    chans, emg, _ = _sine_channels()
    p = _pyedflib_file(tmp_path / "emgonly.edf", chans[:1])
    with open_edf(p, emg="emg calf") as rec:
        assert rec.acc is None
        blocks = list(rec.blocks(5.0))
    assert {b.stream for b in blocks} == {"emg"}
    np.testing.assert_allclose(np.concatenate([b.data[:, 0] for b in blocks]), emg, atol=0.2)


# ----------------------------------------------------------------- damaged files


def test_truncated_file_reads_whole_records_with_a_warning(tmp_path, small_edf, caplog):
    data = open(small_edf, "rb").read()
    hdr, n_hdr = int(data[184:192]), int(data[236:244])
    rb = (len(data) - hdr) // n_hdr
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[: hdr + (n_hdr - 6) * rb + rb // 2])  # 5.5 records lost
    with caplog.at_level(logging.WARNING, logger="crampwatch.firmware_bridge.edf"):
        rec = open_edf(str(cut))
    assert any("truncated" in r.getMessage() and str(cut) in r.getMessage() for r in caplog.records)
    with open_edf(small_edf) as full:
        lost = full.n_records - rec.n_records
        assert lost == 6
        assert rec.duration_s == pytest.approx(full.duration_s - lost * full.record_s)
        e = np.concatenate([b.data[:, 0] for b in rec.blocks(10.0) if b.stream == "emg"])
        np.testing.assert_array_equal(e, full.read_emg(0, e.size))
    rec.close()
    with pytest.raises(OSError):  # pyedflib refuses it: the reason we read EDF ourselves
        pyedflib.EdfReader(str(cut))


def test_header_only_file(tmp_path, small_edf):
    data = open(small_edf, "rb").read()
    hdr = int(data[184:192])
    p = tmp_path / "hdr.edf"
    p.write_bytes(data[: hdr + 100])
    with pytest.raises(InputFileError, match="no whole data record"):
        open_edf(str(p))


@pytest.mark.parametrize(
    "offset,width,value,field",
    [
        (236, 8, b"abc     ", "number of data records"),
        (244, 8, b"one sec ", "duration of a data record"),
        (184, 8, b"99999   ", "header bytes"),
        (252, 4, b"x   ", "number of signals"),
    ],
)
def test_corrupt_header_names_field_and_offset(tmp_path, small_edf, offset, width, value, field):
    data = bytearray(open(small_edf, "rb").read())
    data[offset : offset + width] = value
    p = tmp_path / "corrupt.edf"
    p.write_bytes(bytes(data))
    with pytest.raises(InputFileError) as exc:
        open_edf(str(p))
    assert exc.value.offset == offset and field in str(exc.value) and str(p) in str(exc.value)


def test_corrupt_signal_header(tmp_path, small_edf):
    data = bytearray(open(small_edf, "rb").read())
    ns = int(data[252:256])
    off = 256 + ns * (16 + 80 + 8)  # physical minimum of the first signal
    data[off : off + 8] = b"-5k00   "
    p = tmp_path / "corrupt_sig.edf"
    p.write_bytes(bytes(data))
    with pytest.raises(InputFileError) as exc:
        open_edf(str(p))
    assert exc.value.offset == off and "physical minimum of 'EMG calf'" in str(exc.value)


def test_not_edf_empty_missing(tmp_path):
    txt = tmp_path / "notes.edf"
    txt.write_text("hello, not an EDF\n")
    empty = tmp_path / "empty.edf"
    empty.write_bytes(b"")
    for p in (txt, empty, tmp_path / "missing.edf"):
        with pytest.raises(InputFileError) as exc:
            open_edf(str(p))
        assert str(p) in str(exc.value)


# ----------------------------------------------------------------- writing from blocks


def test_write_from_a_reader_and_from_blocks_with_a_gap(tmp_path, small_edf):
    out = tmp_path / "copy.edf"
    with open_edf(small_edf) as rec:
        write_edf(out, rec)
        with open_edf(str(out)) as copy:
            np.testing.assert_array_equal(copy.read_emg(), rec.read_emg())
            np.testing.assert_array_equal(copy.read_acc(), rec.read_acc())
            assert copy.start_time == rec.start_time

    rng = np.random.default_rng(0)
    blocks = [
        SampleBlock("emg", 1000.0, 0, rng.normal(0, 10, (3000, 1))),
        SampleBlock("acc", 100.0, 0, np.zeros((300, 3))),
        SourceEvent("gap", 0.0, stream="emg", first_index=3000, n_samples=1000),
        SampleBlock("emg", 1000.0, 4000, rng.normal(0, 10, (2000, 1))),
        SampleBlock("acc", 100.0, 300, np.ones((300, 3))),
    ]
    gap = tmp_path / "gap.edf"
    res = write_edf(gap, blocks, emg_fs_hz=1000.0, acc_fs_hz=100.0, start_time=START)
    assert res.n_records == 6
    with open_edf(str(gap)) as rec:
        e = rec.read_emg()
        assert np.all(e[3000:4000] == 0) and np.std(e[4000:]) > 5
        assert any("gap" in a[2] and a[0] == pytest.approx(3.0) for a in rec.annotations)


# ----------------------------------------------------------------- memory


def _noise_blocks(seconds, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(0, seconds, 30):
        yield SampleBlock("emg", 1000.0, i * 1000, rng.normal(0, 20, (30000, 1)))
        yield SampleBlock("acc", 100.0, i * 100, rng.normal(0, 0.01, (3000, 3)))


def _peak_while_reading(path):
    with open_edf(path) as rec:
        tracemalloc.start()
        n = 0
        for blk in rec.blocks(10.0):
            n += blk.n_samples
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, n


def test_reading_blocks_keeps_memory_flat(tmp_path):
    short, long_ = tmp_path / "short.edf", tmp_path / "long.edf"
    write_edf(short, _noise_blocks(300), emg_fs_hz=1000.0, acc_fs_hz=100.0, start_time=START)
    write_edf(long_, _noise_blocks(2400), emg_fs_hz=1000.0, acc_fs_hz=100.0, start_time=START)
    peak_short, n_short = _peak_while_reading(str(short))
    peak_long, n_long = _peak_while_reading(str(long_))
    assert n_long == 8 * n_short
    # one 10 s block of 1 kHz EMG is 40 kB as float32; the whole long file's EMG would be 9.6 MB
    assert peak_long < 1.5 * peak_short + 100_000
    assert peak_long < 2_000_000


def test_edf_plus_d_gaps_become_gap_events(tmp_path, small_night):
    """An EDF+D file (records with jumps in their time-keeping onsets) is read with
    "gap" events and sample indices that jump over the gaps."""
    p = tmp_path / "cont.edf"
    write_edf(p, small_night, duration_s=20)
    data = bytearray(open(p, "rb").read())
    hdr, ns, n = int(data[184:192]), int(data[252:256]), int(data[236:244])
    data[192:197] = b"EDF+D"
    rb = (len(data) - hdr) // n
    spr_off = 256 + ns * (16 + 80 + 8 * 5 + 80)
    sprs = [int(data[spr_off + 8 * i : spr_off + 8 * i + 8]) for i in range(ns)]
    ann_off = 2 * sum(sprs[:-1])  # the annotation signal is the last one
    for r in range(12, n):  # 7.5 s missing before record 12
        old = f"+{r}\x14\x14\x00".encode()
        new = f"+{r + 7.5}\x14\x14\x00".encode()
        at = hdr + r * rb + ann_off
        assert bytes(data[at : at + len(old)]) == old
        data[at : at + len(new)] = new
    q = tmp_path / "disc.edf"
    q.write_bytes(bytes(data))
    with open_edf(str(q)) as rec:
        assert rec.format == "edf+d"
        assert rec.duration_s == pytest.approx(27.5)
        items = list(rec.blocks(5.0))
    gaps = [x for x in items if isinstance(x, SourceEvent)]
    assert {(g.stream, g.first_index, g.n_samples) for g in gaps} == {
        ("emg", 12000, 7500),
        ("acc", 1200, 750),
    }
    emg = [b for b in items if isinstance(b, SampleBlock) and b.stream == "emg"]
    assert [b.first_index for b in emg] == [0, 5000, 10000, 19500, 24500]
    assert sum(b.n_samples for b in emg) == 20000
    with open_edf(str(p)) as cont:
        np.testing.assert_array_equal(emg[3].data[:, 0], cont.read_emg(12000, 5000))


# ----------------------------------------------------------------- channel choice (PSG)


@pytest.mark.parametrize(
    "labels,chosen",
    [
        (["EMG calf", "Acc X"], "EMG calf"),
        (["EEG C3", "Left Leg", "Right Leg", "Jambe droite Imp"], "Right Leg"),
        (["Leg/L", "Leg/R"], "Leg/R"),
        (["LLEG", "RLEG"], "RLEG"),
        (["LAT", "RAT", "EKG"], "RAT"),
        (["Tib L", "Tibialis R"], "Tibialis R"),
        (["Leg 1", "Leg 2"], "Leg 1"),  # no side: the first one
        (["EMG chin", "LAT"], "LAT"),  # a chin EMG is not a calf
        (["EMG", "Leg L", "Leg R"], "Leg R"),  # a bare "EMG" in a PSG file is the chin
        (["Chin EMG", "C4-M1"], "Chin EMG"),  # ... but better than nothing
        (["EMG chin", "EMG Leg L", "EMG Leg R", "Leg R"], "EMG Leg R"),
        (["Leg L", "EMG calf"], "EMG calf"),
        (["EMG GM", "EMG SO"], "EMG GM"),
        (["Leg Imp", "Leg Impédance", "Right Leg"], "Right Leg"),
        (["1 Impédance", "RAT (Imp)", "ECG"], None),
        (["Latency", "Rate", "Lateral", "Plegia"], None),  # only whole words count
    ],
)
def test_emg_channel_choice_without_emg_option(labels, chosen):
    from crampwatch.firmware_bridge.edf import choose_emg_channel

    got = choose_emg_channel(labels)
    assert (labels[got[0]] if got else None) == chosen


def test_psg_style_file_is_read_with_its_leg_channel_and_axes(tmp_path, caplog):
    """Labels, rates and units of a sleep-lab file: leg EMG at 200 Hz in V, "X/Y/Z Axis"
    at 20 Hz, impedance channels beside them (the shared psg_nox file's layout)."""
    t = np.arange(20 * 200) / 200.0
    leg = 50e-6 * np.sin(2 * np.pi * 40 * t)
    chans = [
        ("Left Leg", "V", 200, leg * 0.5, -1.024, 1.024),
        ("Right Leg", "V", 200, leg, -1.024, 1.024),
        ("Jambe droite Imp", "Ohm", 10, np.zeros(200), -327690, 327680),
    ]
    chans += [(f"{ax} Axis", "g", 20, np.full(400, 0.1 * k), -2, 2) for k, ax in enumerate("XYZ")]
    p = _pyedflib_file(tmp_path / "psg.edf", chans)
    with caplog.at_level(logging.WARNING, logger="crampwatch.firmware_bridge.edf"):
        rec = open_edf(p)
    with rec:
        assert rec.emg.channels == ("Right Leg",) and rec.emg.fs_hz == 200.0
        assert rec.acc.channels == ("X Axis", "Y Axis", "Z Axis") and rec.acc.fs_hz == 20.0
        np.testing.assert_allclose(rec.read_emg(), leg * 1e6, atol=2.048e6 / 65535)
    assert any("'Right Leg' chosen" in m and "'Left Leg'" in m for m in caplog.messages)


@pytest.mark.parametrize("fs,ok", [(199, False), (200, True), (4000, True), (4001, False)])
def test_emg_rate_limits(tmp_path, fs, ok):
    x = np.zeros(fs * 3)
    p = _pyedflib_file(tmp_path / "r.edf", [("EMG calf", "uV", fs, x, -500, 500)])
    if ok:
        with open_edf(p) as rec:
            assert rec.emg.fs_hz == fs
    else:
        with pytest.raises(InputFileError, match=f"{fs} Hz.*200-4000 Hz"):
            open_edf(p)


@pytest.mark.parametrize("acc_fs,kept", [(10, False), (20, True), (200, True), (250, False)])
def test_accelerometer_outside_its_rates_is_left_out(tmp_path, acc_fs, kept, caplog):
    chans = [("EMG calf", "uV", 500, np.zeros(1500), -500, 500)]
    chans += [(f"Acc {ax}", "g", acc_fs, np.zeros(3 * acc_fs), -2, 2) for ax in "XYZ"]
    p = _pyedflib_file(tmp_path / "a.edf", chans)
    with caplog.at_level(logging.WARNING, logger="crampwatch.firmware_bridge.edf"):
        with open_edf(p) as rec:
            assert (rec.acc is not None) == kept
    if not kept:
        assert any("20-200 Hz" in m for m in caplog.messages)
        with pytest.raises(InputFileError, match="20-200 Hz"):
            open_edf(p, acc="Acc X,Acc Y,Acc Z")  # named: an error, not a guess
