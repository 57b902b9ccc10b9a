"""Kokoro voice packs: ``[510, 1, 256]`` float32 style tables, one row per phoneme count.

hexgrad ships them as ``voices/<name>.pt`` (``torch.save`` of one tensor), the MLX-community
copies as ``voices/<name>.safetensors`` (one tensor under ``"voice"``). Both load without
torch (the ``.pt`` through ``mlx_audio_io.torchfile``'s restricted unpickler), bit for bit.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import mlx.core as mx
import numpy as np

STYLE_WIDTH = 256


def _check_pack(pack: np.ndarray, where: str) -> np.ndarray:
    if pack.ndim == 2:
        pack = pack[:, None]
    if pack.ndim != 3 or pack.shape[1] != 1 or pack.shape[2] != STYLE_WIDTH or not pack.shape[0]:
        raise ValueError(
            f"'{where}' is not a Kokoro voice pack: expected [rows, 1, {STYLE_WIDTH}], got "
            f"shape {list(pack.shape)}"
        )
    return pack


def read_voice_file(path) -> mx.array:
    """One voice pack from a ``.pt`` or ``.safetensors`` file, as float32 ``[rows, 1, 256]``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a voice pack (wrong shape, several tensors, unreadable file).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"voice file not found: '{path}'")
    if path.suffix == ".safetensors":
        try:
            tensors = mx.load(str(path))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"loading failed for '{path}': {e}") from e
        if "voice" in tensors:
            value = tensors["voice"]
        elif len(tensors) == 1:
            value = next(iter(tensors.values()))
        else:
            raise ValueError(f"'{path}' holds {len(tensors)} tensors and none named 'voice'")
        pack = np.asarray(value.astype(mx.float32))
    else:
        from mlx_audio_io.torchfile import load_torch_file

        value = load_torch_file(path)
        if not isinstance(value, np.ndarray):
            raise ValueError(f"'{path}' does not hold a single tensor (a voice pack)")
        pack = value.astype(np.float32, copy=False)
    return mx.array(_check_pack(pack, str(path)))


def find_voice(name: str, folder=None, repo_id: str | None = None) -> Path:
    """The file of voice ``name``: in ``folder`` (or its ``voices/``), else fetched from the
    Hub repo ``repo_id`` (``voices/<name>.pt`` or ``.safetensors``).

    Raises:
        FileNotFoundError: Not in the folder and no repo given, or not in the repo.
    """
    candidates = []
    if folder is not None:
        folder = Path(folder).expanduser()
        for sub in (folder / "voices", folder):
            candidates += [sub / f"{name}.safetensors", sub / f"{name}.pt"]
        for c in candidates:
            if c.is_file():
                return c
    if repo_id is None:
        where = f" in '{folder}'" if folder is not None else ""
        raise FileNotFoundError(f"voice {name!r} not found{where} and no Hub repo to fetch it from")
    from mlx_audio_io.hub import resolve_model_path

    snapshot = resolve_model_path(
        repo_id, allow_patterns=[f"voices/{name}.pt", f"voices/{name}.safetensors"]
    )
    return find_voice(name, snapshot)


def _blend_weights(items: list) -> np.ndarray:
    """The weights of a blend as float64: each a finite number above 0 (a zero weight would
    be a voice that adds nothing, most likely a typo; a negative one is not a blend)."""
    weights = []
    for name, w in items:
        if not isinstance(name, str):
            raise ValueError(f"voice names must be strings, got {name!r}")
        ok = isinstance(w, numbers.Real) and not isinstance(w, bool)
        if not (ok and math.isfinite(w) and w > 0):
            raise ValueError(
                f"voice weights must be positive finite numbers, got {w!r} for {name!r}"
            )
        weights.append(float(w))
    return np.array(weights)


def load_voice(voice, folder=None, repo_id: str | None = None) -> mx.array:
    """A voice pack ``[rows, 1, 256]`` by name, path, blend or array.

    Args:
        voice: A name (``"af_heart"``), a file path, a comma-separated blend
            (``"af_heart,af_bella"``: the packs' mean, as kokoro's pipeline blends), a
            ``{name: weight}`` dict (weighted mean; every weight a finite number above 0), or
            an array (returned as float32).
        folder: A model folder to look for ``voices/<name>.*`` in.
        repo_id: A Hub repo to fetch voices from when they are not in ``folder``.

    Raises:
        FileNotFoundError: A named voice is nowhere to be found.
        ValueError: Not a voice pack, packs of different sizes, or weights that are not
            finite numbers above 0 (NaN, infinite, zero, negative, or not numbers).
    """
    if isinstance(voice, mx.array | np.ndarray):
        return mx.array(_check_pack(np.asarray(voice, dtype=np.float32), "array"))
    if isinstance(voice, dict):
        items = list(voice.items())
    else:
        voice = str(voice)
        if Path(voice).expanduser().is_file():
            return read_voice_file(voice)
        items = [(v.strip(), 1.0) for v in voice.split(",") if v.strip()]
    if not items:
        raise ValueError(f"no voice given: {voice!r}")
    weights = _blend_weights(items)
    packs = []
    for name, _ in items:
        path = Path(name).expanduser()
        path = path if path.is_file() else find_voice(name, folder, repo_id)
        packs.append(read_voice_file(path))
    if len(packs) == 1:
        return packs[0]
    if len({p.shape for p in packs}) > 1:
        raise ValueError(f"voice packs of different sizes: {[tuple(p.shape) for p in packs]}")
    if len(set(weights)) == 1:  # kokoro's plain mean
        return mx.mean(mx.stack(packs), axis=0)
    weights = weights / weights.max()  # first, so that huge weights cannot sum to inf
    w = mx.array((weights / weights.sum()).astype(np.float32))
    return mx.sum(mx.stack(packs) * w[:, None, None, None], axis=0)


def style_for(pack: mx.array, n_phonemes: int) -> mx.array:
    """The style row kokoro uses for ``n_phonemes`` phonemes: ``pack[n_phonemes - 1]``
    (``[1, 256]``), the last row for longer inputs."""
    if n_phonemes < 1:
        raise ValueError("a style needs at least one phoneme")
    return pack[min(n_phonemes, pack.shape[0]) - 1]
