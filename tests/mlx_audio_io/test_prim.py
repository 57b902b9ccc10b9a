"""mlx_audio_io._prim: the nn kernels as MLX graph nodes (no evaluation forced at the call),
loaded only for the MLX version it was built against, with the cffi path as the fallback."""

import subprocess
import sys
import textwrap

from mlx_audio_io import _lib
from mlx_audio_io import nn as aio_nn
from mlx_audio_io.quant import use_fast_layers

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.models import llama
from mlx_lm.models.cache import make_prompt_cache
from test_quantized import _rel_err


def test_built_for_this_mlx():
    # setup.py builds it with the workspace's MLX; a missing build is a failed install here
    assert _lib.prim() is not None, _lib.prim_error()
    assert _lib.prim().MLX_VERSION == mx.__version__
    assert _lib.prim_error() is None


def test_fused_kernels_are_graph_nodes_equal_to_the_cffi_path(kernel_calls, monkeypatch):
    # norm_act (bias_act, group_norm; strided x read in place), conv2d, depthwise: lazy, the
    # output MLX's own, the same values as through cffi
    x = mx.random.normal((2, 9, 7, 12))
    w, b = mx.random.normal((6, 3, 3, 12)) * 0.2, mx.random.normal((6,))
    wd = mx.random.normal((12, 5, 1))

    def run():
        strided = mx.sin(x)[:, ::2]  # a lazy, strided view
        out = [
            aio_nn.bias_act(strided, b[:1] + mx.zeros((12,)), "elu", residual=strided),
            aio_nn.group_norm(mx.cos(x), 4, activation="gelu", axes=(1,)),
            aio_nn.conv2d(mx.cos(x), w, (1, 1), bias=b, activation="glu", skip=x),
            aio_nn.depthwise_conv1d(x[0], wd, 2, 1, None, "leaky_relu", 0.2),
            aio_nn.bias_act(x.astype(mx.bfloat16), activation="gelu"),
        ]
        return out

    lazy = run()
    assert kernel_calls == ["aio_nn_norm_act", "aio_nn_norm_act", "aio_nn_conv2d",
                            "aio_nn_depthwise_conv1d", "aio_nn_norm_act"]  # fmt: skip
    assert lazy[-1].dtype == mx.bfloat16
    monkeypatch.setattr(_lib, "_prim_state", [None, "disabled by the test"])
    for got, want in zip(lazy, run(), strict=True):
        got, want = (np.asarray(t.astype(mx.float32)) for t in (got, want))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_kernels_are_lazy_graph_nodes(kernel_calls):
    x, w = mx.random.normal((2, 96)), mx.random.normal((40, 96))
    q, s, b = mx.quantize(mx.random.normal((64, 96 * 2)), group_size=32, bits=4)
    x2 = mx.random.normal((3, 96 * 2))
    mx.eval(x, w, q, s, b, x2)
    # one graph, one evaluation at the end, through both kernels and MLX's operations
    y = mx.exp(0.1 * aio_nn.linear(mx.sin(x), w))
    z = aio_nn.quantized_matmul(mx.cos(x2), q, s, b, group_size=32, bits=4) * 2
    got_y, got_z = mx.compile(lambda: (y + 1, z - 1))()
    assert kernel_calls == ["aio_nn_linear", "aio_nn_quantized_matmul"]
    assert _rel_err(got_y, mx.exp(0.1 * (mx.sin(x) @ w.T)) + 1) < 1e-5
    want = mx.quantized_matmul(mx.cos(x2), q, s, b, group_size=32, bits=4) * 2 - 1
    assert _rel_err(got_z, want) < 1e-5
    mx.async_eval(y)  # the way mlx-lm's generate_step pipelines decode steps
    np.testing.assert_allclose(np.asarray(y), np.asarray(mx.exp(0.1 * aio_nn.linear(mx.sin(x), w))))


