"""Whole-track source separation with HTDemucs: the path of ``demucs.api.Separator``."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np

from .models.htdemucs import BagOfModels, HTDemucs, apply_model
from .models.htdemucs.config import to_fraction
from .models.htdemucs.pretrained import from_pretrained

_CACHE: dict[str, object] = {}


def get_model(model="htdemucs"):
    """A loaded model: passes ``HTDemucs``/``BagOfModels`` through, loads names and paths once
    per process (see :func:`mlx_audio_sts.HTDemucs.from_pretrained`)."""
    if isinstance(model, (HTDemucs, BagOfModels)):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a name, a path or a loaded model, got {model!r}")
    key = os.fspath(model)
    if key not in _CACHE:
        _CACHE[key] = from_pretrained(key)
    return _CACHE[key]


def check_options(model, shifts=1, overlap=0.25, segment=None) -> None:
    """Checks the separation options against a loaded model before any audio is decoded or
    separated (``separate`` and the CLI call it once, not after minutes of work).

    Raises:
        ValueError: ``shifts`` is not an int >= 0, ``overlap`` is not in [0, 1), or
            ``segment`` is not in (0, the model's segment] seconds.
    """
    if isinstance(shifts, bool) or not isinstance(shifts, int) or shifts < 0:
        raise ValueError(f"shifts must be a whole number >= 0, got {shifts!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real) or not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    if segment is not None:
        limit = model.segment
        try:
            seg = to_fraction(segment)
        except (TypeError, ValueError, KeyError, ZeroDivisionError) as e:
            raise ValueError(
                f"segment must be seconds in (0, {float(limit)}], got {segment!r}"
            ) from e
        if not 0 < seg <= limit:
            raise ValueError(f"segment must be seconds in (0, {float(limit)}], got {segment!r}")


def _convert_channels(wav: np.ndarray, channels: int, where: str) -> np.ndarray:
    """``[C, L]`` to the model's channels, as demucs' ``convert_audio_channels``."""
    have = wav.shape[0]
    if have == channels:
        return wav
    if channels == 1:
        return wav.mean(axis=0, keepdims=True)
    if have == 1:
        return np.repeat(wav, channels, axis=0)
    if have > channels:
        return wav[:channels]
    raise ValueError(
        f"separation failed for '{where}': {have} channels, the model needs {channels}"
    )


def _input(audio_or_path, sample_rate, model_sr: int, channels: int):
    if isinstance(audio_or_path, (str, os.PathLike)):
        where = os.fspath(audio_or_path)
        wav = np.array(aio.load(where, sr=model_sr, layout="channels_first")[0])
    else:
        where = "<array>"
        wav = np.asarray(audio_or_path, dtype=np.float32)
        if wav.ndim == 1:
            wav = wav[:, None]
        if wav.ndim != 2:
            raise ValueError(f"audio must be [frames, channels], got shape {wav.shape}")
        if sample_rate is None:
            raise ValueError("sample_rate is required when audio is an array")
        if sample_rate != model_sr:
            wav = np.array(aio.resample(wav, sample_rate, model_sr))
        wav = np.ascontiguousarray(wav.T)
    if wav.shape[-1] == 0:
        raise ValueError(f"separation failed for '{where}': the audio is empty")
    if not np.isfinite(wav).all():
        raise ValueError(f"separation failed for '{where}': the audio contains NaN or inf")
    return _convert_channels(wav.astype(np.float32), channels, where)


def separate(
    audio_or_path,
    model="htdemucs",
    shifts: int = 1,
    overlap: float = 0.25,
    split: bool = True,
    segment: float | None = None,
    *,
    sample_rate: int | None = None,
    normalize: bool = True,
    seed: int | None = None,
    layout: str = "channels_last",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, mx.array]:
    """Separates a track into its sources (drums, bass, other, vocals, ...).

    Args:
        audio_or_path: A file path (decoded and resampled to the model's rate), or audio
            ``[frames, channels]`` (or 1-D mono) as ``mx.array``/NumPy with ``sample_rate``.
            Mono is duplicated to the model's two channels, as demucs does.
        model: ``"htdemucs"``, ``"htdemucs_ft"``, ``"htdemucs_6s"``, a path or Hub repo, or a
            loaded ``HTDemucs``/``BagOfModels``.
        shifts: Random shifts to average (demucs' shift trick); 0 for none.
        overlap: Overlap of consecutive windows, as a fraction of the window.
        split: Window the track (default); False runs one pass (at most ``segment`` long).
        segment: Window length in seconds (at most the model's, 7.8 s for htdemucs).
        sample_rate: Rate of an array input, in Hz.
        normalize: Standardise the track by the mean and deviation of its mono mix before
            the model and undo it after, as ``demucs.api`` does.
        seed: Seeds the shifts for reproducible output.
        layout: ``"channels_last"`` (``[frames, channels]``) or ``"channels_first"``.
        progress: Called with ``(windows_done, windows_total)``.

    Returns:
        ``{source_name: float32 mx.array}`` at the model's sample rate.

    Raises:
        ValueError: Empty or non-finite audio, a bad channel count, or bad options (checked
            before the audio is decoded).
        FileNotFoundError: The file or the model cannot be found.
    """
    if layout not in ("channels_last", "channels_first"):
        raise ValueError(f"layout must be 'channels_last' or 'channels_first', got {layout!r}")
    if isinstance(shifts, bool) or not isinstance(shifts, int) or shifts < 0:
        raise ValueError(f"shifts must be a whole number >= 0, got {shifts!r}")
    net = get_model(model)
    check_options(net, shifts, overlap, segment)  # before the track is decoded
    wav = _input(audio_or_path, sample_rate, net.samplerate, net.audio_channels)
    mean, std = 0.0, 1.0
    if normalize:
        ref = wav.mean(axis=0)
        mean = float(ref.mean())
        std = float(ref.std(ddof=1)) + 1e-8 if ref.size > 1 else 1.0
    out = apply_model(
        net, ((wav - mean) / std)[None], shifts=shifts, split=split, overlap=overlap,
        segment=segment, seed=seed, progress=progress,
    )[0]  # fmt: skip
    out = out * std + mean
    if layout == "channels_last":
        out = out.transpose(0, 2, 1)
    return {name: out[i] for i, name in enumerate(net.sources)}
