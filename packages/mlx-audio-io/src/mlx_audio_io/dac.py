"""Building blocks of the DAC family of audio codecs (descript-audio-codec, SNAC, DAC-VAE):
Snake activations, weight-normed convolutions, residual units with dilations 1/3/9, and the
strided down- and up-sampling blocks around them.

Every convolution goes through :mod:`mlx_audio_io.nn`'s fast paths (matmuls to the preloaded
OpenBLAS on the CPU, MLX's kernels elsewhere); depthwise convolutions are K shifted
multiply-adds of the input on the CPU. Arrays are channels-last, ``[batch, frames, channels]``.

Parameter names and layouts follow the MLX ports of these codecs, so their safetensors load
as they are: ``nn.Sequential`` children under ``.layers``, convolution ``weight_v``
``[out, kernel, in / groups]``, transposed convolution ``weight_v`` ``[in, kernel, out]``,
``weight_g`` ``[out or in, 1, 1]`` (PyTorch's shape) and Snake ``alpha`` ``[1, channels, 1]``.
A PyTorch state dict maps onto them by moving every 3-D ``weight_v``'s kernel axis to the
middle (:func:`torch_to_mlx_layout`).
"""

from __future__ import annotations

import math
import re

import mlx.core as mx
import mlx.nn as mlx_nn

from . import nn

__all__ = [
    "DecoderBlock",
    "EncoderBlock",
    "ResidualUnit",
    "Snake1d",
    "WNConv1d",
    "WNConvTranspose1d",
    "depthwise_conv1d",
    "snake",
    "torch_to_mlx_layout",
]


def snake(x: mx.array, alpha: mx.array) -> mx.array:
    """``x + sin(alpha * x)^2 / alpha`` per channel (one fused pass on the CPU).

    Args:
        x: ``[..., channels]``.
        alpha: ``channels`` values, any shape (``[1, channels, 1]`` as stored).
    """
    return nn.bias_act(x, None, "snake", activation_param=alpha.reshape(-1))


