"""Mimi speed: mlx_audio_tts (MLX, CPU) against transformers' ``MimiModel`` (PyTorch, CPU),
kyutai/mimi's configuration, 5 s of audio (63 frames at 12.5 Hz, all 32 codebooks).

transformers runs in its own venv (``.bench/llama-venv``: ``pip install torch==2.13.0
transformers==5.25.0``, the peer venv of ``bench_orpheus_lm.py``, created on first use; torch
never enters the workspace's environment) in a subprocess, 2 threads, alternating with ours
round by round so that load on the machine hits both. Weights are random (speed does not
depend on them). Measured: decode of 63 frames, encode of 5 s, and a frame-by-frame streaming
decode of the 63 frames (ours: :class:`StreamingDecoder`, exact; transformers: ``decode`` one
frame at a time with its ``decoder_cache``, which carries the transformer's keys but no
convolution state, so it is not exact, only the same work). Prints a markdown table (median
seconds) and writes ``docs/benchmarks_mimi.md`` (or ``--out``).

    uv run --all-packages python tools/bench/bench_mimi.py [--rounds 5] [--warmup 4] [--out P]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
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
from bench_sts import setup_torch_peer, worker_env
from common import machine_line, write_report
from mlx.utils import tree_flatten, tree_unflatten
from mlx_audio_tts.codecs.mimi import Mimi, ModelArgs, StreamingDecoder

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".bench" / "llama-venv"
DEFAULT_OUT = ROOT / "docs" / "benchmarks_mimi.md"
TRANSFORMERS_VERSION = "5.25.0"
FRAMES = 63  # 63 x 1920 samples = 5.04 s
THREADS = 2
TASKS = ("decode", "encode", "stream")

WORKER = """
import json, sys, time
import numpy as np, torch
from transformers import MimiConfig, MimiModel
torch.set_num_threads(int(sys.argv[2]))
codes, samples = json.load(open(sys.argv[1]))
torch.manual_seed(0)
model = MimiModel(MimiConfig()).eval()
codes = torch.tensor(codes)[None]
audio = torch.from_numpy(np.random.default_rng(0).standard_normal(samples).astype("float32"))
audio = 0.1 * audio[None, None]
print(json.dumps({"torch": torch.__version__}), flush=True)
for line in sys.stdin:  # one task per line read, its time printed
    task = line.strip()
    with torch.no_grad():
        t = time.perf_counter()
        if task == "decode":
            n = model.decode(codes).audio_values.shape[-1]
        elif task == "encode":
            n = model.encode(audio).audio_codes.shape[-1]
        else:
            cache, n = None, 0
            try:
                for i in range(codes.shape[-1]):
                    out = model.decode(codes[:, :, i : i + 1], decoder_cache=cache, use_cache=True)
                    cache, n = out.decoder_cache, n + out.audio_values.shape[-1]
            except Exception as e:  # noqa: BLE001
                n = repr(e)
        dt = time.perf_counter() - t
    print(json.dumps({"time": dt, "n": n}), flush=True)
