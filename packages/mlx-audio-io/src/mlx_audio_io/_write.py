"""Encoding: save, prepare_save/save_prepared, and array resampling (resample)."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from . import _args, _mp3tag
from ._atomic import OutputFile
from ._lib import check, errbuf, ffi, lib
from .errors import AudioDecodeError, AudioFormatError

_CONTAINERS = {
    ".wav": "wav",
    ".wave": "wav",
    ".w64": "w64",
    ".flac": "flac",
    ".mp3": "mp3",
    ".m4a": "m4a",
    ".aiff": "aiff",
    ".aif": "aiff",
    ".aifc": "aiff",
    ".caf": "caf",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".opus": "opus",
}
_CODES = {
    "float32": 0,
    "aac": 0,
    "pcm16": 1,
    "pcm24": 2,
    "alac": 3,
    "pcm8": 4,
    "ulaw": 5,
    "alaw": 6,
    "vorbis": 7,
    "opus": 8,
}
#: encodings each container takes; "float32" (the default) means the container's natural codec
_ALLOWED = {
    "wav": ("float32", "pcm16", "pcm24", "pcm8", "ulaw", "alaw"),
    "w64": ("float32", "pcm16", "pcm24", "pcm8"),
    "flac": ("float32", "pcm16", "pcm24"),
    "aiff": ("float32", "pcm16", "pcm24"),
    "caf": ("float32", "pcm16", "pcm24"),
    "mp3": ("float32",),
    "m4a": ("float32", "alac", "pcm16"),
    "ogg": ("float32", "vorbis", "opus"),
    "opus": ("float32", "opus"),
}
_DEFAULT_CODEC = {"ogg": "vorbis", "opus": "opus"}
_MP3_RATES = {
    # sample rates -> the bitrates (kbit/s) that MPEG-1, -2 and -2.5 layer III can carry
    (32000, 44100, 48000): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (16000, 22050, 24000): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (8000, 11025, 12000): (8, 16, 24, 32, 40, 48, 56, 64),
}
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_BITRATE_RANGES = {"aac": (16000, 320000), "vorbis": (32000, 500000), "opus": (6000, 510000)}
_MAX_CHANNELS = {"mp3": 2, "m4a": 8, "flac": 8, "ogg": 8, "opus": 8}
#: bytes per sample of the RIFF/W64 PCM encodings: the fmt chunk's block align (16 bits) and
#: byte rate (32 bits) bound channels and sample rate
_WAV_BYTES = {"float32": 4, "pcm16": 2, "pcm24": 3, "pcm8": 1, "ulaw": 1, "alaw": 1}
#: writers whose files hold no stream at all without a frame (libav's, as ffmpeg's own output)
_NEED_FRAMES = {"mp3": "MP3", "m4a": "M4A", "opus": "Ogg Opus"}
_LOSSY = ("aac", "vorbis", "opus")  # and MP3, whose codec goes by its container
_warned_bitrates: set[tuple[int, int, int]] = set()
_FLAC_LEVELS = {"default": -1, "fast": 0}


@dataclass(frozen=True)
class PreparedAudio:
    """Audio made ready for :func:`save_prepared`: a float32 NumPy view ``[frames, channels]``
    (no copy when the input allowed it) that any thread can write without touching MLX."""

    samples: np.ndarray
    squeezed: bool = False

    @property
    def frames(self) -> int:
        return self.samples.shape[0]

    @property
    def channels(self) -> int:
        return self.samples.shape[1]


def _container(target, fmt, what: str) -> str:
    if fmt is not None:
        key = "." + str(fmt).lower().lstrip(".")
        if key not in _CONTAINERS:
            raise AudioFormatError(f"format must be one of {sorted(set(_CONTAINERS))}, got {fmt!r}")
        return _CONTAINERS[key]
    name = target if isinstance(target, str) else getattr(target, "name", None)
    if not isinstance(name, str):
        raise AudioFormatError(f"{what}: writing to a file object needs format= (e.g. 'wav')")
    ext = os.path.splitext(name)[1].lower()
    if ext not in _CONTAINERS:
        raise AudioFormatError(
            f"{what}: unsupported output format {ext or '(no extension)'!r}; "
            f"supported: {', '.join(sorted(set(_CONTAINERS)))}"
        )
    return _CONTAINERS[ext]


def _auto_layout(shape, layout: str) -> str:
    if layout != "auto":
        return _args.layout(layout)
    # [channels, frames] when the first axis looks like channels and the second like time
    return "channels_first" if len(shape) == 2 and shape[0] <= 8 < shape[1] else "channels_last"


def prepare_save(audio, layout="auto") -> PreparedAudio:
    """Evaluates and converts audio for :func:`save_prepared`, which then needs no MLX.

    Args:
        audio: ``mx.array`` or NumPy array of floats, 1-D (mono) or 2-D.
        layout: ``"auto"`` (``[channels, frames]`` when the first axis has at most 8 entries and
            the second more), ``"channels_last"`` or ``"channels_first"``.

    Returns:
        A :class:`PreparedAudio`. Transposed and strided inputs stay views (no copy); float16
        and float64 are converted to float32.
    """
    if isinstance(audio, mx.array):
        if audio.dtype == mx.bfloat16:  # NumPy has no bfloat16
            audio = audio.astype(mx.float32)
        mx.eval(audio)
    arr = np.asarray(audio)
    if not np.issubdtype(arr.dtype, np.floating):
        raise AudioFormatError(
            f"audio must be floating point (float32/float16/float64 in [-1, 1]), got "
            f"{arr.dtype}; for integer PCM divide by its full scale first (e.g. x / 32768)"
        )
    if arr.ndim not in (1, 2):
        raise AudioFormatError(f"audio must be 1-D or 2-D, got shape {arr.shape}")
    layout = _auto_layout(arr.shape, layout)
    if arr.ndim == 1:
        arr = arr[:, None]
    elif layout == "channels_first":
        arr = arr.T
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    frames, channels = arr.shape
    if channels > 64 and frames < channels and layout != "channels_first":
        raise AudioFormatError(
            f"audio has shape {tuple(np.shape(audio))}, which with layout={layout!r} means "
            f"{channels} channels of {frames} frames; pass layout='channels_first' if the "
            "channels come first"
        )
    return PreparedAudio(arr, np.ndim(audio) == 1)


def _pointer(arr: np.ndarray):
    """Native pointer to arr[0, 0] and the strides in elements (any sign) of a float32 array."""
    if arr.size == 0:
        return ffi.NULL, arr.shape[1], 1
    fs, cs = (s // arr.itemsize for s in arr.strides)
    return ffi.cast("float *", arr.__array_interface__["data"][0]), fs, cs


def _codec(container: str, encoding: str) -> str:
    if encoding == "float32" and container in _DEFAULT_CODEC:
        return _DEFAULT_CODEC[container]
    if container == "m4a" and encoding == "float32":
        return "aac"
    return encoding


def _bitrate(container: str, codec: str, bitrate, sr: int, channels: int, where: str) -> int:
    lossy = container == "mp3" or codec in _BITRATE_RANGES
    if bitrate == "auto" or bitrate is None:
        if container == "mp3":
            return 1000 * (192 if sr >= 32000 else 64 if sr >= 16000 else 32)
        return 96000 * min(channels, 2) if codec == "aac" else 0  # 0: the codec's own default
    if not lossy:
        raise AudioFormatError(
            f"{where}: bitrate is only used by lossy encodings (.mp3, .m4a AAC, Ogg Vorbis, "
            f"Opus), not {container} with {codec}; got bitrate={bitrate!r}"
        )
    m = re.fullmatch(r"\s*(\d+)\s*(k?)\s*", str(bitrate).lower())
    if isinstance(bitrate, bool) or not m:
        raise AudioFormatError(
            f"bitrate must be 'auto', a string like '192k', or bits per second, got {bitrate!r}"
        )
    bps = int(m.group(1)) * (1000 if m.group(2) else 1)
    if container == "mp3":
        return 1000 * _mp3_kbps(sr, channels, bps, bitrate)
    lo, hi = _BITRATE_RANGES[codec]
    hi *= max(1, channels // 2)
    if not lo <= bps <= hi:
        raise AudioFormatError(
            f"{where}: {codec} bitrate must be {lo // 1000}k-{hi // 1000}k for {channels} "
            f"channel(s), got {bitrate!r}"
        )
    return bps


def _mp3_kbps(sr: int, channels: int, bps: int, asked) -> int:
    """The MP3 bitrate (kbit/s) nearest to bps that the MPEG version at sr carries; a bitrate
    it cannot carry (192k at 22.05 kHz) is replaced, with one warning per combination.

    Stereo at 8k and 22.05/24 kHz leaves under 4 bytes per channel and granule: libmpg123
    (our MP3 decoder) rejects some of those frames and zero-fills them, and the right channel
    comes back unrelated to the input (docs/fast_mp3_augment.md); 16k is the lowest that
    keeps both channels."""
    allowed = next(v for k, v in _MP3_RATES.items() if sr in k)
    kbps = min(allowed, key=lambda b: (abs(1000 * b - bps), -b))
    why = (
        "MPEG-1 carries 32k-320k at 32-48 kHz, MPEG-2 8k-160k at 16-24 kHz, MPEG-2.5 8k-64k "
        "at 8-12 kHz"
    )
    if kbps == 8 and channels == 2 and sr in (22050, 24000):
        kbps = 16
        why = "8k stereo frames at this rate are too small for libmpg123 to decode both channels"
    if 1000 * kbps != bps and (sr, channels, bps) not in _warned_bitrates:
        _warned_bitrates.add((sr, channels, bps))
        warnings.warn(
            f"bitrate={asked!r} cannot be coded as MP3 at {sr} Hz; using {kbps}k ({why})",
            UserWarning,
            stacklevel=5,
        )
    return kbps


def _check_limits(container: str, encoding: str, sr: int, channels: int, where: str) -> None:
    """What the container's header fields can hold, checked before anything is written."""
    if container in ("wav", "w64") and encoding in _WAV_BYTES:
        block = channels * _WAV_BYTES[encoding]
        if block > 0xFFFF:
            raise AudioFormatError(
                f"{where}: .{container} with {encoding} holds at most "
                f"{0xFFFF // _WAV_BYTES[encoding]} channels (a frame is at most 65535 bytes), "
                f"got {channels}"
            )
        if sr * block > 0xFFFFFFFF:
            raise AudioFormatError(
                f"{where}: .{container} with {channels} {encoding} channel(s) holds sample "
                f"rates up to {0xFFFFFFFF // block} Hz (the byte rate is 32 bits), got {sr}"
            )


