"""Sinks: where a pipeline's audio goes."""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from pathlib import Path

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np

from .core import StreamChunk, _note


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


def _chunk_rate(chunk: StreamChunk, where: str) -> int:
    """The chunk's sample rate, checked: a whole number of Hz > 0."""
    rate = chunk.sample_rate
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or rate <= 0:
        raise ValueError(f"{where}: chunk sample_rate must be an int > 0 (Hz), got {rate!r}")
    return int(rate)


def _close_all(sinks) -> None:
    """Closes every sink even when one fails, then raises the first failure (the later ones
    are added to it as notes): a sink left open may leave its file unfinished."""
    first = None
    for sink in sinks:
        try:
            sink.close()
        except Exception as e:  # keep closing the others; the first error is raised below
            if first is None:
                first = e
            else:
                _note(first, f"closing another sink failed too: {type(e).__name__}: {e}")
    if first is not None:
        raise first


class FileSink(AudioSink):
    """Writes the stream to a file in any format mlx-audio-io saves, chunk by chunk
    (``mlx_audio_io.AudioWriter``): if the process dies mid-stream, the file holds what was
    written (WAV up to the last chunk, FLAC/MP3/Ogg up to the last encoded packet; M4A needs
    the stream to end to write its index). If a write fails (a full disk), the error goes
    up and :meth:`close` still finishes the file with what was written before it.

    The file's rate is the stream's: every chunk must carry the rate of the first one
    (``StreamChunk.sample_rate``); a chunk at another rate is a ``ValueError``, never
    written at the wrong speed.

    Args:
        path: Output file; the extension picks the format.
        stem_index: With a separator upstream (``[stems, channels, samples]`` chunks, or
            ``[stems * channels, samples]`` ones with ``chunk.channels`` per stem, as
            HTDemucsStreamProcessor emits), the stem to write: 3 is vocals for HTDemucs.
        sample_rate: Resample to this rate before writing; None keeps the stream's. Resampling
            needs the whole stream, so it then writes when the stream ends.
        **save_options: Passed to ``AudioWriter`` (``encoding="float32"``, ``bitrate=``, ...).

    Raises:
        ValueError: ``sample_rate`` is not an int > 0; in :meth:`write`, a chunk whose rate
            or channel count differs from the first chunk's.
    """

    def __init__(
        self, path, stem_index: int | None = None, sample_rate: int | None = None, **save_options
    ):
        self.path = Path(path)
        if sample_rate is not None and (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, numbers.Integral)
            or sample_rate <= 0
        ):
            raise ValueError(f"sample_rate must be None or an int > 0 (Hz), got {sample_rate!r}")
        self.stem_index = stem_index
        self.sample_rate = None if sample_rate is None else int(sample_rate)
        self.save_options = save_options
        self._writer = None
        self._held: list[np.ndarray] = []
        self._rate = None  # the stream's rate and channels, set by the first chunk
        self._channels = None

    def write(self, chunk: StreamChunk) -> None:
        where = f"FileSink failed for '{self.path}'"
        rate = _chunk_rate(chunk, where)
        frames = _select(chunk, self.stem_index)
        if self._rate is None:
            self._rate, self._channels = rate, frames.shape[1]
        elif rate != self._rate:
            raise ValueError(
                f"{where}: the stream's first chunks were {self._rate} Hz, this one is "
                f"{rate} Hz; a file has one rate (resample upstream, e.g. FileSource(path, "
                f"sample_rate={self._rate}))"
            )
        elif frames.shape[1] != self._channels:
            raise ValueError(
                f"{where}: the stream's first chunks had {self._channels} channel(s), this "
                f"one has {frames.shape[1]}"
            )
        if self.sample_rate not in (None, self._rate):
            self._held.append(frames)
            return
        if self._writer is None:
            self._writer = aio.AudioWriter(
                self.path, self._rate, frames.shape[1], **self.save_options
            )
        self._writer.write(frames, layout="channels_last")  # its errors name the path

    def close(self) -> None:
        """Finishes the file with what was written (idempotent; after a failed write too)."""
        writer, self._writer = self._writer, None
        held, self._held = self._held, []
        if writer is not None:
            writer.close()
        if held:
            audio = np.asarray(aio.resample(np.concatenate(held), self._rate, self.sample_rate))
            aio.save(
                self.path, audio, self.sample_rate, layout="channels_last", **self.save_options
            )


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
        """Closes every stem's file, even when one fails (the first error is raised)."""
        _close_all(self.sinks)


class CallbackSink(AudioSink):
    """Calls ``callback(audio_chunk, sample_rate, channels)`` for every chunk."""

    def __init__(self, callback):
        self.callback = callback

    def write(self, chunk: StreamChunk) -> None:
        self.callback(chunk.audio, chunk.sample_rate, chunk.channels)
