"""Official Kokoro weights -> this implementation.

hexgrad's ``kokoro-v1_0.pth`` is ``torch.save`` of ``{bert, bert_encoder, predictor,
text_encoder, decoder}``, each a state dict whose keys may carry DataParallel's ``module.``
prefix; the MLX-community ``kokoro-v1_0.safetensors`` holds the same tensors flat
(``bert.embeddings...``) in torch's layout. Both are read without torch and without running
pickle code, and mapped here onto our parameters: weight norm (``weight_g``, ``weight_v``)
folded into one weight, convolutions moved to MLX's ``[out, kernel, in]`` layout, the
unused ALBERT pooler and ``position_ids`` dropped, and the instance norms' affine
parameters, which the released file lacks, set to torch's defaults (1, 0).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

COMPONENTS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
_DROPPED = ("position_ids", "token_type_ids", "bert.pooler.")


def flatten_checkpoint(state: dict) -> dict:
    """``{component: state_dict}`` (hexgrad's ``.pth``) or an already flat dict -> flat
    ``component.key`` names, DataParallel's ``module.`` prefix removed."""
    flat = {}
    for key, value in state.items():
        if isinstance(value, dict):
            for sub, tensor in value.items():
                sub = sub[7:] if sub.startswith("module.") else sub
                flat[f"{key}.{sub}"] = tensor
        else:
            flat[key] = value
    return flat


def _fold_weight_norm(flat: dict) -> dict:
    """``weight_g`` and ``weight_v`` -> ``weight`` = ``g * v / ||v||`` (torch's
    ``weight_norm(dim=0)``: the norm over every axis but the first), in float32 as torch
    computes it."""
    out = {}
    for key, value in flat.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            base = key[: -len("_v")]
            g = flat.get(base + "_g")
            if g is None:
                raise ValueError(f"weight-normalised tensor {key!r} has no {base + '_g'!r}")
            v = np.asarray(value, dtype=np.float32)
            norm = np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
            out[base] = v * (np.asarray(g, dtype=np.float32).reshape(norm.shape) / norm)
        else:
            out[key] = value
    return out


def _to_mlx_layout(key: str, w: np.ndarray) -> np.ndarray:
    if key.endswith(".pool.weight"):  # depthwise ConvTranspose1d [C, 1, 3] -> [C, 3]
        return w[:, 0]
    if ".alpha" in key:  # Snake's [1, C, 1] -> [C]
        return w.reshape(-1)
    if w.ndim == 3 and ".ups." in key:  # ConvTranspose1d [in, out, k] -> [out, k, in]
        return w.transpose(1, 2, 0)
    if w.ndim == 3:  # Conv1d [out, in, k] -> [out, k, in]
        return w.transpose(0, 2, 1)
    return w


def is_torch_layout(weights: dict) -> bool:
    """Whether a weight dict is in the official layout (as opposed to ours)."""
    return any(k.endswith(".weight_v") or ".module." in k or k.startswith("module.")
               for k in weights)  # fmt: skip


def sanitize(model, weights: dict) -> dict:
    """Maps official Kokoro weights (hexgrad's nested ``.pth`` dict or the flat
    torch-layout safetensors; NumPy or MLX arrays, any float dtype) onto ``model``'s
    parameters: our names and layouts, float32.

    Raises:
        ValueError: A tensor does not fit the architecture (wrong config), naming it.
    """
    flat = flatten_checkpoint(weights)
    flat = {k: v for k, v in flat.items() if not any(d in k for d in _DROPPED)}
    flat = _fold_weight_norm({k: np.asarray(v, dtype=np.float32) for k, v in flat.items()})
    shapes = {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}
    out = {}
    for key, w in flat.items():
        w = _to_mlx_layout(key, w)
        if key in shapes and tuple(w.shape) != shapes[key]:
            raise ValueError(
                f"weight {key!r} has shape {tuple(w.shape)} in MLX layout, which does not "
                f"fit this configuration (expected {shapes[key]})"
            )
        out[key] = mx.array(np.ascontiguousarray(w))
    for key, shape in shapes.items():  # the instance norms' affine, absent from the release
        if key not in out and key.endswith((".norm.weight", ".norm.bias")):
            out[key] = mx.ones(shape) if key.endswith("weight") else mx.zeros(shape)
    return out