class Snake1d(mlx_nn.Module):
    """Snake activation with a learnt ``alpha`` per channel (stored ``[1, channels, 1]``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = mx.ones((1, channels, 1))

    def __call__(self, x: mx.array) -> mx.array:
        return snake(x, self.alpha)


def depthwise_conv1d(
    x: mx.array,
    weight: mx.array,
    padding: int = 0,
    dilation: int = 1,
    bias: mx.array | None = None,
) -> mx.array:
    """Depthwise (``groups = channels``) stride-1 convolution: :func:`mlx_audio_io.nn.
    depthwise_conv1d` (a C kernel on the CPU, MLX's grouped convolution elsewhere).

    Args:
        x: ``[batch, frames, channels]``.
        weight: ``[channels, kernel, 1]``.
        bias: ``[channels]`` or None.

    Returns:
        ``[batch, frames + 2 * padding - dilation * (kernel - 1), channels]``.
    """
    return nn.depthwise_conv1d(x, weight, padding=padding, dilation=dilation, bias=bias)


class _WeightNormed(mlx_nn.Module):
    """``weight_g * weight_v / ||weight_v||`` (norm over every axis but 0), computed once per
    new pair of parameters and kept out of the parameter tree."""

    def _weight(self) -> mx.array:
        v, g = self["weight_v"], self["weight_g"]
        cached = self.__dict__.get("_folded")
        if cached is None or cached[0] is not v or cached[1] is not g:
            cached = (v, g, self._fold(nn.weight_norm(v, g, dim=0)))
            object.__setattr__(self, "_folded", cached)
        return cached[2]

    def _fold(self, w: mx.array) -> mx.array:
        return w

    def _init(self, shape: tuple[int, int, int], fan: int, out_channels: int, bias: bool):
        """Uniform ``weight_v`` scaled by ``fan``, ``weight_g`` its norm per row (so the
        initial weight is ``weight_v``), zero bias."""
        scale = math.sqrt(1 / fan)
        self.weight_v = mx.random.uniform(-scale, scale, shape)
        self.weight_g = mx.sqrt(mx.sum(self.weight_v**2, axis=(1, 2), keepdims=True))
        if bias:
            self.bias = mx.zeros((out_channels,))


class WNConv1d(_WeightNormed):
    """Weight-normed ``Conv1d`` (groups 1, or depthwise with ``groups == in == out``).

    Parameters: ``weight_v`` ``[out, kernel, in / groups]``, ``weight_g`` ``[out, 1, 1]``,
    ``bias`` ``[out]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        if groups != 1 and not (groups == in_channels == out_channels):
            raise ValueError(
                f"WNConv1d supports groups 1 or depthwise (groups == in == out), got "
                f"groups={groups} for {in_channels} -> {out_channels}"
            )
        if groups != 1 and stride != 1:
            raise ValueError(f"depthwise WNConv1d must have stride 1, got {stride}")
        shape = (out_channels, kernel_size, in_channels // groups)
        self._init(shape, in_channels // groups * kernel_size, out_channels, bias)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def __call__(self, x: mx.array, snake_alpha: mx.array | None = None) -> mx.array:
        """The convolution; with ``snake_alpha`` (depthwise only), a Snake activation with
        that alpha fused into it (one pass instead of two)."""
        w, b = self._weight(), self.get("bias")
        if self.groups != 1:
            act = None if snake_alpha is None else "snake"
            alpha = None if snake_alpha is None else snake_alpha.reshape(-1)
            return nn.depthwise_conv1d(x, w, padding=self.padding, dilation=self.dilation,
                                       bias=b, activation=act, activation_param=alpha)  # fmt: skip
        y = nn.conv_axis(x, w, axis=1, stride=self.stride, padding=self.padding,
                         dilation=self.dilation, bias=b)  # fmt: skip
        return y if snake_alpha is None else snake(y, snake_alpha)


class WNConvTranspose1d(_WeightNormed):
    """Weight-normed ``ConvTranspose1d`` (groups 1).

    Parameters: ``weight_v`` ``[in, kernel, out]``, ``weight_g`` ``[in, 1, 1]`` (PyTorch norms
    a transposed convolution's weight per input channel), ``bias`` ``[out]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        output_padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        shape = (in_channels, kernel_size, out_channels)
        self._init(shape, out_channels * kernel_size, out_channels, bias)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    def _fold(self, w: mx.array) -> mx.array:
        return mx.contiguous(w.swapaxes(0, 2))  # [out, kernel, in], nn.conv_transpose1d's

    def __call__(self, x: mx.array) -> mx.array:
        return nn.conv_transpose1d(x, self._weight(), stride=self.stride, padding=self.padding,
                                   output_padding=self.output_padding,
                                   bias=self.get("bias"))  # fmt: skip


class ResidualUnit(mlx_nn.Module):
    """``x + conv1x1(snake(conv_k(snake(x))))``, the k-tap convolution dilated and
    ``same``-padded (DAC's residual unit; SNAC makes it depthwise)."""

    def __init__(self, dim: int, dilation: int = 1, kernel: int = 7, groups: int = 1):
        super().__init__()
        pad = (kernel - 1) * dilation // 2
        self.block = mlx_nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, kernel, padding=pad, dilation=dilation, groups=groups),
            Snake1d(dim),
            WNConv1d(dim, dim, 1),
        )

    def __call__(self, x: mx.array) -> mx.array:
        snake_in, conv, snake_out, project = self.block.layers
        y = project(conv(snake_in(x), snake_alpha=snake_out.alpha))  # 2nd Snake fused in
        crop = (x.shape[1] - y.shape[1]) // 2  # even kernels lose a frame per side
        if crop > 0:
            x = x[:, crop : x.shape[1] - crop]
        return x + y


def _units(dim: int, groups: int, dilations=(1, 3, 9)) -> list[ResidualUnit]:
    return [ResidualUnit(dim, dilation=d, groups=groups) for d in dilations]


class EncoderBlock(mlx_nn.Module):
    """Residual units (dilations 1, 3, 9) at ``input_dim``, Snake, then a strided
    convolution (kernel ``2 * stride``) down to ``frames / stride`` at ``output_dim``."""

    def __init__(self, output_dim: int, input_dim: int | None = None, stride: int = 1,
                 groups: int = 1):  # fmt: skip
        super().__init__()
        input_dim = input_dim or output_dim // 2
        self.block = mlx_nn.Sequential(
            *_units(input_dim, groups),
            Snake1d(input_dim),
            WNConv1d(
                input_dim, output_dim, 2 * stride, stride=stride, padding=math.ceil(stride / 2)
            ),  # fmt: skip
        )

    def __call__(self, x: mx.array) -> mx.array:
        return self.block(x)


class DecoderBlock(mlx_nn.Module):
    """Snake, a transposed convolution (kernel ``2 * stride``) up to ``frames * stride``,
    optionally ``noise_block`` (called as ``noise_block(x, noise)``), then residual units
    (dilations 1, 3, 9) at ``output_dim``."""

    def __init__(self, input_dim: int, output_dim: int, stride: int = 1, groups: int = 1,
                 noise_block: mlx_nn.Module | None = None):  # fmt: skip
        super().__init__()
        layers = [
            Snake1d(input_dim),
            WNConvTranspose1d(input_dim, output_dim, 2 * stride, stride=stride,
                              padding=math.ceil(stride / 2), output_padding=stride % 2),
        ]  # fmt: skip
        self.noise_at = len(layers) if noise_block is not None else -1
        if noise_block is not None:
            layers.append(noise_block)
        self.block = mlx_nn.Sequential(*layers, *_units(output_dim, groups))

    def __call__(self, x: mx.array, noise: mx.array | None = None) -> mx.array:
        for i, layer in enumerate(self.block.layers):
            x = layer(x, noise) if i == self.noise_at else layer(x)
        return x


_SEQUENTIAL_INDEX = re.compile(r"\.(block|model)\.(\d+)(?=\.)")


def torch_to_mlx_layout(state: dict) -> dict:
    """A PyTorch state dict of these blocks in this module's names and layouts.

    Renames ``….block.N.`` / ``….model.N.`` to ``….block.layers.N.``, maps
    ``parametrizations.weight.original0/1`` to ``weight_g``/``weight_v``, and moves every
    3-D ``weight_v``'s kernel axis to the middle (torch's ``[out, in, k]`` and, transposed,
    ``[in, out, k]`` become ``[out, k, in]`` and ``[in, k, out]``). Other arrays pass as they
    are (``weight_g`` ``[n, 1, 1]`` and Snake ``alpha`` ``[1, C, 1]`` are the same in both).
    """
    out = {}
    for key, value in state.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        key = _SEQUENTIAL_INDEX.sub(r".\1.layers.\2", key)
        if key.endswith(".weight_v") and value.ndim == 3:
            value = value.transpose(0, 2, 1)
        out[key] = value
    return out
