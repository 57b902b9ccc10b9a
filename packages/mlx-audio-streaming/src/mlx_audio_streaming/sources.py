"""Sources: where a pipeline's audio comes from."""

from __future__ import annotations

from abc import ABC, abstractmethod

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np

from .core import StreamChunk


class AudioSource(ABC):
    """Yields chunks until the stream ends. ``sample_rate`` and ``channels`` are known before
    the first chunk."""

    sample_rate: int
    channels: int

    @abstractmethod
    def read(self) -> StreamChunk | None:
        """The next chunk, or None at the end of the stream."""

    def close(self) -> None:
        """Releases what the source holds (files, devices)."""

    def reset(self) -> None:
        """Starts the stream over, where the source allows it."""


def _channels_first(audio, channels: int) -> mx.array:
    """Any [channels, n] / [n] / [n, channels] chunk as an mx.array [channels, n]."""
    arr = audio if isinstance(audio, mx.array) else mx.array(np.asarray(audio, np.float32))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.shape[0] != channels and arr.ndim == 2 and arr.shape[1] == channels:
        arr = arr.T
    if arr.ndim != 2 or arr.shape[0] != channels:
        raise ValueError(f"expected chunks of {channels} channel(s), got shape {tuple(arr.shape)}")
    return arr.astype(mx.float32) if arr.dtype != mx.float32 else arr


class FileSource(AudioSource):
    """Reads any file mlx-audio-io decodes, in chunks of ``chunk_size`` frames.

    Args:
        path: The file (or bytes / a binary file object, as mlx_audio_io.load takes).
        chunk_size: Frames per chunk, at the output rate.
        sample_rate: Resample to this rate (band-limited); None keeps the file's.
    """

    def __init__(self, path, chunk_size: int = 4096, sample_rate: int | None = None):
        self.path = path
        self.chunk_size = int(chunk_size)
        self._target = sample_rate
        self._reader = None
        self._open()

    def _open(self) -> None:
        self._reader = aio.stream(self.path, chunk_frames=self.chunk_size, sr=self._target)
        self.sample_rate = self._reader.sample_rate
        self.channels = self._reader.channels

    def read(self) -> StreamChunk | None:
        chunk = self._reader.read_chunk()
        if chunk is None:
            return None
        return StreamChunk(chunk.T, self.sample_rate, self.channels)

    def close(self) -> None:
        self._reader.close()

    def reset(self) -> None:
        self._reader.close()
        self._open()


class CallbackSource(AudioSource):
    """Audio from Python: ``callback`` is a generator function (or any callable returning an
    iterable) yielding chunks as NumPy or mx arrays, ``[channels, samples]``.

    Args:
        callback: The generator function; called again on :meth:`reset`.
        sample_rate: Rate of the audio it yields, in Hz.
        channels: Channels of the audio it yields.
    """

    def __init__(self, callback, sample_rate: int = 44100, channels: int = 2):
        self.callback = callback
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self._it = iter(callback())

    def read(self) -> StreamChunk | None:
        try:
            audio = next(self._it)
        except StopIteration:
            return None
        return StreamChunk(_channels_first(audio, self.channels), self.sample_rate, self.channels)

    def reset(self) -> None:
        self._it = iter(self.callback())
