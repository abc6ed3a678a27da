"""The onset hook: the user's command, run at each confirmed cramp onset.

Examples
--------
>>> hooks = HookRunner("true", timeout_s=5.0)
>>> hooks.run({"CRAMPWATCH_EVENT": "onset"})
True
>>> hooks.close()
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import time

from crampwatch.errors import ConfigError

__all__ = ["HookRunner"]

log = logging.getLogger(__name__)


class HookRunner:
    """Run the user's command at each episode onset, without waiting for it.

    The command is split like a shell would (``shlex``) but run without one;
    the episode is in ``CRAMPWATCH_*`` environment variables.  A command that
    is still running after ``timeout_s`` is killed (with its process group);
    failures are logged, never fatal.

    Examples
    --------
    >>> hooks = HookRunner("true", timeout_s=5.0)
    >>> hooks.run({"CRAMPWATCH_EVENT": "onset"})
    True
    >>> hooks.close()
    """

    def __init__(self, command: str, timeout_s: float = 30.0):
        self.command = command
        self.argv = shlex.split(command)
        self.timeout_s = float(timeout_s)
        self._procs: list[tuple[subprocess.Popen, float]] = []
        self.started = 0
        self.failed = 0
        exe = self.argv[0]
        if shutil.which(exe) is None:
            raise ConfigError(f"config [capture] hook: command {exe!r} not found (give a full "
                              "path or a command on PATH)", key="hook")

    def run(self, env: dict) -> bool:
        """Start the command with ``env`` added to the environment."""
        self.reap()
        try:
            proc = subprocess.Popen(self.argv, env={**os.environ, **env},
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            self.failed += 1
            log.error("hook %r could not be started: %s", self.command, exc)
            return False
        self.started += 1
        self._procs.append((proc, time.monotonic() + self.timeout_s))
        return True

    def reap(self) -> None:
        """Collect finished hooks, kill overdue ones (call it now and then)."""
        keep = []
        now = time.monotonic()
        for proc, deadline in self._procs:
            rc = proc.poll()
            if rc is None and now > deadline:
                log.warning("hook %r still running after %g s: killed", self.command,
                            self.timeout_s)
                _kill_group(proc)
                rc = proc.wait()
            if rc is None:
                keep.append((proc, deadline))
            elif rc != 0:
                self.failed += 1
                log.warning("hook %r exited with status %d", self.command, rc)
        self._procs = keep

    def close(self, wait_s: float = 5.0) -> None:
        """Wait a little for running hooks, then kill what is left."""
        deadline = time.monotonic() + wait_s
        for proc, _ in self._procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
        self._procs = []


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass
