"""CSM checkpoints in any of three layouts to ours, by name; our layout passes through
unchanged, so converting twice is converting once.

* torchtune's (``sesame/csm-1b`` ``ckpt.pt`` / ``model.safetensors`` of the original):
  ``backbone.layers.N.attn.{q,k,v}_proj``, ``attn.output_proj``, ``mlp.w1/w2/w3``,
  ``sa_norm.scale``, ``mlp_norm.scale``, ``backbone.norm.scale``, the same under
  ``decoder.``, then ``text_embeddings``, ``audio_embeddings``, ``projection``,
  ``codebook0_head``, ``audio_head``. q/k rows in torchtune's order (interleaved RoPE).
* transformers' (``CsmForConditionalGeneration``): ``backbone_model.layers.N.self_attn.*``,
  ``depth_decoder.model.layers.N.*``, ``embed_text_tokens``,
  ``backbone_model.embed_tokens.embed_audio_tokens``, ``lm_head``,
  ``depth_decoder.codebooks_head.weight``, ``depth_decoder.model.inputs_embeds_projector``;
  its ``convert_csm.py`` permuted q/k rows for half-split RoPE (``permute_for_rope``), which
  is undone here; the depth decoder's ``embed_tokens`` is the backbone's audio embedding
  (tied) and dropped, as is the Mimi codec (``codec_model.*``).
* mlx-audio's (mlx-community/csm-1b): torchtune's with ``attn`` → ``self_attn``,
  ``output_proj`` → ``o_proj``, w1/w2/w3 → gate/down/up, ``scale`` → ``weight`` and maybe a
  ``model.`` prefix; q/k in torchtune's order.

Ours is the last without the prefix: mlx-lm's Llama names under ``backbone.`` and
``decoder.``, q/k in torchtune's order, and the RoPE runs interleaved (``traditional``) in
mlx-lm's ``Llama3RoPE``, which supports it. Running q/k in torchtune's order avoids touching
the original and mlx-community weights at all; only transformers' are permuted back.

    python -m mlx_audio_tts.models.csm.convert SRC DST   # a folder, file or repo -> ours
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)

import mlx.core as mx
import numpy as np

from .config import ModelArgs

_HEADS = ("text_embeddings", "audio_embeddings", "projection", "codebook0_head", "audio_head")
_RENAMES = [  # (pattern, replacement), applied in order to every name
    (r"^model\.(?=(backbone|decoder)\.|(" + "|".join(_HEADS) + r")\b)", ""),  # mlx-audio
    (r"^backbone_model\.embed_tokens\.embed_audio_tokens\.", "audio_embeddings."),
    (r"^backbone_model\.", "backbone."),
    (r"^depth_decoder\.model\.inputs_embeds_projector\.", "projection."),
    (r"^depth_decoder\.codebooks_head\.weight$", "audio_head"),
    (r"^depth_decoder\.model\.", "decoder."),
    (r"^embed_text_tokens\.", "text_embeddings."),
    (r"^lm_head\.", "codebook0_head."),
    (r"\.attn\.", ".self_attn."),
    (r"\.output_proj\.", ".o_proj."),
    (r"\.mlp\.w1\.", ".mlp.gate_proj."),
    (r"\.mlp\.w2\.", ".mlp.down_proj."),
    (r"\.mlp\.w3\.", ".mlp.up_proj."),
    (r"\.sa_norm\.(scale|weight)$", ".input_layernorm.weight"),
    (r"\.mlp_norm\.(scale|weight)$", ".post_attention_layernorm.weight"),
    (r"^(backbone|decoder)\.norm\.scale$", r"\1.norm.weight"),
]
# buffers and parts that are not CSM's language models
_DROP = re.compile(
    r"^codec_model\.|^depth_decoder\.model\.embed_tokens\.|rotary_emb\.|\.pos_embeddings\.|"
    r"audio_tokens_offsets$|causal_mask$|\.kv_cache\.|^(backbone|decoder)\.output\."
)
_TRANSFORMERS_QK = re.compile(r"^(backbone_model|depth_decoder\.model)\.layers\.\d+\.self_attn\."
                              r"[qk]_proj\.weight$")  # fmt: skip
_TIED = "depth_decoder.model.embed_tokens.weight"


def rename(name: str) -> str:
    """A checkpoint name in any of the three layouts as ours (ours unchanged)."""
    for pattern, replacement in _RENAMES:
        name = re.sub(pattern, replacement, name)
    return name


def unpermute_for_rope(weight, head_dim: int):
    """Undoes transformers' ``permute_for_rope`` on a q or k projection ``[heads * head_dim,
    in]``: half-split row order (all even rotary dims, then all odd, per head) back to
    torchtune's interleaved order."""
    rows, cols = weight.shape
    w = weight.reshape(rows // head_dim, 2, head_dim // 2, cols)
    return w.transpose(0, 2, 1, 3).reshape(rows, cols)


def permute_for_rope(weight, head_dim: int):
    """transformers' ``permute_for_rope`` (the inverse of :func:`unpermute_for_rope`)."""
    rows, cols = weight.shape
    w = weight.reshape(rows // head_dim, head_dim // 2, 2, cols)
    return w.transpose(0, 2, 1, 3).reshape(rows, cols)


def convert_weights(weights: dict, args: ModelArgs) -> dict[str, mx.array]:
    """Checkpoint weights (torchtune, transformers, mlx-audio or ours) in our layout.

    Args:
        weights: name → ``mx.array`` or ``numpy.ndarray``.
        args: The model's configuration (for the heads' widths in the q/k permutation).

    Returns:
        name → ``mx.array``, in the dtype stored.

    Raises:
        ValueError: Two names map to the same weight (a file mixing layouts).
    """
    if _TIED in weights and not any(
        k.endswith("embed_audio_tokens.weight") or rename(k) == "audio_embeddings.weight"
        for k in weights
    ):  # only the tied copy was stored
        weights = {**weights, "backbone_model.embed_tokens.embed_audio_tokens.weight":
                   weights[_TIED]}  # fmt: skip
    out: dict[str, mx.array] = {}
    for name, value in weights.items():
        if _DROP.search(name):
            continue
        new = rename(name)
        if new in out:
            raise ValueError(f"conversion failed: {name!r} and another weight both map to {new!r}")
        value = value if isinstance(value, mx.array) else mx.array(np.asarray(value))
        if _TRANSFORMERS_QK.match(name):
            which = "backbone" if new.startswith("backbone.") else "decoder"
            value = unpermute_for_rope(value, getattr(args, which)["head_dim"])
        out[new] = value
    return out


def to_transformers(weights: dict, args: ModelArgs) -> dict[str, mx.array]:
    """Our layout in transformers' names (q/k permuted, the tied embedding added): the
    inverse of :func:`convert_weights`, for tests and for checking a round trip."""
    inverse = [
        (r"^audio_embeddings\.", "backbone_model.embed_tokens.embed_audio_tokens."),
        (r"^backbone\.", "backbone_model."),
        (r"^projection\.", "depth_decoder.model.inputs_embeds_projector."),
        (r"^audio_head$", "depth_decoder.codebooks_head.weight"),
        (r"^decoder\.", "depth_decoder.model."),
        (r"^text_embeddings\.", "embed_text_tokens."),
        (r"^codebook0_head\.", "lm_head."),
    ]
    out = {}
    for name, value in weights.items():
        new = name
        for pattern, replacement in inverse:
            new = re.sub(pattern, replacement, new)
        if _TRANSFORMERS_QK.match(new):
            which = "backbone" if name.startswith("backbone.") else "decoder"
            value = permute_for_rope(value, getattr(args, which)["head_dim"])
        out[new] = value
    out[_TIED] = out["backbone_model.embed_tokens.embed_audio_tokens.weight"]
    return out


def save_model(model, folder: str | Path) -> Path:
    """Writes ``model`` (a :class:`~.model.Model`) as our layout: ``config.json`` and
    ``model.safetensors``. Returns the folder."""
    from mlx_audio_io.hub import save_model_folder

    from mlx.utils import tree_flatten

    weights = dict(tree_flatten(model.parameters()))
    return save_model_folder(folder, model.args.to_dict(), weights, metadata={"format": "mlx"})


def main(argv: list[str] | None = None) -> int:
    """``python -m mlx_audio_tts.models.csm.convert SRC DST [--dtype bfloat16]``: any CSM
    checkpoint (folder, ``.pt``/``.safetensors`` file, Hub repo id) to our layout in DST,
    with the tokenizer files when SRC has them."""
    import shutil

    from .load import load_csm_weights

    parser = argparse.ArgumentParser(description="Convert a CSM-1B checkpoint to MLX.")
    parser.add_argument("src", help="folder, .pt/.safetensors file or Hub repo id")
    parser.add_argument("dst", type=Path, help="output folder")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None,
                        help="cast the weights (default: as stored)")  # fmt: skip
    opts = parser.parse_args(argv)
    model, folder = load_csm_weights(opts.src, dtype=opts.dtype)
    save_model(model, opts.dst)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            shutil.copy(folder / name, opts.dst / name)
    print(f"wrote {opts.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
