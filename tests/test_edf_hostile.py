"""Files at and beyond the limits of their format: EDF/EDF+/BDF headers and data,
EDF+D gaps, FIFOs, NaN samples and a damaged record in a capture recording.

The rule every case checks: a file either opens and its blocks iterate (finite
values, bounded memory and time), or one crampwatch error (``InputFileError``
and kin, which the CLI prints as ``crampwatch: ...`` with exit status 2) names
the file, the field (and signal) and the value.  Never another exception.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import pytest
from crampwatch.firmware_bridge import edf as edf_mod
from crampwatch.firmware_bridge._recording_format import (
    REC_HEAD,
    SAMPLES_HEAD,
    encode_record,
)
from crampwatch.firmware_bridge.edf import open_edf, write_edf
from crampwatch.firmware_bridge.readers import open_recording
from crampwatch.firmware_bridge.recording import (
    CaptureWriter,
    RecordingHeader,
    iter_records,
    open_capture,
)
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo
from crampwatch.tools.cli import main as cli_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crampwatch import CrampwatchError
from crampwatch.errors import InputFileError

START = dt.datetime(2024, 3, 5, 23, 10, 0, tzinfo=dt.timezone.utc)
EDF_LOGGER = "crampwatch.firmware_bridge.edf"
REC_LOGGER = "crampwatch.firmware_bridge.recording"
SIGNAL_FIELDS = (
    ("label", 16), ("transducer", 80), ("physical dimension", 8), ("physical minimum", 8),
    ("physical maximum", 8), ("digital minimum", 8), ("digital maximum", 8), ("prefilter", 80),
    ("samples per record", 8), ("reserved", 32),
)
FIXED_FIELDS = (
    ("version", 0, 8), ("patient", 8, 80), ("recording", 88, 80), ("startdate", 168, 8),
    ("starttime", 176, 8), ("header bytes", 184, 8), ("reserved", 192, 44),
    ("number of data records", 236, 8), ("duration of a data record", 244, 8),
    ("number of signals", 252, 4),
)


# ----------------------------------------------------------------- small valid files

def _noise_blocks(seconds, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(seconds):
        yield SampleBlock("emg", 1000.0, i * 1000, rng.normal(0, 30, (1000, 1)))
        yield SampleBlock("acc", 100.0, i * 100, rng.normal(0, 0.2, (100, 3)))


def _write(path, seconds=4, bdf=False, annotations=True):
    ann = [(1.0, 0.5, "turn"), (2.5, 1.0, "cramp")] if annotations else None
    write_edf(path, _noise_blocks(seconds), emg_fs_hz=1000.0, acc_fs_hz=100.0,
              start_time=START, bdf=bdf, annotations=ann)
    return bytes(open(path, "rb").read())


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Small valid files from crampwatch's own writer (4 one-second records)."""
    d = tmp_path_factory.mktemp("hostile")
    return {"edf": _write(d / "base.edf"), "bdf": _write(d / "base.bdf", bdf=True),
            "edf_plain": _write(d / "plain.edf", annotations=False)}


def _layout(raw: bytes):
    """Header facts of a valid file: ns, header bytes, per-signal spr and offsets."""
    ns = int(raw[252:256])
    hdr = int(raw[184:192])
    base, offs = 256, {}
    for name, w in SIGNAL_FIELDS:
        offs[name] = [base + i * w for i in range(ns)]
        base += ns * w
    spr = [int(raw[o:o + 8]) for o in offs["samples per record"]]
    return ns, hdr, offs, spr


def _set(raw: bytes, offset: int, width: int, value: bytes) -> bytes:
    value = value[:width].ljust(width, b" ")
    return raw[:offset] + value + raw[offset + width:]


def _field_offset(raw: bytes, name: str, signal: int | None):
    if signal is None:
        return next((o, w) for n, o, w in FIXED_FIELDS if n == name)
    _, _, offs, _ = _layout(raw)
    return offs[name][signal], dict(SIGNAL_FIELDS)[name]


