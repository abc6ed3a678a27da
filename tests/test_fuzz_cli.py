"""Fuzzing the command itself: hostile input through the real entry point.

Hypothesis generates (``fuzz_inputs.py``, shared with ``benchmarks/fuzz.py``):
``--set NAME=VALUE`` for ``replay`` and ``capture`` (every key of ``config
show``; NaN, infinities, 0, negatives, 1e308, huge integers, empty, unicode,
control characters, very long strings, and each key's range edges), config
files for ``replay``, ``capture`` and ``config show`` (random bytes, UTF-16,
tables nested thousands deep, files over the size limit, valid TOML of the
wrong types), damaged capture recordings through ``replay`` and ``export
--csv`` and EDF+ nights with hostile header fields through ``replay``.

The rule: exit 0, or exit 2 with one line ``crampwatch: ...``; never a
traceback, within 20 s and 1 GB.  Config inputs run ``main()`` in this process
(capsys); files run it in a child forked from a clean server process under
``RLIMIT_AS`` (a damaged length field must not take the machine's memory); a
few of each go through the installed ``crampwatch`` command.  Bugs the fuzzer
found and that are not fixed yet have a strict-xfail reproducer at the end,
and the property tests skip (only) those examples (``fuzz_inputs.KNOWN_BUGS``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import shutil
import signal
import stat
import tempfile
import time
import traceback
import types

import pytest
from crampwatch.tools.cli import main
from fuzz_inputs import (
    KINDS,
    TIMEOUT_S,
    Case,
    ForkServer,
    Outcome,
    SAMPLES_HEAD,
    argv_for_exec,
    case_strategy,
    frame,
    installed_command,
    judge,
    known_bug,
    make_bases,
    materialize,
    run_installed,
    split_records,
)
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the sandbox forks")


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server():
    with ForkServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def bases(server, tmp_path_factory):
    """The simulated night and capture recording that the strategies mutate."""
    d = str(tmp_path_factory.mktemp("fuzz_bases"))
    return make_bases(d, run=lambda argv, env: server.run(argv, env=env))


# --------------------------------------------------------------------------- running

class _Hang(BaseException):
    """Raised by the alarm when a run in this process takes too long."""


@contextlib.contextmanager
def _deadline(seconds: float):
    def on_alarm(signum, frame):
        raise _Hang(f"still running after {seconds:g} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_in_process(case: Case, capsys, monkeypatch) -> str:
    """Run ``main()`` here on one case; assert the rule; return "ok" or "error"."""
    levels = {n: logging.getLogger(n).level for n in ("crampwatch", "crampwatch.detector")}
    capsys.readouterr()
    with tempfile.TemporaryDirectory(prefix="cwfuzz-") as d, monkeypatch.context() as mp:
        argv, env = materialize(case, d)
        for var in ("CRAMPWATCH_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            mp.delenv(var, raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        mp.chdir(d)                     # a relative path in a config lands in the sandbox
        t0 = time.monotonic()
        try:
            with _deadline(TIMEOUT_S):
                code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except Exception:
            if known_bug(traceback.format_exc()):
                reject()                # reported, with its own xfail reproducer below
            raise
        finally:
            for n, lv in levels.items():
                logging.getLogger(n).setLevel(lv)
        seconds = time.monotonic() - t0
    cap = capsys.readouterr()
    verdict, detail = judge(Outcome(code, cap.out, cap.err, seconds))
    assert verdict in ("ok", "error"), f"{verdict}: {detail}"
    return verdict


def check_forked(server, case: Case) -> str:
    """Run one case in a sandboxed child; assert the rule; return "ok" or "error"."""
    with tempfile.TemporaryDirectory(prefix="cwfuzz-") as d:
        argv, env = materialize(case, d)
        out = server.run(argv, env=env, cwd=d)
    verdict, detail = judge(out)
    if verdict in ("traceback", "memory") and known_bug(out.stderr):
        reject()
    assert verdict in ("ok", "error"), f"{verdict}: {detail}"
    return verdict


# --------------------------------------------------------------------------- (a) --set

@fuzz(60)
@given(data=st.data())
def test_set_values_for_replay(bases, data, capsys, monkeypatch):
    check_in_process(data.draw(case_strategy("set-replay", bases)), capsys, monkeypatch)


@fuzz(30)
@given(data=st.data())
def test_set_values_for_capture(bases, data, capsys, monkeypatch):
    check_in_process(data.draw(case_strategy("set-capture", bases)), capsys, monkeypatch)


# --------------------------------------------------------------------------- (b) config files

@pytest.mark.parametrize("kind,n", [("toml-replay", 50), ("toml-capture", 30),
                                    ("toml-config", 50)])
def test_config_files(bases, kind, n, capsys, monkeypatch):
    @fuzz(n)
    @given(case=case_strategy(kind, bases))
    def one(case):
        check_in_process(case, capsys, monkeypatch)
    one()


# --------------------------------------------------------------------------- (c), (d) files

@pytest.mark.parametrize("kind,n", [("cwrec-replay", 60), ("cwrec-export", 50),
                                    ("edf-replay", 60)])
def test_damaged_files(server, bases, kind, n):
    @fuzz(n)
    @given(case=case_strategy(kind, bases))
    def one(case):
        check_forked(server, case)
    one()


@pytest.mark.skipif(installed_command() is None, reason="crampwatch is not installed in this venv")
@fuzz(8)
@given(data=st.data())
def test_the_installed_command(bases, data):
    """A few inputs of every kind through the real console script, in its own process."""
    case = data.draw(st.sampled_from(KINDS).flatmap(lambda k: case_strategy(k, bases)))
    with tempfile.TemporaryDirectory(prefix="cwfuzz-") as d:
        argv, env = materialize(case, d)
        out = run_installed(argv_for_exec(argv), env=env, cwd=d)
    verdict, detail = judge(out)
    if verdict in ("traceback", "memory") and known_bug(out.stderr):
        reject()
    assert verdict in ("ok", "error"), f"{verdict}: {detail}"


def test_the_rule_itself():
    def o(code, err, **kw):
        return Outcome(code, "", err, 0.1, **kw)
    assert judge(o(0, "crampwatch: WARNING: x\n"))[0] == "ok"
    assert judge(o(2, "crampwatch: INFO: a\ncrampwatch: f.edf: bad\n")) == \
        ("error", "crampwatch: f.edf: bad")
    assert judge(o(2, "crampwatch: a\ncrampwatch: b\n"))[0] == "unclean"
    assert judge(o(2, "crampwatch: a\nforged line\n"))[0] == "unclean"
    assert judge(o(1, "Traceback (most recent call last):\nValueError: x\n"))[0] == "traceback"
    assert judge(o(1, "numpy._core._exceptions._ArrayMemoryError: Unable\n"))[0] == "memory"
    assert judge(o(None, "", timed_out=True))[0] == "hang"
    assert judge(o(None, "", signal=signal.SIGSEGV))[0] == "crash"
    assert judge(o(1, "crampwatch: capture failed\n"))[0] == "exit"


# --------------------------------------------------------------------------- leftovers
# messages, device names, output files: what the fuzzing issue also asked for

ESC = "\x1b]0;pwned\x07\x1b[2J"


def test_an_error_message_is_one_sanitised_line(tmp_path, capsys):
    bad = str(tmp_path / f"night{ESC}\r\nFAKE LOG LINE.edf")
    assert main(["replay", bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crampwatch: ")
    assert "\x1b" not in err and "\r" not in err and "\\r\\nFAKE LOG LINE" in err
    assert main(["replay", str(tmp_path / "x.edf"), "--set=min_duration_s=" + "9" * 100_000]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 2100


def test_scan_shows_ble_names_sanitised(monkeypatch):
    import bleak
    from crampwatch.firmware_bridge.sources.ble_source import NUS_SERVICE_UUID
    from crampwatch.tools import scan

    async def discover(**kw):
        dev = types.SimpleNamespace(address="AA:BB:CC:DD:EE:FF", name=None)
        adv = types.SimpleNamespace(local_name="Cyton" + ESC + "\r\nx" * 50, rssi=-40,
                                    service_uuids=[NUS_SERVICE_UUID])
        return {dev.address: (dev, adv)}
    monkeypatch.setattr(bleak.BleakScanner, "discover", staticmethod(discover))
    (line,) = scan.ble_lines(0.1)
    assert line.startswith("  ble://AA:BB:CC:DD:EE:FF?board=open  Cyton")
    assert "\x1b" not in line and "\r" not in line and "\n" not in line
    assert len(line) < 120


def _cells(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_csv_text_cells_never_start_a_formula(bases, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRAMPWATCH_HOME", str(tmp_path / "home"))
    shutil.copy(bases.night, tmp_path / "=1+1.edf")       # a file name is a text cell
    assert main(["replay", "=1+1.edf", "--quiet", "--csv", "e.csv", "--db", "log.sqlite"]) == 0
    rows = _cells(tmp_path / "e.csv")
    assert rows and all(r["file"] == "'=1+1.edf" for r in rows)
    assert all(float(r["onset_s"]) >= 0 for r in rows)      # numbers stay numbers
    note = "@SUM(1+1)*cmd|' /C calc'!A0"
    assert main(["label", "1", "--false", "--note", note, "--db", "log.sqlite"]) == 0
    assert main(["export", "=1+1.edf", "--csv", "x.csv", "--db", "log.sqlite"]) == 0
    capsys.readouterr()
    eps = _cells(tmp_path / "x.episodes.csv")
    assert eps[0]["verdict_note"] == "'" + note and eps[0]["verdict"] == "false"
    assert not any(v.startswith(("=", "+", "@")) for r in eps for v in r.values() if v)


def test_evaluate_json_is_private(bases, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    old = os.umask(0)
    try:
        assert main(["evaluate", bases.night, "--json", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert "pooled" in json.loads(out.read_text())
    labels = os.path.splitext(bases.night)[0] + ".labels.csv"
    assert main(["evaluate", bases.night, "--json", labels]) == 2      # never over an input
    assert "refusing to overwrite" in capsys.readouterr().err


# --------------------------------------------------------------------------- found bugs
# Inputs this fuzzer found that broke crampwatch, kept as regression tests once fixed
# (a new one starts as a strict xfail with a KNOWN_BUGS entry until its fix lands).

def _reframed(raw: bytes, stream_id: int, first_index: int) -> bytes:
    """The recording with every SAMPLES record of one stream moved to ``first_index``
    (CRCs valid: the reader sees well-formed records)."""
    magic, recs = split_records(raw)
    out = []
    for rtype, payload in recs:
        if rtype == 3 and payload[0] == stream_id:
            sid, first, host, n, nch = SAMPLES_HEAD.unpack_from(payload)
            payload = SAMPLES_HEAD.pack(sid, first_index + first, host, n, nch) \
                + payload[SAMPLES_HEAD.size:]
        out.append(frame(rtype, payload))
    return magic + b"".join(out)


def _replay_set(*sets):
    return lambda b: (["replay", b.night, "--quiet", *(f"--set={a}" for a in sets)], {})


def _replay_moved(stream_id, first_index):
    return lambda b: (["replay", "{dir}/n.cwrec", "--quiet"],
                      {"n.cwrec": _reframed(b.cwrec_bytes, stream_id, first_index)})


#: (id, argv and files from the bases, where and what)
KNOWN = [
    ("band_low_hz_5e-324", _replay_set("band_low_hz=5e-324"),
     "detector/filters.py: band_low_hz=5e-324 (allowed: > 0) -> scipy ValueError "
     "'filter critical frequencies must be greater than 0'"),
    ("band_order_10_low_1e-9", _replay_set("band_order=10", "band_low_hz=1e-9"),
     "detector/filters.py: band_order=10, band_low_hz=1e-9 -> numpy LinAlgError "
     "'Singular matrix' in sosfilt_zi"),
    ("floor_up_s_5e-324", _replay_set("floor_up_s=5e-324"),
     "detector/floor.py: floor_up_s=5e-324 (allowed: > 0) -> OverflowError in "
     "2 ** (step_s / up_s)"),
    ("emg_records_at_2**62", _replay_moved(0, 2**62),
     "firmware_bridge/recording.py start_time: EMG records at first_index 2**62 -> "
     "ValueError 'year ... is out of range'"),
    ("acc_records_at_10**12", _replay_moved(1, 10**12),
     "detector/frames.py: accelerometer records at first_index 10**12 -> an 8.7 TiB buffer "
     "(MemoryError under RLIMIT_AS; without a limit, the OOM killer)"),
]


def _run_known(server, bases, make):
    argv, files = make(bases)
    d = tempfile.mkdtemp(prefix="cwfuzz-")
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(data)
    return server.run([a.replace("{dir}", d) for a in argv],
                      env={"CRAMPWATCH_HOME": os.path.join(d, "home")}, cwd=d)


@pytest.mark.parametrize("make", [pytest.param(make, id=name) for name, make, _ in KNOWN])
def test_inputs_the_fuzzer_once_broke_us_on(server, bases, make):
    """Each was a traceback or an out-of-memory kill when the fuzzer found it (the
    reason beside it in KNOWN); now exit 0 or one clean error line."""
    verdict, detail = judge(_run_known(server, bases, make))
    assert verdict in ("ok", "error"), detail
