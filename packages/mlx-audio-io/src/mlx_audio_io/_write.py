"""Encoding (save) and array resampling (resample)."""

from __future__ import annotations

import os
import re

import mlx.core as mx
import numpy as np

from . import _args
from ._lib import check, errbuf, ffi, lib
from .errors import AudioFormatError

_CONTAINERS = {
    ".wav": "wav",
    ".wave": "wav",
    ".flac": "flac",
    ".mp3": "mp3",
    ".m4a": "m4a",
    ".aiff": "aiff",
    ".aif": "aiff",
    ".aifc": "aiff",
    ".caf": "caf",
}
_ENCODINGS = {"float32": 0, "pcm16": 1, "pcm24": 2, "alac": 3}
#: encodings each container takes (the first is what "float32", the default, means there)
_ALLOWED = {
    "wav": ("float32", "pcm16", "pcm24"),
    "flac": ("float32", "pcm16", "pcm24"),
    "aiff": ("float32", "pcm16", "pcm24"),
    "caf": ("float32", "pcm16", "pcm24"),
    "mp3": ("float32",),
    "m4a": ("float32", "alac", "pcm16"),
}
_MP3_RATES = {
    # sample rates -> the bitrates (kbit/s) that MPEG-1, -2 and -2.5 layer III can carry
    (32000, 44100, 48000): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (16000, 22050, 24000): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (8000, 11025, 12000): (8, 16, 24, 32, 40, 48, 56, 64),
}
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_MAX_CHANNELS = {"mp3": 2, "m4a": 8, "flac": 8}


