"""The configuration: TOML tables [capture] and [detector], --set, clear one-line
errors, and ``crampwatch config show`` listing every key with its default."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from crampwatch.detector.config import DetectorConfig
from crampwatch.errors import ConfigError
from crampwatch.tools.capture.config import CaptureConfig, default_config_path, load_config
from crampwatch.tools.cli import main


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CRAMPWATCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CRAMPWATCH_CONFIG", raising=False)
    return tmp_path / "home"


def write(path, text):
    path.write_text(text)
    return str(path)


def test_toml_tables_map_onto_both_configs_and_set_wins(tmp_path):
    cfg_file = write(tmp_path / "c.toml", """
[capture]
source = "serial:///dev/ttyUSB0?board=cyton"
hook = "true"
lsl = true
fsync_interval_s = 2
[detector]
min_duration_s = 12.5
mains_hz = "60"
""")
    got = load_config(cfg_file, ["hook_timeout_s=3", "detector.min_duration_s=8",
                                 "capture.stop_at=07:30"])
    assert got.path == cfg_file
    assert got.capture.source == "serial:///dev/ttyUSB0?board=cyton"
    assert got.capture.lsl is True and got.capture.fsync_interval_s == 2.0
    assert got.capture.hook_timeout_s == 3.0 and got.capture.stop_at == "07:30"
    assert got.detector.min_duration_s == 8.0 and got.detector.mains_hz == "60"
    # everything not given keeps its default
    assert got.capture.db_update_s == CaptureConfig().db_update_s
    assert got.detector.on_ratio == DetectorConfig().on_ratio


def test_a_file_without_tables_is_detector_parameters(tmp_path):
    """What 'crampwatch replay --config' has always taken still works."""
    got = load_config(write(tmp_path / "d.toml", "min_duration_s = 20\n"), [])
    assert got.detector.min_duration_s == 20.0 and got.capture == CaptureConfig()


def test_the_default_config_file_is_found_under_crampwatch_home(home):
    assert default_config_path() == str(home / "crampwatch.toml")
    assert load_config(None, []).path is None                  # none there: defaults
    home.mkdir()
    write(home / "crampwatch.toml", '[capture]\nsource = "sim://?seed=5"\n')
    got = load_config(None, [])
    assert got.path == str(home / "crampwatch.toml") and got.capture.source == "sim://?seed=5"


@pytest.mark.parametrize("text, words", [
    ("[capture]\nsourse = 'sim://'\n", ["unknown key 'sourse'", "[capture]"]),
    ("[detector]\nmin_duration = 3\n", ["unknown parameter 'min_duration'", "[detector]"]),
    ("[captur]\nsource = 'sim://'\n", ["unknown table [captur]"]),
    ("[capture]\nfsync_interval_s = 'often'\n", ["fsync_interval_s=often", "not a number",
                                                "0.01 <= fsync_interval_s <= 60 (s)"]),
    ("[capture]\nlsl = 'maybe'\n", ["lsl='maybe'", "bool"]),
    ("[capture]\nstatus_line = 'sometimes'\n", ["status_line='sometimes'", "auto, on or off"]),
    ("[capture]\nstop_at = '25:00'\n", ["stop_at='25:00'", "HH:MM"]),
    ("[capture]\nfsync_interval_s = 0\n", ["fsync_interval_s=0", "out of range",
                                          "0.01 <= fsync_interval_s <= 60 (s)"]),
    ("[capture]\nhook = 'buzz \"unclosed'\n", ["hook=", "quotation"]),
    ("min_duration_s = 3\n[capture]\nsource = 'sim://'\n", ["outside any table"]),
    ("[capture\n", ["not valid TOML"]),
    ("[detector]\nmains_hz = '55'\n", ["mains_hz='55'"]),
])
def test_bad_config_is_a_one_line_error_with_exit_2(tmp_path, capsys, text, words):
    path = write(tmp_path / "bad.toml", text)
    for argv in (["config", "show", "--config", path], ["capture", "--config", path]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("crampwatch: "), err
        assert path in err
        for w in words:
            assert w in err, (w, err)


def test_bad_set_and_missing_file_are_one_line_errors(tmp_path, capsys):
    assert main(["config", "show", "--set", "nosuchkey=1"]) == 2
    assert "unknown key 'nosuchkey'" in capsys.readouterr().err
    assert main(["config", "show", "--set", "hook_timeout_s"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["config", "show", "--config", str(tmp_path / "none.toml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="capture.bogus|unknown key 'bogus'"):
        load_config(None, ["capture.bogus=1"], use_default=False)


def test_config_show_lists_every_key_with_its_default_and_reads_back(tmp_path, capsys, home):
    cfg_file = write(tmp_path / "c.toml", '[capture]\nhook_timeout_s = 7\n'
                                          '[detector]\nmin_duration_s = 11\n')
    assert main(["config", "show", "--config", cfg_file]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for cls, table in ((CaptureConfig, "capture"), (DetectorConfig, "detector")):
        for f in dataclasses.fields(cls):
            at = next(i for i, line in enumerate(lines) if line.startswith(f"{f.name} = "))
            doc, default = lines[at - 2], lines[at - 1]
            assert doc.startswith("# ") and len(doc) > 10, f.name
            assert default.startswith("# default: "), (f.name, default)
    assert "hook_timeout_s = 7.0" in out and "min_duration_s = 11.0" in out
    assert out.count("(changed)") == 2
    assert f"in effect: {home / 'recordings'}" in out          # out_dir '' -> the default dir
    # units are stated: in the names and in the doc lines
    assert "(s)" in out and "(MB" in out and "(Hz)" in out
    # the output is a valid config file that gives the same effective config back
    parsed = tomllib.loads(out)
    assert set(parsed) == {"capture", "detector"}
    again = write(tmp_path / "again.toml", out)
    assert load_config(again, []) == dataclasses.replace(load_config(cfg_file, []), path=again)
