"""The quantized matmul's C kernel agrees with mx.quantized_matmul, and mlx-lm's quantized
Llama gives the same logits with its layers switched to it."""

from mlx_audio_io import nn as aio_nn
from mlx_audio_io.quant import QuantizedEmbedding, QuantizedLinear, use_fast_quantized

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx_lm.models import llama


def _quantized(n, k, group_size, bits, dtype, seed=0):
    w = mx.random.normal((n, k), key=mx.random.key(seed)).astype(dtype)
    return mx.quantize(w, group_size, bits)


def _rel_err(got: mx.array, want: mx.array) -> float:
    got, want = np.asarray(got.astype(mx.float32)), np.asarray(want.astype(mx.float32))
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16, mx.float16])
@pytest.mark.parametrize("rows", [1, 2, 5, 70])
def test_matches_mlx(kernel_calls, bits, group_size, dtype, rows):
    # 77 outputs: odd, two tiles; 640 inputs: 16-word steps and a tail; 70 rows: a prompt
    wq, scales, biases = _quantized(77, 640, group_size, bits, dtype)
    x = mx.random.normal((rows, 640), key=mx.random.key(1))
    want = mx.quantized_matmul(x, wq, scales, biases, True, group_size, bits)
    got = aio_nn.quantized_matmul(x, wq, scales, biases, True, group_size, bits)
    assert kernel_calls == ["aio_nn_quantized_matmul"]
    assert got.shape == want.shape and got.dtype == want.dtype
    assert _rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("n,k", [(1, 32), (3, 96), (33, 2048 + 64), (1031, 4096)])
def test_odd_shapes(kernel_calls, n, k):
    for bits in (4, 8):
        wq, scales, biases = _quantized(n, k, 32, bits, mx.float32, seed=n + k)
        x = mx.random.normal((3, k), key=mx.random.key(2))
        want = mx.quantized_matmul(x, wq, scales, biases, True, 32, bits)
        got = aio_nn.quantized_matmul(x, wq, scales, biases, True, 32, bits)
        assert _rel_err(got, want) <= 1e-5
    assert len(kernel_calls) == 2


def test_leading_axes_and_input_dtype(kernel_calls):
    wq, scales, biases = _quantized(40, 256, 64, 4, mx.bfloat16)
    x = mx.random.normal((2, 3, 256), key=mx.random.key(3)).astype(mx.bfloat16)
    f32 = [a.astype(mx.float32) for a in (x, scales, biases)]
    exact = mx.quantized_matmul(f32[0], wq, f32[1], f32[2], True, 64, 4)
    got = aio_nn.quantized_matmul(x, wq, scales, biases, True, 64, 4)
    assert got.shape == (2, 3, 40) and got.dtype == mx.bfloat16
    assert _rel_err(got, exact) <= 2**-8  # float32 sums, rounded once to bfloat16
    assert kernel_calls == ["aio_nn_quantized_matmul"]


@pytest.mark.parametrize("transpose,bits", [(False, 4), (True, 3), (True, 6)])
def test_other_cases_fall_back_to_mlx(kernel_calls, transpose, bits):
    n, k = 64, 128
    w = mx.random.normal((n, k) if transpose else (k, n), key=mx.random.key(4))
    wq, scales, biases = mx.quantize(w, 64, bits)
    x = mx.random.normal((2, k), key=mx.random.key(5))
    want = mx.quantized_matmul(x, wq, scales, biases, transpose, 64, bits)
    got = aio_nn.quantized_matmul(x, wq, scales, biases, transpose, 64, bits)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert kernel_calls == []


def test_bad_shapes_raise():
    wq, scales, biases = _quantized(16, 128, 64, 4, mx.float32)
    x = mx.zeros((1, 128))
    with pytest.raises(ValueError, match="x's last axis to be 128"):
        aio_nn.quantized_matmul(mx.zeros((1, 64)), wq, scales, biases)
    with pytest.raises(ValueError, match="scales and biases must be"):
        aio_nn.quantized_matmul(x, wq, scales[:, :1], biases[:, :1])
    with pytest.raises(ValueError, match="scales and biases must be"):
        aio_nn.quantized_matmul(x, wq, scales, biases[:8])
    with pytest.raises(ValueError, match="must be packed uint32"):
        aio_nn.quantized_matmul(x, wq.astype(mx.int32), scales, biases)
    with pytest.raises(ValueError, match="group_size must be"):
        aio_nn.quantized_matmul(x, wq, scales, biases, group_size=48)
    with pytest.raises(ValueError, match="bits must be"):
        aio_nn.quantized_matmul(x, wq, scales, biases, bits=7)