def _check_frames(container: str, codec: str, frames: int, where: str) -> None:
    """MP3, M4A and Opus files with no frame hold no stream a decoder reads back."""
    need = _NEED_FRAMES.get(container) or ("Ogg Opus" if codec == "opus" else None)
    if frames == 0 and need:
        raise AudioFormatError(
            f"{where}: an {need} file needs at least one frame (with none, "
            "the file holds no audio stream that a decoder could read back); use .wav, "
            ".flac, .aiff, .caf or .ogg for empty audio"
        )


def _check_samples(container: str, codec: str, samples: np.ndarray, clip: bool, where: str):
    """Lossy encoders abort on NaN or infinite input (LAME asserts): say so instead. With
    clip=True the native layer maps NaN to 0 and clamps infinities, so only clip=False
    needs the scan."""
    if clip or (container != "mp3" and codec not in _LOSSY):
        return
    finite = np.isfinite(samples)
    if not finite.all():
        frame = int(np.argwhere(~finite)[0][0])
        encoder = "mp3" if container == "mp3" else codec
        raise AudioFormatError(
            f"{where}: the {encoder} encoder cannot take NaN or infinite samples (first at "
            f"frame {frame}); pass clip=True (NaN becomes 0, infinities +-1) or clean the "
            "audio first"
        )


