"""Model layers with fast CPU paths, for the models of every package.

MLX's Linux CPU build runs ``conv_transpose1d`` and dilated ``conv1d`` through slow generic
kernels (measured here: a 4000 -> 24000-frame, 256 -> 128-channel transposed convolution takes
2.7 s, 40x torch), runs each element-wise operation as its own single-threaded pass over
memory, and evaluates exp and erf one element at a time. On the CPU the convolutions here are
rewritten as matrix multiplications (which go to the preloaded OpenBLAS) over shifted views,
and normalisation, activation, softmax and overlap-add chains run as fused, vectorised,
threaded C kernels (``native/io/aio_nn.c``). On other devices (Metal, CUDA) every function
calls MLX's own kernels. Weights use MLX's layouts, so ``mlx.nn`` checkpoints load as is.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading

import mlx.core as mx
import mlx.nn as nn
import numpy as np


def _on_cpu() -> bool:
    return mx.default_device() == mx.cpu


def conv_transpose1d(
    x: mx.array,
    weight: mx.array,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    bias: mx.array | None = None,
    activation: str | None = None,
) -> mx.array:
    """Transposed 1-D convolution, as ``mx.conv_transpose1d`` (dilation 1, groups 1), with an
    optional bias and element-wise activation fused in.

    On the CPU it is one matrix multiplication (to the preloaded OpenBLAS) giving every input
    frame's contribution to the outputs it touches, then one threaded C pass that overlap-adds
    those, crops the padding and adds the bias (MLX's own kernel is 40x slower here).

    Args:
        x: ``[batch, length, in_channels]``.
        weight: ``[out_channels, kernel, in_channels]`` (MLX's layout).
        stride, padding, output_padding: As in PyTorch's ``ConvTranspose1d``.
        bias: ``[out_channels]`` or None.
        activation: None, ``"gelu"`` or ``"gelu_tanh"`` (as in :func:`bias_act`).

    Returns:
        ``[batch, (length - 1) * stride - 2 * padding + kernel + output_padding, out_channels]``.
    """
    if activation not in (None, "gelu", "gelu_tanh"):
        raise ValueError(f"conv_transpose1d takes activation None, 'gelu' or 'gelu_tanh', "
                         f"got {activation!r}")  # fmt: skip
    n, length, c_in = x.shape
    c_out, k, _ = weight.shape
    out_len = (length - 1) * stride - 2 * padding + k + output_padding
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},) for {c_out} channels, got {bias.shape}")
    if not _on_cpu():
        y = mx.conv_transpose1d(
            x, weight, stride=stride, padding=padding, output_padding=output_padding
        )
        return _activate(y + bias if bias is not None else y, activation)
    m = math.ceil(k / stride)  # kernel taps per output phase
    w = weight.transpose(2, 1, 0)  # [c_in, k, c_out]
    if m * stride != k:  # zero taps make the kernel a whole number of strides
        w = mx.pad(w, [(0, 0), (0, m * stride - k), (0, 0)])
    # every input frame's contribution to the m * stride outputs it touches, in one matmul
    z = x.reshape(n * length, c_in) @ w.reshape(c_in, m * stride * c_out)
    if _native_ok() and out_len > 0 and n * length > 0:
        zv, b = _f32(z), _f32(bias)
        out = _scratch_array((n, out_len, c_out))
        _native("aio_nn_overlap_add", _ptr(zv), _ptr(out), n, length, m, stride, c_out,
                padding, out_len, _ptr(b), _ACTIVATIONS[activation], _threads())  # fmt: skip
        return _to_mlx(out, x.dtype)
    z = z.reshape(n, length, m, stride, c_out)
    # overlap-add: block t + j of the output gets tap block j of input frame t
    y = sum(mx.pad(z[:, :, j], [(0, 0), (j, m - 1 - j), (0, 0), (0, 0)]) for j in range(m))
    y = y.reshape(n, (length + m - 1) * stride, c_out)
    y = y[:, padding : padding + out_len]
    if y.shape[1] < out_len:  # output_padding past the last tap
        y = mx.pad(y, [(0, 0), (0, out_len - y.shape[1]), (0, 0)])
    return _activate(y + bias if bias is not None else y, activation)


def conv1d(
    x: mx.array, weight: mx.array, stride: int = 1, padding: int = 0, dilation: int = 1
) -> mx.array:
    """1-D convolution, as ``mx.conv1d`` (groups 1). Dilated convolutions on the CPU take
    :func:`conv_axis`'s path (matmuls over shifted slices of the input).

    Args:
        x: ``[batch, length, in_channels]``.
        weight: ``[out_channels, kernel, in_channels]``.
    """
    if not _on_cpu() or dilation == 1:
        return mx.conv1d(x, weight, stride=stride, padding=padding, dilation=dilation)
    return conv_axis(x, weight, 1, stride, padding, dilation)


def _shifted_taps(
    x3: mx.array, w: mx.array, length: int, inner: int, padding: int, dilation: int, epi=None
) -> mx.array:
    """Stride-1 convolution of ``x3`` = ``[lead, length * inner, c_in]`` along ``length``
    (``inner`` rows per step), then ``epi`` = (bias, activation, skip) as in
    :func:`conv_axis`. With OpenBLAS it is :func:`conv2d`'s C kernel; otherwise tap j of
    the output at step t reads the input at step t + j * dilation - padding, which in the
    flattened rows is a contiguous slice, so no im2col copy is made. Returns ``[lead,
    out_len * inner, c_out]`` (halved by a GLU)."""
    c_out, k, c_in = w.shape
    lead = x3.shape[0]
    out_len = length + 2 * padding - dilation * (k - 1)
    bias, activation, skip = epi or (None, None, None)
    if k * c_out > c_in and _gemm() is not None:  # blocked im2col + sgemm in C
        x4 = x3.reshape(lead, length, inner, c_in)
        skip4 = None if skip is None else skip.reshape(x4.shape)
        y = _conv_native(x4, w[:, :, None], (padding, 0), (dilation, 1), bias, activation, skip4)
        return y.reshape(lead, out_len * inner, -1)
    if skip is not None:
        x3 = x3 + skip.reshape(x3.shape)
    return _epilogue(_shifted_taps_mlx(x3, w, length, inner, padding, dilation), bias, activation)


def _epilogue(y: mx.array, bias, activation) -> mx.array:
    return y if bias is None and activation is None else bias_act(y, bias, activation)


def _check_conv(name, x, c_in, c_out, bias, activation, skip) -> None:
    if x.shape[-1] != c_in:
        raise ValueError(f"{name}: input has {x.shape[-1]} channels, the weight takes {c_in}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{name}: activation must be one of {sorted(map(str, _ACTIVATIONS))}, "
                         f"got {activation!r}")  # fmt: skip
    if activation == "glu" and c_out % 2:
        raise ValueError(f"{name}: glu needs an even number of channels, got {c_out}")
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"{name}: bias must have shape ({c_out},), got {bias.shape}")
    if skip is not None and skip.shape != x.shape:
        raise ValueError(f"{name}: skip must have the input's shape {x.shape}, got {skip.shape}")


def _shifted_taps_mlx(x3, w, length, inner, padding, dilation):
    c_out, k, c_in = w.shape
    lead = x3.shape[0]
    out_len = length + 2 * padding - dilation * (k - 1)
    if k * c_out <= c_in:
        # few outputs (DConv's squeeze): one matmul to every tap's output, then shifted adds
        # of those small results
        z = (x3 @ w.transpose(2, 1, 0).reshape(c_in, k * c_out)).reshape(
            lead, length, inner, k, c_out
        )
        y = None
        for j in range(k):
            s = j * dilation - padding
            lo, hi = max(0, -s), min(out_len, length - s)  # outputs this tap reaches
            if hi <= lo:
                continue
            part = z[:, lo + s : hi + s, :, j]
            if lo or hi < out_len:
                part = mx.pad(part, [(0, 0), (lo, out_len - hi), (0, 0), (0, 0)])
            y = part if y is None else y + part
        if y is None:
            return mx.zeros((lead, out_len * inner, c_out), x3.dtype)
        return y.reshape(lead, out_len * inner, c_out)
    # else: zero-pad the input, then one accumulating matmul per tap over a row slice
    xp = mx.pad(x3, [(0, 0), (padding * inner, padding * inner), (0, 0)]) if padding else x3
    wt = w.transpose(1, 2, 0)  # [k, c_in, c_out]
    y = None
    for j in range(k):
        rows = xp[:, j * dilation * inner : (j * dilation + out_len) * inner]
        y = rows @ wt[j] if y is None else mx.addmm(y, rows, wt[j])
    return y


def conv_axis(
    x: mx.array,
    weight: mx.array,
    axis: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    bias: mx.array | None = None,
    activation: str | None = None,
    skip: mx.array | None = None,
) -> mx.array:
    """1-D convolution along any axis of a channels-last array (groups 1): every other axis
    but the last is a batch axis. Lets a model convolve ``[batch, time, freq, channels]``
    over time or over frequency without transposing it.

    On the CPU, stride 1 runs as :func:`conv2d`'s blocked-im2col C kernel, or, when the
    output is narrow (DConv's 48 -> 12 channel squeeze), as one matmul to every tap's output
    and shifted adds of those (4-9x a whole im2col there). Stride s over
    the axis before the channels becomes stride 1 over s-frame groups (2-3x im2col); other
    strided convolutions stack the kernel taps on the channel axis and make one matmul.

    Args:
        x: ``[..., length, ..., in_channels]``, ``length`` at ``axis``.
        weight: ``[out_channels, kernel, in_channels]`` (MLX's layout).
        axis: The axis to convolve over (not the last).
        bias: ``[out_channels]`` added to the output, or None.
        activation: None, ``"gelu"``, ``"gelu_tanh"``, ``"glu"`` (halves the channels) or
            ``"elu"``, applied after the bias; with the bias fused into the C kernel's output
            pass.
        skip: An array shaped as ``x`` added to it first (a U-Net skip connection), fused
            into the C kernel's gather.

    Returns:
        ``x`` with ``axis`` of length ``(length + 2 * padding - dilation * (kernel - 1) - 1)
        // stride + 1`` and ``out_channels`` channels (half with ``"glu"``).
    """
    axis = axis % x.ndim
    c_out, k, c_in = weight.shape
    _check_conv("conv_axis", x, c_in, c_out, bias, activation, skip)
    out_len = (x.shape[axis] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    if not _on_cpu():
        x = x if skip is None else x + skip
        if axis == x.ndim - 2:
            lead = x.shape[:-2]
            y = mx.conv1d(x.reshape(-1, *x.shape[-2:]), weight, stride, padding, dilation)
            return _epilogue(y.reshape(*lead, *y.shape[-2:]), bias, activation)
        y = conv_axis(mx.swapaxes(x, axis, -2), weight, -2, stride, padding, dilation)
        return _epilogue(mx.swapaxes(y, axis, -2), bias, activation)
    shape = list(x.shape)
    shape[axis], shape[-1] = out_len, c_out // 2 if activation == "glu" else c_out
    if stride == 1:
        lead, length = math.prod(x.shape[:axis]), x.shape[axis]
        inner = math.prod(x.shape[axis + 1 : -1])
        y = _shifted_taps(x.reshape(lead, length * inner, c_in), weight, length, inner,
                          padding, dilation, (bias, activation, skip))  # fmt: skip
        return y.reshape(shape)
    if skip is not None:
        x = x + skip
    if axis == x.ndim - 2 and dilation == 1:
        # stride s, kernel k = stride 1, kernel ceil(k / s) over s * c_in channels: frames
        # grouped s at a time (a free reshape), taps zero-padded to a whole number of strides
        m = -(-k // stride)
        need = (out_len + m - 1) * stride
        right = need - x.shape[axis] - padding
        xp = mx.pad(x, [(0, 0)] * axis + [(padding, max(right, 0)), (0, 0)])
        if right < 0:
            xp = xp[..., :need, :]
        xb = xp.reshape(*x.shape[:axis], need // stride, stride * c_in)
        wb = mx.pad(weight, [(0, 0), (0, m * stride - k), (0, 0)]).reshape(c_out, m, -1)
        return conv_axis(xb, wb, axis, 1, 0, 1, bias, activation)
    pads = [(0, 0)] * x.ndim
    pads[axis] = (padding, padding)
    xp = mx.pad(x, pads) if padding else x
    span = (out_len - 1) * stride + 1
    index = [slice(None)] * x.ndim
    taps = []
    for j in range(k):
        index[axis] = slice(j * dilation, j * dilation + span, stride)
        taps.append(xp[tuple(index)])
    cols = mx.concatenate(taps, axis=-1) if k > 1 else taps[0]
    return _epilogue(cols @ weight.reshape(c_out, k * c_in).T, bias, activation)


def conv2d(
    x: mx.array,
    weight: mx.array,
    padding: tuple[int, int] = (0, 0),
    bias: mx.array | None = None,
    activation: str | None = None,
    skip: mx.array | None = None,
) -> mx.array:
    """2-D convolution, stride 1, as ``mx.conv2d``. On the CPU with OpenBLAS, a C kernel
    gathers blocks of output positions' receptive fields (im2col in L2-sized pieces) and
    multiplies each block by the weight with ``sgemm``, a block per thread at a time.
    Without it the input is zero-padded once and each kernel tap is one accumulating matmul
    over a contiguous row slice (the output computed on the padded width and cropped).

    Args:
        x: ``[batch, height, width, in_channels]``.
        weight: ``[out_channels, kernel_h, kernel_w, in_channels]``.
        padding: Zero padding of height and width.
        bias, activation, skip: As in :func:`conv_axis` (fused into the C kernel).
    """
    c_out, kh, kw, c_in = weight.shape
    _check_conv("conv2d", x, c_in, c_out, bias, activation, skip)
    if _on_cpu() and _gemm() is not None:
        return _conv_native(x, weight, padding, (1, 1), bias, activation, skip)
    x = x if skip is None else x + skip
    if not _on_cpu():
        return _epilogue(mx.conv2d(x, weight, padding=padding), bias, activation)
    return _epilogue(_conv2d_taps(x, weight, padding), bias, activation)


def _conv2d_taps(x: mx.array, weight: mx.array, padding) -> mx.array:
    c_out, kh, kw, c_in = weight.shape
    ph, pw = padding
    n = x.shape[0]
    h, w = x.shape[1] + 2 * ph - kh + 1, x.shape[2] + 2 * pw - kw + 1
    wide = x.shape[2] + 2 * pw
    # one spare padded row at the bottom keeps the last taps' row slices in range
    xp = mx.pad(x, [(0, 0), (ph, ph + (kw > 1)), (pw, pw), (0, 0)])
    rows = xp.reshape(n, -1, c_in)
    wt = weight.transpose(1, 2, 3, 0)  # [kh, kw, c_in, c_out]
    y = None
    for i in range(kh):
        for j in range(kw):
            a = rows[:, i * wide + j : i * wide + j + h * wide]
            y = a @ wt[i, j] if y is None else mx.addmm(y, a, wt[i, j])
    y = y.reshape(n, h, wide, c_out)
    return y[:, :, :w] if wide != w else y


_GEMM: list = []


def _gemm() -> tuple[int, int, int] | None:
    """Addresses of the preloaded OpenBLAS's ``cblas_sgemm``, ``openblas_set_num_threads`` and
    ``openblas_get_num_threads`` for the C convolution, or None (no OpenBLAS, not on the CPU,
    or the native library missing: callers then use MLX's matmuls)."""
    if not _native_ok():
        return None
    if not _GEMM:
        from . import _blas

        found = None
        if _blas.loaded is not None:
            try:
                found = tuple(
                    ctypes.cast(getattr(_blas.loaded, name), ctypes.c_void_p).value
                    for name in ("cblas_sgemm", "openblas_set_num_threads",
                                 "openblas_get_num_threads")
                )  # fmt: skip
            except AttributeError:  # another BLAS (MLX_AUDIO_BLAS=...)
                found = None
        _GEMM.append(found)
    return _GEMM[0]


def _conv_native(x, weight, padding, dilation, bias=None, activation=None, skip=None):
    """Stride-1 ``conv2d`` of ``x`` [n, h, w, c_in] (+ ``skip``) with ``weight`` [c_out, kh,
    kw, c_in], then bias and activation, by the C kernel (blocked im2col, each thread's
    blocks one sgemm); float32 inside. Operands checked by the caller."""
    from . import _lib

    c_out, kh, kw, c_in = weight.shape
    if x.ndim != 4:
        raise ValueError(f"conv2d: input must be [batch, height, width, channels], got {x.shape}")
    n, h, w, _ = x.shape
    h_out = h + 2 * padding[0] - dilation[0] * (kh - 1)
    w_out = w + 2 * padding[1] - dilation[1] * (kw - 1)
    c_final = c_out // 2 if activation == "glu" else c_out
    if min(n, h_out, w_out) <= 0:
        return mx.zeros((n, max(h_out, 0), max(w_out, 0), c_final), x.dtype)
    if _lib.prim() is not None:  # a graph node
        ints = [*_gemm(), n, h, w, c_in, c_out, kh, kw, *padding, *dilation,
                _ACTIVATIONS[activation]]  # fmt: skip
        shape = [n, h_out, w_out, c_final]
        return _graph_kernel("aio_nn_conv2d", [x, skip, weight, bias], shape, ints, [], x.dtype)
    xv, wv, sv, bv = _f32(x), _f32(weight), _f32(skip), _f32(bias)
    out = _scratch_array((n, h_out, w_out, c_final))
    gemm, set_threads, get_threads = (_lib.ffi.cast("void *", a) for a in _gemm())
    _native("aio_nn_conv2d", gemm, set_threads, get_threads, _ptr(xv), _ptr(sv), n, h, w, c_in,
            _ptr(wv), c_out, kh, kw, *padding, *dilation, _ptr(bv), _ACTIVATIONS[activation],
            _ptr(out, True), _threads())  # fmt: skip
    return _to_mlx(out, x.dtype)


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


_ACTIVATIONS = {None: 0, "gelu": 1, "gelu_tanh": 2, "glu": 3, "elu": 6}
# bias_act and group_norm also take activations with a parameter (activation_param)
_NORM_ACTIVATIONS = {**_ACTIVATIONS, "snake": 4, "leaky_relu": 5}


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _f32(x: mx.array | None) -> np.ndarray | None:
    """A C-contiguous float32 NumPy view (or copy) of an MLX array; evaluates it."""
    if x is None:
        return None
    return np.ascontiguousarray(np.asarray(x if x.dtype == mx.float32 else x.astype(mx.float32)))


def _ptr(a: np.ndarray | None, writable: bool = False):
    """``float *`` to a C-contiguous float32 array's data (NULL for None)."""
    from . import _lib

    ffi = _lib.ffi
    if a is None:
        return ffi.NULL
    if a.dtype != np.float32 or not a.flags.c_contiguous:  # the kernels read float rows
        raise ValueError(f"C kernels take C-contiguous float32 arrays, got {a.dtype}")
    return ffi.cast("float *", ffi.from_buffer(a, require_writable=writable))


def _native(name: str, *args) -> None:
    """Calls the C kernel ``name`` with ``args`` and an error buffer; a failure (bad
    arguments, out of memory) raises ValueError with the kernel's message."""
    from . import _lib

    err = _lib.errbuf()
    if getattr(_lib.lib, name)(*args, err) < 0:
        raise ValueError(f"{name}: {_lib.ffi.string(err).decode()}")


# C kernel -> the _prim function making its graph node, and the arguments before the
# caller's (the generic node's kind)
_GRAPH = {
    "aio_nn_linear": ("linear",),
    "aio_nn_quantized_matmul": ("quantized_matmul",),
    "aio_nn_matmul": ("matmul",),
    "aio_nn_norm_act": ("kernel", 0),
    "aio_nn_conv2d": ("kernel", 1),
    "aio_nn_depthwise_conv1d": ("kernel", 2),
    "aio_nn_attention_window": ("kernel", 3),
}


def _graph(name: str, *args) -> mx.array:
    """The C kernel ``name`` as a node of MLX's graph (``mlx_audio_io._prim``): lazy, run on
    the CPU stream in order with MLX's operations, so nothing is evaluated at the call. Bad
    arguments raise ValueError here; a kernel failure raises RuntimeError at evaluation."""
    from . import _lib

    function, *lead = _GRAPH[name]
    return getattr(_lib.prim(), function)(*lead, *args)


def _graph_kernel(name: str, operands: list, shape: list, ints: list, floats: list, dtype):
    """:func:`_graph` of one of the fused kernels (the generic node: operands, None allowed,
    then integer and float arguments), its float32 output ``shape`` cast back to ``dtype``."""
    return _cast_back(_graph(name, operands, shape, ints, floats, _threads()), dtype)


def _cast_back(y: mx.array, dtype) -> mx.array:
    """A kernel's float32 output as the input's dtype."""
    return y if dtype == mx.float32 else y.astype(dtype)


def _to_mlx(out: np.ndarray, dtype) -> mx.array:
    """A kernel's float32 output copied into MLX, cast back to the input's dtype."""
    return _cast_back(mx.array(out), dtype)


_scratch = threading.local()


def _scratch_array(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array for a kernel's output, from a buffer this thread reuses: the output is
    copied into MLX at once, and a fresh NumPy array's first touch (page faults) cost 4x the
    kernel here."""
    n = math.prod(shape)
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < n:
        buf = _scratch.buf = np.empty(max(n, 1 << 16), np.float32)
    return buf[:n].reshape(shape)


def _runs(shape, strides) -> list[tuple[int, int]]:
    """(size, stride) of the maximal runs of axes that flatten into one strided axis."""
    runs: list[tuple[int, int]] = []
    for n, st in zip(shape, strides, strict=True):
        if n == 1:
            continue
        if runs and runs[-1][1] == st * n:
            runs[-1] = (runs[-1][0] * n, st)
        else:
            runs.append((n, st))
    return runs


def _as_3d(v: np.ndarray, split: tuple[int, int] | None):
    """``v``'s leading axes (all but the contiguous channel axis) as (sizes, strides) of
    [outer, rows, mid], in floats; ``split`` = (first rows axis, first mid axis), or None for
    any grouping (element-wise use). None when the view does not fit."""
    if v.strides[-1] != 4 and v.shape[-1] != 1:  # (one channel: any stride, MLX gives 0)
        return None
    lead = v.shape[:-1]
    strides = [st // 4 for st in v.strides[:-1]]
    if split is None:
        runs = _runs(lead, strides)
        if len(runs) > 3:
            return None
        # the kernel splits rows between threads: a single run goes there, not to mid
        runs = {0: [(1, 0)] * 3, 1: [(1, 0), *runs, (1, 0)], 2: [(1, 0), *runs]}.get(
            len(runs), runs
        )
    else:
        runs = []
        for i, j in ((0, split[0]), split, (split[1], len(lead))):
            r = _runs(lead[i:j], strides[i:j])
            if len(r) > 1:
                return None
            runs.append(r[0] if r else (1, 0))
    return [n for n, _ in runs], [st for _, st in runs]


def _check_operands(x, c, activation, vectors, residual, residual_scale) -> None:
    """Shapes the fused kernels rely on, for ``x`` ``[..., c channels]``: each of ``vectors``
    (name -> array or None) one value per channel, the residual shaped as the output and its
    scale one per output channel."""
    if activation == "glu" and c % 2:
        raise ValueError(f"glu needs an even number of channels, got {c}")
    c_out = c // 2 if activation == "glu" else c
    for name, v in vectors.items():
        if v is not None and v.shape != (c,):
            raise ValueError(f"{name} must have shape ({c},) for {c} channels, got {v.shape}")
    out_shape = (*x.shape[:-1], c_out)
    if residual is not None and residual.shape != out_shape:
        raise ValueError(f"residual must have the output's shape {out_shape}, got {residual.shape}")
    if residual_scale is not None and residual_scale.shape != (c_out,):
        raise ValueError(f"residual_scale must have shape ({c_out},), got {residual_scale.shape}")


def _norm_act_native(x, split, x_bias, groups, normalize, eps, weight, bias, activation,
                     residual, residual_scale, projection=None, act_param=None):  # fmt: skip
    """The fused C kernel (``aio_nn_norm_act``) on ``x`` viewed as [outer, rows, mid, C]
    (``split``: see :func:`_as_3d`); reads strided views of ``x`` (MLX slices) in place.
    ``projection`` ([C, x's channels]) is a 1x1 convolution applied to ``x`` on the fly."""
    from . import _lib

    c = x.shape[-1] if projection is None else projection.shape[0]
    c_out = c // 2 if activation == "glu" else c
    if _lib.prim() is not None:  # a graph node: nothing evaluated here, the output MLX's own
        ops = [x, None if projection is None else projection.T, x_bias, weight, bias, act_param,
               residual, residual_scale]  # fmt: skip
        ints = [*(split or (-1, -1)), x.shape[-1], c, groups, int(normalize),
                _NORM_ACTIVATIONS[activation]]  # fmt: skip
        shape = [*x.shape[:-1], c_out]
        return _graph_kernel("aio_nn_norm_act", ops, shape, ints, [eps], x.dtype)
    v = np.asarray(x if x.dtype == mx.float32 else x.astype(mx.float32))
    layout = _as_3d(v, split)
    if layout is None:
        v = np.ascontiguousarray(v)
        layout = _as_3d(v, split)
    (outer, rows, mid), strides = layout
    proj = None if projection is None else projection.T
    arrays = [_f32(a) for a in (proj, x_bias, weight, bias, residual, residual_scale, act_param)]
    pp, xbp, wp, bp, rp, sp, ap = (_ptr(a) for a in arrays)
    out = _scratch_array((*x.shape[:-1], c_out))
    xp = _lib.ffi.cast("float *", v.__array_interface__["data"][0])  # a strided view
    _native(
        "aio_nn_norm_act", xp, _lib.ffi.new("int64_t[3]", strides), pp, x.shape[-1], xbp,
        _ptr(out), outer, rows, mid, c, groups, int(normalize), eps, wp, bp,
        _NORM_ACTIVATIONS[activation], ap, rp, sp, _threads(),
    )  # fmt: skip
    return _to_mlx(out, x.dtype)


def _activate(y: mx.array, activation: str | None, param: mx.array | None = None) -> mx.array:
    """``activation`` with MLX's own operations (the path off the CPU)."""
    if activation == "snake":
        return y + (1.0 / param) * mx.square(mx.sin(param * y))
    if activation == "leaky_relu":
        return mx.where(y > 0, y, y * param)
    if activation == "gelu":
        return nn.gelu(y)
    if activation == "gelu_tanh":
        return nn.gelu_approx(y)
    if activation == "glu":
        a, b = mx.split(y, 2, axis=-1)
        return a * mx.sigmoid(b)
    if activation == "elu":
        return mx.where(y > 0, y, mx.expm1(mx.minimum(y, 0)))
    return y


def _residual(y, residual, residual_scale):
    if residual is None:
        return y
    return residual + (y * residual_scale if residual_scale is not None else y)


def _check_activation(activation: str | None, param, channels: int) -> mx.array | None:
    """Checks ``activation`` and its parameter; returns the parameter as an array (snake's
    alpha ``[channels]``, leaky_relu's slope ``[1]``) or None."""
    if activation not in _NORM_ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of None, 'gelu', 'gelu_tanh', "
            "'glu', 'elu', 'snake', 'leaky_relu'"
        )
    if activation not in ("snake", "leaky_relu"):
        if param is not None:
            raise ValueError(f"activation {activation!r} takes no activation_param")
        return None
    if param is None:
        raise ValueError(f"activation {activation!r} needs activation_param")
    p = mx.array(param, dtype=mx.float32).reshape(-1)
    want = channels if activation == "snake" else 1
    if p.size != want:
        raise ValueError(f"{activation}'s activation_param must have {want} value(s), got {p.size}")
    return p


def _native_ok() -> bool:
    from . import _lib

    return _on_cpu() and _lib.load_error is None


def bias_act(
    x: mx.array,
    bias: mx.array | None = None,
    activation: str | None = None,
    residual: mx.array | None = None,
    residual_scale: mx.array | None = None,
    activation_param=None,
) -> mx.array:
    """``residual + residual_scale * activation(x + bias)`` over the last (channel) axis in
    one pass: on the CPU a fused, threaded C kernel; elsewhere MLX's operations.

    Args:
        x: ``[..., channels]``.
        bias: ``[channels]`` or None.
        activation: None, ``"gelu"`` (exact, erf), ``"gelu_tanh"`` (torch's
            ``approximate="tanh"``), ``"glu"`` (first half of the channels times the sigmoid
            of the second half; the output has half the channels), ``"elu"`` (torch's ``ELU()``:
            ``y``, or ``exp(y) - 1`` where ``y <= 0``), ``"snake"`` (``y + sin(alpha y)^2 /
            alpha``, BigVGAN's and iSTFTNet's) or ``"leaky_relu"``.
        residual: None, or an array shaped as the output.
        residual_scale: None (1), or ``[output channels]`` (a LayerScale).
        activation_param: Snake's ``alpha`` (``[channels]``) or leaky_relu's negative slope
            (a float); None for the others.
    """
    param = _check_activation(activation, activation_param, x.shape[-1])
    _check_operands(x, x.shape[-1], activation, {"bias": bias}, residual, residual_scale)
    if not _native_ok() or x.size == 0:
        y = x + bias if bias is not None else x
        return _residual(_activate(y, activation, param), residual, residual_scale)
    return _norm_act_native(x, None, bias, 1, False, 0.0, None, None, activation, residual,
                            residual_scale, act_param=param)  # fmt: skip


# up to this many input channels, group_norm's projection is computed inside the kernel (twice,
# in both passes) instead of written out and read back. Measured here on HTDemucs' DConvs once
# each thread's buffers had cache lines of their own (they had shared one, which had made it
# look slower for 12 and 24 inputs, and for the time branch's rows): 6 -> 96 over 86,000
# frames 27 -> 18 ms, 12 -> 192 over 336 x 128 rows 20 -> 17 ms, 12 -> 96 9.4 -> 8.7 ms
_FUSED_PROJECTION_MAX_IN = 32


def group_norm(
    x: mx.array,
    groups: int,
    weight: mx.array | None = None,
    bias: mx.array | None = None,
    eps: float = 1e-5,
    axes=None,
    activation: str | None = None,
    residual: mx.array | None = None,
    residual_scale: mx.array | None = None,
    input_bias: mx.array | None = None,
    projection: mx.array | None = None,
    activation_param=None,
) -> mx.array:
    """torch's ``GroupNorm(groups, channels)`` over a channels-last array, optionally followed
    by an activation and a scaled residual add, as :func:`bias_act` (on the CPU all of it in
    two passes over memory: statistics, then one fused write).

    Args:
        x: ``[batch, ..., channels]``.
        groups: Channel groups (``channels % groups == 0``).
        weight, bias: ``[channels]`` affine parameters, or None (1 and 0).
        axes: The axes the statistics run over besides the group's channels: a contiguous
            run of axes between the first and the last (default: all of them, torch's
            GroupNorm). demucs' DConv normalises ``[B, T, F, C]`` with ``axes=(1,)``: each
            frequency row on its own.
        activation, residual, residual_scale, activation_param: As in :func:`bias_act`.
        input_bias: ``[channels]`` added to ``x`` before normalising (the bias of the layer
            before, fused into the same passes), or None.
        projection: ``[channels, x_channels]``, or None: the weight of a 1x1 convolution (a
            ``Linear``) applied to ``x`` first; on the CPU computed on the fly in both passes
            instead of written out when ``x`` has at most 32 channels (demucs' DConv widens
            6 to 96 channels).
    """
    nd = x.ndim
    if nd < 2:
        raise ValueError(f"group_norm needs [batch, ..., channels], got shape {x.shape}")
    spatial = tuple(range(1, nd - 1)) if axes is None else tuple(sorted(a % nd for a in axes))
    if any(a in (0, nd - 1) for a in spatial) or spatial != tuple(
        range(spatial[0], spatial[-1] + 1) if spatial else ()
    ):
        raise ValueError(
            f"group_norm axes must be a contiguous run of axes between the batch and the "
            f"channel axis, got {axes} for shape {x.shape}"
        )
    if projection is not None and (projection.ndim != 2 or projection.shape[1] != x.shape[-1]):
        raise ValueError(
            f"projection must be [channels, {x.shape[-1]}] for input {x.shape}, got "
            f"{projection.shape}"
        )
    c = x.shape[-1] if projection is None else projection.shape[0]
    param = _check_activation(activation, activation_param, c)
    if groups < 1 or c % groups:
        raise ValueError(f"{c} channels do not split into {groups} groups")
    vectors = {"weight": weight, "bias": bias, "input_bias": input_bias}
    _check_operands(x, c, activation, vectors, residual, residual_scale)
    if not _native_ok() or x.size == 0:
        x = x @ projection.T if projection is not None else x
        x = x + input_bias if input_bias is not None else x
        xg = x.reshape(*x.shape[:-1], groups, c // groups)
        mean_, var_ = var(xg, spatial + (xg.ndim - 1,))
        scale = mx.rsqrt(var_ + eps)
        if weight is not None:
            scale = scale * weight.reshape(groups, -1)
        shift = -mean_ * scale + (bias.reshape(groups, -1) if bias is not None else 0)
        y = (xg * scale + shift).reshape(x.shape)
        return _residual(_activate(y, activation, param), residual, residual_scale)
    split = (spatial[0], spatial[-1] + 1) if spatial else (1, 1)
    if projection is not None and projection.shape[1] > _FUSED_PROJECTION_MAX_IN:
        # computing it twice inside the kernel would not pay: one matmul instead
        x, projection = x @ projection.T, None
    return _norm_act_native(x, split, input_bias, groups, True, eps, weight, bias, activation,
                            residual, residual_scale, projection, param)  # fmt: skip


def depthwise_conv1d(
    x: mx.array,
    weight: mx.array,
    padding: int = 0,
    dilation: int = 1,
    bias: mx.array | None = None,
    activation: str | None = None,
    activation_param=None,
) -> mx.array:
    """Depthwise (``groups = channels``) stride-1 1-D convolution, zero-padded, with the bias
    and an element-wise activation fused: on the CPU a threaded C kernel (MLX's grouped
    convolution is 20-30x slower there), elsewhere ``mx.conv1d(groups=channels)``.

    Args:
        x: ``[batch, frames, channels]``.
        weight: ``[channels, kernel, 1]`` (MLX's layout for groups = channels).
        padding: Zeros added on each side.
        dilation: Spacing of the taps.
        bias: ``[channels]`` or None.
        activation: None, ``"gelu"``, ``"gelu_tanh"``, ``"elu"``, ``"snake"`` or
            ``"leaky_relu"`` (as for :func:`bias_act`), applied after the bias.
        activation_param: Snake's alpha ``[channels]`` or leaky_relu's slope.

    Returns:
        ``[batch, frames + 2 * padding - dilation * (kernel - 1), channels]``, x's dtype.
    """
    if weight.ndim != 3 or x.ndim != 3 or weight.shape[2] != 1 or weight.shape[0] != x.shape[2]:
        raise ValueError(
            f"depthwise_conv1d: weight {tuple(weight.shape)} does not fit input "
            f"{tuple(x.shape)} (expected [channels, kernel, 1] and [batch, frames, channels])"
        )
    if activation == "glu":
        raise ValueError("depthwise_conv1d: 'glu' changes the channel count; not supported")
    c, k, _ = weight.shape
    param = _check_activation(activation, activation_param, c)
    n, length, _ = x.shape
    out_len = length + 2 * padding - dilation * (k - 1)
    if out_len < 0:
        raise ValueError(f"depthwise_conv1d: {length} frames are fewer than the kernel's reach")
    if _native_ok() and n * out_len > 0:
        from . import _lib

        if _lib.prim() is not None:  # a graph node
            ints = [n, length, c, k, padding, dilation, _NORM_ACTIVATIONS[activation], out_len]
            ops = [x, weight[:, :, 0].T, bias, param]  # the weight as [taps][channels]
            shape = [n, out_len, c]
            return _graph_kernel("aio_nn_depthwise_conv1d", ops, shape, ints, [], x.dtype)
        w = np.ascontiguousarray(_f32(weight)[:, :, 0].T)  # [taps][channels]
        xv, b, pv = _f32(x), _f32(bias), _f32(param)
        out = _scratch_array((n, out_len, c))
        _native("aio_nn_depthwise_conv1d", _ptr(xv), n, length, c, _ptr(w), k, padding,
                dilation, _ptr(b), _NORM_ACTIVATIONS[activation], _ptr(pv), _ptr(out), out_len,
                _threads())  # fmt: skip
        return _to_mlx(out, x.dtype)
    y = mx.conv1d(x, weight, stride=1, padding=padding, dilation=dilation, groups=c)
    return _activate(y + bias if bias is not None else y, activation, param)


def gelu(x: mx.array, approximate: str = "none") -> mx.array:
    """GELU, as ``torch.nn.functional.gelu``: exact (erf) or ``approximate="tanh"``. On the CPU
    a vectorised, threaded C kernel (MLX's CPU build evaluates erf and exp one element at a
    time: 230 ms for 8M floats here); elsewhere ``mlx.nn``'s."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return bias_act(x, activation="gelu" if approximate == "none" else "gelu_tanh")


def glu(x: mx.array, axis: int = -1) -> mx.array:
    """Gated linear unit, as ``torch.nn.functional.glu``: first half of ``axis`` times the
    sigmoid of the second. Over the last axis on the CPU, a vectorised C kernel."""
    if axis % x.ndim != x.ndim - 1:
        a, b = mx.split(x, 2, axis=axis)
        return a * mx.sigmoid(b)
    if x.shape[-1] % 2:
        raise ValueError(f"glu needs an even size along axis {axis}, got {x.shape[-1]}")
    return bias_act(x, activation="glu")


def _softmax_inplace(e: np.ndarray, scale: float = 1.0) -> None:
    """Softmax of ``scale * e`` (scale > 0) over the last axis of a C-contiguous float32
    array, in place (C kernel)."""
    rows = e.size // e.shape[-1]
    _native("aio_nn_softmax", _ptr(e, writable=True), rows, e.shape[-1], scale, _threads())


class buffer_cache:  # noqa: N801 - used like a function, as contextlib's managers are
    """Keeps MLX's freed CPU buffers for reuse while a model runs many passes, then gives the
    memory back. Use as ``with nn.buffer_cache(): ...`` (``apply_model`` and the streaming
    separator already do).

    MLX's CPU allocator keeps at most a few tens of MB of freed buffers; past that every new
    intermediate is fresh memory whose first touch page-faults (160,000 faults, about 10% of
    an HTDemucs forward pass here). Inside the block the limit is ``limit`` bytes (default: a
    quarter of physical memory, at most 4 GiB); on leaving, the previous limit is restored and
    the cache emptied if it is over it. Nested and concurrent blocks share one raise, undone
    when the last one leaves. Off the CPU (Metal, CUDA: their caches are large already) it
    does nothing.

    Args:
        limit: Cache limit in bytes while inside, or None for the default.
    """

    _lock = threading.Lock()
    _depth = 0
    _saved: int | None = None

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 bytes, got {limit}")
        self.limit = _default_cache_limit() if limit is None else int(limit)
        self._active = False

    def __enter__(self) -> buffer_cache:
        if not _on_cpu():
            return self
        cls = type(self)
        with cls._lock:
            if cls._depth == 0:
                old = mx.set_cache_limit(self.limit)
                if old >= self.limit:  # already generous: leave it
                    mx.set_cache_limit(old)
                    cls._saved = None
                else:
                    cls._saved = old
            cls._depth += 1
            self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Leaves the block (what ``__exit__`` does); for holders that span many calls."""
        if not self._active:
            return
        cls = type(self)
        with cls._lock:
            self._active = False
            cls._depth -= 1
            if cls._depth == 0 and cls._saved is not None:
                mx.set_cache_limit(cls._saved)
                if mx.get_cache_memory() > cls._saved:
                    mx.clear_cache()
                cls._saved = None


def _default_cache_limit() -> int:
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 8 << 30
    return min(4 << 30, physical // 4)


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, window: int | None = None,
              q_start: int = 0, k_start: int = 0) -> mx.array:  # fmt: skip
    """Scaled dot-product attention, ``softmax(q k^T * scale) v``, as
    ``mx.fast.scaled_dot_product_attention``: dense, or with a causal sliding-window mask.

    On the CPU, MLX's softmax spends 1 s in exp for one 8-head 2688x2688 attention here
    (its matmuls take 0.3 s). With OpenBLAS, a C kernel takes blocks of ~150 queries per
    (batch, head): their scores stay in cache between ``sgemm`` (q k^T), a vectorised
    softmax and ``sgemm`` (p v), threads taking blocks (120 ms for that attention, 160 ms
    for the head-by-head path, torch's SDPA 92 ms). Without it, MLX's matmuls per head and
    the C softmax in place in MLX's score buffer.

    Args:
        q: ``[batch, heads, queries, dim]``; k, v: ``[batch, heads, keys, dim]``.
        window: None (every key), or the causal sliding window (Mimi's, Llama-style local
            attention): query i, at position ``q_start + i``, sees key j, at position
            ``k_start + j``, when ``q - window < k <= q``. A query that sees no key gives
            zeros.
    """
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                               or window < 1):  # fmt: skip
        raise ValueError(f"attention: window must be None or an int >= 1, got {window!r}")
    if not _native_ok() or (window is not None and _gemm() is None):
        mask = None
        if window is not None:
            qpos = np.arange(q_start, q_start + q.shape[2])[:, None]
            kpos = np.arange(k_start, k_start + k.shape[2])[None]
            mask = mx.array((kpos <= qpos) & (kpos > qpos - window))
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    b, h = q.shape[:2]
    if scale <= 0:
        q, scale = q * scale, 1.0
    if _gemm() is not None:
        return _attention_native(q, k, v, scale, window or 0, q_start, k_start)
    # each head's operands float32 (the softmax kernel's type) and contiguous for BLAS; the
    # scale goes into the softmax
    dtype = q.dtype
    q, kt, v = (mx.contiguous(t.astype(mx.float32)) for t in (q, k.swapaxes(-1, -2), v))
    mx.eval(q, kt, v)
    outs = []
    for i in range(b):
        heads = []
        for j in range(h):
            s = q[i, j] @ kt[i, j]
            mx.eval(s)
            _softmax_inplace(np.asarray(s), scale)  # MLX's own buffer, written in place
            heads.append(s @ v[i, j])
            mx.eval(heads[-1])  # frees the score matrix
        outs.append(mx.stack(heads, axis=1))  # [queries, heads, dim]
    # returned as a [batch, heads, queries, dim] view of [batch, queries, heads, dim]: the
    # usual transpose back to [batch, queries, heads * dim] is then free
    return mx.stack(outs).astype(dtype).transpose(0, 2, 1, 3)


def _attention_native(q, k, v, scale, window=0, q_start=0, k_start=0):
    """:func:`attention` by the C kernel: query blocks whose scores stay in cache."""
    from . import _lib

    b, h, lq, d = q.shape
    lk = k.shape[2]
    if k.shape != (b, h, lk, d) or v.shape != k.shape:
        raise ValueError(f"attention: q {q.shape}, k {k.shape} and v {v.shape} do not match")
    if not (lk and lq and b):  # nothing to attend to (MLX's kernel gives NaN for no keys)
        return mx.zeros((b, h, lq, d), q.dtype)
    if _lib.prim() is not None:  # a graph node
        ints = [*_gemm(), b, h, lq, lk, d, 0, q_start, k_start, window]
        y = _graph_kernel("aio_nn_attention_window", [q, k, v], [b, lq, h, d], ints, [scale],
                          q.dtype)  # fmt: skip
        return y.transpose(0, 2, 1, 3)
    qv, kv, vv = (_f32(mx.contiguous(t)) for t in (q, k, v))
    out = _scratch_array((b, lq, h, d))
    gemm, set_threads, get_threads = (_lib.ffi.cast("void *", a) for a in _gemm())
    _native("aio_nn_attention_window", gemm, set_threads, get_threads, _ptr(qv), _ptr(kv),
            _ptr(vv), _ptr(out, True), b, h, lq, lk, d, scale, 0, q_start, k_start, window,
            _threads())  # fmt: skip
    # a [batch, heads, queries, dim] view of [batch, queries, heads, dim]: the usual
    # transpose back to [batch, queries, heads * dim] is then free
    return _to_mlx(out, q.dtype).transpose(0, 2, 1, 3)


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
        return conv_transpose1d(x, self.weight, self.stride, self.padding, self.output_padding,
                                bias=self.get("bias"))  # fmt: skip


class Conv1d(nn.Module):
    """``mlx.nn.Conv1d`` (same parameters and weight layout) by :func:`conv_axis`: on the
    CPU the blocked-im2col C kernel with the bias fused in."""

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
        return conv_axis(x, self.weight, 1, self.stride, self.padding, self.dilation,
                         bias=self.get("bias"))  # fmt: skip


class Linear(nn.Linear):
    """``mlx.nn.Linear`` (same parameters, same checkpoints). On the CPU, with 1024 or more
    inputs, it multiplies by a cached contiguous transpose of the weight: OpenBLAS took 1.7x
    as long with the transposed operand for a 2048 -> 512 layer here."""

    def __call__(self, x: mx.array) -> mx.array:
        w = self["weight"]
        if not _on_cpu() or w.shape[1] < 1024:
            return super().__call__(x)
        cached = self.__dict__.get("_transposed")
        if cached is None or cached[0] is not w:  # new weights (load_weights, update)
            cached = (w, mx.contiguous(w.T))
            object.__setattr__(self, "_transposed", cached)  # kept out of the parameters
        wt = cached[1]
        return mx.addmm(self["bias"], x, wt) if "bias" in self else x @ wt


_QMM_DTYPES = {mx.float32: 0, mx.float16: 1, mx.bfloat16: 2}


def _raw(a: mx.array) -> np.ndarray:
    """A C-contiguous NumPy view of an MLX array's bytes (16-bit floats as uint16)."""
    if a.dtype in (mx.float16, mx.bfloat16):
        a = a.view(mx.uint16)
    return np.ascontiguousarray(np.asarray(a))


def _check_quantized(x, w, scales, biases, transpose, group_size, bits, mode) -> None:
    if mode != "affine":
        return  # other modes (mxfp4, nvfp4, ...) are MLX's to check
    if bits not in (2, 3, 4, 5, 6, 8):
        raise ValueError(f"quantized_matmul: bits must be 2, 3, 4, 5, 6 or 8, got {bits!r}")
    if group_size not in (32, 64, 128):
        raise ValueError(f"quantized_matmul: group_size must be 32, 64 or 128, got {group_size!r}")
    if w.dtype != mx.uint32 or w.ndim < 2:
        raise ValueError(
            f"quantized_matmul: w must be packed uint32 [..., rows, words], got {w.dtype} "
            f"{tuple(w.shape)}"
        )
    inner = w.shape[-1] * 32 // bits
    want = (*w.shape[:-1], inner // group_size)
    if tuple(scales.shape) != want or (biases is not None and biases.shape != scales.shape):
        got = tuple(scales.shape), None if biases is None else tuple(biases.shape)
        raise ValueError(f"quantized_matmul: scales and biases must be {want}, got {got}")
    k = inner if transpose else w.shape[-2]
    if x.ndim < 1 or x.shape[-1] != k:
        raise ValueError(
            f"quantized_matmul: x {tuple(x.shape)} does not fit w {tuple(w.shape)} "
            f"(expected x's last axis to be {k} with transpose={transpose})"
        )


def quantized_matmul(
    x: mx.array,
    w: mx.array,
    scales: mx.array,
    biases: mx.array | None = None,
    transpose: bool = True,
    group_size: int = 64,
    bits: int = 4,
    mode: str = "affine",
) -> mx.array:
    """``mx.quantized_matmul`` with a memory-bound CPU path.

    MLX's CPU kernel unpacks weights one element at a time (0.7-0.9 GB/s of packed weights
    here, slower than float32 weights through OpenBLAS, and once more per row of x). On the
    CPU, for 4- and 8-bit affine weights with ``transpose=True``, a threaded, vectorised C
    kernel streams the packed words once per call whatever the number of rows (scales and
    biases read in their own dtype): 5-8x MLX's speed for a decode step, 10-25x for a
    prompt. Every other case, and every other device, calls ``mx.quantized_matmul``. With
    ``mlx_audio_io._prim`` loaded the kernel is a lazy node of MLX's graph; without it, x is
    evaluated here and the kernel called through cffi.

    Args:
        x: ``[..., k]`` float32, float16 or bfloat16.
        w: Packed weights from ``mx.quantize``: uint32 ``[n, k * bits / 32]`` (transpose) or
            ``[k, n * bits / 32]``.
        scales: ``[n, k / group_size]`` (transpose), float32, float16 or bfloat16.
        biases: Same shape and dtype as scales (None only for modes without biases).
        transpose: Multiply by the dequantized ``w`` transposed (``x @ W.T``, as a Linear).
        group_size: Inputs sharing a scale and bias: 32, 64 or 128.
        bits: Bits per weight: 2, 3, 4, 5, 6 or 8.
        mode: The quantization mode; only ``"affine"`` has the CPU path.

    Returns:
        ``[..., n]``, of the type MLX promotes x and scales to.

    Raises:
        ValueError: If the shapes, bits or group size do not fit together.
    """
    _check_quantized(x, w, scales, biases, transpose, group_size, bits, mode)
    rows = math.prod(x.shape[:-1])
    if not (
        _native_ok() and mode == "affine" and transpose and bits in (4, 8) and w.ndim == 2
        and biases is not None and rows > 0 and scales.dtype in _QMM_DTYPES
        and x.dtype in _QMM_DTYPES and biases.dtype == scales.dtype
    ):  # fmt: skip
        return mx.quantized_matmul(x, w, scales, biases, transpose, group_size, bits, mode=mode)
    from . import _lib

    n, k = w.shape[0], x.shape[-1]
    dtype = mx.result_type(x.dtype, scales.dtype)
    code = _QMM_DTYPES[scales.dtype]
    if _lib.prim() is not None:  # a graph node: no evaluation forced here
        y = _graph("aio_nn_quantized_matmul", x, w, scales, biases, code, group_size, bits,
                   _threads())  # fmt: skip
        return y if dtype == mx.float32 else y.astype(dtype)
    xv = _f32(x.reshape(rows, k))
    wv, sv, bv = _raw(w), _raw(scales), _raw(biases)
    out = np.empty((rows, n), np.float32)
    ffi = _lib.ffi
    packed = ffi.cast("uint32_t *", ffi.from_buffer(wv))
    _native("aio_nn_quantized_matmul", _ptr(xv), rows, k, packed, ffi.from_buffer(sv),
            ffi.from_buffer(bv), code, n, group_size, bits, _ptr(out), _threads())  # fmt: skip
    return _to_mlx(out, dtype).reshape(*x.shape[:-1], n)


#: Rows of x (all leading axes together) up to which :func:`linear` uses its C kernel.
LINEAR_MAX_ROWS = 8


def _check_product(name: str, x: mx.array, weight: mx.array, in_axis: int) -> None:
    """x ``[..., in]`` against a 2-D weight whose axis ``in_axis`` is the inputs."""
    if weight.ndim != 2:
        layout = "[out, in]" if in_axis == 1 else "[in, out]"
        raise ValueError(f"{name}: weight must be {layout}, got shape {tuple(weight.shape)}")
    if x.ndim < 1 or x.shape[-1] != weight.shape[in_axis]:
        raise ValueError(
            f"{name}: x {tuple(x.shape)} does not fit weight {tuple(weight.shape)} "
            f"(expected x's last axis to be {weight.shape[in_axis]})"
        )


def _few_rows(x: mx.array, *operands) -> bool:
    """The few-row C kernels apply: 1 to LINEAR_MAX_ROWS rows of a non-empty float32 x, float32
    operands (None allowed), on the CPU with the native library."""
    rows = math.prod(x.shape[:-1])
    return (
        0 < rows <= LINEAR_MAX_ROWS and x.size > 0 and _native_ok() and x.dtype == mx.float32
        and all(a is None or (a.dtype == mx.float32 and a.size > 0) for a in operands)
    )  # fmt: skip


def _check_linear(x: mx.array, weight: mx.array, bias: mx.array | None) -> None:
    _check_product("linear", x, weight, 1)
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"linear: bias must be [{weight.shape[0]}], got {tuple(bias.shape)}")


def linear(x: mx.array, weight: mx.array, bias: mx.array | None = None) -> mx.array:
    """``x @ weight.T + bias`` (``mlx.nn.Linear``'s product) with a memory-bound CPU path.

    MLX sends a float32 product with one or a few rows (a decode step) through OpenBLAS's
    full sgemm, which reads the weights at under half the memory bandwidth here. On the CPU,
    when x, weight and bias are float32 and x has at most :data:`LINEAR_MAX_ROWS` rows (all
    leading axes together), a threaded C kernel streams each weight row once and
    multiply-adds it against every row of x (a lazy node of MLX's graph with
    ``mlx_audio_io._prim``; through cffi, after evaluating x, without it). Other dtypes, more
    rows and other devices call ``mx.addmm`` / ``mx.matmul``.

    Args:
        x: ``[..., in]``, any leading axes.
        weight: ``[out, in]`` (row-major, as ``nn.Linear`` stores it).
        bias: ``[out]`` or None.

    Returns:
        ``[..., out]``, of the type MLX promotes the operands to.

    Raises:
        ValueError: If the shapes do not fit together.
    """
    _check_linear(x, weight, bias)
    n, k = weight.shape
    rows = math.prod(x.shape[:-1])
    if not _few_rows(x, weight, bias):
        if bias is None:
            return x @ weight.T
        return mx.addmm(bias, x, weight.T)
    from . import _lib

    if _lib.prim() is not None:  # a graph node: no evaluation forced here
        return _graph("aio_nn_linear", x, weight, bias, _threads())
    xv = _f32(x.reshape(rows, k))
    wv, bv = _f32(weight), _f32(bias)
    out = np.empty((rows, n), np.float32)
    _native("aio_nn_linear", _ptr(xv), rows, k, _ptr(wv), n, _ptr(bv), _ptr(out, True),
            _threads())  # fmt: skip
    return mx.array(out).reshape(*x.shape[:-1], n)


def matmul(x: mx.array, weight: mx.array) -> mx.array:
    """``x @ weight`` for a matrix stored input-major (``[in, out]``, e.g. CSM's audio heads)
    with a memory-bound CPU path: :func:`linear`'s counterpart for that layout.

    MLX sends a float32 product with one or a few rows through OpenBLAS's sgemm, which packs
    the matrix first (about a quarter of the memory bandwidth here) and leaves its threads
    spinning on the cores the next kernel needs. On the CPU, when x and weight are float32 and
    x has at most :data:`LINEAR_MAX_ROWS` rows (all leading axes together), a threaded C
    kernel streams the matrix once, row by row, into accumulators that stay in cache; runs of
    rows are summed in a fixed order, so results do not depend on the threads. A lazy node of
    MLX's graph with ``mlx_audio_io._prim``; through cffi, after evaluating x, without it.
    Anything else calls ``mx.matmul``.

    Args:
        x: ``[..., in]``, any leading axes.
        weight: ``[in, out]``.

    Returns:
        ``[..., out]``, of the type MLX promotes the operands to.

    Raises:
        ValueError: If the shapes do not fit together.
    """
    _check_product("matmul", x, weight, 0)
    k, n = weight.shape
    rows = math.prod(x.shape[:-1])
    if not _few_rows(x, weight):
        return x @ weight
    from . import _lib

    if _lib.prim() is not None:
        return _graph("aio_nn_matmul", x, weight, _threads())
    xv, wv = _f32(x.reshape(rows, k)), _f32(weight)
    out = np.empty((rows, n), np.float32)
    _native("aio_nn_matmul", _ptr(xv), rows, k, _ptr(wv), n, _ptr(out, True), _threads())
    return mx.array(out).reshape(*x.shape[:-1], n)


def lstm_recurrence(gates: mx.array, weight_hh: mx.array, reverse: bool = False) -> mx.array:
    """The recurrence of one direction of torch's ``nn.LSTM`` (gates i, f, g, o; zero initial
    states) over input gates already computed for every step (``x @ W_ih.T + b_ih + b_hh``).

    A step is a product of one row per batch item by ``[hidden, 4 * hidden]`` and a few
    element-wise operations on ``4 * hidden`` values, so its cost is per-call overhead: as
    MLX graph nodes about 100 µs a step of one of Kokoro's 256-wide directions here, in NumPy
    with preallocated buffers 23 µs (torch: 17). On the CPU the loop runs in NumPy (float32,
    after evaluating ``gates``); elsewhere in MLX. Run a bidirectional layer's directions one
    after the other: each keeps its 1 MB of ``weight_hh`` in the core's L2 cache (two
    directions stepped together took 48 µs a step for the two products, one 14).

    Args:
        gates: ``[batch, steps, 4 * hidden]`` float32.
        weight_hh: ``[4 * hidden, hidden]`` (torch's ``weight_hh_l0`` layout).
        reverse: Run from the last step to the first (the backward direction); the output
            stays in step order.

    Returns:
        The hidden states ``[batch, steps, hidden]``.
    """
    b, t, four = gates.shape
    n = weight_hh.shape[1]
    if weight_hh.shape != (four, n) or four != 4 * n:
        raise ValueError(f"lstm_recurrence: gates {gates.shape} do not fit weight_hh "
                         f"{weight_hh.shape} ([4 * hidden, hidden])")  # fmt: skip
    order = range(t - 1, -1, -1) if reverse else range(t)
    if not _on_cpu():
        w, h, c, outs = weight_hh.T, mx.zeros((b, n), gates.dtype), mx.zeros((b, n)), {}
        for step in order:
            h, c = _lstm_cell(gates[:, step] + h @ w, c)
            outs[step] = h
        return mx.stack([outs[s] for s in range(t)], axis=1)
    xg = np.asarray(gates.astype(mx.float32))
    w = np.asarray(weight_hh.astype(mx.float32)).T  # a view: BLAS reads it transposed
    out = np.zeros((b, t, n), np.float32)
    h, c = np.zeros((b, n), np.float32), np.zeros((b, n), np.float32)
    g, tg = np.empty((b, four), np.float32), np.empty((b, n), np.float32)
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x << 0: sigmoid 0
        for step in order:
            np.matmul(h, w, out=g)
            g += xg[:, step]
            _sigmoid_(g[:, : 2 * n])  # i and f, in place (views of g)
            _sigmoid_(g[:, 3 * n :])  # o
            np.tanh(g[:, 2 * n : 3 * n], out=tg)
            c *= g[:, n : 2 * n]
            tg *= g[:, :n]
            c += tg
            np.tanh(c, out=h)
            h *= g[:, 3 * n :]
            out[:, step] = h
    return _cast_back(mx.array(out), gates.dtype)


def _sigmoid_(x: np.ndarray) -> None:
    """``1 / (1 + exp(-x))`` in place."""
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1
    np.reciprocal(x, out=x)


@mx.compile
def _lstm_cell(g: mx.array, c: mx.array) -> tuple[mx.array, mx.array]:
    """One LSTM step from its gate pre-activations (i, f, g, o) and the cell state."""
    n = c.shape[-1]
    i, f = mx.sigmoid(g[..., :n]), mx.sigmoid(g[..., n : 2 * n])
    c = f * c + i * mx.tanh(g[..., 2 * n : 3 * n])
    return mx.sigmoid(g[..., 3 * n :]) * mx.tanh(c), c
