"""Mimi's blocks: causal (streamable) convolutions, the SEANet encoder and decoder, the
sliding-window transformer, and the split residual vector quantizer.

Arrays are channels-last, ``[batch, frames, channels]``. Every block takes an optional
``state`` dict: None runs a whole signal at once; a dict (the same one for every call of a
stream) makes each block keep what it needs of the past (the last inputs of a causal or
transposed convolution, the transformer's positions, keys and values), so
that a signal fed in pieces gives exactly the output of one pass over all of it. Parameter
names are transformers' (``kyutai/mimi``); weights are in MLX's layouts.
"""

from __future__ import annotations

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io import nn as fnn

import mlx.core as mx
import mlx.nn as nn

from .config import ModelArgs


def elu(x: mx.array) -> mx.array:
    """torch's ``ELU()``: ``x`` where positive, ``exp(x) - 1`` elsewhere; on the CPU
    ``mlx_audio_io.nn.bias_act``'s threaded C kernel (MLX's CPU build evaluates ``expm1`` one
    element at a time: 118 ms for the 7.7 M values of one 24 kHz x 64-channel ELU here)."""
    return fnn.bias_act(x, activation="elu")


class ELU(nn.Module):
    """:func:`elu` as a layer (it holds a place in the checkpoint's layer numbering)."""

    def __call__(self, x: mx.array, state: dict | None = None) -> mx.array:
        return elu(x)


class _Weights(nn.Module):
    """The ``conv`` child holding a convolution's ``weight`` (and ``bias``)."""

    def __init__(self, shape: tuple[int, ...], bias: int | None):
        super().__init__()
        self.weight = mx.zeros(shape)
        if bias:
            self.bias = mx.zeros((bias,))


_SMALL_ROWS = 32  # streaming steps of at most this many frames (x batch) take _few_rows


