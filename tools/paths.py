"""Where crampwatch keeps its data by default (override with --out / --db or
the environment variable ``CRAMPWATCH_HOME``)."""

from __future__ import annotations

import os


def data_dir() -> str:
    """``$CRAMPWATCH_HOME`` or the platform's user data directory for crampwatch
    (Linux: ``~/.local/share/crampwatch``)."""
    home = os.environ.get("CRAMPWATCH_HOME")
    if home:
        return home
    from platformdirs import user_data_dir
    return user_data_dir("crampwatch", appauthor=False)


def recordings_dir() -> str:
    """Default directory of the capture daemon's recordings."""
    return os.path.join(data_dir(), "recordings")


def db_path() -> str:
    """Default episode log (SQLite)."""
    return os.path.join(data_dir(), "episodes.sqlite")
