"""Run many recordings through the detector: serially, on a local process pool
or on a Dask distributed cluster, with the same results whatever the engine.

One recording is one :class:`Job` (its path and the settings); a worker runs
it through :func:`crampwatch.tools._run.run_channels` and sends back only a
small :class:`JobResult` (per watched channel: the episode records of
``replay --episodes``, the episodes' spans, span, good-signal time, gaps), never
samples.  Workers read the recordings themselves, from a path they share with
the parent.  ``batch``, ``evaluate`` and ``tune`` all go through
:func:`run_jobs`.

Engines
-------
- ``jobs=1`` and no cluster: in this process, one recording after the other.
- ``jobs=N``: a :class:`concurrent.futures.ProcessPoolExecutor` of N worker
  processes, forked from this process while it runs a single thread (they start
  with the detector imported; a forked child of a process holding threads could
  inherit a held lock), otherwise started by a ``forkserver`` that imports the
  detector once (``spawn`` where there is none).
- ``cluster="tcp://host:8786"``: a Dask distributed scheduler
  (``pip install 'crampwatch[cluster]'``); every worker must have the same
  crampwatch installed (a worker with another version gives that recording an
  error) and see the recordings at the same path.

A result is a plain JSON-able mapping inside (:meth:`JobResult.to_json`): the
parent stores it as it is (``batch``'s resume manifest) and a result read back
from there gives byte for byte the outputs of a fresh one.

Examples
--------
>>> from crampwatch.detector import DetectorConfig
>>> from crampwatch.tools._engine import Job, run_jobs
>>> results = run_jobs([Job("a.edf", DetectorConfig()), Job("b.edf", DetectorConfig())],
...                    jobs=2)                                   # doctest: +SKIP
>>> [r.error for r in results]                                   # doctest: +SKIP
[None, 'b.edf: no such file']
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC

from crampwatch import CrampwatchError, __version__
from crampwatch.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "ChannelResult",
    "Job",
    "JobResult",
    "default_jobs",
    "run_job",
    "run_jobs",
    "settings_hash",
]

#: step labels of the pipeline's trace that are not good signal
_BAD_LABELS = ("artifact", "nodata")


@dataclass(frozen=True)
class Job:
    """One recording and the settings to replay it with (pickled to the workers).

    ``emg``: None (the default channel), one label, a list of labels or
    ``"all"``, as :func:`crampwatch.tools._run.run_channels` takes it;
    ``acc``: three labels or None; ``sites``: channel label -> body site."""

    path: str
    cfg: object                      # DetectorConfig (frozen dataclass, picklable)
    emg: object = None
    acc: object = None
    sites: dict | None = None


@dataclass
class ChannelResult:
    """What one watched channel of a recording gave."""

    channel: str
    site: str
    start: str                       # first sample, UTC ISO 8601 (milliseconds)
    duration_s: float
    emg_fs_hz: float
    good_signal_s: float
    gaps: int                        # EMG gaps recorded in the file
    gap_s: float
    records: list = field(default_factory=list)    # replay --episodes records
    spans: list = field(default_factory=list)      # [onset_s, offset_s, status], unrounded


@dataclass
class JobResult:
    """The result of one :class:`Job`: its channels, or the one-line ``error``.

    ``exc`` (the exception itself, for callers that re-raise it) and
    ``detail`` (a bug's traceback) travel from the worker but are not part of
    :meth:`to_json`."""

    path: str
    channels: list = field(default_factory=list)
    error: str | None = None
    version: str = __version__
    wall_s: float = 0.0
    exc: BaseException | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        return {"path": self.path, "error": self.error, "version": self.version,
                "channels": [vars(c) for c in self.channels]}

    @classmethod
    def from_json(cls, data: dict) -> JobResult:
        return cls(path=data["path"], error=data.get("error"),
                   version=data.get("version", ""),
                   channels=[ChannelResult(**c) for c in data.get("channels", [])])


# ------------------------------------------------------------------------ one job
_MALLOC_TUNED = False
#: glibc mallopt parameters: M_TRIM_THRESHOLD (-1), M_MMAP_THRESHOLD (-3)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _keep_big_arrays() -> None:
    """Let glibc reuse the replay's large numpy temporaries instead of mapping
    and unmapping them at every step (once per process; glibc only).

    Dask starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``; setting any
    threshold turns off glibc's adaptive mmap threshold, so every array over
    128 KiB is a fresh ``mmap`` and the replay of a night takes 1.6x as long
    (measured: 4.6 s instead of 2.8 s for an 8-hour night).  64 MiB / 128 MiB
    restore reuse (2.3 s): memory stays bounded by one recording's blocks."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes
        import ctypes.util
        if sys.platform != "linux":
            return
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 64 * 2**20)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 * 2**20)
    except (OSError, AttributeError):      # not glibc (musl, macOS): leave it be
        pass


