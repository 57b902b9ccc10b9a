"""SAM-Audio speed and memory: mlx_audio_sts (MLX, CPU) against the official
facebookresearch/sam-audio (torch CPU), same configurations, random weights.

Rows: the DAC-VAE codec's encode and decode of 10 s (official config), one DiT step (one
velocity evaluation) at the base width (dim 2048, 16 heads, 16 layers) on 10 s, and
``separate_long`` on 30 s at a reduced width (dim 256, 4 heads, 2 layers; 10 s chunks, 3 s
overlap, Euler 2/32; the reference has no chunked mode, so its worker runs the same chunks
through its ``separate``). Each op alternates with the reference (``tools/bench/sam_worker.py``
in the parity venv, which ``make parity`` creates; ``tools/parity/get_sam_audio_ref.sh`` fetches
the sources). ``SeparationResult.peak_memory`` is reported next to the process's peak RSS.

    uv run --all-packages python tools/bench/bench_sam.py [--rounds 2] [--out P]
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
import numpy as np
from common import machine_line, write_report
from mlx.utils import tree_flatten
from mlx_audio_sts.models.sam_audio import SAMAudio, SAMAudioConfig
from mlx_audio_sts.models.sam_audio.random_weights import randomize

ROOT = Path(__file__).resolve().parents[2]
PARITY_PY = ROOT / ".parity-venv" / "bin" / "python"
DEFAULT_OUT = ROOT / "docs" / "benchmarks_sam.md"
THREADS = 2
BASE = {"dim": 2048, "n_heads": 16, "n_layers": 16}
REDUCED = {"dim": 256, "n_heads": 4, "n_layers": 2}
ODE = {"method": "euler", "step_size": 2 / 32}
OPS = [  # (label, op, DiT, seconds of audio, rounds)
    ("DAC-VAE encode, 10 s", "encode", REDUCED, 10.0, None),
    ("DAC-VAE decode, 10 s", "decode", REDUCED, 10.0, None),
    ("DiT step at base width (2048 x 16), 10 s", "dit_step", BASE, 10.0, None),
    ("separate_long, 30 s, reduced DiT, Euler 2/32", "separate_long", REDUCED, 30.0, 1),
]


class Ours:
    def __init__(self):
        self.key, self.model = None, None

    def model_for(self, dit: dict) -> SAMAudio:
        key = json.dumps(dit, sort_keys=True)
        if key != self.key:
            self.model = None
            cfg = SAMAudioConfig.from_dict({"transformer": {**dit, "context_dim": dit["dim"]},
                                            "text_encoder": {"dim": 64}})  # fmt: skip
            self.key, self.model = key, randomize(SAMAudio(cfg), seed=0)
        return self.model

    def run(self, op: str, dit: dict, seconds: float) -> tuple[float, float | None]:
        model = self.model_for(dit)
        rng = np.random.default_rng(0)
        audio = (0.1 * rng.standard_normal(int(seconds * 48_000))).astype(np.float32)
        frames = -(-audio.size // 1920)
        text = mx.array(rng.standard_normal((1, 4, 64)).astype(np.float32))
        t = time.perf_counter()
        peak = None
        if op == "encode":
            mx.eval(model.audio_codec.encode(mx.array(audio)[None, :, None]))
        elif op == "decode":
            mx.eval(model.audio_codec.decode(mx.random.normal((1, frames, 128))))
        elif op == "dit_step":
            cond = model.conditioning(model.processor()(["man speaking"], [audio]), text)
            x = mx.random.normal((1, frames, 256))
            mx.eval(x)
            t = time.perf_counter()
            mx.eval(model.velocity(cond, 0.5, x))
        else:
            out = model.separate_long([audio], ["man speaking"], ode_opt=ODE, verbose=False,
                                      text_features=text)  # fmt: skip
            peak = out.peak_memory
        return time.perf_counter() - t, peak


def _rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def memory_row() -> dict:
    """separate_long on 30 s (reduced DiT) in this fresh process: ``peak_memory`` against the
    process's own peak RSS growth over the call (ru_maxrss after minus VmRSS before)."""
    ours = Ours()
    ours.model_for(REDUCED)
    before = _rss_gb()
    _, peak = ours.run("separate_long", REDUCED, 30.0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    weights = sum(v.nbytes for _, v in tree_flatten(ours.model.parameters())) / 2**30
    return {"peak_memory": peak, "rss_before": before, "rss_peak": after, "weights": weights}


def measure_memory() -> dict:
    """:func:`memory_row` in a process of its own (nothing else held in its memory)."""
    run = subprocess.run([sys.executable, __file__, "--memory-only"], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.memory_only:
        print(json.dumps(memory_row()))
        return 0
    mem = measure_memory()
    if not PARITY_PY.exists():
        raise SystemExit(f"{PARITY_PY} is missing: run `make parity` once (it builds that venv)")
    subprocess.run(["bash", str(ROOT / "tools/parity/get_sam_audio_ref.sh")], check=True)
    worker = subprocess.Popen([str(PARITY_PY), str(ROOT / "tools/bench/sam_worker.py"),
                               str(THREADS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    peer = json.loads(worker.stdout.readline())

    def theirs(op, dit, seconds):
        req = {"op": op, "dit": dit, "seconds": seconds, "chunk": 480_000, "overlap": 144_000,
               "ode": ODE}  # fmt: skip
        worker.stdin.write(json.dumps(req) + "\n")
        worker.stdin.flush()
        return json.loads(worker.stdout.readline())["time"]

    ours, rows = Ours(), []
    for label, op, dit, seconds, rounds in OPS:
        ours.run(op, dit, 1.0 if op != "separate_long" else 2.0)  # warm-up, short
        theirs(op, dit, 1.0 if op != "separate_long" else 2.0)
        mine, ref = [], []
        for _ in range(rounds or opts.rounds):  # alternating, so that load hits both
            dt, _ = ours.run(op, dit, seconds)
            mine.append(dt)
            ref.append(theirs(op, dit, seconds))
        m, r = statistics.median(mine), statistics.median(ref)
        rows.append(f"| {label} | {m:.2f} | {r:.2f} | {r / m:.2f}x |")
        print(rows[-1], flush=True)
    worker.stdin.close()
    worker.wait()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lines = [
        "# SAM-Audio: mlx_audio_sts against facebookresearch/sam-audio (torch CPU)",
        "",
        machine_line(),
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        "`make bench` (`tools/bench/bench_sam.py`)",
        f"- float32, random weights, {THREADS} threads both; torch {peer['torch']} in the parity "
        "venv with the official sources (68b48d4); the median of "
        f"{opts.rounds} rounds alternating with the reference (1 for separate_long), after a "
        "short warm-up.",
        "",
        "| op | ours (s) | official torch (s) | vs official |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"- Memory of separate_long (30 s, reduced DiT), in a process of its own: "
        f"`SeparationResult.peak_memory` {mem['peak_memory']:.2f} GB (MLX's allocator: the "
        f"{mem['weights']:.2f} GB of weights and the call's arrays) against the process's peak "
        f"RSS {mem['rss_peak']:.2f} GB, {mem['rss_peak'] - mem['rss_before']:.2f} GB above its "
        f"RSS before the call ({mem['rss_before']:.2f} GB: Python, the libraries, the weights). "
        f"In this run (the rows above, one process) the peak RSS was {rss_gb:.2f} GB. MLX's "
        "count runs above the pages the CPU process makes resident (measured for the codec "
        "alone too: 1.7-2x); on Apple silicon it is the unified memory MLX holds.",
        "- Target (issue 19): codec encode and decode >= 1.0x the official on torch CPU.",
    ]
    write_report(opts.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
