"""Entry point of the ``crampwatch`` command.

Each subcommand lives in its own module of this package and defines ``HELP``
(one line), ``add_arguments(parser)`` and ``run(args) -> int``.  Only this
module turns errors into messages: a :class:`CrampwatchError` becomes one line
``crampwatch: <what and where>`` on stderr and exit status 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from crampwatch import CrampwatchError, __version__
from crampwatch._text import sanitize_text

#: longest error message printed (characters): it can quote a --set value, a file name,
#: an EDF label or a device name, none of which may repaint the terminal or forge lines
MAX_MESSAGE_CHARS = 2000

# subcommand name -> (module in crampwatch.tools, one-line help).  Only the module
# of the subcommand being run is imported, so every command starts quickly.
SUBCOMMANDS = {
    "capture": ("capture", "record a night, detect cramps live and log them (the overnight daemon)"),
    "replay": ("replay", "replay recordings (EDF/EDF+/BDF or crampwatch captures) through the detector"),
    "simulate": ("simulate", "write a synthetic night (EDF+ with EMG and accelerometer) and its labels"),
    "evaluate": ("evaluate", "score the detector against labelled recordings (precision, recall, ...)"),
    "batch": ("batch", "replay many recordings on every core or on a Dask cluster (episodes.csv, nights.csv)"),
    "tune": ("tune", "try detector settings on labelled recordings and keep the best"),
    "train": ("train", "refit the candidate model on your labelled nights (on top of the shipped one)"),
    "review": ("review", "summarise a night from the episode log (terminal, --json or --html report)"),
    "label": ("label", "record your verdict on an episode (--confirmed or --false)"),
    "export": ("export", "export a recording as EDF+ (episodes as annotations) or CSV"),
    "config": ("config_cmd", "show the effective configuration (every key, its value, its meaning)"),
    "scan": ("scan", "list serial ports and nearby BLE boards advertising the Nordic UART Service"),
    "board-sim": ("board_sim", "run a simulated board (Cyton, BITalino, open frame) on a pty or TCP"),
}


def _load(name: str):
    return importlib.import_module(f"crampwatch.tools.{SUBCOMMANDS[name][0]}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the arguments of ``command`` (or of every subcommand when
    None) are loaded from its module."""
    parser = argparse.ArgumentParser(
        prog="crampwatch",
        description="Watch calf EMG all night and report nocturnal leg cramps.")
    parser.add_argument("--version", action="version", version=f"crampwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        mod = _load(name)
        p = sub.add_parser(name, help=help_text, description=getattr(mod, "DESCRIPTION", help_text))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _command_of(argv: list[str]) -> str | None:
    for tok in argv:
        if not tok.startswith("-"):
            return tok if tok in SUBCOMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    parser = build_parser(command if command is not None else "")
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="crampwatch: %(levelname)s: %(message)s")
    logging.captureWarnings(True)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CrampwatchError as exc:
        print(f"crampwatch: {sanitize_text(str(exc), MAX_MESSAGE_CHARS)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crampwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
