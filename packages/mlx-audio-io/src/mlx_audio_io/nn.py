"""Convolution layers with fast CPU paths, for the models of every package.

MLX's Linux CPU build runs ``conv_transpose1d`` and dilated ``conv1d`` through slow generic
kernels (measured here: a 4000 -> 24000-frame, 256 -> 128-channel transposed convolution takes
2.7 s, 40x torch). On the CPU these functions rewrite them as one matrix multiplication (which
goes to the preloaded OpenBLAS) plus cheap reshapes and adds. On other devices (Metal, CUDA)
they call MLX's own kernels. Weights use MLX's layouts, so ``mlx.nn`` checkpoints load as is.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np


def _on_cpu() -> bool:
    return mx.default_device() == mx.cpu


def conv_transpose1d(
    x: mx.array, weight: mx.array, stride: int = 1, padding: int = 0, output_padding: int = 0
) -> mx.array:
    """Transposed 1-D convolution, as ``mx.conv_transpose1d`` (dilation 1, groups 1).

    Args:
        x: ``[batch, length, in_channels]``.
        weight: ``[out_channels, kernel, in_channels]`` (MLX's layout).
        stride, padding, output_padding: As in PyTorch's ``ConvTranspose1d``.

    Returns:
        ``[batch, (length - 1) * stride - 2 * padding + kernel + output_padding, out_channels]``.
    """
    if not _on_cpu():
        out = mx.conv_transpose1d(x, weight, stride=stride, padding=padding)
        return mx.pad(out, [(0, 0), (0, output_padding), (0, 0)]) if output_padding else out
    n, length, c_in = x.shape
    c_out, k, _ = weight.shape
    m = math.ceil(k / stride)  # kernel taps per output phase
    w = weight.transpose(2, 1, 0)  # [c_in, k, c_out]
    if m * stride != k:  # zero taps make the kernel a whole number of strides
        w = mx.pad(w, [(0, 0), (0, m * stride - k), (0, 0)])
    # every input frame's contribution to the m * stride outputs it touches, in one matmul
    z = x.reshape(n * length, c_in) @ w.reshape(c_in, m * stride * c_out)
    z = z.reshape(n, length, m, stride, c_out)
    # overlap-add: block t + j of the output gets tap block j of input frame t
    y = sum(mx.pad(z[:, :, j], [(0, 0), (j, m - 1 - j), (0, 0), (0, 0)]) for j in range(m))
    y = y.reshape(n, (length + m - 1) * stride, c_out)
    out_len = (length - 1) * stride - 2 * padding + k + output_padding
    y = y[:, padding : padding + out_len]
    if y.shape[1] < out_len:  # output_padding past the last tap
        y = mx.pad(y, [(0, 0), (0, out_len - y.shape[1]), (0, 0)])
    return y


def conv1d(
    x: mx.array, weight: mx.array, stride: int = 1, padding: int = 0, dilation: int = 1
) -> mx.array:
    """1-D convolution, as ``mx.conv1d`` (groups 1). Dilated convolutions on the CPU become
    K shifted views of the input concatenated on the channel axis and one matmul.

    Args:
        x: ``[batch, length, in_channels]``.
        weight: ``[out_channels, kernel, in_channels]``.
    """
    if not _on_cpu() or dilation == 1:
        return mx.conv1d(x, weight, stride=stride, padding=padding, dilation=dilation)
    n, length, c_in = x.shape
    c_out, k, _ = weight.shape
    xp = mx.pad(x, [(0, 0), (padding, padding), (0, 0)]) if padding else x
    out_len = (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    span = (out_len - 1) * stride + 1
    taps = [xp[:, j * dilation : j * dilation + span : stride] for j in range(k)]
    cols = mx.concatenate(taps, axis=-1)  # [n, out_len, k * c_in]
    return cols @ weight.reshape(c_out, k * c_in).T


def conv_axis(
    x: mx.array, weight: mx.array, axis: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> mx.array:
    """1-D convolution along any axis of a channels-last array (groups 1): every other axis
    but the last is a batch axis. Lets a model convolve ``[batch, time, freq, channels]``
    over time or over frequency without transposing it.

    Args:
        x: ``[..., length, ..., in_channels]``, ``length`` at ``axis``.
        weight: ``[out_channels, kernel, in_channels]`` (MLX's layout).
        axis: The axis to convolve over (not the last).

    Returns:
        ``x`` with ``axis`` of length ``(length + 2 * padding - dilation * (kernel - 1) - 1)
        // stride + 1`` and ``out_channels`` channels.
    """
    axis = axis % x.ndim
    c_out, k, c_in = weight.shape
    if axis == x.ndim - 2 and (dilation == 1 or not _on_cpu()):
        lead = x.shape[:-2]
        y = conv1d(x.reshape(-1, *x.shape[-2:]), weight, stride, padding, dilation)
        return y.reshape(*lead, *y.shape[-2:])
    if not _on_cpu():
        y = conv_axis(mx.swapaxes(x, axis, -2), weight, -2, stride, padding, dilation)
        return mx.swapaxes(y, axis, -2)
    pads = [(0, 0)] * x.ndim
    pads[axis] = (padding, padding)
    xp = mx.pad(x, pads) if padding else x
    out_len = (x.shape[axis] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    span = (out_len - 1) * stride + 1
    index = [slice(None)] * x.ndim
    taps = []
    for j in range(k):
        index[axis] = slice(j * dilation, j * dilation + span, stride)
        taps.append(xp[tuple(index)])
    cols = mx.concatenate(taps, axis=-1) if k > 1 else taps[0]
    return cols @ weight.reshape(c_out, k * c_in).T


def conv2d(x: mx.array, weight: mx.array, padding: tuple[int, int] = (0, 0)) -> mx.array:
    """2-D convolution, stride 1, as ``mx.conv2d``; on the CPU the kernel taps are stacked on
    the channel axis and multiplied in one matmul (a little faster than MLX's kernel here).

    Args:
        x: ``[batch, height, width, in_channels]``.
        weight: ``[out_channels, kernel_h, kernel_w, in_channels]``.
        padding: Zero padding of height and width.
    """
    if not _on_cpu():
        return mx.conv2d(x, weight, padding=padding)
    c_out, kh, kw, c_in = weight.shape
    ph, pw = padding
    xp = mx.pad(x, [(0, 0), (ph, ph), (pw, pw), (0, 0)]) if ph or pw else x
    h, w = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    taps = [xp[:, i : i + h, j : j + w] for i in range(kh) for j in range(kw)]
    cols = mx.concatenate(taps, axis=-1) if len(taps) > 1 else taps[0]
    return cols @ weight.reshape(c_out, kh * kw * c_in).T


def _sum_axis(x: mx.array, axis: int, block: int = 1024) -> mx.array:
    n = x.shape[axis]
    if n <= 2 * block:
        return mx.sum(x, axis=axis, keepdims=True)
    q = n // block
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, q * block)
    head = x[tuple(index)].reshape(*x.shape[:axis], q, block, *x.shape[axis + 1 :])
    total = mx.sum(mx.sum(head, axis=axis + 1), axis=axis, keepdims=True)
    if q * block < n:
        index[axis] = slice(q * block, n)
        total = total + mx.sum(x[tuple(index)], axis=axis, keepdims=True)
    return total


def mean(x: mx.array, axes) -> mx.array:
    """``mx.mean(x, axes, keepdims=True)`` summed axis by axis in blocks of 1024, so that
    reductions over hundreds of thousands of float32 values keep torch's accuracy (MLX's CPU
    reduction summing 8M values in one run was off by 1e-4 relative; this by ~1e-6).
    """
    axes = sorted((a % x.ndim for a in ([axes] if isinstance(axes, int) else axes)), reverse=True)
    count = 1
    for a in axes:
        count *= x.shape[a]
        x = _sum_axis(x, a)
    return x / count


def var(x: mx.array, axes, ddof: int = 0) -> tuple[mx.array, mx.array]:
    """Two-pass ``(mean, variance)`` over ``axes`` (kept as size 1) with :func:`mean`'s
    accuracy; ``ddof=1`` gives torch's default unbiased ``std ** 2``."""
    m = mean(x, axes)
    d = x - m
    n = 1
    for a in [axes] if isinstance(axes, int) else axes:
        n *= x.shape[a]
    return m, mean(d * d, axes) * (n / (n - ddof))


# Abramowitz & Stegun 7.1.26: erf(z) = 1 - t * poly(t) * exp(-z^2), t = 1 / (1 + p z), z >= 0;
# absolute error below 1.5e-7
_ERF_P = np.float32(0.3275911)
_ERF_A = [np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027,
                                   1.061405429)]  # fmt: skip


def _numpy(x: mx.array) -> np.ndarray:
    return np.asarray(x if x.dtype == mx.float32 else x.astype(mx.float32))


def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU, as ``torch.nn.functional.gelu``. MLX's CPU build evaluates erf and
    exp one element at a time (230 ms for 8M floats here); on the CPU this computes erf from
    A&S 7.1.26 with NumPy's vectorised exp (55 ms, error < 5e-7), elsewhere ``nn.gelu``."""
    if not _on_cpu():
        return nn.gelu(x)
    xn = _numpy(x)
    z = np.abs(xn)
    z *= np.float32(1 / math.sqrt(2))
    t = z * _ERF_P
    t += 1
    np.reciprocal(t, out=t)
    p = t * _ERF_A[4]
    for a in _ERF_A[3::-1]:
        p += a
        p *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    p *= z
    np.subtract(1, p, out=p)  # erf(|x| / sqrt 2)
    np.copysign(p, xn, out=p)
    p += 1
    p *= xn
    p *= 0.5
    return mx.array(p).astype(x.dtype)


def glu(x: mx.array, axis: int = -1) -> mx.array:
    """Gated linear unit, as ``torch.nn.functional.glu``: first half of ``axis`` times the
    sigmoid of the second. On the CPU the sigmoid is ``0.5 + 0.5 tanh(x / 2)`` in NumPy
    (7x MLX's CPU sigmoid)."""
    if not _on_cpu():
        a, b = mx.split(x, 2, axis=axis)
        return a * mx.sigmoid(b)
    xn = _numpy(x)
    a, b = np.split(xn, 2, axis=axis)
    s = np.multiply(b, np.float32(0.5))
    np.tanh(s, out=s)
    s *= np.float32(0.5)
    s += np.float32(0.5)
    s *= a
    return mx.array(s).astype(x.dtype)


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float) -> mx.array:
    """Dense scaled dot-product attention, ``softmax(q k^T * scale) v``, as
    ``mx.fast.scaled_dot_product_attention`` without a mask.

    On the CPU, MLX's softmax spends 1 s in exp for one 8-head 2688x2688 attention here
    (its matmuls take 0.3 s). This keeps the matmuls in MLX (the preloaded BLAS) and takes
    the exponentials with NumPy's vectorised exp, head by head, in place in the score
    matrix MLX has just computed (a fresh buffer no other array shares), so nothing is copied.

    Args:
        q: ``[batch, heads, queries, dim]``; k, v: ``[batch, heads, keys, dim]``.
    """
    if not _on_cpu():
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale)
    b, h = q.shape[:2]
    q = q * scale
    kt = k.swapaxes(-1, -2)
    mx.eval(q, kt, v)
    outs = []
    for i in range(b):
        for j in range(h):
            s = q[i, j] @ kt[i, j]
            mx.eval(s)
            e = np.asarray(s)  # MLX's own buffer, written in place
            e -= e.max(axis=-1, keepdims=True)
            np.exp(e, out=e)
            total = mx.array(e.sum(axis=-1, keepdims=True))
            outs.append((s @ v[i, j]) / total)
            mx.eval(outs[-1])  # frees the score matrix
    return mx.stack(outs).reshape(b, h, q.shape[2], v.shape[-1])


