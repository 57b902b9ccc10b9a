"""The cross-domain transformer between HTDemucs' two branches (demucs.transformer), dense
attention only. Layers alternate self-attention in each branch with cross-attention (the
frequency branch attends to the time branch and the other way round)."""

from __future__ import annotations

import math
from functools import lru_cache

import mlx_audio_io.nn as fnn

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .activations import gelu
from .layers import GroupNorm, Identity, LayerScale


@lru_cache(maxsize=8)
def sin_embedding(length: int, dim: int, max_period: float, mean_normalize=False) -> np.ndarray:
    """``[length, dim]``: cos then sin of ``pos / max_period ** (i / (dim / 2 - 1))``
    (demucs' ``create_sin_embedding``; ``mean_normalize`` centres the positions as its CAPE
    embedding does at inference)."""
    pos = np.arange(length, dtype=np.float32)[:, None]
    if mean_normalize:
        pos = pos - pos.mean(axis=0, keepdims=True)
    half = dim // 2
    adim = np.arange(half, dtype=np.float32)[None, :] / np.float32(half - 1)
    # float32 operands as torch has them; pow, cos and sin rounded from float64 (torch's are
    # within an ulp of that, and an ulp of a phase of 1000 rad is 1e-4 of the embedding)
    phase = pos / _f32(np.power(float(max_period), adim.astype(np.float64)))
    return np.concatenate(
        [_f32(np.cos(phase.astype(np.float64))), _f32(np.sin(phase.astype(np.float64)))], axis=-1
    )


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


@lru_cache(maxsize=8)
def sin_embedding_2d(dim: int, height: int, width: int, max_period: float) -> np.ndarray:
    """``[width * height, dim]``, tokens ordered time-major as demucs flattens ``(t1 fr)``
    (its ``create_2d_sin_embedding``: half the channels encode time, half frequency)."""
    half = dim // 2
    arg = np.arange(0.0, half, 2, dtype=np.float32) * np.float32(-math.log(max_period) / half)
    div = _f32(np.exp(arg.astype(np.float64)))
    pos_w = (np.arange(width, dtype=np.float32)[:, None] * div).astype(np.float64)
    pos_h = (np.arange(height, dtype=np.float32)[:, None] * div).astype(np.float64)
    pe = np.zeros((width, height, dim), np.float32)
    pe[:, :, 0:half:2] = np.sin(pos_w)[:, None, :]
    pe[:, :, 1:half:2] = np.cos(pos_w)[:, None, :]
    pe[:, :, half::2] = np.sin(pos_h)[None, :, :]
    pe[:, :, half + 1 :: 2] = np.cos(pos_h)[None, :, :]
    return pe.reshape(width * height, dim)


