"""Parity of mlx_audio_tts' Mimi codec with transformers' ``MimiModel`` (PyTorch).

Builds ``MimiModel(MimiConfig())`` (kyutai/mimi's configuration) with seeded random weights,
every one perturbed so that nothing is trivially zero or an identity (LayerScales around 0.3,
norm weights and biases off 1 and 0, codebooks drawn at the scale of what they code, cluster
usages spread over 0.5-2), saves it with ``save_pretrained`` (config.json + model.safetensors,
kyutai/mimi's names), loads that folder with our loader, and compares on 12 s of filtered noise
and tones (past the 250-frame attention window): the encoder's latent, the codes of all 32
codebooks (must be identical), the decoded audio, and our streaming decode (frame by frame, and
in chunks of 3 and 5 frames) against our one-shot decode. The same weights written under
moshi's names (``tokenizer-e351c8d8-checkpoint125.safetensors``'s: fused ``in_proj_weight``,
interleaved RoPE) must load through our converter to the same model.

    python tools/parity/mimi.py                 # official config, markdown table
    python tools/parity/mimi.py --fixtures DIR  # reduced config -> test fixtures

Runs in the torch venv of ``make parity``; exits 1 when a stage is off by more than 1e-4 of
its output's scale (1e-5 for streaming) or a code differs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
import numpy as np
import torch
from mlx.utils import tree_flatten
from mlx_audio_tts.codecs.mimi import StreamingDecoder, load_model
from parity_common import main, rel_error
from safetensors.torch import load_file, save_file
from transformers import MimiConfig, MimiModel

TOL, STREAM_TOL = 1e-4, 1e-5
REDUCED = {
    "hidden_size": 32, "num_filters": 4, "upsampling_ratios": [4, 3, 2], "num_hidden_layers": 2,
    "intermediate_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
    "codebook_size": 32, "codebook_dim": 16, "vector_quantization_hidden_dimension": 16,
    "num_quantizers": 5, "num_semantic_quantizers": 1, "upsample_groups": 32,
    "sliding_window": 12,
}  # fmt: skip
OFFICIAL_SECONDS, REDUCED_FRAMES = 12.0, 40

# transformers' convert_mimi_checkpoint_to_pytorch.py (moshi -> transformers), verbatim
CONVERT_LIST = [
    ("conv.conv.conv", "conv"), ("convtr.convtr.convtr", "conv"), ("conv.conv", "conv"),
    ("convtr.convtr", "conv"),
    ("quantizer.rvq_first.vq", "quantizer.semantic_residual_vector_quantizer"),
    ("quantizer.rvq_first", "quantizer.semantic_residual_vector_quantizer"),
    ("quantizer.rvq_rest.vq", "quantizer.acoustic_residual_vector_quantizer"),
    ("quantizer.rvq_rest", "quantizer.acoustic_residual_vector_quantizer"),
    ("_codebook", "codebook"), ("_initialized", "initialized"), ("embedding_sum", "embed_sum"),
    ("encoder.model", "encoder.layers"), ("decoder.model", "decoder.layers"),
    ("encoder_transformer.transformer", "encoder_transformer"),
    ("decoder_transformer.transformer", "decoder_transformer"),
    ("linear1", "mlp.fc1"), ("linear2", "mlp.fc2"), ("self_attn.out_proj", "self_attn.o_proj"),
    ("norm1", "input_layernorm"), ("norm2", "post_attention_layernorm"),
    ("layer_scale_1", "self_attn_layer_scale"), ("layer_scale_2", "mlp_layer_scale"),
]  # fmt: skip


def official_convert(state: dict, config: MimiConfig) -> dict:
    """transformers' ``_convert_model`` renaming and q/k permutation (moshi -> HF)."""
    hidden, head_dim = config.hidden_size, config.head_dim
    heads, kv_dim = hidden // head_dim, config.num_key_value_heads * head_dim

    def permute(w, n_heads, dim1=hidden, dim2=hidden):
        return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)

    out = {}
    for k, v in state.items():
        new_k = k
        for old, new in CONVERT_LIST:
            if old in new_k:
                new_k = new_k.replace(old, new)
        if "in_proj_weight" in new_k:
            q, kk, vv = v[:hidden], v[hidden : hidden + kv_dim], v[hidden + kv_dim :]
            out[new_k.replace("in_proj_weight", "q_proj.weight")] = permute(q, heads)
            out[new_k.replace("in_proj_weight", "k_proj.weight")] = permute(
                kk, config.num_key_value_heads, dim1=kv_dim
            )
            out[new_k.replace("in_proj_weight", "v_proj.weight")] = vv
        else:
            out[new_k] = v
    return out


