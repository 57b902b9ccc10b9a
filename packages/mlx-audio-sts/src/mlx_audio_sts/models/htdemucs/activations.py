"""GELU and GLU for the HTDemucs layers."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU, as torch's default."""
    return nn.gelu(x)


def glu(x: mx.array) -> mx.array:
    """Gated linear unit over the channel (last) axis: first half * sigmoid(second half)."""
    a, b = mx.split(x, 2, axis=-1)
    return a * mx.sigmoid(b)