"""


def _ours(model: Mimi, task: str, codes: mx.array, audio: np.ndarray) -> tuple[float, int]:
    t = time.perf_counter()
    if task == "decode":
        n = model.decode(codes).shape[0]
    elif task == "encode":
        n = model.encode(audio).shape[1]
    else:
        stream = StreamingDecoder(model)
        n = sum(stream.push(codes[:, i : i + 1]).shape[0] for i in range(codes.shape[1]))
    return time.perf_counter() - t, n


def _row(name: str, med: tuple, seconds: float, note: str = "") -> str:
    """A table row from (ours, theirs or None, last reply, best ours, best theirs or None)."""
    ours, theirs, _, best, best_theirs = med
    if isinstance(theirs, float):
        return (f"| {name} | {ours:.2f} | {seconds / ours:.1f} | {theirs:.2f} | "
                f"{theirs / ours:.2f}x | {best:.2f} / {best_theirs:.2f} = "
                f"{best_theirs / best:.2f}x |{note}")  # fmt: skip
    return f"| {name} | {ours:.2f} | {seconds / ours:.1f} | n/a | n/a | n/a |{note}"


def _rounds(times: dict, warmup: int) -> str:
    """``task a/b, a/b, ...; ...`` for the timed rounds (n.a. where transformers failed)."""
    out = []
    for task, (ours, theirs) in times.items():
        pairs = zip(ours[warmup:], theirs[warmup:], strict=True)
        cells = [f"{a:.2f}/{b:.2f}" if isinstance(b, float) else f"{a:.2f}/n.a." for a, b in pairs]
        out.append(f"{task} {', '.join(cells)}")
    return "; ".join(out)


def main() -> int:
    """Runs the rounds, prints and writes the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=4, help="untimed rounds (torch needs 3-4)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of "
                        f"{','.join(TASKS)} (decode is always run)")  # fmt: skip
    opts = parser.parse_args()
    tasks = ["decode"] + [t for t in opts.tasks.split(",") if t in TASKS and t != "decode"]
    cfg = ModelArgs()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, cfg.codebook_size, (cfg.num_quantizers, FRAMES))
    samples = FRAMES * cfg.frame_size
    audio = (0.1 * np.random.default_rng(0).standard_normal(samples)).astype(np.float32)
    peer_venv = setup_torch_peer(VENV, "transformers", TRANSFORMERS_VERSION, "transformers")
    if peer_venv.python is None:
        raise SystemExit(f"transformers' venv is not usable: {peer_venv.error}")
    model = Mimi(cfg)
    mx.random.seed(0)  # random weights (usages 1, so that the codebooks are the sums)
    model.update(tree_unflatten([
        (k, mx.ones(v.shape) if k.endswith("cluster_usage") else 0.05 * mx.random.normal(v.shape))
        for k, v in tree_flatten(model.parameters())
    ]))  # fmt: skip
    mx.eval(model.parameters())
    mx_codes = mx.array(codes, dtype=mx.int32)
    times = {t: ([], []) for t in tasks}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([codes.tolist(), samples], f)
        f.flush()
        cmd = [str(peer_venv.python), "-c", WORKER, f.name, str(THREADS)]
        worker = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=worker_env())  # fmt: skip
        peer = json.loads(worker.stdout.readline())
        for _ in range(opts.warmup + opts.rounds):
            for task in tasks:
                ours, n = _ours(model, task, mx_codes, audio)
                worker.stdin.write(task + "\n")
                worker.stdin.flush()
                reply = json.loads(worker.stdout.readline())
                ok = isinstance(reply["n"], int) and reply["n"] == n
                times[task][0].append(ours)
                times[task][1].append(reply["time"] if ok else reply["n"])
        worker.stdin.close()
        worker.wait()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    med = {}
    for task, (ours, theirs) in times.items():
        theirs = theirs[opts.warmup :]
        ok = all(isinstance(t, float) for t in theirs)
        ours = ours[opts.warmup :]
        med[task] = (statistics.median(ours), statistics.median(theirs) if ok else None,
                     theirs[-1], min(ours), min(theirs) if ok else None)  # fmt: skip
    seconds = samples / cfg.sampling_rate
    stream = med.get("stream")
    stream_note = "" if not stream or stream[1] else f" transformers failed: {stream[2]}"
    decode_ratio = med["decode"][1] / med["decode"][0]
    names = {"decode": "decode 5 s (63 frames)", "encode": "encode 5 s",
             "stream": "streaming decode, frame by frame"}  # fmt: skip
    lines = [
        "# Mimi: mlx_audio_tts against transformers' MimiModel",
        "",
        machine_line(),
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"`make bench` (`tools/bench/bench_mimi.py`)",
        f"- {FRAMES} frames x 32 codebooks = {seconds:.2f} s of audio, kyutai/mimi's config, "
        f"random weights; median of {opts.rounds} rounds alternating with torch {peer['torch']} "
        f"+ transformers {TRANSFORMERS_VERSION} ({THREADS} threads, its own venv "
        f"`.bench/llama-venv`) after {opts.warmup} warm-up rounds.",
        "- Streaming: one frame (80 ms) per call. Ours is exact (equal to the one-shot "
        "decode); transformers' `decode(..., decoder_cache=...)` keeps only the transformer's "
        "keys and values (no convolution state), so its audio is not the one-shot audio; it "
        "is timed as the same amount of work.",
        "- Best of rounds: each side's fastest timed round, the closest to a quiet machine "
        "(other jobs share this one, and torch's threads suffer more from that than ours).",
        "",
        "| task | ours (s) | x real time | transformers (s) | vs transformers | best of rounds "
        "(s) |",
        "|---|---:|---:|---:|---:|---:|",
        *[_row(names[t], med[t], seconds, stream_note if t == "stream" else "") for t in med],
        "",
        "- Timed rounds (s), ours / transformers: "
        + _rounds(times, opts.warmup)
        + f". Load average at the end: {load:.1f} on {os.cpu_count()} cores (other jobs "
        "share this machine; torch's times swing more than ours under load).",
        f"- Target (issue 18): decode no slower than transformers on torch CPU (>= 1.0x) — "
        f"{'met' if decode_ratio >= 1.0 else '**missed**'} ({decode_ratio:.2f}x).",
    ]
    write_report(opts.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
