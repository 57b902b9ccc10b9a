"""SAM-Audio inference: :func:`separate` (the official algorithm: encode, integrate the flow
from noise, decode target and residual), and the chunked :func:`separate_long` and
:func:`separate_streaming` (10 s chunks overlapping by 3 s, joined by a cosine crossfade)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)

import mlx.core as mx
import numpy as np

from .model import SAMAudio, SeparationResult, ode_grid
from .processor import Batch


def _batch(model: SAMAudio, audios, descriptions, anchors) -> Batch:
    if isinstance(audios, Batch):
        return audios
    return model.processor()(descriptions, audios, anchors)


def integrate(model: SAMAudio, cond: dict, noise: mx.array, ode_opt: dict | None,
              progress: Callable[[int, int], None] | None = None) -> mx.array:  # fmt: skip
    """Integrates the velocity from ``noise`` at t = 0 to t = 1 on torchdiffeq's fixed grid;
    ``progress(step, steps)`` after each step."""
    method, grid = ode_grid(ode_opt)
    x = noise
    for step, (t0, t1) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        dt = np.float32(t1 - t0)
        if method == "euler":
            x = x + model.velocity(cond, float(t0), x) * float(dt)
        else:
            half = np.float32(0.5) * dt
            mid = x + model.velocity(cond, float(t0), x) * float(half)
            x = x + model.velocity(cond, float(np.float32(t0 + half)), mid) * float(dt)
        mx.eval(x)
        if progress is not None:
            progress(step + 1, len(grid) - 1)
    return x


def _check_chunk_size(value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"ode_decode_chunk_size must be None or an int >= 1, got {value!r}")


def separate(model: SAMAudio, audios, descriptions=None, *, anchors=None, ode_opt=None,
             ode_decode_chunk_size: int | None = 50, sizes=None, noise=None,
             text_features=None, text_mask=None, message=None,
             progress=None) -> SeparationResult:  # fmt: skip
    """Separates the sound each description names from its audio.

    Args:
        model: The model.
        audios: Paths, arrays at 48 kHz, one ``[batch, 1, samples]`` array, or a
            :class:`~.processor.Batch` from ``SAMAudioProcessor``.
        descriptions: One text prompt per audio (ignored with a Batch).
        anchors: None, or per audio a list of ``("+" | "-", start_s, end_s)``.
        ode_opt: ``{"method": "midpoint" | "euler", "step_size": s}`` with 0 < s < 1;
            None is the official default, midpoint with 2/32 (16 steps, 32 evaluations).
        ode_decode_chunk_size: Decode this many frames (2 s at 50) at a time to bound
            memory; None decodes everything at once.
        sizes: Frames of each audio (``batch.sizes``); None computes them from the audio.
        noise: ``[batch, frames, 256]`` starting noise; None draws it with ``mx.random``.
        text_features, text_mask: Precomputed T5 features ``[batch, tokens, 768]`` and mask;
            None encodes the descriptions.
        message: ``[2 * batch, 16]`` watermark bits for the decoder; None draws them.
        progress: None, or ``progress(step, steps)`` called after each ODE step.

    Returns:
        A :class:`SeparationResult`: ``target`` and ``residual`` lists of ``[samples, 1]``
        arrays (each audio's own length), the ``noise``, and ``peak_memory`` in GB.

    Raises:
        ValueError: Bad inputs or options (before any work is done).
    """
    ode_grid(ode_opt)
    _check_chunk_size(ode_decode_chunk_size)
    mx.reset_peak_memory()
    batch = _batch(model, audios, descriptions, anchors)
    cond = model.conditioning(batch, text_features, text_mask)
    b, t = cond["base"].shape[0], cond["base"].shape[1]
    c = model.config.audio_codec.codebook_dim
    if noise is None:
        noise = mx.random.normal((b, t, 2 * c))
    elif tuple(noise.shape) != (b, t, 2 * c):
        raise ValueError(f"noise must have shape {(b, t, 2 * c)}, got {tuple(noise.shape)}")
    final = integrate(model, cond, noise, ode_opt, progress)
    # [B, T, 2c] -> [2B, T, c]: row 2i is item i's target, row 2i + 1 its residual
    stacked = final.reshape(b, t, 2, c).transpose(0, 2, 1, 3).reshape(2 * b, t, c)
    wavs = model.audio_codec.decode(stacked, message, chunk_size=ode_decode_chunk_size)
    mx.eval(wavs)
    frames = batch.sizes if sizes is None else [int(s) for s in np.asarray(sizes).reshape(-1)]
    lengths = [int(f) * model.hop_length for f in frames]
    target = [wavs[2 * i, : lengths[i]] for i in range(b)]
    residual = [wavs[2 * i + 1, : lengths[i]] for i in range(b)]
    return SeparationResult(target, residual, noise, peak_memory=mx.get_peak_memory() / 1e9,
                            sizes=list(frames))  # fmt: skip


def _check_chunks(model: SAMAudio, chunk_seconds, overlap_seconds, anchors) -> tuple[int, int]:
    if anchors is not None:
        raise ValueError(
            "anchors are supported by separate() only, not by separate_long() or "
            "separate_streaming(): chunked processing cannot place them"
        )
    for name, value in (("chunk_seconds", chunk_seconds), ("overlap_seconds", overlap_seconds)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    sr = model.sample_rate
    chunk, overlap = int(round(chunk_seconds * sr)), int(round(overlap_seconds * sr))
    if chunk < model.hop_length:
        raise ValueError(
            f"chunk_seconds must be at least {model.hop_length / sr} s, got {chunk_seconds!r}"
        )
    if not 0 <= overlap < chunk:
        raise ValueError(
            f"overlap_seconds must be >= 0 and below chunk_seconds ({chunk_seconds}), got "
            f"{overlap_seconds!r}"
        )
    return chunk, overlap


def chunk_starts(samples: int, chunk: int, overlap: int) -> list[int]:
    """Start samples of the chunks: every ``chunk - overlap`` samples, ``ceil((samples -
    overlap) / (chunk - overlap))`` of them (one when the audio fits in a chunk)."""
    if samples <= chunk:
        return [0]
    hop = chunk - overlap
    return [i * hop for i in range(math.ceil((samples - overlap) / hop))]


def _crossfade(tail: mx.array, head: mx.array) -> mx.array:
    n = tail.shape[0]
    fade_in = 0.5 * (1 - mx.cos(math.pi * mx.arange(n, dtype=mx.float32) / n))[:, None]
    return tail * (1 - fade_in) + head * fade_in


def _stream(model: SAMAudio, audio: np.ndarray, description: str, chunk: int, overlap: int,
            ode_opt, seed: int, verbose: bool, **kwargs) -> Iterator[SeparationResult]:  # fmt: skip
    """The chunks of one audio, each result's ``target``/``residual`` the samples that are
    final: the crossfaded overlap with the previous chunk, then the chunk up to the next
    overlap (to its end on the last chunk)."""
    mx.reset_peak_memory()
    starts = chunk_starts(audio.size, chunk, overlap)
    text_features, text_mask = kwargs.pop("text_features", None), kwargs.pop("text_mask", None)
    if text_features is None:
        text_features, text_mask = model.encode_text([description])
    held, noises, began = None, [], time.perf_counter()
    peak = mx.get_peak_memory() / 1e9  # separate() resets MLX's count: the stream's is the max
    for i, start in enumerate(starts):
        piece = audio[start : start + chunk]
        mx.random.seed(seed + i)
        out = separate(model, [piece], [description], ode_opt=ode_opt, text_features=text_features,
                       text_mask=text_mask, **kwargs)  # fmt: skip
        noises.append(out.noise)
        both = mx.concatenate([out.target[0][: piece.size], out.residual[0][: piece.size]], axis=1)
        last = i == len(starts) - 1
        if held is not None:
            both = mx.concatenate([_crossfade(held, both[:overlap]), both[overlap:]], axis=0)
        if not last and overlap:
            both, held = both[:-overlap], both[-overlap:]
        mx.eval(both)
        peak = max(peak, mx.get_peak_memory() / 1e9)
        if verbose:
            done = min(start + chunk, audio.size) / model.sample_rate
            print(f"SAM-Audio: chunk {i + 1}/{len(starts)} ({done:.1f} s of "
                  f"{audio.size / model.sample_rate:.1f} s), {time.perf_counter() - began:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
        yield SeparationResult(
            both[:, :1],
            both[:, 1:],
            mx.concatenate(noises, axis=1) if last else None,
            chunk_idx=i,
            is_last=last,
            peak_memory=peak if last else None,
        )


def _one_audio(model: SAMAudio, audios, descriptions) -> tuple[np.ndarray, str]:
    batch = model.processor()(descriptions, audios)
    if len(batch.descriptions) != 1:
        raise ValueError(
            f"separate_streaming takes one audio at a time, got {len(batch.descriptions)}"
        )
    return np.asarray(batch.audios[0, : batch.wav_sizes[0], 0]), batch.descriptions[0]


def separate_long(model: SAMAudio, audios, descriptions=None, *, chunk_seconds: float = 10.0,
                  overlap_seconds: float = 3.0, ode_opt=None, seed: int = 42,
                  verbose: bool = True, anchors=None, **kwargs) -> SeparationResult:  # fmt: skip
    """Separates long audio in chunks of ``chunk_seconds`` overlapping by ``overlap_seconds``,
    each with the noise of ``mx.random.seed(seed + i)``, joined by a cosine crossfade over
    the overlap; the text is encoded once. Every audio in ``audios`` is processed in turn.

    Args:
        model, audios, descriptions, ode_opt: As in :func:`separate`.
        chunk_seconds: Chunk length (training clips were about 10 s).
        overlap_seconds: Overlap of consecutive chunks, crossfaded.
        seed: Seed of the first chunk's noise (reproducible results).
        verbose: Print progress to stderr.
        anchors: Must be None: anchors are supported by :func:`separate` only.
        **kwargs: ``ode_decode_chunk_size`` passes to :func:`separate`.

    Returns:
        A :class:`SeparationResult` with ``target``/``residual`` lists of ``[samples, 1]``
        arrays as long as each input, the chunks' ``noise`` (first audio), ``peak_memory``.
    """
    chunk, overlap = _check_chunks(model, chunk_seconds, overlap_seconds, anchors)
    ode_grid(ode_opt)
    batch = model.processor()(descriptions, audios)
    targets, residuals, noise, peak = [], [], None, 0.0
    for i, description in enumerate(batch.descriptions):
        audio = np.asarray(batch.audios[i, : batch.wav_sizes[i], 0])
        parts = list(_stream(model, audio, description, chunk, overlap, ode_opt, seed, verbose,
                             **kwargs))  # fmt: skip
        targets.append(mx.concatenate([p.target for p in parts], axis=0))
        residuals.append(mx.concatenate([p.residual for p in parts], axis=0))
        noise = parts[-1].noise if noise is None else noise
        peak = max(peak, parts[-1].peak_memory)
    return SeparationResult(targets, residuals, noise, peak_memory=peak)


def separate_streaming(model: SAMAudio, audios, descriptions=None, *, chunk_seconds: float = 10.0,
                       overlap_seconds: float = 3.0, ode_opt=None, seed: int = 42,
                       verbose: bool = False, target_callback: Callable | None = None,
                       residual_callback: Callable | None = None, anchors=None,
                       **kwargs):  # fmt: skip
    """:func:`separate_long` chunk by chunk: each chunk's final samples as soon as they are
    separated (the first after one chunk's work). The chunks concatenate to
    :func:`separate_long`'s output.

    Args:
        model, audios, descriptions, chunk_seconds, overlap_seconds, ode_opt, seed, verbose,
            anchors, kwargs: As in :func:`separate_long`; one audio only.
        target_callback, residual_callback: ``f(chunk [samples, 1], chunk_idx, is_last)``;
            with either one given, the chunks go to the callbacks and the call returns the
            number of samples separated.

    Returns:
        Without callbacks, a generator of :class:`SeparationResult` (``target``/``residual``
        ``[samples, 1]``, ``chunk_idx``, ``is_last``; ``noise`` and ``peak_memory`` on the last).
        With callbacks, the total number of samples.
    """
    chunk, overlap = _check_chunks(model, chunk_seconds, overlap_seconds, anchors)
    ode_grid(ode_opt)
    audio, description = _one_audio(model, audios, descriptions)
    stream = _stream(model, audio, description, chunk, overlap, ode_opt, seed, verbose, **kwargs)
    if target_callback is None and residual_callback is None:
        return stream
    total = 0
    for result in stream:
        total += result.target.shape[0]
        if target_callback is not None:
            target_callback(result.target, result.chunk_idx, result.is_last)
        if residual_callback is not None:
            residual_callback(result.residual, result.chunk_idx, result.is_last)
    return total


def save_audio(audio, path, sample_rate: int = 48_000, **kwargs) -> None:
    """Writes one separated signal (``[samples]`` or ``[samples, 1]``, mx or NumPy) to
    ``path`` with :func:`mlx_audio_io.save` (format from the extension; written to a temporary
    file and renamed, so a failed save leaves an existing file as it was).

    Args:
        audio: The samples, float in [-1, 1].
        path: Output file (``.wav``, ``.flac``, ``.mp3``, ...).
        sample_rate: Its rate in Hz (``model.sample_rate``, 48000).
        **kwargs: Passed to :func:`mlx_audio_io.save` (``encoding``, ``bitrate``, ...).
    """
    wav = np.asarray(audio, np.float32)
    if wav.ndim == 2 and wav.shape[1] != 1 and wav.shape[0] == 1:
        wav = wav.T
    if wav.ndim == 1:
        wav = wav[:, None]
    if wav.ndim != 2 or wav.shape[1] != 1:
        raise ValueError(f"audio must be [samples] or [samples, 1], got shape {wav.shape}")
    mlx_audio_io.save(path, wav, sample_rate, layout="channels_last", **kwargs)
