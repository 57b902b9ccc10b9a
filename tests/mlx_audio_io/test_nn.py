"""The fast CPU convolution paths agree with MLX's own kernels."""

import math
import sys

from mlx_audio_io import nn

import mlx.core as mx
import numpy as np
import pytest


@pytest.mark.parametrize(
    "k,stride,padding",
    [(12, 6, 3), (4, 2, 1), (5, 3, 0), (1, 1, 0), (16, 8, 4), (3, 1, 1), (7, 4, 2)],
)
def test_conv_transpose1d_matches_mlx(k, stride, padding):
    mx.random.seed(k * 100 + stride)
    x = mx.random.normal((2, 37, 5))
    w = mx.random.normal((3, k, 5))
    want = mx.conv_transpose1d(x, w, stride=stride, padding=padding)
    got = nn.conv_transpose1d(x, w, stride=stride, padding=padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh"])
def test_conv_transpose1d_fuses_bias_and_activation(kernel_path, activation):
    x = mx.random.normal((2, 9, 4), key=mx.random.key(13))
    w = mx.random.normal((3, 8, 4), key=mx.random.key(14))
    bias = mx.random.normal((3,), key=mx.random.key(15))
    want = mx.conv_transpose1d(x, w, stride=4, padding=2, output_padding=1) + bias
    got = nn.conv_transpose1d(x, w, 4, 2, output_padding=1, bias=bias, activation=activation)
    assert got.shape == want.shape
    want = _activate64(np.asarray(want), activation)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


def test_conv_transpose1d_output_padding():
    x, w = mx.random.normal((1, 10, 2)), mx.random.normal((2, 4, 2))
    base = nn.conv_transpose1d(x, w, stride=2, padding=1)
    extra = nn.conv_transpose1d(x, w, stride=2, padding=1, output_padding=1)
    assert extra.shape[1] == base.shape[1] + 1
    np.testing.assert_allclose(np.asarray(extra[:, : base.shape[1]]), np.asarray(base), atol=1e-5)


@pytest.mark.parametrize(
    "k,stride,padding,dilation",
    [(3, 1, 1, 1), (3, 1, 3, 3), (7, 1, 9, 3), (5, 2, 4, 2), (3, 1, 0, 9)],
)
def test_conv1d_matches_mlx(k, stride, padding, dilation):
    x = mx.random.normal((2, 64, 6))
    w = mx.random.normal((4, k, 6))
    want = mx.conv1d(x, w, stride=stride, padding=padding, dilation=dilation)
    got = nn.conv1d(x, w, stride=stride, padding=padding, dilation=dilation)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-4)


def test_modules_load_mlx_nn_weights():
    import mlx.nn

    ref = mlx.nn.ConvTranspose1d(6, 4, 8, stride=4, padding=2)
    fast = nn.ConvTranspose1d(6, 4, 8, stride=4, padding=2)
    fast.update(ref.parameters())
    x = mx.random.normal((1, 20, 6))
    np.testing.assert_allclose(np.asarray(fast(x)), np.asarray(ref(x)), atol=1e-4)
    ref = mlx.nn.Conv1d(6, 4, 3, padding=3, dilation=3)
    fast = nn.Conv1d(6, 4, 3, padding=3, dilation=3)
    fast.update(ref.parameters())
    np.testing.assert_allclose(np.asarray(fast(x)), np.asarray(ref(x)), atol=1e-4)


def test_off_the_cpu_every_layer_runs_mlx_s_own_kernels(monkeypatch):
    """On Metal and CUDA (``mlx[cuda]``) the fast paths stand aside: with the default device
    off the CPU, every layer must give the same result without calling one native kernel."""
    keys = mx.random.split(mx.random.key(0), 8)
    x3 = mx.random.normal((2, 24, 6), key=keys[0])
    x4 = mx.random.normal((2, 7, 9, 6), key=keys[1])
    w = mx.random.normal((5, 3, 6), key=keys[2])
    q = mx.random.normal((1, 2, 8, 16), key=keys[3])
    wq, scales, biases = mx.quantize(mx.random.normal((64, 128), key=keys[4]), 64, 4)
    lin = nn.Linear(6, 4)
    cases = {
        "conv_transpose1d": lambda: nn.conv_transpose1d(x3, mx.transpose(w, (0, 1, 2)), stride=2),
        "conv1d (dilated)": lambda: nn.conv1d(x3, w, 1, 2, 2),
        "conv_axis": lambda: nn.conv_axis(x4, w, 2, 1, 1, 1, bias=mx.ones((5,)), activation="gelu"),
        "conv2d": lambda: nn.conv2d(x4, mx.random.normal((5, 3, 3, 6), key=keys[5]), (1, 1)),
        "bias_act": lambda: nn.bias_act(x3, mx.ones((6,)), "gelu"),
        "group_norm": lambda: nn.group_norm(x3, 2, activation="gelu"),
        "depthwise_conv1d": lambda: nn.depthwise_conv1d(x3, mx.ones((6, 3, 1)), 1, 1),
        "attention": lambda: nn.attention(q, q, q, 0.25, window=4),
        "Linear": lambda: lin(x3),
        "lstm_recurrence": lambda: nn.lstm_recurrence(
            mx.random.normal((2, 5, 16), key=keys[7]), mx.random.normal((16, 4), key=keys[5]) * 0.3
        ),
        "quantized_matmul": lambda: nn.quantized_matmul(
            mx.random.normal((3, 128), key=keys[6]), wq, scales, biases, True, 64, 4
        ),
    }
    on_cpu = {name: np.asarray(fn()) for name, fn in cases.items()}

    def refuse(*args, **kwargs):
        raise AssertionError("a native kernel was called off the CPU")

    monkeypatch.setattr(nn, "_on_cpu", lambda: False)
    for name in ("_native", "_graph", "_graph_kernel", "_conv_native", "_norm_act_native",
                 "_attention_native", "_gemm"):  # fmt: skip
        monkeypatch.setattr(nn, name, refuse)
    for name, fn in cases.items():
        np.testing.assert_allclose(np.asarray(fn()), on_cpu[name], atol=2e-4, err_msg=name)


