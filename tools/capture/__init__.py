"""``crampwatch capture``: the overnight capture daemon (the job to run every night).

Runs in the foreground (systemd or a terminal runs it): records every sample
and event to a crash-safe recording, detects cramps live with the same
pipeline as ``crampwatch replay``, and logs them to the SQLite episode log.
The work is done by :class:`crampwatch.tools.capture.daemon.CaptureDaemon`; see
``docs/capture.md`` for running it every night.  The package's modules:

- ``config``: ``[capture]`` settings (:class:`~.config.CaptureConfig`) and loading the file;
- ``daemon``: the loop: source -> recording + live detection -> episode log;
- ``night_file``: the night's recording, continuing it after a restart, noon, ``stop_at``;
- ``warmup``: replaying a continued recording into the detector;
- ``hook``: the command run at each cramp onset;
- ``systemd``: ``sd_notify`` and the watchdog;
- ``status``: the live status line;
- ``trace_tap``: per-minute summaries and signal quality from the detector's trace;
- ``summary``: the night's summary printed at the end.
"""

from __future__ import annotations

import logging
import signal
import sys

from crampwatch.tools.capture.config import load_config

HELP = "record a night, detect cramps live and log them (the overnight daemon)"
DESCRIPTION = """Record a night from a board (or the simulated board) to a crash-safe recording,
detect cramps live with the same pipeline as 'crampwatch replay', and log each episode to the
SQLite episode log when its onset is confirmed.  Runs until SIGTERM/SIGINT (then prints the
night's summary and exits 0), the end of a file:// source, --duration or the configured
stop_at time.  Without --source the config file's source is used; without any config, the
simulated board (sim://).  A restart the same night continues the night's recording.
Exit status 1 when the recording failed (its writer stopped, or samples could not be stored
by the end): the summary and the journal say why."""


def add_arguments(p) -> None:
    p.add_argument("--source", metavar="URL",
                   help="serial:///dev/ttyUSB0?board=cyton, socket://HOST:PORT?board=open, "
                        "ble://ADDR?board=open, sim://?seed=1&speed=60, file://REC?speed=max "
                        "(default: the config's, else sim://)")
    p.add_argument("--config", metavar="FILE",
                   help="TOML config file with [capture] and [detector] tables (see "
                        "'crampwatch config show')")
    p.add_argument("--out", metavar="DIR", help="recordings directory")
    p.add_argument("--db", metavar="FILE", help="episode log (SQLite)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="stop after S seconds of signal")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override a capture or detector key for this run")


def run(args) -> int:
    from crampwatch.tools.capture.daemon import CaptureDaemon

    loaded = load_config(args.config, args.overrides)
    changes = {k: v for k, v in (("source", args.source), ("out_dir", args.out),
                                 ("db_path", args.db)) if v}
    cap = loaded.capture.replace(**changes) if changes else loaded.capture
    if getattr(args, "verbose", 0) == 0:
        # a daemon tells the journal what it does: connects, gaps, episodes
        logging.getLogger("crampwatch").setLevel(logging.INFO)
        logging.getLogger("crampwatch.detector").setLevel(logging.WARNING)
    if loaded.path:
        logging.getLogger(__name__).info("capture: config from %s", loaded.path)
    daemon = CaptureDaemon(cap, loaded.detector, duration_s=args.duration)

    def on_signal(signum, frame):
        if daemon.stopping:
            raise KeyboardInterrupt          # a second Ctrl-C: stop at once
        daemon.request_stop(signal.Signals(signum).name, urgent=True)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:                   # not the main thread (tests): no handlers
            pass
    try:
        summary = daemon.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(summary.text(), flush=True)
    return summary.exit_status


if __name__ == "__main__":  # pragma: no cover
    from crampwatch.tools.cli import main
    sys.exit(main(["capture", *sys.argv[1:]]))
