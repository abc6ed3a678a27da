"""The episode log: SQLite (standard library) in WAL mode.

One database holds every night: the recordings that made it, the gaps in
them, a per-minute summary of the signal (for the morning review's timeline
and trends without re-reading recordings), and one row per episode.  An
episode row is written when its onset is confirmed (status ``open``) and
updated at its end (``closed``); after a crash, :meth:`EpisodeLog.close_open`
marks what was left open as ``truncated``.  Times are stored as UTC ISO 8601
strings; people see them in local time.

A *night* is named by the local date of the evening it began: a recording
started before noon belongs to the previous day's night.

The log carries its schema version (``meta.schema_version``): a log written
by a newer crampwatch is refused with a clear message (never changed), an
older one is migrated in place, a SQLite database that is not an episode log
is refused, and a log another process holds locked says so.  The files (the
database and its ``-wal``/``-shm``) are owner-only, 0600.

Examples
--------
>>> import tempfile, os
>>> from datetime import datetime, timezone
>>> from crampwatch.tools.episode_log import EpisodeLog, night_date
>>> log = EpisodeLog(os.path.join(tempfile.mkdtemp(), "episodes.sqlite"))
>>> night = log.night_for(datetime(2026, 3, 5, 23, 10, tzinfo=timezone.utc))
>>> log.get_night(night)["night_date"] == night_date(datetime(2026, 3, 5, 23, 10, tzinfo=timezone.utc))
True
"""

from __future__ import annotations

import logging
import os
import sqlite3
from datetime import datetime, timedelta, timezone

from crampwatch import __version__
from crampwatch._files import ensure_private_dir, make_private, private_fd
from crampwatch.errors import FileLockedError, InputFileError