def to_moshi(state: dict, config: MimiConfig) -> dict:
    """transformers' names -> moshi's (the inverse of :func:`official_convert`)."""
    hidden, head_dim = config.hidden_size, config.head_dim

    def unpermute(w, n_heads):
        rows, cols = w.shape
        return w.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)

    out = {}
    for k, v in state.items():
        m = k
        for pre, rep in (("encoder_transformer.", "encoder_transformer.transformer."),
                         ("decoder_transformer.", "decoder_transformer.transformer."),
                         ("encoder.layers.", "encoder.model."),
                         ("decoder.layers.", "decoder.model.")):  # fmt: skip
            if m.startswith(pre):
                m = rep + m[len(pre) :]
        for old, new in (("mlp.fc1", "linear1"), ("mlp.fc2", "linear2"),
                         ("self_attn.o_proj", "self_attn.out_proj"), ("input_layernorm", "norm1"),
                         ("post_attention_layernorm", "norm2"),
                         ("self_attn_layer_scale", "layer_scale_1"),
                         ("mlp_layer_scale", "layer_scale_2"), (".codebook.", "._codebook."),
                         ("embed_sum", "embedding_sum"),
                         ("codebook.initialized", "codebook._initialized"),
                         ("semantic_residual_vector_quantizer.layers", "rvq_first.vq.layers"),
                         ("acoustic_residual_vector_quantizer.layers", "rvq_rest.vq.layers"),
                         ("semantic_residual_vector_quantizer", "rvq_first"),
                         ("acoustic_residual_vector_quantizer", "rvq_rest")):  # fmt: skip
            m = m.replace(old, new)
        if m.startswith(("downsample.conv.", "upsample.conv.")):
            kind = "conv" if m.startswith("down") else "convtr"
            m = m.replace(".conv.", f".{kind}.{kind}.{kind}.", 1)
        elif ".conv." in m:  # SEANet: StreamingConv1d -> NormConv1d -> Conv1d
            transposed = m.startswith("decoder.model.") and state[k].ndim == 3 and _is_convtr(k)
            kind = "convtr" if transposed else "conv"
            m = m.replace(".conv.", f".{kind}.{kind}.", 1)
        if m.endswith("self_attn.q_proj.weight"):
            base = m[: -len("q_proj.weight")]
            kk = k[: -len("q_proj.weight")]
            q = unpermute(state[kk + "q_proj.weight"], hidden // head_dim)
            kw = unpermute(state[kk + "k_proj.weight"], config.num_key_value_heads)
            out[base + "in_proj_weight"] = torch.cat([q, kw, state[kk + "v_proj.weight"]])
            continue
        if m.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight")):
            continue
        out[m] = v
    return out


_CONVTR: set[str] = set()


def _is_convtr(name: str) -> bool:
    return name in _CONVTR


def _audio(samples: int, seed: int) -> np.ndarray:
    """Low-passed noise plus two gliding tones and a few clicks: speech-like spread."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 24000
    noise = np.convolve(rng.standard_normal(samples), np.hanning(24) / 12, mode="same")
    tone = 0.3 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t)
    tone += 0.15 * np.sin(2 * np.pi * 1250 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    x = 0.5 * noise + tone
    x[rng.integers(0, samples, 20)] += 0.8
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def build_reference(cfg: dict, seed: int, audio: np.ndarray, folder: Path):
    """transformers' Mimi, perturbed, saved to ``folder`` (and ``folder/moshi``)."""
    torch.manual_seed(seed)
    config = MimiConfig(**cfg)
    model = MimiModel(config).eval()
    _CONVTR.clear()
    _CONVTR.update(n + ".conv.weight" for n, mod in model.decoder.decoder_seanet.named_modules(
        prefix="decoder") if type(mod).__name__ == "MimiConvTranspose1d")  # fmt: skip
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_scale.scale"):
                p.copy_(0.2 + 0.2 * torch.rand_like(p))
            elif "layernorm.weight" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.add_(0.1 * p.std() * torch.randn_like(p))
        latent = model.encoder(torch.from_numpy(audio)[None, None]).latents
        for rvq in (model.quantizer.semantic_residual_vector_quantizer,
                    model.quantizer.acoustic_residual_vector_quantizer):  # fmt: skip
            residual = rvq.input_proj(latent) if rvq.input_proj is not None else latent
            for layer in rvq.layers:  # each level drawn at the scale of what it codes, as
                book = layer.codebook  # trained ones are (else rounding decides near ties)
                usage = 0.5 + 1.5 * torch.rand_like(book.cluster_usage)
                book.cluster_usage.copy_(usage)
                scale = float(residual.std())
                book.embed_sum.copy_(torch.randn_like(book.embed_sum) * scale * usage[:, None])
                book._embed = None
                residual = residual - layer.decode(layer.encode(residual))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    state = load_file(folder / "model.safetensors")  # kyutai/mimi's flat names
    moshi = to_moshi(state, config)
    back = official_convert({k: v.clone() for k, v in moshi.items()}, config)
    if back.keys() != state.keys() or any(not torch.equal(back[k], state[k]) for k in state):
        raise SystemExit("the moshi names written do not convert back with transformers' map")
    (folder / "moshi").mkdir(exist_ok=True)
    save_file(moshi, folder / "moshi" / "tokenizer-e351c8d8-checkpoint125.safetensors")
    if cfg:
        (folder / "moshi" / "config.json").write_text((folder / "config.json").read_text())
    return model


def reference(model, audio: np.ndarray) -> dict:
    """transformers' latent, codes and decoded audio."""
    with torch.no_grad():
        x = torch.from_numpy(audio)[None, None]
        latent = model.encoder(x).latents
        codes = model.encode(x).audio_codes
        decoded = model.decode(codes).audio_values
    return {
        "latent": latent[0].T.numpy(),
        "codes": codes[0].numpy(),
        "audio": decoded[0, 0].numpy(),
    }


def ours(model, audio: np.ndarray, ref: dict) -> dict:
    """Our latent, codes, decode of the reference's codes, and streamed decodes."""
    x = mx.array(audio)[None, :, None]
    t0 = time.time()
    latent = model.encoder_latents(x)[0]
    codes = model.encode(audio)
    ref_codes = mx.array(ref["codes"])
    decoded = model.decode(ref_codes)
    seconds = time.time() - t0
    streams = {}
    for step in (1, 3, 5):
        stream = StreamingDecoder(model)
        n = ref_codes.shape[1]
        parts = [stream.push(ref_codes[:, i : i + step]) for i in range(0, n, step)]
        streams[step] = np.array(mx.concatenate(parts)[:, 0])
    return {"latent": np.array(latent), "codes": np.array(codes), "audio": np.array(decoded[:, 0]),
            "streams": streams, "seconds": seconds}  # fmt: skip


def _params(m) -> dict:
    return {k: np.array(v) for k, v in tree_flatten(m.parameters())}


def compare(cfg: dict, seed: int, folder: Path, samples: int):
    """Builds the reference in ``folder``, loads it both ways, runs both on the same audio."""
    audio = _audio(samples, seed)
    ref_model = build_reference(cfg, seed, audio, folder)
    t0 = time.time()
    ref = reference(ref_model, audio)
    t_ref = time.time() - t0
    model = load_model(folder)
    got = ours(model, audio, ref)
    moshi = load_model(folder / "moshi" / "tokenizer-e351c8d8-checkpoint125.safetensors")
    pa, pb = _params(model), _params(moshi)
    same = pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)
    got["moshi_same"] = same
    got["moshi_audio"] = np.array(moshi.decode(mx.array(ref["codes"]))[:, 0])
    return audio, ref, got, (t_ref, got["seconds"]), model


