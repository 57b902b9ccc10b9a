"""Loading SNAC from a folder or the Hub, in either layout:

* hubertsiuzdak's (``config.json`` + ``pytorch_model.bin``, PyTorch layout with
  ``weight_g``/``weight_v`` or ``parametrizations.weight.original0/1``), converted on load;
* MLX's (``config.json`` + ``model.safetensors``, as ``mlx-community/snac_24khz`` and
  :func:`save_model` write it), loaded as is.
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
from .model import SNAC

DEFAULT_REPO = "hubertsiuzdak/snac_24khz"
_PATTERNS = ["config.json", "model.safetensors", "pytorch_model.bin"]


def _read_weights(path: Path) -> tuple[dict, bool]:
    """(name -> array, whether in PyTorch layout)."""
    if path.suffix == ".bin":
        from mlx_audio_io.torchfile import load_torch_file

        state = load_torch_file(path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        torch_layout = True
    else:
        try:
            state = mx.load(str(path))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"loading failed for '{path}': {e}") from e
        torch_layout = False
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray | mx.array) for k, v in state.items()
    ):
        raise ValueError(f"loading failed for '{path}': not a SNAC state dict (names to tensors)")
    return state, torch_layout


def build_model(config: dict | ModelArgs, weights: dict, torch_layout: bool,
                where: str = "weights") -> SNAC:  # fmt: skip
    """A ``SNAC`` from a config and weights, loaded strictly.

    Raises:
        ValueError: A bad config, or missing, unexpected or misshapen weights, naming ``where``.
    """
    try:
        args = config if isinstance(config, ModelArgs) else ModelArgs.from_dict(config)
        model = SNAC(args)
        model.load_weights(list(SNAC.sanitize(weights, torch_layout).items()), strict=True)
    except ValueError as e:
        raise ValueError(f"loading failed for '{where}': {e}") from e
    mx.eval(model.parameters())
    model.eval()
    return model


def load_model(path_or_repo: str | os.PathLike = DEFAULT_REPO, *, revision: str | None = None,
               cache_dir: str | os.PathLike | None = None) -> SNAC:  # fmt: skip
    """Loads SNAC from a folder or a Hub repo id (``hubertsiuzdak/snac_24khz``,
    ``mlx-community/snac_24khz``, or a copy of either).

    Raises:
        FileNotFoundError: No ``config.json``, or no ``model.safetensors`` /
            ``pytorch_model.bin`` next to it.
        ValueError: A bad config or weight file, naming the file.
    """
    folder = hub.resolve_model_path(path_or_repo, revision=revision, allow_patterns=_PATTERNS,
                                    cache_dir=cache_dir)  # fmt: skip
    config_path = folder / "config.json"
    config = hub.read_config(config_path)
    try:
        args = ModelArgs.from_dict(config)
    except ValueError as e:
        raise ValueError(f"loading failed for '{config_path}': {e}") from e
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            weights, torch_layout = _read_weights(folder / name)
            return build_model(args, weights, torch_layout, str(folder / name))
    raise FileNotFoundError(
        f"loading failed for '{folder}': no model.safetensors or pytorch_model.bin"
    )


def save_model(model: SNAC, folder: str | os.PathLike) -> Path:
    """Writes ``config.json`` and ``model.safetensors`` (MLX layout) into ``folder``."""
    weights = dict(tree_flatten(model.parameters()))
    return hub.save_model_folder(
        folder, model.config.to_dict(), weights, metadata={"format": "mlx"}
    )
