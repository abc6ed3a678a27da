"""Wire protocols: pure decoders/encoders, one module per board type.

Every protocol module provides ``BOARD`` (:class:`BoardSpec`), ``Decoder``
(``feed(bytes) -> list[Packet]``, ``.stats``), ``Encoder`` (board side),
``CommandParser`` (board side: host bytes -> :class:`Command`),
``start_command(...)`` and ``stop_command()`` (host side bytes) and
``COUNTER_MODULO``-style constants; see :mod:`.base`.

Examples
--------
>>> get_protocol("cyton").BOARD.emg_fs_hz
250.0
>>> sorted(PROTOCOLS)
['bitalino', 'cyton', 'open']
"""

from __future__ import annotations

import importlib
from types import ModuleType

from crampwatch.firmware_bridge.protocols.base import BoardSpec, Command, DecoderStats, Packet

from crampwatch.errors import ConfigError

__all__ = ["PROTOCOLS", "get_protocol", "BoardSpec", "Command", "DecoderStats", "Packet"]

#: board name (the URL's ``board=`` value) -> module in this package
PROTOCOLS = {"cyton": "cyton", "bitalino": "bitalino", "open": "openframe"}


def get_protocol(name: str) -> ModuleType:
    """The protocol module for board ``name`` (``"cyton"``, ``"bitalino"``, ``"open"``).

    Raises
    ------
    ConfigError
        If ``name`` is not a known board type.
    """
    try:
        module = PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"unknown board type {name!r}; known: {', '.join(sorted(PROTOCOLS))}",
                          key="board") from None
    return importlib.import_module(f"{__name__}.{module}")