class CausalConv1d(nn.Module):
    """transformers' ``MimiConv1d`` (causal): ``kernel - stride`` frames of left padding
    (zeros, or the first frame repeated), right padding to a whole number of strides.

    Streaming (``state`` a dict) keeps the last ``kernel - stride`` input frames for the next
    call instead of padding; only stride 1 streams.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1,
                 bias: bool = True, pad_mode: str = "constant"):  # fmt: skip
        super().__init__()
        self.conv = _Weights((c_out, kernel, c_in), c_out if bias else None)
        self.stride, self.dilation, self.pad_mode = stride, dilation, pad_mode
        self.padding = (kernel - 1) * dilation + 1 - stride

    def _left(self, x: mx.array, frames: int) -> mx.array:
        if self.pad_mode == "replicate":
            return mx.repeat(x[:, :1], frames, axis=1)
        return mx.zeros((x.shape[0], frames, x.shape[2]), x.dtype)

    def __call__(self, x: mx.array, state: dict | None = None, activation: str | None = None
                 ) -> mx.array:  # fmt: skip
        """The convolution of ``x`` ``[b, t, in]``; ``activation`` (None or ``"elu"``) after
        the bias, fused into the output pass where ``nn.conv_axis`` runs it."""

        def act(y: mx.array) -> mx.array:  # for the paths that are not conv_axis
            return y if activation is None else fnn.bias_act(y, activation=activation)

        pad = self.padding
        w, bias = self.conv.weight, self.conv.get("bias")
        if state is None and self.stride == 1 and self.pad_mode == "constant":
            # zeros on both sides (inside the kernel's gather, no padded copy), the last
            # `pad` outputs dropped: what zeros on the left alone give
            y = fnn.conv_axis(x, weight=w, axis=1, stride=1, padding=pad, dilation=self.dilation,
                              bias=bias, activation=activation)  # fmt: skip
            return y[:, : x.shape[1]] if pad else y
        k, st = w.shape[1], self.stride
        if state is None and st > 1 and k % st == 0 and self.dilation == 1:
            return act(self._strided(x, w, bias))
        if state is None:
            extra = -x.shape[1] % self.stride
            parts = [self._left(x, pad)] if pad else []
            parts.append(x)
            if extra:
                tail = x[:, -1:] if self.pad_mode == "replicate" else mx.zeros_like(x[:, :1])
                parts.append(mx.repeat(tail, extra, axis=1))
            x = mx.concatenate(parts, axis=1) if len(parts) > 1 else x
        else:
            if self.stride != 1:
                raise ValueError("only stride-1 convolutions stream")
            t = x.shape[1]
            if pad:
                past = state.get(id(self))
                x = mx.concatenate([self._left(x, pad) if past is None else past, x], axis=1)
                state[id(self)] = x[:, x.shape[1] - pad :]
            if x.shape[0] * t <= _SMALL_ROWS:
                return act(self._few_rows(x, t, w, bias))
        return fnn.conv_axis(x, weight=w, axis=1, stride=self.stride, padding=0,
                             dilation=self.dilation, bias=bias, activation=activation)  # fmt: skip

    def _few_rows(self, x: mx.array, t: int, w: mx.array, bias) -> mx.array:
        """A streaming step of a few frames (``x`` with its left context): the taps side by
        side and one matmul with the weight cached as ``[kernel * in, out]``; the C kernel's
        blocking does not pay for 2-4 rows, and the step is bound by reading the weight."""
        cached = self.__dict__.get("_rows")
        if cached is None or cached[0] is not w:
            cached = (w, mx.contiguous(w.reshape(w.shape[0], -1).T))
            mx.eval(cached[1])
            object.__setattr__(self, "_rows", cached)  # kept out of the parameters
        k, d, (b, _, c) = w.shape[1], self.dilation, x.shape
        cols = mx.concatenate([x[:, j * d : j * d + t] for j in range(k)], axis=-1) if k > 1 else x
        cols = cols.reshape(b * t, k * c)
        y = cols @ cached[1] if bias is None else mx.addmm(bias, cols, cached[1])
        return y.reshape(b, t, -1)

    def _strided(self, x: mx.array, w: mx.array, bias) -> mx.array:
        """A whole signal through a stride-s convolution whose kernel is m strides long (every
        Mimi down-sampling). In groups of s frames (a free reshape) it is a stride-1, m-tap
        convolution over ``s * in`` channels: one matmul with the weight as ``[s * in,
        m * out]`` (cached, contiguous: ``nn.conv_axis`` would transpose the 8 M-value weight of
        the 25 Hz stage on every call) gives every group's contribution to the m outputs it
        touches, and shifted adds sum them; the causal ``kernel - stride`` frames of left
        padding are the m - 1 groups before the first."""
        b, t, c = x.shape
        s, c_out = self.stride, w.shape[0]
        m = w.shape[1] // s
        extra = -t % s
        if extra:  # to a whole number of strides, as transformers' extra padding does
            tail = x[:, -1:] if self.pad_mode == "replicate" else mx.zeros_like(x[:, :1])
            x = mx.concatenate([x, mx.repeat(tail, extra, axis=1)], axis=1)
        g = (t + extra) // s
        groups = x.reshape(b, g, s * c)
        lead = 0
        if self.pad_mode == "replicate" and m > 1:
            left = mx.repeat(x[:, :1], (m - 1) * s, axis=1).reshape(b, m - 1, s * c)
            groups, lead = mx.concatenate([left, groups], axis=1), m - 1
        cached = self.__dict__.get("_cached")
        if cached is None or cached[0] is not w:  # [out, m, s * in] -> [s * in, m * out]
            wc = mx.contiguous(w.reshape(c_out, m * s * c).T.reshape(m, s * c, c_out)
                               .transpose(1, 0, 2).reshape(s * c, m * c_out))  # fmt: skip
            mx.eval(wc)
            cached = (w, wc)
            object.__setattr__(self, "_cached", cached)  # kept out of the parameters
        z = (groups.reshape(-1, s * c) @ cached[1]).reshape(b, g + lead, m, c_out)
        y = None
        for j in range(m):  # output group u gets tap block j of input group u + j - (m - 1)
            start = j - (m - 1) + lead
            part = z[:, max(start, 0) : start + g, j]
            if start < 0:
                part = mx.concatenate([mx.zeros((b, -start, c_out), x.dtype), part], axis=1)
            y = part if y is None else y + part
        return y + bias if bias is not None else y


class CausalConvTranspose1d(nn.Module):
    """transformers' ``MimiConvTranspose1d`` (causal, ``trim_right_ratio`` 1, kernel a whole
    number m of strides: every Mimi one): the last ``kernel - stride`` outputs are cut.

    Output block u (``stride`` frames) is ``sum_j x[u - j] @ W_j`` over the m stride-long tap
    blocks of the weight, which is a causal stride-1 convolution with m taps from ``in`` to
    ``stride * out`` channels followed by a free reshape. It runs that way: the m shifted
    inputs side by side and one ``addmm`` with the regrouped weight cached (no overlap-add
    pass; ``nn.conv_transpose1d`` transposes its weight on every call, 150 ms per streaming
    step for the 1024 -> 512 one), and streams like :class:`CausalConv1d`: the last m - 1
    input frames are the state.

    ``depthwise``: groups = channels, weight ``[channels, kernel, 1]`` (the 12.5 -> 25 Hz
    up-sampling; broadcast multiplies and shifted adds); else ``[out, kernel, in]`` (MLX's
    layouts).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool = True,
                 depthwise: bool = False):  # fmt: skip
        super().__init__()
        if kernel % stride:
            raise ValueError(f"kernel ({kernel}) must be a multiple of stride ({stride})")
        shape = (c_out, kernel, 1) if depthwise else (c_out, kernel, c_in)
        self.conv = _Weights(shape, c_out if bias else None)
        self.stride, self.depthwise, self.taps = stride, depthwise, kernel // stride

    def _regrouped(self) -> tuple:
        """The weight as a stride-1 convolution's, as a matmul operand ``[m * in, stride *
        out]`` (rows: tap-major; depthwise: m blocks ``[stride, channels]``), and the bias
        tiled ``stride`` times."""
        w, bias = self.conv.weight, self.conv.get("bias")
        cached = self.__dict__.get("_cached")
        if cached is None or cached[0] is not w or cached[1] is not bias:
            s, m = self.stride, self.taps
            c_out = w.shape[0]
            if self.depthwise:  # block j: [s, ch]
                wg = [mx.contiguous(w[:, j * s : (j + 1) * s, 0].T) for j in range(m)]
            else:  # tap t of the convolution (input frame u - (m - 1) + t) is block m - 1 - t
                wr = w.reshape(c_out, m, s, -1)[:, ::-1]  # [out, tap, phase, in]
                wg = mx.contiguous(wr.transpose(1, 3, 2, 0).reshape(-1, s * c_out))
            bg = None if bias is None else mx.tile(bias, s)
            mx.eval(wg, bg) if bg is not None else mx.eval(wg)
            cached = (w, bias, wg, bg)
            object.__setattr__(self, "_cached", cached)  # kept out of the parameters
        return cached[2], cached[3]

    def __call__(self, x: mx.array, state: dict | None = None) -> mx.array:
        b, t, c = x.shape
        s, m = self.stride, self.taps
        wg, bg = self._regrouped()
        if m > 1:  # m - 1 frames of context: zeros, or the stream's last input frames
            past = state.get(id(self)) if state is not None else None
            x = mx.concatenate([mx.zeros((b, m - 1, c), x.dtype) if past is None else past, x],
                               axis=1)  # fmt: skip
            if state is not None:
                state[id(self)] = x[:, x.shape[1] - (m - 1) :]
        if self.depthwise:
            y = None
            for j in range(m):  # block j of input frame u - j
                part = x[:, m - 1 - j : m - 1 - j + t, None, :] * wg[j][None, None]
                y = part if y is None else y + part
            y = y.reshape(b, t * s, c)
            return y + bg[:c] if bg is not None else y
        # the m taps side by side (im2col; K = m * in is small here), then one matmul with
        # the bias: measured faster than nn.conv_axis' blocked kernel both for a 2-frame
        # streaming step (7 vs 12 ms, weight-bound) and for the 30 240-frame stage
        cols = mx.concatenate([x[:, j : j + t] for j in range(m)], axis=-1) if m > 1 else x
        cols = cols.reshape(b * t, m * c)
        y = cols @ wg if bg is None else mx.addmm(bg, cols, wg)
        return y.reshape(b, t * s, -1)


