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