def rows(ref: dict, got: dict) -> list[tuple[str, str, bool]]:
    """(stage, result, ok) per compared stage."""
    err = rel_error(got["latent"], ref["latent"])
    out = [("encoder latent (before quantization)", f"{err:.1e}", err <= TOL)]
    a, b = got["codes"], ref["codes"]
    same = a.shape == b.shape and float(np.mean(a == b))
    levels = a.shape == b.shape and int(np.sum(np.all(a == b, axis=1)))
    out.append((f"codes, {b.shape[0]} codebooks x {b.shape[1]} frames",
                f"{same:.1%} identical ({levels}/{b.shape[0]} codebooks all equal)",
                same == 1.0))  # fmt: skip
    err = rel_error(got["audio"], ref["audio"])
    out.append(("decoded audio (the reference's codes)", f"{err:.1e}", err <= TOL))
    for step, streamed in got["streams"].items():
        err = rel_error(streamed, got["audio"])
        label = "frame by frame" if step == 1 else f"chunks of {step} frames"
        out.append((f"streaming decode, {label}, vs one-shot (ours)", f"{err:.1e}",
                    err <= STREAM_TOL))  # fmt: skip
    err = rel_error(got["moshi_audio"], got["audio"])
    out.append(("moshi-named checkpoint: same weights, decode vs transformers-named",
                f"{'identical' if got['moshi_same'] else 'DIFFERENT'} weights, {err:.1e}",
                got["moshi_same"] and err == 0.0))  # fmt: skip
    return out