def test_gpu_devices_keep_mlx_kernels(monkeypatch):
    calls = []
    monkeypatch.setattr(nn, "_on_cpu", lambda: False)
    monkeypatch.setattr(
        nn.mx, "conv_transpose1d", lambda *a, **k: calls.append("ct") or mx.zeros((1, 1, 1))
    )
    nn.conv_transpose1d(mx.zeros((1, 4, 2)), mx.zeros((2, 3, 2)), stride=2)
    assert calls == ["ct"]


@pytest.mark.parametrize("dim", [0, 1, -1, None])
def test_weight_norm_matches_the_definition(dim):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((6, 5, 3)).astype(np.float32)
    if dim is None:
        g = np.float32(2.5)
        want = g * v / np.sqrt((v**2).sum())
    else:
        d = dim % 3
        g = rng.standard_normal(v.shape[d]).astype(np.float32)
        axes = tuple(a for a in range(3) if a != d)
        shape = [1, 1, 1]
        shape[d] = -1
        want = g.reshape(shape) * v / np.sqrt((v**2).sum(axis=axes, keepdims=True))
    got = nn.weight_norm(mx.array(v), mx.array(g), dim=dim)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    torch_g = mx.array(g).reshape(6, 1, 1) if dim == 0 else None  # torch keeps g as [out, 1, 1]
    if torch_g is not None:
        np.testing.assert_allclose(
            np.asarray(nn.weight_norm(mx.array(v), torch_g)), want, rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize(
    "axis,stride,padding,dilation", [(1, 1, 1, 1), (1, 1, 2, 2), (2, 4, 2, 1), (1, 2, 0, 3)]
)
@pytest.mark.parametrize("c_in,c_out", [(3, 5), (8, 2)])  # both stride-1 paths
def test_conv_axis_matches_a_transposed_conv1d(
    kernel_path, axis, stride, padding, dilation, c_in, c_out
):
    x = mx.random.normal((2, 11, 13, c_in), key=mx.random.key(0))
    w = mx.random.normal((c_out, 3, c_in), key=mx.random.key(1))
    got = nn.conv_axis(x, w, axis, stride, padding, dilation)
    moved = mx.moveaxis(x, axis, -2)
    lead = moved.shape[:-2]
    ref = mx.conv1d(moved.reshape(-1, *moved.shape[-2:]), w, stride, padding, dilation)
    ref = mx.moveaxis(ref.reshape(*lead, *ref.shape[-2:]), -2, axis)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-4)


@pytest.mark.parametrize("k,stride,padding,length", [(8, 4, 2, 37), (8, 4, 2, 36), (5, 3, 0, 20),
                                                     (4, 4, 0, 17), (3, 2, 5, 9)])  # fmt: skip
def test_strided_conv_axis_matches_mlx(kernel_path, k, stride, padding, length):
    x = mx.random.normal((3, length, 6), key=mx.random.key(10))
    w = mx.random.normal((5, k, 6), key=mx.random.key(11))
    got = nn.conv_axis(x, w, 1, stride, padding)
    want = mx.conv1d(x, w, stride, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)


@pytest.mark.parametrize(
    "kernel,padding", [((3, 3), (1, 1)), ((5, 5), (2, 2)), ((3, 1), (1, 0)), ((1, 3), (0, 0))]
)
def test_conv2d_matches_mlx(kernel_path, kernel, padding):
    x = mx.random.normal((2, 9, 7, 4), key=mx.random.key(2))
    w = mx.random.normal((6, *kernel, 4), key=mx.random.key(3))
    got = nn.conv2d(x, w, padding)
    want = mx.conv2d(x, w, padding=padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)


def test_conv_runs_in_c_where_openblas_is_loaded():
    if sys.platform.startswith("linux"):  # CI and `make test` install libopenblas0-pthread
        assert nn._gemm() is not None


