"""Loading SAM-Audio: the official repos (``config.json`` + ``checkpoint.pt``, read by a
restricted unpickler), MLX safetensors folders (what :func:`save_model` writes, and
mlx-audio's conversions: :mod:`.mlx_audio_layout`), and the T5 text encoder the official code
takes from ``t5-base``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io.dac import torch_to_mlx_layout
from mlx_audio_io.hub import read_config, resolve_model_path, save_model_folder

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .config import SAMAudioConfig
from .mlx_audio_layout import fill_align, fit_layouts, is_mlx_audio, to_official_names
from .model import SAMAudio

# what the official checkpoint holds that audio-only separation does not use, and the text
# encoder, which it loads from its own repo
_SKIP = re.compile(r"^(text_encoder|vision_encoder|visual_ranker|text_ranker|span_predictor)\.")
_SEQ = re.compile(r"\.(pre|post)\.(\d+)\.")
_CONV_TRANSPOSE = re.compile(
    r"^audio_codec\.decoder\.model\.layers\.\d+\.block\.layers\.3\.weight$"
)


def sanitize(weights: dict) -> dict:
    """Official (PyTorch) names and layouts -> this package's; MLX-layout weights pass as
    they are. Drops the vision and text encoders and the rankers."""
    weights = {k: v for k, v in weights.items() if not _SKIP.match(k)}
    if any(".layers." in k for k in weights if k.startswith("audio_codec.")):
        return weights  # already ours
    out = {}
    for key, value in weights.items():
        if key.startswith("audio_codec."):
            key = _SEQ.sub(r".\1.layers.\2.", key)
            [(key, value)] = torch_to_mlx_layout({key: value}).items()
            if _CONV_TRANSPOSE.match(key):  # torch [in, out, k] -> [out, k, in]
                value = value.transpose(1, 2, 0)
            elif key.endswith(".weight") and value.ndim == 3:  # torch [out, in, k]
                value = value.transpose(0, 2, 1)
        elif key.endswith(".weight") and value.ndim == 3:  # DiT convolutions
            value = value.transpose(0, 2, 1)
        out[key] = value
    return out


def _read_weights(folder: Path) -> dict:
    files = sorted(folder.glob("*.safetensors"))
    if files:
        weights = {}
        for f in files:
            weights.update(mx.load(str(f)))
        return weights
    ckpt = folder / "checkpoint.pt"
    if not ckpt.exists():
        raise FileNotFoundError(
            f"loading failed for '{folder}': no *.safetensors and no checkpoint.pt"
        )
    from mlx_audio_io.torchfile import load_torch_file

    state = load_torch_file(ckpt)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"loading failed for '{ckpt}': not a state dict")
    return {k: mx.array(np.asarray(v, np.float32)) for k, v in state.items()
            if not _SKIP.match(k) and isinstance(v, np.ndarray)}  # fmt: skip


def load_model(folder: Path) -> SAMAudio:
    """The network from a folder (``config.json`` + weights), without the text encoder."""
    config = SAMAudioConfig.from_dict(read_config(folder / "config.json"))
    model = SAMAudio(config)
    weights = _read_weights(folder)
    if is_mlx_audio(weights):
        weights = to_official_names(weights)
    expected = dict(tree_flatten(model.parameters()))
    weights = fit_layouts(sanitize(weights), expected)
    weights = fill_align(weights, expected, str(folder))
    weights = {k: v.astype(mx.float32) if v.dtype in (mx.float16, mx.bfloat16) else v
               for k, v in weights.items()}  # fmt: skip
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as e:
        raise ValueError(f"loading failed for '{folder}': {e}") from e
    mx.eval(model.parameters())
    return model


def from_pretrained(name_or_path: str | os.PathLike = "facebook/sam-audio-large", *,
                    revision: str | None = None, text_encoder: str | os.PathLike | None = None,
                    text_revision: str | None = None) -> SAMAudio:  # fmt: skip
    """SAM-Audio from a Hub repo (``facebook/sam-audio-{small,base,large}[-tv]`` are gated:
    log in first; or a conversion) or a local folder, with its T5 text encoder.

    Args:
        name_or_path: Repo id or folder holding ``config.json`` and ``checkpoint.pt`` or
            ``*.safetensors``.
        revision: The repo's branch, tag or commit.
        text_encoder: Repo id or folder of the T5 encoder (``config.json``, ``spiece.model``,
            ``model.safetensors``); None takes the config's (``t5-base`` =
            ``google-t5/t5-base``), or a ``text_encoder/`` subfolder when the model has one.

    Raises:
        FileNotFoundError: The model or a file it needs cannot be found.
        ValueError: A file that does not fit this architecture.
    """
    wanted = ["config.json", "*.safetensors", "text_encoder/*"]
    folder = resolve_model_path(name_or_path, revision=revision, allow_patterns=wanted)
    if not any(folder.glob("*.safetensors")) and not (folder / "checkpoint.pt").exists():
        folder = resolve_model_path(name_or_path, revision=revision,
                                    allow_patterns=["config.json", "checkpoint.pt"])  # fmt: skip
    model = load_model(folder)
    if text_encoder is None:
        local = folder / "text_encoder"
        name = model.config.text_encoder.name
        text_encoder = local if local.is_dir() else name  # load_t5 maps t5-base to google-t5/
    from .t5 import load_t5

    model.set_text_encoder(*load_t5(text_encoder, revision=text_revision))
    return model


def save_model(model: SAMAudio, folder: str | os.PathLike) -> Path:
    """Writes ``config.json`` and ``model.safetensors`` (this package's layout) to ``folder``;
    :func:`from_pretrained` reads it back (the text encoder comes from ``text_encoder``)."""
    weights = dict(tree_flatten(model.parameters()))
    return save_model_folder(folder, model.config.to_dict(), weights, metadata={"format": "mlx"})
