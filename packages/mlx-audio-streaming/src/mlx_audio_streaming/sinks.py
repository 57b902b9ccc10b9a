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


def _stem_count(chunk: StreamChunk) -> int | None:
    """Stems in a separator's chunk: ``[stems, channels, n]``, or ``[stems * channels, n]``
    (flattened stem-major, ``chunk.channels`` per stem, as HTDemucsStreamProcessor emits);
    None when the chunk holds no stems."""
    shape = chunk.audio.shape
    if len(shape) == 3:
        return int(shape[0])
    if len(shape) == 2 and chunk.channels > 0 and shape[0] % chunk.channels == 0:
        return int(shape[0]) // chunk.channels
    return None


def _select(chunk: StreamChunk, stem_index: int | None) -> np.ndarray:
    """The chunk as float32 [samples, channels]; with ``stem_index``, that stem of a
    [stems, channels, n] or flattened [stems * channels, n] chunk."""
    audio = chunk.audio
    if stem_index is not None:
        stems = _stem_count(chunk)
        if stems is None or not -stems <= stem_index < stems:
            raise ValueError(
                f"stem_index={stem_index} needs [stems, channels, samples] or "
                f"[stems * channels, samples] chunks with that many stems, got shape "
                f"{tuple(audio.shape)} with {chunk.channels} channel(s) per stem"
            )
        if audio.ndim == 3:
            audio = audio[stem_index]
        else:
            s = stem_index % stems
            audio = audio[s * chunk.channels : (s + 1) * chunk.channels]
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
        stem_index: With a separator upstream (``[stems, channels, samples]`` chunks, or
            ``[stems * channels, samples]`` ones with ``chunk.channels`` per stem, as
            HTDemucsStreamProcessor emits), the stem to write: 3 is vocals for HTDemucs.
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
    """Writes each stem of a separator's chunks to ``output_dir/<name>.<format>``.

    Args:
        output_dir: Folder for the files (created if missing).
        stem_names: One name per stem, in the separator's order
            (``HTDemucsStreamProcessor.stem_names``).
        format: File extension, which picks the format.
        **save_options: Passed to each FileSink (``encoding="float32"``, ``bitrate=``, ...).
    """

    def __init__(self, output_dir, stem_names, format: str = "wav", **save_options):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.stem_names = list(stem_names)
        self.sinks = [
            FileSink(self.output_dir / f"{name}.{format}", stem_index=i, **save_options)
            for i, name in enumerate(self.stem_names)
        ]

    def write(self, chunk: StreamChunk) -> None:
        if _stem_count(chunk) != len(self.stem_names):
            raise ValueError(
                f"expected [{len(self.stem_names)} stems, channels, samples] or "
                f"[{len(self.stem_names)} stems * channels, samples] chunks, got shape "
                f"{tuple(chunk.audio.shape)} with {chunk.channels} channel(s) per stem"
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
