"""The systemd user units in systemd/: their command lines are ones the real CLI
accepts, the daemon keeps the contract they declare (Type=notify, watchdog,
SIGTERM -> exit 0), the night window starts and stops the capture at the right
times, and ``systemd-analyze verify`` finds nothing to say about them."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from crampwatch.tools.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
SERVICE = UNITS / "crampwatch.service"
NIGHT_SERVICE = UNITS / "crampwatch-night.service"
NIGHT_TIMER = UNITS / "crampwatch-night.timer"
ALL_UNITS = (SERVICE, NIGHT_SERVICE, NIGHT_TIMER)


# --------------------------------------------------------------------------- helpers
def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values...]}}``: comments dropped, ``\\`` continuation lines
    joined with a space as systemd does, repeated keys kept in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    logical = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not logical and raw.lstrip().startswith(("#", ";")):
            continue
        if raw.endswith("\\"):
            logical += raw[:-1] + " "
            continue
        line, logical = (logical + raw).strip(), ""
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a KEY=VALUE line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}= given {len(values)} times: {values}"
    return values[0]


def systemd_unescape(value: str, home: Path) -> str:
    """The specifiers and escapes these units use: %h, %%, $$ (anything else is an
    error here, so that a new specifier gets a thought)."""
    def spec(m):
        c = m.group(1)
        if c == "h":
            return str(home)
        if c == "%":
            return "%"
        raise AssertionError(f"specifier %{c} not handled by the test")

    out = re.sub(r"%(.)", spec, value)
    assert not re.search(r"(?<!\$)\$\{", out.replace("$$", "")), \
        f"systemd would expand ${{...}} itself in {value!r}"
    return out.replace("$$", "$")


def exec_argv(unit: dict, home: Path) -> list[str]:
    return shlex.split(systemd_unescape(one(unit, "Service", "ExecStart"), home))


def seconds(span: str) -> float:
    units = {"ms": 1e-3, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "": 1}
    total = 0.0
    for num, unit_ in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        total += float(num) * units[unit_]
    return total


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home directory as the user manager sees it: %h, $HOME, XDG defaults."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "CRAMPWATCH_HOME", "CRAMPWATCH_CONFIG",
                "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    return h


# --------------------------------------------------------------------------- the daemon unit
def test_execstart_is_a_capture_command_line_the_cli_accepts(home):
    from crampwatch.tools.capture.config import default_config_path

    argv = exec_argv(read_unit(SERVICE), home)
    assert os.path.isabs(argv[0]) and Path(argv[0]).name == "crampwatch"
    args = build_parser("capture").parse_args(argv[1:])
    assert args.command == "capture"
    assert args._run.__module__ == "crampwatch.tools.capture"
    # the file the service reads is the one `crampwatch config show` reports
    assert args.config == default_config_path() == str(home / ".config/crampwatch/crampwatch.toml")
    assert args.source is None and args.duration is None and args.overrides == []


def test_service_declares_notify_watchdog_restart_and_stop():
    unit = read_unit(SERVICE)
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert seconds(one(unit, "Service", "TimeoutStopSec")) == 30
    assert seconds(one(unit, "Service", "WatchdogSec")) > 0
    # nothing that hides or filters /dev: the serial port must stay reachable
    for key in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectSystem", "PrivateUsers"):
        assert key not in unit["Service"], key
    # the capture keeps going all night; a limit would be a failure every morning
    assert "RuntimeMaxSec" not in unit["Service"]


def test_the_command_behaves_as_the_unit_declares(home, tmp_path):
    """Run ExecStart as the user manager would: READY=1 and WATCHDOG=1 arrive on
    $NOTIFY_SOCKET, and KillSignal makes it exit 0 (a clean stop, so
    Restart=on-failure leaves it stopped) well within TimeoutStopSec."""
    unit = read_unit(SERVICE)
    argv = exec_argv(unit, home)
    argv[0] = shutil.which("crampwatch", path=os.path.dirname(sys.executable)) or argv[0]
    if not os.access(argv[0], os.X_OK):
        pytest.skip("the crampwatch script is not installed next to this Python")
    cfg = home / ".config/crampwatch/crampwatch.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[capture]\nsource = "sim://?seed=3"\n', encoding="utf-8")

    addr = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(addr)
    sock.settimeout(20.0)
    env = dict(os.environ, NOTIFY_SOCKET=addr, WATCHDOG_USEC="200000",
               **dict(e.split("=", 1) for v in unit["Service"].get("Environment", [])
                      for e in shlex.split(v)))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        got: list[str] = []
        while "WATCHDOG=1" not in got:
            got.extend(sock.recv(4096).decode().splitlines())
        assert "READY=1" in got and got.index("READY=1") < got.index("WATCHDOG=1")
        proc.send_signal(getattr(signal, one(unit, "Service", "KillSignal")))
        out, err = proc.communicate(timeout=seconds(one(unit, "Service", "TimeoutStopSec")))
        sock.setblocking(False)           # what it sent before exiting is queued here
        while True:
            try:
                got.extend(sock.recv(4096).decode().splitlines())
            except BlockingIOError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sock.close()
    assert proc.returncode == 0, err
    assert "STOPPING=1" in got
    assert "crampwatch capture:" in out and "stopped (SIGTERM)" in out
    assert (home / ".local/share/crampwatch/episodes.sqlite").is_file()


# --------------------------------------------------------------------------- the night
def test_timer_fires_at_the_night_window_edges_and_after_startup():
    timer = read_unit(NIGHT_TIMER)
    cals = timer["Timer"].get("OnCalendar", [])
    times = []
    for cal in cals:
        m = re.fullmatch(r"\*-\*-\* (\d\d):(\d\d)(?::00)?", cal)
        assert m, f"OnCalendar={cal!r}: expected a daily *-*-* HH:MM:SS"
        times.append(m.group(1) + m.group(2))
    assert "OnStartupSec" in timer["Timer"]
    assert one(timer, "Timer", "Unit") == NIGHT_SERVICE.name
    assert one(timer, "Install", "WantedBy") == "timers.target"
    env = dict(e.split("=", 1) for v in read_unit(NIGHT_SERVICE)["Service"]["Environment"]
               for e in shlex.split(v))
    # the timer fires exactly where the window opens and closes
    assert sorted(times) == sorted([env["NIGHT_FROM"], env["NIGHT_TO"]])


def _run_window(argv: list[str], tmp_path: Path, hhmm: str, window: dict) -> list[str]:
    """Run the night service's command with a clock reading ``hhmm``; the
    systemctl calls it made."""
    bin_dir = tmp_path / f"bin{hhmm}"
    bin_dir.mkdir()
    calls = tmp_path / f"calls{hhmm}"
    (bin_dir / "date").write_text(f'#!/bin/sh\n[ "$1" = "+%H%M" ] || exit 9\necho {hhmm}\n')
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", **window}
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10, check=False)
    assert r.returncode == 0, r.stderr
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("window,expect", [
    ({}, {"2129": "stop", "2130": "start", "2359": "start", "0000": "start",
          "0305": "start", "0759": "start", "0800": "stop", "1200": "stop"}),
    ({"NIGHT_FROM": "0900", "NIGHT_TO": "1700"},          # day sleep: no wrap
     {"0859": "stop", "0900": "start", "1659": "start", "1700": "stop", "2300": "stop"}),
])
def test_night_service_starts_inside_the_window_and_stops_outside(tmp_path, window, expect):
    if not os.access("/bin/sh", os.X_OK):
        pytest.skip("no /bin/sh")
    unit = read_unit(NIGHT_SERVICE)
    assert one(unit, "Service", "Type") == "oneshot"
    argv = exec_argv(unit, tmp_path)
    defaults = dict(e.split("=", 1) for v in unit["Service"]["Environment"]
                    for e in shlex.split(v))
    got = {hhmm: _run_window(argv, tmp_path, hhmm, {**defaults, **window})
           for hhmm in expect}
    assert got == {hhmm: [f"--user --no-block {verb} {SERVICE.name}"]
                   for hhmm, verb in expect.items()}


# --------------------------------------------------------------------------- systemd itself
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here")
    home = tmp_path / "home"
    (home / ".local/bin").mkdir(parents=True)
    exe = shutil.which("crampwatch", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the crampwatch script is not installed next to this Python")
    (home / ".local/bin/crampwatch").symlink_to(exe)
    units = tmp_path / "units"
    units.mkdir()
    for p in ALL_UNITS:
        shutil.copy(p, units / p.name)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(runtime),
               SYSTEMD_LOG_COLOR="0")
    r = subprocess.run([tool, "--user", "verify", *(str(units / p.name) for p in ALL_UNITS)],
                       env=env, capture_output=True, text=True, timeout=30, check=False)
    if r.returncode != 0 and "Failed to initialize manager" in r.stderr:
        pytest.skip(f"systemd-analyze cannot run a user manager here: {r.stderr.strip()}")
    # unknown keys, bad calendar specs and the like are only warnings: none allowed
    ours = [line for line in (r.stdout + r.stderr).splitlines()
            if "crampwatch" in line or str(units) in line]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr
