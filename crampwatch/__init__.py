"""crampwatch: watch calf EMG all night and report nocturnal leg cramps.

The package installs the root folders under one import name:
``crampwatch.firmware_bridge`` (boards, protocols, sources, recordings I/O),
``crampwatch.detector`` (filters, features, classification, episodes; no I/O),
``crampwatch.models`` (trained classifier files) and ``crampwatch.tools``
(the ``crampwatch`` command).
"""

from crampwatch.errors import (
    ChannelNotFoundError,
    ConfigError,
    CrampwatchError,
    FrameError,
    InputFileError,
    SignalError,
    SourceError,
    UnitError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "CrampwatchError",
    "ConfigError",
    "InputFileError",
    "ChannelNotFoundError",
    "UnitError",
    "SignalError",
    "FrameError",
    "SourceError",
]