def run_official() -> int:
    """The official config: a markdown table; 1 when a stage fails."""
    torch.set_num_threads(2)
    print("| stage (Mimi, kyutai/mimi config, random weights) | max abs err / scale | ok |")
    print("|---|---|---|")
    t0 = time.time()
    samples = int(OFFICIAL_SECONDS * 24000) - 123  # not a whole frame: exercises the padding
    with tempfile.TemporaryDirectory() as tmp:
        audio, ref, got, (t_ref, t_ours), _ = compare({}, 0, Path(tmp), samples)
    bad = 0
    for name, value, ok in rows(ref, got):
        bad += not ok
        print(f"| {name} | {value} | {'yes' if ok else 'NO'} |")
    print(f"\n{time.time() - t0:.0f} s. {audio.size} samples ({audio.size / 24000:.2f} s, "
          f"{ref['codes'].shape[1]} frames, {2 * ref['codes'].shape[1]} transformer steps > the "
          "250-step window) of filtered noise, tones and clicks; weights loaded by our loader "
          "from transformers' save_pretrained folder and from the same weights under moshi's "
          "names. Speed: tools/bench/bench_mimi.py.")  # fmt: skip
    return 1 if bad else 0


def write_fixtures(folder: Path) -> None:
    """Reduced-config reference files for the default tests (no torch there): transformers'
    folder (config.json + model.safetensors) and the inputs and outputs."""
    torch.set_num_threads(2)
    folder.mkdir(parents=True, exist_ok=True)
    samples = REDUCED_FRAMES * 48 - 5  # hop 24, frame 48 samples
    with tempfile.TemporaryDirectory() as tmp:
        audio, ref, got, _, _ = compare(REDUCED, 1, Path(tmp), samples)
        for name in ("config.json", "model.safetensors"):
            (folder / name).write_bytes((Path(tmp) / name).read_bytes())
    for name, value, ok in rows(ref, got):
        print(f"{name}: {value} {'ok' if ok else 'FAILED'}")
    np.savez_compressed(folder / "mimi_reduced_io.npz", audio_in=audio, latent=ref["latent"],
                        codes=ref["codes"], audio_out=ref["audio"])  # fmt: skip


if __name__ == "__main__":
    main(__doc__, run_official, write_fixtures)
