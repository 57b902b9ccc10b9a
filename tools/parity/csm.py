"""Parity of CSM-1B's language models (backbone + depth decoder through mlx-lm) with
transformers' CsmForConditionalGeneration, same random weights, converted by our converter
from two layouts.

A reduced config that keeps every feature of the official one (GQA in both Llamas, llama3
RoPE scaling passed explicitly to both through ``rope_parameters``, the depth decoder's
embedding tied to the backbone's audio embedding, 2051 codes per codebook, 2048 backbone
positions) is built in transformers with perturbed random weights (fixed seed) and saved
with ``save_pretrained``; the same weights are also written in the original torchtune
layout as ``ckpt.pt`` (the inverse of transformers' ``convert_csm.py``: torchtune names,
q/k rows un-permuted to interleaved RoPE). Ours converts both and must get identical
weights. Compared over a prompt of a text segment, reference audio frames, the EOS frame
and the next text (no Mimi: codes are fed directly):

* the backbone's codebook-0 logits over the whole prompt;
* 16 frames fed from the reference's greedy frames: codebook-0 logits (backbone KV cache)
  and the depth decoder's logits for codebooks 1..K-1 (its fresh cache every frame);
* 16 greedy frames generated independently.

    python tools/parity/csm.py                  # reduced official-like config (32 codebooks)
    python tools/parity/csm.py --fixtures DIR   # a tiny config -> tests/fixtures/csm
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlx_audio_io  # noqa: E402, F401  (before mlx.core: the BLAS preload)

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from csm_prompt import prompt_frames  # noqa: E402
from parity_common import main, rel_error  # noqa: E402

ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}  # fmt: skip
# the official config (notes section 4) with the sizes reduced and every feature kept
CONFIG = {
    "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8,
    "num_key_value_heads": 2, "intermediate_size": 512, "text_vocab_size": 4096,
    "vocab_size": 2051, "num_codebooks": 32, "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5, "rope_parameters": ROPE, "tie_codebooks_embeddings": True,
    "depth_decoder_config": {
        "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 1, "intermediate_size": 256, "backbone_hidden_size": 256,
        "vocab_size": 2051, "num_codebooks": 32, "max_position_embeddings": 33,
        "rms_norm_eps": 1e-5, "rope_parameters": ROPE,
    },
}  # fmt: skip
TINY = {
    **CONFIG, "hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 48, "text_vocab_size": 300,
    "num_codebooks": 4,
    "depth_decoder_config": {
        **CONFIG["depth_decoder_config"], "hidden_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 32,
        "backbone_hidden_size": 24, "num_codebooks": 4,
    },
}  # fmt: skip
FRAMES = 16
# transformers' names -> torchtune's (the inverse of convert_csm.py's mapping)
TO_TORCHTUNE = [
    (r"^backbone_model\.embed_tokens\.embed_audio_tokens\.", "audio_embeddings."),
    (r"^backbone_model\.norm\.weight$", "backbone.norm.scale"),
    (r"^depth_decoder\.model\.norm\.weight$", "decoder.norm.scale"),
    (r"^backbone_model\.", "backbone."),
    (r"^depth_decoder\.model\.inputs_embeds_projector\.", "projection."),
    (r"^depth_decoder\.codebooks_head\.weight$", "audio_head"),
    (r"^depth_decoder\.model\.", "decoder."),
    (r"^embed_text_tokens\.", "text_embeddings."),
    (r"^lm_head\.", "codebook0_head."),
    (r"\.self_attn\.o_proj\.", ".attn.output_proj."),
    (r"\.self_attn\.", ".attn."),
    (r"\.mlp\.gate_proj\.", ".mlp.w1."),
    (r"\.mlp\.down_proj\.", ".mlp.w2."),
    (r"\.mlp\.up_proj\.", ".mlp.w3."),
    (r"\.input_layernorm\.weight$", ".sa_norm.scale"),
    (r"\.post_attention_layernorm\.weight$", ".mlp_norm.scale"),
]


def build_reference(cfg: dict, seed: int, half: bool):
    """transformers' CSM with perturbed random weights (rounded through float16 when
    ``half``, so that a float16 fixture holds them exactly)."""
    from transformers import CsmConfig, CsmForConditionalGeneration

    torch.manual_seed(seed)
    model = CsmForConditionalGeneration(CsmConfig(**cfg)).eval()
    with torch.no_grad():  # norms away from 1, weights away from the init's scale
        for name, p in model.named_parameters():
            if name.startswith("codec_model."):
                continue
            p.add_(torch.randn_like(p) * (0.2 if "norm" in name else 0.05))
            if half:
                p.copy_(p.half().float())
    return model


def unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of ``convert_csm.py``'s ``permute_for_rope(w, n_heads, dim1, dim2)``
    (``view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2)``)."""
    dim1, dim2 = w.shape
    return w.view(n_heads, 2, dim1 // n_heads // 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def torchtune_state(model, cfg: dict) -> dict:
    """The model's weights in the original torchtune layout (``sesame/csm-1b`` ckpt.pt)."""
    out = {}
    for name, value in model.state_dict().items():
        if name.startswith(("codec_model.", "depth_decoder.model.embed_tokens.")) or (
            "audio_tokens_offsets" in name or "rotary_emb" in name
        ):
            continue
        if re.search(r"self_attn\.[qk]_proj\.weight$", name):
            sub = cfg if name.startswith("backbone_model.") else cfg["depth_decoder_config"]
            head_dim = sub["hidden_size"] // sub["num_attention_heads"]
            value = unpermute(value, value.shape[0] // head_dim)
        for pattern, replacement in TO_TORCHTUNE:
            name = re.sub(pattern, replacement, name)
        out[name] = value.clone().contiguous()
    return out


def _embed(model, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """transformers' own embedding of frames: text through ``embed_text_tokens``, audio
    frames through the backbone's ``embed_tokens`` (offsets and the sum over codebooks)."""
    text = model.embed_text_tokens(tokens[:, -1])
    audio = model.backbone_model.embed_tokens(tokens[None, :, :-1])[0]
    return torch.where(mask[:, :1], audio, text)


def reference(model, tokens: np.ndarray, mask: np.ndarray, k: int) -> dict:
    """Prompt logits, then FRAMES greedy frames with each frame's codebook-0 and depth logits
    (the depth decoder run over the frame's whole sequence, no cache)."""
    with torch.no_grad():
        emb = _embed(model, torch.from_numpy(tokens).long(), torch.from_numpy(mask))
        out = model.backbone_model(inputs_embeds=emb[None], use_cache=True)
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        hidden = out.last_hidden_state
        prompt_logits = model.lm_head(hidden)[0].numpy()
        c0_logits, depth_logits, frames = [], [], []
        for _ in range(FRAMES):
            last = hidden[:, -1]
            logits0 = model.lm_head(last)[0]
            codes = [int(logits0.argmax())]
            for _ in range(1, k):
                ids = torch.tensor([[0, *codes]])
                logits = model.depth_decoder(input_ids=ids, backbone_last_hidden_state=last).logits
                codes.append(int(logits[0, -1].argmax()))
            ids = torch.tensor([[0, *codes[:-1]]])
            full = model.depth_decoder(input_ids=ids, backbone_last_hidden_state=last).logits[0]
            c0_logits.append(logits0.numpy())
            depth_logits.append(full.numpy())
            frames.append(codes)
            emb = model.backbone_model.embed_tokens(torch.tensor([[codes]]))
            out = model.backbone_model(inputs_embeds=emb, cache=cache, use_cache=True)
            cache = out.cache if hasattr(out, "cache") else out.past_key_values
            hidden = out.last_hidden_state
    return {"prompt_logits": prompt_logits, "c0_logits": np.stack(c0_logits),
            "depth_logits": np.stack(depth_logits), "frames": np.array(frames)}  # fmt: skip


def _scripted(frames: np.ndarray, record: list):
    """A sampler that records the logits it is given and answers with these frames' codes."""
    codes = iter(frames.reshape(-1).tolist())

    def sample(logits):
        record.append(np.asarray(logits[0]))
        return mx.array([next(codes)], dtype=mx.int32)

    return sample


def ours(model, tokens: np.ndarray, mask: np.ndarray, ref_frames: np.ndarray) -> dict:
    """Our model: prompt logits; the reference's frames fed back through the generation loop
    (mlx-lm's KV caches) recording the logits; an independent greedy generation."""
    from mlx_audio_tts.models.csm import CSM, make_cache

    k = model.args.audio_num_codebooks
    hidden = model.backbone_hidden(mx.array(tokens)[None], mx.array(mask)[None],
                                   make_cache(model.backbone))  # fmt: skip
    prompt_logits = np.asarray(model.codebook0_head(hidden)[0])
    record: list = []
    csm = CSM(model, tokenizer=None)
    fed = list(csm.frames_from_prompt(tokens, mask, FRAMES, _scripted(ref_frames, record)))
    logits = np.stack(record).reshape(FRAMES, k, -1)
    greedy = csm.frames_from_prompt(tokens, mask, FRAMES, lambda x: mx.argmax(x, axis=-1))
    return {"prompt_logits": prompt_logits, "c0_logits": logits[:, 0],
            "depth_logits": logits[:, 1:], "fed": np.array([np.asarray(f) for f in fed]),
            "frames": np.array([np.asarray(f) for f in greedy])}  # fmt: skip


def without_llama3(model, config: dict, tokens, mask) -> np.ndarray:
    """A control: our prompt logits with the RoPE scaling left out of the config."""
    from mlx.utils import tree_flatten
    from mlx_audio_tts.models.csm import Model, ModelArgs, make_cache

    plain = {"rope_type": "default", "rope_theta": 500000.0}
    cfg = {
        **config,
        "rope_parameters": plain,
        "depth_decoder_config": {**config["depth_decoder_config"], "rope_parameters": plain},
    }
    other = Model(ModelArgs.from_dict(cfg))
    other.load_weights(tree_flatten(model.parameters()), strict=True)
    hidden = other.backbone_hidden(mx.array(tokens)[None], mx.array(mask)[None],
                                   make_cache(other.backbone))  # fmt: skip
    return np.asarray(other.codebook0_head(hidden)[0])


def compare(cfg: dict, seed: int, folder: Path, half: bool = False, audio_frames: int = 1200):
    """Builds the reference, writes both layouts, converts both with ours, runs all."""
    from mlx_audio_tts.models.csm import ModelArgs, load_csm_weights

    model = build_reference(cfg, seed, half)
    hf, tt = folder / "transformers", folder / "torchtune"
    model.save_pretrained(hf, safe_serialization=True)
    tt.mkdir(parents=True, exist_ok=True)
    torch.save(torchtune_state(model, cfg), tt / "ckpt.pt")
    args = ModelArgs.from_dict(json.loads((hf / "config.json").read_text()))
    (tt / "config.json").write_text(json.dumps(args.to_dict()))
    ours_hf, _ = load_csm_weights(hf, dtype="float32")
    ours_tt, _ = load_csm_weights(tt / "ckpt.pt", dtype="float32")
    from mlx.utils import tree_flatten

    a, b = dict(tree_flatten(ours_hf.parameters())), dict(tree_flatten(ours_tt.parameters()))
    same = a.keys() == b.keys() and all(mx.array_equal(a[n], b[n]).item() for n in a)
    tokens, mask = prompt_frames(cfg, seed, audio_frames)
    ref = reference(model, tokens, mask, cfg["num_codebooks"])
    got = ours(ours_hf, tokens, mask, ref["frames"])
    got["layouts_identical"] = same
    config = json.loads((hf / "config.json").read_text())
    got["control"] = without_llama3(ours_hf, config, tokens, mask)
    return ref, got, tokens, mask


def rows(ref: dict, got: dict) -> list[tuple[str, str, bool]]:
    """(stage, value, ok) for the table."""
    p = rel_error(got["prompt_logits"], ref["prompt_logits"])
    c0 = rel_error(got["c0_logits"], ref["c0_logits"])
    dd = rel_error(got["depth_logits"], ref["depth_logits"])
    fed_ok = np.array_equal(got["fed"], ref["frames"])
    control = rel_error(got["control"], ref["prompt_logits"])
    n = len(ref["frames"])
    same = sum(np.array_equal(a, b) for a, b in zip(got["frames"], ref["frames"], strict=False))
    return [
        ("torchtune ckpt.pt and transformers save_pretrained convert to identical weights",
         "identical" if got["layouts_identical"] else "DIFFERENT", bool(got["layouts_identical"])),
        (f"backbone codebook-0 logits over the prompt ({len(ref['prompt_logits'])} positions: "
         "text, reference audio, EOS frame, text)", f"{p:.1e}", p <= 1e-4),
        (f"codebook-0 logits of {n} cached backbone steps (reference frames fed)", f"{c0:.1e}",
         c0 <= 1e-4 and fed_ok),
        (f"depth-decoder logits, codebooks 1..{ref['frames'].shape[1] - 1} of {n} frames",
         f"{dd:.1e}", dd <= 1e-4),
        (f"greedy frames, {n} generated independently", f"{same}/{n} identical", same == n),
        ("control: ours without llama3 RoPE scaling, prompt logits (must fail the 1e-4 "
         "tolerance, so that the check above covers the scaling)", f"{control:.1e}",
         control > 1e-4),
    ]  # fmt: skip


def run_official() -> int:
    """The reduced official-like configuration; prints a Markdown table."""
    start = time.time()
    with tempfile.TemporaryDirectory() as d:
        ref, got, _, _ = compare(CONFIG, 0, Path(d))
    table = rows(ref, got)
    print("| stage (CSM, official features at reduced size, random weights) | error / scale | ok |")
    print("|---|---|---|")
    for name, value, ok in table:
        print(f"| {name} | {value} | {'yes' if ok else '**NO**'} |")
    c, d = CONFIG, CONFIG["depth_decoder_config"]
    print(f"\n{time.time() - start:.0f} s. Backbone {c['hidden_size']} wide, "
          f"{c['num_hidden_layers']} layers, {c['num_attention_heads']}/"
          f"{c['num_key_value_heads']} heads; depth decoder {d['hidden_size']} wide, "
          f"{d['num_hidden_layers']} layers, {d['num_attention_heads']}/"
          f"{d['num_key_value_heads']} heads; {c['num_codebooks']} codebooks of "
          f"{c['vocab_size']}; llama3 RoPE scaling in both; converted from save_pretrained "
          "(q/k un-permuted) and from a torchtune-layout ckpt.pt.")  # fmt: skip
    return 0 if all(ok for _, _, ok in table) else 1


def write_fixtures(folder: Path) -> None:
    """A tiny transformers folder (float16 weights without the codec, which hold the
    reference's float32 weights exactly) and the reference's outputs."""
    from safetensors.numpy import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        ref, got, tokens, mask = compare(TINY, 1, Path(d), half=True, audio_frames=1000)
        hf = Path(d) / "transformers"
        weights = {k: v.astype(np.float16) for k, v in load_file(hf / "model.safetensors").items()
                   if not k.startswith("codec_model.")}  # fmt: skip
        save_file(weights, folder / "model.safetensors")
        (folder / "model.safetensors").chmod(0o644)
        state = torch.load(Path(d) / "torchtune" / "ckpt.pt", weights_only=True)
        big = ("text_embeddings", "audio_embeddings", "codebook0_head", "audio_head")
        torch.save({"model": {k: v.half() for k, v in state.items() if not k.startswith(big)}},
                   folder / "torchtune_layers.pt")  # fmt: skip
        cfg = json.loads((hf / "config.json").read_text())
        cfg.pop("codec_config", None)
        (folder / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    np.savez_compressed(
        folder / "reference.npz", tokens=tokens, mask=mask,
        prompt_logits=ref["prompt_logits"][-4:].astype(np.float32),
        c0_logits=ref["c0_logits"][:4].astype(np.float32),
        depth_logits=ref["depth_logits"][:2].astype(np.float32), frames=ref["frames"],
    )  # fmt: skip
    for name, value, ok in rows(ref, got):
        print(f"{name}: {value} ({'ok' if ok else 'FAILED'})")
    (folder / "README.md").write_text(
        "Written by tools/parity/csm.py --fixtures: transformers' CsmForConditionalGeneration "
        "at a tiny config (4 codebooks of 2051, GQA, llama3 RoPE) with random weights "
        "(save_pretrained, stored as float16 without the codec; the reference ran on exactly "
        "these weights in float32): the prompt frames (text, a 1000-frame reference, the EOS "
        "frame, text: 1017 positions, where llama3 RoPE scaling shows), the last 4 prompt "
        "positions' "
        "codebook-0 logits, the first 4 cached steps' codebook-0 logits, the first 2 frames' "
        "depth-decoder logits and 16 greedy frames. torchtune_layers.pt: the same model's "
        "layer weights in the original torchtune layout ({'model': state_dict}, float16, "
        "torch.save), for the restricted unpickler.\n"
    )


if __name__ == "__main__":
    main(__doc__, run_official, write_fixtures)
