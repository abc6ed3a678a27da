"""``crampwatch batch``: a study's worth of recordings on every core, or on a
Dask cluster, with one command.

``crampwatch batch PATH... --out DIR`` replays every recording found in the
PATHs (files, or folders searched for ``*.edf``, ``*.bdf``, ``*.rec`` and
``*.cwrec``) through the same pipeline as ``replay`` and writes, in DIR:

- ``episodes.csv``: one row per episode, the fields of ``replay --episodes``
  (``file``, ``channel``, ``site`` first);
- ``nights.csv``: one row per recording: ``file``, ``channels``, ``sites``,
  ``start`` (UTC), ``span_s``, ``good_signal_s``, ``gaps``, ``gap_s``,
  ``cramps`` (episodes not ``uncertain``), ``uncertain``, ``error``;
- ``episodes/NAME.jsonl``: the episodes of each recording (``replay
  --episodes``); NAME is the file's stem, with a short hash of its path when two
  recordings share a stem;
- with ``--labels DIR``, ``evaluation.json``: the evaluation of the whole set
  (pooled as ``evaluate`` pools it), also printed.

Rows are sorted by path, so the outputs are the same, byte for byte, whatever
the number of workers or the engine.  Every file is written by this process
only, atomically, 0600.

Good-signal time is the time the detector could judge: the decision steps of
the pipeline's trace not labelled ``artifact`` or ``nodata``, never more than
the span minus the EMG gaps.  With several watched channels (``--emg all``)
it is the least of the channels'.

A recording that fails (unreadable, no EMG channel, flat, ...) gets its one-line
error in ``nights.csv``; the others go on, and the exit status is 1 (0: all
done; 2: bad arguments, nothing run).  ``DIR/.batch-state`` records each
finished recording (path, size, mtime, settings hash, result), appended and
fsynced as each ends: run the same command again after a crash or a kill and
the recordings already done with the same file and the same settings are not
replayed again; failed ones are tried again.  See docs/batch.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import sys
import time

from crampwatch.tools._engine import Job, JobResult, run_jobs, settings_hash
from crampwatch.tools._run import load_config, parse_acc_labels, parse_emg

from crampwatch._files import (
    atomic_private_write,
    ensure_private_dir,
    private_open,
    same_file,
)
from crampwatch._text import sanitize_text
from crampwatch.errors import ConfigError, FileLockedError, InputFileError

log = logging.getLogger(__name__)

HELP = "replay many recordings on every core or on a Dask cluster (episodes.csv, nights.csv)"
DESCRIPTION = """Replay every recording found in PATH... (files, or folders searched for .edf,
.bdf, .rec and .cwrec) on every core (--jobs) or on a Dask distributed cluster (--cluster), and
write DIR/episodes.csv, DIR/nights.csv and DIR/episodes/NAME.jsonl; with --labels, the
evaluation of the whole set. A failed recording is listed with its error and the others go on
(exit status 1). Run the same command again after an interruption: the recordings already done
with the same file and settings are skipped. See docs/batch.md."""

RECORDING_SUFFIXES = (".edf", ".bdf", ".rec", ".cwrec")
STATE_FILE = ".batch-state"
LOCK_FILE = ".batch-lock"
STATE_VERSION = 1
NIGHT_FIELDS = ("file", "channels", "sites", "start", "span_s", "good_signal_s", "gaps",
                "gap_s", "cramps", "uncertain", "error")
NIGHT_TEXT_FIELDS = ("file", "channels", "sites", "start", "error")


def episode_fields() -> tuple[str, ...]:
    """``file``, ``channel``, ``site``, then the other fields of ``replay --episodes``."""
    from crampwatch.tools.replay import FIELDS
    head = ("file", "channel", "site")
    return head + tuple(f for f in FIELDS if f not in head)


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="recordings, or folders searched (recursively) for .edf/.bdf/.rec/.cwrec")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created 0700)")
    eng = p.add_mutually_exclusive_group()
    eng.add_argument("--jobs", type=int, default=None, metavar="N",
                     help="worker processes (default: every core; 1: in this process)")
    eng.add_argument("--cluster", metavar="ADDRESS",
                     help="run on this Dask distributed scheduler (tcp://host:8786); "
                          "needs crampwatch[cluster]")
    p.add_argument("--emg", metavar="LABEL[,LABEL...]|all",
                   help="EMG channel(s) to watch (default: the calf/leg EMG channel); 'all': "
                        "every EMG channel")
    p.add_argument("--acc", metavar="X,Y,Z", help="accelerometer channel labels")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override a detector parameter (see 'crampwatch config show')")
    p.add_argument("--config", metavar="FILE", help="TOML config file ([detector] table)")
    p.add_argument("--labels", metavar="DIR",
                   help="folder of labels files (STEM.labels.csv or STEM.labels.jsonl, found "
                        "by each recording's stem): evaluate the whole set")
    p.add_argument("--min-iou", type=float, default=0.3,
                   help="overlap for a labelled cramp to count as found (with --labels)")


# ------------------------------------------------------------------------ inputs
def find_recordings(paths, skip_dirs=()) -> list[str]:
    """The recordings named by ``paths``, sorted by path, each file once.

    A file is taken whatever its name; a folder is searched recursively for
    :data:`RECORDING_SUFFIXES` (case-insensitive; hidden files and folders and
    ``skip_dirs`` are left out).

    Raises
    ------
    InputFileError
        A path does not exist.
    """
    found = []
    for given in paths:
        if os.path.isdir(given):
            for root, dirs, files in os.walk(given):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                                 and not any(same_file(os.path.join(root, d), s)
                                             for s in skip_dirs))
                for name in sorted(files):
                    if not name.startswith(".") and name.lower().endswith(RECORDING_SUFFIXES):
                        found.append(os.path.join(root, name))
        elif os.path.lexists(given):
            found.append(given)
        else:
            raise InputFileError(f"{given}: no such file or folder", path=given)
    seen, out = set(), []
    for path in sorted(found):
        try:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino)
        except OSError:
            key = ("path", os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def unique_names(paths: list[str]) -> list[str]:
    """A file name for each recording's episodes: its stem, made safe; with a
    short hash of its absolute path when another recording has the same stem
    (``night.edf`` in two folders)."""
    stems = []
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        stems.append(sanitize_text(stem, 120, filename=True).lstrip(".") or "recording")
    counts: dict[str, int] = {}
    for s in stems:
        counts[s.lower()] = counts.get(s.lower(), 0) + 1
    out = []
    for p, s in zip(paths, stems):
        if counts[s.lower()] > 1:
            s = f"{s}-{hashlib.sha256(os.path.abspath(p).encode()).hexdigest()[:10]}"
        out.append(s)
    return out


def find_labels(labels_dir: str, recordings: list[str]) -> dict[int, list]:
    """Index of recording -> its labels (``Label`` objects, with their site), read now
    (a bad labels file stops the command before any replay).

    Raises
    ------
    InputFileError
        ``labels_dir`` is not a folder, or a labels file is unreadable.
    """
    from crampwatch.firmware_bridge.labels import read_labels
    if not os.path.isdir(labels_dir):
        raise InputFileError(f"--labels {labels_dir}: not a folder", path=labels_dir)
    out = {}
    for i, path in enumerate(recordings):
        stem = os.path.splitext(os.path.basename(path))[0]
        for suffix in (".labels.csv", ".labels.jsonl"):
            cand = os.path.join(labels_dir, stem + suffix)
            if os.path.isfile(cand):
                out[i] = read_labels(cand)
                break
    return out


# ------------------------------------------------------------------------ the manifest
class BatchState:
    """``DIR/.batch-state``: one JSON line per finished recording, appended and
    fsynced as each ends, so a batch killed at any moment loses at most the
    recordings under way.  The latest line of a path wins; a torn last line (a
    kill in the middle of a write) is dropped when the file is opened.  One
    batch at a time per folder (a lock file)."""

    def __init__(self, out_dir: str):
        self.path = os.path.join(out_dir, STATE_FILE)
        self.lock_path = os.path.join(out_dir, LOCK_FILE)
        self.entries: dict[str, dict] = {}
        self._fh = None
        self._lock = None

    def __enter__(self):
        import fcntl
        self._lock = private_open(self.lock_path, "a")
        try:
            # a POSIX record lock: held by this process only, never by the worker
            # processes it forks, so it goes with this process however it ends
            fcntl.lockf(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            raise FileLockedError(f"{os.path.dirname(self.path)}: another 'crampwatch batch' "
                                  "is writing into this folder", path=self.path) from exc
        self._remove_torn_writes()
        self._load()
        self._fh = private_open(self.path, "a")
        return self

    def _remove_torn_writes(self) -> None:
        """Temporary files of outputs a killed batch was writing (never renamed
        over their output): ours to remove, under the lock."""
        import glob
        out_dir = os.path.dirname(self.path)
        patterns = [os.path.join(out_dir, f".{n}.*.part") for n in
                    ("episodes.csv", "nights.csv", "evaluation.json", STATE_FILE)]
        patterns.append(os.path.join(out_dir, "episodes", ".*.jsonl.*.part"))
        for pattern in patterns:
            for tmp in glob.glob(pattern):
                try:
                    os.unlink(tmp)
                except OSError as exc:
                    log.debug("cannot remove %s: %s", tmp, exc)

    def __exit__(self, *exc):
        if self._fh is not None:
            self._fh.close()
        if self._lock is not None:
            self._lock.close()          # releases the lock

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise InputFileError(f"{self.path}: cannot read: {exc.strerror or exc}",
                                 path=self.path) from exc
        lines = data.split(b"\n")
        dropped = 0
        for line in lines:
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                if e.get("v") != STATE_VERSION or not isinstance(e.get("result"), dict):
                    raise ValueError("not a state line")
                self.entries[e["abspath"]] = e
            except (ValueError, KeyError, TypeError, AttributeError):
                dropped += 1
        n_lines = sum(1 for ln in lines if ln.strip())
        if dropped or n_lines != len(self.entries) or not data.endswith(b"\n"):
            if dropped:
                log.warning("%s: %d damaged line(s) dropped (a batch killed while writing?)",
                            self.path, dropped)
            with atomic_private_write(self.path, "w", encoding="utf-8") as fh:
                for e in self.entries.values():
                    fh.write(json.dumps(e) + "\n")

    def done(self, abspath: str, stat, settings: str) -> dict | None:
        """The stored result of ``abspath`` if it finished without error with this
        very file (size, mtime) and these settings, else None."""
        e = self.entries.get(abspath)
        if (e is None or stat is None or e.get("size") != stat.st_size
                or e.get("mtime_ns") != stat.st_mtime_ns or e.get("settings") != settings
                or e["result"].get("error") is not None):
            return None
        return e["result"]

    def add(self, abspath: str, stat, settings: str, name: str, result: JobResult) -> None:
        e = {"v": STATE_VERSION, "abspath": abspath, "size": getattr(stat, "st_size", None),
             "mtime_ns": getattr(stat, "st_mtime_ns", None), "settings": settings,
             "episodes_file": f"episodes/{name}.jsonl" if result.ok else None,
             "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "result": result.to_json()}
        self.entries[abspath] = e
        self._fh.write(json.dumps(e) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())


# ------------------------------------------------------------------------ outputs
def night_row(path: str, res: JobResult) -> dict:
    row = dict.fromkeys(NIGHT_FIELDS, "")
    row["file"] = path
    if not res.ok:
        row["error"] = sanitize_text(res.error, 1000)
        return row
    chans = res.channels
    recs = [r for c in chans for r in c.records]
    first = chans[0]
    n_uncertain = sum(1 for r in recs if r.get("status") == "uncertain")
    row.update(channels=";".join(c.channel for c in chans),
               sites=";".join(c.site for c in chans), start=first.start,
               span_s=round(max(c.duration_s for c in chans), 3),
               good_signal_s=round(min(c.good_signal_s for c in chans), 3),
               gaps=first.gaps, gap_s=round(first.gap_s, 3),
               cramps=len(recs) - n_uncertain, uncertain=n_uncertain)
    return row


def write_outputs(out_dir: str, paths: list[str], names: list[str],
                  results: list[JobResult], rewrite: set[int]) -> None:
    """episodes.csv, nights.csv, and episodes/NAME.jsonl of the recordings in
    ``rewrite`` (the others were written as they finished)."""
    from crampwatch.tools.export import csv_text_cell
    for i in sorted(rewrite):
        if results[i].ok:
            write_episodes_jsonl(out_dir, names[i], results[i])
    fields = episode_fields()
    with atomic_private_write(os.path.join(out_dir, "episodes.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for res in results:
            for c in res.channels:
                for r in c.records:
                    w.writerow({k: csv_text_cell(r.get(k)) if isinstance(r.get(k), str)
                                else r.get(k) for k in fields})
    with atomic_private_write(os.path.join(out_dir, "nights.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=NIGHT_FIELDS)
        w.writeheader()
        for path, res in zip(paths, results):
            row = night_row(path, res)
            w.writerow({k: csv_text_cell(v) if k in NIGHT_TEXT_FIELDS else v
                        for k, v in row.items()})


def write_episodes_jsonl(out_dir: str, name: str, res: JobResult) -> None:
    with atomic_private_write(os.path.join(out_dir, "episodes", name + ".jsonl"), "w") as fh:
        for c in res.channels:
            for r in c.records:
                fh.write(json.dumps(r) + "\n")


def evaluate_set(paths, results, labels: dict[int, list], min_iou: float):
    """Pooled and per-(recording, channel) metrics of the recordings that have
    labels and did not fail; each channel is scored against the labels of its
    site (:func:`crampwatch.tools._sites_eval.labels_for_site`: labels without a
    site concern every channel), as ``evaluate`` scores it, and ``uncertain``
    episodes are kept but not counted (as ``evaluate`` does)."""
    from crampwatch.tools._sites_eval import labels_for_site
    from crampwatch.tools.evaluate import score_set
    units = []
    for i in sorted(labels):
        res = results[i]
        if not res.ok:
            continue
        for c in res.channels:
            counted = [(a, b) for a, b, status in c.spans if status != "uncertain"]
            units.append({"file": paths[i], "channel": c.channel, "episodes": counted,
                          "labels": labels_for_site(labels[i], c.site),
                          "duration_s": c.duration_s,
                          "extra": {"n_uncertain": len(c.spans) - len(counted)}})
    pooled, per_file = score_set(units, min_iou)
    return pooled, per_file


# ------------------------------------------------------------------------ the command
def run(args) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: give 1 or more worker processes", key="jobs")
    if not 0.0 < args.min_iou <= 1.0:
        raise ConfigError(f"--min-iou {args.min_iou}: give a value in (0, 1]", key="min_iou")
    out_dir = args.out
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"--out {out_dir}: exists and is not a folder", key="out")
    recordings = find_recordings(args.paths, skip_dirs=[out_dir] if os.path.isdir(out_dir)
                                 else [])
    if not recordings:
        raise InputFileError("no recordings (.edf, .bdf, .rec, .cwrec) found in "
                             + ", ".join(args.paths))
    cfg = load_config(args.config, args.overrides)
    emg = parse_emg(args.emg)
    acc = parse_acc_labels(args.acc)
    labels = find_labels(args.labels, recordings) if args.labels else None
    if labels is not None and not labels:
        raise InputFileError(f"--labels {args.labels}: no labels file for any of the "
                             f"{len(recordings)} recording(s) (looked for STEM.labels.csv)",
                             path=args.labels)
    try:
        ensure_private_dir(out_dir)
    except OSError as exc:
        raise InputFileError(f"--out {out_dir}: cannot create: {exc.strerror or exc}",
                             path=out_dir) from exc
    settings = settings_hash(cfg, emg, acc)
    names = unique_names(recordings)
    abspaths = [os.path.abspath(p) for p in recordings]
    t0 = time.perf_counter()
    with BatchState(out_dir) as state:
        results: list[JobResult | None] = [None] * len(recordings)
        stats, todo = [], []
        for i, path in enumerate(recordings):
            try:
                st = os.stat(path)
            except OSError:
                st = None
            stats.append(st)
            stored = state.done(abspaths[i], st, settings)
            if stored is not None:
                res = JobResult.from_json(stored)
                _relabel(res, path)
                results[i] = res
            else:
                todo.append(i)
        skipped = set(range(len(recordings))) - set(todo)
        if skipped:
            log.info("%d recording(s) already done with these settings: skipped", len(skipped))

        def finished(k: int, res: JobResult) -> None:
            i = todo[k]
            if res.ok:
                write_episodes_jsonl(out_dir, names[i], res)
            state.add(abspaths[i], stats[i], settings, names[i], res)
            results[i] = res

        jobs = [Job(recordings[i], cfg, emg=emg, acc=acc) for i in todo]
        run_jobs(jobs, n_jobs=args.jobs, cluster=args.cluster, on_result=finished,
                 progress=None)
        write_outputs(out_dir, recordings, names, results, rewrite=skipped)
    wall_s = time.perf_counter() - t0
    failed = [i for i, r in enumerate(results) if not r.ok]
    hours = sum(max((c.duration_s for c in r.channels), default=0.0) for r in results) / 3600
    engine = (f"on {args.cluster}" if args.cluster else
              f"with {args.jobs} worker(s)" if args.jobs else "on every core")
    print(f"{len(recordings)} recording(s), {hours:.1f} h: {len(todo) - len(failed)} replayed "
          f"{engine} in {wall_s:.1f} s, {len(skipped)} already done, {len(failed)} failed; "
          f"outputs in {sanitize_text(out_dir, 300)}")
    for i in failed:
        print(f"crampwatch: {sanitize_text(results[i].error, 1000)}", file=sys.stderr)
    if labels is not None:
        pooled, per_file = evaluate_set(recordings, results, labels, args.min_iou)
        left_out = [recordings[i] for i in range(len(recordings))
                    if i not in labels or not results[i].ok]
        with atomic_private_write(os.path.join(out_dir, "evaluation.json"), "w") as fh:
            json.dump({"min_iou": args.min_iou, "pooled": pooled, "files": per_file,
                       "left_out": left_out}, fh, indent=2)
        print_evaluation(pooled, len(per_file), left_out)
    return 1 if failed else 0


def _relabel(res: JobResult, path: str) -> None:
    """A stored result under the path this command names the recording by."""
    res.path = path
    for c in res.channels:
        for r in c.records:
            if "file" in r:
                r["file"] = path


def print_evaluation(p: dict, n_units: int, left_out: list[str], out=None) -> None:
    out = out or sys.stdout
    print(f"\nevaluation of {n_units} recording channel(s), {p['hours']:.2f} h"
          + (f" ({len(left_out)} recording(s) without labels or failed, left out)"
             if left_out else "") + ":", file=out)
    rows = [
        ("cramps labelled / reported", f"{p['n_labelled']} / {p['n_reported']}"),
        ("precision / recall / F1", f"{p['precision']:.3f} / {p['recall']:.3f} / {p['f1']:.3f}"),
        ("onset error median / p95 (s)",
         f"{p['onset_error_median_s']:.2f} / {p['onset_error_p95_s']:.2f}"),
        ("false positives per hour", f"{p['false_positives_per_hour']:.3f}"),
    ]
    for k, v in rows:
        print(f"  {k:<33} {v}", file=out)

