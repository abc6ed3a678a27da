"""The episode log: SQLite (standard library) in WAL mode.

One database holds every night: the recordings that made it, the gaps in
them, a per-minute summary of the signal per watched body site (for the
morning review's timeline and trends without re-reading recordings), and one
row per episode with its channel and site (``left_calf``...,
:mod:`crampwatch.sites`).  Every SQL statement of crampwatch is here: the
capture daemon, replay, review, the report, label and export call methods.  An
episode row is written when its onset is confirmed (status ``open``) and
updated at its end (``closed``, or ``uncertain`` when the detector's
confidence was below ``min_confidence``: kept, never counted as a cramp);
after a crash, :meth:`EpisodeLog.close_open`
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
from crampwatch.sites import normalize_site, site_for

#: version 2: recordings.unstored_samples and recordings.recording_error (samples the
#: detector saw that could not be stored, and why)
#: version 3: episodes.site and status 'uncertain'; minutes per site, keyed by
#: (recording_id, site, minute_utc)
SCHEMA_VERSION = 3

#: episode statuses: ``open`` (onset confirmed, end not yet), ``closed``, ``truncated``
#: (the capture stopped inside it), ``uncertain`` (the detector's confidence was below
#: ``min_confidence``: kept, shown apart, never counted as a cramp)
STATUSES = ("open", "closed", "truncated", "uncertain")
VERDICTS = ("confirmed", "false")

_MINUTES_DDL = '''CREATE TABLE IF NOT EXISTS {name} (
    recording_id INTEGER NOT NULL REFERENCES recordings(recording_id),
    site         TEXT NOT NULL,             -- body site of the channel (crampwatch.sites)
    minute_utc   TEXT NOT NULL,             -- start of the minute
    rms_uv       REAL,                      -- median envelope (uV RMS)
    rms_p95_uv   REAL,
    floor_uv     REAL,
    motion_g     REAL,                      -- mean dynamic acceleration (NULL: no accelerometer)
    good_s       REAL,                      -- seconds of usable signal in the minute
    artifact_s   REAL,                      -- seconds flagged artifact (mains, lead-off, pops...)
    nodata_s     REAL,                      -- seconds with no samples (gaps)
    PRIMARY KEY (recording_id, site, minute_utc)
);'''
_EPISODES_DDL = '''CREATE TABLE IF NOT EXISTS {name} (
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
    channel       TEXT,                     -- the EMG channel's label
    site          TEXT NOT NULL,            -- its body site (crampwatch.sites)
    status        TEXT NOT NULL CHECK (status IN ('open', 'closed', 'truncated', 'uncertain')),
    verdict       TEXT CHECK (verdict IN ('confirmed', 'false')),
    verdict_note  TEXT,
    verdict_utc   TEXT,
    created_utc   TEXT NOT NULL,
    updated_utc   TEXT NOT NULL
);'''
_INDEXES = '''
CREATE INDEX IF NOT EXISTS episodes_night ON episodes(night_id);
CREATE INDEX IF NOT EXISTS episodes_recording ON episodes(recording_id, onset_sample);
CREATE INDEX IF NOT EXISTS minutes_time ON minutes(minute_utc);
'''
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
""" + _MINUTES_DDL.format(name="minutes") + _EPISODES_DDL.format(name="episodes") + _INDEXES


# columns the v2 -> v3 rebuild copies as they are
_V2_EPISODE_COLUMNS = ("episode_id, night_id, recording_id, onset_utc, offset_utc, onset_s, "
                       "offset_s, duration_s, onset_sample, offset_sample, peak_rms_uv, "
                       "mean_rms_uv, confidence, channel, status, verdict, verdict_note, "
                       "verdict_utc, created_utc, updated_utc")
_V2_MINUTE_COLUMNS = ("recording_id, minute_utc, rms_uv, rms_p95_uv, floor_uv, motion_g, good_s, "
                      "artifact_s, nodata_s")