def _conv2d64(x, w, padding):
    x = np.pad(np.asarray(x, np.float64), [(0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0)])
    w = np.asarray(w, np.float64)
    kh, kw = w.shape[1:3]
    h, wd = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], h, wd, w.shape[0]))
    for i in range(kh):
        for j in range(kw):
            out += x[:, i : i + h, j : j + wd] @ w[:, i, j].T
    return out


def test_conv2d_on_many_threads_and_blocks_and_half_precision(kernel_path):
    # 2 x 61 x 37 outputs: several im2col blocks per thread, split unevenly
    x = mx.random.normal((2, 61, 37, 40), key=mx.random.key(4))
    w = mx.random.normal((24, 3, 3, 40), key=mx.random.key(5)) * 0.1
    want = _conv2d64(x, w, (1, 1))
    np.testing.assert_allclose(np.asarray(nn.conv2d(x, w, (1, 1))), want, atol=2e-4)
    got = nn.conv2d(x.astype(mx.float16), w.astype(mx.float16), (1, 1))
    assert got.dtype == mx.float16
    np.testing.assert_allclose(np.asarray(got.astype(mx.float32)), want, atol=0.05)


@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh", "glu", "elu"])
@pytest.mark.parametrize("kernel,padding", [((3, 3), (1, 1)), ((1, 1), (0, 0))])
def test_conv2d_fuses_skip_bias_and_activation(kernel_path, kernel, padding, activation):
    x = mx.random.normal((2, 13, 9, 6), key=mx.random.key(6))
    skip = mx.random.normal(x.shape, key=mx.random.key(7))
    w = mx.random.normal((10, *kernel, 6), key=mx.random.key(8)) * 0.3
    b = mx.random.normal((10,), key=mx.random.key(9))
    got = nn.conv2d(x, w, padding, bias=b, activation=activation, skip=skip)
    want = _activate64(_conv2d64(x + skip, w, padding) + np.asarray(b, np.float64), activation)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


@pytest.mark.parametrize("activation", [None, "gelu", "glu", "elu"])
@pytest.mark.parametrize("stride,dilation,c_out", [(1, 1, 8), (1, 2, 8), (2, 1, 8), (1, 1, 2)])
def test_conv_axis_fuses_skip_bias_and_activation(kernel_path, stride, dilation, c_out,
                                                  activation):  # fmt: skip
    x = mx.random.normal((2, 17, 8), key=mx.random.key(10))  # 2 outputs: the squeeze path
    skip = mx.random.normal(x.shape, key=mx.random.key(11))
    w = mx.random.normal((c_out, 3, 8), key=mx.random.key(12)) * 0.3
    b = mx.random.normal((c_out,), key=mx.random.key(13))
    got = nn.conv_axis(x, w, 1, stride, 1, dilation, bias=b, activation=activation, skip=skip)
    ref = mx.conv1d(x + skip, w, stride, 1, dilation) + b
    want = _activate64(np.asarray(ref, np.float64), activation)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


def _conv_axis64(x, w, padding, dilation):
    """x [n, length, inner, c_in] convolved over length, float64: the definition, tap by tap."""
    x = np.pad(np.asarray(x, np.float64), [(0, 0), (padding, padding), (0, 0), (0, 0)])
    w = np.asarray(w, np.float64)
    out_len = x.shape[1] - dilation * (w.shape[1] - 1)
    return sum(x[:, u * dilation : u * dilation + out_len] @ w[:, u].T for u in range(w.shape[1]))


@pytest.mark.parametrize(
    "frames,inner,padding,dilation,activation",
    [
        (40, 1, 1, 1, None),  # each batch item one block, the BLAS's own threads
        (29, 3, 4, 2, "glu"),  # rows within a step, padding past a tap's reach, fused GLU
        (9, 1, 6, 3, "gelu"),  # every tap partly in the padding, the outer ones wholly
        (5, 2, 0, 2, "elu"),  # a single output step
        (16500, 1, 3, 3, None),  # over 8 MB of output: blocks on our threads, per batch item
    ],
)
def test_conv_axis_with_wide_inputs_as_shifted_matmuls(frames, inner, padding, dilation,
                                                       activation):  # fmt: skip
    # c_in >= 128 along one axis: kh sgemm calls straight from the input, accumulating
    x = mx.random.normal((2, frames, inner, 128), key=mx.random.key(20))
    w = mx.random.normal((128, 3, 128), key=mx.random.key(21)) * 0.1
    b = mx.random.normal((128,), key=mx.random.key(22))
    got = nn.conv_axis(x, w, 1, 1, padding, dilation, bias=b, activation=activation)
    want = _activate64(_conv_axis64(x, w, padding, dilation) + np.asarray(b, np.float64),
                       activation)  # fmt: skip
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-4)
    got = nn.conv_axis(x, w, 1, 1, padding, dilation)  # no epilogue: straight into the output
    np.testing.assert_allclose(np.asarray(got), _conv_axis64(x, w, padding, dilation), atol=2e-4)


