"""The one exception hierarchy of crampwatch.

Library code raises these (``raise ... from exc``); only the CLI turns them into
one-line messages (``crampwatch: <what and where>``, exit status 2).  Never
classify errors by matching their message text: use the class and its data.
"""

from __future__ import annotations


class CrampwatchError(Exception):
    """Root of every error crampwatch raises on purpose."""


class ConfigError(CrampwatchError):
    """A configuration key or value is unknown or out of range."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class InputFileError(CrampwatchError):
    """A file cannot be read: missing, empty, not the expected format."""

    def __init__(self, message: str, path: str | None = None, offset: int | None = None):
        super().__init__(message)
        self.path = path
        self.offset = offset


class ChannelNotFoundError(InputFileError):
    """The requested channel is not in the file; ``available`` lists the labels."""

    def __init__(self, message: str, path: str | None = None, available: list[str] | None = None):
        super().__init__(message, path=path)
        self.available = list(available or [])


class UnitError(InputFileError):
    """A channel's physical dimension is not one crampwatch can convert."""

    def __init__(self, message: str, path: str | None = None, channel: str | None = None,
                 unit: str | None = None):
        super().__init__(message, path=path)
        self.channel = channel
        self.unit = unit


class SignalError(CrampwatchError):
    """The signal itself is unusable (all NaN, flat from start to end, ...)."""

    def __init__(self, message: str, channel: str | None = None):
        super().__init__(message)
        self.channel = channel


class FrameError(CrampwatchError):
    """A wire frame is malformed. Decoders count and skip these; this is raised
    only by strict single-frame helpers."""

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message)
        self.offset = offset


class SourceError(CrampwatchError):
    """A source URL is malformed or the device behind it cannot be opened."""

    def __init__(self, message: str, url: str | None = None):
        super().__init__(message)
        self.url = url


class FileLockedError(InputFileError):
    """A file is locked by another process (an episode log in the middle of a
    write, a recording another capture is writing); ``path`` names it."""
