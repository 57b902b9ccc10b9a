"""Decoding: load, info, stream and batch_load over the native read pipeline.

Every read goes through one native pipeline (window -> mono mix-down -> libsoxr resampling ->
strided output) that decodes fixed-size blocks whatever the caller asks for, so streamed chunks
concatenate to exactly what ``load`` returns. Output is written once, straight into memory
owned by an ``mx.array``.
"""

from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from . import _args
from ._lib import check, errbuf, ffi, lib
from .errors import AudioFormatError

_CHUNK_UNKNOWN = 1 << 16  # frames per read when a format does not state its length


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read without decoding the samples (except to count frames in
    formats that do not state their length).

    Attributes:
        frames: Exact number of sample frames (equal to ``load(path)[0].shape[0]``).
        sample_rate: Sample rate in Hz.
        channels: Number of channels.
        duration: ``frames / sample_rate`` in seconds.
        subtype: Sample encoding: ``pcm8``/``pcm16``/``pcm24``/``pcm32``/``float32``/``float64``
            for PCM, otherwise the codec (``mp3``, ``flac``, ``aac``, ``alac``, ``vorbis``, ...).
        container: File format (``wav``, ``mp3``, ``flac``, ``m4a``, ``aiff``, ``caf``, ...).
    """

    frames: int
    sample_rate: int
    channels: int
    duration: float
    subtype: str
    container: str


def _free(pipe, handle) -> None:
    if pipe is not None:
        lib.aio_pipe_free(pipe)
    if handle is not None:
        lib.aio_close(handle)


class _Source:
    """An open file with a read pipeline; native resources are freed on close or collection."""

    def __init__(
        self, path, *, op, sr=None, offset=0.0, duration=None, mono=False, quality="default"
    ):
        self.path = _args.as_path(path)
        self.op = op
        out_sr = _args.optional_rate("sr", sr)
        offset = _args.seconds("offset", offset, allow_zero=True)
        if duration is not None:
            duration = _args.seconds("duration", duration, allow_zero=False)
        mono_mode = _args.mono_mode(mono)
        q = _args.quality(quality)

        err = errbuf()
        handle_p = ffi.new("aio_file **")
        self.file_info = ffi.new("aio_info *")
        check(lib.aio_open(self.path.encode(), handle_p, self.file_info, err), err, op, self.path)
        self._handle = handle_p[0]
        self._pipe = None
        self._finalizer = weakref.finalize(self, _free, None, self._handle)
        native_sr = self.file_info.sample_rate
        start = round(offset * native_sr)
        count = -1 if duration is None else max(1, round(duration * native_sr))
        pipe_p = ffi.new("aio_pipe **")
        rc = lib.aio_pipe_new(self._handle, start, count, mono_mode, out_sr or 0, q, pipe_p, err)
        check(rc, err, op, self.path)
        self._pipe = pipe_p[0]
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _free, self._pipe, self._handle)
        self.sample_rate = out_sr or native_sr
        self.channels = 1 if mono_mode else self.file_info.channels
        self.total = lib.aio_pipe_total(self._pipe)

    def read_into(self, ptr, frames: int, frame_stride: int, chan_stride: int) -> int:
        """Decodes up to `frames` output frames into ptr (no GIL, no MLX); returns the count."""
        err = errbuf()
        n = lib.aio_pipe_read(self._pipe, ptr, frames, frame_stride, chan_stride, err)
        return check(n, err, self.op, self.path)

    def read_unknown(self) -> np.ndarray:
        """Reads to the end when the length is not known in advance: [frames, channels]."""
        parts = []
        while True:
            buf = np.empty((_CHUNK_UNKNOWN, self.channels), dtype=np.float32)
            n = self.read_into(ffi.from_buffer("float[]", buf), _CHUNK_UNKNOWN, self.channels, 1)
            parts.append(buf[:n])
            if n < _CHUNK_UNKNOWN:
                break
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def close(self) -> None:
        self._finalizer()


def _empty_output(shape) -> tuple[mx.array, object]:
    """A fresh, evaluated MLX array and a writable native pointer to its memory."""
    out = mx.zeros(shape, dtype=mx.float32)
    mx.eval(out)
    return out, ffi.from_buffer("float[]", out, require_writable=True)


class _LoadJob:
    """load() in three steps, so batch_load can decode in worker threads without MLX calls:
    allocate() (MLX, caller's thread), fill() (native only, any thread), result()."""

    def __init__(self, path, *, sr, offset, duration, mono, layout, dtype, quality):
        self.layout = _args.layout(layout)
        self.dtype = _args.dtype(dtype)
        self.src = _Source(
            path, op="load", sr=sr, offset=offset, duration=duration, mono=mono, quality=quality
        )
        self.out = self.ptr = self.unknown = None
        self.n = 0

    def allocate(self) -> None:
        total, ch = self.src.total, self.src.channels
        if total >= 0:
            shape = (total, ch) if self.layout == "channels_last" else (ch, total)
            self.out, self.ptr = _empty_output(shape)

    def fill(self) -> None:
        src = self.src
        if self.ptr is None:
            self.unknown = src.read_unknown()
        elif self.layout == "channels_last":
            self.n = src.read_into(self.ptr, src.total, src.channels, 1)
        else:
            self.n = src.read_into(self.ptr, src.total, 1, src.total)
        src.close()

    def result(self) -> tuple[mx.array, int]:
        if self.unknown is not None:
            out = mx.array(self.unknown)
            if self.layout == "channels_first":
                out = mx.contiguous(out.T)
        else:
            out = self.out
            if self.n < self.src.total:  # the file ended early (truncated)
                out = out[: self.n] if self.layout == "channels_last" else out[:, : self.n]
        if self.dtype != mx.float32:
            out = out.astype(self.dtype)
        mx.eval(out)
        return out, self.src.sample_rate


def load(
    path,
    sr=None,
    offset=0.0,
    duration=None,
    mono=False,
    layout="channels_last",
    dtype="float32",
    resample_quality="default",
):
    """Decodes an audio file into an ``mx.array``.

    Args:
        path: File path (str or os.PathLike). The format is found from the content (WAV, MP3,
            and everything libav decodes: FLAC, M4A/AAC/ALAC, AIFF, CAF, Ogg, ...).
        sr: Output sample rate in Hz; None keeps the file's rate. Resampling is band-limited
            (libsoxr) and returns ``ceil(frames * sr / file_rate)`` frames.
        offset: Start position in seconds (rounded to the nearest frame). Reading starts
            exactly there, in every format.
        duration: Seconds to read; None reads to the end.
        mono: Mix all channels down to one (their mean).
        layout: ``"channels_last"`` gives ``[frames, channels]``, ``"channels_first"``
            ``[channels, frames]``.
        dtype: ``"float32"`` or ``"float16"``. Samples are in [-1, 1) for PCM sources.
        resample_quality: ``"fastest"``, ``"low"``, ``"medium"``, ``"default"``, ``"high"``,
            ``"best"`` (see docs/io.md for what each costs and gives).

    Returns:
        ``(audio, sample_rate)``: a 2-D ``mx.array`` and the sample rate in Hz. An offset past
        the end gives zero frames.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: Bad argument, or a format/codec that cannot be decoded.
        RuntimeError: The file is corrupt or cannot be read.
    """
    job = _LoadJob(
        path,
        sr=sr,
        offset=offset,
        duration=duration,
        mono=mono,
        layout=layout,
        dtype=dtype,
        quality=resample_quality,
    )
    try:
        job.allocate()
        job.fill()
        return job.result()
    finally:
        job.src.close()


def info(path) -> AudioInfo:
    """Reads a file's metadata without decoding its samples.

    Args:
        path: File path (str or os.PathLike).

    Returns:
        AudioInfo whose ``frames`` always equals the length ``load`` returns. Formats that do
        not state their length exactly (e.g. MP3 without a Xing tag, Ogg) are counted by a
        frame scan or, failing that, a decode.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: Not an audio format that can be decoded.
        RuntimeError: The file is corrupt.
    """
    path = _args.as_path(path)
    err = errbuf()
    handle_p = ffi.new("aio_file **")
    meta = ffi.new("aio_info *")
    check(lib.aio_open(path.encode(), handle_p, meta, err), err, "info", path)
    try:
        frames = ffi.new("int64_t *")
        check(lib.aio_count_frames(handle_p[0], frames, err), err, "info", path)
    finally:
        lib.aio_close(handle_p[0])
    rate = meta.sample_rate
    return AudioInfo(
        frames=int(frames[0]),
        sample_rate=rate,
        channels=meta.channels,
        duration=frames[0] / rate,
        subtype=ffi.string(meta.subtype).decode(),
        container=ffi.string(meta.container).decode(),
    )


class AudioStreamReader:
    """Chunked reader returned by :func:`stream`; iterate it for ``(chunk, sample_rate)``.

    Chunks are ``[frames, channels]`` ``mx.array``s of ``chunk_frames`` frames (the last may be
    shorter). Use it as a context manager, or call :meth:`close`, to release the file early.
    """

    def __init__(
        self, path, chunk_frames=None, chunk_duration=None, sr=None, mono=False, dtype="float32"
    ):
        if (chunk_frames is None) == (chunk_duration is None):
            raise AudioFormatError("Exactly one of chunk_frames or chunk_duration must be given")
        self._dtype = _args.dtype(dtype)
        if chunk_frames is not None:
            chunk_frames = _args.positive_int("chunk_frames", chunk_frames)
        else:
            chunk_duration = _args.seconds("chunk_duration", chunk_duration, allow_zero=False)
        self._src = _Source(path, op="stream", sr=sr, mono=mono)
        self.sample_rate: int = self._src.sample_rate
        self.channels: int = self._src.channels
        if chunk_frames is None:
            chunk_frames = round(chunk_duration * self.sample_rate)
            if chunk_frames < 1:
                raise AudioFormatError(
                    f"chunk_duration={chunk_duration!r} is less than one frame at "
                    f"{self.sample_rate} Hz"
                )
        self.chunk_frames: int = chunk_frames
        self.frames_read: int = 0
        self._eof = self._src.total == 0

    def at_eof(self) -> bool:
        """True once every frame has been returned."""
        return self._eof

    def read_chunk(self) -> mx.array | None:
        """The next chunk as ``[frames, channels]``, or None at the end of the file."""
        if self._eof:
            return None
        out, ptr = _empty_output((self.chunk_frames, self.channels))
        n = self._src.read_into(ptr, self.chunk_frames, self.channels, 1)
        self.frames_read += n
        total = self._src.total
        if n < self.chunk_frames or (total >= 0 and self.frames_read >= total):
            self._eof = True
            self._src.close()
        if n == 0:
            return None
        if n < self.chunk_frames:
            out = out[:n]
        if self._dtype != mx.float32:
            out = out.astype(self._dtype)
        mx.eval(out)
        return out

    def __iter__(self):
        return self

    def __next__(self) -> tuple[mx.array, int]:
        chunk = self.read_chunk()
        if chunk is None:
            raise StopIteration
        return chunk, self.sample_rate

    def close(self) -> None:
        """Releases the file; further reads return None."""
        self._eof = True
        self._src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stream(path, chunk_frames=None, chunk_duration=None, sr=None, mono=False, dtype="float32"):
    """Reads a file in chunks; concatenated, the chunks equal ``load(path, sr=sr, mono=mono)``.

    Args:
        path: File path (str or os.PathLike).
        chunk_frames: Frames per chunk (at the output rate).
        chunk_duration: Seconds per chunk; exactly one of the two must be given.
        sr: Output sample rate in Hz; None keeps the file's rate.
        mono: Mix all channels down to one.
        dtype: ``"float32"`` or ``"float16"``.

    Returns:
        An :class:`AudioStreamReader` yielding ``(chunk, sample_rate)`` with chunks shaped
        ``[frames, channels]``.

    Raises:
        ValueError: Neither or both chunk sizes, or other bad arguments.
        FileNotFoundError, RuntimeError: As for :func:`load`.
    """
    return AudioStreamReader(path, chunk_frames, chunk_duration, sr, mono, dtype)


def batch_load(paths, sr=None, mono=False, dtype="float32", num_workers=4):
    """Loads many files with a pool of threads; decoding runs without the GIL.

    Args:
        paths: Iterable of file paths.
        sr, mono, dtype: As for :func:`load`.
        num_workers: Decoding threads.

    Returns:
        ``[(audio, sample_rate), ...]`` in the order of ``paths``.

    Raises:
        The first error any file raised, as :func:`load` would.
    """
    paths = list(paths)
    num_workers = _args.positive_int("num_workers", num_workers)
    results: list = [None] * len(paths)
    window = max(16, 4 * num_workers)  # bounds the number of files open at once

    def open_job(path):
        try:
            return _LoadJob(
                path,
                sr=sr,
                offset=0.0,
                duration=None,
                mono=mono,
                layout="channels_last",
                dtype=dtype,
                quality="default",
            )
        except Exception as e:  # re-raised below, after the window's files are closed
            return e

    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        for base in range(0, len(paths), window):
            jobs = list(pool.map(open_job, paths[base : base + window]))
            try:
                failed = next((j for j in jobs if isinstance(j, Exception)), None)
                if failed is not None:
                    raise failed
                for job in jobs:  # MLX allocations stay on this thread
                    job.allocate()
                for _ in pool.map(_LoadJob.fill, jobs):
                    pass
                for i, job in enumerate(jobs):
                    results[base + i] = job.result()
            finally:
                for job in jobs:
                    if not isinstance(job, Exception):
                        job.src.close()
    return results
