"""Whole-track inference for HTDemucs, with the semantics of ``demucs.apply.apply_model``:
bags of models with per-source weights, the shift trick, and overlapping segments blended
with a triangular window."""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction

import mlx_audio_io.nn as fnn

import mlx.core as mx
import numpy as np

from .config import to_fraction
from .model import HTDemucs


class BagOfModels:
    """Several models whose estimates are averaged source by source with ``weights``
    (``[models][sources]``; default all ones), as demucs' ``BagOfModels`` (``htdemucs_ft``
    is four fine-tuned models, each trusted for one source).

    Args:
        models: ``HTDemucs`` models with the same sources, sample rate and channels.
        weights: Per-model, per-source weights.
        segment: Seconds per forward pass for every model (at most their training segment).
    """

    def __init__(self, models: list, weights: list | None = None, segment=None):
        if not models:
            raise ValueError("a bag needs at least one model")
        first = models[0]
        for other in models:
            if (other.sources, other.samplerate, other.audio_channels) != (
                first.sources,
                first.samplerate,
                first.audio_channels,
            ):
                raise ValueError("models in a bag must share sources, sample rate and channels")
            if segment is not None and to_fraction(segment) <= other.segment:
                other.segment = to_fraction(segment)
        if weights is None:
            weights = [[1.0] * len(first.sources) for _ in models]
        if len(weights) != len(models) or any(len(w) != len(first.sources) for w in weights):
            raise ValueError(
                f"weights must be {len(models)} lists of {len(first.sources)} numbers, "
                f"got {weights!r}"
            )
        self.models, self.weights = list(models), [list(map(float, w)) for w in weights]
        self.sources, self.samplerate = first.sources, first.samplerate
        self.audio_channels = first.audio_channels

    @property
    def segment(self) -> Fraction:
        """The longest segment every model accepts, in seconds."""
        return min(m.segment for m in self.models)

    def __len__(self) -> int:
        return len(self.models)


def _members(model) -> tuple[list, list]:
    """``(models, per-source weights)`` of a bag, or of one model as a bag of one."""
    if isinstance(model, BagOfModels):
        return model.models, model.weights
    return [model], [[1.0] * len(model.sources)]


class _Chunk:
    """A window into a longer array (demucs' ``TensorChunk``): ``padded`` takes real context
    from the parent on both sides and zeros only past its ends."""

    def __init__(self, array, offset=0, length=None):
        rel = offset
        total = array.length if isinstance(array, _Chunk) else array.shape[-1]
        if isinstance(array, _Chunk):
            array, offset = array.array, offset + array.offset
        self.array, self.offset = array, offset
        self.length = total - rel if length is None else min(total - rel, length)

    def padded(self, target: int) -> np.ndarray:
        total = self.array.shape[-1]
        start = self.offset - (target - self.length) // 2
        end = start + target
        lo, hi = max(0, start), min(total, end)
        pad = [(0, 0)] * (self.array.ndim - 1) + [(lo - start, end - hi)]
        return np.pad(self.array[..., lo:hi], pad)


