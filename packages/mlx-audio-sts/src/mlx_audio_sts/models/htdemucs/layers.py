"""HTDemucs encoder and decoder layers, channels-last.

The frequency branch is ``[batch, time, freq, channels]`` and the time branch
``[batch, time, channels]``; torch's ``[B, C, F, T]`` convolutions over frequency with
``(k, 1)`` kernels become 1-D convolutions along the frequency axis. Parameter names follow
demucs' ``state_dict`` (``conv``, ``rewrite``, ``dconv.layers.0.0``, ...); the weights are
in MLX's layouts (``sanitize`` in model.py transposes torch's).
"""

from __future__ import annotations

import mlx_audio_io.nn as fnn

import mlx.core as mx
import mlx.nn as nn


class GroupNorm(nn.Module):
    """``torch.nn.GroupNorm(groups, channels)`` for channels-last input (``axes``: the axes the
    statistics run over, as in ``mlx_audio_io.nn.group_norm``; default all but batch and
    channels). Calling it with an activation, a residual or the bias of the layer before fuses
    those into the same passes (``nn.group_norm``)."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5, axes=None):
        super().__init__()
        self.groups, self.eps, self.axes = groups, eps, axes
        self.weight = mx.ones((channels,))
        self.bias = mx.zeros((channels,))

    def __call__(self, x, activation=None, residual=None, residual_scale=None, input_bias=None,
                 projection=None):  # fmt: skip
        return fnn.group_norm(
            x, self.groups, self.weight, self.bias, self.eps, self.axes, activation, residual,
            residual_scale, input_bias, projection,
        )  # fmt: skip


class Identity(nn.Module):
    def __call__(self, x):
        return x


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (Touvron et al. 2021)."""

    def __init__(self, channels: int, init: float = 0.0):
        super().__init__()
        self.scale = mx.full((channels,), init)

    def __call__(self, x):
        return x * self.scale


class ConvAxis(nn.Module):
    """A 1-D convolution along one axis of a channels-last array (torch Conv1d, or Conv2d with
    a ``(k, 1)`` kernel). Weight ``[out, kernel, in]``."""

    def __init__(self, c_in, c_out, kernel, stride=1, padding=0, dilation=1, axis=-2):
        super().__init__()
        scale = max(c_in * kernel, 1) ** -0.5
        self.weight = mx.random.uniform(-scale, scale, (c_out, kernel, c_in))
        self.bias = mx.zeros((c_out,))
        self.stride, self.padding, self.dilation, self.axis = stride, padding, dilation, axis

    def __call__(self, x, bias=True, activation=None, skip=None):
        """``bias=False`` leaves the bias out, for a fused op after to add; ``activation``
        and ``skip`` (added to ``x`` first) are fused in as ``nn.conv_axis`` does."""
        b = self.bias if bias else None
        return fnn.conv_axis(x, self.weight, self.axis, self.stride, self.padding,
                             self.dilation, b, activation, skip)  # fmt: skip


class Conv2d(nn.Module):
    """torch Conv2d with a square kernel and stride 1 over ``[B, T, F, C]`` (the decoder's
    context convolution). Weight ``[out, k_time, k_freq, in]``."""

    def __init__(self, c_in, c_out, kernel, padding):
        super().__init__()
        scale = max(c_in * kernel * kernel, 1) ** -0.5
        self.weight = mx.random.uniform(-scale, scale, (c_out, kernel, kernel, c_in))
        self.bias = mx.zeros((c_out,))
        self.padding = padding

    def __call__(self, x, bias=True, activation=None, skip=None):
        """As :meth:`ConvAxis.__call__`."""
        return fnn.conv2d(x, self.weight, (self.padding, self.padding),
                          self.bias if bias else None, activation, skip)  # fmt: skip


