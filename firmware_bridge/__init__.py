"""Everything that brings samples in: wire protocols, transports, sources
opened by URL, the board simulator, the synthetic night and recording readers
and writers.  It knows nothing of cramps."""

from crampwatch.firmware_bridge.types import SampleBlock, SourceEvent, StreamInfo

__all__ = ["SampleBlock", "SourceEvent", "StreamInfo"]
