"""AudioWriter: audio written chunk by chunk, every format save() writes."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import weakref

import numpy as np

from . import _args, _mp3tag
from ._atomic import OutputFile
from ._lib import check, errbuf, ffi, lib
from ._write import (
    _ALLOWED,
    _CODES,
    _OPUS_RATES,
    _WAV_BYTES,
    _bitrate,
    _check_frames,
    _check_limits,
    _check_rate,
    _check_samples,
    _codec,
    _container,
    _flac_level,
    _pointer,
    prepare_save,
)
from .errors import AudioDecodeError, AudioFormatError, AudioIOError

_APPENDED = ("float32", "pcm16", "pcm24")  # the WAV encodings _WavAppender writes


class _WavAppender:
    """A WAV whose RIFF header is rewritten after every write, so the file is complete up to
    the last write even if the process dies (RIFF, float32/pcm16/pcm24)."""

    def __init__(self, path: str, sample_rate: int, channels: int, encoding: str, clip: bool):
        self.f = open(path, "wb")  # noqa: SIM115  (closed in close())
        self.rate, self.channels, self.encoding, self.clip = sample_rate, channels, encoding, clip
        self.bytes_per = _WAV_BYTES[encoding]
        self.data = 0
        # a FIFO or a device cannot be rewound: one header whose sizes say "to the end"
        self.seekable = self.f.seekable()
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
        riff, data = (4 + 8 + len(fmt) + 8 + self.data, self.data)
        if not self.seekable:
            riff = data = 0xFFFFFFFF
        head = (
            b"RIFF"
            + struct.pack("<I", min(riff, 0xFFFFFFFF))
            + b"WAVE"
            + b"fmt "
            + struct.pack("<I", len(fmt))
            + fmt
            + b"data"
            + struct.pack("<I", min(data, 0xFFFFFFFF))
        )
        if self.seekable:
            self.f.seek(0)
        self.f.write(head)
        if self.seekable:
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
        if self.seekable:
            self._header()
        self.f.flush()

    def close(self) -> None:
        try:
            if self.data & 1:
                self.f.write(b"\0")
        finally:
            self.f.close()


class _Open:
    """An AudioWriter's open encoder, shared with its finalizer. One lock orders writes,
    close() and collection: a finalizer run at interpreter exit while another thread is still
    writing waits for that write instead of freeing the encoder under it."""

    def __init__(self, out: OutputFile):
        self.out = out
        self.native = self.wav = None
        self.lock = threading.Lock()

    def take(self):
        """(native, wav), detached: the writer is closed from here on."""
        native, wav, self.native, self.wav = self.native, self.wav, None, None
        return native, wav


_EXIT_WAIT = 5.0  # seconds a writer left open at exit waits for a write in progress


def _abandon(state: _Open) -> None:
    """A writer collected (or left open at exit) without close(): the encoder finishes what it
    can; a file that never got a successful write is removed (the target keeps its old file).
    A write still blocked after a few seconds (a FIFO nobody reads) is left as it is: exit
    must not wait for it."""
    if not state.lock.acquire(timeout=_EXIT_WAIT):
        return
    try:
        native, wav = state.take()
        with contextlib.suppress(OSError):
            if native is not None:
                lib.aio_writer_close(native, errbuf())
            if wav is not None:
                wav.close()
        state.out.discard()
    finally:
        state.lock.release()


class AudioWriter:
    """Writes audio chunk by chunk to a file, in every format :func:`save` writes but W64.

    Nothing at the path changes until the first successful :meth:`write`: the stream starts
    in a temporary file beside it, which then replaces the old file (a device or FIFO is
    written straight through). From then on what was written stays readable, even if the
    process dies before :meth:`close` or a later write fails: WAV headers are rewritten after
    every write, other formats are flushed packet by packet (FLAC, MP3 and Ogg decode up to
    the last packet; M4A needs :meth:`close` to write its index).

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
        self._container = container
        self._codec = codec = _codec(container, encoding)
        if codec == "opus" and self.sample_rate not in _OPUS_RATES:
            raise AudioFormatError(
                f"{where}: Opus codes 8, 12, 16, 24 or 48 kHz; resample the "
                f"stream first (got {self.sample_rate})"
            )
        _check_rate(container, codec, self.sample_rate, self.channels, where)
        _check_limits(container, encoding, self.sample_rate, self.channels, where)
        bps = _bitrate(container, codec, bitrate, self.sample_rate, self.channels, where)
        level = _flac_level(flac_compression)
        if container == "w64":
            raise AudioFormatError(
                f"{where}: AudioWriter writes every format save() does but "
                ".w64; use save() for it, or .wav"
            )
        self._out = OutputFile(self.path, "AudioWriter")
        self._state = _Open(self._out)
        try:
            if container == "wav" and encoding in _APPENDED:
                self._state.wav = _WavAppender(
                    self._out.write_path, self.sample_rate, self.channels, encoding, clip
                )
            else:
                self._state.native = self._open_native(container, codec, bps, level)
        except BaseException:
            self._out.discard()
            raise
        self._finalizer = weakref.finalize(self, _abandon, self._state)

    def _open_native(self, container: str, codec: str, bps: int, level: int):
        err, out = errbuf(), ffi.new("aio_writer **")
        rc = lib.aio_writer_open(
            _args.native_path(self._out.write_path),
            container.encode(),
            self.channels,
            self.sample_rate,
            _CODES[codec],
            bps,
            level,
            out,
            err,
        )
        check(rc, err, "AudioWriter", self.path)
        return out[0]

    def write(self, audio, layout="auto") -> None:
        """Appends audio: ``mx.array`` or NumPy, 1-D (mono) or 2-D (``layout`` as in save).

        Raises:
            ValueError: Wrong channel count, a closed writer, or NaN/infinite samples for a
                lossy encoder with ``clip=False``.
            RuntimeError: The write failed (e.g. the disk is full); what earlier writes put
                in the file stays there.
        """
        samples = prepare_save(audio, layout).samples
        if samples.shape[1] != self.channels:
            raise AudioFormatError(
                f"AudioWriter for '{self.path}' takes {self.channels} "
                f"channel(s), got {samples.shape[1]}"
            )
        where = f"AudioWriter failed for '{self.path}'"
        _check_samples(self._container, self._codec, samples, self.clip, where)
        state = self._state
        with state.lock:
            if state.wav is None and state.native is None:
                raise AudioFormatError(f"AudioWriter for '{self.path}' is closed")
            good = self._out.size()
            try:
                if state.wav is not None:
                    try:
                        state.wav.write(samples)
                    except OSError as e:
                        raise AudioDecodeError(f"{where}: write failed: {e.strerror or e}") from e
                else:
                    ptr, fs, cs = _pointer(samples)
                    err = errbuf()
                    n = samples.shape[0]
                    rc = lib.aio_writer_write(state.native, ptr, n, fs, cs, self.clip, err)
                    check(rc, err, "AudioWriter", self.path)
                if samples.shape[0]:  # the first frames written replace what the path held
                    self._out.commit()
            except AudioIOError:
                self._fail(good)
                raise
            self.frames_written += samples.shape[0]

    def _fail(self, good: int | None) -> None:
        """After a failed write (lock held): the writer closes, and the file keeps what the
        earlier writes put there (finished if the format can still be finished, else cut back
        to them)."""
        self._finalizer.detach()
        native, wav = self._state.take()
        finished = False
        with contextlib.suppress(OSError):
            if wav is not None:
                wav.f.close()
            elif native is not None:
                finished = lib.aio_writer_close(native, errbuf()) == 0
        if not finished:
            self._out.truncate(good)
        elif self.frames_written:
            with contextlib.suppress(OSError):
                self._fix_mp3_tag()
        self._out.discard()  # nothing written before: the old file stays

    def close(self) -> None:
        """Finishes the file (idempotent).

        Raises:
            ValueError: Nothing was written to an MP3, M4A or Opus file (which cannot hold
                zero frames); the path keeps what it held before.
            RuntimeError: Finishing the file failed.
        """
        with self._state.lock:
            native, wav = self._state.take()
            if native is None and wav is None:
                return
            self._finalizer.detach()
            try:
                self._finish(native, wav)
            finally:
                self._out.discard()  # only when nothing was committed: the old file stays

    def _finish(self, native, wav) -> None:
        where = f"AudioWriter failed for '{self.path}'"
        if wav is not None:
            try:
                wav.close()
            except OSError as e:
                raise AudioDecodeError(f"{where}: write failed: {e.strerror or e}") from e
        else:
            err = errbuf()
            check(lib.aio_writer_close(native, err), err, "AudioWriter", self.path)
            self._fix_mp3_tag()
        _check_frames(self._container, self._codec, self.frames_written, where)
        self._out.commit()

    def _fix_mp3_tag(self) -> None:
        """The LAME tag's padding from the frames written (see _mp3tag), for a finished MP3
        in a regular file."""
        if self._container == "mp3" and not self._out.through:
            _mp3tag.fix_file(self._out.write_path, self.frames_written)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
