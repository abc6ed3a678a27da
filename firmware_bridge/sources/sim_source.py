"""``sim://?seed=N``: the built-in simulated board, no hardware, no bytes.

Blocks are rendered straight from the synthetic night
(:class:`~crampwatch.firmware_bridge.synth.SyntheticNight`), paced by a
monotonic schedule at ``speed`` times real time (``speed=max`` or ``0``: as
fast as the consumer takes them).  The night begins when the source opens:
``host_time_s`` of a block is the open time plus ``first_index / fs_hz``.
For a simulation of the *wire* (protocols, losses, reconnects) use
``crampwatch board-sim`` with a ``serial://`` or ``socket://`` URL instead.

Parameters: ``seed`` (0), ``hours`` (8), ``speed`` (1), ``emg_fs`` (1000),
``acc_fs`` (100), ``block_s`` (0.1 when paced, 1 at ``speed=max``).

Examples
--------
>>> from crampwatch.firmware_bridge.sources import open_source
>>> with open_source("sim://?seed=2&hours=0.001&speed=max&emg_fs=500") as src:
...     blocks = [x for x in src.iter() if getattr(x, "stream", None) == "emg"
...               and hasattr(x, "data")]
>>> sum(b.n_samples for b in blocks), blocks[0].fs_hz
(1800, 500.0)
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import numpy as np

from crampwatch.errors import SourceError
from crampwatch.firmware_bridge.sources.base import Source, SourceUrl
from crampwatch.firmware_bridge.types import SampleBlock, StreamInfo

PARAMS = ("seed", "hours", "speed", "emg_fs", "acc_fs", "block_s")


def parse_speed(url: SourceUrl, default: float = 1.0) -> float:
    """``speed=`` as a float; ``max``/``inf``/``0`` -> 0.0 (unpaced)."""
    raw = url.params.get("speed")
    if raw is None:
        return default
    if raw.lower() in ("max", "inf", "0", "0.0"):
        return 0.0
    value = url.get("speed", default, float)
    if not value > 0 or not math.isfinite(value):
        raise SourceError(f"{url.url}: speed must be a positive number or 'max'", url=url.url)
    return value


class SimSource(Source):
    """The simulated board; see the module docstring."""

    def __init__(self, url: SourceUrl):
        super().__init__(url)
        url.check_params(PARAMS)
        self.seed = url.get("seed", 0, int)
        self.hours = url.get("hours", 8.0, float)
        self.speed = parse_speed(url)
        emg_fs = url.get("emg_fs", 1000.0, float)
        acc_fs = url.get("acc_fs", 100.0, float)
        self.block_s = url.get("block_s", 1.0 if self.speed == 0.0 else 0.1, float)
        for name, v in (("hours", self.hours), ("emg_fs", emg_fs), ("acc_fs", acc_fs),
                        ("block_s", self.block_s)):
            if not v > 0:
                raise SourceError(f"{url.url}: {name} must be positive, got {v}", url=url.url)
        self._start_utc = datetime.now(timezone.utc)
        from crampwatch.firmware_bridge.synth import NightSpec, SyntheticNight
        try:
            self.night = SyntheticNight(NightSpec(hours=self.hours, seed=self.seed,
                                                  emg_fs_hz=emg_fs, acc_fs_hz=acc_fs,
                                                  start_utc=self._start_utc))
        except ValueError as exc:
            raise SourceError(f"{url.url}: {exc}", url=url.url) from exc
        self.info = {"emg": StreamInfo("emg", emg_fs, ("emg",), "uV"),
                     "acc": StreamInfo("acc", acc_fs, ("acc_x", "acc_y", "acc_z"), "g")}
        self.stats.update(samples={"emg": 0, "acc": 0})

    def _run(self) -> None:
        emg_fs = self.info["emg"].fs_hz
        acc_fs = self.info["acc"].fs_hz
        n_emg = int(round(self.night.duration_s * emg_fs))
        n_acc = int(round(self.night.duration_s * acc_fs))
        t_open = self._start_utc.timestamp()
        self._event("connected", transport="sim", seed=self.seed, hours=self.hours,
                    speed=self.speed or "max")
        step = max(1, int(round(self.block_s * emg_fs)))
        t0 = time.monotonic()
        e0 = a0 = 0
        while e0 < n_emg and not self._stop.is_set():
            e1 = min(n_emg, e0 + step)
            a1 = n_acc if e1 == n_emg else min(n_acc, int(e1 * acc_fs // emg_fs))
            if self.speed:
                due = t0 + e1 / emg_fs / self.speed
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            emg = self.night.render_emg(e0, e1 - e0).reshape(-1, 1)
            if not self._emit(SampleBlock("emg", emg_fs, e0, emg, t_open + e0 / emg_fs)):
                break
            if a1 > a0:
                acc = np.asarray(self.night.render_acc(a0, a1 - a0))
                if not self._emit(SampleBlock("acc", acc_fs, a0, acc, t_open + a0 / acc_fs)):
                    break
            self.stats["samples"] = {"emg": e1, "acc": a1}
            e0, a0 = e1, a1


def open_sim(url: SourceUrl) -> SimSource:
    """Build (not start) the source for a ``sim://`` URL."""
    return SimSource(url)
