"""Sources opened by URL: live boards, the built-in simulated board, recordings.

==========================================  ===========================================
``serial:///dev/ttyUSB0?board=cyton``       a board on a serial port (pyserial)
``socket://127.0.0.1:7000?board=bitalino``  a board (or ``crampwatch board-sim``) over TCP
``ble://AA:BB:CC:DD:EE:FF?board=open``      an open-frame board over BLE (Nordic UART)
``sim://?seed=1&hours=8&speed=60``          the built-in simulated board, no hardware
``file://night.edf?speed=1``                a recording played as if live (``speed=max``)
==========================================  ===========================================

Every source has the same small interface (:class:`Source`): a background
thread produces :class:`~crampwatch.firmware_bridge.types.SampleBlock` objects
(stream ``"emg"`` in microvolts, ``"acc"`` in g, each with ``first_index`` and
``host_time_s``) and :class:`~crampwatch.firmware_bridge.types.SourceEvent`
objects (``connected``, ``disconnected``, ``gap``, ``crc_error``, ``status``,
``info``); the consumer takes them with ``read(timeout_s)`` or ``iter()``.
Live sources reconnect by themselves, forever, with backoff; every lost
sample is reported in a ``gap`` event and never interpolated: the stream's
``first_index`` jumps by the missing count.

Examples
--------
>>> from crampwatch.firmware_bridge.sources import open_source
>>> with open_source("sim://?seed=3&hours=0.0005&speed=max") as src:
...     items = list(src.iter())
>>> sorted({type(x).__name__ for x in items})
['SampleBlock', 'SourceEvent']
>>> src.info["acc"].unit
'g'
"""

from __future__ import annotations

from crampwatch.firmware_bridge.sources.base import Source, SourceUrl, coalesce, parse_url

__all__ = ["open_source", "Source", "SourceUrl", "parse_url", "coalesce"]


def open_source(url: str, start: bool = True, **options) -> Source:
    """Open a source from its URL (see the module docstring for the schemes).

    Parameters
    ----------
    url : str
        ``serial://``, ``socket://``, ``ble://``, ``sim://`` or ``file://`` URL.
    start : bool
        Start the I/O thread now (default).  With False, call ``.start()``.
    **options
        Passed to the scheme's opener; ``ble://`` takes ``client_class``
        (default ``bleak.BleakClient``) and ``find_device``, the seams tests
        use to run without a radio; ``serial://``, ``socket://`` and
        ``ble://`` take ``batch_s``, the default pause between reads while
        bytes flow (0.1 s; the URL's ``batch_s`` wins).

    Returns
    -------
    Source
        Use it as a context manager, or call ``close()``.

    Raises
    ------
    SourceError
        If the URL is malformed, names an unknown scheme, board or parameter.
    InputFileError
        For ``file://`` URLs whose file cannot be read.

    Examples
    --------
    >>> src = open_source("sim://?seed=1&speed=max&hours=0.001")
    >>> batch = src.read(timeout_s=5.0)
    >>> batch[0].kind
    'connected'
    >>> src.close()
    """
    u = parse_url(url)
    if u.scheme == "serial":
        from crampwatch.firmware_bridge.sources.serial_source import open_serial
        src = open_serial(u, **options)
    elif u.scheme == "socket":
        from crampwatch.firmware_bridge.sources.socket_source import open_socket
        src = open_socket(u, **options)
    elif u.scheme == "ble":
        from crampwatch.firmware_bridge.sources.ble_source import open_ble
        src = open_ble(u, **options)
    elif u.scheme == "sim":
        from crampwatch.firmware_bridge.sources.sim_source import open_sim
        src = open_sim(u, **options)
    else:
        from crampwatch.firmware_bridge.sources.file_source import open_file
        src = open_file(u, **options)
    return src.start() if start else src