def test_views_are_read_in_place_and_strided_inputs_copied():
    # one matrix of a stacked weight (a slice of a bigger buffer) is used where it lies; a
    # strided x, a transposed weight or a broadcast bias is gathered into rows first
    stack = mx.random.normal((3, 96, 40))
    x = mx.random.normal((4, 2, 96))
    mx.eval(stack, x)
    for i in range(3):
        w = stack[i, :, :]
        assert _rel_err(aio_nn.matmul(x[:, 0], w), x[:, 0] @ w) < 1e-5
        assert _rel_err(aio_nn.linear(x[:, 1], w.T), x[:, 1] @ w) < 1e-5
        bias = mx.broadcast_to(x[0, 0, :1], (40,))
        assert _rel_err(aio_nn.linear(x[::2, 1], w.T, bias), x[::2, 1] @ w + bias) < 1e-5
    q, s, b = mx.quantize(mx.random.normal((64, 128)), group_size=32, bits=4)
    both = mx.concatenate([q, q])  # a slice of it is q's rows again
    xq = mx.random.normal((2, 2, 128))[:, 1]
    got = aio_nn.quantized_matmul(xq, both[64:, :], s, b, group_size=32, bits=4)
    assert _rel_err(got, mx.quantized_matmul(xq, q, s, b, group_size=32, bits=4)) < 1e-5