def _migrate_v2(db: sqlite3.Connection) -> None:
    """v2 -> v3: ``episodes`` gains ``site`` and the status ``uncertain`` (SQLite cannot
    alter a CHECK: the table is rebuilt), ``minutes`` gains ``site`` in its key.  The
    site of an old row is the one its channel label names (:func:`crampwatch.sites.site_for`),
    the recording's channel for minutes.  Runs inside the caller's transaction."""
    db.create_function("cw_site", 1, lambda label: site_for(label or ""), deterministic=True)
    db.execute(_EPISODES_DDL.format(name="episodes_v3"))
    db.execute(f"INSERT INTO episodes_v3 ({_V2_EPISODE_COLUMNS}, site) SELECT "
               f"{_V2_EPISODE_COLUMNS}, cw_site(coalesce(e.channel, (SELECT r.channel FROM "
               f"recordings r WHERE r.recording_id = e.recording_id))) FROM episodes e")
    db.execute("DROP TABLE episodes")
    db.execute("ALTER TABLE episodes_v3 RENAME TO episodes")
    db.execute(_MINUTES_DDL.format(name="minutes_v3"))
    db.execute(f"INSERT INTO minutes_v3 ({_V2_MINUTE_COLUMNS}, site) SELECT "
               f"{_V2_MINUTE_COLUMNS}, cw_site((SELECT r.channel FROM recordings r WHERE "
               f"r.recording_id = m.recording_id)) FROM minutes m")
    db.execute("DROP TABLE minutes")
    db.execute("ALTER TABLE minutes_v3 RENAME TO minutes")
    for stmt in filter(None, (x.strip() for x in _INDEXES.split(";"))):
        db.execute(stmt)