def _check_rate(container: str, codec: str, sr: int, channels: int, where: str) -> None:
    if container == "mp3" and not any(sr in k for k in _MP3_RATES):
        rates = sorted(r for k in _MP3_RATES for r in k)
        raise AudioFormatError(
            f"{where}: MP3 supports sample rates {rates}, got {sr}; "
            "resample first (e.g. mlx_audio_io.resample(x, sr, 48000))"
        )
    if codec == "aac" or codec == "alac" or (container == "m4a" and codec == "pcm16"):
        if sr not in _AAC_RATES:
            raise AudioFormatError(
                f"{where}: M4A supports sample rates {list(_AAC_RATES)}, got {sr}"
            )
    limit = _MAX_CHANNELS.get(container)
    if limit and channels > limit:
        raise AudioFormatError(
            f"{where}: .{container} holds at most {limit} channels, got {channels}"
        )


def _flac_level(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 12:
        return value
    if value not in _FLAC_LEVELS:
        raise AudioFormatError(
            f"flac_compression must be 'default' or 'fast' (or a level 0-12), got {value!r}"
        )
    return _FLAC_LEVELS[value]


def save_prepared(
    path,
    audio: PreparedAudio,
    sr,
    encoding="float32",
    bitrate="auto",
    clip=True,
    flac_compression="default",
    format=None,
) -> None:
    """Writes a :class:`PreparedAudio`; safe to call from worker threads (no MLX calls).

    Arguments after ``audio`` are as for :func:`save`.
    """
    if not isinstance(audio, PreparedAudio):
        raise TypeError(
            f"audio must be a PreparedAudio (from prepare_save), got {type(audio).__name__}"
        )
    to_file = isinstance(path, (str, os.PathLike))
    if not to_file and not callable(getattr(path, "write", None)):
        raise TypeError(
            f"path must be a str, os.PathLike or a writable binary file, got {type(path).__name__}"
        )
    name = _args.as_path(path) if to_file else getattr(path, "name", None)
    where = f"save failed for '{name if isinstance(name, str) else '<file object>'}'"
    container = _container(name if to_file else path, format, where)
    if encoding not in _CODES or encoding not in _ALLOWED[container]:
        raise AudioFormatError(
            f"{where}: encoding {encoding!r} is not supported for .{container}; use one of "
            f"{list(_ALLOWED[container])}"
        )
    sr = _args.positive_int("sr", sr)
    samples = audio.samples
    codec = _codec(container, encoding)
    if codec == "opus" and sr not in _OPUS_RATES:  # Opus codes 8-48 kHz only; decoders give 48k
        samples = np.asarray(resample(samples, sr, 48000, quality="best"))
        sr = 48000
    frames, channels = samples.shape
    _check_rate(container, codec, sr, channels, where)
    _check_limits(container, encoding, sr, channels, where)
    bps = _bitrate(container, codec, bitrate, sr, channels, where)
    level = _flac_level(flac_compression)
    _check_frames(container, codec, frames, where)
    _check_samples(container, codec, samples, bool(clip), where)
    ptr, fs, cs = _pointer(samples)
    args = (ptr, frames, channels, fs, cs, sr, _CODES[codec], bps, bool(clip), level)
    err = errbuf()
    if to_file:  # into a temporary file, renamed over the target once complete
        out = OutputFile(name, "save")
        try:
            rc = lib.aio_save(_args.native_path(out.write_path), container.encode(), *args, err)
            check(rc, err, "save", name)
            if container == "mp3" and not out.through:
                _mp3tag.fix_file(out.write_path, frames)
            out.commit()
        finally:
            out.discard()
        return
    out, size = ffi.new("unsigned char **"), ffi.new("int64_t *")
    check(
        lib.aio_save_memory(container.encode(), *args, out, size, err), err, "save", "<file object>"
    )
    try:
        data = ffi.buffer(out[0], size[0])
        if container == "mp3":
            _mp3tag.fix_buffer(data, frames)
        path.write(data)
    except OSError as e:  # the file object's own write
        raise AudioDecodeError(f"{where}: write failed: {e}") from e
    finally:
        lib.aio_free(out[0])


def save(
    path,
    audio,
    sr,
    layout="auto",
    encoding="float32",
    bitrate="auto",
    clip=True,
    flac_compression="default",
    format=None,
) -> None:
    """Writes audio to a file or a binary file object.

    Args:
        path: Output path (str or os.PathLike) whose extension picks the format: .wav, .w64,
            .flac, .mp3, .m4a, .aiff/.aif, .caf, .ogg, .opus. Or a writable binary file object
            (e.g. ``io.BytesIO``), with ``format=``.
        audio: ``mx.array`` or NumPy array of floats, 1-D (mono) or 2-D.
        sr: Sample rate in Hz.
        layout: ``"auto"`` (``[channels, frames]`` when the first axis has at most 8 entries and
            the second more, else ``[frames, channels]``), ``"channels_last"`` or
            ``"channels_first"``.
        encoding: ``"float32"`` (the default: float WAV/AIFF/CAF, 24-bit FLAC, the codec's own
            for MP3, AAC in .m4a, Vorbis in .ogg, Opus in .opus), ``"pcm16"``, ``"pcm24"``,
            ``"pcm8"``, ``"ulaw"``, ``"alaw"`` (WAV), ``"alac"`` (.m4a), ``"vorbis"``,
            ``"opus"`` (.ogg). docs/io.md has the full table.
        bitrate: ``"auto"``, ``"192k"`` or bits per second; MP3, AAC, Vorbis and Opus only.
        clip: Clamp samples to [-1, 1] before float encodings. Integer PCM always saturates.
        flac_compression: ``"default"`` (level 5), ``"fast"`` (level 0) or a level 0-12.
        format: Container name (``"wav"``, ``"flac"``, ...); required for file objects without
            a ``name``, and overrides the extension otherwise.

    Raises:
        ValueError: Unsupported format, encoding, bitrate, sample rate or shape.
        RuntimeError: The file cannot be written.
    """
    save_prepared(
        path,
        prepare_save(audio, layout),
        sr,
        encoding=encoding,
        bitrate=bitrate,
        clip=clip,
        flac_compression=flac_compression,
        format=format,
    )


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
    arr = prepare_save(audio, _args.layout(layout)).samples
    dtype = audio.dtype if isinstance(audio, mx.array) else mx.float32
    if dtype not in (mx.float16, mx.bfloat16, mx.float32):
        dtype = mx.float32
    frames, channels = arr.shape
    n_out = lib.aio_resample_frames(frames, in_sr, out_sr)
    if n_out * channels >= 2**31:  # an MLX array's size limit
        raise AudioFormatError(
            f"resample from {in_sr} to {out_sr} Hz would make {n_out} frames x {channels} "
            "channel(s), more than one array holds; check in_sr and out_sr"
        )
    if in_sr == out_sr:
        out = mx.array(np.ascontiguousarray(arr))
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
