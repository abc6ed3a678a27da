"""Samples in, episodes out: filters, envelope, features, signal quality,
classification and the episode assembler.  No file, port or database I/O."""

from crampwatch.detector.config import DetectorConfig
from crampwatch.detector.episodes import Episode, EpisodeAssembler, EpisodeEnded, EpisodeStarted
from crampwatch.detector.pipeline import Pipeline

__all__ = ["DetectorConfig", "Pipeline", "Episode", "EpisodeStarted", "EpisodeEnded",
           "EpisodeAssembler"]