def test_conv_fusions_reject_bad_operands():
    x, w = mx.zeros((1, 5, 5, 4)), mx.zeros((6, 3, 3, 4))
    with pytest.raises(ValueError, match="bias"):
        nn.conv2d(x, w, bias=mx.zeros((5,)))
    with pytest.raises(ValueError, match="activation"):
        nn.conv2d(x, w, activation="relu")
    with pytest.raises(ValueError, match="even"):
        nn.conv2d(x, mx.zeros((5, 3, 3, 4)), activation="glu")
    with pytest.raises(ValueError, match="skip"):
        nn.conv2d(x, w, skip=mx.zeros((1, 5, 4, 4)))
    with pytest.raises(ValueError, match="channels"):
        nn.conv_axis(mx.zeros((1, 5, 3)), mx.zeros((2, 3, 4)), 1)


def test_conv2d_rejects_mismatched_channels_and_handles_empty_outputs():
    with pytest.raises(ValueError):
        nn.conv2d(mx.zeros((1, 5, 5, 3)), mx.zeros((2, 3, 3, 4)), (1, 1))
    assert nn.conv2d(mx.zeros((1, 2, 5, 3)), mx.zeros((2, 3, 3, 3))).shape == (1, 0, 3, 2)


def test_buffer_cache_raises_the_limit_inside_and_restores_it():
    before = mx.set_cache_limit(1 << 20)
    try:
        with nn.buffer_cache(256 << 20) as outer:
            assert mx.set_cache_limit(256 << 20) == 256 << 20  # raised
            with nn.buffer_cache(1 << 30):  # nested: the outer raise stands
                assert mx.set_cache_limit(256 << 20) == 256 << 20
            mx.eval(mx.zeros((1 << 20,)) + 1)  # a freed 4 MB buffer stays cached
            assert outer.limit == 256 << 20
        assert mx.set_cache_limit(1 << 20) == 1 << 20  # restored
        assert mx.get_cache_memory() <= 1 << 20  # and emptied down to it
        held = nn.buffer_cache(64 << 20).__enter__()  # held across calls, as the streamer does
        held.close()
        held.close()  # a second close is a no-op
        assert mx.set_cache_limit(1 << 20) == 1 << 20
        with pytest.raises(ValueError, match="limit"):
            nn.buffer_cache(-1)
    finally:
        mx.set_cache_limit(before)


def test_buffer_cache_leaves_other_devices_alone(monkeypatch):
    before = mx.set_cache_limit(1 << 20)
    try:
        monkeypatch.setattr(nn, "_on_cpu", lambda: False)
        with nn.buffer_cache(1 << 30):
            assert mx.set_cache_limit(1 << 20) == 1 << 20
    finally:
        mx.set_cache_limit(before)


def test_mean_and_var_are_accurate_over_long_axes():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 300001, 3)) * 0.01 + 3).astype(np.float32)
    ref64 = x.astype(np.float64)
    m, v = nn.var(mx.array(x), (1, 2), ddof=1)
    np.testing.assert_allclose(np.asarray(m).ravel(), ref64.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(v).ravel(), ref64.var(axis=(1, 2), ddof=1), rtol=1e-5)
    assert nn.mean(mx.array(x), 1).shape == (2, 1, 3)


def test_activations_match_mlx():
    import mlx.nn

    x = mx.random.normal((3, 1000, 8), key=mx.random.key(4)) * 4
    np.testing.assert_allclose(np.asarray(nn.gelu(x)), np.asarray(mlx.nn.gelu(x)), atol=1e-6)
    a, b = mx.split(x, 2, axis=-1)
    np.testing.assert_allclose(np.asarray(nn.glu(x)), np.asarray(a * mx.sigmoid(b)), atol=1e-6)
    a, b = mx.split(x, 2, axis=1)
    np.testing.assert_allclose(
        np.asarray(nn.glu(x, axis=1)), np.asarray(a * mx.sigmoid(b)), atol=1e-6
    )
    assert nn.gelu(x.astype(mx.float16)).dtype == mx.float16


@pytest.fixture(params=["blocked", "per_head"])
def attention_path(request, monkeypatch):
    """The query-block C kernel (with OpenBLAS), and MLX matmuls per head + C softmax."""
    if request.param == "per_head":
        monkeypatch.setattr(nn, "_gemm", lambda: None)
    return request.param


