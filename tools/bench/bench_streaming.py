"""Streaming pipeline benchmark for `make bench`: per-chunk overhead of the pipeline and the
realtime factor of file -> gain -> file. Writes docs/benchmarks_streaming.md."""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlx_audio_io as aio  # before mlx: the BLAS preload

import mlx_audio_streaming as ms
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SR = 44100


def overhead(chunks: int, chunk: int) -> tuple[float, float]:
    """Median wall time per chunk (ms) of an identity pipeline fed from memory, and the chunk's
    duration in ms. Everything but queueing and threads is trivial here, so this is the
    pipeline's own cost per chunk."""
    block = np.zeros((2, chunk), np.float32)

    def gen():
        for _ in range(chunks):
            yield block

    runs = []
    for _ in range(5):
        p = ms.StreamingPipeline(
            ms.CallbackSource(gen, SR, 2), ms.IdentityProcessor(), ms.CallbackSink(lambda *a: None)
        )
        t0 = time.perf_counter()
        p.start()
        p.wait()
        runs.append((time.perf_counter() - t0) / chunks * 1000)
    return statistics.median(runs), 1000 * chunk / SR


def file_gain_file(seconds: float, chunk: int) -> tuple[float, float]:
    """(wall s, realtime factor) of a WAV -> gain -> WAV pipeline over `seconds` of stereo."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.wav", Path(d) / "out.wav"
        t = np.arange(int(seconds * SR)) / SR
        x = (0.3 * np.sin(2 * np.pi * 440 * t))[:, None].repeat(2, 1).astype(np.float32)
        aio.save(src, x, SR, encoding="pcm16")
        p = ms.StreamingPipeline(
            ms.FileSource(src, chunk_size=chunk), ms.GainProcessor(0.5), ms.FileSink(dst)
        )
        t0 = time.perf_counter()
        p.start()
        p.wait()
        wall = time.perf_counter() - t0
    return wall, seconds / wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks_streaming.md"))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 500 if args.quick else 3000
    per_chunk, chunk_ms = overhead(n, 1024)
    wall, rtf = file_gain_file(60.0 if args.quick else 180.0, 4096)
    share = 100 * per_chunk / chunk_ms
    lines = [
        "# mlx-audio-streaming benchmarks",
        "",
        f"- Machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; `make bench` (`tools/bench/bench_streaming.py`).",
        f"- Pipeline overhead: identity processor, {n} chunks of 1024 stereo frames at 44.1 kHz "
        "fed from memory to a no-op sink; median of 5 runs.",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| pipeline cost per 1024-frame chunk | {per_chunk:.3f} ms ({share:.1f}% of the "
        f"chunk's {chunk_ms:.1f} ms) | < 5% — {'met' if share < 5 else '**missed**'} |",
        f"| 180 s stereo WAV -> gain -> WAV (4096-frame chunks) | {wall:.2f} s wall, "
        f"{rtf:.0f}x real time | — |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
