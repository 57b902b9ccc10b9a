"""Loading any of the package's TTS models by repo id or folder, and quantizing them
(``mlx_audio.tts.utils``' ``load_model`` and ``quantize_model``)."""

from __future__ import annotations

from pathlib import Path

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

import mlx.nn as nn

__all__ = ["load_model", "materialize", "model_type_of", "quantize_model"]

DEFAULT_MODEL = "prince-canuma/Kokoro-82M"
_BITS = (2, 3, 4, 5, 6, 8)
_GROUP_SIZES = (32, 64, 128)


def model_type_of(config: dict) -> str:
    """The model family a ``config.json`` describes: ``"kokoro"`` (its ``model_type``, or for
    hexgrad's Kokoro config, which has none, the presence of ``istftnet``), ``"orpheus"``
    (a Llama: ``model_type`` ``"llama"``) or ``"csm"`` (``csm``, ``sesame``, or the original
    config's ``backbone_flavor``).

    Raises:
        ValueError: A family this package does not implement.
    """
    guess = "kokoro" if "istftnet" in config else "csm" if "backbone_flavor" in config else ""
    kind = config.get("model_type", guess)
    if not isinstance(kind, str):
        raise ValueError(f"model_type must be a string, got a {type(kind).__name__}")
    family = {"kokoro": "kokoro", "llama": "orpheus", "csm": "csm", "sesame": "csm"}.get(
        kind.lower()
    )
    if family is None:
        raise ValueError(
            f"model type {kind or 'unknown'!r} is not supported; this package loads: kokoro, "
            "llama (Orpheus), csm (Sesame)"
        )
    return family


def _config_of(key: str, revision: str | None) -> tuple[dict, str]:
    path = Path(key).expanduser()
    if path.exists():
        folder = path if path.is_dir() else path.parent
    else:
        from mlx_audio_io.hub import resolve_model_path

        folder = resolve_model_path(key, revision=revision, allow_patterns=["config.json"])
    config_path = Path(folder) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in '{folder}'")
    from mlx_audio_io.hub import read_config

    return read_config(config_path), str(config_path)


def load_model(model_path: str | None = None, *, repo_id: str | None = None,
               revision: str | None = None):  # fmt: skip
    """A TTS model from a local folder or a Hub repo id, its family read from
    ``config.json``: Kokoro in hexgrad's, MLX-community's or our layout, possibly
    quantized by :func:`quantize_model`; Orpheus (a Llama checkpoint, mlx-lm quantized or
    not, with its SNAC codec; see :func:`mlx_audio_tts.models.orpheus.load_model`).

    Args:
        model_path: Folder, weight file or repo id (``repo_id=`` is the same, as mlx-audio
            spells it); default ``prince-canuma/Kokoro-82M``.
        revision: Hub revision.

    Raises:
        FileNotFoundError: No such folder or repo, or no config.json.
        ValueError: A config.json that is not a JSON object or has fields of the wrong type or
            range, an unsupported model family, or weights that do not fit the config; the
            message names the file.
    """
    if model_path is not None and repo_id is not None and model_path != repo_id:
        raise ValueError(f"give model_path or repo_id, not both ({model_path!r}, {repo_id!r})")
    key = str(model_path or repo_id or DEFAULT_MODEL)
    config, config_path = _config_of(key, revision)
    try:
        kind = model_type_of(config)
    except ValueError as e:
        raise ValueError(f"loading failed for '{config_path}': {e}") from e
    if kind == "orpheus":
        from .models.orpheus import load_model as load_orpheus

        return load_orpheus(key, revision=revision)
    if kind == "csm":
        return load_csm(key, revision=revision)
    from .models.kokoro.load import load_model as load_kokoro

    return load_kokoro(key, revision=revision)


DEFAULT_MIMI = "kyutai/mimi"


def load_csm(model_path: str, codec_path: str = DEFAULT_MIMI, revision: str | None = None):
    """Sesame CSM with its Mimi codec: the checkpoint (:func:`mlx_audio_tts.models.csm.
    load_csm_weights`, any of its three layouts), its tokenizer, and Mimi from the folder's
    ``mimi/`` if it has one, else ``codec_path`` (folder or Hub id, transformers' or moshi's
    layout).

    Raises:
        RuntimeError: mlx-lm missing, or the codec cannot be loaded (named).
    """
    try:
        from .models import csm
    except ImportError as e:
        raise RuntimeError(f"CSM needs mlx-lm: pip install 'mlx-audio-tts[csm]' ({e})") from e
    from .codecs import mimi

    model, folder = csm.load_csm_weights(model_path, revision=revision)
    where = Path(folder) / "mimi" if (Path(folder) / "mimi").is_dir() else codec_path
    try:
        codec = mimi.load_model(where)
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"loading failed for '{folder}': CSM needs the Mimi codec, and '{where}' could not "
            f"be loaded ({e}); put it in the model's mimi/ folder or pass codec_path="
        ) from e
    return csm.CSM(model, csm.load_tokenizer(Path(folder), None, revision), codec)


def quantize_model(model: nn.Module, config, group_size: int = 64, bits: int = 8):
    """Quantizes ``model`` in place (its linear and embedding layers whose width is a
    multiple of ``group_size``: ALBERT, the projections and the AdaIN style layers; the
    convolutions and LSTMs stay float) and returns ``(weights, config)`` to save: a flat
    weight dict and the config as a dict with ``quantization`` and ``model_type`` added.
    :func:`load_model` reads such a folder back.

    Raises:
        ValueError: Unsupported ``bits`` or ``group_size``.
    """
    from mlx.utils import tree_flatten

    if bits not in _BITS:
        raise ValueError(f"bits must be one of {_BITS}, got {bits!r}")
    if group_size not in _GROUP_SIZES:
        raise ValueError(f"group_size must be one of {_GROUP_SIZES}, got {group_size!r}")
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    if model_type_of(cfg) != "kokoro":
        raise ValueError("quantize_model quantizes Kokoro; quantize Orpheus with mlx-lm "
                         "(python -m mlx_lm convert -q)")  # fmt: skip
    from .models.kokoro.load import quantize_layers

    quantize_layers(model, group_size, bits)
    cfg["quantization"] = {"group_size": group_size, "bits": bits}
    cfg["model_type"] = "kokoro"
    if hasattr(model, "config") and hasattr(model.config, "extra"):
        model.config.extra["quantization"] = dict(cfg["quantization"])
    return dict(tree_flatten(model.parameters())), cfg


def materialize(model) -> object:
    """Evaluates every array a loaded model holds, its private ones too (rope tables, codec
    buffers); returns the model. Call it in the thread that loaded the model.

    MLX binds an unevaluated array to the stream of the thread that built it: evaluating it
    from a generation thread fails ("There is no Stream(cpu, 0) in current thread"), so a
    model built lazily in one thread must be evaluated there before others use it.
    """
    import mlx.core as mx

    found, seen, todo = [], set(), [model]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, mx.array):
            found.append(obj)
            continue
        items = []
        if isinstance(obj, dict):
            items += obj.values()
        elif isinstance(obj, (list, tuple)):
            items += obj
        if type(obj).__module__.startswith("mlx") and hasattr(obj, "__dict__"):
            items += vars(obj).values()
        todo += [v for v in items if isinstance(v, (mx.array, dict, list, tuple))
                 or type(v).__module__.startswith("mlx")]  # fmt: skip
    mx.eval(found)
    return model
