"""`make bench`: the fast CPU paths of mlx_audio_io.nn against MLX's own kernels and
operations, at the shapes DESIGN.md measured (a vocoder upsampler, a dilated residual
convolution) and at HTDemucs' first-layer and transformer shapes. Writes docs/benchmarks_nn.md."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx
import mlx.nn

# isort: on
from mlx_audio_io import nn

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def timed(fn, runs: int) -> float:
    mx.eval(fn())
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _row(name: str, mlx_fn, ours_fn, runs: int) -> tuple[str, float, float, float]:
    err = float(mx.max(mx.abs(mlx_fn() - ours_fn())))
    return name, timed(mlx_fn, runs), timed(ours_fn, runs), err


def htdemucs_rows(runs: int) -> list[tuple[str, float, float, float]]:
    """HTDemucs' heaviest layers: the first frequency layer [1, 336 frames, 512 bins, 48 ch]
    and a transformer layer over 2688 tokens of 512 channels."""
    x = mx.random.normal((1, 336, 512, 48))
    h = mx.random.normal((1, 336, 512, 96))
    w3 = mx.random.normal((96, 3, 3, 48)) * 0.05
    ws = mx.random.normal((96, 8, 48)) * 0.05
    wt = mx.random.normal((16, 8, 48)) * 0.05
    b96, b16, scale = mx.random.normal((96,)), mx.random.normal((16,)), mx.random.normal((48,))
    tokens = mx.random.normal((2688, 2048))
    q, k, v = (mx.random.normal((1, 8, 2688, 64)) for _ in range(3))
    mx.eval(x, h, w3, ws, wt, b96, b16, scale, tokens, q, k, v)

    def dconv_norm_mlx():  # demucs' DConv tail in MLX ops: GroupNorm(1) over time, GLU, add
        y = h + b96
        mean = mx.mean(y, axis=(1, 3), keepdims=True)
        var = mx.var(y, axis=(1, 3), keepdims=True)
        a, g = mx.split((y - mean) * mx.rsqrt(var + 1e-5), 2, axis=-1)
        return x + scale * (a * mx.sigmoid(g))

    def conv_tr_mlx():
        y = mx.conv_transpose1d(x.reshape(336, 512, 48), wt, stride=4, padding=2) + b16
        return mlx.nn.gelu(y)

    return [
        _row("GroupNorm(1) over time + bias + GLU + scaled residual, 336x512x96 (DConv)",
             dconv_norm_mlx,
             lambda: nn.group_norm(h, 1, axes=(1,), activation="glu", residual=x,
                                   residual_scale=scale, input_bias=b96), runs),
        _row("GELU (erf), 2688x2048 (transformer FFN)", lambda: mlx.nn.gelu(tokens),
             lambda: nn.gelu(tokens), runs),
        _row("attention, 8 heads, 2688x2688, head dim 64",
             lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125),
             lambda: nn.attention(q, k, v, 0.125), runs),
        _row("conv2d 3x3, 336x512, 48 -> 96 ch", lambda: mx.conv2d(x, w3, padding=1),
             lambda: nn.conv2d(x, w3, (1, 1)), runs),
        _row("conv over frequency k 8, stride 4, 336x512, 48 -> 96 ch",
             lambda: mx.conv1d(x.reshape(336, 512, 48), ws, stride=4, padding=2),
             lambda: nn.conv_axis(x, ws, 2, 4, 2).reshape(336, 128, 96), runs),
        _row("conv_transpose1d k 8, stride 4 + bias + GELU, 336x512, 48 -> 16 ch", conv_tr_mlx,
             lambda: nn.conv_transpose1d(x.reshape(336, 512, 48), wt, 4, 2, bias=b16,
                                         activation="gelu"), runs),
    ]  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_nn.md"))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    runs = 2 if args.quick else 5
    mx.random.seed(0)
    xt = mx.random.normal((1, 4000, 256))
    wt = mx.random.normal((128, 12, 256)) * 0.05
    xd = mx.random.normal((1, 24000, 128))
    wd = mx.random.normal((128, 3, 128)) * 0.05
    mx.eval(xt, wt, xd, wd)  # time the convolutions, not the random inputs
    rows = [
        _row("conv_transpose1d 4000 -> 24000 frames, 256 -> 128 ch, k 12, stride 6",
             lambda: mx.conv_transpose1d(xt, wt, stride=6, padding=3),
             lambda: nn.conv_transpose1d(xt, wt, stride=6, padding=3), runs),
        _row("conv1d 24000 frames, 128 -> 128 ch, k 3, dilation 9",
             lambda: mx.conv1d(xd, wd, padding=9, dilation=9),
             lambda: nn.conv1d(xd, wd, padding=9, dilation=9), runs),
    ]  # fmt: skip
    with nn.buffer_cache():  # as inside apply_model: intermediates reuse freed buffers
        rows += htdemucs_rows(runs)
    lines = [
        "# mlx_audio_io.nn: fast CPU layers",
        "",
        "MLX's own CPU kernel or operations against `mlx_audio_io.nn` (matmuls through the "
        "preloaded OpenBLAS, fused C kernels), median of "
        f"{runs} runs after a warm-up, float32, same process (`make bench`, "
        "`tools/bench/bench_nn.py`). The rows at HTDemucs' shapes run inside "
        "`nn.buffer_cache()`, as `apply_model` does (both columns: fresh 66 MB outputs "
        "otherwise page-fault on every call). Torch comparisons come with the models that use "
        "these layers ([benchmarks_sts.md](benchmarks_sts.md)).",
        "",
        "| operation | mx kernel ms | mlx_audio_io.nn ms | speed-up | max abs diff |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {name} | {a:.1f} | {b:.1f} | {a / b:.1f}x | {e:.1e} |" for name, a, b, e in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if np.isfinite([r[3] for r in rows]).all() else 1


if __name__ == "__main__":
    sys.exit(main())