#: version 2: recordings.unstored_samples and recordings.recording_error (samples the
#: detector saw that could not be stored, and why)
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS nights (
    night_id     INTEGER PRIMARY KEY,
    night_date   TEXT NOT NULL UNIQUE,      -- local date of the evening, YYYY-MM-DD
    tz_offset_s  INTEGER NOT NULL,          -- local UTC offset when the night began
    created_utc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recordings (
    recording_id INTEGER PRIMARY KEY,
    night_id     INTEGER NOT NULL REFERENCES nights(night_id),
    path         TEXT NOT NULL,
    source       TEXT,
    channel      TEXT,
    emg_fs_hz    REAL,
    acc_fs_hz    REAL,
    started_utc  TEXT NOT NULL,             -- first sample
    ended_utc    TEXT,                      -- last sample seen so far
    samples      INTEGER NOT NULL DEFAULT 0,
    gap_samples  INTEGER NOT NULL DEFAULT 0,
    unstored_samples INTEGER NOT NULL DEFAULT 0,  -- EMG samples seen but not in the file
    recording_error  TEXT,                        -- why they could not be stored
    UNIQUE (path)
);
CREATE TABLE IF NOT EXISTS gaps (
    gap_id       INTEGER PRIMARY KEY,
    recording_id INTEGER NOT NULL REFERENCES recordings(recording_id),
    stream       TEXT NOT NULL,
    first_index  INTEGER,
    n_samples    INTEGER,
    start_utc    TEXT,
    duration_s   REAL,
    cause        TEXT
);
CREATE TABLE IF NOT EXISTS minutes (
    recording_id INTEGER NOT NULL REFERENCES recordings(recording_id),
    minute_utc   TEXT NOT NULL,             -- start of the minute
    rms_uv       REAL,                      -- median envelope (uV RMS)
    rms_p95_uv   REAL,
    floor_uv     REAL,
    motion_g     REAL,                      -- mean dynamic acceleration (NULL: no accelerometer)
    good_s       REAL,                      -- seconds of usable signal in the minute
    artifact_s   REAL,                      -- seconds flagged artifact (mains, lead-off, pops...)
    nodata_s     REAL,                      -- seconds with no samples (gaps)
    PRIMARY KEY (recording_id, minute_utc)
);
CREATE TABLE IF NOT EXISTS episodes (
    episode_id    INTEGER PRIMARY KEY,
    night_id      INTEGER NOT NULL REFERENCES nights(night_id),
    recording_id  INTEGER REFERENCES recordings(recording_id),
    onset_utc     TEXT NOT NULL,
    offset_utc    TEXT,
    onset_s       REAL NOT NULL,            -- seconds from the recording's first sample
    offset_s      REAL,
    duration_s    REAL,
    onset_sample  INTEGER,                  -- EMG sample index in the recording
    offset_sample INTEGER,
    peak_rms_uv   REAL,
    mean_rms_uv   REAL,
    confidence    REAL,
    channel       TEXT,
    status        TEXT NOT NULL CHECK (status IN ('open', 'closed', 'truncated')),
    verdict       TEXT CHECK (verdict IN ('confirmed', 'false')),
    verdict_note  TEXT,
    verdict_utc   TEXT,
    created_utc   TEXT NOT NULL,
    updated_utc   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS episodes_night ON episodes(night_id);
CREATE INDEX IF NOT EXISTS minutes_time ON minutes(minute_utc);
"""


# schema version -> SQL that brings a log of that version to the next one
_MIGRATIONS = {
    1: ("ALTER TABLE recordings ADD COLUMN unstored_samples INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE recordings ADD COLUMN recording_error TEXT;"),
}
_TABLES = {"meta", "nights", "recordings", "gaps", "minutes", "episodes"}


def is_locked_error(exc: sqlite3.Error) -> bool:
    """True if a sqlite3 error means another process holds the database locked."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def utc_iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def night_date(start_utc: datetime, tz: timezone | None = None) -> str:
    """The night's name: local date of the evening (before noon -> the day before)."""
    local = start_utc.astimezone(tz) if tz is not None else start_utc.astimezone()
    if local.hour < 12:
        local -= timedelta(days=1)
    return local.date().isoformat()


class EpisodeLog:
    """The SQLite episode log (see module docstring).  Thread-compatible: use
    one object per thread.

    Parameters
    ----------
    path : str
        The database file; created (0600, its directory 0700) if missing and
        ``create`` is True.
    create : bool
        False: the file must exist (readers: review, label, export).
    timeout_s : float
        How long to wait for another process's lock before saying the log
        is locked.

    Raises
    ------
    FileLockedError
        Another process holds the log locked for longer than ``timeout_s``.
    InputFileError
        Not a SQLite database, a database that is not an episode log, or a
        log of a newer schema than this crampwatch knows.
    """

    def __init__(self, path: str, *, create: bool = True, timeout_s: float = 30.0):
        self.path = str(path)
        if create:
            ensure_private_dir(os.path.dirname(os.path.abspath(self.path)))
            if not os.path.exists(self.path):
                self._create(timeout_s)
        elif not os.path.isfile(self.path):
            raise InputFileError(f"no episode log at {self.path}", path=self.path)
        self.db = sqlite3.connect(self.path, timeout=timeout_s)
        try:
            self._prepare()
        except sqlite3.Error as exc:
            self.db.close()
            if is_locked_error(exc):
                raise FileLockedError(
                    f"{self.path}: the episode log is locked by another process (waited "
                    f"{timeout_s:g} s); try again when it is done", path=self.path) from exc
            raise InputFileError(f"{self.path}: not a crampwatch episode log ({exc})",
                                 path=self.path) from exc
        except BaseException:
            self.db.close()
            raise
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                make_private(self.path + suffix)

    def _create(self, timeout_s: float) -> None:
        """A new log, built beside its path and linked into place whole: nobody ever
        opens a log without its tables.  Owner-only (0600) from the first byte."""
        tmp = f"{self.path}.{os.getpid()}.new"
        os.close(private_fd(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC))
        try:
            con = sqlite3.connect(tmp, timeout=timeout_s)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))
                con.commit()
            finally:
                con.close()
            try:
                os.link(tmp, self.path)           # never over a log another process made
            except FileExistsError:
                pass
            except OSError:                       # a file system without hard links
                if not os.path.exists(self.path):
                    os.replace(tmp, self.path)
        finally:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(tmp + suffix)
                except FileNotFoundError:
                    pass

    def _prepare(self) -> None:
        """Check the schema version; create, migrate or refuse."""
        db = self.db
        db.row_factory = sqlite3.Row
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = None
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None:
                try:
                    version = int(row[0])
                except (TypeError, ValueError):
                    raise InputFileError(f"{self.path}: the episode log's schema version "
                                         f"{row[0]!r} is not a number", path=self.path) from None
        if tables and (version is None or not {"episodes", "recordings"} <= tables):
            raise InputFileError(
                f"{self.path}: a SQLite database but not a crampwatch episode log (tables: "
                f"{', '.join(sorted(tables))[:200]})", path=self.path)
        if version is not None and version > SCHEMA_VERSION:
            raise InputFileError(
                f"{self.path}: this episode log has schema version {version}, newer than this "
                f"crampwatch ({__version__}) understands (version "
                f"{SCHEMA_VERSION}); upgrade crampwatch to read it (the log was left "
                "unchanged)", path=self.path)
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        if version is None:                       # a new log
            db.executescript(_SCHEMA)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
            db.commit()
        elif version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        """Bring an older log to :data:`SCHEMA_VERSION`, one step at a time, in one
        transaction (all or nothing)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for v in range(version, SCHEMA_VERSION):
                for stmt in filter(None, (x.strip() for x in _MIGRATIONS[v].split(";"))):
                    db.execute(stmt)
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                       (str(SCHEMA_VERSION),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        logging.getLogger(__name__).info("%s: episode log migrated from schema version %d to %d",
                                         self.path, version, SCHEMA_VERSION)

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------- writing
    def night_for(self, start_utc: datetime, tz: timezone | None = None) -> int:
        """Get or create the night a recording starting at ``start_utc`` belongs to."""
        name = night_date(start_utc, tz)
        row = self.db.execute("SELECT night_id FROM nights WHERE night_date=?", (name,)).fetchone()
        if row:
            return int(row[0])
        local = start_utc.astimezone(tz) if tz is not None else start_utc.astimezone()
        off = int(local.utcoffset().total_seconds())
        cur = self.db.execute("INSERT INTO nights (night_date, tz_offset_s, created_utc) "
                              "VALUES (?, ?, ?)", (name, off, utc_iso(_now())))
        self.db.commit()
        return int(cur.lastrowid)

    def add_recording(self, night_id: int, path: str, started_utc: datetime, *,
                      source: str | None = None, channel: str | None = None,
                      emg_fs_hz: float | None = None, acc_fs_hz: float | None = None) -> int:
        """Get or create the row of a recording file (a resumed capture reuses it)."""
        path = os.path.abspath(path)
        row = self.db.execute("SELECT recording_id FROM recordings WHERE path=?",
                              (path,)).fetchone()
        if row:
            return int(row[0])
        cur = self.db.execute(
            "INSERT INTO recordings (night_id, path, source, channel, emg_fs_hz, acc_fs_hz, "
            "started_utc) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (night_id, path, source, channel, emg_fs_hz, acc_fs_hz, utc_iso(started_utc)))
        self.db.commit()
        return int(cur.lastrowid)

    def update_recording(self, recording_id: int, *, ended_utc: datetime | None = None,
                         samples: int | None = None, gap_samples: int | None = None,
                         unstored_samples: int | None = None,
                         recording_error: str | None = None) -> None:
        sets, args = [], []
        for col, val in (("ended_utc", utc_iso(ended_utc) if ended_utc else None),
                         ("samples", samples), ("gap_samples", gap_samples),
                         ("unstored_samples", unstored_samples),
                         ("recording_error", recording_error)):
            if val is not None:
                sets.append(f"{col}=?")
                args.append(val)
        if sets:
            self.db.execute(f"UPDATE recordings SET {', '.join(sets)} WHERE recording_id=?",
                            (*args, recording_id))
            self.db.commit()

    def add_gap(self, recording_id: int, stream: str, first_index: int | None,
                n_samples: int | None, start_utc: datetime | None, duration_s: float | None,
                cause: str | None = None) -> None:
        self.db.execute("INSERT INTO gaps (recording_id, stream, first_index, n_samples, "
                        "start_utc, duration_s, cause) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (recording_id, stream, first_index, n_samples,
                         utc_iso(start_utc) if start_utc else None, duration_s, cause))
        self.db.commit()

    def add_minutes(self, recording_id: int, rows: list[dict]) -> None:
        """Upsert per-minute summaries (keys as the ``minutes`` table's columns)."""
        self.db.executemany(
            "INSERT OR REPLACE INTO minutes (recording_id, minute_utc, rms_uv, rms_p95_uv, "
            "floor_uv, motion_g, good_s, artifact_s, nodata_s) VALUES "
            "(:recording_id, :minute_utc, :rms_uv, :rms_p95_uv, :floor_uv, :motion_g, :good_s, "
            ":artifact_s, :nodata_s)",
            [dict(r, recording_id=recording_id) for r in rows])
        self.db.commit()

    def open_episode(self, night_id: int, recording_id: int | None, start_utc: datetime,
                     ep, emg_fs_hz: float | None = None, channel: str | None = None) -> int:
        """Insert a confirmed onset (``ep`` is a detector Episode); returns its row id."""
        now = utc_iso(_now())
        cur = self.db.execute(
            "INSERT INTO episodes (night_id, recording_id, onset_utc, onset_s, onset_sample, "
            "peak_rms_uv, mean_rms_uv, confidence, channel, status, created_utc, updated_utc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)",
            (night_id, recording_id, utc_iso(start_utc + timedelta(seconds=ep.onset_s)),
             ep.onset_s, _sample(ep.onset_s, emg_fs_hz), ep.peak_rms_uv, ep.mean_rms_uv,
             ep.confidence, channel, now, now))
        self.db.commit()
        return int(cur.lastrowid)

    def close_episode(self, episode_id: int, start_utc: datetime, ep,
                      emg_fs_hz: float | None = None, status: str = "closed") -> None:
        """Write an episode's end (``ep`` is the detector Episode from EpisodeEnded)."""
        self.db.execute(
            "UPDATE episodes SET offset_utc=?, offset_s=?, duration_s=?, offset_sample=?, "
            "onset_utc=?, onset_s=?, onset_sample=?, peak_rms_uv=?, mean_rms_uv=?, "
            "confidence=?, status=?, updated_utc=? WHERE episode_id=?",
            (utc_iso(start_utc + timedelta(seconds=ep.offset_s)), ep.offset_s,
             ep.offset_s - ep.onset_s, _sample(ep.offset_s, emg_fs_hz),
             utc_iso(start_utc + timedelta(seconds=ep.onset_s)), ep.onset_s,
             _sample(ep.onset_s, emg_fs_hz), ep.peak_rms_uv, ep.mean_rms_uv, ep.confidence,
             status, utc_iso(_now()), episode_id))
        self.db.commit()

    def close_open(self, before_utc: datetime | None = None) -> int:
        """Mark episodes left ``open`` (by a crash) as ``truncated``, their offset
        set to the last sample their recording saw.  Returns how many."""
        rows = self.db.execute(
            "SELECT e.episode_id, e.onset_s, e.onset_utc, r.ended_utc, r.started_utc "
            "FROM episodes e LEFT JOIN recordings r USING (recording_id) "
            "WHERE e.status='open'").fetchall()
        for row in rows:
            end = row["ended_utc"] or row["onset_utc"]
            end_dt = parse_utc(end)
            if before_utc is not None:
                end_dt = min(end_dt, before_utc)
            onset_dt = parse_utc(row["onset_utc"])
            end_dt = max(end_dt, onset_dt)
            dur = (end_dt - onset_dt).total_seconds()
            self.db.execute(
                "UPDATE episodes SET status='truncated', offset_utc=?, offset_s=?, "
                "duration_s=?, updated_utc=? WHERE episode_id=?",
                (utc_iso(end_dt), row["onset_s"] + dur, dur, utc_iso(_now()), row["episode_id"]))
        self.db.commit()
        return len(rows)

    def set_verdict(self, episode_id: int, verdict: str, note: str | None = None) -> bool:
        """The user's verdict on an episode: ``confirmed`` or ``false``."""
        cur = self.db.execute("UPDATE episodes SET verdict=?, verdict_note=?, verdict_utc=? "
                              "WHERE episode_id=?", (verdict, note, utc_iso(_now()), episode_id))
        self.db.commit()
        return cur.rowcount == 1

    # ------------------------------------------------------------- reading
    def get_night(self, night_id: int) -> dict | None:
        row = self.db.execute("SELECT * FROM nights WHERE night_id=?", (night_id,)).fetchone()
        return dict(row) if row else None

    def nights(self) -> list[dict]:
        return [dict(r) for r in self.db.execute("SELECT * FROM nights ORDER BY night_date")]

    def night_by_date(self, date: str) -> dict | None:
        row = self.db.execute("SELECT * FROM nights WHERE night_date=?", (date,)).fetchone()
        return dict(row) if row else None

    def recordings(self, night_id: int) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM recordings WHERE night_id=? ORDER BY started_utc", (night_id,))]

    def episodes(self, night_id: int | None = None) -> list[dict]:
        if night_id is None:
            cur = self.db.execute("SELECT * FROM episodes ORDER BY onset_utc")
        else:
            cur = self.db.execute("SELECT * FROM episodes WHERE night_id=? ORDER BY onset_utc",
                                  (night_id,))
        return [dict(r) for r in cur]

    def episode(self, episode_id: int) -> dict | None:
        row = self.db.execute("SELECT * FROM episodes WHERE episode_id=?",
                              (episode_id,)).fetchone()
        return dict(row) if row else None

    def gaps(self, night_id: int) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT g.* FROM gaps g JOIN recordings r USING (recording_id) WHERE r.night_id=? "
            "ORDER BY g.start_utc", (night_id,))]

    def minutes(self, night_id: int) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT m.* FROM minutes m JOIN recordings r USING (recording_id) "
            "WHERE r.night_id=? ORDER BY m.minute_utc", (night_id,))]


