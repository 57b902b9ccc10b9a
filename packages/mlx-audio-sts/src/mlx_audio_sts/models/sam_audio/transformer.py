"""SAM-Audio's diffusion transformer (``sam_audio/model/transformer.py``): a DiT over the
codec's frames, conditioned on the flow-matching time by adaLN (shift, scale, gate per
block) and on the text by cross-attention.

Faithful to the reference's particulars: heads take strided channels (``reshape(B, T,
head_dim, H)``: head h gets channels h, h + H, ...), RoPE (adjacent pairs, theta
``max(1e4, 2 * max_positions)``) is applied after the per-head RMSNorm and in self-attention
only, cross-attention has no gate, the final modulation uses the time embedding before
``t_block``, and RMSNorm runs in float32. Arrays are ``[batch, frames, channels]``.
"""

from __future__ import annotations

import math

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io import nn as fnn

import mlx.core as mx
import mlx.nn as nn

from .config import TransformerConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = mx.ones((dim,))
        self.eps = eps

    def __call__(self, x: mx.array) -> mx.array:
        y = mx.fast.rms_norm(x.astype(mx.float32), self.weight.astype(mx.float32), self.eps)
        return y.astype(x.dtype)


class SwiGLU(nn.Module):
    """``w2(silu(w1 x) * w3 x)`` (the reference's ``ProjectionLayer`` and ``FeedForward``)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, bias: bool = False):
        super().__init__()
        self.w1 = fnn.Linear(dim, hidden, bias=bias)
        self.w3 = fnn.Linear(dim, hidden, bias=bias)
        self.w2 = fnn.Linear(hidden, hidden if out is None else out, bias=bias)

    def __call__(self, x: mx.array) -> mx.array:
        return self.w2(nn.silu(self.w1(x)) * self.w3(x))


class Projection(nn.Module):
    """The reference's ``TimestepEmbedder`` / ``ContextEmbedder`` shell: ``.projection``."""

    def __init__(self, dim_in: int, dim: int, bias: bool):
        super().__init__()
        self.projection = SwiGLU(dim_in, dim, bias=bias)

    def __call__(self, x: mx.array) -> mx.array:
        return self.projection(x)


class FeedForward(SwiGLU):
    def __init__(self, dim: int, hidden: int, bias: bool):
        super().__init__(dim, hidden, out=dim, bias=bias)


def timestep_embedding(t: mx.array, dim: int, max_period: float = 10000.0) -> mx.array:
    """``cat(cos(t f), sin(t f))`` with ``f = exp(-ln(max_period) * i / (dim / 2))``:
    ``[batch]`` -> ``[batch, dim]``."""
    half = dim // 2
    freqs = mx.exp(-math.log(max_period) * mx.arange(half, dtype=mx.float32) / half)
    args = t.astype(mx.float32)[:, None] * freqs[None]
    return mx.concatenate([mx.cos(args), mx.sin(args)], axis=-1)


