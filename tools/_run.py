"""Run the detection pipeline over a recording: the one loop shared by
replay, evaluate, tune and export."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from crampwatch.detector import DetectorConfig, EpisodeEnded
from crampwatch.errors import ConfigError, SignalError
from crampwatch.firmware_bridge.readers import open_recording
from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent
from crampwatch.models import load_model
from crampwatch.sites import normalize_site, site_for

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    path: str
    channel: str
    start_time: datetime
    duration_s: float
    emg_fs_hz: float
    acc_fs_hz: float | None
    episodes: list = field(default_factory=list)        # detector Episode objects
    trace: dict = field(default_factory=dict)
    gaps: list = field(default_factory=list)            # SourceEvent of kind "gap"
    wall_s: float = 0.0
    site: str = ""                                     # body site (crampwatch.sites)
    suppressed: int = 0                                # episodes the other leg showed
                                                       # to be a body movement

    def __post_init__(self):
        if not self.site:
            self.site = site_for(self.channel)

    def episode_records(self) -> list[dict]:
        return [episode_record(ep, self.start_time, self.channel, self.path, self.site)
                for ep in self.episodes]


def episode_record(ep, start_time: datetime, channel: str, path: str | None = None,
                   site: str | None = None) -> dict:
    """The JSON Lines record of one episode (same fields for replay and review)."""
    onset = start_time + timedelta(seconds=ep.onset_s)
    offset = start_time + timedelta(seconds=ep.offset_s)
    rec = {
        "episode_id": ep.episode_id,
        "onset_s": round(ep.onset_s, 3),
        "offset_s": round(ep.offset_s, 3),
        "duration_s": round(ep.offset_s - ep.onset_s, 3),
        "onset": onset.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "offset": offset.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "peak_rms_uv": round(ep.peak_rms_uv, 2),
        "mean_rms_uv": round(ep.mean_rms_uv, 2),
        "confidence": ep.confidence,
        "channel": channel,
        "site": site if site is not None else site_for(channel),
        "status": ep.status,
    }
    if path is not None:
        rec["file"] = path
    return rec


def load_config(config_path: str | None, overrides: list[str] | None) -> DetectorConfig:
    cfg = DetectorConfig()
    if config_path:
        cfg = DetectorConfig.from_toml(config_path)
    return cfg.with_overrides(overrides)


def run_recording(path: str, cfg: DetectorConfig, emg: str | None = None,
                  acc: str | None = None, progress: bool | None = None,
                  block_s: float = 300.0, on_event=None, keep_trace: bool = False) -> RunResult:
    """Replay one channel of a recording (``emg``, or the default EMG channel)
    through the pipeline as fast as possible: :func:`run_channels` with one
    channel; ``on_event`` is called with each event.

    ``keep_trace``: keep the per-step features (``RunResult.trace``, for the
    per-minute summaries of ``replay --db``); off, memory stays flat however
    long the recording."""
    handler = None if on_event is None else (lambda _site, ev: on_event(ev))
    return run_channels(path, cfg, emg=emg, acc=acc, progress=progress, block_s=block_s,
                        on_event=handler, keep_trace=keep_trace, one_channel=True)[0]


def run_channels(path: str, cfg: DetectorConfig, emg=None, acc=None, sites: dict | None = None,
                 progress: bool | None = None, block_s: float = 300.0, on_event=None,
                 keep_trace: bool = False, cross_channel: bool = True,
                 one_channel: bool = False) -> list[RunResult]:
    """Replay every watched EMG channel of one recording: one :class:`RunResult`
    per channel, in channel order, each with its ``site``.

    The recording is read once; the channels run through one
    :class:`~crampwatch.detector.multi.MultiPipeline` (a pipeline per channel,
    and the cross-channel context between the legs unless ``cross_channel``
    is False).

    ``emg``: None (the default channel, as ``run_recording``), one label, a list
    of labels, or ``"all"`` (every EMG channel).  ``sites``: channel label ->
    site (``[capture] channels``); unmapped channels get a site guessed from
    their label (:func:`crampwatch.sites.site_for`).  ``on_event`` is called
    with ``(site, event)``.  ``one_channel``: with ``emg`` None, the default
    channel only, even of a capture that watched several."""
    from crampwatch.detector.multi import MultiPipeline
    if progress is None:
        progress = sys.stderr.isatty()
    if isinstance(emg, (list, tuple)) and len(emg) == 1:
        emg = emg[0]
    t0 = time.perf_counter()
    watched = _watched_by_capture(path)
    if watched:               # a crampwatch capture: the channels and sites it watched live
        if emg is None and not one_channel:
            emg = list(watched) if len(watched) > 1 else emg
        sites = {**watched, **(sites or {})}
    with open_recording(path, emg=emg, acc=acc) as reader:
        channels = list(reader.emg.channels)
        site_names = unique_sites([site_for(c, sites) for c in channels])
        acc_fs = reader.acc.fs_hz if reader.acc is not None else None
        multi = MultiPipeline(cfg, reader.emg.fs_hz, acc_fs, channels, site_names,
                              keep_trace=keep_trace, confidence_model=load_model(cfg.model_file or None),
                              acc_wait_s=block_s + 1.0, cross_channel=cross_channel)
        results = {s: RunResult(path=str(path), channel=c, start_time=reader.start_time,
                                duration_s=reader.duration_s, emg_fs_hz=reader.emg.fs_hz,
                                acc_fs_hz=acc_fs, site=s)
                   for c, s in zip(channels, site_names)}
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=round(reader.duration_s), unit="s", desc=str(path)[-30:],
                       leave=False, file=sys.stderr)
        done_s = 0.0
        gaps = []
        for item in reader.blocks(block_s):
            if isinstance(item, SampleBlock):
                events = multi.feed(item)
                if item.stream == "emg" and bar is not None:
                    now_s = item.end_index / item.fs_hz
                    bar.update(round(now_s) - round(done_s))
                    done_s = now_s
            elif isinstance(item, SourceEvent):
                if item.kind == "gap":
                    gaps.append(item)
                continue
            else:
                continue
            _collect_sites(events, results, on_event)
        _collect_sites(multi.finish(), results, on_event)
        if bar is not None:
            bar.close()
    for site, pipe in multi.pipelines.items():
        _check_signal(path, results[site].channel, pipe)
    traces = multi.trace()
    wall_s = time.perf_counter() - t0
    for site, res in results.items():
        res.gaps = list(gaps)
        res.trace = traces[site]
        res.wall_s = wall_s
        res.suppressed = multi.suppressed[site]
    return [results[s] for s in site_names]


def unique_sites(sites: list[str]) -> list[str]:
    """Sites made distinct: a second ``calf`` becomes ``calf_2``."""
    out = []
    for s in sites:
        name, k = s, 2
        while name in out:
            name, k = f"{s}_{k}", k + 1
        out.append(name)
    return out


def _check_signal(path, channel: str, pipe) -> None:
    if pipe.samples_seen == 0:
        raise SignalError(f"{path}: channel {channel!r} holds no samples", channel=channel)
    if pipe.nan_samples >= pipe.samples_seen:
        raise SignalError(f"{path}: channel {channel!r} is NaN throughout", channel=channel)
    if pipe.is_flat:
        raise SignalError(f"{path}: channel {channel!r} is flat (one constant value) "
                          "throughout: check the electrodes and the channel choice (--emg)",
                          channel=channel)
    if pipe.nan_samples:
        log.warning("%s: %d EMG samples of channel %r were NaN or infinite: taken as no data",
                    path, pipe.nan_samples, channel)


def _collect_sites(events, results: dict, on_event) -> None:
    for site, ev in events:
        if on_event is not None:
            on_event(site, ev)
        if isinstance(ev, EpisodeEnded):
            results[site].episodes.append(ev.episode)


def _watched_by_capture(path: str) -> dict:
    """``{channel label: site}`` that the capture daemon watched live, from a
    capture recording's header (``{}`` for other files or older captures)."""
    from crampwatch.firmware_bridge.readers import sniff_format
    try:
        if sniff_format(str(path)) != "capture":
            return {}
        with open_recording(path) as reader:
            extra = (getattr(reader, "header", None) or {}).get("extra") or {}
    except Exception:           # the replay itself reports what is wrong with the file
        return {}
    mapping = extra.get("detector_channels")
    if not isinstance(mapping, dict):
        return {}
    return {str(k)[:200]: normalize_site(v) for k, v in list(mapping.items())[:64]
            if isinstance(v, str)}


def parse_emg(text: str | None):
    """``--emg``: None, ``"all"``, one label, or ``"A,B"`` (a list of labels)."""
    if text is None:
        return None
    if text.strip().lower() == "all":
        return "all"
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"--emg {text!r}: give a channel label, several separated by commas, "
                          "or 'all'", key="emg")
    return parts if len(parts) > 1 else text.strip()


def parse_acc_labels(text: str | None):
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) != 3:
        raise ConfigError(f"--acc {text!r}: give three labels separated by commas (X,Y,Z)")
    return parts


def local_str(dt: datetime) -> str:
    """A timestamp as people read it: local time with the UTC offset."""
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S%z")
