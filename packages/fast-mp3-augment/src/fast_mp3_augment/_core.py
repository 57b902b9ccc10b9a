"""compress_roundtrip and compress_roundtrip_batch over the native LAME + libmpg123 shim."""

from __future__ import annotations

import functools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

from mlx_audio_io._args import whole

import numpy as np

from ._lib import ffi, lib
from .errors import (
    Mp3AugmentError,
    NonContiguousAudio,
    NonFiniteAudio,
    RoundTripError,
    TooShortAudio,
    UnsupportedBitrate,
    UnsupportedNumberOfChannels,
    UnsupportedQuality,
    UnsupportedSampleRate,
    WrongMultichannelAudioShape,
)

SUPPORTED_SAMPLE_RATES = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000}
SUPPORTED_BITRATES = {8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 320}
SUPPORTED_QUALITY_VALUES = set(range(10))
_MULTICHANNEL_DOC = (
    "https://iver56.github.io/audiomentations/guides/multichannel_audio_array_shapes/"
)
_warned: set[tuple[int, int, int]] = set()


def _one_of(name: str, value, allowed: set[int], error: type[Exception]) -> int:
    n = whole(value)
    if n is None or n not in allowed:
        got = n if n is not None else repr(value)
        hint = (
            " (a whole number is needed)"
            if n is None and isinstance(value, (float, np.floating))
            else ""
        )
        raise error(f"Expected {name} to be one of {sorted(allowed)}, but received {got}{hint}")
    return n


def _params(sample_rate, bitrate_kbps, quality, preserve_delay) -> tuple[int, int, int, bool]:
    """The scalar arguments as ints and a bool, checked in the public package's order."""
    sample_rate = _one_of("sample_rate", sample_rate, SUPPORTED_SAMPLE_RATES, UnsupportedSampleRate)
    bitrate_kbps = _one_of("bitrate_kbps", bitrate_kbps, SUPPORTED_BITRATES, UnsupportedBitrate)
    quality = _one_of("quality", quality, SUPPORTED_QUALITY_VALUES, UnsupportedQuality)
    if isinstance(preserve_delay, (bool, np.bool_)) or whole(preserve_delay) in (0, 1):
        return sample_rate, bitrate_kbps, quality, bool(preserve_delay)
    raise Mp3AugmentError(f"preserve_delay must be True or False, got {preserve_delay!r}")


def _is_float(dtype) -> bool:
    return dtype.kind == "f" or dtype.name == "bfloat16"  # ml_dtypes' bfloat16 is kind "V"


def _check(samples, sample_rate):
    """The public package's shape and length checks, in its order. Returns the input as a
    (channels, frames) view, and its data as aligned, native-endian, C-contiguous float32 (a
    copy only where the input is not that already)."""
    if not isinstance(samples, np.ndarray) or not _is_float(samples.dtype):
        got = samples.dtype if isinstance(samples, np.ndarray) else type(samples).__name__
        hint = ""
        if isinstance(samples, np.ndarray) and samples.dtype.kind in "iu":
            hint = "; integer PCM must be scaled first, e.g. samples / 32768 for int16"
        raise TypeError(
            "samples must be float audio (float32, or float16, bfloat16 or float64, which are "
            f"converted) as a NumPy array or mx.array, got {got}{hint}"
        )
    if samples.ndim == 2:
        if samples.shape[0] > samples.shape[1]:
            raise WrongMultichannelAudioShape(
                "Multichannel audio must have channels first, not channels last. In other "
                "words, the shape must be (channels, samples), not (samples, channels). See "
                f"{_MULTICHANNEL_DOC} for more info."
            )
        if samples.shape[0] not in (1, 2):
            raise UnsupportedNumberOfChannels(
                f"Expected mono or stereo audio, but received {samples.shape[0]} channels, "
                "which is unsupported."
            )
        if not samples.flags.c_contiguous:
            raise NonContiguousAudio(
                "The given NDArray must be C-contiguous. You can make it C-contiguous by using "
                "`np.ascontiguousarray(samples)`"
            )
        data = samples
    elif samples.ndim == 1:
        data = samples[None, :]  # any 1-D view (strided, reversed) is copied below
    else:
        raise WrongMultichannelAudioShape(
            f"samples must be 1-D (mono) or 2-D (channels, samples), got shape {samples.shape}"
        )
    if data.shape[1] < 0.1 * sample_rate:
        raise TooShortAudio(
            f"The input audio {data.shape[1]} samples is too short. It needs to be at least 100 ms."
        )
    # C reads native-endian, aligned float32 rows: convert or copy only when that is not so
    return data, np.require(data, np.float32, ["C_CONTIGUOUS", "ALIGNED"])