@pytest.mark.parametrize("lq,lk,q_start,k_start,window", [
    (50, 50, 0, 0, 250),  # causal: the window reaches past the start
    (300, 300, 0, 0, 40),  # a sliding window; 300 queries: several query blocks
    (3, 40, 37, 0, 30),  # a streaming step: 3 new queries after 37 cached keys
    (4, 10, 100, 94, 5),  # keys from 94, a cache that dropped what the window left
    (2, 6, 0, 10, 3),  # no key visible: zero rows
])  # fmt: skip
def test_attention_window_matches_the_definition(kernel_path, lq, lk, q_start, k_start, window):
    q = mx.random.normal((2, 3, lq, 16), key=mx.random.key(5)) * 2
    k = mx.random.normal((2, 3, lk, 16), key=mx.random.key(6)) * 2
    v = mx.random.normal((2, 3, lk, 16), key=mx.random.key(7))
    q64, k64, v64 = (np.asarray(t, np.float64) for t in (q, k, v))
    qpos = np.arange(q_start, q_start + lq)[:, None]
    kpos = np.arange(k_start, k_start + lk)[None]
    visible = (kpos <= qpos) & (kpos > qpos - window)
    s64 = np.where(visible, q64 @ k64.swapaxes(-1, -2) * 0.25, -np.inf)
    top = np.where(visible.any(-1, keepdims=True), s64.max(-1, keepdims=True), 0)
    p64 = np.exp(s64 - top)
    p64 /= np.maximum(p64.sum(-1, keepdims=True), 1e-300)
    got = nn.attention(q, k, v, 0.25, window=window, q_start=q_start, k_start=k_start)
    assert got.shape == (2, 3, lq, 16)
    rows = visible.any(-1)  # MLX's kernel gives NaN where no key is visible; ours zeros
    if kernel_path == "native":
        np.testing.assert_allclose(np.asarray(got), p64 @ v64, atol=1e-5)
    else:
        np.testing.assert_allclose(np.asarray(got)[:, :, rows], (p64 @ v64)[:, :, rows],
                                   atol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="window must be None or an int >= 1"):
        nn.attention(q, k, v, 0.25, window=0)


@pytest.mark.parametrize("lq,lk", [(50, 70), (700, 3000), (1, 5)])  # 3000 keys: 131-query blocks
def test_attention_matches_mlx(attention_path, lq, lk):
    q = mx.random.normal((2, 3, lq, 16), key=mx.random.key(5)) * 2
    k = mx.random.normal((2, 3, lk, 16), key=mx.random.key(6)) * 2
    v = mx.random.normal((2, 3, lk, 16), key=mx.random.key(7))
    q64, k64, v64 = (np.asarray(t, np.float64) for t in (q, k, v))
    s64 = q64 @ k64.swapaxes(-1, -2) * 0.25
    p64 = np.exp(s64 - s64.max(-1, keepdims=True))
    ref = (p64 / p64.sum(-1, keepdims=True)) @ v64
    got = nn.attention(q, k, v, 0.25)
    assert got.shape == ref.shape
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-5)
    # the inputs are untouched by the in-place softmax
    np.testing.assert_allclose(np.asarray(nn.attention(q, k, v, 0.25)), np.asarray(got))


def test_attention_half_precision_and_negative_scale(attention_path):
    q = mx.random.normal((1, 2, 33, 8), key=mx.random.key(8))
    k = mx.random.normal((1, 2, 40, 8), key=mx.random.key(9))
    v = mx.random.normal((1, 2, 40, 8), key=mx.random.key(10))
    ref = mx.fast.scaled_dot_product_attention(q, k, v, scale=-0.5)
    np.testing.assert_allclose(np.asarray(nn.attention(q, k, v, -0.5)), np.asarray(ref), atol=1e-5)
    got = nn.attention(*(t.astype(mx.float16) for t in (q, k, v)), 0.5)
    assert got.dtype == mx.float16
    ref = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.5)
    np.testing.assert_allclose(np.asarray(got.astype(mx.float32)), np.asarray(ref), atol=5e-3)
    if attention_path == "blocked":
        with pytest.raises(ValueError, match="do not match"):
            nn.attention(q, k[:, :1], v, 0.5)


def _group_norm64(x, groups, weight, bias, axes, eps=1e-5):
    xg = x.astype(np.float64).reshape(*x.shape[:-1], groups, -1)
    over = (*axes, xg.ndim - 1)
    mean, var = xg.mean(axis=over, keepdims=True), xg.var(axis=over, keepdims=True)
    return ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape) * weight + bias


def _activate64(y, activation):
    erf = np.vectorize(math.erf)
    if activation == "gelu":
        return 0.5 * y * (1 + erf(y / np.sqrt(2)))
    if activation == "gelu_tanh":
        return 0.5 * y * (1 + np.tanh(np.sqrt(2 / np.pi) * (y + 0.044715 * y**3)))
    if activation == "glu":
        a, b = np.split(y, 2, axis=-1)
        return a / (1 + np.exp(-b))
    if activation == "elu":
        return np.where(y > 0, y, np.expm1(np.minimum(y, 0)))
    return y


@pytest.fixture(params=["native", "mlx"])
def kernel_path(request, monkeypatch):
    """Runs a test on the fused C kernels and again on the MLX operations (other devices)."""
    if request.param == "mlx":
        monkeypatch.setattr(nn, "_native_ok", lambda: False)
    return request.param


