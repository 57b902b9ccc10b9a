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

from .config import ModelArgs, to_fraction

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
            return to_fraction(value)
        return {k: _decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


def _check_state(state, where: str) -> None:
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray | mx.array) for k, v in state.items()
    ):
        raise ValueError(f"loading failed for '{where}': the state is not a dict of named tensors")


def build(config: dict, state: dict, torch_layout: bool, where: str):
    """An ``HTDemucs`` from its config and weights, loaded strictly.

    Raises:
        ValueError: A bad config (a field of the wrong type or range) or weights that do not
            fit it, naming ``where``.
    """
    from .model import HTDemucs

    try:
        model = HTDemucs(ModelArgs.from_dict(config))  # lazy: nothing allocated yet
    except ValueError as e:
        raise ValueError(f"loading failed for '{where}': bad HTDemucs config: {e}") from e
    _check_state(state, where)
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
            f"loading failed for '{where}': it holds a {klass:.200} model; only HTDemucs "
            f"({HTDEMUCS_CLASS}, Demucs v4) is supported"
        )


def load_th(path) -> object:
    """One model from a demucs ``.th`` package (read with a restricted unpickler).

    Raises:
        ValueError: Not a demucs package of an HTDemucs model (naming the file and what is
            wrong), or an unsafe or corrupt checkpoint (``mlx_audio_io.torchfile``'s errors).
    """
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
    if isinstance(state, dict) and state.get("__quantized"):
        raise ValueError(
            f"loading failed for '{path}': DiffQ-quantized checkpoints are not supported"
        )
    args = package.get("args")
    if args is not None and not isinstance(args, list | tuple):
        raise ValueError(f"loading failed for '{path}': args is a {type(args).__name__}")
    if args:
        raise ValueError(f"loading failed for '{path}': positional model arguments")
    if not isinstance(package["kwargs"], dict):
        raise ValueError(
            f"loading failed for '{path}': kwargs is a {type(package['kwargs']).__name__}, "
            "not a dict"
        )
    return build(dict(package["kwargs"]), state, torch_layout=True, where=path)


def load_demucs_safetensors(path) -> object:
    """One model from demucs' Hugging Face form: a safetensors file whose metadata holds
    ``klass``, ``args`` and ``kwargs`` as JSON.

    Raises:
        ValueError: A corrupt safetensors file, or metadata that is not demucs' (naming the
            file and what is wrong).
    """
    path = str(path)
    try:
        state, meta = mx.load(path, return_metadata=True)
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"loading failed for '{path}': not a readable safetensors file ({e})"
        ) from e
    if "klass" not in meta or "kwargs" not in meta:
        raise ValueError(f"loading failed for '{path}': no demucs metadata (klass, kwargs)")
    _check_class(meta["klass"], path)
    if "structure" in meta:
        raise ValueError(f"loading failed for '{path}': quantized states are not supported")
    try:
        kwargs = _decode_json(json.loads(meta["kwargs"]))
    except RecursionError as e:
        raise ValueError(f"loading failed for '{path}': kwargs nest too deeply") from e
    except ValueError as e:  # JSONDecodeError, a bad fraction
        raise ValueError(f"loading failed for '{path}': bad kwargs metadata ({e})") from e
    if not isinstance(kwargs, dict):
        raise ValueError(f"loading failed for '{path}': kwargs is not a JSON object")
    return build(kwargs, state, torch_layout=True, where=path)


def save(models: list, folder, weights=None, segment=None, name: str | None = None) -> Path:
    """Writes models (one, or a bag) as our folder: ``config.json`` and ``{sig}.safetensors``.
    :func:`save_model` is the public form, taking a model or a bag.

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


def save_model(model, folder, name: str | None = None) -> Path:
    """Writes an ``HTDemucs`` or a ``BagOfModels`` as our folder, which ``from_pretrained``,
    ``load_local`` and every function taking a model name read back: ``config.json``
    (``model_type: htdemucs``, each model's config, the bag's weights and segment) and one
    MLX-layout ``{signature}.safetensors`` per model.

    Args:
        model: An ``HTDemucs`` (from ``from_pretrained`` or built from ``ModelArgs``) or a
            ``BagOfModels``. A model's file is named after its ``signature`` (set when it was
            loaded from a demucs checkpoint), else ``model{i}``.
        folder: The output folder (created; files of the same names are replaced).
        name: A model name to record in the config (e.g. ``"htdemucs_ft"``).

    Returns:
        The folder.

    Raises:
        ValueError: ``model`` is neither, or two models share a signature.
    """
    from .apply import BagOfModels
    from .model import HTDemucs

    if isinstance(model, BagOfModels):
        models, weights = model.models, model.weights
        own = min(m.args.segment for m in models)
        segment = model.segment if model.segment < own else None
    elif isinstance(model, HTDemucs):
        models, weights, segment = [model], None, None
    else:
        raise ValueError(f"model must be an HTDemucs or a BagOfModels, got {type(model).__name__}")
    sigs = [str(getattr(m, "signature", None) or f"model{i}") for i, m in enumerate(models)]
    if len(set(sigs)) != len(sigs):
        raise ValueError(f"the models of a bag must have distinct signatures, got {sigs}")
    if weights is not None and all(w == 1.0 for row in weights for w in row):
        weights = None  # the default, so that a plain bag of one reads back as its model
    return save(list(zip(sigs, models, strict=True)), folder, weights, segment, name)
