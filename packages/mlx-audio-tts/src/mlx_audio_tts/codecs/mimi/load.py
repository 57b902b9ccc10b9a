"""Loading Mimi from a folder, a file or the Hub, in any of three layouts:

* transformers' (``kyutai/mimi``: ``config.json`` + ``model.safetensors``, names such as
  ``encoder.layers.0.conv.weight``, PyTorch's weight layouts);
* moshi's (``tokenizer-e351c8d8-checkpoint125.safetensors`` in
  ``kyutai/moshiko-pytorch-bf16``: ``encoder.model.0.conv.conv.weight``,
  ``quantizer.rvq_first.vq.layers.0._codebook.embedding_sum``, fused ``in_proj_weight`` with
  interleaved RoPE), with the official config when no Mimi ``config.json`` is beside it;
* ours (:func:`save_model`: transformers' names, MLX's layouts, marked ``format: mlx``).

One converter (:func:`convert`) maps each name to ours, so it is idempotent.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io import hub

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .config import ModelArgs
from .model import Mimi

DEFAULT_REPO = "kyutai/mimi"

# moshi -> transformers, in this order, each a substring replacement: transformers'
# convert_mimi_checkpoint_to_pytorch.py's convert_list (plus newer moshi's in_projs/out_projs)
MOSHI_RENAMES = [
    ("self_attn.in_projs.0.weight", "self_attn.in_proj_weight"),
    ("self_attn.out_projs.0.", "self_attn.out_proj."),
    ("conv.conv.conv", "conv"), ("convtr.convtr.convtr", "conv"),
    ("conv.conv", "conv"), ("convtr.convtr", "conv"),
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
# transformers 5's nested names, should a checkpoint carry them
_NESTED = [
    ("encoder.encoder_seanet.", "encoder."),
    ("encoder.encoder_transformer.", "encoder_transformer."),
    ("encoder.downsample.", "downsample."), ("decoder.upsample.", "upsample."),
    ("decoder.decoder_transformer.", "decoder_transformer."),
    ("decoder.decoder_seanet.", "decoder."),
]  # fmt: skip


def _rename(name: str) -> str:
    for old, new in _NESTED:
        if name.startswith(old):
            name = new + name[len(old) :]
    for old, new in MOSHI_RENAMES:
        if old in name:
            name = name.replace(old, new)
    return name


def interleaved_to_half(w: np.ndarray, heads: int) -> np.ndarray:
    """moshi's q/k projection rows (RoPE on interleaved pairs) in transformers' order (RoPE on
    the two halves of each head), as transformers' converter permutes them."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def _split_in_proj(name: str, w: np.ndarray, args: ModelArgs) -> dict:
    """moshi's fused ``in_proj_weight`` -> ``q_proj``/``k_proj``/``v_proj`` weights."""
    d = args.attention_head_dim
    q_rows, kv_rows = args.num_attention_heads * d, args.num_key_value_heads * d
    if w.ndim != 2 or w.shape[0] != q_rows + 2 * kv_rows:
        raise ValueError(f"{name} must have {q_rows + 2 * kv_rows} rows, got shape {w.shape}")
    q, k, v = w[:q_rows], w[q_rows : q_rows + kv_rows], w[q_rows + kv_rows :]
    base = name[: -len("in_proj_weight")]
    return {
        base + "q_proj.weight": interleaved_to_half(q, args.num_attention_heads),
        base + "k_proj.weight": interleaved_to_half(k, args.num_key_value_heads),
        base + "v_proj.weight": v,
    }


def convert(weights: dict, args: ModelArgs, torch_layout: bool) -> dict:
    """Checkpoint weights (transformers', moshi's or ours) in this package's names and layouts,
    float32. Idempotent on its own output (with ``torch_layout=False``).

    Args:
        weights: Name -> array (numpy or mx).
        args: The config (head counts for splitting moshi's ``in_proj_weight``).
        torch_layout: Whether convolution weights are in PyTorch's layouts (transformers' and
            moshi's files) rather than MLX's (ours).

    Raises:
        ValueError: A fused projection of the wrong shape.
    """
    out = {}
    for key, value in weights.items():
        name = _rename(key)
        if name.endswith("codebook.initialized"):
            continue  # a training flag
        if isinstance(value, mx.array):  # bfloat16 (moshi's bf16 release) has no numpy type
            value = value.astype(mx.float32) if mx.issubdtype(value.dtype, mx.floating) else value
        a = np.asarray(value)
        a = a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a
        if name.endswith("in_proj_weight"):
            out.update(_split_in_proj(name, a, args))
        else:
            out[name] = a
    if torch_layout:
        transposed = Mimi.transposed_conv_names_for(args)
        for name, a in out.items():
            if a.ndim != 3:
                continue
            if name in transposed:  # torch [in, out / groups, k]
                out[name] = a.transpose(0, 2, 1) if a.shape[1] == 1 else a.transpose(1, 2, 0)
            else:  # torch [out, in, k]
                out[name] = a.swapaxes(1, 2)
    return {k: mx.array(np.ascontiguousarray(v)) for k, v in out.items()}


