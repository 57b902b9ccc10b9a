"""AudioEncoder: one encoder for a whole stream, in memory, its bytes handed out as they come
(a server's streamed HTTP response: one container header, no gap at the chunk seams)."""

from __future__ import annotations

import threading

import numpy as np

from . import _args
from ._lib import check, errbuf, ffi, lib
from ._write import (
    _CODES,
    _OPUS_RATES,
    _bitrate,
    _check_rate,
    _check_samples,
    _flac_level,
    _pointer,
    prepare_save,
)
from .errors import AudioFormatError

#: format -> (native container, the encodings it takes); "float32" is the format's own codec
_FORMATS = {
    "mp3": ("mp3", ("float32",)),
    "opus": ("opus", ("float32", "opus")),
    "aac": ("adts", ("float32", "aac")),
    "flac": ("flac", ("float32", "pcm16", "pcm24")),
    "wav": ("wav", ("float32", "pcm16")),
    "pcm": (None, ("pcm16",)),
}
_PCM_DEFAULT = {"pcm": "pcm16"}
_CONTAINER_RULES = {"adts": "m4a"}  # AAC's rate and channel rules are M4A's


class AudioEncoder:
    """Encodes a stream of audio chunk by chunk into bytes, with a single encoder and muxer
    for the whole stream: the container header is written once (sizes unknown: WAV's are
    0xFFFFFFFF, FLAC's STREAMINFO has no length), codec frames run across chunk seams, and
    nothing is rewritten at the end, so the concatenated output of :meth:`encode` and
    :meth:`close` is one file that decodes to the concatenated input.

    Args:
        format: ``"mp3"`` (LAME, no Xing tag: the decoder keeps the encoder delay),
            ``"opus"`` (Ogg Opus), ``"aac"`` (ADTS), ``"flac"``, ``"wav"`` (float32 or pcm16)
            or ``"pcm"`` (raw signed 16-bit little-endian, no header).
        sample_rate: Sample rate in Hz (Opus: 8, 12, 16, 24 or 48 kHz).
        channels: Number of channels.
        encoding: ``"float32"`` (the format's own codec; 24-bit FLAC) or ``"pcm16"`` (WAV,
            FLAC; the only one for ``"pcm"``), ``"pcm24"`` (FLAC).
        bitrate: ``"auto"``, ``"128k"`` or bits per second (MP3, Opus, AAC).
        clip: Clamp samples to [-1, 1] (NaN to 0) before encoding.
        flac_compression: As for :func:`save`.

    Raises:
        ValueError: An unknown format, encoding, bitrate, rate or channel count.

    Thread-safe: one lock orders :meth:`encode` and :meth:`close`.
    """

    def __init__(self, format, sample_rate, channels=1, encoding=None, bitrate="auto",
                 clip=True, flac_compression="default"):  # fmt: skip
        fmt = str(format).lower().lstrip(".") if isinstance(format, str) else None
        if fmt not in _FORMATS:
            raise AudioFormatError(f"format must be one of {list(_FORMATS)}, got {format!r}")
        container, allowed = _FORMATS[fmt]
        encoding = encoding or _PCM_DEFAULT.get(fmt, "float32")
        if encoding not in allowed:
            raise AudioFormatError(
                f"encoding for format {fmt!r} must be one of {list(allowed)}, got {encoding!r}"
            )
        self.format, self.encoding, self.clip = fmt, encoding, bool(clip)
        self.sample_rate = _args.positive_int("sample_rate", sample_rate)
        self.channels = _args.positive_int("channels", channels)
        self.frames_written = 0
        self._lock = threading.Lock()
        self._native = None
        self._closed = False
        where = f"AudioEncoder failed for format {fmt!r}"
        if container is None:
            if bitrate not in ("auto", None):
                raise AudioFormatError(f"{where}: bitrate is only used by lossy formats")
            return
        codec = {"opus": "opus", "aac": "aac"}.get(fmt, encoding)
        if codec == "opus" and self.sample_rate not in _OPUS_RATES:
            raise AudioFormatError(
                f"{where}: Opus codes 8, 12, 16, 24 or 48 kHz; resample first "
                f"(got {self.sample_rate})"
            )
        rules = _CONTAINER_RULES.get(container, container)
        _check_rate(rules, codec, self.sample_rate, self.channels, where)
        if fmt == "wav" and self.channels > 8:
            raise AudioFormatError(f"{where}: a streamed WAV holds at most 8 channels")
        self._codec, self._container = codec, rules
        bps = _bitrate(rules, codec, bitrate, self.sample_rate, self.channels, where)
        level = _flac_level(flac_compression) if fmt == "flac" else -1
        err, out = errbuf(), ffi.new("aio_writer **")
        native_code = _CODES["opus" if codec == "opus" else encoding]
        rc = lib.aio_encoder_open(container.encode(), self.channels, self.sample_rate,
                                  native_code, bps, level, out, err)  # fmt: skip
        check(rc, err, "AudioEncoder", fmt)
        self._native = out[0]

    def _take(self) -> bytes:
        n = lib.aio_encoder_pending(self._native)
        if n <= 0:
            return b""
        buf = ffi.new("unsigned char[]", n)
        got = lib.aio_encoder_take(self._native, buf, n)
        return ffi.buffer(buf, got)[:]

    def encode(self, samples, layout="auto") -> bytes:
        """Encodes a chunk and returns the bytes ready so far (may be empty: codecs hold a
        frame's worth, Ogg a page's).

        Args:
            samples: ``mx.array`` or NumPy floats, 1-D (mono) or 2-D (``layout`` as in
                :func:`save`).

        Raises:
            ValueError: Wrong channel count, or the encoder is closed.
            RuntimeError: The encoder failed (the encoder is then closed).
        """
        data = prepare_save(samples, layout).samples
        if data.shape[1] != self.channels:
            raise AudioFormatError(
                f"AudioEncoder takes {self.channels} channel(s), got {data.shape[1]}"
            )
        with self._lock:
            if self._closed:
                raise AudioFormatError("AudioEncoder is closed")
            if self._native is None:  # raw PCM
                self.frames_written += data.shape[0]
                return _pcm16(data, self.clip)
            _check_samples(self._container, self._codec, data, self.clip, "AudioEncoder")
            ptr, fs, cs = _pointer(data)
            err = errbuf()
            rc = lib.aio_encoder_write(self._native, ptr, data.shape[0], fs, cs, self.clip, err)
            if rc < 0:
                self._release()
            check(rc, err, "AudioEncoder", self.format)
            self.frames_written += data.shape[0]
            return self._take()

    def close(self) -> bytes:
        """Flushes the codec and writes the trailer; returns the remaining bytes (once: a
        second call returns ``b""``).

        Raises:
            RuntimeError: Finishing failed.
        """
        with self._lock:
            if self._closed:
                return b""
            self._closed = True
            if self._native is None:
                return b""
            try:
                err = errbuf()
                check(lib.aio_encoder_finish(self._native, err), err, "AudioEncoder", self.format)
                return self._take()
            finally:
                self._release()

    def _release(self) -> None:
        self._closed = True
        if self._native is not None:
            lib.aio_encoder_free(self._native)
            self._native = None

    def __del__(self):
        native, self._native = getattr(self, "_native", None), None
        if native is not None:
            lib.aio_encoder_free(native)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pcm16(data: np.ndarray, clip: bool) -> bytes:
    """Interleaved signed 16-bit little-endian, rounded and saturated."""
    x = np.nan_to_num(data.astype(np.float64), nan=0.0)
    if clip:
        x = np.clip(x, -1.0, 1.0)
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