@functools.cache
def _lame_layout(sample_rate: int, channels: int, bitrate_kbps: int) -> tuple[int, int]:
    """LAME's answer for these settings (a LAME set-up costs ~0.5 ms, so it is asked once)."""
    kbps, info = ffi.new("int *"), ffi.new("int *")
    if lib.fma_layout(sample_rate, channels, bitrate_kbps, kbps, info) < 0:
        raise RoundTripError(f"LAME refused {sample_rate} Hz at {bitrate_kbps} kbps")
    return kbps[0], info[0]


def _layout(sample_rate: int, channels: int, bitrate_kbps: int) -> tuple[int, int]:
    """(bitrate LAME will use, whether it writes an Info frame). LAME clamps bitrates the MPEG
    version cannot carry, and stereo needs 16 kbps at 22.05-24 kHz; we say so once per
    combination."""
    kbps, info = _lame_layout(sample_rate, channels, bitrate_kbps)
    key = (sample_rate, bitrate_kbps, channels)
    if kbps != bitrate_kbps and key not in _warned:
        _warned.add(key)
        mono_kbps = _lame_layout(sample_rate, 1, bitrate_kbps)[0] if channels == 2 else kbps
        why = (
            "MPEG-1 carries 32-320 kbps at 32-48 kHz, MPEG-2 8-160 kbps at 16-24 kHz, "
            "MPEG-2.5 8-64 kbps at 8-12 kHz"
            if mono_kbps != bitrate_kbps
            else "its frames leave under 4 bytes per channel, which libmpg123 cannot decode "
            "reliably: the right channel would come back uncorrelated"
        )
        warnings.warn(
            f"{bitrate_kbps} kbps cannot be coded as {'stereo ' if channels == 2 else ''}MP3 "
            f"at {sample_rate} Hz; using {kbps} kbps ({why})",
            UserWarning,
            stacklevel=4,
        )
    return kbps, info


def _roundtrip(source, data, sample_rate, bitrate_kbps, preserve_delay, quality, pipelined):
    channels, frames = data.shape
    peak, bad = ffi.new("float *"), ffi.new("int64_t *")
    lib.fma_scan(ffi.from_buffer("float[]", data), data.size, peak, bad)
    if bad[0] >= 0:  # LAME asserts on NaN and inf: refused here, never replaced silently
        c, i = divmod(int(bad[0]), frames)
        value = source[c, i]
        why = " (beyond float32's range)" if np.isfinite(value) else ""
        raise NonFiniteAudio(
            f"samples contain {value}{why} at index {(c, i) if channels > 1 else i}; MP3 "
            "encoding needs finite float32 values (replace them, e.g. np.nan_to_num(samples))"
        )
    gain = float(peak[0]) if peak[0] > 1.0 else 1.0  # scale down before LAME, back after
    kbps, info_frame = _layout(sample_rate, channels, bitrate_kbps)
    out_frames = lib.fma_raw_frames(frames, sample_rate, info_frame) if preserve_delay else frames
    out = np.empty((channels, out_frames), dtype=np.float32)
    err = ffi.new("char[]", lib.FMA_ERRLEN)
    rc = lib.fma_roundtrip(
        ffi.from_buffer("float[]", data),
        frames,
        channels,
        sample_rate,
        kbps,
        quality,
        1.0 / gain,
        gain,
        bool(preserve_delay),
        bool(pipelined),
        info_frame,
        ffi.from_buffer("float[]", out, require_writable=True),
        err,
    )
    if rc < 0:
        raise RoundTripError(f"MP3 round trip failed: {ffi.string(err).decode()}")
    return out


def _as_numpy(samples):
    """(array, was_mlx): mx.array input becomes float32 C-contiguous NumPy memory (an mx.array's
    layout is MLX's business, so any view of one is accepted, and its float16/bfloat16 too)."""
    if type(samples).__module__.startswith("mlx"):
        import mlx.core as mx

        if not mx.issubdtype(samples.dtype, mx.floating):
            raise TypeError(
                f"samples must be float audio (float32, float16 or bfloat16), got {samples.dtype}"
            )
        samples = samples.astype(mx.float32)
        mx.eval(samples)
        arr = np.asarray(samples)  # a view; copied (in C order) when strided or reversed
        return (arr if arr.flags.c_contiguous else arr.copy()), True
    return samples, False


