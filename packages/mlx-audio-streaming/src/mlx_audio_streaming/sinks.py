"""Sinks: where a pipeline's audio goes."""

from __future__ import annotations

import os
import struct
from abc import ABC, abstractmethod
from pathlib import Path

import mlx.core as mx
import mlx_audio_io as aio
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


class _WavStream:
    """A float32 WAV written chunk by chunk whose header is rewritten after each chunk, so the
    file is valid up to the last chunk written even if the process dies."""

    def __init__(self, path: Path, sample_rate: int, channels: int):
        self.f = open(path, "wb")  # noqa: SIM115  (closed in close())
        self.sample_rate, self.channels, self.frames = sample_rate, channels, 0
        self._header()

    def _header(self) -> None:
        data = self.frames * self.channels * 4
        block = self.channels * 4
        fmt = struct.pack(
            "<HHIIHH", 3, self.channels, self.sample_rate, self.sample_rate * block, block, 32
        )
        head = (
            b"RIFF"
            + struct.pack("<I", 36 + data)
            + b"WAVE"
            + b"fmt "
            + struct.pack("<I", 16)
            + fmt
            + b"data"
            + struct.pack("<I", data)
        )
        self.f.seek(0)
        self.f.write(head)
        self.f.seek(0, os.SEEK_END)

    def write(self, frames: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(frames, dtype="<f4").tobytes())
        self.frames += frames.shape[0]
        self._header()
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class FileSink(AudioSink):
    """Writes the stream to a file in any format mlx-audio-io saves.

    WAV is written incrementally (the header is kept valid after every chunk). Other formats are
    encoded when the stream closes (the chunks are held until then).

    Args:
        path: Output file; the extension picks the format.
        stem_index: With a separator upstream ([stems, channels, samples] chunks), the stem to
            write.
        sample_rate: Resample to this rate before writing; None keeps the stream's.
    """

    def __init__(self, path, stem_index: int | None = None, sample_rate: int | None = None):
        self.path = Path(path)
        self.stem_index = stem_index
        self.sample_rate = sample_rate
        self._wav = None
        self._held: list[np.ndarray] = []
        self._rate = None

    def write(self, chunk: StreamChunk) -> None:
        frames = _select(chunk, self.stem_index)
        self._rate = chunk.sample_rate
        if self.path.suffix.lower() in (".wav", ".wave") and self.sample_rate in (None, self._rate):
            if self._wav is None:
                self._wav = _WavStream(self.path, self._rate, frames.shape[1])
            self._wav.write(frames)
        else:
            self._held.append(frames)

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
        if self._held:
            audio = np.concatenate(self._held)
            rate = self._rate
            if self.sample_rate not in (None, rate):
                audio, rate = (
                    np.asarray(aio.resample(audio, rate, self.sample_rate)),
                    self.sample_rate,
                )
            aio.save(self.path, audio, rate, layout="channels_last")
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