# schema version -> what brings a log of that version to the next one (SQL, or a function
# of the connection for what SQL alone cannot do)
_MIGRATIONS = {
    1: ("ALTER TABLE recordings ADD COLUMN unstored_samples INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE recordings ADD COLUMN recording_error TEXT;"),
    2: _migrate_v2,
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
                step = _MIGRATIONS[v]
                if callable(step):
                    step(db)
                    continue
                for stmt in filter(None, (x.strip() for x in step.split(";"))):
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

    # ------------------------------------------------------------- connection
    def set_busy_timeout(self, timeout_s: float) -> None:
        """Wait at most ``timeout_s`` for another process's lock before a call raises
        ``sqlite3.OperationalError`` (the capture keeps this short: it never stalls)."""
        self.db.execute(f"PRAGMA busy_timeout={max(0, int(timeout_s * 1000))}")

    def rollback(self) -> None:
        """Undo a half-done transaction (after a failed call: a full disk, a lock)."""
        self.db.rollback()

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
        """Get or create the row of a recording file (a resumed capture reuses it).
        ``channel``: the EMG channel label(s) watched, comma-separated when several."""
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
        """Bring a recording's row up to date (None: leave that column as it is)."""
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
        """A stretch of ``stream`` without samples (shared by every site of the recording)."""
        self.db.execute("INSERT INTO gaps (recording_id, stream, first_index, n_samples, "
                        "start_utc, duration_s, cause) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (recording_id, stream, first_index, n_samples,
                         utc_iso(start_utc) if start_utc else None, duration_s, cause))
        self.db.commit()

    def add_minutes(self, recording_id: int, rows: list[dict], site: str | None = None) -> None:
        """Upsert per-minute summaries (keys as the ``minutes`` table's columns), one row
        per minute and site.  The site: a row's own ``site`` key, else ``site``, else
        the one the recording's channel label names."""
        if not rows:
            return
        default = normalize_site(site) if site else None
        if default is None and any(not r.get("site") for r in rows):
            rec = self.recording(recording_id)
            default = site_for((rec or {}).get("channel") or "")
        self.db.executemany(
            "INSERT OR REPLACE INTO minutes (recording_id, site, minute_utc, rms_uv, "
            "rms_p95_uv, floor_uv, motion_g, good_s, artifact_s, nodata_s) VALUES "
            "(:recording_id, :site, :minute_utc, :rms_uv, :rms_p95_uv, :floor_uv, :motion_g, "
            ":good_s, :artifact_s, :nodata_s)",
            [dict(r, recording_id=recording_id,
                  site=normalize_site(r["site"]) if r.get("site") else default) for r in rows])
        self.db.commit()

    def open_episode(self, night_id: int, recording_id: int | None, start_utc: datetime,
                     ep, emg_fs_hz: float | None = None, channel: str | None = None,
                     site: str | None = None) -> int:
        """Insert a confirmed onset (``ep`` is a detector Episode; status ``open``);
        returns its row id.  ``site``: the channel's body site (None: the one its label
        names, :func:`crampwatch.sites.site_for`)."""
        now = utc_iso(_now())
        cur = self.db.execute(
            "INSERT INTO episodes (night_id, recording_id, onset_utc, onset_s, onset_sample, "
            "peak_rms_uv, mean_rms_uv, confidence, channel, site, status, created_utc, "
            "updated_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)",
            (night_id, recording_id, utc_iso(start_utc + timedelta(seconds=ep.onset_s)),
             ep.onset_s, _sample(ep.onset_s, emg_fs_hz), ep.peak_rms_uv, ep.mean_rms_uv,
             ep.confidence, channel, _site(site, channel), now, now))
        self.db.commit()
        return int(cur.lastrowid)

    def close_episode(self, episode_id: int, start_utc: datetime, ep,
                      emg_fs_hz: float | None = None, status: str = "closed") -> None:
        """Write an episode's end (``ep`` is the detector Episode from EpisodeEnded);
        ``status``: ``closed``, ``truncated`` or ``uncertain``."""
        _check_status(status)
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

    def add_episode(self, night_id: int, recording_id: int | None, start_utc: datetime, ep,
                    emg_fs_hz: float | None = None, channel: str | None = None,
                    site: str | None = None, status: str | None = None) -> int:
        """A whole episode (onset and end) in one row, as a replay finds it; ``status``
        None: the Episode's own.  Returns its row id."""
        status = status or getattr(ep, "status", None) or "closed"
        _check_status(status)
        now = utc_iso(_now())
        ended = ep.offset_s is not None
        cur = self.db.execute(
            "INSERT INTO episodes (night_id, recording_id, onset_utc, offset_utc, onset_s, "
            "offset_s, duration_s, onset_sample, offset_sample, peak_rms_uv, mean_rms_uv, "
            "confidence, channel, site, status, created_utc, updated_utc) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (night_id, recording_id, utc_iso(start_utc + timedelta(seconds=ep.onset_s)),
             utc_iso(start_utc + timedelta(seconds=ep.offset_s)) if ended else None,
             ep.onset_s, ep.offset_s if ended else None,
             ep.offset_s - ep.onset_s if ended else None, _sample(ep.onset_s, emg_fs_hz),
             _sample(ep.offset_s, emg_fs_hz), ep.peak_rms_uv, ep.mean_rms_uv, ep.confidence,
             channel, _site(site, channel), status, now, now))
        self.db.commit()
        return int(cur.lastrowid)

    def clear_results(self, recording_id: int, site: str | None = None) -> None:
        """Forget what the detector found in a recording before it is stored again (a
        replay of the same file): its episodes and minutes of ``site`` (None: of every
        site) and its gaps, in one transaction.  Verdicts on them go too."""
        where, args = "recording_id=?", [recording_id]
        if site is not None:
            where += " AND site=?"
            args.append(normalize_site(site))
        with self.db:
            self.db.execute(f"DELETE FROM episodes WHERE {where}", args)
            self.db.execute(f"DELETE FROM minutes WHERE {where}", args)
            self.db.execute("DELETE FROM gaps WHERE recording_id=?", (recording_id,))

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

    def set_verdict(self, episode_id: int, verdict: str | None, note: str | None = None) -> bool:
        """The user's verdict on an episode: ``confirmed``, ``false`` or None (cleared).
        False if there is no such episode."""
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r}: one of {', '.join(VERDICTS)} or None")
        cur = self.db.execute("UPDATE episodes SET verdict=?, verdict_note=?, verdict_utc=? "
                              "WHERE episode_id=?",
                              (verdict, note, None if verdict is None else utc_iso(_now()),
                               episode_id))
        self.db.commit()
        return cur.rowcount == 1

    # ------------------------------------------------------------- reading: nights
    def get_night(self, night_id: int) -> dict | None:
        """The ``nights`` row of ``night_id`` (None: no such night)."""
        row = self.db.execute("SELECT * FROM nights WHERE night_id=?", (night_id,)).fetchone()
        return dict(row) if row else None

    def nights(self) -> list[dict]:
        """Every night, oldest first."""
        return [dict(r) for r in self.db.execute("SELECT * FROM nights ORDER BY night_date")]

    def night_by_date(self, date: str) -> dict | None:
        """The night named ``date`` (YYYY-MM-DD, the evening's local date)."""
        row = self.db.execute("SELECT * FROM nights WHERE night_date=?", (date,)).fetchone()
        return dict(row) if row else None

    def last_night(self) -> dict | None:
        """The most recent night (None: the log holds none)."""
        row = self.db.execute("SELECT * FROM nights ORDER BY night_date DESC LIMIT 1").fetchone()
        return dict(row) if row else None

    def nights_up_to(self, date: str, n: int) -> list[dict]:
        """The ``n`` nights up to ``date`` (inclusive), newest first."""
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM nights WHERE night_date<=? ORDER BY night_date DESC LIMIT ?",
            (date, int(n)))]

    def night_range(self) -> tuple[str | None, str | None, int]:
        """``(first night date, last night date, number of nights)``."""
        first, last, n = self.db.execute(
            "SELECT min(night_date), max(night_date), count(*) FROM nights").fetchone()
        return first, last, int(n)

    def night_list(self) -> list[dict]:
        """Per night, oldest first: ``night_date``, ``recorded_s`` (sum of its
        recordings' lengths), ``n_cramps``, ``n_false``, ``n_uncertain`` (as
        :func:`episode_kind` counts them)."""
        return [dict(r) for r in self.db.execute(
            "SELECT n.night_date, "
            "  coalesce((SELECT sum((julianday(coalesce(r.ended_utc, r.started_utc)) - "
            "                        julianday(r.started_utc)) * 86400.0) "
            "            FROM recordings r WHERE r.night_id = n.night_id), 0.0) AS recorded_s, "
            f"  (SELECT count(*) FROM episodes e WHERE e.night_id = n.night_id AND {_CRAMP}) "
            "     AS n_cramps, "
            f"  (SELECT count(*) FROM episodes e WHERE e.night_id = n.night_id AND {_FALSE}) "
            "     AS n_false, "
            f"  (SELECT count(*) FROM episodes e WHERE e.night_id = n.night_id AND "
            f"   {_UNCERTAIN}) AS n_uncertain "
            "FROM nights n ORDER BY n.night_date")]

    def trend_rows(self, first_date: str, last_date: str) -> tuple[dict, list[dict]]:
        """What the trends need over the nights ``first_date`` to ``last_date``
        (inclusive): ``{night_date: recorded_s}`` of every night in the range, and its
        episodes (``night_date``, ``onset_utc``, ``duration_s``, ``verdict``,
        ``status``, ``site``) in onset order."""
        recorded = {d: float(s or 0.0) for d, s in self.db.execute(
            "SELECT n.night_date, sum((julianday(coalesce(r.ended_utc, r.started_utc)) - "
            "julianday(r.started_utc)) * 86400.0) FROM nights n LEFT JOIN recordings r "
            "USING (night_id) WHERE n.night_date BETWEEN ? AND ? GROUP BY n.night_date",
            (first_date, last_date))}
        eps = [dict(r) for r in self.db.execute(
            "SELECT n.night_date, e.onset_utc, e.duration_s, e.verdict, e.status, e.site "
            "FROM episodes e JOIN nights n USING (night_id) WHERE n.night_date BETWEEN ? AND ? "
            "ORDER BY e.onset_utc", (first_date, last_date))]
        return recorded, eps

    def site_counts_by_night(self) -> dict[str, dict[str, dict]]:
        """``{night_date: {site: {"cramps": n, "uncertain": n, "false": n}}}`` over the
        whole log (nights without episodes are absent)."""
        out: dict = {}
        for r in self.db.execute(
                "SELECT n.night_date, e.site, "
                f"sum(CASE WHEN {_CRAMP} THEN 1 ELSE 0 END), "
                f"sum(CASE WHEN {_UNCERTAIN} THEN 1 ELSE 0 END), "
                f"sum(CASE WHEN {_FALSE} THEN 1 ELSE 0 END) "
                "FROM episodes e JOIN nights n USING (night_id) GROUP BY n.night_date, e.site"):
            out.setdefault(r[0], {})[r[1]] = {"cramps": int(r[2]), "uncertain": int(r[3]),
                                             "false": int(r[4])}
        return out

    # ------------------------------------------------------------- reading: recordings
    def recordings(self, night_id: int) -> list[dict]:
        """The night's recordings, first first."""
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM recordings WHERE night_id=? ORDER BY started_utc", (night_id,))]

    def recording(self, recording_id: int) -> dict | None:
        """One ``recordings`` row (None: no such recording)."""
        row = self.db.execute("SELECT * FROM recordings WHERE recording_id=?",
                              (recording_id,)).fetchone()
        return dict(row) if row else None

    def recording_by_path(self, path: str) -> dict | None:
        """The row of the recording file ``path`` (matched as an absolute path, then
        with symbolic links resolved); None if the log does not hold it."""
        for cand in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
            row = self.db.execute("SELECT * FROM recordings WHERE path=?", (cand,)).fetchone()
            if row is not None:
                return dict(row)
        return None

    def recordings_with_open_episodes(self) -> list[dict]:
        """``recording_id``, ``path``, ``ended_utc`` of every recording holding an episode
        still ``open`` (left by a capture that did not stop cleanly)."""
        return [dict(r) for r in self.db.execute(
            "SELECT DISTINCT r.recording_id, r.path, r.ended_utc FROM episodes e "
            "JOIN recordings r USING (recording_id) WHERE e.status='open'")]

    def gaps(self, night_id: int) -> list[dict]:
        """The gaps of the night's recordings, in time order."""
        return [dict(r) for r in self.db.execute(
            "SELECT g.* FROM gaps g JOIN recordings r USING (recording_id) WHERE r.night_id=? "
            "ORDER BY g.start_utc", (night_id,))]

    # ------------------------------------------------------------- reading: minutes
    def minutes(self, night_id: int, site: str | None = None) -> list[dict]:
        """The night's per-minute summaries (of one site, or of all), in time order."""
        sql = ("SELECT m.* FROM minutes m JOIN recordings r USING (recording_id) "
               "WHERE r.night_id=?")
        args: list = [night_id]
        if site is not None:
            sql += " AND m.site=?"
            args.append(site)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY m.minute_utc, m.site", args)]

    def signal_by_site(self, night_id: int) -> dict[str, dict]:
        """Per site of the night: ``minutes`` (rows), ``good_s``, ``artifact_s``,
        ``nodata_s`` summed over its per-minute summaries."""
        return {r["site"]: {k: r[k] for k in ("minutes", "good_s", "artifact_s", "nodata_s")}
                for r in self.db.execute(
                    "SELECT m.site, count(*) AS minutes, coalesce(sum(m.good_s), 0.0) AS good_s, "
                    "coalesce(sum(m.artifact_s), 0.0) AS artifact_s, "
                    "coalesce(sum(m.nodata_s), 0.0) AS nodata_s FROM minutes m "
                    "JOIN recordings r USING (recording_id) WHERE r.night_id=? "
                    "GROUP BY m.site ORDER BY m.site", (night_id,))}

    def floor_near(self, recording_id: int, at_utc: str, site: str | None = None) -> float | None:
        """The noise floor (uV RMS) of the last minute summary at or before ``at_utc``
        (UTC ISO 8601) of a recording and site (None: any site)."""
        sql = "SELECT floor_uv FROM minutes WHERE recording_id=? AND minute_utc<=?"
        args: list = [recording_id, at_utc]
        if site is not None:
            sql += " AND site=?"
            args.append(site)
        row = self.db.execute(sql + " ORDER BY minute_utc DESC LIMIT 1", args).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # ------------------------------------------------------------- reading: episodes
    def episodes(self, night_id: int | None = None, site: str | None = None) -> list[dict]:
        """Episodes (of a night, of a site, or all), in onset order."""
        where, args = _night_site(night_id, site)
        sql = "SELECT * FROM episodes" + (" WHERE " + " AND ".join(where) if where else "")
        return [dict(r) for r in self.db.execute(sql + " ORDER BY onset_utc, episode_id", args)]

    def recording_episodes(self, recording_id: int, site: str | None = None) -> list[dict]:
        """A recording's episodes (of one site, or all), in onset order."""
        sql, args = "SELECT * FROM episodes WHERE recording_id=?", [recording_id]
        if site is not None:
            sql += " AND site=?"
            args.append(site)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY onset_s, episode_id", args)]

    def episode(self, episode_id: int) -> dict | None:
        """One ``episodes`` row (None: no such episode)."""
        row = self.db.execute("SELECT * FROM episodes WHERE episode_id=?",
                              (episode_id,)).fetchone()
        return dict(row) if row else None

    def episode_at(self, recording_id: int, onset_sample: int, site: str | None = None,
                   tolerance_samples: int = 1) -> dict | None:
        """The first episode of a recording (and site) whose onset is within
        ``tolerance_samples`` of ``onset_sample``: a resumed capture finds the row an
        earlier session wrote for the same onset.  None: no such row."""
        sql = ("SELECT * FROM episodes WHERE recording_id=? AND onset_sample BETWEEN ? AND ?")
        args: list = [recording_id, onset_sample - tolerance_samples,
                      onset_sample + tolerance_samples]
        if site is not None:
            sql += " AND site=?"
            args.append(site)
        row = self.db.execute(sql + " ORDER BY episode_id LIMIT 1", args).fetchone()
        return dict(row) if row else None

    def episode_status(self, episode_id: int) -> str | None:
        """An episode's status (None: no such episode)."""
        row = self.db.execute("SELECT status FROM episodes WHERE episode_id=?",
                              (episode_id,)).fetchone()
        return str(row[0]) if row else None

    def count_episodes(self, night_id: int | None = None, site: str | None = None,
                       kind: str | None = None) -> int:
        """How many episodes (of a night, of a site, or all).  ``kind``: only
        ``"cramp"``, ``"uncertain"`` or ``"false"`` ones (:func:`episode_kind`)."""
        where, args = _night_site(night_id, site)
        if kind is not None:
            where.append({"cramp": _CRAMP, "uncertain": _UNCERTAIN, "false": _FALSE}[kind])
        sql = "SELECT count(*) FROM episodes e" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self.db.execute(sql, args).fetchone()[0])

    def episode_id_range(self) -> tuple[int, int | None, int | None]:
        """``(number of episodes, lowest id, highest id)``."""
        n, lo, hi = self.db.execute(
            "SELECT count(*), min(episode_id), max(episode_id) FROM episodes").fetchone()
        return int(n), lo, hi


