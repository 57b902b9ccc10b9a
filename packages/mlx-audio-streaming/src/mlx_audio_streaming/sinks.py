"""Sinks: where a pipeline's audio goes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np

from .core import StreamChunk


class AudioSink(ABC):
    """Receives chunks; :meth:`close` finishes the output."""

    @abstractmethod
    def write(self, chunk: StreamChunk) -> None:
        """Takes one chunk."""

    def close(self) -> None:
        """Finishes the output (flushes files, drains devices)."""


def _select(chunk: StreamChunk, stem_index: int | None) -> np.ndarray:
    """The chunk as float32 [samples, channels], one stem of a [stems, channels, n] chunk."""
    audio = chunk.audio
    if stem_index is not None:
        if audio.ndim != 3:
            raise ValueError(
                f"stem_index={stem_index} needs [stems, channels, samples] chunks, "
                f"got shape {tuple(audio.shape)}"
            )
        audio = audio[stem_index]
    if audio.ndim != 2:
        raise ValueError(f"expected [channels, samples] chunks, got shape {tuple(audio.shape)}")
    return np.asarray(audio.astype(mx.float32)).T


class FileSink(AudioSink):
    """Writes the stream to a file in any format mlx-audio-io saves, chunk by chunk
    (``mlx_audio_io.AudioWriter``): if the process dies mid-stream, the file holds what was
    written (WAV up to the last chunk, FLAC/MP3/Ogg up to the last encoded packet; M4A needs
    the stream to end to write its index).

    Args:
        path: Output file; the extension picks the format.
        stem_index: With a separator upstream ([stems, channels, samples] chunks), the stem to
            write.
        sample_rate: Resample to this rate before writing; None keeps the stream's. Resampling
            needs the whole stream, so it then writes when the stream ends.
    """

    def __init__(
        self, path, stem_index: int | None = None, sample_rate: int | None = None, **save_options
    ):
        self.path = Path(path)
        self.stem_index = stem_index
        self.sample_rate = sample_rate
        self.save_options = save_options
        self._writer = None
        self._held: list[np.ndarray] = []
        self._rate = None

    def write(self, chunk: StreamChunk) -> None:
        frames = _select(chunk, self.stem_index)
        self._rate = chunk.sample_rate
        if self.sample_rate not in (None, self._rate):
            self._held.append(frames)
            return
        if self._writer is None:
            self._writer = aio.AudioWriter(
                self.path, self._rate, frames.shape[1], **self.save_options
            )
        self._writer.write(frames, layout="channels_last")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._held:
            audio = np.asarray(
                aio.resample(np.concatenate(self._held), self._rate, self.sample_rate)
            )
            aio.save(
                self.path, audio, self.sample_rate, layout="channels_last", **self.save_options
            )
            self._held = []


class MultiFileSink(AudioSink):
    """Writes each stem of [stems, channels, samples] chunks to ``output_dir/<name>.wav``."""

    def __init__(self, output_dir, stem_names, format: str = "wav"):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.stem_names = list(stem_names)
        self.sinks = [
            FileSink(self.output_dir / f"{name}.{format}", stem_index=i)
            for i, name in enumerate(self.stem_names)
        ]

    def write(self, chunk: StreamChunk) -> None:
        if chunk.audio.ndim != 3 or chunk.audio.shape[0] != len(self.stem_names):
            raise ValueError(
                f"expected [{len(self.stem_names)} stems, channels, samples] chunks, "
                f"got shape {tuple(chunk.audio.shape)}"
            )
        for sink in self.sinks:
            sink.write(chunk)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class CallbackSink(AudioSink):
    """Calls ``callback(audio_chunk, sample_rate, channels)`` for every chunk."""

    def __init__(self, callback):
        self.callback = callback

    def write(self, chunk: StreamChunk) -> None:
        self.callback(chunk.audio, chunk.sample_rate, chunk.channels)