def test_kernel_rejects_bad_arguments():
    from mlx_audio_io import _lib

    ffi, x, out = _lib.ffi, np.zeros(64, np.float32), np.zeros(64, np.float32)
    w, s = np.zeros(64, np.uint32), np.zeros(64, np.float32)
    args = (ffi.from_buffer("uint32_t[]", w), ffi.from_buffer(s), ffi.from_buffer(s))

    def call(m, k, group_size, bits):
        err = _lib.errbuf()
        return _lib.lib.aio_nn_quantized_matmul(
            ffi.from_buffer("float[]", x), m, k, *args, 0, 1, group_size, bits,
            ffi.from_buffer("float[]", out), 1, err,
        )  # fmt: skip

    assert call(1, 64, 64, 4) == 0
    assert call(-1, 64, 64, 4) < 0
    assert call(1, 64, 48, 4) < 0
    assert call(1, 96, 64, 4) < 0  # inputs not a whole number of groups
    assert call(1, 64, 64, 3) < 0


def _tiny_llama(tie: bool) -> llama.Model:
    args = llama.ModelArgs(
        model_type="llama", hidden_size=256, num_hidden_layers=2, intermediate_size=512,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=517,
        tie_word_embeddings=tie,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    )  # fmt: skip
    mx.random.seed(7)
    model = llama.Model(args)
    nn.quantize(model, group_size=64, bits=4)
    mx.eval(model.parameters())
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_llama_logits_unchanged(kernel_calls, tie):
    model = _tiny_llama(tie)
    tokens = mx.array([[1, 5, 9, 200, 3]])
    before = [model(tokens), model(tokens[:, :1])]
    params = dict(nn.utils.tree_flatten(model.parameters()))
    assert use_fast_quantized(model) == 2 * 7 + 1 + (0 if tie else 1)
    assert isinstance(model.model.embed_tokens, QuantizedEmbedding)
    assert isinstance(model.model.layers[0].mlp.down_proj, QuantizedLinear)
    assert dict(nn.utils.tree_flatten(model.parameters())).keys() == params.keys()
    after = [model(tokens), model(tokens[:, :1])]
    for b, a in zip(before, after, strict=True):
        assert _rel_err(a, b) <= 1e-5
    assert "aio_nn_quantized_matmul" in kernel_calls
    assert use_fast_quantized(model) == 0  # already switched


def test_switched_model_loads_its_weights(tmp_path):
    model = _tiny_llama(True)
    use_fast_quantized(model)
    model.save_weights(str(tmp_path / "w.safetensors"))
    fresh = _tiny_llama(True)
    use_fast_quantized(fresh)
    fresh.load_weights(str(tmp_path / "w.safetensors"), strict=True)
    tokens = mx.array([[4, 2]])
    np.testing.assert_array_equal(np.asarray(fresh(tokens)), np.asarray(model(tokens)))


def _kernel_numpy(x, wq, scales, biases, group_size, bits, threads=2) -> np.ndarray:
    """The C kernel on NumPy arrays (float32 scales), without MLX."""
    from mlx_audio_io import _lib

    ffi = _lib.ffi
    out = np.empty((x.shape[0], wq.shape[0]), np.float32)
    rc = _lib.lib.aio_nn_quantized_matmul(
        ffi.from_buffer("float[]", x), x.shape[0], x.shape[1], ffi.from_buffer("uint32_t[]", wq),
        ffi.from_buffer(scales), ffi.from_buffer(biases), 0, wq.shape[0], group_size, bits,
        ffi.from_buffer("float[]", out), threads, _lib.errbuf(),
    )  # fmt: skip
    assert rc == 0
    return out


def test_threads_share_the_pool():
    # several Python threads at once: one gets the worker pool, the others run alone
    import concurrent.futures

    wq, scales, biases = (np.asarray(a) for a in _quantized(3000, 512, 64, 4, mx.float32))
    xs = [np.random.default_rng(i).standard_normal((2, 512)).astype(np.float32) for i in range(8)]
    want = [_kernel_numpy(x, wq, scales, biases, 64, 4, threads=1) for x in xs]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda x: _kernel_numpy(x, wq, scales, biases, 64, 4), xs))
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)


def test_forked_child_restarts_the_pool():
    import os

    wq, scales, biases = (np.asarray(a) for a in _quantized(3000, 512, 64, 8, mx.float32))
    x = np.ones((1, 512), np.float32)
    want = _kernel_numpy(x, wq, scales, biases, 64, 8)  # the parent's pool is running
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the same product on a fresh pool
        try:
            ok = np.array_equal(_kernel_numpy(x, wq, scales, biases, 64, 8), want)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