def compress_roundtrip(
    samples, sample_rate, bitrate_kbps, preserve_delay=False, quality=7, _pipelined=True
):
    """Encodes audio to MP3 and decodes it again, for data augmentation.

    Args:
        samples: Audio, 1-D (mono) or 2-D ``(channels, samples)`` with 1 or 2 channels, at least
            100 ms; a NumPy array (2-D ones C-contiguous, as the public package requires) or an
            ``mx.array`` (any layout). float32; float16, bfloat16 and float64 are converted to
            float32. Every value must be finite.
        sample_rate: One of ``SUPPORTED_SAMPLE_RATES`` (8 to 48 kHz), in Hz; the MP3 keeps it.
            Whole-number floats and NumPy scalars (``16000.0``, ``np.int64(16000)``) count.
        bitrate_kbps: One of ``SUPPORTED_BITRATES`` (CBR), whole numbers as for sample_rate.
            Bitrates the MPEG version at this sample rate cannot carry are clamped to the
            nearest it can, with a warning.
        preserve_delay: False: the output is aligned with the input (lag 0) and as long. True:
            the raw decoded stream, Info frame, encoder delay and padding included.
        quality: LAME's quality, 0 (best, slowest) to 9 (worst, fastest).

    Returns:
        float32 audio of the input's shape (and type: ``mx.array`` in, ``mx.array`` out),
        longer along the last axis with ``preserve_delay``.

    Raises:
        Mp3AugmentError: A ValueError, raised before LAME sees the data, as one of its
            subclasses: UnsupportedSampleRate, UnsupportedBitrate, UnsupportedQuality,
            WrongMultichannelAudioShape, UnsupportedNumberOfChannels, NonContiguousAudio,
            TooShortAudio, NonFiniteAudio; itself for a preserve_delay that is not a bool.
        TypeError: samples is not a float NumPy array or mx.array.
    """
    sample_rate, bitrate_kbps, quality, preserve_delay = _params(
        sample_rate, bitrate_kbps, quality, preserve_delay
    )
    arr, was_mlx = _as_numpy(samples)
    source, data = _check(arr, sample_rate)
    out = _roundtrip(source, data, sample_rate, bitrate_kbps, preserve_delay, quality, _pipelined)
    if arr.ndim == 1:
        out = out[0]
    if was_mlx:
        import mlx.core as mx

        return mx.array(out)
    return out


def compress_roundtrip_batch(
    samples_list, sample_rate, bitrate_kbps, preserve_delay=False, quality=7, num_workers=None
):
    """:func:`compress_roundtrip` over many clips on a thread pool (the GIL is released).

    Args:
        samples_list: Iterable of clips, each as ``samples`` in :func:`compress_roundtrip`.
        sample_rate, bitrate_kbps, preserve_delay, quality: As for :func:`compress_roundtrip`,
            the same for every clip (checked once, even for no clips).
        num_workers: Threads, a positive whole number; None uses one per core.

    Returns:
        The round-tripped clips, in order.
    """
    params = _params(sample_rate, bitrate_kbps, quality, preserve_delay)
    workers = (os.cpu_count() or 1) if num_workers is None else whole(num_workers)
    if isinstance(num_workers, bool) or workers is None or workers < 1:
        raise Mp3AugmentError(
            f"num_workers must be a positive integer or None, got {num_workers!r}"
        )
    try:
        clips = list(samples_list)
    except TypeError as e:
        raise TypeError(
            f"samples_list must be an iterable of clips, got {type(samples_list).__name__}"
        ) from e
    sample_rate, bitrate_kbps, quality, preserve_delay = params

    def one(clip):  # clips run in parallel; each encodes and decodes on one thread
        return compress_roundtrip(
            clip, sample_rate, bitrate_kbps, preserve_delay, quality, _pipelined=False
        )

    if workers == 1 or len(clips) <= 1:
        return [one(c) for c in clips]
    with ThreadPoolExecutor(max_workers=min(workers, len(clips))) as pool:
        return list(pool.map(one, clips))