# what the review counts, as SQL conditions on an episodes row (see episode_kind)
_CRAMP = "(e.verdict = 'confirmed' OR (e.verdict IS NULL AND e.status != 'uncertain'))"
_UNCERTAIN = "(e.verdict IS NULL AND e.status = 'uncertain')"
_FALSE = "(e.verdict = 'false')"


def episode_kind(ep: dict) -> str:
    """How the review counts an episode row: ``"false"`` (the user marked it false),
    ``"uncertain"`` (the detector was not confident and the user has not confirmed it:
    shown apart, not counted) or ``"cramp"``.

    Examples
    --------
    >>> episode_kind({"status": "uncertain", "verdict": None})
    'uncertain'
    >>> episode_kind({"status": "uncertain", "verdict": "confirmed"})
    'cramp'
    >>> episode_kind({"status": "closed", "verdict": "false"})
    'false'
    """
    if ep.get("verdict") == "false":
        return "false"
    if ep.get("status") == "uncertain" and ep.get("verdict") != "confirmed":
        return "uncertain"
    return "cramp"


def _site(site: str | None, channel: str | None) -> str:
    return normalize_site(site) if site else site_for(channel or "")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"episode status {status!r}: one of {', '.join(STATUSES)}")


def _night_site(night_id: int | None, site: str | None) -> tuple[list, list]:
    """WHERE terms and their arguments for an optional night and site."""
    where, args = [], []
    if night_id is not None:
        where.append("night_id=?")
        args.append(night_id)
    if site is not None:
        where.append("site=?")
        args.append(site)
    return where, args


def _sample(t_s: float | None, fs_hz: float | None) -> int | None:
    if t_s is None or not fs_hz:
        return None
    return int(round(t_s * fs_hz))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def minute_rows(trace: dict, start_utc: datetime, step_s: float,
                site: str | None = None) -> list[dict]:
    """Per-minute summaries from a pipeline trace (``Pipeline.trace()``), as
    :meth:`EpisodeLog.add_minutes` takes them (with ``site`` in each row if given)."""
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
        if site is not None:
            out[-1]["site"] = site
    return out
