"""Orpheus streaming: what clean streaming costs against one-shot decoding, and the time to
first audio, through the public API.

1. SNAC at the official config (random weights), 10 s of codes (118 frames): one-shot
   ``decode`` against ``decode_stream`` with ``PositionalNoise`` in chunks of 7, 21 and 35
   tokens (1, 3, 5 frames), each chunk decoded with the 3 frames of context and lookahead
   that make it exact; the streamed audio is checked against the one-shot audio.
2. A Llama-3.2-1B-shaped Orpheus (hidden 2048, 16 layers, 32/8 heads, intermediate 8192,
   Orpheus' 156940-token vocabulary, tied embeddings, llama3 rope), random weights, 4-bit
   (group 64) as the published checkpoint, saved and loaded through ``load_model``; the
   sampler is constrained to audio tokens in slot order (``FRAMES`` frames, then the end of
   speech) so that random weights speak, the model's work unchanged.
   ``generate_audio_with_callback`` with ``ultra_low_latency`` on and off (time to first
   chunk, real-time factor), and ``generate`` (one-shot decode) on the same tokens.

Writes ``docs/benchmarks_orpheus_stream.md`` (or ``--out``).

    uv run --all-packages python tools/bench/bench_orpheus_stream.py [--frames 12] [--out P]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
import mlx.nn as nn
import numpy as np
from common import machine_line, version, write_report
from mlx.utils import tree_flatten
from mlx_audio_tts.codecs import snac
from mlx_audio_tts.generate import generate_audio_with_callback
from mlx_audio_tts.models.orpheus import model as orpheus
from mlx_audio_tts.models.orpheus import protocol as p

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "benchmarks_orpheus_stream.md"
SNAC_FRAMES = 118  # 118 x 2048 samples = 10.07 s
LLAMA_1B = {
    "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16,
    "intermediate_size": 8192, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 64, "rms_norm_eps": 1e-5, "vocab_size": 156940, "rope_theta": 500000.0,
    "tie_word_embeddings": True, "max_position_embeddings": 131072,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "quantization": {"group_size": 64, "bits": 4},
}  # fmt: skip
TEXT = "Hello there, this is a streaming test."


def _median_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def snac_costs(rounds: int) -> tuple[list[str], float]:
    """Rows for the decode cost table, and the worst streamed-vs-one-shot difference."""
    cfg = snac.ModelArgs()
    codec = snac.SNAC(cfg)
    mx.eval(codec.parameters())
    rng = np.random.default_rng(0)
    per = codec.codes_per_frame()
    codes = [mx.array(rng.integers(0, cfg.codebook_size, SNAC_FRAMES * k), dtype=mx.int32)
             for k in per]  # fmt: skip
    noise = snac.PositionalNoise(1)
    whole = np.asarray(codec.decode(codes, noise=noise))
    one_shot = _median_time(lambda: codec.decode(codes, noise=noise), rounds)
    seconds = whole.shape[0] / cfg.sampling_rate
    rows = [f"| one-shot `decode` | {one_shot:.2f} | {seconds / one_shot:.1f} | 1.00x | — |"]
    worst = 0.0
    for tokens in (7, 21, 35):
        n = tokens // 7
        chunks = [[c[i * n * k : (i + 1) * n * k] for c, k in zip(codes, per, strict=True)]
                  for i in range(-(-SNAC_FRAMES // n))]  # fmt: skip

        def run(chunks=chunks):
            return np.concatenate([np.asarray(a) for a in codec.decode_stream(chunks, noise=noise)])

        streamed = run()
        diff = float(np.abs(streamed - whole).max() / np.abs(whole).max())
        worst = max(worst, diff)
        t = _median_time(run, rounds)
        rows.append(f"| streamed, {tokens} tokens ({n} frame{'s' * (n > 1)}) per chunk | {t:.2f} "
                    f"| {seconds / t:.1f} | {t / one_shot:.2f}x | {diff:.1e} |")  # fmt: skip
    return rows, worst


def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 :,.!?'"))
    vocab = {c: i + 10 for i, c in enumerate(chars)}
    vocab.update({"<unk>": 0, "<|begin_of_text|>": 128000, "<|eot_id|>": 128009})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 128000)]
    )
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>", "unk_token": "<unk>",
    }))  # fmt: skip


def build_checkpoint(folder: Path) -> None:
    """The 1B-shaped Orpheus, 4-bit, random weights, with an official-config SNAC."""
    from mlx_lm.models import llama

    mx.random.seed(0)
    cfg = dict(LLAMA_1B)
    q = cfg.pop("quantization")
    lm = llama.Model(llama.ModelArgs.from_dict(cfg))
    nn.quantize(lm, q["group_size"], q["bits"])
    mx.eval(lm.parameters())
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(lm.parameters())))
    del lm
    (folder / "config.json").write_text(json.dumps(LLAMA_1B))
    _tokenizer(folder)
    snac.save_model(snac.SNAC(snac.ModelArgs()), folder / "snac")


def speaking(model, frames: int):
    """``model`` whose sampling is held to audio tokens in slot order for ``frames`` frames,
    then the end of speech (the repetition penalty still runs, as by default)."""
    from mlx_lm.sample_utils import make_logits_processors

    real = orpheus.OrpheusModel.generate_tokens.__get__(model)
    vocab = LLAMA_1B["vocab_size"]
    ids = mx.arange(vocab)

    def generate_tokens(text, voice="tara", **kw):
        start = len(model.prompt(text, voice))

        def force(tokens, logits):
            n = tokens.size - start
            if n >= frames * 7:
                allowed = ids == p.END_OF_SPEECH
            else:
                lo = p.AUDIO_BASE + (n % 7) * p.CODEBOOK_SIZE
                allowed = (ids >= lo) & (ids < lo + p.CODEBOOK_SIZE)
            return mx.where(allowed, logits, -mx.inf)

        context = start + kw.get("max_tokens", 1200)
        procs = make_logits_processors(repetition_penalty=1.3, repetition_context_size=context)
        return real(text, voice, **{**kw, "logits_processors": [*procs, force]})

    model.generate_tokens = generate_tokens
    return model


def latency(frames: int) -> tuple[list[str], dict]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        build_checkpoint(folder)
        built = time.perf_counter() - t
        t = time.perf_counter()
        model = orpheus.load_model(folder)
        loaded = time.perf_counter() - t
        speaking(model, frames)
        rows, facts = [], {"build_s": built, "load_s": loaded}
        model.generate(TEXT, seed=0, max_tokens=21)  # warm-up: kernels, caches
        for ull in (True, False):
            s = generate_audio_with_callback(
                TEXT, lambda c, m: None, model=model, seed=0, ultra_low_latency=ull,
                streaming_chunk_tokens=21,
            )  # fmt: skip
            rows.append(
                f"| `generate_audio_with_callback`, ultra_low_latency={ull} | "
                f"{s['first_chunk_s']:.2f} | {s['elapsed_s']:.2f} | {s['audio_s']:.2f} | "
                f"{s['real_time_factor']:.3f} |"
            )
        t = time.perf_counter()
        audio = model.generate(TEXT, seed=0)
        took = time.perf_counter() - t
        seconds = audio.shape[0] / model.sample_rate
        rows.append(f"| `OrpheusModel.generate` (one-shot decode) | {took:.2f} | {took:.2f} | "
                    f"{seconds:.2f} | {seconds / took:.3f} |")  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
    return rows, facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of the SNAC part")
    parser.add_argument("--frames", type=int, default=12, help="SNAC frames the LM speaks")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    opts = parser.parse_args()
    snac_rows, worst = snac_costs(opts.rounds)
    lm_rows, facts = latency(opts.frames)
    tokens = opts.frames * 7
    lines = [
        "# Orpheus streaming: the cost of clean chunks, and the time to first audio",
        "",
        machine_line(),
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"`make bench` (`tools/bench/bench_orpheus_stream.py`); mlx {version('mlx')}, "
        f"mlx-lm {version('mlx-lm')}",
        "",
        "## SNAC decode: streamed (exact) against one-shot",
        "",
        f"{SNAC_FRAMES} code frames ({SNAC_FRAMES * 2048 / 24000:.2f} s of audio), official "
        f"config, random weights, `PositionalNoise`; median of {opts.rounds} rounds. Each chunk "
        "is decoded with 3 frames of context and 3 of lookahead, so the work is about "
        "(3 + n + 3) / n times the one-shot decode's for n frames per chunk.",
        "",
        "| decode | seconds | x real time | vs one-shot | max diff / scale |",
        "|---|---:|---:|---:|---:|",
        *snac_rows,
        "",
        f"Streamed audio equals the one-shot decode to {worst:.1e} of scale (requirement 1e-4).",
        "",
        "## Time to first audio at a Llama-3.2-1B shape, 4-bit",
        "",
        f"Hidden 2048, 16 layers, 32/8 heads, vocabulary 156940, 4-bit group 64, random weights, "
        f"loaded with `load_model` ({facts['load_s']:.1f} s); the sampler is held to audio "
        f"tokens so that it speaks {opts.frames} frames ({tokens} tokens, "
        f"{opts.frames * 2048 / 24000:.2f} s) and stops. Prompt: {len(TEXT)} characters. "
        "`streaming_chunk_tokens=21`. One run each after a warm-up.",
        "",
        "| call | first audio (s) | total (s) | audio (s) | x real time |",
        "|---|---:|---:|---:|---:|",
        *lm_rows,
        "",
        "With `ultra_low_latency` the first chunk needs 28 tokens (4 frames: the first frame and "
        "the decoder's 3-frame lookahead); without it, 42 (3 frames + 3). On this 2-core CPU "
        "the LM, not the decoder, sets both the time to first audio and the real-time factor "
        "(see benchmarks_orpheus.md for tokens/s).",
    ]
    write_report(opts.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