class ConvTransposeAxis(nn.Module):
    """torch ConvTranspose1d, or ConvTranspose2d with a ``(k, 1)`` kernel, along axis -2.
    Weight ``[out, kernel, in]``."""

    def __init__(self, c_in, c_out, kernel, stride):
        super().__init__()
        scale = max(c_out * kernel, 1) ** -0.5
        self.weight = mx.random.uniform(-scale, scale, (c_out, kernel, c_in))
        self.bias = mx.zeros((c_out,))
        self.stride = stride

    def __call__(self, x, padding=0, activation=None):
        """``padding`` crops as torch's; ``activation`` (None, "gelu") is fused in."""
        lead = x.shape[:-2]
        y = fnn.conv_transpose1d(x.reshape(-1, *x.shape[-2:]), self.weight, self.stride,
                                 padding, bias=self.bias, activation=activation)  # fmt: skip
        return y.reshape(*lead, *y.shape[-2:])


class DConv(nn.Module):
    """Residual branches of dilated convolutions over time (demucs.DConv, no LSTM/attention):
    per layer, conv k3 (dilation 2**d) -> GroupNorm(1) -> GELU -> 1x1 conv -> GroupNorm(1)
    -> GLU -> LayerScale, added to the input. Works on ``[B, T, C]`` and ``[B, T, F, C]``
    (frequency rows are independent, as demucs' reshape to ``(B*F, C, T)`` makes them)."""

    def __init__(self, channels: int, compress: float = 4, depth: int = 2, init: float = 1e-4):
        super().__init__()
        hidden = int(channels / compress)
        self.layers = [
            [
                ConvAxis(channels, hidden, 3, padding=2**d, dilation=2**d, axis=1),
                GroupNorm(1, hidden, axes=(1,)),
                Identity(),  # GELU
                ConvAxis(hidden, 2 * channels, 1, axis=1),
                GroupNorm(1, 2 * channels, axes=(1,)),
                Identity(),  # GLU
                LayerScale(channels, init),
            ]
            for d in range(depth)
        ]

    def __call__(self, x):
        for conv1, norm1, _, conv2, norm2, _, scale in self.layers:
            y = norm1(conv1(x, bias=False), "gelu", input_bias=conv1.bias)
            # the 1x1 conv, its bias, the norm, GLU, LayerScale and residual: one fused op
            x = norm2(y, "glu", x, scale.scale, conv2.bias, conv2.weight[:, 0])
        return x


def _rewrite(channels: int, context: int, freq: bool):
    """The 1 + 2 * context convolution to twice the channels that feeds a GLU: square over
    (time, frequency) in the frequency branch, over time in the time branch."""
    k = 1 + 2 * context
    if freq:
        return Conv2d(channels, 2 * channels, k, context)
    return ConvAxis(channels, 2 * channels, k, padding=context, axis=1)


def _norm_fn(norm: bool, groups: int, channels: int):
    return GroupNorm(groups, channels) if norm else Identity()


def _norm_act(norm, y, activation, bias):
    """``activation(norm(y + bias))`` in one fused op; ``norm`` a GroupNorm or Identity."""
    if isinstance(norm, GroupNorm):
        return norm(y, activation, input_bias=bias)
    return fnn.bias_act(y, bias, activation)


def _conv_norm_act(norm, conv, x, activation, skip=None):
    """``activation(norm(conv(x + skip)))``: without a norm the bias and activation are fused
    into the convolution's output pass, with one into the norm's."""
    if isinstance(norm, GroupNorm):
        return norm(conv(x, bias=False, skip=skip), activation, input_bias=conv.bias)
    return conv(x, activation=activation, skip=skip)