class MultiheadAttention(nn.Module):
    """torch.nn.MultiheadAttention (packed in-projection, with biases), batch first."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = mx.random.normal((3 * dim, dim)) * dim**-0.5
        self.in_proj_bias = mx.zeros((3 * dim,))
        self.out_proj = nn.Linear(dim, dim)

    def __call__(self, q, kv):
        b, lq, dim = q.shape
        w, bias = self.in_proj_weight, self.in_proj_bias
        if q is kv:
            q, k, v = mx.split(mx.addmm(bias, q, w.T), 3, axis=-1)
        else:
            q = mx.addmm(bias[:dim], q, w[:dim].T)
            k, v = mx.split(mx.addmm(bias[dim:], kv, w[dim:].T), 2, axis=-1)
        h, d = self.heads, dim // self.heads
        q, k, v = (t.reshape(b, -1, h, d).transpose(0, 2, 1, 3) for t in (q, k, v))
        out = fnn.attention(q, k, v, scale=d**-0.5)
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(b, lq, dim))


class EncoderLayer(nn.Module):
    """Self-attention (``cross=False``) or cross-attention layer, pre-norm, with LayerScale
    and the GroupNorm(1) output norm of demucs' ``MyTransformerEncoderLayer`` /
    ``CrossTransformerEncoderLayer``."""

    def __init__(self, dim, heads, hidden, cross, norm_first, norm_out, layer_scale, use_gelu):
        super().__init__()
        self.cross, self.norm_first, self.use_gelu = cross, norm_first, use_gelu
        attn = MultiheadAttention(dim, heads)
        if cross:
            self.cross_attn = attn
        else:
            self.self_attn = attn
        self.linear1 = fnn.Linear(dim, hidden)
        self.linear2 = fnn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        if cross:
            self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        # demucs' MyGroupNorm: GroupNorm(1) over (tokens, channels)
        self.norm_out = GroupNorm(1, dim) if norm_first and norm_out else None
        self.gamma_1 = LayerScale(dim, 1e-4) if layer_scale else Identity()
        self.gamma_2 = LayerScale(dim, 1e-4) if layer_scale else Identity()

    def _ff(self, x):
        h = self.linear1(x)
        return self.linear2(gelu(h) if self.use_gelu else nn.relu(h))

    @staticmethod
    def _add_scaled(x, y, gamma):
        """``x + gamma(y)`` (LayerScale or Identity) in one fused pass."""
        return fnn.bias_act(y, residual=x, residual_scale=getattr(gamma, "scale", None))

    def __call__(self, x, other=None):
        if self.cross:
            attn, norm_ff = self.cross_attn, self.norm3
        else:
            attn, norm_ff = self.self_attn, self.norm2
        if self.norm_first:
            q = self.norm1(x)
            kv = self.norm2(other) if self.cross else q
            x = self._add_scaled(x, attn(q, kv), self.gamma_1)
            x = self._add_scaled(x, self._ff(norm_ff(x)), self.gamma_2)
            if self.norm_out is not None:
                x = self.norm_out(x)
        else:
            kv = other if self.cross else x
            x = self.norm1(x + self.gamma_1(attn(x, kv)))
            x = self.norm2(x + self.gamma_2(self._ff(x)))
        return x


class CrossTransformerEncoder(nn.Module):
    """The two-branch transformer: ``x`` ``[B, T1, F, C]`` (frequency branch) and ``xt``
    ``[B, T2, C]`` (time branch) in, the same shapes out."""

    def __init__(self, dim, emb="sin", hidden_scale=4.0, num_heads=8, num_layers=6,
                 cross_first=False, norm_in=True, norm_first=False, norm_out=False,
                 max_period=10000.0, layer_scale=False, gelu=True, weight_pos_embed=1.0,
                 cape_mean_normalize=True):  # fmt: skip
        super().__init__()
        hidden = int(dim * hidden_scale)
        self.emb, self.max_period = emb, max_period
        self.weight_pos_embed = weight_pos_embed
        self.cape_mean_normalize = cape_mean_normalize
        self.classic_parity = 1 if cross_first else 0
        self.norm_in = nn.LayerNorm(dim) if norm_in else Identity()
        self.norm_in_t = nn.LayerNorm(dim) if norm_in else Identity()
        kw = dict(heads=num_heads, hidden=hidden, norm_first=norm_first, norm_out=norm_out,
                  layer_scale=layer_scale, use_gelu=gelu)  # fmt: skip
        self.layers, self.layers_t = [], []
        for idx in range(num_layers):
            cross = idx % 2 != self.classic_parity
            self.layers.append(EncoderLayer(dim, cross=cross, **kw))
            self.layers_t.append(EncoderLayer(dim, cross=cross, **kw))

    def __call__(self, x, xt, shift: int = 0):
        b, t1, fr, c = x.shape
        pos_2d = mx.array(sin_embedding_2d(c, fr, t1, self.max_period))
        x = self.norm_in(x.reshape(b, t1 * fr, c)) + self.weight_pos_embed * pos_2d
        t2 = xt.shape[1]
        cape = self.emb == "cape"
        mean_norm = cape and self.cape_mean_normalize
        pos = mx.array(sin_embedding(t2 + shift, c, self.max_period, mean_norm)[shift:])
        xt = self.norm_in_t(xt) + self.weight_pos_embed * pos
        for layer, layer_t in zip(self.layers, self.layers_t, strict=True):
            if layer.cross:
                x, xt = layer(x, xt), layer_t(xt, x)
            else:
                x, xt = layer(x), layer_t(xt)
        return x.reshape(b, t1, fr, c), xt