def _sample(t_s: float | None, fs_hz: float | None) -> int | None:
    if t_s is None or not fs_hz:
        return None
    return int(round(t_s * fs_hz))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def minute_rows(trace: dict, start_utc: datetime, step_s: float) -> list[dict]:
    """Per-minute summaries from a pipeline trace (``Pipeline.trace()``)."""
    import numpy as np

    from crampwatch.detector.pipeline import LABELS
    t = trace["t_end_s"]
    if len(t) == 0:
        return []
    minute = np.floor((t - step_s) / 60.0).astype(int)
    out = []
    lab = trace["label"].astype(int)
    art, nod = LABELS.index("artifact"), LABELS.index("nodata")
    for m in np.unique(minute):
        sel = minute == m
        rms = trace["rms_uv"][sel]
        mot = trace["motion_g"][sel]
        n_art = int(np.sum(lab[sel] == art))
        n_nod = int(np.sum(lab[sel] == nod))
        out.append({
            "minute_utc": utc_iso(start_utc + timedelta(seconds=60.0 * int(m))),
            "rms_uv": float(np.median(rms)),
            "rms_p95_uv": float(np.percentile(rms, 95)),
            "floor_uv": float(np.median(trace["floor_uv"][sel])),
            "motion_g": float(np.nanmean(mot)) if np.isfinite(mot).any() else None,
            "good_s": float((int(sel.sum()) - n_art - n_nod) * step_s),
            "artifact_s": float(n_art * step_s),
            "nodata_s": float(n_nod * step_s),
        })
    return out
