"""``crampwatch board-sim``: a simulated board on a pty or a TCP port.

The first line on stdout is what to open (the pty's device path, or
``tcp://127.0.0.1:PORT``), flushed, so a test or a script can wait for it.
The final tally (frames sent, dropped, corrupted) goes to stderr and, with
``--tally FILE``, to a JSON file.  SIGTERM ends it cleanly.
"""

from __future__ import annotations

import logging
import sys

from crampwatch.errors import ConfigError

HELP = "run a simulated board (Cyton, BITalino, open frame) on a pty or TCP port"
DESCRIPTION = (HELP + ". Prints the device path or tcp:// URL to open as its first line; "
               "open it with serial://PATH?board=NAME or socket://HOST:PORT?board=NAME.")

logger = logging.getLogger(__name__)


def _speed(text: str) -> float:
    if text.lower() in ("max", "inf", "0"):
        return 0.0
    value = float(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _glitch(text: str) -> tuple[float, int]:
    at, _, jump = text.partition(":")
    at_s, jump_n = float(at), int(jump) if jump else 10**8
    if not (at_s >= 0 and at_s < float("inf")):
        raise ValueError(text)
    return at_s, jump_n


def add_arguments(parser) -> None:
    parser.add_argument("--protocol", required=True, choices=["cyton", "bitalino", "open"],
                        help="the board's wire protocol")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal")
    where.add_argument("--tcp", type=int, metavar="PORT",
                       help="serve on 127.0.0.1:PORT (0 picks a free port)")
    parser.add_argument("--from", dest="from_file", metavar="FILE",
                        help="play this recording (EDF/BDF/capture) instead of a synthetic night")
    parser.add_argument("--emg", metavar="LABEL", help="EMG channel of --from FILE")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the synthetic night and of --drop/--corrupt (default 0)")
    parser.add_argument("--drop", type=float, default=0.0, metavar="RATE",
                        help="probability of losing each frame (default 0)")
    parser.add_argument("--corrupt", type=float, default=0.0, metavar="RATE",
                        help="probability of flipping one bit in each frame (default 0)")
    parser.add_argument("--hours", type=float, default=8.0,
                        help="length of the synthetic night (default 8)")
    parser.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                        help="times real time; 'max' = as fast as the host reads (default 1)")
    parser.add_argument("--emg-fs", type=float, default=None, metavar="HZ",
                        help="open protocol: EMG rate to announce (default 1000)")
    parser.add_argument("--acc-fs", type=float, default=None, metavar="HZ",
                        help="open protocol: accelerometer rate (default 100)")
    parser.add_argument("--counter-glitch", dest="glitches", action="append", default=[],
                        type=_glitch, metavar="SECONDS[:JUMP]",
                        help="open protocol: the EMG frame at SECONDS of signal carries a sample "
                             "counter JUMP too far (default 100000000), with a valid CRC "
                             "(a firmware glitch); repeatable")
    parser.add_argument("--tally", metavar="FILE", help="write the final tally as JSON here")
    parser.add_argument("--max-seconds", type=float, default=None, metavar="S",
                        help="exit after this many seconds (default: run until SIGTERM)")


def run(args) -> int:
    from crampwatch.firmware_bridge import boardsim

    if args.drop < 0 or args.drop >= 1 or args.corrupt < 0 or args.corrupt >= 1:
        raise ConfigError("--drop and --corrupt are probabilities in [0, 1)")
    if args.from_file:
        signal = boardsim.RecordingSignal(args.from_file, emg=args.emg,
                                          emg_fs_hz=args.emg_fs, acc_fs_hz=args.acc_fs)
    else:
        if args.hours <= 0:
            raise ConfigError(f"--hours must be positive, got {args.hours}", key="hours")
        signal = boardsim.SyntheticSignal(hours=args.hours, seed=args.seed,
                                          emg_fs_hz=args.emg_fs or 1000.0,
                                          acc_fs_hz=args.acc_fs or 100.0)
    sim = boardsim.BoardSim(args.protocol, signal, seed=args.seed, drop_rate=args.drop,
                            corrupt_rate=args.corrupt, speed=args.speed,
                            counter_glitches=getattr(args, "glitches", ()))
    sim.warm_up()

    def announce(where: str) -> None:
        sys.stdout.write(where + "\n")
        sys.stdout.flush()

    stop = {}
    try:
        if args.pty:
            boardsim.serve_pty(sim, announce, stop_flag=stop, max_s=args.max_seconds)
        else:
            boardsim.serve_tcp(sim, args.tcp, announce, stop_flag=stop, max_s=args.max_seconds)
    except OSError as exc:
        raise ConfigError(f"board-sim: cannot serve: {exc}") from exc
    finally:
        print(sim.tally.line(), file=sys.stderr, flush=True)
        if args.tally:
            boardsim.write_tally(sim.tally, args.tally)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m crampwatch.tools.board_sim ...``: the same as ``crampwatch board-sim``
    without loading every other subcommand (quicker to start in tests)."""
    import argparse

    from crampwatch import CrampwatchError

    parser = argparse.ArgumentParser(prog="crampwatch board-sim", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="crampwatch: %(levelname)s: %(message)s")
    try:
        return run(args)
    except CrampwatchError as exc:
        print(f"crampwatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
