"""HTDemucsStreamProcessor: HTDemucs source separation on a stream, with the output of the
offline ``apply_model(shifts=0, split=True)``.

The stream is cut into the same overlapping windows as ``apply_model`` (``segment_length``
seconds every ``(1 - overlap) * segment_length``), each window's stems are weighted by the
same triangle and blended. A sample leaves the processor once every window that covers it
has run, so the result does not depend on how the stream was chunked; the windows at the end,
shorter than ``segment_length``, run in :meth:`~HTDemucsStreamProcessor.flush` once the
stream's length is known, padded with real audio before them as ``apply_model`` pads them.
"""

from __future__ import annotations

import mlx_audio_io.nn as fnn

import mlx.core as mx
import numpy as np

from .core import StreamChunk
from .processors import StreamProcessor

_INSTALL_HINT = (
    "HTDemucsStreamProcessor needs the separation models: pip install mlx-audio-streaming[sts]"
)

try:
    from mlx_audio_sts.models.htdemucs.apply import _center_trim, _triangle, separate_segment
    from mlx_audio_sts.models.htdemucs.config import to_fraction
except ModuleNotFoundError as e:  # only a missing mlx-audio-sts gets the hint
    if (e.name or "").split(".")[0] != "mlx_audio_sts":
        raise
    raise ImportError(_INSTALL_HINT) from e


