"""The fast CPU convolution paths agree with MLX's own kernels."""

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
def test_conv_axis_matches_a_transposed_conv1d(axis, stride, padding, dilation):
    x = mx.random.normal((2, 11, 13, 3), key=mx.random.key(0))
    w = mx.random.normal((5, 3, 3), key=mx.random.key(1))
    got = nn.conv_axis(x, w, axis, stride, padding, dilation)
    moved = mx.moveaxis(x, axis, -2)
    lead = moved.shape[:-2]
    ref = mx.conv1d(moved.reshape(-1, *moved.shape[-2:]), w, stride, padding, dilation)
    ref = mx.moveaxis(ref.reshape(*lead, *ref.shape[-2:]), -2, axis)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-4)


def test_conv2d_matches_mlx():
    x = mx.random.normal((2, 9, 7, 4), key=mx.random.key(2))
    w = mx.random.normal((6, 3, 3, 4), key=mx.random.key(3))
    got = nn.conv2d(x, w, (1, 1))
    np.testing.assert_allclose(np.asarray(got), np.asarray(mx.conv2d(x, w, padding=1)), atol=1e-4)


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


def test_attention_matches_mlx():
    q = mx.random.normal((2, 3, 50, 16), key=mx.random.key(5)) * 2
    k = mx.random.normal((2, 3, 70, 16), key=mx.random.key(6)) * 2
    v = mx.random.normal((2, 3, 70, 16), key=mx.random.key(7))
    ref = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25)
    got = nn.attention(q, k, v, 0.25)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5)
    # the inputs are untouched by the in-place softmax
    np.testing.assert_allclose(np.asarray(nn.attention(q, k, v, 0.25)), np.asarray(got))