class ResnetBlock(nn.Module):
    """SEANet residual block: ``x + conv_1(elu(conv_k(elu(x))))``, ``dim / compress`` inside."""

    def __init__(self, args: ModelArgs, dim: int, dilation: int):
        super().__init__()
        hidden = dim // args.compress
        self.block = [
            ELU(),
            CausalConv1d(
                dim, hidden, args.residual_kernel_size, dilation=dilation, pad_mode=args.pad_mode
            ),  # fmt: skip
            ELU(),
            CausalConv1d(hidden, dim, 1, pad_mode=args.pad_mode),
        ]

    def __call__(self, x: mx.array, state: dict | None = None) -> mx.array:
        # the second ELU fused into the convolution before it
        y = self.block[1](elu(x), state, activation="elu")
        # the last convolution is 1x1: one addmm onto the residual (plus its bias), with the
        # weight cached as [hidden, dim]; 2x the C kernel followed by an add at 24 kHz here
        w, bias = self.block[-1].conv.weight, self.block[-1].conv.get("bias")
        cached = self.__dict__.get("_cached")
        if cached is None or cached[0] is not w:
            cached = (w, mx.contiguous(w[:, 0].T))
            mx.eval(cached[1])
            object.__setattr__(self, "_cached", cached)  # kept out of the parameters
        b, t, c = x.shape
        base = (x if bias is None else x + bias).reshape(b * t, c)
        return mx.addmm(base, y.reshape(b * t, -1), cached[1]).reshape(b, t, c)