class HTDemucsStreamProcessor(StreamProcessor):
    """Separates a stream into the model's sources (drums, bass, other, vocals for HTDemucs).

    Input chunks are ``[channels, samples]`` float32 at ``model.samplerate``; mono is
    duplicated to the model's channels, as demucs does. Output chunks are
    ``[sources * channels, samples]``, stems flattened stem-major (row ``s * channels + c``
    is channel ``c`` of ``sources[s]``), with ``StreamChunk.channels`` the channels per stem:
    ``FileSink(stem_index=s)``, ``MultiFileSink(stem_names=...)`` and
    ``SpeakerSink(stem_index=s)`` take them apart. Output chunks have varying lengths (often
    0 samples while the first window fills); the pipeline calls :meth:`flush` at the end of
    the stream for the rest, so the output is exactly as long as the input.

    Over a whole stream the output equals ``apply_model(model, mix, shifts=0, split=True,
    overlap=overlap, segment=segment_length)`` to float32 rounding, whatever the chunk sizes.

    Args:
        model: An ``HTDemucs`` or ``BagOfModels`` from ``mlx_audio_sts.models.htdemucs``.
        segment_length: Seconds per window, at most ``model.segment`` (7.8 s for the
            released HTDemucs models). Shorter windows lower the latency and cost quality.
        overlap: Fraction of a window shared with the next, in ``[0, 1)``.

    Raises:
        ValueError: ``segment_length`` is not in ``(0, model.segment]``, or ``overlap`` is not
            in ``[0, 1)``.
    """

    def __init__(self, model, segment_length: float = 6.0, overlap: float = 0.25):
        super().__init__()
        segment = to_fraction(segment_length)
        if not 0 < segment <= model.segment:
            raise ValueError(
                f"segment_length must be in (0, {float(model.segment)}] seconds (the model's "
                f"segment), got {segment_length!r}"
            )
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
        self.model = model
        self.segment_length = segment_length
        self.overlap = overlap
        self._segment = segment
        self.sample_rate = int(model.samplerate)
        self.channels = int(model.audio_channels)
        self.window = int(model.samplerate * segment)  # samples, as apply_model rounds them
        self.stride = int((1 - overlap) * self.window)
        if self.stride < 1:
            raise ValueError(
                f"segment_length={segment_length!r} with overlap={overlap!r} leaves no stride "
                f"at {self.sample_rate} Hz; use a longer segment or a smaller overlap"
            )
        self._weight = _triangle(self.window, 1.0)
        # MLX streams are per thread: weights still lazy (a freshly built model) could not
        # be evaluated on the pipeline's processor thread
        for sub in getattr(model, "models", [model]):
            mx.eval(sub.parameters())
        self.reset()

    @property
    def sources(self) -> list[str]:
        """The model's source names, in output order."""
        return list(self.model.sources)

    @property
    def stem_names(self) -> list[str]:
        """Same as :attr:`sources` (the names ``MultiFileSink(stem_names=...)`` takes)."""
        return self.sources

    @property
    def latency_seconds(self) -> float:
        """The longest delay, in seconds of stream, between a sample entering and its stems
        leaving: ``segment_length`` (as whole samples). A sample at offset ``t`` is final
        once the last window covering it, starting at ``stride * (t // stride)``, has run,
        which needs the input up to that window's end; the first sample of each stride waits
        a full window, the last ``segment_length * overlap`` plus one sample. Chunking and
        compute time come on top."""
        return self.window / self.sample_rate

    def reset(self) -> None:
        """Forgets the stream: the next chunk starts a new one at sample 0."""
        cache = getattr(self, "_cache", None)
        if cache is not None:  # the stream's buffers go back (see _run_window)
            cache.close()
        self._cache: fnn.buffer_cache | None = None
        self._in_channels: int | None = None
        self._pending: list[np.ndarray] = []  # input not yet joined to _input
        self._input = np.zeros((self.channels, 0), np.float32)
        self._input_start = 0  # stream index of _input[:, 0]
        self._received = 0
        self._next = 0  # index of the next window to run
        self._acc = np.zeros((len(self.sources), self.channels, 0), np.float32)
        self._acc_weight = np.zeros((0,), np.float32)
        self._emitted = 0  # stream index of _acc[..., 0]

    def process(self, chunk: StreamChunk) -> StreamChunk:
        """Takes ``[channels, samples]`` audio; returns the stems that became final,
        ``[sources * channels, n]`` (``n`` may be 0).

        Raises:
            ValueError: Wrong sample rate, or a channel count the model cannot take.
        """
        audio = self._check(chunk)
        self._pending.append(audio)
        self._received += audio.shape[1]
        while self._next * self.stride + self.window <= self._received:
            self._join()
            self._run_window(self._next * self.stride, self._received)
            self._next += 1
        # samples before the next window's start are covered by no window still to run
        return self._emit(min(self._next * self.stride, self._received))

    def flush(self) -> StreamChunk | None:
        """Runs the windows that reach past the end of the stream, now that its length is
        known, and returns every sample still held (None for an empty stream). The
        processor is then ready for a new stream."""
        total = self._received
        if total == 0:
            self.reset()
            return None
        self._join()
        while self._next * self.stride < total:
            self._run_window(self._next * self.stride, total)
            self._next += 1
        out = self._emit(total)
        self.reset()
        return out

    def _check(self, chunk: StreamChunk) -> np.ndarray:
        if chunk.sample_rate != self.sample_rate:
            raise ValueError(
                f"HTDemucsStreamProcessor needs {self.sample_rate} Hz audio (the model's "
                f"rate), got {chunk.sample_rate} Hz; resample at the source, e.g. "
                f"FileSource(path, sample_rate={self.sample_rate})"
            )
        audio = np.asarray(chunk.audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None, :]
        if audio.ndim != 2:
            raise ValueError(f"expected [channels, samples] chunks, got shape {audio.shape}")
        if self._in_channels is None:
            if audio.shape[0] not in (1, self.channels):
                raise ValueError(
                    f"the model separates {self.channels}-channel audio (mono is duplicated), "
                    f"got {audio.shape[0]} channels"
                )
            self._in_channels = audio.shape[0]
        elif audio.shape[0] != self._in_channels:
            raise ValueError(
                f"the stream started with {self._in_channels} channel(s), got a chunk of "
                f"{audio.shape[0]}; reset() between streams"
            )
        if audio.shape[0] != self.channels:
            audio = np.repeat(audio, self.channels, axis=0)
        return audio

    def _join(self) -> None:
        """Appends pending chunks to the input and drops what no window needs any more."""
        if self._pending:
            self._input = np.concatenate([self._input, *self._pending], axis=1)
            self._pending = []
        # a short window at offset o reads back to o - (window - n) // 2 >= o - window // 2
        keep = max(self._input_start, self._next * self.stride - self.window // 2)
        self._input = self._input[:, keep - self._input_start :]
        self._input_start = keep

    def _run_window(self, offset: int, total: int) -> None:
        """Runs the window at ``offset`` of a stream of at least (or, at the end, exactly)
        ``total`` samples and adds its weighted stems to the accumulator."""
        n = min(self.window, total - offset)
        # apply_model pads a short window symmetrically with real audio around it, and
        # zeros past the stream's ends (demucs' TensorChunk.padded)
        start = offset - (self.window - n) // 2
        lo, hi = max(0, start), min(total, start + self.window)
        part = self._input[:, lo - self._input_start : hi - self._input_start]
        if hi - lo != self.window:
            part = np.pad(part, [(0, 0), (lo - start, start + self.window - hi)])
        if self._cache is None:  # windows reuse each other's MLX buffers until the stream ends
            self._cache = fnn.buffer_cache().__enter__()
        res = separate_segment(self.model, part[None], segment=self._segment)[0]
        res = _center_trim(res, n)  # [sources, channels, n]
        end = offset + n - self._emitted
        grow = end - self._acc.shape[-1]
        if grow > 0:
            self._acc = np.concatenate(
                [self._acc, np.zeros(self._acc.shape[:2] + (grow,), np.float32)], axis=-1
            )
            self._acc_weight = np.concatenate([self._acc_weight, np.zeros(grow, np.float32)])
        self._acc[..., end - n : end] += self._weight[:n] * res
        self._acc_weight[end - n : end] += self._weight[:n]

    def _emit(self, upto: int) -> StreamChunk:
        k = upto - self._emitted
        out = self._acc[..., :k] / self._acc_weight[:k]
        self._acc, self._acc_weight = self._acc[..., k:], self._acc_weight[k:]
        self._emitted = upto
        flat = out.reshape(out.shape[0] * out.shape[1], k)  # stem-major rows
        return StreamChunk(mx.array(flat), self.sample_rate, self.channels)
