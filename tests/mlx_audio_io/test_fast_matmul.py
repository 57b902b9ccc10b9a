"""nn.matmul: x @ W for a matrix stored [in, out] (CSM's audio heads), a C kernel for float32
products with few rows, agreeing with MLX's matmul and independent of the thread count."""

from mlx_audio_io import _lib
from mlx_audio_io import nn as aio_nn

import mlx.core as mx
import numpy as np
import pytest
from test_quantized import _rel_err


@pytest.mark.parametrize("rows", [1, 2, 5, 8, 9, 64])
def test_matches_mlx(kernel_calls, rows):
    # 1000 inputs: several chunks of rows and a partial one; 300 outputs: a 16-float tail
    keys = mx.random.split(mx.random.key(rows), 2)
    x, w = mx.random.normal((rows, 1000), key=keys[0]), mx.random.normal((1000, 300), key=keys[1])
    got = aio_nn.matmul(x, w)
    assert got.shape == (rows, 300) and got.dtype == mx.float32
    assert _rel_err(got, x @ w) <= 1e-5
    assert kernel_calls == (["aio_nn_matmul"] if rows <= aio_nn.LINEAR_MAX_ROWS else [])


def test_shapes_dtypes_and_errors(kernel_calls):
    w = mx.random.normal((96, 40))
    x3 = mx.random.normal((2, 3, 96))
    assert _rel_err(aio_nn.matmul(x3, w), x3 @ w) <= 1e-5
    assert aio_nn.matmul(x3[0, 0], w).shape == (40,)  # 1-D x
    assert kernel_calls == ["aio_nn_matmul"] * 2
    got = aio_nn.matmul(x3.astype(mx.bfloat16), w.astype(mx.bfloat16))  # MLX's matmul
    assert got.dtype == mx.bfloat16 and kernel_calls == ["aio_nn_matmul"] * 2
    assert aio_nn.matmul(mx.zeros((0, 96)), w).shape == (0, 40)
    with pytest.raises(ValueError, match="expected x's last axis to be 96"):
        aio_nn.matmul(mx.zeros((1, 40)), w)
    with pytest.raises(ValueError, match=r"weight must be \[in, out\]"):
        aio_nn.matmul(x3, w.reshape(2, 48, 40))


def _kernel(x: np.ndarray, w: np.ndarray, threads: int) -> np.ndarray:
    """The C kernel on exactly sized NumPy arrays (ASan sees any read past them)."""
    ffi = _lib.ffi
    out = np.empty((x.shape[0], w.shape[1]), np.float32)
    rc = _lib.lib.aio_nn_matmul(
        ffi.from_buffer("float[]", x), x.shape[0], x.shape[1], ffi.from_buffer("float[]", w),
        w.shape[1], ffi.from_buffer("float[]", out, require_writable=True), threads,
        _lib.errbuf(),
    )  # fmt: skip
    assert rc == 0
    return out


@pytest.mark.parametrize("rows,k,n", [(1, 1, 1), (2, 3, 33), (5, 67, 31), (8, 4099, 9),
                                      (1, 1024, 2051), (2, 4500, 1000)])  # fmt: skip
def test_kernel_exact_buffers_and_deterministic(rows, k, n):
    # (4500, 1000): 18 MB, its rows cut into the most chunks (63), summed apart, then in order
    rng = np.random.default_rng(k)
    x = rng.standard_normal((rows, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32)
    want = x.astype(np.float64) @ w.astype(np.float64)
    got = _kernel(x, w, 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    np.testing.assert_array_equal(got, _kernel(x, w, 1))  # any thread count: the same bits
    np.testing.assert_array_equal(got, _kernel(x, w, 4))


def test_kernel_rejects_bad_arguments():
    ffi, x = _lib.ffi, np.zeros(16, np.float32)
    ptr = ffi.from_buffer("float[]", x)
    assert _lib.lib.aio_nn_matmul(ptr, 1, 4, ptr, 4, ptr, 1, _lib.errbuf()) == 0
    err = _lib.errbuf()
    assert _lib.lib.aio_nn_matmul(ptr, 1, 0, ptr, 4, ptr, 1, err) < 0
    assert "bad shape" in _lib.ffi.string(err).decode()
    assert _lib.lib.aio_nn_matmul(ptr, -1, 4, ptr, 4, ptr, 1, _lib.errbuf()) < 0
    assert _lib.lib.aio_nn_matmul(ptr, 1, 4, ffi.NULL, 4, ptr, 1, _lib.errbuf()) < 0
