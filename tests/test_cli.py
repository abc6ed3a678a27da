"""The command itself: every subcommand loads and documents itself; errors
are one line with exit status 2."""

import subprocess
import sys

import pytest

from crampwatch.tools.cli import SUBCOMMANDS, main


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"crampwatch {name}" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in SUBCOMMANDS)


def test_installed_command_reports_errors_in_one_line(tmp_path):
    missing = tmp_path / "nope.edf"
    r = subprocess.run([sys.executable, "-m", "crampwatch.tools.cli", "replay", str(missing)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"crampwatch: {missing}: no such file"]
    assert "Traceback" not in r.stderr