class Attention(nn.Module):
    """Multi-head attention with per-head RMSNorm on q and k and the reference's strided
    head split."""

    def __init__(self, dim: int, heads: int, eps: float, bias: bool):
        super().__init__()
        self.heads = heads
        self.wq = fnn.Linear(dim, dim, bias=bias)
        self.wk = fnn.Linear(dim, dim, bias=bias)
        self.wv = fnn.Linear(dim, dim, bias=bias)
        self.wo = fnn.Linear(dim, dim, bias=bias)
        self.q_norm = RMSNorm(dim // heads, eps)
        self.k_norm = RMSNorm(dim // heads, eps)

    def _split(self, x: mx.array) -> mx.array:
        b, t, c = x.shape
        return x.reshape(b, t, c // self.heads, self.heads).transpose(0, 3, 1, 2)

    def __call__(self, x: mx.array, context: mx.array | None, mask: mx.array | None,
                 rope_base: float | None = None) -> mx.array:  # fmt: skip
        source = x if context is None else context
        q = self.q_norm(self._split(self.wq(x)))
        k = self.k_norm(self._split(self.wk(source)))
        v = self._split(self.wv(source))
        d = q.shape[-1]
        if rope_base is not None:
            q = mx.fast.rope(q, d, traditional=True, base=rope_base, scale=1.0, offset=0)
            k = mx.fast.rope(k, d, traditional=True, base=rope_base, scale=1.0, offset=0)
        y = mx.fast.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(d), mask=mask)
        b, _, t, _ = y.shape
        return self.wo(y.transpose(0, 2, 1, 3).reshape(b, t, -1))


class DiTBlock(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        dim, eps, bias = cfg.dim, cfg.norm_eps, cfg.fc_bias
        self.attention = Attention(dim, cfg.n_heads, eps, bias)
        self.cross_attention = Attention(dim, cfg.n_heads, eps, bias)
        self.feed_forward = FeedForward(dim, cfg.ffn_hidden, bias)
        self.attention_norm = RMSNorm(dim, eps)
        self.ffn_norm = RMSNorm(dim, eps)
        self.scale_shift_table = mx.zeros((6, dim))

    def __call__(self, x, context, t0, mask, context_mask, rope_base):
        mod = self.scale_shift_table[None] + t0.reshape(x.shape[0], 6, -1)
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = (mod[:, i : i + 1] for i in range(6))
        h = self.attention(self.attention_norm(x) * (1 + scale_a) + shift_a, None, mask,
                           rope_base)  # fmt: skip
        x = x + h * gate_a
        x = x + self.cross_attention(x, context, context_mask)
        h = self.feed_forward(self.ffn_norm(x) * (1 + scale_f) + shift_f)
        return x + h * gate_f


class ConvBlock(nn.Module):
    """GroupNorm(1) -> SiLU -> Conv1d(k3, 'same')."""

    def __init__(self, dim: int):
        super().__init__()
        self.groupnorm = nn.GroupNorm(1, dim, pytorch_compatible=True)
        self.project = fnn.Conv1d(dim, dim, 3, padding=1)

    def __call__(self, x: mx.array) -> mx.array:
        g = self.groupnorm
        h = fnn.group_norm(x, 1, g.weight, g.bias, eps=g.eps)
        return self.project(nn.silu(h))


class ResnetBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.block1 = ConvBlock(dim)
        self.block2 = ConvBlock(dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.block2(self.block1(x)) + x


class Patcher(nn.Module):
    """The reference's ``x_embedder`` (patch size 1): one ResNet block."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = ResnetBlock(dim)

    def __call__(self, x: mx.array) -> mx.array:
        return self.block(x)


class DiT(nn.Module):
    """``__call__(x, time, context, mask, context_mask)`` -> the velocity
    ``[batch, frames, out_channels]``.

    Args (of ``__call__``):
        x: ``[batch, frames, dim]`` (already projected and conditioned by the caller).
        time: ``[batch]`` flow time in [0, 1].
        context: ``[batch, tokens, context_dim]``, the cross-attention memory.
        mask: None or a bool ``[batch, 1, 1, frames]`` (True = a real frame).
        context_mask: None or a bool ``[batch, 1, 1, tokens]``.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        dim, bias = cfg.dim, cfg.fc_bias
        self.layers = [DiTBlock(cfg) for _ in range(cfg.n_layers)]
        self.norm = RMSNorm(dim, cfg.norm_eps)
        self.output = fnn.Linear(dim, cfg.out_channels, bias=bias)
        self.x_embedder = Patcher(dim)
        self.y_embedder = Projection(cfg.context_dim, dim, bias)
        self.t_embedder = Projection(cfg.frequency_embedding_dim, dim, bias)
        self.t_block = fnn.Linear(dim, 6 * dim, bias=cfg.t_block_bias)
        self.final_layer_scale_shift_table = mx.zeros((2, dim))
        self.rope_base = float(max(10000, 2 * cfg.max_positions)) if cfg.use_rope else None

    def __call__(self, x, time, context, mask=None, context_mask=None) -> mx.array:
        if self.rope_base is not None and x.shape[1] > self.config.max_positions:
            raise ValueError(
                f"the DiT takes at most {self.config.max_positions} frames "
                f"({self.config.max_positions / 25:.0f} s), got {x.shape[1]}; use separate_long"
            )
        h = self.x_embedder(x)
        t = self.t_embedder(timestep_embedding(time, self.config.frequency_embedding_dim))
        t0 = self.t_block(nn.silu(t))
        y = self.y_embedder(context)
        for layer in self.layers:
            h = layer(h, y, t0, mask, context_mask, self.rope_base)
        mod = self.final_layer_scale_shift_table[None] + t[:, None]
        return self.output(self.norm(h) * (1 + mod[:, 1:2]) + mod[:, 0:1])