def _exercise(path: str, block_s: float = 1.5) -> str:
    """Open and read everything; return "ok" or "refused".  Any other exception fails."""
    t0 = time.monotonic()
    size = os.path.getsize(path)
    try:
        with np.errstate(over="raise", invalid="raise"), open_recording(path) as rec:
            assert rec.duration_s >= 0 and rec.start_time.tzinfo is not None
            n = 0
            for item in rec.blocks(block_s):
                if isinstance(item, SampleBlock):
                    assert np.isfinite(item.data).all()
                    n += item.n_samples
                else:
                    assert isinstance(item, SourceEvent) and item.kind == "gap"
            assert n <= size                      # every sample costs at least 2 bytes
            if hasattr(rec, "annotations"):
                assert isinstance(rec.annotations, list)
        outcome = "ok"
    except CrampwatchError as exc:
        assert path in str(exc)
        outcome = "refused"
    assert time.monotonic() - t0 < 20.0
    return outcome


def _file(tmp_path, raw: bytes, name="f.edf") -> str:
    p = tmp_path / name
    p.write_bytes(raw)
    return str(p)


# ----------------------------------------------------------------- property tests

_INTERESTING = [b"", b"-1", b"0", b"-0", b"1", b"-2", b"1.5", b"nan", b"inf", b"-inf",
                b"1e309", b"1e-9", b"0.000001", b"99999999", b"-9999999", b"32767", b"32768",
                b"-32769", b"8388607", b"8388608", b"-8388609", b"2147483648", b"1_0", b"+5",
                b"0x10", b"  7  ", b"\x00\x00", b"\xff\xfe", b"EDF+D", b"EDF+C", b"yy",
                b"00.00.00", b"31.02.24", b"29.02.24", b"24.60.00", b"EDF Annotations"]


def _value_strategy(width):
    return st.one_of(st.sampled_from(_INTERESTING), st.binary(max_size=width),
                     st.text(alphabet="0123456789+-.eE :", max_size=width).map(str.encode))


@st.composite
def header_mutation(draw, raw):
    ns = int(raw[252:256])
    if draw(st.booleans()):
        name, off, width = draw(st.sampled_from(FIXED_FIELDS))
    else:
        name, width = draw(st.sampled_from(SIGNAL_FIELDS))
        off, width = _field_offset(raw, name, draw(st.integers(0, ns - 1)))
    return off, width, draw(_value_strategy(width))


@st.composite
def data_mutation(draw, raw):
    hdr = int(raw[184:192])
    flips = draw(st.lists(st.tuples(st.integers(hdr, len(raw) - 1), st.integers(1, 255)),
                          max_size=8))
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
    tail = draw(st.one_of(st.none(), st.binary(max_size=64)))
    return flips, cut, tail


def _apply(raw, header_muts, data_mut):
    out = bytearray(raw)
    for off, width, value in header_muts:
        out[off:off + width] = value[:width].ljust(width, b" ")
    flips, cut, tail = data_mut
    for pos, mask in flips:
        out[pos] ^= mask
    if cut is not None:
        out = out[:cut]
    if tail:
        out += tail
    return bytes(out)


@pytest.mark.parametrize("kind", ["edf", "bdf"])
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_files_open_and_read_or_are_refused(bases, kind, data):
    raw = bases[kind]
    muts = data.draw(st.lists(header_mutation(raw), max_size=3), label="header")
    dmut = data.draw(data_mutation(raw), label="data")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"m.{kind}")
        with open(path, "wb") as fh:
            fh.write(_apply(raw, muts, dmut))
        _exercise(path)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_edf_plus_d_time_keeping(bases, data):
    """EDF+D: the TAL bytes of any record replaced by anything."""
    raw = bytearray(bases["edf_plain"])
    raw[192:197] = b"EDF+D"
    _, hdr, _, spr = _layout(bytes(raw))
    rb = 2 * sum(spr)
    ann_off = 2 * sum(spr[:-1])
    n_rec = (len(raw) - hdr) // rb
    for _ in range(data.draw(st.integers(1, 3), label="n")):
        r = data.draw(st.integers(0, n_rec - 1), label="record")
        tal = data.draw(st.one_of(
            st.sampled_from([b"+nan\x14\x14\x00", b"-3\x14\x14\x00", b"+1e400\x14\x14\x00",
                             b"+99999999999\x14\x14\x00", b"+0\x14\x14\x00",
                             b"+10000000\x14\x14\x00", b"+1.5\x14\x14\x00", b"\x14\x14\x00",
                             b"+2\x152\x14late\x14\x00", b"+" + b"9" * 400 + b"\x14\x14\x00"]),
            st.binary(max_size=40)), label="tal")
        at = hdr + r * rb + ann_off
        raw[at:at + len(tal)] = tal
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "d.edf")
        with open(path, "wb") as fh:
            fh.write(bytes(raw))
        _exercise(path)