def _read_safetensors(path: Path) -> tuple[dict, bool]:
    """(name -> array, whether in PyTorch's layouts)."""
    try:
        weights, meta = mx.load(str(path), return_metadata=True)
    except (RuntimeError, ValueError, OSError) as e:
        raise ValueError(f"loading failed for '{path}': {e}") from e
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"loading failed for '{path}': not a Mimi state dict (names to tensors)")
    return weights, (meta or {}).get("format") != "mlx"


def build_model(config: dict | ModelArgs, weights: dict, torch_layout: bool,
                where: str = "weights") -> Mimi:  # fmt: skip
    """A ``Mimi`` from a config and weights (any layout), loaded strictly.

    Raises:
        ValueError: A bad config, or missing, unexpected or misshapen weights, naming ``where``.
    """
    try:
        args = config if isinstance(config, ModelArgs) else ModelArgs.from_dict(config)
        model = Mimi(args)
        model.load_weights(list(convert(weights, args, torch_layout).items()), strict=True)
    except ValueError as e:
        raise ValueError(f"loading failed for '{where}': {e}") from e
    mx.eval(model.parameters())
    model.eval()
    return model


def _mimi_config(path: Path) -> ModelArgs | None:
    """The Mimi config in ``path``, None when absent or another model's (moshi's LM)."""
    if not path.is_file():
        return None
    config = hub.read_config(path)
    if config.get("model_type", "mimi") != "mimi":
        return None
    try:
        return ModelArgs.from_dict(config)
    except ValueError as e:
        raise ValueError(f"loading failed for '{path}': {e}") from e


def load_model(path_or_repo: str | os.PathLike = DEFAULT_REPO, *, filename: str | None = None,
               revision: str | None = None,
               cache_dir: str | os.PathLike | None = None) -> Mimi:  # fmt: skip
    """Loads Mimi from a folder, a ``.safetensors`` file, or a Hub repo id.

    Args:
        path_or_repo: ``kyutai/mimi`` (transformers), a folder holding ``model.safetensors``
            (or moshi's ``tokenizer-*.safetensors``) and ``config.json``, or a weight file.
        filename: The weight file within the folder or repo (moshi's repos hold their LM too:
            ``load_model("kyutai/moshiko-pytorch-bf16",
            filename="tokenizer-e351c8d8-checkpoint125.safetensors")``).
        revision, cache_dir: For the Hub.

    Without a Mimi ``config.json`` next to the weights the official config is used.

    Raises:
        FileNotFoundError: No weight file.
        ValueError: A bad config or weight file, naming the file.
    """
    patterns = ["config.json", filename or "model.safetensors"]
    path = hub.resolve_model_path(path_or_repo, revision=revision, allow_patterns=patterns,
                                  cache_dir=cache_dir)  # fmt: skip
    folder = path.parent if path.is_file() else path
    args = _mimi_config(folder / "config.json")
    if path.is_file():
        weights_path = path
    elif filename is not None:
        weights_path = folder / filename
    elif (folder / "model.safetensors").is_file() and args is not None:
        weights_path = folder / "model.safetensors"
    else:
        found = sorted(folder.glob("tokenizer-*.safetensors"))
        weights_path = found[0] if len(found) == 1 else folder / "model.safetensors"
    if not weights_path.is_file():
        raise FileNotFoundError(
            f"loading failed for '{folder}': no {weights_path.name} (Mimi's weights: "
            "model.safetensors, or moshi's tokenizer-*.safetensors)"
        )
    weights, torch_layout = _read_safetensors(weights_path)
    return build_model(args or ModelArgs(), weights, torch_layout, str(weights_path))


def save_model(model: Mimi, folder: str | os.PathLike) -> Path:
    """Writes ``config.json`` and ``model.safetensors`` (our names, MLX layouts) into
    ``folder``; :func:`load_model` reads them back as they are."""
    weights = dict(tree_flatten(model.parameters()))
    return hub.save_model_folder(
        folder, model.config.to_dict(), weights, metadata={"format": "mlx"}
    )
