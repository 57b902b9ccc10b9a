"""The pieces every stage shares: StreamChunk, StreamingContext and AudioRingBuffer."""

from __future__ import annotations

import numbers
import threading
from dataclasses import dataclass

import mlx.core as mx
import numpy as np


def _count(name: str, value, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (Python or NumPy integers only: a float or a bool
    would be truncated or mistaken for a count)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _note(error: BaseException, text: str) -> None:
    """Attaches ``text`` to ``error`` as a note (``BaseException.add_note``, shown under its
    traceback; the same ``__notes__`` list on Python 3.10)."""
    if hasattr(error, "add_note"):
        error.add_note(text)
    else:
        error.__notes__ = [*getattr(error, "__notes__", []), text]


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

    def __post_init__(self):
        for name in ("sample_rate", "channels", "chunk_size"):
            setattr(self, name, _count(name, getattr(self, name), 1))

    @property
    def chunk_duration_ms(self) -> float:
        """Duration of one chunk in milliseconds."""
        return 1000.0 * self.chunk_size / self.sample_rate


class AudioRingBuffer:
    """Fixed-capacity FIFO of multichannel audio for one writer and one reader thread.

    Storage is allocated once; ``write`` and ``read`` copy into and out of it under a lock.
    Audio goes in and comes out channels first, ``[channels, samples]``, float32.

    Args:
        capacity: Frames it holds, an int >= 1.
        channels: Channels of the audio, an int >= 1.

    Raises:
        ValueError: ``capacity`` or ``channels`` is not an int >= 1.
    """

    def __init__(self, capacity: int, channels: int):
        self.capacity = _count("capacity", capacity, 1)
        self.channels = _count("channels", channels, 1)
        try:
            self._data = np.zeros((self.channels, self.capacity), dtype=np.float32)
        except (MemoryError, ValueError) as e:
            raise ValueError(
                f"capacity x channels = {self.capacity} x {self.channels} frames is more "
                f"than memory holds ({4 * self.capacity * self.channels / 2**30:.3g} GiB): {e}"
            ) from e
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
        """Appends ``[channels, n]`` audio (mx or NumPy, real numbers; 1-D for one channel).

        Returns:
            Frames written: fewer than n when the buffer is full (the rest is dropped).

        Raises:
            ValueError: Not numbers, not 1-D/2-D, or another channel count than the buffer's.
        """
        try:
            data = np.asarray(audio)
            if data.dtype.kind not in "biuf":  # complex would lose its imaginary part
                raise TypeError(f"dtype {data.dtype}")
            data = data.astype(np.float32, copy=False)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"audio must be a real-valued [channels, samples] array, got "
                f"{type(audio).__name__} ({e})"
            ) from e
        if data.ndim == 1:
            data = data[None, :]
        if data.ndim != 2 or data.shape[0] != self.channels:
            raise ValueError(
                f"audio must be [channels, samples] (1-D for one channel): expected "
                f"{self.channels} channels, got shape {data.shape}"
            )
        with self._lock:
            n = min(data.shape[1], self.capacity - self._count)
            end = (self._start + self._count) % self.capacity
            first = min(n, self.capacity - end)
            self._data[:, end : end + first] = data[:, :first]
            self._data[:, : n - first] = data[:, first:n]
            self._count += n
        return n

    def read(self, num_frames: int) -> mx.array:
        """Removes and returns up to ``num_frames`` frames as ``[channels, n]``.

        Raises:
            ValueError: ``num_frames`` is not an int >= 0.
        """
        num_frames = _count("num_frames", num_frames, 0)
        with self._lock:
            n = min(num_frames, self._count)
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
