"""Run ``crampwatch board-sim`` as a real process and collect what a source yields."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent


class BoardSimProcess:
    """``crampwatch board-sim ...`` in a subprocess; ``.where`` is its first stdout line.

    Use as a context manager: it is SIGTERMed (or SIGKILLed if stuck) on exit
    and ``.tally`` holds the JSON tally it wrote.
    """

    def __init__(self, *args: str, ready_timeout_s: float = 60.0, full_cli: bool = False):
        self._dir = tempfile.TemporaryDirectory(prefix="boardsim-")
        self.tally_path = os.path.join(self._dir.name, "tally.json")
        self.stderr_path = os.path.join(self._dir.name, "stderr.txt")
        self._stderr = open(self.stderr_path, "w")
        # the full CLI loads every subcommand; the module alone starts quicker
        module = ["crampwatch.tools.cli", "board-sim"] if full_cli else \
            ["crampwatch.tools.board_sim"]
        cmd = [sys.executable, "-m", *module, *args,
               "--tally", self.tally_path]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL)
        self._ready_timeout_s = ready_timeout_s
        self._where: str | None = None
        self.tally: dict | None = None
        self.returncode: int | None = None

    @property
    def where(self) -> str:
        """The first stdout line (pty path or tcp:// URL); waits for it (processes
        start in parallel: spawn several, then ask each)."""
        if self._where is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], self._ready_timeout_s)
            line = self.proc.stdout.readline().decode().strip() if ready else ""
            if not line:
                raise RuntimeError(f"board-sim printed no first line; stderr: {self.stderr()}")
            self._where = line
        return self._where

    def stderr(self) -> str:
        self._stderr.flush()
        with open(self.stderr_path) as fh:
            return fh.read()

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, wait, read the tally; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.returncode = self.proc.wait()
        if os.path.exists(self.tally_path):
            with open(self.tally_path) as fh:
                self.tally = json.load(fh)
        return self.returncode

    def kill(self) -> None:
        """SIGKILL: no tally, no goodbye."""
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.terminate()
        self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        self._dir.cleanup()


class Collected:
    """Everything a source yielded, per stream, with the data in index order."""

    def __init__(self):
        self.blocks: dict[str, list[SampleBlock]] = {"emg": [], "acc": []}
        self.events: list[SourceEvent] = []
        self.order: list = []

    def add(self, items) -> None:
        for x in items:
            self.order.append(x)
            if isinstance(x, SampleBlock):
                self.blocks[x.stream].append(x)
            else:
                self.events.append(x)

    def n(self, stream: str) -> int:
        return sum(b.n_samples for b in self.blocks[stream])

    def end_index(self, stream: str) -> int:
        return self.blocks[stream][-1].end_index if self.blocks[stream] else 0

    def kinds(self, kind: str, stream: str | None = None) -> list[SourceEvent]:
        return [e for e in self.events if e.kind == kind and (stream is None or e.stream == stream)]

    def gap_samples(self, stream: str) -> int:
        return sum(e.n_samples for e in self.kinds("gap", stream))

    def data(self, stream: str) -> tuple[np.ndarray, np.ndarray]:
        """(indices, values) of every sample received."""
        bl = self.blocks[stream]
        idx = np.concatenate([np.arange(b.first_index, b.end_index) for b in bl])
        val = np.concatenate([b.data for b in bl])
        return idx, val


def collect_until(src, done, timeout_s: float = 30.0, into: Collected | None = None) -> Collected:
    """Read ``src`` until ``done(collected)`` is true; fail after ``timeout_s``."""
    got = into or Collected()
    deadline = time.monotonic() + timeout_s
    while not done(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"source did not deliver in {timeout_s} s: "
                                 f"emg {got.n('emg')}, acc {got.n('acc')}, events "
                                 f"{[(e.kind, e.detail) for e in got.events][-5:]}")
        got.add(src.read(timeout_s=0.5))
    return got


def db_rows(db_path, sql: str, args=()) -> list[dict]:
    """Rows of a query on an SQLite file (the episode log), as dicts."""
    import sqlite3
    con = sqlite3.connect(str(db_path))
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, args)]
    finally:
        con.close()
