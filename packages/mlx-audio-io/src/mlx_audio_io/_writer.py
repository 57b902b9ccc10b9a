"""AudioWriter: audio written chunk by chunk, every format save() writes."""

from __future__ import annotations

import os
import struct
import weakref

import numpy as np

from . import _args
from ._lib import check, errbuf, ffi, lib
from ._write import (
    _ALLOWED,
    _CODES,
    _bitrate,
    _check_rate,
    _codec,
    _container,
    _flac_level,
    _pointer,
    prepare_save,
)
from .errors import AudioFormatError

_WAV_BYTES = {"float32": 4, "pcm16": 2, "pcm24": 3}


class _WavAppender:
    """A WAV whose RIFF header is rewritten after every write, so the file is complete up to
    the last write even if the process dies (RIFF, float32/pcm16/pcm24)."""

    def __init__(self, path: str, sample_rate: int, channels: int, encoding: str, clip: bool):
        self.f = open(path, "wb")  # noqa: SIM115  (closed in close())
        self.rate, self.channels, self.encoding, self.clip = sample_rate, channels, encoding, clip
        self.bytes_per = _WAV_BYTES[encoding]
        self.data = 0
        self._header()

    def _header(self) -> None:
        block = self.channels * self.bytes_per
        tag, bits = (3, 32) if self.encoding == "float32" else (1, 8 * self.bytes_per)
        ext = self.channels > 2 or self.bytes_per == 3
        if ext:  # WAVE_FORMAT_EXTENSIBLE, as save() writes it
            sub = struct.pack("<H", tag) + bytes.fromhex("000000001000800000aa00389b71")
            fmt = (
                struct.pack(
                    "<HHIIHHHHI",
                    0xFFFE,
                    self.channels,
                    self.rate,
                    self.rate * block,
                    block,
                    bits,
                    22,
                    bits,
                    0,
                )
                + sub
            )
        else:
            fmt = struct.pack(
                "<HHIIHH", tag, self.channels, self.rate, self.rate * block, block, bits
            )
        head = (
            b"RIFF"
            + struct.pack("<I", 4 + 8 + len(fmt) + 8 + self.data)
            + b"WAVE"
            + b"fmt "
            + struct.pack("<I", len(fmt))
            + fmt
            + b"data"
            + struct.pack("<I", self.data)
        )
        self.f.seek(0)
        self.f.write(head)
        self.f.seek(0, os.SEEK_END)

    def write(self, frames: np.ndarray) -> None:
        if self.encoding == "float32":
            data = np.clip(frames, -1, 1) if self.clip else frames
            raw = np.nan_to_num(data, nan=0.0).astype("<f4").tobytes()
        else:
            full = 2 ** (8 * self.bytes_per - 1)
            q = np.clip(
                np.rint(np.nan_to_num(frames, nan=0.0).astype(np.float64) * full), -full, full - 1
            ).astype("<i4")
            raw = (
                q.astype("<i2").tobytes()
                if self.bytes_per == 2
                else q.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
            )
        self.f.write(raw)
        self.data += len(raw)
        self._header()
        self.f.flush()

    def close(self) -> None:
        if self.data & 1:
            self.f.write(b"\0")
        self.f.close()


def _close_native(handle) -> None:
    err = errbuf()
    lib.aio_writer_close(handle, err)


class AudioWriter:
    """Writes audio chunk by chunk to a file, in every format :func:`save` writes but W64.

    What was written stays readable if the process dies before :meth:`close`: WAV headers are
    rewritten after every write, other formats are flushed packet by packet (FLAC, MP3 and Ogg
    decode up to the last packet; M4A needs :meth:`close` to write its index).

    Args:
        path: Output path; the extension picks the format (or ``format=``).
        sample_rate: Sample rate in Hz.
        channels: Number of channels.
        encoding, bitrate, clip, flac_compression, format: As for :func:`save`.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        path,
        sample_rate,
        channels,
        encoding="float32",
        bitrate="auto",
        clip=True,
        flac_compression="default",
        format=None,
    ):
        self.path = _args.as_path(path)
        where = f"AudioWriter failed for '{self.path}'"
        container = _container(self.path, format, where)
        if encoding not in _CODES or encoding not in _ALLOWED[container]:
            raise AudioFormatError(
                f"{where}: encoding {encoding!r} is not supported for "
                f".{container}; use one of {list(_ALLOWED[container])}"
            )
        self.sample_rate = _args.positive_int("sample_rate", sample_rate)
        self.channels = _args.positive_int("channels", channels)
        self.clip = bool(clip)
        self.frames_written = 0
        codec = _codec(container, encoding)
        if codec == "opus" and self.sample_rate not in (8000, 12000, 16000, 24000, 48000):
            raise AudioFormatError(
                f"{where}: Opus codes 8, 12, 16, 24 or 48 kHz; resample the "
                f"stream first (got {self.sample_rate})"
            )
        _check_rate(container, codec, self.sample_rate, self.channels, where)
        bps = _bitrate(container, codec, bitrate, self.sample_rate, self.channels, where)
        self._wav = self._native = None
        if container == "w64":
            raise AudioFormatError(
                f"{where}: AudioWriter writes every format save() does but "
                ".w64; use save() for it, or .wav"
            )
        if container == "wav" and encoding in _WAV_BYTES:
            self._wav = _WavAppender(self.path, self.sample_rate, self.channels, encoding, clip)
            return
        err, out = errbuf(), ffi.new("aio_writer **")
        rc = lib.aio_writer_open(
            self.path.encode(),
            container.encode(),
            self.channels,
            self.sample_rate,
            _CODES[codec],
            bps,
            _flac_level(flac_compression),
            out,
            err,
        )
        check(rc, err, "AudioWriter", self.path)
        self._native = out[0]
        self._finalizer = weakref.finalize(self, _close_native, self._native)

    def write(self, audio, layout="auto") -> None:
        """Appends audio: ``mx.array`` or NumPy, 1-D (mono) or 2-D (``layout`` as in save)."""
        samples = prepare_save(audio, layout).samples
        if samples.shape[1] != self.channels:
            raise AudioFormatError(
                f"AudioWriter for '{self.path}' takes {self.channels} "
                f"channel(s), got {samples.shape[1]}"
            )
        if self._wav is not None:
            self._wav.write(samples)
        elif self._native is not None:
            ptr, fs, cs = _pointer(samples)
            err = errbuf()
            rc = lib.aio_writer_write(self._native, ptr, samples.shape[0], fs, cs, self.clip, err)
            check(rc, err, "AudioWriter", self.path)
        else:
            raise AudioFormatError(f"AudioWriter for '{self.path}' is closed")
        self.frames_written += samples.shape[0]

    def close(self) -> None:
        """Finishes the file (idempotent)."""
        if self._wav is not None:
            self._wav.close()
            self._wav = None
        if self._native is not None:
            self._finalizer.detach()
            err, handle, self._native = errbuf(), self._native, None
            check(lib.aio_writer_close(handle, err), err, "AudioWriter", self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