class SEANetEncoder(nn.Module):
    """Audio ``[b, samples, 1]`` -> ``[b, samples / hop, hidden_size]``."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        c, pad = args.num_filters, args.pad_mode
        layers: list[nn.Module] = [CausalConv1d(args.audio_channels, c, args.kernel_size,
                                                pad_mode=pad)]  # fmt: skip
        for ratio in reversed(args.upsampling_ratios):
            layers += [ResnetBlock(args, c, args.dilation_growth_rate**j)
                       for j in range(args.num_residual_layers)]  # fmt: skip
            layers += [
                ELU(),
                CausalConv1d(c, 2 * c, 2 * ratio, stride=ratio, pad_mode=pad),
            ]
            c *= 2
        layers += [
            ELU(),
            CausalConv1d(c, args.hidden_size, args.last_kernel_size, pad_mode=pad),
        ]
        self.layers = layers

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers:
            x = layer(x)
        return x


class SEANetDecoder(nn.Module):
    """``[b, frames, hidden_size]`` -> audio ``[b, frames * hop, 1]``; streams."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        c, pad = args.seanet_channels, args.pad_mode
        layers: list[nn.Module] = [CausalConv1d(args.hidden_size, c, args.kernel_size,
                                                pad_mode=pad)]  # fmt: skip
        for ratio in args.upsampling_ratios:
            layers += [ELU(), CausalConvTranspose1d(c, c // 2, 2 * ratio, ratio)]
            c //= 2
            layers += [ResnetBlock(args, c, args.dilation_growth_rate**j)
                       for j in range(args.num_residual_layers)]  # fmt: skip
        layers += [ELU(), CausalConv1d(c, args.audio_channels, args.last_kernel_size,
                                       pad_mode=pad)]  # fmt: skip
        self.layers = layers

    def __call__(self, x: mx.array, state: dict | None = None) -> mx.array:
        for layer in self.layers:
            x = layer(x, state)
        return x


class LayerScale(nn.Module):
    """A learnt per-channel scale of a residual branch (``scale``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = mx.full((dim,), 0.01)


def _linear(c_in: int, c_out: int, bias: bool) -> fnn.Linear:
    return fnn.Linear(c_in, c_out, bias=bias)


def masked_attention(q: mx.array, k: mx.array, v: mx.array, scale: float, q_start: int,
                     k_start: int, window: int) -> mx.array:  # fmt: skip
    """Causal sliding-window attention: query i (at position ``q_start + i``) sees the keys at
    positions ``p`` with ``q - window < p <= q`` (keys at ``k_start ..``). ``q`` is ``[b, heads,
    tq, d]``; ``k``, ``v`` ``[b, kv_heads, tk, d]``. ``mlx_audio_io.nn.attention`` with its
    window: on the CPU a C kernel (query blocks, the masked softmax on the visible keys only;
    MLX's CPU build takes ``exp`` one element at a time), elsewhere ``mx.fast``'s."""
    group = q.shape[1] // k.shape[1]
    if group > 1:  # query heads sharing a key head
        k, v = mx.repeat(k, group, axis=1), mx.repeat(v, group, axis=1)
    return fnn.attention(q, k, v, scale, window=window, q_start=q_start, k_start=k_start)


class Attention(nn.Module):
    """Causal multi-head self-attention over a sliding window, with (half-split) RoPE."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        h, d = args.hidden_size, args.attention_head_dim
        self.heads, self.kv_heads, self.head_dim = (
            args.num_attention_heads,
            args.num_key_value_heads,
            d,
        )
        self.window, self.theta = args.sliding_window, args.rope_theta
        self.q_proj = _linear(h, self.heads * d, args.attention_bias)
        self.k_proj = _linear(h, self.kv_heads * d, args.attention_bias)
        self.v_proj = _linear(h, self.kv_heads * d, args.attention_bias)
        self.o_proj = _linear(self.heads * d, h, args.attention_bias)

    def __call__(self, x: mx.array, offset: int, cache: list | None) -> mx.array:
        """``x`` ``[b, t, hidden]`` at positions ``offset ..``; ``cache``: None, or a list
        holding the earlier keys and values (updated in place, the last ``window - 1`` kept)."""
        b, t, _ = x.shape
        d = self.head_dim

        def heads(y: mx.array, n: int) -> mx.array:
            return y.reshape(b, t, n, d).transpose(0, 2, 1, 3)

        q = mx.fast.rope(heads(self.q_proj(x), self.heads), d, traditional=False,
                         base=self.theta, scale=1.0, offset=offset)  # fmt: skip
        k = mx.fast.rope(heads(self.k_proj(x), self.kv_heads), d, traditional=False,
                         base=self.theta, scale=1.0, offset=offset)  # fmt: skip
        v = heads(self.v_proj(x), self.kv_heads)
        start = offset  # position of the first key
        if cache is not None:
            if cache:
                k = mx.concatenate([cache[0], k], axis=2)
                v = mx.concatenate([cache[1], v], axis=2)
                start -= cache[0].shape[2]
            keep = min(k.shape[2], self.window - 1)
            cache[:] = [k[:, :, k.shape[2] - keep :], v[:, :, v.shape[2] - keep :]]
        out = masked_attention(q, k, v, d**-0.5, offset, start, self.window)
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(b, t, -1))


class MLP(nn.Module):
    """``fc2(gelu(fc1(x)))``, no biases."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.fc1 = _linear(args.hidden_size, args.intermediate_size, False)
        self.fc2 = _linear(args.intermediate_size, args.hidden_size, False)
        self.act = "gelu" if args.hidden_act == "gelu" else "gelu_tanh"


class TransformerLayer(nn.Module):
    """Pre-norm (LayerNorm) attention and MLP, each branch scaled by a LayerScale."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        h = args.hidden_size
        self.self_attn = Attention(args)
        self.mlp = MLP(args)
        self.input_layernorm = nn.LayerNorm(h, eps=args.norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(h, eps=args.norm_eps)
        self.self_attn_layer_scale = LayerScale(h)
        self.mlp_layer_scale = LayerScale(h)

    def __call__(self, x: mx.array, offset: int, cache: list | None) -> mx.array:
        a = self.self_attn(self.input_layernorm(x), offset, cache)
        x = fnn.bias_act(a, residual=x, residual_scale=self.self_attn_layer_scale.scale)
        h = fnn.bias_act(self.mlp.fc1(self.post_attention_layernorm(x)), activation=self.mlp.act)
        return fnn.bias_act(self.mlp.fc2(h), residual=x, residual_scale=self.mlp_layer_scale.scale)


class Transformer(nn.Module):
    """``num_hidden_layers`` causal layers; streams (positions and keys carried in ``state``)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.layers = [TransformerLayer(args) for _ in range(args.num_hidden_layers)]

    def __call__(self, x: mx.array, state: dict | None = None) -> mx.array:
        if state is None:
            for layer in self.layers:
                x = layer(x, 0, None)
            return x
        mine = state.setdefault(id(self), {"offset": 0, "caches": [[] for _ in self.layers]})
        for layer, cache in zip(self.layers, mine["caches"], strict=True):
            x = layer(x, mine["offset"], cache)
        mine["offset"] += x.shape[1]
        return x


class Codebook(nn.Module):
    """A Euclidean codebook stored as moshi trains it: ``embed_sum`` ``[size, dim]`` and
    ``cluster_usage`` ``[size]``; the entries are their ratio (usage clamped at 1e-5)."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.embed_sum = mx.zeros((size, dim))
        self.cluster_usage = mx.ones((size,))

    def embed(self) -> mx.array:
        """The entries ``[size, dim]`` (computed once per loaded weights)."""
        cached = self.__dict__.get("_embed")
        if cached is None or cached[0] is not self.embed_sum or cached[1] is not self.cluster_usage:
            e = self.embed_sum / mx.maximum(self.cluster_usage, 1e-5)[:, None]
            cached = (self.embed_sum, self.cluster_usage, e, mx.sum(e * e, axis=1))
            object.__setattr__(self, "_embed", cached)  # kept out of the parameters
        return cached[2]

    def encode(self, x: mx.array) -> mx.array:
        """Nearest entry (L2) of each row of ``x`` ``[n, dim]`` -> ``[n]`` int32."""
        e = self.embed()
        norms = self.__dict__["_embed"][3]
        dist = mx.sum(x * x, axis=1, keepdims=True) - 2 * (x @ e.T) + norms[None]
        return mx.argmin(dist, axis=1).astype(mx.int32)


class VectorQuantization(nn.Module):
    """One level (its ``codebook``)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.codebook = Codebook(args.codebook_size, args.codebook_dim)


class ResidualVectorQuantizer(nn.Module):
    """Levels that each code what the ones before left; ``input_proj``/``output_proj``
    (1x1 convolutions, no bias, MLX layout ``[out, 1, in]``) around them."""

    def __init__(self, args: ModelArgs, levels: int):
        super().__init__()
        self.layers = [VectorQuantization(args) for _ in range(levels)]
        h, d = args.hidden_size, args.vector_quantization_hidden_dimension
        if d != h:
            self.input_proj = _Weights((d, 1, h), None)
            self.output_proj = _Weights((h, 1, d), None)

    def encode(self, z: mx.array) -> mx.array:
        """``[b, t, hidden]`` -> codes ``[levels, b, t]``."""
        if "input_proj" in self:
            z = z @ self.input_proj.weight[:, 0].T
        b, t, d = z.shape
        residual, codes = z.reshape(b * t, d), []
        for layer in self.layers:
            c = layer.codebook.encode(residual)
            residual = residual - layer.codebook.embed()[c]
            codes.append(c.reshape(b, t))
        return mx.stack(codes)

    def decode(self, codes: mx.array) -> mx.array:
        """Codes ``[levels_used, b, t]`` -> ``[b, t, hidden]``."""
        z = None
        for layer, c in zip(self.layers, codes, strict=False):
            e = layer.codebook.embed()[c]
            z = e if z is None else z + e
        if "output_proj" in self:
            z = z @ self.output_proj.weight[:, 0].T
        return z


class SplitResidualVectorQuantizer(nn.Module):
    """The first ``num_semantic_quantizers`` levels (distilled from WavLM in training) and the
    rest, two residual quantizers over the same latent whose outputs add up."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.semantic = args.num_semantic_quantizers
        self.semantic_residual_vector_quantizer = ResidualVectorQuantizer(args, self.semantic)
        self.acoustic_residual_vector_quantizer = ResidualVectorQuantizer(
            args, args.num_quantizers - self.semantic
        )

    def encode(self, z: mx.array) -> mx.array:
        """``[b, t, hidden]`` -> codes ``[b, num_quantizers, t]`` int32."""
        parts = [self.semantic_residual_vector_quantizer.encode(z)] if self.semantic else []
        parts.append(self.acoustic_residual_vector_quantizer.encode(z))
        return mx.concatenate(parts, axis=0).transpose(1, 0, 2)

    def decode(self, codes: mx.array) -> mx.array:
        """Codes ``[b, k, t]`` (the first k levels) -> ``[b, t, hidden]``."""
        codes = codes.transpose(1, 0, 2)
        s = self.semantic
        z = self.semantic_residual_vector_quantizer.decode(codes[:s]) if s else None
        if codes.shape[0] > s:
            a = self.acoustic_residual_vector_quantizer.decode(codes[s:])
            z = a if z is None else z + a
        return z
