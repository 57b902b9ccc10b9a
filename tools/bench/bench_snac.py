"""SNAC 24 kHz decode speed: mlx_audio_tts (MLX, CPU) against the official snac 1.2.1
(PyTorch, CPU), same configuration, 5 s of audio (59 code frames).

snac runs in its own venv (``.bench/snac-venv``: ``pip install torch==2.13.0 snac==1.2.1``,
created on first use; torch never enters the workspace's environment) in a subprocess that
times ``SNAC.decode`` on the same codes, alternating with ours. Weights are random (speed
does not depend on them). Prints a markdown table: median seconds over the timed rounds,
real-time factor, ratio; writes ``docs/benchmarks_snac.md`` (or ``--out``).

    uv run --all-packages python tools/bench/bench_snac.py [--rounds 3] [--warmup 4] [--out P]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
import numpy as np
from bench_sts import setup_torch_peer
from common import machine_line, write_report
from mlx_audio_tts.codecs.snac import SNAC, ModelArgs

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".bench" / "snac-venv"
DEFAULT_OUT = ROOT / "docs" / "benchmarks_snac.md"
FRAMES = 59  # 59 x 2048 samples = 5.03 s
THREADS = 2

WORKER = """
import json, sys, time
import numpy as np, torch, snac
torch.set_num_threads(int(sys.argv[2]))
cfg, codes = json.load(open(sys.argv[1]))
model = snac.SNAC(**cfg).eval()
codes = [torch.tensor(c)[None] for c in codes]
print(json.dumps({"torch": torch.__version__}), flush=True)
for line in sys.stdin:  # one decode per line read, its time printed
    with torch.no_grad():
        t = time.perf_counter()
        audio = model.decode(codes)
        dt = time.perf_counter() - t
    print(json.dumps({"time": dt, "samples": audio.shape[-1]}), flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=4, help="untimed rounds (torch needs 3-4)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    opts = parser.parse_args()
    cfg = ModelArgs()
    rng = np.random.default_rng(0)
    per = [cfg.frame_latents // s for s in cfg.vq_strides]
    codes = [rng.integers(0, cfg.codebook_size, FRAMES * p).tolist() for p in per]
    peer_venv = setup_torch_peer(VENV, "snac", "1.2.1", "snac")
    if peer_venv.python is None:
        raise SystemExit(f"snac's venv is not usable: {peer_venv.error}")
    python = peer_venv.python
    model = SNAC(cfg)
    mx.eval(model.parameters())
    mx_codes = [mx.array(c, dtype=mx.int32) for c in codes]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([cfg.to_dict(), codes], f)
        f.flush()
        cmd = [str(python), "-c", WORKER, f.name, str(THREADS)]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
        worker = subprocess.Popen(cmd, **pipes)
        peer = json.loads(worker.stdout.readline())
        times, peer_times = [], []
        for _ in range(
            opts.warmup + opts.rounds
        ):  # alternating, so that load on the machine hits both
            t = time.perf_counter()
            audio = model.decode(mx_codes)
            times.append(time.perf_counter() - t)
            worker.stdin.write("go\n")
            worker.stdin.flush()
            reply = json.loads(worker.stdout.readline())
            peer_times.append(reply["time"])
        worker.stdin.close()
        worker.wait()
    peer["times"], peer["samples"] = peer_times[opts.warmup :], reply["samples"]
    ours, theirs = statistics.median(times[opts.warmup :]), statistics.median(peer["times"])
    seconds = audio.shape[0] / cfg.sampling_rate
    assert audio.shape[0] == peer["samples"]
    lines = [
        "# SNAC 24 kHz decode: mlx_audio_tts against snac 1.2.1",
        "",
        machine_line(),
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"`make bench` (`tools/bench/bench_snac.py`)",
        f"- {FRAMES} code frames = {seconds:.2f} s of audio, official config, random weights; "
        f"median of {opts.rounds} rounds alternating with torch {peer['torch']} "
        f"({THREADS} threads, its own venv `.bench/snac-venv`) after {opts.warmup} warm-up "
        "rounds (torch settles only after 3-4).",
        "",
        "| implementation | decode (s) | x real time | vs snac |",
        "|---|---:|---:|---:|",
        f"| mlx_audio_tts (MLX CPU) | {ours:.2f} | {seconds / ours:.1f} | {theirs / ours:.2f}x |",
        f"| snac 1.2.1 (torch CPU) | {theirs:.2f} | {seconds / theirs:.1f} | 1.00x |",
        "",
        f"- Target (issue 16): decode no slower than snac on torch CPU (>= 1.0x) — "
        f"{'met' if theirs / ours >= 1.0 else '**missed**'}.",
    ]
    write_report(opts.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
