"""Which EMG channels the detector watches, and the body site of each.

``[capture] channels`` names them (channel label -> site); without it the one
channel of ``emg_channel``, else the board's first EMG channel, is watched, its
site guessed from its label (:func:`crampwatch.sites.site_for`).  Labels are
matched case-insensitively against what the board announces when it connects.

Examples
--------
>>> from crampwatch.tools.capture.config import CaptureConfig
>>> cfg = CaptureConfig(channels={"emg r": "right_calf", "EMG L": "left_calf"})
>>> watched_channels(cfg, ("EMG L", "EMG R", "EMG 3"))
Watched(columns=[0, 1], labels=['EMG L', 'EMG R'], sites=['left_calf', 'right_calf'])
>>> watched_channels(CaptureConfig(), ("EMG L calf", "EMG R calf"))
Watched(columns=[0], labels=['EMG L calf'], sites=['left_calf'])
"""

from __future__ import annotations

from dataclasses import dataclass

from crampwatch.errors import ConfigError
from crampwatch.sites import site_for

__all__ = ["Watched", "watched_channels"]


@dataclass
class Watched:
    """The watched EMG channels, in the board's column order."""

    columns: list      # column of each in the board's EMG stream
    labels: list       # the board's label of each
    sites: list        # the body site of each (distinct)

    def site_of(self, label: str) -> str:
        return self.sites[self.labels.index(label)]


def watched_channels(cfg, board_labels) -> Watched:
    """The channels of ``board_labels`` that ``cfg`` (a CaptureConfig) watches.

    Raises
    ------
    ConfigError
        A configured label the board does not have (the message names it and
        the board's channels; ``key`` is the config key).
    """
    labels = [str(x) for x in board_labels]
    lower = [x.strip().lower() for x in labels]
    available = ", ".join(repr(x) for x in labels)
    if cfg.channels:
        missing = [k for k in cfg.channels if k.strip().lower() not in lower]
        if missing:
            raise ConfigError(
                f"config [capture] channels: the board has no EMG channel "
                f"{', '.join(repr(m) for m in missing)}; its EMG channels are {available}",
                key="channels")
        cols = sorted(lower.index(k.strip().lower()) for k in cfg.channels)
        sites = [site_for(labels[c], cfg.channels) for c in cols]
        return Watched(cols, [labels[c] for c in cols], sites)
    col = 0
    if cfg.emg_channel:
        if cfg.emg_channel.strip().lower() not in lower:
            raise ConfigError(
                f"config [capture] emg_channel={cfg.emg_channel!r}: the board's EMG channels "
                f"are {available}", key="emg_channel")
        col = lower.index(cfg.emg_channel.strip().lower())
    return Watched([col], [labels[col]], [site_for(labels[col])])
