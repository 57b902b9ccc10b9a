"""Processors: StreamProcessor and the built-in ones."""

from __future__ import annotations

from abc import ABC, abstractmethod

import mlx.core as mx

from .core import StreamChunk


class StreamProcessor(ABC):
    """Turns one chunk into another. Subclass it and override :meth:`process` (and
    :meth:`reset` when the processor keeps state between chunks)."""

    def __init__(self):
        pass

    @abstractmethod
    def process(self, chunk: StreamChunk) -> StreamChunk:
        """Returns the processed chunk."""

    def reset(self) -> None:
        """Forgets state carried between chunks (call between streams)."""

    def flush(self) -> StreamChunk | None:
        """Audio still held when the stream ends (for processors with latency), or None."""
        return None


class IdentityProcessor(StreamProcessor):
    """Passes chunks through unchanged."""

    def process(self, chunk: StreamChunk) -> StreamChunk:
        return chunk


class GainProcessor(StreamProcessor):
    """Multiplies the audio by ``gain`` (linear), or by ``10 ** (gain_db / 20)``."""

    def __init__(self, gain: float = 1.0, gain_db: float | None = None):
        super().__init__()
        self.gain = float(10 ** (gain_db / 20) if gain_db is not None else gain)

    def process(self, chunk: StreamChunk) -> StreamChunk:
        return StreamChunk(chunk.audio * self.gain, chunk.sample_rate, chunk.channels)


class ProcessorChain(StreamProcessor):
    """Runs processors one after another; a list given to the pipeline becomes one."""

    def __init__(self, processors):
        super().__init__()
        self.processors = list(processors)

    def process(self, chunk: StreamChunk) -> StreamChunk:
        for p in self.processors:
            chunk = p.process(chunk)
        return chunk

    def reset(self) -> None:
        for p in self.processors:
            p.reset()

    def flush(self) -> StreamChunk | None:
        tail = None
        for i, p in enumerate(self.processors):
            held = p.flush()
            if held is not None:  # what a stage still held flows through the stages after it
                for q in self.processors[i + 1 :]:
                    held = q.process(held)
                tail = (
                    held
                    if tail is None
                    else StreamChunk(
                        mx.concatenate([tail.audio, held.audio], axis=-1),
                        held.sample_rate,
                        held.channels,
                    )
                )
        return tail