def _container(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in _CONTAINERS:
        supported = ", ".join(sorted(set(_CONTAINERS)))
        raise AudioFormatError(
            f"save failed for '{path}': unsupported output format {ext or '(no extension)'!r}; "
            f"supported: {supported}"
        )
    return _CONTAINERS[ext]


def _as_frames(audio, layout: str, what: str) -> np.ndarray:
    """A float32 NumPy view (no copy when possible) shaped [frames, channels]."""
    layout = _args.layout(layout)
    if isinstance(audio, mx.array):
        mx.eval(audio)
    arr = np.asarray(audio)
    if not np.issubdtype(arr.dtype, np.floating):
        raise AudioFormatError(
            f"{what} needs floating-point audio (float32/float16/float64 in [-1, 1]), got "
            f"{arr.dtype}; for integer PCM divide by its full scale first (e.g. x / 32768)"
        )
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim == 2:
        if layout == "channels_first":
            arr = arr.T
    else:
        raise AudioFormatError(f"{what} needs 1-D or 2-D audio, got shape {arr.shape}")
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    frames, channels = arr.shape
    if channels > 64 and frames < channels:
        raise AudioFormatError(
            f"{what} got shape {tuple(np.shape(audio))}, which with layout={layout!r} means "
            f"{channels} channels of {frames} frames; pass layout='channels_first' if the "
            "channels come first"
        )
    return arr


def _pointer(arr: np.ndarray):
    """Native pointer to arr[0, 0] and the strides in elements (any sign) of a float32 array."""
    if arr.size == 0:
        return ffi.NULL, arr.shape[1], 1
    fs, cs = (s // arr.itemsize for s in arr.strides)
    return ffi.cast("float *", arr.__array_interface__["data"][0]), fs, cs


def _bitrate(container: str, encoding: str, bitrate, sr: int, channels: int, path: str) -> int:
    lossy = container == "mp3" or (container == "m4a" and encoding == "float32")
    if bitrate == "auto" or bitrate is None:
        if container == "mp3":
            return 1000 * (192 if sr >= 32000 else 64 if sr >= 16000 else 32)
        return 96000 * min(channels, 2) if lossy else 0
    if not lossy:
        raise AudioFormatError(
            f"save failed for '{path}': bitrate is only used by lossy encodings (.mp3, .m4a "
            f"AAC), not {container} with encoding={encoding!r}; got bitrate={bitrate!r}"
        )
    m = re.fullmatch(r"\s*(\d+)\s*(k?)\s*", str(bitrate).lower())
    if isinstance(bitrate, bool) or not m:
        raise AudioFormatError(
            f"bitrate must be 'auto', a string like '192k', or bits per second, got {bitrate!r}"
        )
    bps = int(m.group(1)) * (1000 if m.group(2) else 1)
    if container == "mp3":
        allowed = next(v for k, v in _MP3_RATES.items() if sr in k)
        if bps % 1000 or bps // 1000 not in allowed:
            raise AudioFormatError(
                f"save failed for '{path}': MP3 at {sr} Hz takes bitrates "
                f"{', '.join(f'{b}k' for b in allowed)}; got {bitrate!r}"
            )
    elif not 16000 <= bps <= 320000 * max(1, channels // 2):
        raise AudioFormatError(f"AAC bitrate must be 16k-320k per channel pair, got {bitrate!r}")
    return bps


def _check_rate(container: str, sr: int, channels: int, path: str) -> None:
    if container == "mp3" and not any(sr in k for k in _MP3_RATES):
        rates = sorted(r for k in _MP3_RATES for r in k)
        raise AudioFormatError(
            f"save failed for '{path}': MP3 supports sample rates {rates}, got {sr}; "
            "resample first (e.g. mlx_audio_io.resample(x, sr, 48000))"
        )
    if container == "m4a" and sr not in _AAC_RATES and channels:
        raise AudioFormatError(
            f"save failed for '{path}': M4A supports sample rates {list(_AAC_RATES)}, got {sr}"
        )
    limit = _MAX_CHANNELS.get(container)
    if limit and channels > limit:
        raise AudioFormatError(
            f"save failed for '{path}': .{container} holds at most {limit} channels, got {channels}"
        )


def save(
    path, audio, sr, layout="channels_last", encoding="float32", bitrate="auto", clip=True
) -> None:
    """Writes audio to a file; the format comes from the extension.

    Args:
        path: Output path (str or os.PathLike): .wav, .flac, .mp3, .m4a, .aiff/.aif, .caf.
        audio: ``mx.array`` or NumPy array of floats, 1-D (mono) or 2-D.
        sr: Sample rate in Hz.
        layout: ``"channels_last"`` (``[frames, channels]``) or ``"channels_first"``.
        encoding: ``"float32"`` (WAV/AIFF/CAF float; FLAC and ALAC 24-bit; the codec's own
            format for MP3 and AAC), ``"pcm16"``, ``"pcm24"`` (WAV, FLAC, AIFF, CAF; ``"pcm16"``
            also .m4a as 16-bit ALAC) or ``"alac"`` (.m4a, 24-bit ALAC).
        bitrate: ``"auto"``, ``"192k"`` or bits per second; MP3 and M4A/AAC only.
        clip: Clamp samples to [-1, 1] before float encodings. Integer PCM always saturates.

    Raises:
        ValueError: Unsupported format, encoding, bitrate, sample rate or shape.
        RuntimeError: The file cannot be written.
    """
    path = _args.as_path(path)
    container = _container(path)
    if encoding not in _ENCODINGS or encoding not in _ALLOWED[container]:
        raise AudioFormatError(
            f"save failed for '{path}': encoding {encoding!r} is not supported for "
            f".{container}; use one of {list(_ALLOWED[container])}"
        )
    sr = _args.positive_int("sr", sr)
    arr = _as_frames(audio, layout, "save")
    frames, channels = arr.shape
    _check_rate(container, sr, channels, path)
    bps = _bitrate(container, encoding, bitrate, sr, channels, path)
    ptr, fs, cs = _pointer(arr)
    err = errbuf()
    rc = lib.aio_save(
        path.encode(),
        container.encode(),
        ptr,
        frames,
        channels,
        fs,
        cs,
        sr,
        _ENCODINGS[encoding],
        bps,
        bool(clip),
        err,
    )
    check(rc, err, "save", path)


def resample(audio, in_sr, out_sr, quality="default", layout="channels_last"):
    """Band-limited resampling (libsoxr) of an array.

    Args:
        audio: ``mx.array`` or NumPy array, 1-D or 2-D, float.
        in_sr: Its sample rate in Hz.
        out_sr: The rate wanted, in Hz.
        quality: As ``load``'s ``resample_quality``.
        layout: Layout of a 2-D ``audio``; the result has the same.

    Returns:
        ``mx.array`` of ``ceil(frames * out_sr / in_sr)`` frames, same ndim, layout and float
        dtype (float16 stays float16) as the input.
    """
    in_sr = _args.positive_int("in_sr", in_sr)
    out_sr = _args.positive_int("out_sr", out_sr)
    q = _args.quality(quality)
    arr = _as_frames(audio, layout, "resample")
    dtype = audio.dtype if isinstance(audio, mx.array) else mx.float32
    if dtype not in (mx.float16, mx.bfloat16, mx.float32):
        dtype = mx.float32
    frames, channels = arr.shape
    n_out = lib.aio_resample_frames(frames, in_sr, out_sr)
    if in_sr == out_sr:
        out = mx.array(arr)
    else:
        src = np.ascontiguousarray(arr)
        out = mx.zeros((n_out, channels), dtype=mx.float32)
        mx.eval(out)
        err = errbuf()
        rc = lib.aio_resample(
            ffi.from_buffer("float[]", src),
            frames,
            channels,
            in_sr,
            out_sr,
            q,
            ffi.from_buffer("float[]", out, require_writable=True),
            n_out,
            err,
        )
        check(rc, err, "resample")
    if np.ndim(audio) == 1:
        out = out[:, 0]
    elif layout == "channels_first":
        out = mx.contiguous(out.T)
    out = out.astype(dtype) if dtype != mx.float32 else out
    mx.eval(out)
    return out