@pytest.mark.parametrize(
    "axes,groups,activation",
    [(None, 1, None), (None, 4, "gelu"), ((1,), 1, "glu"), ((1,), 2, "gelu_tanh"),
     ((2,), 2, None), ((1, 2), 4, "glu")],
)  # fmt: skip
def test_group_norm_matches_the_definition(kernel_path, axes, groups, activation):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 30, 7, 8)) * 3 + 50).astype(np.float32)  # far-off mean
    w, b, xb = (rng.standard_normal(8).astype(np.float32) for _ in range(3))
    want = _activate64(_group_norm64(x + xb, groups, w, b, axes or (1, 2)), activation)
    res = rng.standard_normal(want.shape).astype(np.float32)
    scale = rng.standard_normal(want.shape[-1]).astype(np.float32)
    got = nn.group_norm(
        mx.array(x), groups, mx.array(w), mx.array(b), axes=axes, activation=activation,
        residual=mx.array(res), residual_scale=mx.array(scale), input_bias=mx.array(xb),
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(got), res + scale * want, atol=2e-5)
    plain = nn.group_norm(mx.array(x), groups, axes=axes)
    np.testing.assert_allclose(
        np.asarray(plain), _group_norm64(x, groups, 1, 0, axes or (1, 2)), atol=2e-5
    )


@pytest.mark.parametrize("axes", [(1,), None])
def test_group_norm_fuses_a_1x1_projection(kernel_path, axes):
    rng = np.random.default_rng(2)
    h = rng.standard_normal((2, 20, 5, 3)).astype(np.float32)
    proj = rng.standard_normal((8, 3)).astype(np.float32)
    xb, res = rng.standard_normal(8).astype(np.float32), rng.standard_normal((2, 20, 5, 4))
    x = h.astype(np.float64) @ proj.T.astype(np.float64)
    want = res + _activate64(_group_norm64(x + xb, 2, 1, 0, axes or (1, 2)), "glu")
    wide = mx.array(np.pad(h, [(0, 0), (0, 0), (0, 2), (0, 0)]))[:, :, :5]  # a strided view
    got = nn.group_norm(wide, 2, axes=axes, activation="glu", residual=mx.array(res, mx.float32),
                        input_bias=mx.array(xb), projection=mx.array(proj))  # fmt: skip
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    with pytest.raises(ValueError, match="projection must be"):
        nn.group_norm(wide, 2, projection=mx.array(proj.T))


def test_group_norm_over_many_narrow_rows(kernel_path):
    """A DConv's shapes, large enough for every thread to take rows: 6 channels over 40,000
    frames (the rows-at-a-time apply), and 6 widened to 96 by a fused projection with a GLU
    and a residual (each thread's projected row and sums in lines of their own)."""
    rng = np.random.default_rng(5)
    h = rng.standard_normal((1, 40000, 6)).astype(np.float32)
    xb = rng.standard_normal(6).astype(np.float32)
    got = nn.group_norm(mx.array(h), 1, axes=(1,), activation="gelu", input_bias=mx.array(xb))
    want = _activate64(_group_norm64(h.astype(np.float64) + xb, 1, 1, 0, (1,)), "gelu")
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    proj = rng.standard_normal((96, 6)).astype(np.float32)
    pb, res = rng.standard_normal(96).astype(np.float32), rng.standard_normal((1, 40000, 48))
    scale = rng.standard_normal(48).astype(np.float32)
    x = h.astype(np.float64) @ proj.T.astype(np.float64) + pb
    want = res + scale * _activate64(_group_norm64(x, 1, 1, 0, (1,)), "glu")
    got = nn.group_norm(mx.array(h), 1, axes=(1,), activation="glu",
                        residual=mx.array(res, mx.float32), residual_scale=mx.array(scale),
                        input_bias=mx.array(pb), projection=mx.array(proj))  # fmt: skip
    np.testing.assert_allclose(np.asarray(got), want, atol=5e-5)


def test_group_norm_of_batch_by_channels_and_half_precision(kernel_path):
    x = mx.random.normal((3, 16), key=mx.random.key(8))
    got = nn.group_norm(x.astype(mx.float16), 4)
    assert got.dtype == mx.float16
    want = _group_norm64(np.asarray(x), 4, 1, 0, ())
    np.testing.assert_allclose(np.asarray(got.astype(mx.float32)), want, atol=5e-3)


@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh", "glu", "elu"])
def test_bias_act_matches_the_definition(kernel_path, activation):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 33, 10)) * 4).astype(np.float32)
    bias = rng.standard_normal(10).astype(np.float32)
    want = _activate64(x.astype(np.float64) + bias, activation)
    got = nn.bias_act(mx.array(x), mx.array(bias), activation)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)
    res = rng.standard_normal(want.shape).astype(np.float32)
    got = nn.bias_act(mx.array(x), None, activation, residual=mx.array(res))
    np.testing.assert_allclose(np.asarray(got), res + _activate64(x, activation), atol=2e-6)


