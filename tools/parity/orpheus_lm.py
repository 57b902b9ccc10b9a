"""Parity of Orpheus' language model (a Llama-3.2 through mlx-lm) with transformers'
LlamaForCausalLM, same random weights, loaded through our loader.

A reduced config that keeps every feature of the official one (grouped-query attention,
llama3 rope scaling, tied embeddings, rms eps 1e-5, rope theta 5e5, no biases) is built in
transformers with perturbed random weights (fixed seed) and saved as a Hugging Face folder
(config.json + model.safetensors); ours loads that folder with
``mlx_audio_tts.models.orpheus.model``'s mlx-lm path. Compared: the logits over a prompt, 64
decode steps through the KV caches (ours: mlx-lm's cache; transformers: its cache) feeding
the reference's greedy tokens, and the greedy token sequences generated independently.

    python tools/parity/orpheus_lm.py                  # reduced official-like config
    python tools/parity/orpheus_lm.py --fixtures DIR   # a tiny config -> test fixtures
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlx_audio_io  # noqa: E402, F401  (before mlx.core: the BLAS preload)

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from parity_common import main, rel_error  # noqa: E402

# the official config (notes section 3) with the sizes reduced and every feature kept
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32,
    "intermediate_size": 512, "vocab_size": 4096, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True,
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
}  # fmt: skip
TINY = {**CONFIG, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "head_dim": 16, "intermediate_size": 128, "vocab_size": 512}  # fmt: skip
STEPS = 64


def build_reference(cfg: dict, seed: int, folder: Path):
    """transformers' Llama with perturbed random weights, saved as an HF folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    with torch.no_grad():  # norms away from 1, weights away from the init's scale
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.2 if "norm" in name else 0.02))
    model.save_pretrained(folder, safe_serialization=True)
    return model


def reference(model, prompt: list[int]) -> dict:
    """Prompt logits, then STEPS greedy decode steps through transformers' cache."""
    with torch.no_grad():
        out = model(torch.tensor([prompt]), use_cache=True)
        logits, cache = [out.logits[0].numpy()], out.past_key_values
        tokens = [int(out.logits[0, -1].argmax())]
        for _ in range(STEPS):
            out = model(torch.tensor([[tokens[-1]]]), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits.append(out.logits[0].numpy())
            tokens.append(int(out.logits[0, -1].argmax()))
    return {"prompt_logits": logits[0], "step_logits": np.concatenate(logits[1:]),
            "tokens": tokens}  # fmt: skip


def ours(folder: Path, prompt: list[int], ref_tokens: list[int]) -> dict:
    """Our loader (mlx-lm's) on the same folder: the prompt, the reference's tokens fed back
    through mlx-lm's KV cache, and an independent greedy generation."""
    from mlx_audio_tts.models.orpheus.model import _mlx_lm, load_lm
    from mlx_lm.models.cache import make_prompt_cache

    lm = _mlx_lm()
    model = load_lm(folder)
    cache = make_prompt_cache(model)
    logits = [model(mx.array([prompt]), cache=cache)[0]]
    for t in ref_tokens[:STEPS]:
        logits.append(model(mx.array([[t]]), cache=cache)[0])
    mx.eval(logits)
    greedy = [
        int(t)
        for t, _ in lm.generate.generate_step(
            mx.array(prompt), model, max_tokens=STEPS + 1, sampler=lambda x: mx.argmax(x, -1)
        )
    ]
    return {"prompt_logits": np.asarray(logits[0]),
            "step_logits": np.concatenate([np.asarray(x) for x in logits[1:]]),
            "tokens": greedy}  # fmt: skip


def compare(cfg: dict, seed: int, folder: Path) -> tuple[dict, dict, list[int]]:
    rng = np.random.default_rng(seed)
    prompt = [1, *rng.integers(3, cfg["vocab_size"], 24).tolist()]
    ref = reference(build_reference(cfg, seed, folder), prompt)
    return ref, ours(folder, prompt, ref["tokens"]), prompt


def rows(ref: dict, got: dict) -> list[tuple[str, str, bool]]:
    p_err = rel_error(got["prompt_logits"], ref["prompt_logits"])
    s_err = rel_error(got["step_logits"], ref["step_logits"])
    same = sum(a == b for a, b in zip(got["tokens"], ref["tokens"], strict=False))
    n = len(ref["tokens"])
    return [
        (f"logits over the prompt ({ref['prompt_logits'].shape[0]} tokens)", f"{p_err:.1e}",
         p_err <= 1e-4),
        (f"logits of {STEPS} cached decode steps", f"{s_err:.1e}", s_err <= 1e-4),
        (f"greedy tokens, {n} generated independently", f"{same}/{n} identical", same == n),
    ]  # fmt: skip


def run_official() -> int:
    start = time.time()
    with tempfile.TemporaryDirectory() as d:
        ref, got, prompt = compare(CONFIG, 0, Path(d))
    table = rows(ref, got)
    print(
        "| stage (Llama, official features at reduced size, random weights) | error / scale | ok |"
    )
    print("|---|---|---|")
    for name, value, ok in table:
        print(f"| {name} | {value} | {'yes' if ok else '**NO**'} |")
    c = CONFIG
    print(f"\n{time.time() - start:.0f} s. hidden {c['hidden_size']}, {c['num_hidden_layers']} "
          f"layers, {c['num_attention_heads']}/{c['num_key_value_heads']} heads (GQA), llama3 "
          "rope scaling, tied embeddings; transformers loads nothing of ours: its weights are "
          "saved with save_pretrained and ours reads that folder with mlx-lm.")  # fmt: skip
    return 0 if all(ok for _, _, ok in table) else 1


def write_fixtures(folder: Path) -> None:
    """A tiny HF folder (config.json + model.safetensors) and the reference's outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    ref, got, prompt = compare(TINY, 1, folder)
    np.savez_compressed(folder / "reference.npz", prompt=np.array(prompt),
                        prompt_logits=ref["prompt_logits"].astype(np.float32),
                        step_logits=ref["step_logits"].astype(np.float32),
                        tokens=np.array(ref["tokens"]))  # fmt: skip
    for name, value, ok in rows(ref, got):
        print(f"{name}: {value} ({'ok' if ok else 'FAILED'})")
    (folder / "README.md").write_text(
        "Written by tools/parity/orpheus_lm.py --fixtures: transformers' LlamaForCausalLM at a "
        "tiny config with random weights (save_pretrained) and its logits/greedy tokens.\n"
    )
    for extra in folder.glob("generation_config.json"):
        extra.unlink()


if __name__ == "__main__":
    main(__doc__, run_official, write_fixtures)
