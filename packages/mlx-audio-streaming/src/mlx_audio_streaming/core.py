"""The pieces every stage shares: StreamChunk, StreamingContext and AudioRingBuffer."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import mlx.core as mx
import numpy as np


@dataclass
class StreamChunk:
    """A piece of audio moving through a pipeline.

    Attributes:
        audio: ``mx.array`` shaped ``[channels, samples]`` (channels first, as in the seed's
            custom-processor example), or ``[stems, channels, samples]`` after a separator.
        sample_rate: Sample rate in Hz.
        channels: Number of channels.
    """

    audio: mx.array
    sample_rate: int
    channels: int

    @property
    def num_frames(self) -> int:
        """Samples per channel in this chunk."""
        return int(self.audio.shape[-1])

    @property
    def duration(self) -> float:
        """Length of this chunk in seconds."""
        return self.num_frames / self.sample_rate


@dataclass
class StreamingContext:
    """Shared settings of a stream: rate, channel count and chunk size (in frames)."""

    sample_rate: int = 44100
    channels: int = 2
    chunk_size: int = 1024

    @property
    def chunk_duration_ms(self) -> float:
        """Duration of one chunk in milliseconds."""
        return 1000.0 * self.chunk_size / self.sample_rate


class AudioRingBuffer:
    """Fixed-capacity FIFO of multichannel audio for one writer and one reader thread.

    Storage is allocated once; ``write`` and ``read`` copy into and out of it under a lock.
    Audio goes in and comes out channels first, ``[channels, samples]``.
    """

    def __init__(self, capacity: int, channels: int):
        if capacity < 1 or channels < 1:
            raise ValueError(f"capacity and channels must be >= 1, got {capacity}, {channels}")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._data = np.zeros((self.channels, self.capacity), dtype=np.float32)
        self._start = 0
        self._count = 0
        self._lock = threading.Lock()

    @property
    def available(self) -> int:
        """Frames ready to read."""
        return self._count

    @property
    def free(self) -> int:
        """Frames that can be written without overflowing."""
        return self.capacity - self._count

    def write(self, audio) -> int:
        """Appends ``[channels, n]`` audio (mx or NumPy; 1-D for one channel).

        Returns:
            Frames written: fewer than n when the buffer is full (the rest is dropped).
        """
        data = np.asarray(audio, dtype=np.float32)
        if data.ndim == 1:
            data = data[None, :]
        if data.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got shape {data.shape}")
        with self._lock:
            n = min(data.shape[1], self.capacity - self._count)
            end = (self._start + self._count) % self.capacity
            first = min(n, self.capacity - end)
            self._data[:, end : end + first] = data[:, :first]
            self._data[:, : n - first] = data[:, first:n]
            self._count += n
        return n

    def read(self, num_frames: int) -> mx.array:
        """Removes and returns up to ``num_frames`` frames as ``[channels, n]``."""
        with self._lock:
            n = min(int(num_frames), self._count)
            first = min(n, self.capacity - self._start)
            out = np.concatenate(
                [self._data[:, self._start : self._start + first], self._data[:, : n - first]],
                axis=1,
            )
            self._start = (self._start + n) % self.capacity
            self._count -= n
        return mx.array(out)

    def clear(self) -> None:
        """Drops everything buffered."""
        with self._lock:
            self._start = self._count = 0