# ----------------------------------------------------------------- every header field

# (field changed, value, field named in the error, its byte offset, value shown)
BAD_FIXED = [
    ("number of data records", b"-2", "number of data records", 236, "'-2'"),
    ("number of data records", b"0", "number of data records", 236, "'0'"),
    ("number of data records", b"abc", "number of data records", 236, "'abc'"),
    ("number of data records", b"nan", "number of data records", 236, "'nan'"),
    ("duration of a data record", b"0", "duration of a data record", 244, "'0'"),
    ("duration of a data record", b"-1", "duration of a data record", 244, "'-1'"),
    ("duration of a data record", b"0.000001", "duration of a data record", 244, "'1e-06'"),
    ("duration of a data record", b"100000", "duration of a data record", 244, "'100000'"),
    ("duration of a data record", b"inf", "duration of a data record", 244, "'inf'"),
    ("duration of a data record", b"1e999", "duration of a data record", 244, "'1e999'"),
    ("number of signals", b"0", "number of signals", 252, "'0'"),
    ("number of signals", b"-4", "number of signals", 252, "'-4'"),
    ("number of signals", b"9999", "header bytes", 184, "9999 signals"),
    ("header bytes", b"1280", "header bytes", 184, "'1280'"),
    ("startdate", b"31.02.24", "startdate", 168, "31.02.24"),
    ("startdate", b"5/3/24", "startdate", 168, "'5/3/24'"),
    ("starttime", b"25.00.00", "starttime", 168, "25.00.00"),
    ("starttime", b"23.10", "starttime", 176, "'23.10'"),
]


