"""The float32 few-row linear's C kernel agrees with MLX's matmul, and mlx-lm's Llama gives
the same logits with its layers switched by use_fast_layers."""

import concurrent.futures

from mlx_audio_io import nn as aio_nn
from mlx_audio_io.quant import (
    Embedding,
    Linear,
    QuantizedEmbedding,
    QuantizedLinear,
    use_fast_layers,
    use_fast_quantized,
)

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx_lm.models import llama
from test_quantized import _rel_err


def _operands(rows, n, k, seed=0):
    keys = mx.random.split(mx.random.key(seed), 3)
    x = mx.random.normal((rows, k), key=keys[0])
    w = mx.random.normal((n, k), key=keys[1])
    b = mx.random.normal((n,), key=keys[2])
    return x, w, b


@pytest.mark.parametrize("rows", [1, 2, 5, 9, 64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_mlx(kernel_calls, rows, with_bias):
    # 300 outputs: several tiles and a partial one; 1000 inputs: 32-float steps and a tail
    x, w, b = _operands(rows, 300, 1000)
    b = b if with_bias else None
    want = x @ w.T if b is None else mx.addmm(b, x, w.T)
    got = aio_nn.linear(x, w, b)
    assert got.shape == want.shape and got.dtype == mx.float32
    assert _rel_err(got, want) <= 1e-5
    assert kernel_calls == (["aio_nn_linear"] if rows <= aio_nn.LINEAR_MAX_ROWS else [])


@pytest.mark.parametrize("n,k", [(1, 1), (3, 15), (7, 16), (5, 17), (33, 47), (129, 2049)])
def test_odd_shapes(kernel_calls, n, k):
    for rows in (1, 3, 4, 6, 8):  # every block size of x's rows, and two blocks
        x, w, b = _operands(rows, n, k, seed=n + k + rows)
        assert _rel_err(aio_nn.linear(x, w, b), mx.addmm(b, x, w.T)) <= 1e-5
    assert kernel_calls == ["aio_nn_linear"] * 5


def test_leading_axes(kernel_calls):
    x, w, b = _operands(6, 40, 96)
    x3 = x.reshape(2, 3, 96)
    got = aio_nn.linear(x3, w, b)
    assert got.shape == (2, 3, 40)
    assert _rel_err(got, mx.addmm(b, x3, w.T)) <= 1e-5
    assert aio_nn.linear(x[0], w).shape == (40,)  # 1-D x
    assert kernel_calls == ["aio_nn_linear"] * 2


def test_other_dtypes_fall_back_to_mlx(kernel_calls):
    x, w, b = _operands(2, 24, 64)
    for dtype in (mx.float16, mx.bfloat16):
        xd, wd, bd = (a.astype(dtype) for a in (x, w, b))
        got = aio_nn.linear(xd, wd, bd)
        assert got.dtype == dtype
        assert mx.array_equal(got, mx.addmm(bd, xd, wd.T)).item()
    got = aio_nn.linear(x, w.astype(mx.bfloat16))  # mixed: MLX promotes
    assert got.dtype == mx.float32
    assert aio_nn.linear(mx.zeros((0, 64)), w).shape == (0, 24)
    assert kernel_calls == []


def test_bad_shapes_raise():
    x, w, b = _operands(1, 8, 16)
    with pytest.raises(ValueError, match="x's last axis to be 16"):
        aio_nn.linear(mx.zeros((1, 15)), w)
    with pytest.raises(ValueError, match="weight must be"):
        aio_nn.linear(x, w.reshape(1, 8, 16))
    with pytest.raises(ValueError, match="bias must be"):
        aio_nn.linear(x, w, b[:7])


def _kernel_numpy(x, w, b, threads=2) -> np.ndarray:
    """The C kernel on exactly sized NumPy arrays (ASan sees any read past them)."""
    from mlx_audio_io import _lib

    ffi = _lib.ffi
    out = np.empty((x.shape[0], w.shape[0]), np.float32)
    rc = _lib.lib.aio_nn_linear(
        ffi.from_buffer("float[]", x), x.shape[0], x.shape[1], ffi.from_buffer("float[]", w),
        w.shape[0], ffi.NULL if b is None else ffi.from_buffer("float[]", b),
        ffi.from_buffer("float[]", out, require_writable=True), threads, _lib.errbuf(),
    )  # fmt: skip
    assert rc == 0
    return out


def test_kernel_exact_buffers():
    rng = np.random.default_rng(0)
    for rows, n, k in [(1, 1, 1), (2, 3, 33), (5, 67, 31), (8, 9, 95), (7, 1, 1000)]:
        x = rng.standard_normal((rows, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        b = rng.standard_normal(n, dtype=np.float32)
        want = x.astype(np.float64) @ w.T.astype(np.float64) + b
        got = _kernel_numpy(x, w, b)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
        np.testing.assert_array_equal(_kernel_numpy(x, w, None), _kernel_numpy(x, w, None, 1))


def test_kernel_rejects_bad_arguments():
    from mlx_audio_io import _lib

    ffi, x = _lib.ffi, np.zeros(16, np.float32)
    ptr = ffi.from_buffer("float[]", x)
    assert _lib.lib.aio_nn_linear(ptr, 1, 4, ptr, 4, ffi.NULL, ptr, 1, _lib.errbuf()) == 0
    assert _lib.lib.aio_nn_linear(ptr, 1, 0, ptr, 4, ffi.NULL, ptr, 1, _lib.errbuf()) < 0
    assert _lib.lib.aio_nn_linear(ptr, -1, 4, ptr, 4, ffi.NULL, ptr, 1, _lib.errbuf()) < 0


def test_threads_share_the_pool():
    # Python threads at once: one gets the worker pool, the others run alone; same results
    rng = np.random.default_rng(1)
    w = rng.standard_normal((1500, 512), dtype=np.float32)
    b = rng.standard_normal(1500, dtype=np.float32)
    xs = [rng.standard_normal((1 + i % 3, 512), dtype=np.float32) for i in range(6)]
    want = [_kernel_numpy(x, w, b, threads=1) for x in xs]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for _ in range(4):
            got = list(pool.map(lambda x: _kernel_numpy(x, w, b), xs))
            for g, ref in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, ref)
    wm, bm = mx.array(w), mx.array(b)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # through MLX arrays too
        # (evaluated in the thread that made them: MLX's streams are per thread)
        got = list(pool.map(lambda x: np.asarray(aio_nn.linear(mx.array(x), wm, bm)), xs))
    for g, ref in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, ref)


def _tiny_llama(tie: bool, bits: int | None = None) -> llama.Model:
    args = llama.ModelArgs(
        model_type="llama", hidden_size=128, num_hidden_layers=2, intermediate_size=256,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=301,
        tie_word_embeddings=tie,
    )  # fmt: skip
    mx.random.seed(3)
    model = llama.Model(args)
    if bits:
        nn.quantize(model, group_size=64, bits=bits)
    mx.eval(model.parameters())
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_llama_logits_unchanged(kernel_calls, tie):
    model = _tiny_llama(tie)
    tokens = mx.array([[1, 5, 9, 200, 3]])
    before = [model(tokens), model(tokens[:, :1]), model(tokens[:, :2])]
    params = dict(nn.utils.tree_flatten(model.parameters()))
    assert use_fast_layers(model) == 2 * 7 + 1 + (0 if tie else 1)
    assert type(model.model.embed_tokens) is Embedding
    assert type(model.model.layers[0].mlp.down_proj) is Linear
    assert dict(nn.utils.tree_flatten(model.parameters())).keys() == params.keys()
    after = [model(tokens), model(tokens[:, :1]), model(tokens[:, :2])]
    for b, a in zip(before, after, strict=True):
        assert _rel_err(a, b) <= 1e-5
    assert "aio_nn_linear" in kernel_calls
    assert use_fast_layers(model) == 0  # already switched


def test_quantized_llama_and_use_fast_quantized(kernel_calls):
    model = _tiny_llama(True, bits=4)
    tokens = mx.array([[1, 5, 9]])
    before = model(tokens[:, :1])
    assert use_fast_quantized(model) == 2 * 7 + 1
    assert use_fast_layers(model) == 0  # nothing float left to switch
    assert type(model.model.embed_tokens) is QuantizedEmbedding
    assert type(model.model.layers[1].self_attn.q_proj) is QuantizedLinear
    assert _rel_err(model(tokens[:, :1]), before) <= 1e-5
    fresh = _tiny_llama(True, bits=4)
    assert use_fast_layers(fresh) == 2 * 7 + 1
    assert "aio_nn_quantized_matmul" in kernel_calls
