"""Streamed audio: the pieces models yield while they generate, re-cut into chunks of a
chosen duration (:class:`Rechunker`), and the seed's "processed mode"
(:class:`StreamingAudioProcessor`, crossfades between chunks)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["AudioPiece", "Rechunker", "StreamingAudioProcessor"]


@dataclass
class AudioPiece:
    """Audio a model has finished while generating.

    Attributes:
        audio: float32 samples, 1-D (mono), possibly empty.
        segment: Index of the text segment it belongs to.
        text: That segment's text.
        last: Nothing follows it (the last piece of the last segment).
        segment_end: The last piece of its segment.
    """

    audio: np.ndarray
    segment: int
    text: str
    last: bool
    segment_end: bool = False


class Rechunker:
    """Re-cuts a stream of audio pieces into chunks of ``chunk_samples``.

    Args:
        chunk_samples: Samples per chunk (> 0).
        first_now: Release all of the first non-empty piece at once, its end as a shorter
            chunk (for the lowest latency) instead of waiting for a whole chunk.
    """

    def __init__(self, chunk_samples: int, first_now: bool = False):
        if chunk_samples <= 0:
            raise ValueError(f"chunk_samples must be > 0, got {chunk_samples}")
        self.chunk_samples, self.first_now = int(chunk_samples), first_now
        self._buf = np.zeros(0, np.float32)
        self._started = False

    def push(self, audio: np.ndarray) -> list[np.ndarray]:
        """Adds samples; returns the chunks now complete."""
        if not len(audio):
            return []
        buf = np.concatenate([self._buf, audio]) if len(self._buf) else audio
        n = self.chunk_samples
        whole = len(buf) - len(buf) % n
        if self.first_now and not self._started:
            whole = len(buf)
        self._started = True
        self._buf = buf[whole:]
        return [buf[i : min(i + n, whole)] for i in range(0, whole, n)]

    def flush(self) -> np.ndarray:
        """Everything still buffered (possibly empty)."""
        out, self._buf = self._buf, np.zeros(0, np.float32)
        return out


def _as_samples(chunk) -> np.ndarray:
    a = np.asarray(chunk, dtype=np.float32)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"a chunk must be mono samples ([n] or [n, 1]), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("a chunk holds NaN or infinite samples")
    return a


class StreamingAudioProcessor:
    """The seed's "processed mode": consecutive chunks overlap by ``crossfade_ms`` and are
    crossfaded (linear, equal-gain: the chunks continue one signal), which hides clicks at
    chunk boundaries at the price of ``crossfade_ms`` per boundary (the output is that much
    shorter) and a slightly softer sound there. Clean mode (plain concatenation of
    :func:`mlx_audio_tts.generate.generate_audio_streaming`'s chunks) is exact.

    Args:
        crossfade_ms: Overlap per boundary in milliseconds (0: plain concatenation).
        sample_rate: Rate of the chunks (24000 for the package's models).
        keep: Keep the processed audio for :meth:`get_concatenated_audio` (False for endless
            streams).

    Raises:
        ValueError: Negative or non-finite ``crossfade_ms``, bad ``sample_rate``.
    """

    def __init__(self, crossfade_ms: float = 10.0, sample_rate: int = 24000, keep: bool = True):
        if not np.isfinite(crossfade_ms) or crossfade_ms < 0:
            raise ValueError(f"crossfade_ms must be a finite number >= 0, got {crossfade_ms!r}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        self.crossfade_ms, self.sample_rate, self.keep = float(crossfade_ms), sample_rate, keep
        self.fade = int(round(crossfade_ms * sample_rate / 1000))
        self.reset()

    def reset(self) -> None:
        """Forgets every chunk (a new stream)."""
        self._tail = np.zeros(0, np.float32)
        self._out: list[np.ndarray] = []

    def process_chunk(self, chunk) -> np.ndarray:
        """Crossfades ``chunk`` (``[n]`` or ``[n, 1]`` float samples) into the stream and
        returns the audio now final: all but the last ``crossfade_ms``, which wait to be
        crossfaded with the next chunk (see :meth:`flush`)."""
        x = _as_samples(chunk)
        tail, n = self._tail, min(len(self._tail), len(x))
        if n:
            ramp = (np.arange(1, n + 1, dtype=np.float32) / (n + 1)).astype(np.float32)
            blended = tail[len(tail) - n :] * (1 - ramp) + x[:n] * ramp
            x = np.concatenate([tail[: len(tail) - n], blended, x[n:]])
        elif len(tail):
            x = np.concatenate([tail, x])
        cut = max(0, len(x) - self.fade)
        out, self._tail = x[:cut], x[cut:]
        if self.keep:
            self._out.append(out)
        return out

    def flush(self) -> np.ndarray:
        """The held-back end of the stream (call after the last chunk)."""
        out, self._tail = self._tail, np.zeros(0, np.float32)
        if self.keep:
            self._out.append(out)
        return out

    def get_concatenated_audio(self) -> np.ndarray:
        """All the processed audio so far, the held-back end included, as float32 ``[n]``."""
        if not self.keep:
            raise ValueError("this StreamingAudioProcessor was made with keep=False")
        return np.concatenate([*self._out, self._tail]) if self._out else self._tail.copy()

    def process(self, chunks: Iterable) -> Iterator[np.ndarray]:
        """``process_chunk`` over ``chunks``, then :meth:`flush`."""
        for chunk in chunks:
            yield self.process_chunk(chunk)
        yield self.flush()