@pytest.mark.parametrize("kind", ["edf", "bdf"])
@pytest.mark.parametrize("field,value,named,offset,shown", BAD_FIXED)
def test_bad_fixed_field_names_file_field_and_value(
        tmp_path, bases, kind, field, value, named, offset, shown):
    off, width = _field_offset(bases[kind], field, None)
    path = _file(tmp_path, _set(bases[kind], off, width, value), f"bad.{kind}")
    with pytest.raises(InputFileError) as exc:
        open_recording(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and named in msg and shown in msg, msg
    assert exc.value.offset == offset and exc.value.path == path


def test_year_yy_needs_an_edf_plus_startdate(tmp_path, bases):
    raw = _set(bases["edf"], 88, 80, b"Startdate X X X X")       # no dd-MMM-yyyy
    raw = _set(raw, 168, 8, b"05.03.yy")
    with pytest.raises(InputFileError, match="yy"):
        open_edf(_file(tmp_path, raw))
    raw = _set(bases["edf"], 88, 80, b"Startdate 05-MAR-2091 X X X")
    with open_edf(_file(tmp_path, _set(raw, 168, 8, b"05.03.yy"), "y.edf")) as rec:
        assert rec.start_time.year == 2091


# (field, signal index (0 = EMG, 1 = Acc X), value, words the message must hold)
BAD_SIGNAL = [
    ("samples per record", 0, b"0", ["samples per record", "'EMG calf'", "'0'"]),
    ("samples per record", 1, b"-5", ["samples per record", "'Acc X'", "'-5'"]),
    ("samples per record", 0, b"1.5", ["samples per record", "'1.5'", "not an integer"]),
    ("samples per record", 0, b"99999999", ["no whole data record", "bytes"]),
    ("samples per record", 0, b"100", ["100 Hz", "'EMG calf'", "200-4000 Hz"]),
    ("samples per record", 0, b"5000", ["5000 Hz", "200-4000 Hz"]),
    ("physical maximum", 0, b"-5000", ["physical maximum", "'EMG calf'", "-5000"]),
    ("physical maximum", 0, b"inf", ["physical maximum", "'EMG calf'", "inf"]),
    ("physical minimum", 2, b"nan", ["physical minimum", "'Acc Y'", "nan"]),
    ("digital maximum", 0, b"-32767", ["digital maximum", "'EMG calf'", "-32767"]),
    ("digital minimum", 3, b"40000", ["digital minimum", "'Acc Z'", "40000"]),
]


@pytest.mark.parametrize("field,sig,value,words", BAD_SIGNAL)
def test_bad_signal_field_names_file_signal_and_value(tmp_path, bases, field, sig, value, words):
    off, width = _field_offset(bases["edf"], field, sig)
    path = _file(tmp_path, _set(bases["edf"], off, width, value))
    with pytest.raises(InputFileError) as exc:
        open_edf(path)
    msg = str(exc.value)
    assert path in msg
    for w in words:
        assert w in msg, (w, msg)


def test_physical_range_that_overflows_is_refused(tmp_path, bases):
    raw = bases["edf"]
    raw = _set(raw, *_field_offset(raw, "physical minimum", 0), b"-1e308")
    raw = _set(raw, *_field_offset(raw, "physical maximum", 0), b"1e308")
    with pytest.raises(InputFileError, match="overflow") as exc:
        open_edf(_file(tmp_path, raw))
    assert "'EMG calf'" in str(exc.value) and "1e+308" in str(exc.value)


@pytest.mark.parametrize("kind,dmin,dmax", [
    ("edf", b"-32768", b"32768"),          # one beyond 16 bits
    ("edf", b"-2147483648", b"2147483647"),  # a 32-bit range in a 16-bit file: all ~0
    ("bdf", b"-8388608", b"8388608"),
    ("bdf", b"-32768", b"99999999"),
])
def test_digital_range_beyond_the_format_is_refused_never_read_as_zeros(
        tmp_path, bases, kind, dmin, dmax):
    raw = bases[kind]
    off_lo, w = _field_offset(raw, "digital minimum", 0)
    off_hi, _ = _field_offset(raw, "digital maximum", 0)
    path = _file(tmp_path, _set(_set(raw, off_lo, w, dmin), off_hi, w, dmax), f"r.{kind}")
    with pytest.raises(InputFileError) as exc:
        open_recording(path)
    assert "outside the" in str(exc.value) and ("16-bit" if kind == "edf" else "24-bit") in \
        str(exc.value) and "'EMG calf'" in str(exc.value)


def test_bad_fields_of_an_unread_signal_do_not_refuse_the_file(tmp_path, bases):
    """Only the layout (samples per record) of a signal crampwatch does not read matters."""
    raw = bases["edf"]
    ns = int(raw[252:256])
    for field, value in (("physical maximum", b"nan"), ("digital maximum", b"-99999")):
        off, w = _field_offset(raw, field, ns - 1)      # the annotation signal
        raw = _set(raw, off, w, value)
    assert _exercise(_file(tmp_path, raw)) == "ok"


def test_number_of_records_minus_one_reads_the_whole_records(tmp_path, bases, caplog):
    raw = _set(bases["edf"], 236, 8, b"-1")
    path = _file(tmp_path, raw + b"\x00" * 7)          # and a partial record
    with caplog.at_level(logging.WARNING, logger=EDF_LOGGER):
        with open_edf(path) as rec:
            assert rec.n_records == 4
            e = np.concatenate([b.data[:, 0] for b in rec.blocks() if b.stream == "emg"])
    assert e.size == 4000
    assert any("-1" in m and "4 whole records" in m for m in caplog.messages)


def test_non_ascii_label_and_unit_bytes(tmp_path, bases):
    """Latin-1 and cut UTF-8 bytes in labels, transducer and prefilter read fine."""
    raw = bases["edf"]
    ns = int(raw[252:256])
    raw = _set(raw, *_field_offset(raw, "label", 1), b"Acc X \xe9\xe8")
    raw = _set(raw, *_field_offset(raw, "label", 2), b"Imp\xc3\xa9dance Y \xc3")
    raw = _set(raw, *_field_offset(raw, "transducer", 0), b"\xff\xfe\x00\x01")
    raw = _set(raw, *_field_offset(raw, "prefilter", ns - 1), "HP:0.1Hz µ".encode())
    with open_edf(_file(tmp_path, raw)) as rec:
        assert rec.labels[1] == "Acc X \u00e9\u00e8" and rec.acc is None
        assert rec.emg.channels == ("EMG calf",)


# ----------------------------------------------------------------- EDF+D gaps

def _edf_plus_d(raw: bytes, first_gap_record: int, gap_s: float) -> bytes:
    out = bytearray(raw)
    out[192:197] = b"EDF+D"
    _, hdr, _, spr = _layout(raw)
    rb = 2 * sum(spr)
    ann_off = 2 * sum(spr[:-1])
    n = (len(raw) - hdr) // rb
    for r in range(first_gap_record, n):
        old = f"+{r}\x14\x14\x00".encode()
        new = f"+{r + gap_s:.10g}\x14\x14\x00".encode()
        at = hdr + r * rb + ann_off
        assert bytes(out[at:at + len(old)]) == old
        out[at:at + len(new)] = new
    return bytes(out)


def test_a_gap_of_ten_million_seconds_is_a_gap_event(tmp_path, bases):
    path = _file(tmp_path, _edf_plus_d(bases["edf_plain"], 2, 1e7))
    with open_edf(path) as rec:
        assert rec.duration_s == pytest.approx(4 + 1e7)
        items = list(rec.blocks(1.0))
    gaps = [(g.stream, g.first_index, g.n_samples) for g in items if isinstance(g, SourceEvent)]
    assert gaps == [("emg", 2000, 10**10), ("acc", 200, 10**9)]
    emg = [b for b in items if isinstance(b, SampleBlock) and b.stream == "emg"]
    assert [b.first_index for b in emg] == [0, 1000, 10**10 + 2000, 10**10 + 3000]


_RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    from crampwatch.firmware_bridge.readers import open_recording
    n = 0
    with open_recording(sys.argv[1]) as rec:
        for item in rec.blocks(300.0):
            n += getattr(item, "n_samples", 0) or 0
    print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
""")


def _limited(cmd, limit_bytes=3 << 30, timeout=120):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit, env=env, check=False)


def test_huge_gap_reading_stays_small_in_memory(tmp_path, bases):
    path = _file(tmp_path, _edf_plus_d(bases["edf_plain"], 2, 1e7))
    res = _limited([sys.executable, "-c", _RSS_SCRIPT, path])
    assert res.returncode == 0, res.stderr
    n, rss_mb = map(int, res.stdout.split())
    assert n > 0 and rss_mb < 300, res.stdout


def test_replay_of_a_huge_gap_stays_under_1_gb(tmp_path, bases):
    path = _file(tmp_path, _edf_plus_d(bases["edf_plain"], 2, 1e7))
    script = ("import resource, sys\nfrom crampwatch.tools.cli import main\n"
              "rc = main(['replay', sys.argv[1], '--quiet'])\n"
              "print(rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")
    res = _limited([sys.executable, "-c", script, path], limit_bytes=3 << 30)
    assert res.returncode == 0, res.stderr[-2000:]
    rc, rss_mb = map(int, res.stdout.split()[-2:])
    assert rc == 0 and rss_mb < 1024


@pytest.mark.parametrize("tal,words", [
    (b"-3", ["record 3", "-3 s", "non-negative"]),
    (b"+99999999999", ["record 3", "1e+11 s"]),
    (b"+1.5", ["record 3", "starts at 1.5 s", "before the end of record 2"]),
])
def test_bad_edf_plus_d_onsets_name_the_record(tmp_path, bases, tal, words):
    raw = bytearray(_edf_plus_d(bases["edf_plain"], 0, 0))
    _, hdr, _, spr = _layout(bytes(raw))
    rb, ann_off = 2 * sum(spr), 2 * sum(spr[:-1])
    at = hdr + 2 * rb + ann_off
    raw[at:at + 4] = b"\x00\x00\x00\x00"
    raw[at:at + len(tal) + 3] = tal + b"\x14\x14\x00"
    path = _file(tmp_path, bytes(raw))
    with pytest.raises(InputFileError) as exc:
        open_edf(path)
    for w in [path, *words]:
        assert w in str(exc.value), str(exc.value)


def test_edf_plus_d_without_annotation_signal_is_refused(tmp_path):
    import warnings

    import pyedflib
    p = tmp_path / "plain.edf"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = pyedflib.EdfWriter(str(p), 1, file_type=pyedflib.FILETYPE_EDF)
    w.setSignalHeaders([dict(label="EMG calf", dimension="uV", sample_frequency=1000,
                             physical_min=-500, physical_max=500, digital_min=-32768,
                             digital_max=32767, transducer="", prefilter="")])
    w.writeSamples([np.zeros(3000)])
    w.close()
    raw = _set(p.read_bytes(), 192, 44, b"EDF+D")
    with pytest.raises(InputFileError, match="EDF\\+D"):
        open_edf(_file(tmp_path, raw, "d.edf"))


# ----------------------------------------------------------------- big records

def test_records_larger_than_a_read_are_read_in_slices(tmp_path, bases, monkeypatch):
    path = _file(tmp_path, bases["edf"])
    with open_edf(path) as rec:
        whole = [(b.stream, b.first_index, b.data.copy()) for b in rec.blocks(10.0)]
    monkeypatch.setattr(edf_mod, "READ_CHUNK_BYTES", 1000)   # a record is ~2.7 kB
    with open_edf(path) as rec:
        sliced = list(rec.blocks(0.25))
        assert len(rec.annotations) == 2
        np.testing.assert_array_equal(rec.read_emg(1234, 2000),
                                      np.concatenate([d for s, _, d in whole if s == "emg"])
                                      [1234:3234, 0])
        np.testing.assert_array_equal(rec.read_acc(95, 10),
                                      np.concatenate([d for s, _, d in whole if s == "acc"])
                                      [95:105])
    assert max(b.n_samples for b in sliced) <= 250
    for stream in ("emg", "acc"):
        a = np.concatenate([d for s, _, d in whole if s == stream])
        parts = [b for b in sliced if b.stream == stream]
        assert [b.first_index for b in parts] == \
            list(np.cumsum([0] + [b.n_samples for b in parts[:-1]]))
        np.testing.assert_array_equal(np.concatenate([b.data for b in parts]), a)


# ----------------------------------------------------------------- FIFO, devices

def _in_thread(fn, timeout=20.0):
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "hung on a FIFO"
    return box


@pytest.mark.parametrize("opener", [open_recording, open_edf, open_capture])
def test_a_fifo_is_refused_without_hanging(tmp_path, opener):
    fifo = str(tmp_path / "night.edf")
    os.mkfifo(fifo)
    box = _in_thread(lambda: opener(fifo))
    assert isinstance(box.get("error"), InputFileError), box
    assert "is not a regular file" in str(box["error"]) and fifo in str(box["error"])


def test_replay_of_a_fifo_and_a_device_exit_2(tmp_path, capsys):
    fifo = str(tmp_path / "pipe.edf")
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        box = _in_thread(lambda p=path: cli_main(["replay", p]))
        assert box.get("value") == 2, box
        err = capsys.readouterr().err
        assert err.startswith(f"crampwatch: {path}: is not a regular file"), err


# ----------------------------------------------------------------- capture recordings

EMG_FS, ACC_FS, T0 = 1000.0, 100.0, 1_750_000_000.0


def _capture(path, n_blocks=40, nan_blocks=(), seed=0):
    hdr = RecordingHeader(emg=StreamInfo("emg", EMG_FS, ("gastroc",), "uV"),
                          acc=StreamInfo("acc", ACC_FS, ("x", "y", "z"), "g"),
                          board="sim", source_url="sim://")
    rng = np.random.default_rng(seed)
    emg = rng.normal(0, 20, (n_blocks * 1000, 1)).astype(np.float32)
    for k in nan_blocks:
        emg[k * 1000:(k + 1) * 1000:4] = np.nan
        emg[k * 1000 + 1] = np.inf
    with CaptureWriter(path, hdr, fsync_interval_s=0.01) as w:
        for k in range(n_blocks):
            w.write_block(SampleBlock("emg", EMG_FS, k * 1000, emg[k * 1000:(k + 1) * 1000],
                                      T0 + k))
            w.write_block(SampleBlock("acc", ACC_FS, k * 100,
                                      np.zeros((100, 3), np.float32), T0 + k))
            w.flush()
    return emg[:, 0]


def test_nan_samples_in_a_capture_are_no_data_with_a_warning(tmp_path, caplog):
    path = str(tmp_path / "nan.cwrec")
    truth = _capture(path, nan_blocks=(10, 11))
    bad = int(np.count_nonzero(~np.isfinite(truth)))
    assert bad == 2 * 251
    with caplog.at_level(logging.WARNING, logger=REC_LOGGER):
        with open_capture(path) as rec:
            e = np.concatenate([b.data[:, 0] for b in rec.blocks() if
                                isinstance(b, SampleBlock) and b.stream == "emg"])
    np.testing.assert_array_equal(e, truth)           # NaN stays NaN: no data, never zeros
    assert any(path in m and f"{bad} EMG values are NaN or infinite" in m
               for m in caplog.messages), caplog.messages
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli_main(["replay", path, "--quiet"]) == 0
    assert any(f"{bad} EMG values" in m for m in caplog.messages)


def _rewrite_index(raw: bytes, offset: int, new_first: int) -> bytes:
    """Give the SAMPLES record at ``offset`` another first index, with a valid CRC."""
    _, rtype, length = REC_HEAD.unpack_from(raw, offset)
    payload = bytearray(raw[offset + REC_HEAD.size:offset + REC_HEAD.size + length])
    sid, _, host, n, nch = SAMPLES_HEAD.unpack_from(payload)
    SAMPLES_HEAD.pack_into(payload, 0, sid, new_first, host, n, nch)
    rec = encode_record(rtype, bytes(payload))
    return raw[:offset] + rec + raw[offset + len(rec):]


@pytest.mark.parametrize("which,new_first", [
    (0, 5_000_000_000), (17, 5_000_000_000), (17, -3), (17, 2_000), (17, 18_500), (39, 10**12),
])
def test_one_bad_record_in_a_capture_is_skipped_and_the_rest_read(
        tmp_path, caplog, which, new_first):
    path = tmp_path / "night.cwrec"
    truth = _capture(path)
    emg_recs = [r.offset for r in iter_records(path)
                if r.type == "samples" and r.value.stream == "emg"]
    assert len(emg_recs) == 40                          # one record per 1 s block
    bad = tmp_path / "bad.cwrec"
    bad.write_bytes(_rewrite_index(path.read_bytes(), emg_recs[which], new_first))
    with caplog.at_level(logging.WARNING, logger=REC_LOGGER):
        with open_capture(bad) as rec:
            items = list(rec.blocks(5.0))
            assert rec.stats.records_bad == 1
            assert rec.duration_s == pytest.approx(40.0 - (1.0 if which in (0, 39) else 0.0))
    got = {}
    for b in items:
        if isinstance(b, SampleBlock) and b.stream == "emg":
            for i in range(b.n_samples):
                got[b.first_index + i] = b.data[i, 0]
    lost = set(range(which * 1000, (which + 1) * 1000))
    assert set(got) == set(range(40_000)) - lost
    assert all(got[i] == truth[i] for i in got)
    assert sum(isinstance(b, SampleBlock) and b.stream == "acc" for b in items) == 8
    assert any(f"byte offset {emg_recs[which]}" in m and "skipped" in m for m in caplog.messages)


def test_truncated_edf_still_reads_to_its_last_whole_record(tmp_path, bases, caplog):
    raw = bases["edf"]
    _, hdr, _, spr = _layout(raw)
    rb = 2 * sum(spr)
    path = _file(tmp_path, raw[:hdr + 2 * rb + rb // 3])
    with caplog.at_level(logging.WARNING, logger=EDF_LOGGER):
        assert _exercise(path) == "ok"
    assert any("truncated" in m for m in caplog.messages)



def test_replay_of_a_damaged_header_is_one_line_and_exit_2(tmp_path, bases, capsys):
    raw = bases["edf"]
    raw = _set(raw, *_field_offset(raw, "digital maximum", 0), b"99999")
    path = _file(tmp_path, raw)
    assert cli_main(["replay", path]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("crampwatch:")]
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith(f"crampwatch: {path}: header field 'digital maximum' of "
                             f"'EMG calf' (signal 1)") and "'99999'" in err[0]