def test_llama_decode_matches_the_cffi_path(monkeypatch):
    args = llama.ModelArgs(
        model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
        num_attention_heads=4, rms_norm_eps=1e-5, vocab_size=300, num_key_value_heads=2,
        tie_word_embeddings=True,
    )  # fmt: skip
    mx.random.seed(3)
    model = llama.Model(args)
    use_fast_layers(model)
    mx.eval(model.parameters())

    def decode():
        cache, tok, out = make_prompt_cache(model), mx.array([[1, 2, 3]]), []
        for _ in range(4):
            logits = model(tok, cache=cache)[:, -1]
            out.append(np.asarray(logits))
            tok = logits.argmax(-1)[None]
        return out

    lazy = decode()
    monkeypatch.setattr(_lib, "_prim_state", [None, "disabled by the test"])
    eager = decode()
    for a, b in zip(lazy, eager, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_failing_kernel_raises_at_evaluation():
    # kernels that fail (as the C code does on out-of-memory) -> RuntimeError, process lives
    ffi, prim = _lib.ffi, _lib.prim()

    @ffi.callback("int(float *, int64_t, int64_t, float *, int64_t, float *, float *, int, char *)")
    def failing(*args):
        msg = b"out of memory"
        ffi.memmove(args[-1], msg + b"\0", len(msg) + 1)
        return -1

    @ffi.callback("int(float *, int64_t, int64_t, float *, int64_t, float *, int, char *)")
    def failing_matmul(*args):
        ffi.memmove(args[-1], b"out of memory\0", 14)
        return -1

    @ffi.callback("int(float *, int64_t *, float *, int64_t, float *, float *, int64_t, int64_t, "
                  "int64_t, int64_t, int64_t, int, float, float *, float *, int, float *, float *, "
                  "float *, int, char *)")  # fmt: skip
    def failing_norm_act(*args):
        ffi.memmove(args[-1], b"out of memory\0", 14)
        return -1

    x, w = mx.ones((1, 8)), mx.ones((4, 8))
    kernels = [_lib.kernel_address(name) for name in _lib.PRIM_KERNELS]
    broken = list(kernels)
    for i, cb in ((0, failing), (2, failing_matmul), (3, failing_norm_act)):
        broken[i] = int(ffi.cast("uintptr_t", cb))
    prim.set_kernels(*broken)
    try:
        y, z = aio_nn.linear(x, w), aio_nn.matmul(x, w.T)
        g = aio_nn.bias_act(x, activation="gelu")
        for lazy, name in ((y, "aio_nn_linear"), (z, "aio_nn_matmul"), (g, "aio_nn_norm_act")):
            with pytest.raises(RuntimeError, match=f"{name}: out of memory"):
                mx.eval(lazy)
    finally:
        prim.set_kernels(*kernels)
    np.testing.assert_array_equal(np.asarray(aio_nn.linear(x, w)), np.full((1, 4), 8.0))
    np.testing.assert_array_equal(np.asarray(aio_nn.matmul(x, w.T)), np.full((1, 4), 8.0))


def test_bad_arguments_raise_value_error():
    prim = _lib.prim()
    with pytest.raises(ValueError, match="k > 0"):
        prim.linear(mx.ones((1, 8)), mx.ones((4, 7)), None, 1)
    with pytest.raises(ValueError, match="bias"):
        prim.linear(mx.ones((1, 8)), mx.ones((4, 8)), mx.ones((3,)), 1)
    with pytest.raises(ValueError, match=r"w \[k, n\]"):
        prim.matmul(mx.ones((1, 8)), mx.ones((7, 4)), 1)
    with pytest.raises(ValueError, match="argument count"):
        prim.kernel(0, [mx.ones((2, 4))], [2, 4], [0] * 7, [1e-5], 1)
    with pytest.raises(ValueError, match="bad kind"):
        prim.kernel(5, [mx.ones((2, 4))] * 8, [2, 4], [0] * 7, [1e-5], 1)
    q, s, b = mx.quantize(mx.ones((4, 64)), group_size=64, bits=4)
    with pytest.raises(ValueError, match="scales and biases"):
        prim.quantized_matmul(mx.ones((1, 64)), q, s, b, 1, 64, 4, 1)  # float16 claimed
    with pytest.raises(ValueError, match="bits"):
        prim.quantized_matmul(mx.ones((1, 64)), q, s, b, 0, 64, 3, 1)


def _run(code: str, **env) -> str:
    import os

    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


CHECK = """
    import sys
    import mlx_audio_io
    import mlx.core as mx
    {patch}
    from mlx_audio_io import _lib, nn
    x, w = mx.random.normal((2, 64)), mx.random.normal((10, 64))
    err = float(mx.abs(nn.linear(x, w) - x @ w.T).max())
    print(_lib.prim() is None, _lib.prim_error(), err < 1e-4)
    print("imported" if "mlx_audio_io._prim" in sys.modules else "not imported")
"""


def test_disabled_by_environment_falls_back_to_cffi():
    out = _run(CHECK.format(patch=""), MLX_AUDIO_IO_NO_PRIM="1")
    assert out.split() == ["True", "MLX_AUDIO_IO_NO_PRIM=1", "True", "not", "imported"]


def test_other_mlx_version_is_not_loaded():
    # MLX has no stable C++ ABI: a _prim built for another version must not even be imported
    out = _run(CHECK.format(patch="mx.__version__ = '0.0.1'"))
    first, second = out.splitlines()
    assert first.startswith("True built for mlx") and "running mlx 0.0.1" in first
    assert first.endswith("True") and second == "not imported"


def test_empty_output_buffers_and_large_loads_without_zero_fill(tmp_path):
    """load()'s large outputs come from _prim.empty (MLX's allocator, unwritten, huge pages
    asked for): every sample is the decoder's, as with the zero-filled fallback."""
    import mlx_audio_io as aio

    out = _lib.prim().empty([3000, 700])
    assert out.shape == (3000, 700) and out.dtype == mx.float32
    view = np.asarray(out)  # writable through the buffer protocol, as the loaders write it
    view[:] = 2.0
    assert float(out.sum()) == 2.0 * 3000 * 700
    with pytest.raises(ValueError, match="negative"):
        _lib.prim().empty([4, -1])
    audio = np.random.default_rng(0).uniform(-1, 1, (300_000, 2)).astype(np.float32)
    for layout in ("channels_last", "channels_first"):
        path = tmp_path / f"{layout}.wav"
        aio.save(path, audio, 48_000, encoding="float32")
        got, _ = aio.load(path, layout=layout)
        want = audio if layout == "channels_last" else audio.T
        np.testing.assert_array_equal(np.asarray(got), want)
