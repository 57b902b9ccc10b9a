"""Official demucs checkpoints -> this implementation.

Reads the three forms demucs distributes, without torch and without running pickle code:
``.th`` packages (``torch.save`` of ``{klass, args, kwargs, state}``, float16 state),
the Hugging Face form of demucs 4.1 (``{sig}.safetensors`` with ``klass``/``args``/``kwargs``
as JSON metadata) and the bag YAML (``models``, ``weights``, ``segment``) naming either. Writes
and reads our own folder: ``config.json`` (``model_type: htdemucs``, the bag and each model's
config) plus one safetensors file per model in MLX layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from .config import ModelArgs

HTDEMUCS_CLASS = "demucs.htdemucs.HTDemucs"


def _to_mlx_layout(key: str, w: np.ndarray, target: tuple) -> np.ndarray:
    """One torch tensor in MLX's layout: convolutions move their input channels last."""
    if w.ndim >= 3 and "conv_tr" in key:  # ConvTranspose1d/2d [in, out, k(, 1)] -> [out, k, in]
        w = w.reshape(w.shape[:3]).transpose(1, 2, 0)
    elif w.ndim == 4 and len(target) == 3:  # Conv2d with a (k, 1) kernel -> [out, k, in]
        w = w[..., 0].transpose(0, 2, 1)
    elif w.ndim == 4:  # square Conv2d [out, in, k_freq, k_time] -> [out, k_time, k_freq, in]
        w = w.transpose(0, 3, 2, 1)
    elif w.ndim == 3 and len(target) == 2:  # 1x1 Conv1d used as a Linear layer
        w = w[..., 0]
    elif w.ndim == 3:  # Conv1d [out, in, k] -> [out, k, in]
        w = w.transpose(0, 2, 1)
    return w


def sanitize(model, weights: dict) -> dict:
    """Maps a demucs ``state_dict`` (NumPy or MLX arrays, any float dtype) onto ``model``'s
    parameters: same names, MLX layouts, float32.

    Raises:
        ValueError: A tensor's shape does not fit the architecture (wrong config), naming it.
    """
    shapes = {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}
    out = {}
    for key, value in weights.items():
        w = np.asarray(value, dtype=np.float32)
        if key in shapes:
            w = _to_mlx_layout(key, w, shapes[key])
            if tuple(w.shape) != shapes[key]:
                raise ValueError(
                    f"weight {key!r} has shape {tuple(np.shape(value))}, which does not fit "
                    f"this configuration (expected {shapes[key]} in MLX layout)"
                )
        out[key] = mx.array(np.ascontiguousarray(w))  # unknown keys: the strict load names them
    return out


def _decode_json(value):
    """demucs' JSON metadata: Fractions are ``{"_type": "fraction", ...}``."""
    if isinstance(value, dict):
        if value.get("_type") == "fraction":
            return f"{value['numerator']}/{value['denominator']}"
        return {k: _decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


def build(config: dict, state: dict, torch_layout: bool, where: str):
    """An ``HTDemucs`` from its config and weights, loaded strictly."""
    from .model import HTDemucs

    model = HTDemucs(ModelArgs.from_dict(config))
    try:
        weights = model.sanitize(state) if torch_layout else state
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as e:
        raise ValueError(f"loading HTDemucs weights failed for '{where}': {e}") from e
    mx.eval(model.parameters())
    model.eval()
    return model


def _check_class(klass: str, where: str) -> None:
    if klass != HTDEMUCS_CLASS:
        raise ValueError(
            f"loading failed for '{where}': it holds a {klass} model; only HTDemucs "
            f"({HTDEMUCS_CLASS}, Demucs v4) is supported"
        )


def load_th(path) -> object:
    """One model from a demucs ``.th`` package (read with a restricted unpickler)."""
    from mlx_audio_io.torchfile import GlobalRef, load_torch_file

    path = str(path)
    package = load_torch_file(path, globals_as_refs=True)
    if not isinstance(package, dict) or not {"klass", "kwargs", "state"} <= set(package):
        raise ValueError(
            f"loading failed for '{path}': not a demucs model package "
            "(expected a dict with klass, args, kwargs and state)"
        )
    klass = package["klass"]
    name = f"{klass.module}.{klass.name}" if isinstance(klass, GlobalRef) else repr(klass)
    _check_class(name, path)
    state = package["state"]
    if state.get("__quantized"):
        raise ValueError(
            f"loading failed for '{path}': DiffQ-quantized checkpoints are not supported"
        )
    if package.get("args"):
        raise ValueError(f"loading failed for '{path}': positional model arguments")
    return build(dict(package["kwargs"]), state, torch_layout=True, where=path)


def load_demucs_safetensors(path) -> object:
    """One model from demucs' Hugging Face form: a safetensors file whose metadata holds
    ``klass``, ``args`` and ``kwargs`` as JSON."""
    path = str(path)
    state, meta = mx.load(path, return_metadata=True)
    if "klass" not in meta or "kwargs" not in meta:
        raise ValueError(f"loading failed for '{path}': no demucs metadata (klass, kwargs)")
    _check_class(meta["klass"], path)
    if "structure" in meta:
        raise ValueError(f"loading failed for '{path}': quantized states are not supported")
    kwargs = _decode_json(json.loads(meta["kwargs"]))
    return build(kwargs, state, torch_layout=True, where=path)


def save(models: list, folder, weights=None, segment=None, name: str | None = None) -> Path:
    """Writes models (one, or a bag) as our folder: ``config.json`` and ``{sig}.safetensors``.

    Args:
        models: ``[(signature, HTDemucs)]``.
        folder: Output directory (created).
        weights, segment: The bag's per-source weights and segment override.
        name: Model name recorded in the config (e.g. ``"htdemucs_ft"``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for sig, model in models:
        file = f"{sig}.safetensors"
        params = dict(tree_flatten(model.parameters()))
        mx.save_safetensors(str(folder / file), params, metadata={"format": "mlx"})
        entries.append({"signature": sig, "file": file, "config": model.args.to_dict()})
    config = {
        "model_type": "htdemucs",
        "name": name,
        "models": entries,
        "weights": weights,
        "segment": None if segment is None else str(segment),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
