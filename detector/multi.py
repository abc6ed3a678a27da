"""Several EMG channels at once: one :class:`Pipeline` per channel, and the
context one leg gives the other.

Each watched channel (a body site: ``left_calf``, ``right_calf``, ...) runs its
own pipeline with the same config and its own filters, floor and episode
state; the accelerometer, one per board, is fed to all of them.  Events come
out as ``(site, event)`` pairs.

Cross-channel context (``cross_channel=True``): a cramp is one muscle.  Turning
over, stretching both legs, getting up or standing make both calves contract
at once.  An episode on one leg whose other leg began a burst of its own at
the same moment (within ``co_onset_s``) and stayed well above its own floor
through most of the episode's confirmation (``co_active_fraction`` of
``min_duration_s``) is taken as a body movement and not reported; one leg
contracting while the other is quiet, or a cramp that starts while the other
leg is already cramping, is reported as before.  The rule applies between
channels on different legs (``crampwatch.sites.leg_of``: left and right).

Live equals replay: an onset is released once every other pipeline has
decided the steps the rule looks at, which depends only on the data, so any
chunking of the input gives the same events.  The two legs arrive in the same
EMG blocks, so this delays nothing in practice (at most until the other
channel's next step).

Examples
--------
>>> import numpy as np
>>> from scipy import signal
>>> from crampwatch.detector import DetectorConfig
>>> from crampwatch.detector.multi import MultiPipeline
>>> fs = 1000.0
>>> rng = np.random.default_rng(1)
>>> emg = rng.normal(0, 2.0, (int(60 * fs), 2))              # two legs at rest, 2 uV
>>> sos = signal.butter(2, [30, 150], "bandpass", fs=fs, output="sos")
>>> burst = signal.sosfilt(sos, rng.normal(0, 1, 25000))
>>> emg[20000:45000, 0] += 80 * burst / burst.std()           # the left calf cramps
>>> multi = MultiPipeline(DetectorConfig(), fs, None, ["EMG L calf", "EMG R calf"],
...                       ["left_calf", "right_calf"])
>>> events = multi.process_emg(emg, first_index=0) + multi.finish()
>>> [(site, type(e).__name__) for site, e in events]
[('left_calf', 'EpisodeStarted'), ('left_calf', 'EpisodeEnded')]
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque

import numpy as np

from crampwatch.detector.config import DetectorConfig
from crampwatch.detector.episodes import EpisodeEnded, EpisodeStarted
from crampwatch.detector.pipeline import Pipeline
from crampwatch.sites import leg_of

log = logging.getLogger(__name__)

__all__ = ["MultiPipeline"]


class MultiPipeline:
    """One pipeline per EMG channel, events tagged with the channel's site.

    Parameters
    ----------
    cfg : DetectorConfig
        The same config for every channel.
    emg_fs_hz : float
        EMG sample rate (every channel at this rate).
    acc_fs_hz : float or None
        Accelerometer sample rate; None without one.
    channels : list of str
        EMG channel labels, in the column order of the EMG blocks.
    sites : list of str
        The body site of each channel (``crampwatch.sites.site_for``); the keys
        of every per-site output.  Must be distinct.
    keep_trace, confidence_model, acc_wait_s, clock
        As for :class:`Pipeline`, passed to each channel's pipeline.
    cross_channel : bool
        Apply the cross-channel context (see the module docstring).  Off, the
        channels are independent pipelines.
    co_onset_s : float
        How close (s) the other leg's burst must begin to the episode's onset
        to count as the same body movement.
    co_active_fraction : float
        Share of the episode's first ``min_duration_s`` during which the other
        leg must be above its on-threshold.
    """

    def __init__(self, cfg: DetectorConfig | None, emg_fs_hz: float, acc_fs_hz: float | None,
                 channels: list[str], sites: list[str], keep_trace: bool = True,
                 confidence_model=None, acc_wait_s: float | None = None, clock=None,
                 cross_channel: bool = True, co_onset_s: float = 2.0,
                 co_active_fraction: float = 0.5):
        self.cfg = cfg = cfg or DetectorConfig()
        channels, sites = [str(c) for c in channels], [str(s) for s in sites]
        if not channels:
            raise ValueError("MultiPipeline needs at least one EMG channel")
        if len(channels) != len(sites):
            raise ValueError(f"{len(channels)} channels but {len(sites)} sites")
        if len(set(sites)) != len(sites):
            raise ValueError(f"sites must be distinct, got {sites}")
        self.channels = channels
        self.sites = sites
        self.channel_of = dict(zip(sites, channels))
        self.keep_trace = keep_trace
        self.cross_channel = bool(cross_channel)
        self.co_onset_s = float(co_onset_s)
        self.co_active_fraction = float(co_active_fraction)
        # each pipeline keeps its trace: drained after every call into a short
        # history for the rule (and, with keep_trace, into the caller's trace)
        self.pipelines = {s: Pipeline(cfg, emg_fs_hz=emg_fs_hz, acc_fs_hz=acc_fs_hz,
                                      keep_trace=True, confidence_model=confidence_model,
                                      acc_wait_s=acc_wait_s, clock=clock)
                          for s in sites}
        cols = Pipeline.TRACE_COLUMNS
        self._col = {k: cols.index(k) for k in ("t_end_s", "rms_uv", "floor_uv")}
        self._history_s = cfg.min_duration_s + 4.0 * self.co_onset_s + 60.0
        self._hist = {s: deque() for s in sites}          # (t_end, rms, on_thr) rows
        self._decided = {s: -math.inf for s in sites}     # t_end of the last decided step
        self._rows = {s: [] for s in sites}               # trace rows for the caller
        self._held = {s: deque() for s in sites}          # events waiting for the rule
        self._dropped = {s: set() for s in sites}         # episode ids judged body movement
        self._next_id = {s: 1 for s in sites}
        self._ids = {s: {} for s in sites}                # pipeline's episode id -> ours
        self._finished = False
        self.suppressed = {s: 0 for s in sites}
        """Episodes per site judged a body movement (both legs) and not reported."""

    # ------------------------------------------------------------------ input
    def feed(self, block) -> list:
        """Feed a block with ``stream`` ("emg": data (n, len(channels)); "acc":
        data (n, 3)), ``data`` and ``first_index``."""
        if block.stream == "emg":
            return self.process_emg(block.data, block.first_index)
        if block.stream == "acc":
            return self.process_acc(block.data, block.first_index)
        return []

    def process_emg(self, emg_uv: np.ndarray, first_index: int | None = None) -> list:
        """Feed EMG samples (uV), shape (n, len(channels)) in channel order."""
        x = np.asarray(emg_uv, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.shape[1] != len(self.channels):
            raise ValueError(f"EMG block has {x.shape[1]} columns, expected "
                             f"{len(self.channels)} ({', '.join(self.channels)})")
        out = {s: p.process_emg(x[:, i], first_index)
               for i, (s, p) in enumerate(self.pipelines.items())}
        return self._after(out)

    def process_acc(self, acc_g: np.ndarray, first_index: int | None = None) -> list:
        """Feed accelerometer samples (g, shape (n, 3)), shared by every channel."""
        a = np.asarray(acc_g, dtype=np.float64)
        out = {s: p.process_acc(a, first_index) for s, p in self.pipelines.items()}
        return self._after(out)

    def finish(self, truncated: bool = False) -> list:
        """End of stream: finish every pipeline and release every held event."""
        if self._finished:
            return []
        self._finished = True
        out = {s: p.finish(truncated=truncated) for s, p in self.pipelines.items()}
        return self._after(out, final=True)

    # ---------------------------------------------------------------- outputs
    def drain_trace(self) -> dict:
        """{site: trace rows (``Pipeline.TRACE_COLUMNS`` order)} kept so far,
        forgotten here."""
        rows, self._rows = self._rows, {s: [] for s in self.sites}
        return rows

    def trace(self) -> dict:
        """{site: per-step features and decisions as columns}."""
        out = {}
        for s in self.sites:
            arr = np.array(self._rows[s], dtype=np.float64).reshape(-1, len(Pipeline.TRACE_COLUMNS))
            out[s] = {c: arr[:, i] for i, c in enumerate(Pipeline.TRACE_COLUMNS)}
        return out

    @property
    def samples_seen(self) -> dict:
        return {s: p.samples_seen for s, p in self.pipelines.items()}

    @property
    def nan_samples(self) -> dict:
        return {s: p.nan_samples for s, p in self.pipelines.items()}

    @property
    def is_flat(self) -> dict:
        return {s: p.is_flat for s, p in self.pipelines.items()}

    # --------------------------------------------------------------- internals
    def _after(self, out: dict, final: bool = False) -> list:
        """Take the new trace rows, hold the new events, release what the rule
        can now decide, in site order."""
        for s, p in self.pipelines.items():
            rows = p.drain_trace()
            if rows:
                self._take_rows(s, rows)
            self._held[s].extend(out[s])
        events = []
        for s in self.sites:
            q = self._held[s]
            while q and (final or self._ready(s, q[0])):
                events += self._release(s, q.popleft())
        self._trim()
        return events

    def _trim(self) -> None:
        """Forget history no held onset can need any more (memory stays flat)."""
        keep = [ev.episode.onset_s for q in self._held.values() for ev in q
                if isinstance(ev, EpisodeStarted)]
        lookback = 2.0 * self.co_onset_s + 1.0
        for s, h in self._hist.items():
            horizon = self._decided[s] - self._history_s
            if keep:
                horizon = min(horizon, min(keep) - lookback)
            while h and h[0][0] < horizon:
                h.popleft()

    def _take_rows(self, site: str, rows: list) -> None:
        if self.keep_trace:
            self._rows[site].extend(rows)
        ti, ri, fi = self._col["t_end_s"], self._col["rms_uv"], self._col["floor_uv"]
        cfg = self.cfg
        h = self._hist[site]
        for r in rows:
            floor = r[fi]
            on_thr = max(cfg.on_min_uv, cfg.on_ratio * floor) if floor == floor else math.inf
            h.append((r[ti], r[ri], on_thr))
        self._decided[site] = rows[-1][ti]

    def _others(self, site: str) -> list:
        leg = leg_of(site)
        if leg is None:
            return []
        return [s for s in self.sites if s != site and leg_of(s) not in (None, leg)]

    def _ready(self, site: str, ev) -> bool:
        """Can the rule decide this event now (have the other legs' pipelines
        decided the steps it looks at)?"""
        if not self.cross_channel or not isinstance(ev, EpisodeStarted):
            return True
        need = ev.episode.onset_s + self.cfg.min_duration_s
        return all(self._decided[o] >= need for o in self._others(site))

    def _release(self, site: str, ev) -> list:
        ep = ev.episode
        if isinstance(ev, EpisodeStarted):
            if self.cross_channel and self._body_movement(site, ep.onset_s):
                self._dropped[site].add(ep.episode_id)
                self.suppressed[site] += 1
                log.info("%s: contraction at %.1f s began on both legs at once: "
                         "a body movement, not a cramp", site, ep.onset_s)
                return []
        if ep.episode_id in self._dropped[site]:
            if isinstance(ev, EpisodeEnded):
                self._dropped[site].discard(ep.episode_id)
            return []
        ids = self._ids[site]
        if ep.episode_id not in ids:
            ids[ep.episode_id] = self._next_id[site]
            self._next_id[site] += 1
        new_id = ids[ep.episode_id]
        if isinstance(ev, EpisodeEnded):
            ids.pop(ep.episode_id, None)
        if new_id != ep.episode_id:
            ev = dataclasses.replace(ev, episode=dataclasses.replace(ep, episode_id=new_id))
        return [(site, ev)]

    def _body_movement(self, site: str, onset_s: float) -> bool:
        """Did another leg begin a burst within co_onset_s of this onset and stay
        above its own on-threshold through most of the confirmation?"""
        t0, t1 = onset_s, onset_s + self.cfg.min_duration_s
        for o in self._others(site):
            rows = [r for r in self._hist[o] if t0 - 2 * self.co_onset_s < r[0] <= t1]
            if not rows:
                continue
            during = [r for r in rows if r[0] > t0]
            if not during:
                continue
            share = sum(r[1] > r[2] for r in during) / len(during)
            if share < self.co_active_fraction:
                continue
            # where did the other leg's current run of activity begin?  It must
            # be near this onset, not long before (a cramp of its own going on)
            before = [r for r in rows if r[0] <= t0 + self.co_onset_s]
            quiet_before = [r for r in before if r[0] <= t0 - self.co_onset_s]
            if quiet_before and all(r[1] > r[2] for r in quiet_before):
                continue                     # already active well before: its own
            if any(r[1] > r[2] for r in before if r[0] > t0 - self.co_onset_s):
                return True
        return False