def run_job(job: Job, catch_all: bool = True) -> JobResult:
    """Replay one recording; every error becomes the result's ``error``.

    A :class:`CrampwatchError` (unreadable file, no EMG channel, flat signal,
    ...) gives its one-line message; with ``catch_all`` any other exception
    (a bug) gives ``"internal error ..."`` and its traceback in ``detail``;
    without, it propagates."""
    from crampwatch.tools._run import run_channels

    _keep_big_arrays()
    t0 = time.perf_counter()
    try:
        runs = run_channels(job.path, job.cfg, emg=job.emg, acc=job.acc, sites=job.sites,
                            progress=False, keep_trace=True)
        channels = [_channel_result(r, job.cfg) for r in runs]
    except CrampwatchError as exc:
        return JobResult(job.path, error=_one_line(str(exc)) or type(exc).__name__,
                         exc=_picklable(exc), wall_s=time.perf_counter() - t0)
    except MemoryError:
        return JobResult(job.path, error=f"{job.path}: out of memory",
                         wall_s=time.perf_counter() - t0)
    except Exception as exc:
        if not catch_all:
            raise
        return JobResult(job.path, error=f"{job.path}: internal error (a bug, please report "
                                         f"it): {type(exc).__name__}: {_one_line(str(exc))}",
                         detail=traceback.format_exc(), wall_s=time.perf_counter() - t0)
    res = JobResult(job.path, channels=channels, wall_s=time.perf_counter() - t0)
    # one JSON round trip: what the manifest stores is exactly what is used
    fresh = JobResult.from_json(json.loads(json.dumps(res.to_json())))
    fresh.wall_s = res.wall_s
    return fresh


def _channel_result(res, cfg) -> ChannelResult:
    gap_samples = sum(g.n_samples or 0 for g in res.gaps if (g.stream or "emg") == "emg")
    n_gaps = sum(1 for g in res.gaps if (g.stream or "emg") == "emg")
    gap_s = gap_samples / res.emg_fs_hz if res.emg_fs_hz else 0.0
    good_s = res.duration_s - gap_s
    labels = (res.trace or {}).get("label")
    if labels is not None and len(labels):
        from crampwatch.detector.pipeline import LABELS
        bad = [LABELS.index(b) for b in _BAD_LABELS if b in LABELS]
        good_steps = int(sum(1 for v in labels if int(v) not in bad))
        good_s = min(good_s, good_steps * float(cfg.step_s))
    return ChannelResult(
        channel=res.channel, site=res.site,
        start=res.start_time.astimezone(UTC).isoformat(timespec="milliseconds"),
        duration_s=float(res.duration_s), emg_fs_hz=float(res.emg_fs_hz),
        good_signal_s=max(0.0, float(good_s)), gaps=n_gaps,
        gap_s=float(gap_s), records=res.episode_records(),
        spans=[[float(e.onset_s), float(e.offset_s), str(e.status)] for e in res.episodes])


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _picklable(exc: BaseException) -> BaseException | None:
    import pickle
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - an exception class whose arguments do not pickle
        return None


# ------------------------------------------------------------------------ settings
def settings_hash(cfg, emg=None, acc=None, sites=None) -> str:
    """SHA-256 of everything that decides a recording's result besides the file:
    every detector setting (canonical JSON), the channel choice, the code
    version and the bytes of the candidate model the detector loads."""
    doc = {"detector": cfg.to_dict(), "emg": emg, "acc": acc,
           "sites": sorted((sites or {}).items()), "version": __version__,
           "model_sha256": _model_sha256(getattr(cfg, "model_file", None))}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _model_sha256(model_file: str | None) -> str:
    """The hash of the model file the detector would load (the shipped one for
    ''); a file that cannot be read hashes as its name (its jobs fail anyway)."""
    try:
        from importlib import resources

        from crampwatch import models
        name = model_file or getattr(models, "DEFAULT_MODEL", "")
        if os.sep not in name and "/" not in name and not os.path.exists(name):
            data = resources.files(models.__name__).joinpath(name).read_bytes()
        else:
            with open(name, "rb") as fh:
                data = fh.read()
        return hashlib.sha256(data).hexdigest()
    except Exception:           # noqa: BLE001 - unreadable: the run reports it
        return "unreadable:" + str(model_file)


