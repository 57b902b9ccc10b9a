"""`make bench`: the fast CPU convolution paths of mlx_audio_io.nn against MLX's own kernels,
at the shapes DESIGN.md measured (a vocoder upsampler, a dilated residual convolution).
Writes docs/benchmarks_nn.md."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_nn.md"))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    runs = 2 if args.quick else 5
    mx.random.seed(0)
    rows = []
    x = mx.random.normal((1, 4000, 256))
    w = mx.random.normal((128, 12, 256)) * 0.05
    mx.eval(x, w)  # time the convolutions, not the random inputs
    ref = mx.conv_transpose1d(x, w, stride=6, padding=3)
    err = float(mx.max(mx.abs(nn.conv_transpose1d(x, w, stride=6, padding=3) - ref)))
    rows.append(
        (
            "conv_transpose1d 4000 -> 24000 frames, 256 -> 128 ch, k 12, stride 6",
            timed(lambda: mx.conv_transpose1d(x, w, stride=6, padding=3), runs),
            timed(lambda: nn.conv_transpose1d(x, w, stride=6, padding=3), runs),
            err,
        )
    )
    x = mx.random.normal((1, 24000, 128))
    w = mx.random.normal((128, 3, 128)) * 0.05
    mx.eval(x, w)
    ref = mx.conv1d(x, w, padding=9, dilation=9)
    err = float(mx.max(mx.abs(nn.conv1d(x, w, padding=9, dilation=9) - ref)))
    rows.append(
        (
            "conv1d 24000 frames, 128 -> 128 ch, k 3, dilation 9",
            timed(lambda: mx.conv1d(x, w, padding=9, dilation=9), runs),
            timed(lambda: nn.conv1d(x, w, padding=9, dilation=9), runs),
            err,
        )
    )
    lines = [
        "# mlx_audio_io.nn: fast CPU convolutions",
        "",
        "MLX's own CPU kernel against `mlx_audio_io.nn` (matmul through the preloaded "
        f"OpenBLAS), median of {runs} runs after a warm-up, float32, same process "
        "(`make bench`, `tools/bench/bench_nn.py`). Torch comparisons come with the "
        "models that use these layers.",
        "",
        "| operation | mx kernel ms | mlx_audio_io.nn ms | speed-up | max abs diff |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {name} | {a:.1f} | {b:.1f} | {a / b:.0f}x | {e:.1e} |" for name, a, b, e in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if np.isfinite([r[3] for r in rows]).all() else 1


if __name__ == "__main__":
    sys.exit(main())