def weight_norm(weight_v: mx.array, weight_g: mx.array, dim: int = 0) -> mx.array:
    """The weight that ``torch.nn.utils.weight_norm`` stores as ``weight_g`` and ``weight_v``:
    ``g * v / ||v||``, the norm taken over every axis but ``dim`` (so it does not matter
    whether v is in torch's or MLX's convolution layout). ``dim=None`` norms the whole tensor.

    Args:
        weight_v: The direction tensor.
        weight_g: The magnitudes: one per slice along ``dim`` (any shape that broadcasts
            there, e.g. torch's ``[out, 1, 1]``), or a scalar when ``dim`` is None.
    """
    if dim is None:
        return weight_v * (weight_g.reshape(()) / mx.sqrt(mx.sum(weight_v * weight_v)))
    dim = dim % weight_v.ndim
    axes = [a for a in range(weight_v.ndim) if a != dim]
    norm = mx.sqrt(mx.sum(weight_v * weight_v, axis=axes, keepdims=True))
    shape = [1] * weight_v.ndim
    shape[dim] = weight_v.shape[dim]
    return weight_v * (weight_g.reshape(shape) / norm)


def _init_weights(
    module: nn.Module, in_channels: int, out_channels: int, kernel_size: int, bias: bool
) -> None:
    """mlx.nn's initialisation: uniform weights [out, kernel, in] scaled by the fan-in."""
    scale = math.sqrt(1 / (in_channels * kernel_size))
    module.weight = mx.random.uniform(-scale, scale, (out_channels, kernel_size, in_channels))
    if bias:
        module.bias = mx.zeros((out_channels,))


class ConvTranspose1d(nn.Module):
    """``mlx.nn.ConvTranspose1d`` with the fast CPU path (same parameters and weight layout)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        output_padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        _init_weights(self, in_channels, out_channels, kernel_size, bias)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    def __call__(self, x: mx.array) -> mx.array:
        y = conv_transpose1d(x, self.weight, self.stride, self.padding, self.output_padding)
        return y + self.bias if "bias" in self else y


class Conv1d(nn.Module):
    """``mlx.nn.Conv1d`` with the fast CPU path for dilated kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        _init_weights(self, in_channels, out_channels, kernel_size, bias)
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def __call__(self, x: mx.array) -> mx.array:
        y = conv1d(x, self.weight, self.stride, self.padding, self.dilation)
        return y + self.bias if "bias" in self else y