# ------------------------------------------------------------------------ engines
def default_jobs() -> int:
    """Every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:      # not Linux
        return max(1, os.cpu_count() or 1)


def run_jobs(jobs: list[Job], n_jobs: int | None = 1, cluster: str | None = None,
             on_result=None, progress: bool | None = False, on_error: str = "record",
             order: list[int] | None = None) -> list[JobResult]:
    """Run ``jobs``; return their results in the order of ``jobs``.

    Parameters
    ----------
    n_jobs : int or None
        Local worker processes (None: every core; 1: in this process).
        Ignored with ``cluster``.
    cluster : str, optional
        Address of a Dask distributed scheduler (``tcp://host:8786``).
    on_result : callable, optional
        ``on_result(index, result)``, called in this process as each job ends
        (in the order they end).
    progress : bool or None
        A progress bar over the recordings with an ETA (None: on a terminal).
    on_error : ``"record"`` or ``"raise"``
        ``"record"``: a failed recording is a result with ``error``; the rest
        go on.  ``"raise"``: the first failure stops the run (the jobs not
        started are cancelled) and the error of the first failed job in
        ``jobs`` order is raised.
    order : list of int, optional
        Submission order (indices into ``jobs``; default: largest file first,
        which balances the workers best).  Never changes the results.

    Raises
    ------
    ConfigError
        ``cluster`` given but Dask is not installed, or the scheduler cannot be
        reached.
    """
    if on_error not in ("record", "raise"):
        raise ValueError(f"on_error={on_error!r}")
    results: list[JobResult | None] = [None] * len(jobs)
    if not jobs:
        return []
    if order is None:
        order = sorted(range(len(jobs)), key=lambda i: (-_size(jobs[i].path), i))
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), unit="night", desc="recordings", file=sys.stderr,
                   dynamic_ncols=True)
    raise_mode = on_error == "raise"
    try:
        if cluster:
            it = _iter_dask(jobs, order, cluster, raise_mode)
        else:
            n = default_jobs() if n_jobs is None else int(n_jobs)
            if n < 1:
                raise ConfigError(f"--jobs {n}: give 1 or more worker processes", key="jobs")
            n = min(n, len(jobs))
            it = _iter_serial(jobs, order, raise_mode) if n == 1 else \
                _iter_pool(jobs, order, n, raise_mode)
        try:
            for i, res in it:
                if res.detail:
                    log.error("%s", res.detail.rstrip())
                results[i] = res
                if on_result is not None:
                    on_result(i, res)
                if bar is not None:
                    bar.update(1)
                if raise_mode and not res.ok:
                    break
        finally:
            it.close()
    finally:
        if bar is not None:
            bar.close()
    if raise_mode:
        for res in results:
            if res is not None and not res.ok:
                if res.exc is not None:
                    raise res.exc
                raise CrampwatchError(res.error)
    return results


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _iter_serial(jobs, order, raise_mode):
    for i in order:
        yield i, run_job(jobs[i], catch_all=not raise_mode)


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1 and sys.version_info < (3, 12):
        # a single-threaded process forks safely, and its workers start with everything
        # it has imported (the forkserver would start a fresh interpreter and import the
        # detector again: ~0.7 s before the first night, 6 % of 8 nights on 2 cores)
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # the server imports the detector once; each worker is forked from it warm
        ctx.set_forkserver_preload(["crampwatch.tools._run", "crampwatch.tools._engine"])
        return ctx
    return multiprocessing.get_context("spawn")


def _init_worker(level: int) -> None:
    """A worker logs as the command does (``crampwatch: LEVEL: message`` on stderr),
    leaves Ctrl-C to the command (which stops the pool: no traceback per worker)
    and runs numpy's BLAS on one thread (one process per core already)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=level, format="crampwatch: %(levelname)s: %(message)s")
    logging.captureWarnings(True)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except Exception as exc:    # noqa: BLE001 - optional: only avoids oversubscription
        logging.getLogger(__name__).debug("threadpoolctl: %s", exc)


def _iter_pool(jobs, order, n, raise_mode):
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=n, mp_context=_mp_context(),
                               initializer=_init_worker,
                               initargs=(logging.getLogger().getEffectiveLevel(),))
    try:
        # a bounded window of submitted jobs: a study of 20,000 nights is not 20,000
        # pickled jobs in the queue, and a stop cancels little
        pending = {}
        queue = list(order)
        window = 4 * n
        while queue or pending:
            while queue and len(pending) < window:
                i = queue.pop(0)
                pending[pool.submit(run_job, jobs[i], not raise_mode)] = i
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: pending[f]):
                i = pending.pop(fut)
                try:
                    res = fut.result()
                except BrokenProcessPool:
                    res = JobResult(jobs[i].path, error=f"{jobs[i].path}: the worker process "
                                    "died (killed, or out of memory?)")
                    if raise_mode:
                        raise
                yield i, res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _iter_dask(jobs, order, address, raise_mode):
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ConfigError(f"--cluster {address}: Dask distributed is not installed: "
                          "pip install 'crampwatch[cluster]'", key="cluster") from exc
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--cluster {address}: cannot reach the Dask scheduler: "
                          f"{_one_line(str(exc)) or type(exc).__name__}", key="cluster") from exc
    try:
        futures = {}
        for i in order:
            fut = client.submit(run_job, jobs[i], not raise_mode, pure=False,
                                key=f"crampwatch-{i}-{os.urandom(6).hex()}")
            futures[fut] = i
        for fut in as_completed(list(futures)):
            i = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:
                if raise_mode:
                    raise
                res = JobResult(jobs[i].path, error=f"{jobs[i].path}: failed on the cluster: "
                                f"{type(exc).__name__}: {_one_line(str(exc))}")
            if res.version != __version__:
                res = JobResult(jobs[i].path, error=f"{jobs[i].path}: the Dask worker runs "
                                f"crampwatch {res.version}, this command {__version__}: "
                                "install the same version on every worker")
            fut.release()
            yield i, res
    finally:
        client.close()
