"""Loading CSM-1B from a folder, a weight file or a Hub repo, in any layout :mod:`.convert`
reads, and its Llama-3 tokenizer.

Weights: ``model.safetensors`` (or shards ``model-*.safetensors``) first, else a PyTorch
``ckpt.pt`` / ``*.pt`` / ``*.pth`` read by the restricted unpickler
(:func:`mlx_audio_io.torchfile.load_torch_file`, which runs no code). Config: the folder's
``config.json`` in any style :class:`~.config.ModelArgs` reads, else the official one.
Tokenizer: the folder's ``tokenizer.json``, else ``tokenizer=`` (a folder or Hub repo id,
default ``unsloth/Llama-3.2-1B``: the same tokenizer as the original's
``meta-llama/Llama-3.2-1B``, without its licence gate).
"""

from __future__ import annotations

import os
from pathlib import Path

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io.hub import read_config, resolve_model_path
from mlx_audio_io.quant import use_fast_layers

import mlx.core as mx
import numpy as np

from .config import ModelArgs
from .model import Model

DEFAULT_MODEL = "mlx-community/csm-1b"
DEFAULT_TOKENIZER = "unsloth/Llama-3.2-1B"
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
_TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


class TextTokenizer:
    """The Llama-3 tokenizer as CSM uses it: ``encode(text)`` is ``<|begin_of_text|>``, the
    text's tokens, ``<|end_of_text|>`` (the original's ``TemplateProcessing`` over
    ``meta-llama/Llama-3.2-1B``, whose BOS/EOS these are: 128000, 128001)."""

    def __init__(self, path: str | os.PathLike):
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise RuntimeError(f"CSM needs `tokenizers`: pip install 'mlx-audio-tts[orpheus]' "
                               f"(mlx-lm brings it) ({e})") from e  # fmt: skip
        self.path = Path(path)
        self.tokenizer = Tokenizer.from_file(os.fspath(path))
        ids = [self.tokenizer.token_to_id(t) for t in ("<|begin_of_text|>", "<|end_of_text|>")]
        if None in ids:
            raise ValueError(f"loading failed for '{path}': not a Llama-3 tokenizer (no "
                             "<|begin_of_text|> or <|end_of_text|> token)")  # fmt: skip
        self.bos_id, self.eos_id = ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` between BOS and EOS."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids, self.eos_id]


def load_tokenizer(folder: Path | None, tokenizer: str | os.PathLike | None = None,
                   revision: str | None = None) -> TextTokenizer:  # fmt: skip
    """``tokenizer`` (a ``tokenizer.json``, a folder or Hub repo holding one) if given, else
    ``folder``'s ``tokenizer.json``, else :data:`DEFAULT_TOKENIZER` from the Hub."""
    if tokenizer is None and folder is not None and (folder / "tokenizer.json").is_file():
        return TextTokenizer(folder / "tokenizer.json")
    where = resolve_model_path(tokenizer or DEFAULT_TOKENIZER, allow_patterns=_TOKENIZER_FILES,
                               revision=revision if tokenizer else None)  # fmt: skip
    path = where if where.is_file() else where / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"loading failed for '{where}': no tokenizer.json")
    return TextTokenizer(path)


def _weight_files(folder: Path) -> list[Path]:
    """The checkpoint's weight files: the shards ``model.safetensors.index.json`` lists (all
    of them there), else every safetensors file, else one PyTorch file.

    Raises:
        FileNotFoundError: A listed shard is missing.
        ValueError: A bad index.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_config(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"loading failed for '{index}': no weight_map object")
        names = sorted(set(map(str, weight_map.values())))
        if any(Path(n).name != n for n in names):
            raise ValueError(f"loading failed for '{index}': a shard name is a path")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"loading failed for '{folder}': shard '{missing[0]}' "
                "listed in model.safetensors.index.json is missing"
            )
        return [folder / n for n in names]
    shards = sorted(folder.glob("model*.safetensors")) or sorted(folder.glob("*.safetensors"))
    if shards:
        return shards
    for pattern in ("ckpt.pt", *(f"*{s}" for s in _TORCH_SUFFIXES)):
        found = sorted(folder.glob(pattern))
        if found:
            return found[:1]
    return []


def read_weights(path: Path) -> dict:
    """name → array of one weight file (safetensors, or PyTorch through the restricted
    unpickler, unwrapping a ``{"model": ...}`` or ``{"state_dict": ...}``).

    Raises:
        ValueError: Not a file of names to tensors.
    """
    if path.suffix in _TORCH_SUFFIXES:
        from mlx_audio_io.torchfile import load_torch_file

        state = load_torch_file(path)
        for key in ("model", "state_dict"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    else:
        try:
            state = mx.load(os.fspath(path))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"loading failed for '{path}': {e}") from e
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray | mx.array) for k, v in state.items()
    ):
        raise ValueError(f"loading failed for '{path}': not a CSM state dict (names to tensors)")
    return state


def _resolve(src: str | os.PathLike, revision: str | None) -> Path:
    """A local path, or the Hub snapshot with JSON and safetensors (PyTorch files only when
    the repo has no safetensors: sesame/csm-1b holds both)."""
    path = Path(src).expanduser()
    if path.exists():
        return path
    folder = resolve_model_path(src, revision=revision, allow_patterns=["*.json", "*.safetensors"])
    if _weight_files(folder):
        return folder
    return resolve_model_path(
        src, revision=revision, allow_patterns=["*.json", *(f"*{s}" for s in _TORCH_SUFFIXES)]
    )


def load_csm_weights(
    src: str | os.PathLike, *, revision: str | None = None, dtype: str | None = None,
    config: dict | None = None,
) -> tuple[Model, Path]:  # fmt: skip
    """CSM's :class:`~.model.Model` from a folder, a weight file or a Hub repo id, in any
    layout, loaded strictly; and the folder it came from (a file's own folder, where its
    ``config.json`` and ``tokenizer.json`` are looked for).

    Args:
        src: Folder, ``.safetensors``/``.pt`` file, or Hub repo id.
        revision: Hub revision.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` to cast to; None keeps the file's.
        config: Overrides the folder's ``config.json`` (any style).

    Raises:
        FileNotFoundError: No such path or repo, or no weights in it.
        ValueError: A bad config, dtype or weight file; missing, unexpected or misshapen weights.
    """
    if dtype is not None and dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or None, got {dtype!r}")
    path = _resolve(src, revision)
    folder = path if path.is_dir() else path.parent
    files = _weight_files(path) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"loading failed for '{path}': no model*.safetensors or ckpt.pt")
    where = folder / "config.json"
    if config is None:
        config = read_config(where) if where.is_file() else {}
    args = ModelArgs.from_dict(config)
    weights = {}
    for file in files:
        weights.update(read_weights(file))
    model = Model(args)
    try:
        converted = model.sanitize(weights)
        if dtype is not None:
            converted = {k: v.astype(_DTYPES[dtype]) for k, v in converted.items()}
        model.load_weights(list(converted.items()), strict=True)
    except ValueError as e:
        raise ValueError(f"loading failed for '{path}': {e}") from e
    mx.eval(model.parameters())
    model.eval()
    # the Llamas' and heads' products on mlx_audio_io's CPU kernels (MLX's on other devices)
    use_fast_layers(model)
    return model, folder


def load_model(
    path_or_repo: str | os.PathLike = DEFAULT_MODEL, *, codec=None,
    tokenizer: str | os.PathLike | None = None, revision: str | None = None,
    dtype: str | None = None,
):  # fmt: skip
    """CSM ready to generate: the model (:func:`load_csm_weights`), the tokenizer
    (:func:`load_tokenizer`) and ``codec`` (Mimi: ``encode``, ``decode``, ``sample_rate``;
    None: only :meth:`~.generate.CSM.generate_frames` works).

    Returns:
        A :class:`~.generate.CSM`.
    """
    from .generate import CSM

    model, folder = load_csm_weights(path_or_repo, revision=revision, dtype=dtype)
    return CSM(model, load_tokenizer(folder, tokenizer, revision), codec)
