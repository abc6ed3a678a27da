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

# subcommand name -> module in crampwatch.tools
SUBCOMMANDS = {
    "capture": "capture",
    "replay": "replay",
    "simulate": "simulate",
    "evaluate": "evaluate",
    "tune": "tune",
    "review": "review",
    "label": "label",
    "export": "export",
    "config": "config_cmd",
    "scan": "scan",
    "board-sim": "board_sim",
}


def _load(name: str):
    try:
        return importlib.import_module(f"crampwatch.tools.{SUBCOMMANDS[name]}")
    except ModuleNotFoundError as exc:
        if exc.name == f"crampwatch.tools.{SUBCOMMANDS[name]}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crampwatch",
        description="Watch calf EMG all night and report nocturnal leg cramps.")
    parser.add_argument("--version", action="version", version=f"crampwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
        print(f"crampwatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("crampwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