@pytest.mark.parametrize("activation", ["snake", "leaky_relu"])
def test_parametric_activations_match_the_definition(kernel_path, activation):
    """Snake (``y + sin(alpha y)^2 / alpha``, per-channel alpha; arguments up to hundreds of
    radians) and leaky ReLU, fused after group_norm and bias_act."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 50, 3, 16)) * 40).astype(np.float32)
    w, b = (rng.standard_normal(16).astype(np.float32) for _ in range(2))
    alpha = rng.uniform(0.2, 9.0, 16).astype(np.float32)
    param = alpha if activation == "snake" else 0.2

    def act64(y):
        if activation == "snake":
            a = alpha.astype(np.float64)
            return y + np.sin(a * y) ** 2 / a
        return np.where(y > 0, y, 0.2 * y)

    want = act64(_group_norm64(x, 4, w, b, (1,)))
    got = nn.group_norm(mx.array(x), 4, mx.array(w), mx.array(b), axes=(1,),
                        activation=activation, activation_param=param)  # fmt: skip
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    res = rng.standard_normal(x.shape).astype(np.float32)
    got = nn.bias_act(mx.array(x), mx.array(b), activation, residual=mx.array(res),
                      activation_param=param)  # fmt: skip
    want = res + act64(x.astype(np.float64) + b)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-4 * np.abs(want).max())


def test_elu_keeps_small_values_relative_precision(kernel_path):
    # exp(x) - 1 cancels near 0; the kernel switches to expm1's series above -1/4
    x = np.concatenate([-np.logspace(-12, 2, 4000), np.logspace(-12, 2, 50), [0.0, -0.25]])
    x = x.astype(np.float32)
    want = np.where(x > 0, x, np.expm1(np.minimum(x, 0).astype(np.float64)))
    got = np.asarray(nn.bias_act(mx.array(x[None, :, None]), activation="elu"))[0, :, 0]
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)


def test_parametric_activations_check_their_parameter():
    x = mx.zeros((2, 5, 6))
    with pytest.raises(ValueError, match="'snake' needs activation_param"):
        nn.bias_act(x, activation="snake")
    with pytest.raises(ValueError, match="snake's activation_param must have 6 value"):
        nn.group_norm(x, 1, activation="snake", activation_param=mx.ones((3,)))
    with pytest.raises(ValueError, match="leaky_relu's activation_param must have 1 value"):
        nn.bias_act(x, activation="leaky_relu", activation_param=[0.1, 0.2])
    with pytest.raises(ValueError, match="'gelu' takes no activation_param"):
        nn.bias_act(x, activation="gelu", activation_param=0.1)


def test_fused_kernels_reject_bad_arguments():
    x = mx.zeros((2, 5, 6))
    with pytest.raises(ValueError, match="unknown activation"):
        nn.bias_act(x, activation="swish")
    with pytest.raises(ValueError, match="do not split into 4 groups"):
        nn.group_norm(x, 4)
    with pytest.raises(ValueError, match="contiguous run of axes"):
        nn.group_norm(mx.zeros((2, 3, 4, 5, 6)), 1, axes=(1, 3))
    with pytest.raises(ValueError, match="contiguous run of axes"):
        nn.group_norm(x, 1, axes=(0,))
    with pytest.raises(ValueError, match="even size"):
        nn.glu(mx.zeros((2, 5)))
    with pytest.raises(ValueError, match="approximate"):
        nn.gelu(x, approximate="fast")
    # operands the C kernels would read past the end of
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        nn.bias_act(x, mx.zeros((3,)))
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        nn.group_norm(x, 2, weight=mx.zeros((2, 3)))
    with pytest.raises(ValueError, match="residual must have the output's shape"):
        nn.group_norm(x, 2, activation="glu", residual=x)
    with pytest.raises(ValueError, match=r"residual_scale must have shape \(3,\)"):
        nn.bias_act(x, None, "glu", mx.zeros((2, 5, 3)), mx.zeros((6,)))
    with pytest.raises(ValueError, match="even number of channels"):
        nn.group_norm(mx.zeros((2, 5, 3)), 1, activation="glu")
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        nn.conv_transpose1d(x, mx.zeros((2, 3, 6)), 2, bias=mx.zeros((6,)))
    with pytest.raises(ValueError, match="activation"):
        nn.conv_transpose1d(x, mx.zeros((2, 3, 6)), 2, activation="glu")


def test_fused_kernels_on_large_inputs_use_threads_and_stay_exact():
    # big enough for several threads in the C kernel; rows split unevenly between them
    x = mx.random.normal((1, 1001, 7, 96), key=mx.random.key(9)) * 2 + 1
    got = nn.group_norm(x, 1, axes=(1,), activation="glu")
    want = _activate64(_group_norm64(np.asarray(x), 1, 1, 0, (1,)), "glu")
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    np.testing.assert_allclose(
        np.asarray(nn.gelu(x)), _activate64(np.asarray(x), "gelu"), atol=2e-6
    )


def test_linear_matches_mlx_and_follows_new_weights():
    import mlx.nn
    import mlx.utils

    layer = nn.Linear(1024, 3)
    ref = mlx.nn.Linear(1024, 3)
    ref.update(layer.parameters())
    x = mx.random.normal((5, 1024), key=mx.random.key(12))
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(ref(x)), atol=1e-5)
    assert set(dict(mlx.utils.tree_flatten(layer.parameters()))) == {"weight", "bias"}
    layer.update({"weight": layer.weight * 2})  # the cached transpose must not go stale
    np.testing.assert_allclose(
        np.asarray(layer(x) - layer.bias), 2 * np.asarray(ref(x) - ref.bias), atol=1e-4
    )


@pytest.mark.parametrize(
    "n,frames,channels,kernel,padding,dilation",
    [
        (1, 1000, 64, 7, 3, 1),
        (2, 500, 33, 7, 9, 3),
        (1, 300, 128, 7, 27, 9),
        (1, 10, 5, 4, 0, 1),
        (1, 50, 8, 2, 1, 1),
        (3, 1, 4, 3, 1, 1),
    ],  # fmt: skip
)
@pytest.mark.parametrize("activation", [None, "snake", "leaky_relu", "gelu", "elu"])
def test_depthwise_conv1d_matches_mlx(n, frames, channels, kernel, padding, dilation, activation):
    keys = mx.random.split(mx.random.key(7), 4)
    x = mx.random.normal((n, frames, channels), key=keys[0])
    w = mx.random.normal((channels, kernel, 1), key=keys[1])
    b = mx.random.normal((channels,), key=keys[2])
    param = {"snake": mx.random.uniform(0.5, 2.0, (channels,), key=keys[3]), "leaky_relu": 0.1}
    p = param.get(activation)
    y = mx.conv1d(x, w, padding=padding, dilation=dilation, groups=channels) + b
    if activation == "snake":
        y = y + mx.sin(p * y) ** 2 / p
    elif activation == "leaky_relu":
        y = mx.where(y > 0, y, 0.1 * y)
    elif activation == "gelu":
        y = nn.gelu(y)
    elif activation == "elu":
        y = mx.where(y > 0, y, mx.expm1(mx.minimum(y, 0)))
    got = nn.depthwise_conv1d(x, w, padding, dilation, b, activation, p)
    assert got.shape == y.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(y), atol=2e-5, rtol=1e-5)


def test_depthwise_conv1d_errors():
    x = mx.zeros((1, 10, 4))
    with pytest.raises(ValueError, match="does not fit"):
        nn.depthwise_conv1d(x, mx.zeros((3, 3, 1)))
    with pytest.raises(ValueError, match="fewer than the kernel's reach"):
        nn.depthwise_conv1d(x, mx.zeros((4, 7, 1)), dilation=3)
    with pytest.raises(ValueError, match="glu"):
        nn.depthwise_conv1d(x, mx.zeros((4, 3, 1)), activation="glu")
    with pytest.raises(ValueError, match="needs activation_param"):
        nn.depthwise_conv1d(x, mx.zeros((4, 3, 1)), activation="snake")


def _lstm64(gates, w_hh, reverse):
    """torch's LSTM recurrence (gates i, f, g, o) in float64, one direction."""
    b, t, four = gates.shape
    n = four // 4
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, c, out = np.zeros((b, n)), np.zeros((b, n)), np.zeros((b, t, n))
    for step in range(t - 1, -1, -1) if reverse else range(t):
        g = gates[:, step] + h @ w_hh.T
        c = sig(g[:, n : 2 * n]) * c + sig(g[:, :n]) * np.tanh(g[:, 2 * n : 3 * n])
        h = sig(g[:, 3 * n :]) * np.tanh(c)
        out[:, step] = h
    return out


@pytest.mark.parametrize("on_cpu", [True, False])
@pytest.mark.parametrize("batch,reverse", [(1, False), (1, True), (3, True)])
def test_lstm_recurrence_matches_float64(monkeypatch, on_cpu, batch, reverse):
    monkeypatch.setattr(nn, "_on_cpu", lambda: on_cpu)  # False: the MLX loop (Metal, CUDA)
    rng = np.random.default_rng(batch)
    gates = (rng.standard_normal((batch, 23, 4 * 6)) * 3).astype(np.float32)  # saturating
    w_hh = (rng.standard_normal((4 * 6, 6)) * 0.5).astype(np.float32)
    got = nn.lstm_recurrence(mx.array(gates), mx.array(w_hh), reverse=reverse)
    assert got.shape == (batch, 23, 6) and got.dtype == mx.float32
    want = _lstm64(gates.astype(np.float64), w_hh.astype(np.float64), reverse)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)


def test_lstm_recurrence_checks_shapes():
    with pytest.raises(ValueError, match="do not fit weight_hh"):
        nn.lstm_recurrence(mx.zeros((1, 4, 16)), mx.zeros((12, 3)))
