"""Loading Kokoro from a folder, a file or the Hub, in any of the three layouts:

* hexgrad's (``config.json``, ``kokoro-v1_0.pth``, ``voices/*.pt``), converted on load;
* the MLX-community copy (``config.json``, ``kokoro-v1_0.safetensors`` in torch layout,
  ``voices/*.safetensors``), converted on load;
* ours (``config.json`` with ``model_type: kokoro``, ``*.safetensors`` in MLX layout,
  possibly quantized), as :func:`save_model` writes it.
"""

from __future__ import annotations

from pathlib import Path

from mlx_audio_io.quant import use_fast_quantized

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .config import ModelConfig
from .convert import is_torch_layout, sanitize
from .model import KokoroModel

DEFAULT_REPO = "hexgrad/Kokoro-82M"
_MODEL_PATTERNS = ["config.json", "*.pth", "kokoro*.safetensors", "model*.safetensors"]


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        files = sorted(folder.glob("*.pth"))
    return files


def _is_state(state) -> bool:
    """A state dict: names to arrays, or (hexgrad's) component names to such dicts."""
    if not isinstance(state, dict):
        return False
    for key, value in state.items():
        inner = value.items() if isinstance(value, dict) else [("", value)]
        if not isinstance(key, str) or not all(
            isinstance(k, str) and isinstance(v, np.ndarray | mx.array) for k, v in inner
        ):
            return False
    return True


def _read_weights(path: Path) -> dict:
    if path.suffix == ".pth":
        from mlx_audio_io.torchfile import load_torch_file

        state = load_torch_file(path)
    else:
        try:
            state = mx.load(str(path))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"loading failed for '{path}': {e}") from e
    if not _is_state(state):
        raise ValueError(
            f"loading failed for '{path}': not a Kokoro state dict (names to tensors, or "
            "component names to such dicts)"
        )
    return state


def read_config(path) -> ModelConfig:
    """A ``ModelConfig`` from a ``config.json`` file.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a JSON object, or a field of the wrong type or out of range, naming
            the file and the field.
    """
    from mlx_audio_io.hub import read_config as read_json

    config = read_json(path)
    try:
        return ModelConfig.from_dict(config)
    except ValueError as e:
        raise ValueError(f"loading failed for '{path}': {e}") from e


def quantize_predicate(group_size: int):
    """``nn.quantize``'s class predicate: layers that can be quantized (linear, embedding)
    and whose input width is a multiple of ``group_size``."""

    def predicate(_path, module):
        return hasattr(module, "to_quantized") and module.weight.shape[-1] % group_size == 0

    return predicate


def quantize_layers(model: nn.Module, group_size: int, bits: int) -> None:
    """Quantizes the layers :func:`quantize_predicate` picks, in place, and puts their
    products on mlx_audio_io's kernel (MLX's CPU kernel took 30x longer for ALBERT's 264
    rows)."""
    nn.quantize(model, group_size, bits, class_predicate=quantize_predicate(group_size))
    use_fast_quantized(model)


def build_model(config: dict | ModelConfig, weights: dict, where: str = "weights") -> KokoroModel:
    """A ``KokoroModel`` from a config and a weight dict in either layout, loaded strictly
    (quantized first when the config says so).

    Raises:
        ValueError: A bad config, or missing, unexpected or misshapen weights, naming them and
            ``where``.
    """
    try:
        cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
        model = KokoroModel(cfg)  # lazy: the config is checked before anything is allocated
    except ValueError as e:
        raise ValueError(f"loading failed for '{where}': {e}") from e
    return _fill(model, weights, where)


def _fill(model: KokoroModel, weights: dict, where: str) -> KokoroModel:
    try:
        if is_torch_layout(weights) or any(isinstance(v, dict) for v in weights.values()):
            weights = sanitize(model, weights)
        quant = model.config.extra.get("quantization")
        if quant:
            quantize_layers(model, quant["group_size"], quant["bits"])
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as e:
        raise ValueError(f"loading failed for '{where}': {e}") from e
    mx.eval(model.parameters())
    model.eval()
    return model


def load_local(path) -> KokoroModel:
    """A model from a folder holding ``config.json`` and its weights (a ``.pth`` or
    ``.safetensors`` file), or from a weight file next to its ``config.json``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: '{path}'")
    folder = path if path.is_dir() else path.parent
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in '{folder}'")
    config = read_config(config_path)
    try:
        model = KokoroModel(config)  # lazy: its size is checked before the weights are read
    except ValueError as e:
        raise ValueError(f"loading failed for '{config_path}': {e}") from e
    files = [path] if path.is_file() else _weight_files(folder)
    if not files:
        raise FileNotFoundError(f"no Kokoro weights (.safetensors or .pth) in '{folder}'")
    weights = {}
    for f in files:
        weights.update(_read_weights(f))
    model = _fill(model, weights, where=str(path))
    model.folder = folder  # where voices/ is looked for first (KokoroPipeline)
    return model


def load_model(name_or_path=DEFAULT_REPO, revision: str | None = None) -> KokoroModel:
    """``KokoroModel`` from a local folder or file, or a Hub repo id (``hexgrad/Kokoro-82M``,
    ``prince-canuma/Kokoro-82M``, ``mlx-community/Kokoro-82M-bf16``, or a folder saved by
    :func:`save_model` and uploaded). Only the config and the model weights are fetched;
    voices load on demand (:func:`mlx_audio_tts.models.kokoro.voices.load_voice`).

    Raises:
        FileNotFoundError: Missing path, unknown repo, or not cached while offline.
        ValueError: The files do not hold a Kokoro model of their config.
    """
    from mlx_audio_io.hub import resolve_model_path

    key = str(name_or_path)
    if Path(key).expanduser().exists():
        return load_local(key)
    return load_local(resolve_model_path(key, revision=revision, allow_patterns=_MODEL_PATTERNS))


def save_model(model: KokoroModel, folder, weights: dict | None = None,
               config: dict | None = None) -> Path:  # fmt: skip
    """Writes our layout: ``config.json`` (``model_type: kokoro``) and
    ``model.safetensors``. ``weights``/``config`` default to the model's own (pass
    :func:`mlx_audio_tts.utils.quantize_model`'s to save a quantized copy)."""
    from mlx_audio_io.hub import save_model_folder

    from mlx.utils import tree_flatten

    config = dict(config or model.config.to_dict())
    config["model_type"] = "kokoro"
    weights = weights if weights is not None else dict(tree_flatten(model.parameters()))
    return save_model_folder(folder, config, weights, metadata={"format": "mlx"})