def _center_trim(x, length: int):
    delta = x.shape[-1] - length
    return x[..., delta // 2 : x.shape[-1] - (delta - delta // 2)]


def _triangle(segment_length: int, power: float) -> np.ndarray:
    half = segment_length // 2
    w = np.concatenate([np.arange(1, half + 1), np.arange(segment_length - half, 0, -1)]).astype(
        np.float32
    )
    return (w / w.max()) ** power


def apply_model(
    model,
    mix,
    shifts: int = 1,
    split: bool = True,
    overlap: float = 0.25,
    transition_power: float = 1.0,
    segment=None,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> mx.array:
    """Separates ``mix`` ``[batch, channels, samples]`` into ``[batch, sources, channels,
    samples]`` exactly as ``demucs.apply.apply_model`` does.

    Args:
        model: An ``HTDemucs`` or a ``BagOfModels``.
        mix: float32 audio, ``mx.array`` or NumPy.
        shifts: Random time shifts (0 to 0.5 s) to average over; 0 for none.
        split: Process ``segment``-long windows overlapping by ``overlap``, blended with a
            triangular window (``transition_power`` sharpens it); otherwise one pass.
        segment: Seconds per window; default the model's training segment.
        seed: Seeds the shifts (Python's ``random``, as demucs draws them: with
            ``random.seed(s)`` before demucs' call the offsets are the same).
        progress: Called with ``(done, total)`` windows.

    Returns:
        float32 ``mx.array`` ``[batch, sources, channels, samples]``.
    """
    if transition_power < 1:
        raise ValueError(f"transition_power must be >= 1, got {transition_power!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    mix = np.asarray(mix, dtype=np.float32)
    if mix.ndim != 3:
        raise ValueError(f"mix must be [batch, channels, samples], got shape {mix.shape}")
    rng = random.Random(seed)
    models, weights = _members(model)
    if segment is not None:
        segment = to_fraction(segment)
        limit = min(m.segment for m in models)
        if segment <= 0 or segment > limit:
            raise ValueError(f"segment must be in (0, {float(limit)}] seconds, got {segment}")
    # a shifted pass is longer than the track by up to max_shift (drawn as it starts): the
    # longest is counted until then, so the total only shrinks and `done` never passes it
    longest = mix.shape[-1] + (int(0.5 * models[0].samplerate) if shifts else 0)
    counter = _Progress(progress, [_windows(m, longest, split, overlap, segment)
                                   for m in models for _ in range(max(shifts, 1))])  # fmt: skip
    total = np.zeros((len(models[0].sources),), np.float32)
    estimates = None
    with fnn.buffer_cache():  # many same-shaped passes: reuse their buffers
        for sub, sub_weights in zip(models, weights, strict=True):
            out = _apply_shifts(sub, mix, shifts, split, overlap, transition_power, segment,
                                rng, counter)  # fmt: skip
            w = np.asarray(sub_weights, np.float32)
            out = out * w[None, :, None, None]
            total += w
            estimates = out if estimates is None else estimates + out
    return mx.array(estimates / total[None, :, None, None])


def _windows(model, length: int, split: bool, overlap: float, segment) -> int:
    """Forward passes ``_apply_split`` makes over ``length`` samples."""
    if not split:
        return 1
    seg = segment if segment is not None else model.segment
    segment_length = int(model.samplerate * seg)
    return len(range(0, length, max(1, int((1 - overlap) * segment_length))))


class _Progress:
    """Calls ``callback(done, total)`` per window. ``estimates`` holds one count per pass;
    :meth:`begin` replaces the next pass's estimate by its exact count as it starts."""

    def __init__(self, callback, estimates: list[int]):
        self.callback, self.done = callback, 0
        self.pending = list(estimates)
        self.total = sum(estimates)

    def begin(self, windows: int) -> None:
        self.total += windows - self.pending.pop(0)

    def step(self):
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


def _apply_shifts(model, mix, shifts, split, overlap, power, segment, rng, counter):
    length = mix.shape[-1]
    if not shifts:
        return _apply_split(model, _Chunk(mix), split, overlap, power, segment, rng, counter)
    max_shift = int(0.5 * model.samplerate)
    padded = _Chunk(mix).padded(length + 2 * max_shift)
    out = 0.0
    for _ in range(shifts):
        offset = rng.randint(0, max_shift)
        shifted = _Chunk(padded, offset, length + max_shift - offset)
        res = _apply_split(model, shifted, split, overlap, power, segment, rng, counter)
        out = out + res[..., max_shift - offset :]
    return out / shifts


def _apply_split(model, chunk, split, overlap, power, segment, rng, counter):
    counter.begin(_windows(model, chunk.length, split, overlap, segment))
    if not split:
        out = _forward(model, chunk, segment, rng)
        counter.step()
        return out
    seg = segment if segment is not None else model.segment
    segment_length = int(model.samplerate * seg)
    stride = int((1 - overlap) * segment_length)
    batch, channels = chunk.array.shape[:2]
    length = chunk.length
    out = np.zeros((batch, len(model.sources), channels, length), np.float32)
    sum_weight = np.zeros((length,), np.float32)
    weight = _triangle(segment_length, power)
    for offset in range(0, length, stride):
        part = _Chunk(chunk, offset, segment_length)
        res = _forward(model, part, segment, rng)
        n = res.shape[-1]
        out[..., offset : offset + segment_length] += weight[:n] * res
        sum_weight[offset : offset + segment_length] += weight[:n]
        counter.step()
    return out / sum_weight


def _forward(model: HTDemucs, chunk: _Chunk, segment, rng=None) -> np.ndarray:
    valid = int(segment * model.samplerate) if segment is not None else model.training_length
    if not model.args.use_train_segment and segment is None:
        valid = chunk.length
    out = model(mx.array(chunk.padded(valid)), rng)
    mx.eval(out)
    return _center_trim(np.array(out), chunk.length)


def separate_segment(model, audio, segment=None) -> np.ndarray:
    """One window through a model or bag, as ``apply_model(shifts=0, split=False)`` treats a
    window of at most ``segment`` seconds: zero-padded around it to the model's length, the
    bag's estimates weighted per source.

    Args:
        model: ``HTDemucs`` or ``BagOfModels``.
        audio: ``[batch, channels, samples]`` float32.
        segment: Seconds per forward pass; default the model's.

    Returns:
        NumPy float32 ``[batch, sources, channels, samples]``.
    """
    audio = np.asarray(audio, dtype=np.float32)
    models, weights = _members(model)
    segment = None if segment is None else to_fraction(segment)
    out, total = 0.0, 0.0
    for sub, w in zip(models, weights, strict=True):
        w = np.asarray(w, np.float32)
        out = out + _forward(sub, _Chunk(audio), segment) * w[None, :, None, None]
        total = total + w
    return out / total[None, :, None, None]