class HEncLayer(nn.Module):
    """One encoder layer: strided conv (over frequency or time), optional injection of the
    time branch, GELU, DConv, then a rewrite conv + GLU."""

    def __init__(self, chin, chout, kernel_size=8, stride=4, norm_groups=1, empty=False,
                 freq=True, dconv=True, norm=True, context=0, dconv_kw=None, pad=True,
                 rewrite=True):  # fmt: skip
        super().__init__()
        self.freq, self.kernel_size, self.stride, self.empty = freq, kernel_size, stride, empty
        pad = kernel_size // 4 if pad else 0
        self.conv = ConvAxis(chin, chout, kernel_size, stride, pad, axis=-2)
        if empty:
            return
        self.norm1 = _norm_fn(norm, norm_groups, chout)
        self.rewrite = _rewrite(chout, context, freq) if rewrite else None
        if rewrite:
            self.norm2 = _norm_fn(norm, norm_groups, 2 * chout)
        self.dconv = DConv(chout, **(dconv_kw or {})) if dconv else None

    def __call__(self, x, inject=None):
        if not self.freq:
            if x.ndim == 4:  # [B, T, F, C] -> [B, T, F*C] as torch's view(B, C*F, T)
                x = x.swapaxes(2, 3).reshape(x.shape[0], x.shape[1], -1)
            rem = x.shape[1] % self.stride
            if rem:
                x = mx.pad(x, [(0, 0), (0, self.stride - rem), (0, 0)])
        if self.empty:
            return self.conv(x)
        if inject is None:
            y = _conv_norm_act(self.norm1, self.conv, x, "gelu")
        else:
            y = self.conv(x)
            y = y + (inject[:, :, None] if inject.ndim == 3 and y.ndim == 4 else inject)
            y = _norm_act(self.norm1, y, "gelu", None)
        if self.dconv is not None:
            y = self.dconv(y)
        if self.rewrite is not None:
            y = _conv_norm_act(self.norm2, self.rewrite, y, "glu")
        return y


class HDecLayer(nn.Module):
    """One decoder layer: skip connection, rewrite conv + GLU, DConv, then the transposed
    conv (over frequency or time) and GELU (but for the last layer)."""

    def __init__(self, chin, chout, last=False, kernel_size=8, stride=4, norm_groups=1,
                 empty=False, freq=True, dconv=True, norm=True, context=1, dconv_kw=None,
                 pad=True, rewrite=True):  # fmt: skip
        super().__init__()
        self.pad = kernel_size // 4 if pad else 0
        self.last, self.freq, self.chin, self.empty = last, freq, chin, empty
        self.conv_tr = ConvTransposeAxis(chin, chout, kernel_size, stride)
        self.norm2 = _norm_fn(norm, norm_groups, chout)
        if empty:
            return
        self.rewrite = _rewrite(chin, context, freq) if rewrite else None
        if rewrite:
            self.norm1 = _norm_fn(norm, norm_groups, 2 * chin)
        self.dconv = DConv(chin, **(dconv_kw or {})) if dconv else None

    def __call__(self, x, skip, length):
        if self.freq and x.ndim == 3:  # [B, T, C*F] -> [B, T, F, C]
            x = x.reshape(x.shape[0], x.shape[1], self.chin, -1).swapaxes(2, 3)
        if not self.empty:
            if self.rewrite is not None:  # x + skip summed in the convolution's gather
                y = _conv_norm_act(self.norm1, self.rewrite, x, "glu", skip)
            else:
                y = x + skip
            if self.dconv is not None:
                y = self.dconv(y)
        else:
            y = x
        activation = None if self.last else "gelu"
        if isinstance(self.norm2, GroupNorm):  # normalised before the crop
            z = self.norm2(self.conv_tr(y))
            z = z[:, :, self.pad : z.shape[2] - self.pad] if self.freq else z[:, self.pad :]
            z = fnn.bias_act(z, None, activation) if activation else z
        else:  # the crop, bias and GELU fused into the transposed convolution
            z = self.conv_tr(y, self.pad, activation)
        if not self.freq:
            z = z[:, :length]
        return z, y


class ScaledEmbedding(nn.Module):
    """The frequency embedding: a table stored divided by ``scale``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, scale: float = 10.0):
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)
        self.scale = scale

    @property
    def table(self):
        return self.embedding.weight * self.scale
