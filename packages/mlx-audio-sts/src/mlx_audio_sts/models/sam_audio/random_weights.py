"""Seeded random SAM-Audio weights with sane scales, for tests, parity fixtures and
benchmarks (the real checkpoints are gated). The same seed gives the same weights on any
machine: each array comes from NumPy's PCG64 seeded by the seed and the parameter's name."""

from __future__ import annotations

import zlib

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .model import SAMAudio


def _value(key: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """One parameter: gates 0.5, norms and Snake alphas about 1, weight-norm gains 0.3,
    biases small, matrices ``N(0, 1 / fan_in)``, tables ``N(0, 1 / dim)``."""
    noise = rng.standard_normal(shape).astype(np.float32)
    name = key.rsplit(".", 1)[-1]
    if name == "gate":
        return 0.5 + 0.1 * noise
    if name == "weight_g":  # row norms of the weight-normed convolutions: the residual
        return 0.3 + 0.03 * noise  # branches stay small, so the codec's activations do not grow
    if name == "alpha" or (name == "weight" and len(shape) == 1):
        return 1.0 + 0.1 * noise
    if name.startswith("bias"):
        return 0.02 * noise
    if "scale_shift_table" in name:
        return noise / np.sqrt(shape[-1])
    if name.startswith("weight_hh") or name.startswith("weight_ih"):
        return 0.5 * noise / np.sqrt(shape[-1])
    if "embed" in key and len(shape) == 2 and name == "weight" and "proj" not in key:
        return noise
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return noise / np.sqrt(fan_in)


def random_weights(model: SAMAudio, seed: int = 0) -> dict[str, mx.array]:
    """``{name: array}`` for every parameter of ``model`` (its layout), seeded.

    Args:
        model: Gives the names and shapes.
        seed: The seed.
    """
    out = {}
    for key, value in tree_flatten(model.parameters()):
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        out[key] = mx.array(_value(key, tuple(value.shape), rng))
    return out


def randomize(model: SAMAudio, seed: int = 0) -> SAMAudio:
    """Loads :func:`random_weights` into ``model`` and returns it."""
    model.load_weights(list(random_weights(model, seed).items()), strict=True)
    mx.eval(model.parameters())
    return model
