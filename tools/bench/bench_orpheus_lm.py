"""Orpheus' language model, decode speed on the CPU: mlx-lm's Llama (ours, float32 and 4-bit)
against transformers' ``LlamaForCausalLM`` (float32, torch CPU), at a Llama-3.2-1B shape.

The config is Llama-3.2-1B's (hidden 2048, 16 layers, 32 heads / 8 KV heads, MLP 8192,
tied embeddings, llama3 RoPE scaling) with Orpheus' vocabulary (156940 tokens); weights are
random (speed does not depend on them). Each run: a 16-token prompt, then greedy decode steps
with the KV cache; rounds alternate between the five runs below (load on the machine hits all
alike); the median step time is reported.

- torch: transformers in its own venv (``.bench/llama-venv``: ``pip install torch==2.13.0
  transformers==5.25.0``, created on first use), in a worker process, 2 threads.
- ours float32: ``mlx_lm.models.llama.Model`` through ``mlx_lm.generate.generate_step``, its
  layers switched by ``mlx_audio_io.quant.use_fast_layers`` (``mlx_audio_io.nn.linear``'s C
  kernel), and for reference with MLX's own matmul (OpenBLAS sgemm).
- ours 4-bit (group 64): that model quantized with ``nn.quantize``, saved as a model folder
  and loaded through Orpheus' loader (``load_lm``), run with MLX's own quantized kernel and
  then after ``use_fast_layers`` (the C kernel of ``mlx_audio_io.nn.quantized_matmul``).

Also measures the machine's copy bandwidth (NumPy copy of 512 MiB) and, as a
microbenchmark, one float32 product of 1, 4 and 8 rows with a [8192, 2048] weight (the MLP's
shape; 12 distinct weights in turn, more than the L3 cache) through ``aio_nn_linear``,
OpenBLAS's ``cblas_sgemv`` (once per row), MLX's matmul and torch's ``F.linear``. Writes
``docs/benchmarks_orpheus.md`` (or ``--out``).

    uv run --all-packages python tools/bench/bench_orpheus_lm.py [--steps 8] [--rounds 3]
        [--out P]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
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
from mlx_audio_io.quant import use_fast_layers

import mlx.nn as nn
import numpy as np
from bench_sts import setup_torch_peer, worker_env
from common import machine_line, use_mlx_layers, write_report
from mlx_audio_tts.models.orpheus.model import load_lm
from mlx_lm.generate import generate_step
from mlx_lm.models import llama

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".bench" / "llama-venv"
DEFAULT_OUT = ROOT / "docs" / "benchmarks_orpheus.md"
TRANSFORMERS_VERSION = "5.25.0"
THREADS = 2
PROMPT = 16
ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}  # fmt: skip
CONFIG = {
    "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16,
    "intermediate_size": 8192, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "rms_norm_eps": 1e-5, "vocab_size": 156940, "rope_theta": 500000.0,
    "rope_scaling": ROPE, "tie_word_embeddings": True, "max_position_embeddings": 131072,
}  # fmt: skip

KERNEL_NOTE = [
    "## The float32 kernel",
    "",
    "`mlx_audio_io.nn.linear(x, weight, bias=None)` has `x @ weight.T + bias` semantics (any "
    "leading axes of x). MLX sends a float32 product with one row through OpenBLAS's full "
    "sgemm, which packs the weights and reads them at under half the memory bandwidth here. "
    "On the CPU, when x, weight and bias are float32 and x has at most 8 rows (all leading "
    "axes together), a C kernel (`aio_nn_linear` in `native/io/aio_nn.c`) streams each "
    "weight row once: 16 floats per step from 4 weight rows side by side (2 with 3-4 rows "
    "of x), each multiply-added in 16-lane FMAs against up to 4 rows of x loaded once per "
    "step (with 5-8 rows a 256 KB tile of weight rows stays in cache for the second pass); "
    "the bias is added in the same pass. The weight rows are split in tiles "
    "between the caller and the same worker pool as the quantized kernel. Other dtypes "
    "(bfloat16 and float16 weights), more rows (a prompt) and other devices call MLX's "
    "matmul. OpenBLAS's `cblas_sgemv` was measured against it (the microbenchmark "
    "above): as fast for one row, but it reads the weights once per row of x.",
    "",
    "Where a float32 decode step went before `mlx_audio_io._prim` (measured on a quiet "
    "machine, 2026-12-05): of 0.204 s per token, 0.175 s were inside `aio_nn_linear` (29.6 "
    "GB/s over 5.18 GB, torch's `F.linear` speed); the other ~29 ms were MLX's remaining "
    "operations (norms, RoPE, attention, the residual adds) and the evaluation that every "
    "kernel called through cffi forces on its input (about 65 per step; each a round trip to "
    "MLX's CPU stream thread, ~0.1 ms here plus ~15 µs per operation), which transformers does "
    "not pay. `mlx_audio_io._prim` (a C++ extension built against the installed MLX) makes "
    "the kernels nodes of MLX's graph: `eval_cpu` hands the C kernel to MLX's CPU stream, so "
    "a step is built lazily and evaluated once, and mlx-lm's `generate_step` overlaps "
    "building the next step with computing this one. The rows 'through cffi' above are the "
    "same kernels without it. On one thread the kernel reaches about half the speed (0.37 s "
    "per token).",
    "",
    "Why 4-bit is not 4x float32 on this machine: a float32 decode step is memory-bound (~28 "
    "GB/s of weights, 7 G weights/s), but the 4-bit kernel is compute-bound: per 16 weights "
    "a mask, an integer-to-float conversion and a multiply-add (AVX-512), measured at about 1 "
    "ms per 16.7 M weights on one core with the weights in cache. That caps it near 2.5x "
    "float32 here, not the 6.4x of the bytes (the issue's estimate assumed float32 at 3.4 "
    "GB/s). More would take products that are not float32-exact (bfloat16 or int8 dot "
    "products, VDPBF16PS / VNNI), which change the results; not done.",
    "",
    "`mlx_audio_io.quant.use_fast_layers(model)` switches every `nn.Linear`, `nn.Embedding` "
    "(whose `as_linear` is a tied LM head), `nn.QuantizedLinear` and `nn.QuantizedEmbedding` "
    "of a model to these kernels in place; parameters and checkpoints are unchanged and the "
    "logits equal MLX's within float rounding (tests/mlx_audio_io/test_fast_linear.py). "
    "Orpheus' `load_lm` calls it.",
    "",
    "## The quantized kernel",
    "",
    "`mlx_audio_io.nn.quantized_matmul(x, w, scales, biases=None, transpose=True, "
    'group_size=64, bits=4, mode="affine")` has `mx.quantized_matmul`\'s semantics. On the CPU, '
    "4- and 8-bit affine weights with `transpose=True` (a Linear: `x @ W.T`) go through a C "
    "kernel (`aio_nn_quantized_matmul` in `native/io/aio_nn.c`): each row's packed words are "
    "read 16 at a time, the i-th element of every word unpacked by one mask (x is permuted and "
    "scaled by 2^-bits·i once per call to match), converted and multiply-added in 16 float "
    "lanes, four weight rows side by side (their multiply-add chains overlap and each step of "
    "x is loaded once for all four; the next four rows are prefetched: 1.3x from memory); per "
    "group the lanes are scaled, and the biases never enter the loop (per row, the sum of "
    "bias times x's group sums). Scales and biases are read in their own dtype (float32, "
    "float16, bfloat16; no cached copies). Every row of x goes past the four rows while they "
    "are in L1, so a prompt reads the weights once too. "
    "Work is split in 32-row chunks between the caller and a pool of workers that spin 2 ms "
    "after each call (a fresh thread on this VM's second core starts 0.1-0.2 ms late, as long "
    "as a small layer's whole product). Other bit widths, modes and devices call MLX.",
    "",
    "`mlx_audio_io.quant.use_fast_quantized(model)` switches only the quantized layers "
    "(tests/mlx_audio_io/test_quantized.py).",
]

WORKER = """
import json, sys, time
import torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
cfg = json.loads(sys.argv[1])
steps, prompt = cfg.pop("steps"), cfg.pop("prompt")
rope = dict(cfg.pop("rope_scaling"), rope_theta=cfg.pop("rope_theta"))
model = LlamaForCausalLM(LlamaConfig(**cfg, rope_parameters=rope)).float().eval()
ids = torch.arange(1, prompt + 1)[None]
print(json.dumps({"torch": torch.__version__}), flush=True)
for line in sys.stdin:  # one prompt + decode per line read
    times = []
    with torch.no_grad():
        t = time.perf_counter()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        prefill = time.perf_counter() - t
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(steps):
            t = time.perf_counter()
            out = model(input_ids=tok, past_key_values=out.past_key_values, use_cache=True)
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            times.append(time.perf_counter() - t)
    print(json.dumps({"times": times, "prefill": prefill}), flush=True)
