"""compress_roundtrip and compress_roundtrip_batch over the native LAME + libmpg123 shim."""

from __future__ import annotations

import functools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._lib import ffi, lib
from .errors import (
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
_warned: set[tuple[int, int]] = set()


def _check(samples, sample_rate, bitrate_kbps, quality):
    """The public package's checks, in its order; returns float32 (channels, frames) data."""
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise UnsupportedSampleRate(
            f"Expected sample_rate to be one of {sorted(SUPPORTED_SAMPLE_RATES)}, but received "
            f"{sample_rate}"
        )
    if bitrate_kbps not in SUPPORTED_BITRATES:
        raise UnsupportedBitrate(
            f"Expected bitrate_kbps to be one of {sorted(SUPPORTED_BITRATES)}, but received "
            f"{bitrate_kbps}"
        )
    if quality not in SUPPORTED_QUALITY_VALUES:
        raise UnsupportedQuality(
            f"Expected quality to be one of {sorted(SUPPORTED_QUALITY_VALUES)}, but received "
            f"{quality}"
        )
    if not isinstance(samples, np.ndarray) or samples.dtype != np.float32:
        got = samples.dtype if isinstance(samples, np.ndarray) else type(samples).__name__
        raise TypeError(f"samples must be a float32 NumPy array (or mx.array), got {got}")
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
        data = np.ascontiguousarray(samples)[None, :]
    else:
        raise WrongMultichannelAudioShape(
            f"samples must be 1-D (mono) or 2-D (channels, samples), got shape {samples.shape}"
        )
    if data.shape[1] < 0.1 * sample_rate:
        raise TooShortAudio(
            f"The input audio {data.shape[1]} samples is too short. It needs to be at least 100 ms."
        )
    return data


@functools.cache
def _lame_layout(sample_rate: int, channels: int, bitrate_kbps: int) -> tuple[int, int]:
    """LAME's answer for these settings (a LAME set-up costs ~0.5 ms, so it is asked once)."""
    kbps, info = ffi.new("int *"), ffi.new("int *")
    if lib.fma_layout(sample_rate, channels, bitrate_kbps, kbps, info) < 0:
        raise RoundTripError(f"LAME refused {sample_rate} Hz at {bitrate_kbps} kbps")
    return kbps[0], info[0]


def _layout(sample_rate: int, channels: int, bitrate_kbps: int) -> tuple[int, int]:
    """(bitrate LAME will use, whether it writes an Info frame). LAME clamps bitrates the MPEG
    version cannot carry; we say so once per combination."""
    kbps, info = _lame_layout(sample_rate, channels, bitrate_kbps)
    if kbps != bitrate_kbps and (sample_rate, bitrate_kbps) not in _warned:
        _warned.add((sample_rate, bitrate_kbps))
        warnings.warn(
            f"{bitrate_kbps} kbps cannot be coded as MP3 at {sample_rate} Hz; using "
            f"{kbps} kbps (MPEG-1 carries 32-320 kbps at 32-48 kHz, MPEG-2 8-160 kbps at "
            "16-24 kHz, MPEG-2.5 8-64 kbps at 8-12 kHz)",
            UserWarning,
            stacklevel=4,
        )
    return kbps, info


def _roundtrip(data, sample_rate, bitrate_kbps, preserve_delay, quality, pipelined):
    channels, frames = data.shape
    peak, bad = ffi.new("float *"), ffi.new("int64_t *")
    lib.fma_scan(ffi.from_buffer("float[]", data), data.size, peak, bad)
    if bad[0] >= 0:
        c, i = divmod(int(bad[0]), frames)
        raise NonFiniteAudio(
            f"samples contain {data[c, i]} at index {(c, i) if channels > 1 else i}; MP3 "
            "encoding needs finite values (replace them, e.g. np.nan_to_num(samples))"
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
    """(array, was_mlx): mx.array input becomes a NumPy view of its memory."""
    if type(samples).__module__.startswith("mlx"):
        import mlx.core as mx

        mx.eval(samples)
        return np.asarray(samples), True
    return samples, False


def compress_roundtrip(
    samples, sample_rate, bitrate_kbps, preserve_delay=False, quality=7, _pipelined=True
):
    """Encodes audio to MP3 and decodes it again, for data augmentation.

    Args:
        samples: float32 audio, 1-D (mono) or 2-D ``(channels, samples)`` C-contiguous with 1
            or 2 channels; NumPy array or ``mx.array``. At least 100 ms.
        sample_rate: One of ``SUPPORTED_SAMPLE_RATES`` (8 to 48 kHz); the MP3 keeps it.
        bitrate_kbps: One of ``SUPPORTED_BITRATES`` (CBR). Bitrates the MPEG version at this
            sample rate cannot carry are clamped to the nearest it can, with a warning.
        preserve_delay: False: the output is aligned with the input (lag 0) and as long. True:
            the raw decoded stream, Info frame, encoder delay and padding included.
        quality: LAME's quality, 0 (best, slowest) to 9 (worst, fastest).

    Returns:
        float32 audio of the input's shape (and type: ``mx.array`` in, ``mx.array`` out),
        longer along the last axis with ``preserve_delay``.

    Raises:
        UnsupportedSampleRate, UnsupportedBitrate, UnsupportedQuality,
        WrongMultichannelAudioShape, UnsupportedNumberOfChannels, NonContiguousAudio,
        TooShortAudio, NonFiniteAudio: all ValueErrors, raised before LAME sees the data.
        TypeError: samples is not float32.
    """
    arr, was_mlx = _as_numpy(samples)
    data = _check(arr, sample_rate, bitrate_kbps, quality)
    out = _roundtrip(data, sample_rate, bitrate_kbps, preserve_delay, quality, _pipelined)
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
            the same for every clip.
        num_workers: Threads; None uses one per core.

    Returns:
        The round-tripped clips, in order.
    """
    clips = list(samples_list)
    workers = (os.cpu_count() or 1) if num_workers is None else num_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"num_workers must be a positive integer or None, got {num_workers!r}")

    def one(clip):  # clips run in parallel; each encodes and decodes on one thread
        return compress_roundtrip(
            clip, sample_rate, bitrate_kbps, preserve_delay, quality, _pipelined=False
        )

    if workers == 1 or len(clips) <= 1:
        return [one(c) for c in clips]
    with ThreadPoolExecutor(max_workers=min(workers, len(clips))) as pool:
        return list(pool.map(one, clips))