"""


def copy_bandwidth() -> float:
    """Bytes copied per second (best of 4) by NumPy for a 512 MiB array: each byte is read
    once and written once."""
    a = np.ones(512 * 2**20 // 8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(4):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best


PRODUCT = (8192, 2048, 12)  # weight rows, inputs, distinct weights cycled through
PRODUCT_ROWS = (1, 4, 8)
PRODUCT_REPS = 3

TORCH_PRODUCT = """
import json, sys, time, torch, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
n, k, count, reps = json.loads(sys.argv[2])
ws = [torch.randn(n, k) for _ in range(count)]
res = {}
for m in json.loads(sys.argv[3]):
    x = torch.randn(m, k)
    F.linear(x, ws[0])
    ts = []
    for _ in range(reps):
        for w in ws:
            t = time.perf_counter(); F.linear(x, w); ts.append(time.perf_counter() - t)
    res[m] = sorted(ts)[len(ts) // 2]
print(json.dumps(res))
"""


def _median_seconds(fn, count: int) -> float:
    fn(0)
    times = []
    for _ in range(PRODUCT_REPS):
        for i in range(count):
            t = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _product_runs(m: int, ws: list, wms: list, sgemv) -> dict:
    """Callables (index of the weight) for an [m, K] product by each method."""
    from mlx_audio_io import _lib
    from mlx_audio_io.nn import _threads

    n, k, _ = PRODUCT
    ffi, lib, err = _lib.ffi, _lib.lib, _lib.errbuf()
    x = np.random.default_rng(m).standard_normal((m, k), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    px, po, xm = ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", out), mx.array(x)
    pws = [ffi.from_buffer("float[]", w) for w in ws]
    threads = _threads()

    def ours(i):
        lib.aio_nn_linear(px, m, k, pws[i], n, ffi.NULL, po, threads, err)

    def gemv(i):  # RowMajor, NoTrans: y = W x, one call per row of x
        for r in range(m):
            sgemv(101, 111, n, k, 1.0, ws[i].ctypes.data, k, x[r].ctypes.data, 1, 0.0,
                  out[r].ctypes.data, 1)  # fmt: skip

    runs = {"aio_nn_linear": ours, "MLX matmul": lambda i: mx.eval(xm @ wms[i].T)}
    if sgemv is not None:
        runs["cblas_sgemv"] = gemv
    return runs


def product_bench() -> dict:
    """Median seconds of one [m, K] x [N, K]^T float32 product per method and m."""
    from mlx_audio_io import _blas

    n, k, count = PRODUCT
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((n, k), dtype=np.float32) for _ in range(count)]
    wms = [mx.array(w) for w in ws]
    mx.eval(wms)
    sgemv = getattr(_blas.loaded, "cblas_sgemv", None)
    if sgemv is not None:
        sgemv.argtypes = [ctypes.c_int] * 4 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                          ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_void_p,
                          ctypes.c_int]  # fmt: skip
    res = {}
    for m in PRODUCT_ROWS:
        for name, fn in _product_runs(m, ws, wms, sgemv).items():
            res.setdefault(name, {})[m] = _median_seconds(fn, count)
    del ws, wms
    peer = setup_torch_peer(VENV, "transformers", TRANSFORMERS_VERSION, "transformers")
    if peer.python is not None:
        cmd = [str(peer.python), "-I", "-c", TORCH_PRODUCT, str(THREADS),
               json.dumps([n, k, count, PRODUCT_REPS]), json.dumps(PRODUCT_ROWS)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, env=worker_env())
        if done.returncode == 0:
            res["torch F.linear"] = {int(m): t for m, t in json.loads(done.stdout).items()}
    return res


def product_lines(res: dict, load: tuple[float, float]) -> list[str]:
    n, k, count = PRODUCT
    nbytes = n * k * 4
    head = " | ".join(f"{m} row{'s' if m > 1 else ''}" for m in PRODUCT_ROWS)
    lines = [
        "## Microbenchmark: one float32 product",
        "",
        f"x [m, {k}] @ W.T, W [{n}, {k}] float32 ({nbytes / 2**20:.0f} MiB; {count} distinct "
        f"weights in turn, {count * nbytes / 2**20:.0f} MiB, more than the L3 cache), median of "
        f"{PRODUCT_REPS * count} products, in ms and GB/s of weights read. Load average (1 "
        f"min) before and after: {load[0]:.1f}, {load[1]:.1f}.",
        "",
        f"| method | {head} |",
        "|---|" + "---:|" * len(PRODUCT_ROWS),
    ]
    for name, times in res.items():
        cells = " | ".join(f"{times[m] * 1e3:.2f} ms, {nbytes / times[m] / 1e9:.1f} GB/s"
                           for m in PRODUCT_ROWS)  # fmt: skip
        lines.append(f"| {name} | {cells} |")
    return lines


def weight_bytes(model: nn.Module) -> int:
    """Bytes of parameters a decode step reads: all of them (the tied embedding once, as the
    LM head; its lookup reads one row)."""
    return sum(v.nbytes for _, v in nn.utils.tree_flatten(model.parameters()))


def decode(model, steps: int) -> dict:
    """Greedy decode after a PROMPT-token prompt: prefill seconds and each step's seconds."""
    prompt = mx.arange(1, PROMPT + 1)
    times, t = [], time.perf_counter()
    for i, _ in enumerate(generate_step(prompt, model, max_tokens=steps + 1)):
        now = time.perf_counter()
        times.append(now - t)
        t = now
        if i == steps:
            break
    return {"prefill": times[0], "times": times[1:]}


def torch_worker(steps: int) -> tuple[subprocess.Popen, str]:
    """transformers' Llama in its venv, answering one decode run per line; and its torch."""
    peer = setup_torch_peer(VENV, "transformers", TRANSFORMERS_VERSION, "transformers")
    if peer.python is None:
        raise SystemExit(f"transformers' venv is not usable: {peer.error}")
    spec = {k: v for k, v in CONFIG.items() if k not in ("model_type", "head_dim")}
    spec.update(steps=steps, prompt=PROMPT)
    cmd = [str(peer.python), "-I", "-c", WORKER, json.dumps(spec), str(THREADS)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=worker_env())  # fmt: skip
    hello = proc.stdout.readline()
    if not hello:
        raise SystemExit("the torch worker failed to start (run its command to see why)")
    return proc, json.loads(hello)["torch"]


def torch_decode(proc: subprocess.Popen) -> dict:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def quantized_model() -> nn.Module:
    """A 4-bit (group 64) Llama of CONFIG, saved as a model folder and loaded through
    Orpheus' ``load_lm`` (mlx-lm's ``load_model``)."""
    mx.random.seed(1)
    model = llama.Model(llama.ModelArgs.from_dict(CONFIG))
    nn.quantize(model, group_size=64, bits=4)
    mx.eval(model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = {**CONFIG, "quantization": {"group_size": 64, "bits": 4}}
        (folder / "config.json").write_text(json.dumps(config))
        model.save_weights(str(folder / "model.safetensors"))
        del model
        gc.collect()
        model = load_lm(folder)
        mx.eval(model.parameters())
    return model


def through_cffi(model, steps: int) -> dict:
    """``decode`` with ``mlx_audio_io._prim`` set aside: the same kernels called through cffi,
    each forcing an evaluation of its input (what ``_prim`` saves)."""
    from mlx_audio_io import _lib

    saved = _lib._prim_state[:] if _lib._prim_state else None
    _lib._prim_state[:] = [None, "set aside by the benchmark"]
    try:
        return decode(model, steps)
    finally:
        _lib._prim_state[:] = saved or []


def run_all(steps: int, rounds: int) -> tuple[dict, str, int]:
    """Rounds of one decode run each of torch, ours float32 with our kernel and with MLX's
    matmul, ours 4-bit with MLX's kernel and with ours, alternating so that load on the machine
    hits all; their results merged."""
    q4 = quantized_model()
    mx.random.seed(0)
    fp32 = llama.Model(llama.ModelArgs.from_dict(CONFIG))
    mx.eval(fp32.parameters())
    proc, torch_version = torch_worker(steps)
    names = ["torch", "float32", "float32, cffi", "float32, MLX's matmul",
             "4-bit, MLX's kernel", "4-bit, ours", "4-bit, cffi"]  # fmt: skip
    results = {name: {"prefill": [], "times": []} for name in names}
    switched = 0
    try:
        for _ in range(rounds):
            results_now = {"torch": torch_decode(proc)}
            use_fast_layers(fp32)
            results_now["float32"] = decode(fp32, steps)
            results_now["float32, cffi"] = through_cffi(fp32, steps)
            use_mlx_layers(fp32)
            results_now["float32, MLX's matmul"] = decode(fp32, steps)
            use_mlx_layers(q4)
            results_now["4-bit, MLX's kernel"] = decode(q4, steps)
            switched = use_fast_layers(q4)
            results_now["4-bit, ours"] = decode(q4, steps)
            results_now["4-bit, cffi"] = through_cffi(q4, steps)
            for name, r in results_now.items():
                results[name]["prefill"].append(r["prefill"])
                results[name]["times"] += r["times"]
            print({n: round(statistics.median(r["times"]), 3) for n, r in results_now.items()})
    finally:
        proc.stdin.close()
        proc.wait()
    for name in names:
        results[name]["prefill"] = statistics.median(results[name]["prefill"])
        results[name]["bytes"] = weight_bytes(q4 if name.startswith("4-bit") else fp32)
    return results, torch_version, switched


def row(name: str, r: dict, base: float, peer: float) -> str:
    step = statistics.median(r["times"])
    gbs = f"{r['bytes'] / step / 1e9:.2f}" if "bytes" in r else "—"
    return (f"| {name} | {step:.3f} | {1 / step:.2f} | {gbs} | {r['prefill']:.2f} | "
            f"{base / step:.2f}x | {peer / step:.2f}x |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="decode steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    opts = parser.parse_args()
    load_before = os.getloadavg()[0]
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth {bandwidth / 1e9:.2f} GB/s", flush=True)
    micro = product_bench()
    micro_lines = product_lines(micro, (load_before, os.getloadavg()[0]))
    print("\n".join(micro_lines), flush=True)
    load_before = os.getloadavg()[0]
    res, torch_version, switched = run_all(opts.steps, opts.rounds)
    torch_res, fp32 = res["torch"], res["float32"]
    base = statistics.median(fp32["times"])
    peer = statistics.median(torch_res["times"])
    fast = statistics.median(res["4-bit, ours"]["times"])
    lines = [
        "# Orpheus LM decode on the CPU: mlx-lm float32 and 4-bit against transformers",
        "",
        machine_line(),
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        "`make bench` (`tools/bench/bench_orpheus_lm.py`)",
        "- Model: Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads / 8 KV heads, MLP "
        "8192, llama3 RoPE scaling, tied embeddings) with Orpheus' 156940-token vocabulary, "
        f"random weights; a {PROMPT}-token prompt, then {opts.steps} greedy decode steps with "
        f"the KV cache, {opts.rounds} rounds alternating between the seven; the median step "
        "and the median prefill are reported.",
        f"- torch {torch_version} + transformers {TRANSFORMERS_VERSION} "
        f"(`LlamaForCausalLM`, float32, {THREADS} threads, its own venv `.bench/llama-venv`); "
        "ours: `mlx_lm.models.llama` through `mlx_lm.generate.generate_step`, its layers "
        "switched by `mlx_audio_io.quant.use_fast_layers` (float32: `mlx_audio_io.nn.linear`; "
        "MLX's matmul for reference); 4-bit = `nn.quantize(group_size=64, bits=4)` (embedding "
        "/ LM head included), saved and loaded through Orpheus' `load_lm`, with MLX's "
        f"quantized kernel and after `use_fast_layers` ({switched} layers) with ours.",
        f"- Copy bandwidth (NumPy, 512 MiB): {bandwidth / 1e9:.2f} GB/s copied "
        f"({2 * bandwidth / 1e9:.1f} GB/s of reads plus writes). Load average (1 min) before "
        f"and after: {load_before:.1f}, {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(above 1: other processes shared the machine, and every row ran slower).",
        "",
        "| implementation | s/token | tokens/s | GB/s of weights | prefill (s) | vs ours float32 "
        "| vs torch |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("transformers float32 (torch CPU)", torch_res, base, peer),
        row("ours float32 (`mlx_audio_io.nn.linear`)", fp32, base, peer),
        row(
            "ours float32, the same kernel through cffi (no `_prim`)",
            res["float32, cffi"],
            base,
            peer,
        ),
        row("ours float32, MLX's matmul (sgemm)", res["float32, MLX's matmul"], base, peer),
        row("ours 4-bit, MLX's quantized kernel", res["4-bit, MLX's kernel"], base, peer),
        row("ours 4-bit, `mlx_audio_io` kernel", res["4-bit, ours"], base, peer),
        row(
            "ours 4-bit, the same kernel through cffi (no `_prim`)", res["4-bit, cffi"], base, peer
        ),
        "",
        f"- Weights read per token: float32 {fp32['bytes'] / 1e9:.2f} GB, 4-bit "
        f"{res['4-bit, ours']['bytes'] / 1e9:.2f} GB (packed words plus float32 scales and "
        "biases, as quantizing a float32 model gives; a bfloat16 checkpoint's are half that).",
        f"- Targets (decode tokens/s): ours float32 >= 1.0x transformers float32 — "
        f"{peer / base:.2f}x, {'met' if peer / base >= 1 else '**missed**'}; ours 4-bit >= 4x "
        f"ours float32 — {base / fast:.1f}x, {'met' if base / fast >= 4 else '**missed**'}.",
        "",
        *micro_lines,
        "",
        *KERNEL_NOTE,
    ]
    write_report(opts.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
