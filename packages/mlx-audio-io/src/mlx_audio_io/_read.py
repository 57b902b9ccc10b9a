"""Decoding: load, info, stream and batch_load over the native read pipeline.

Every read goes through one native pipeline (window -> mono mix-down -> libsoxr resampling ->
strided output) that decodes fixed-size blocks whatever the caller asks for, so streamed chunks
concatenate to exactly what ``load`` returns. Outputs are written once, straight into memory
owned by an ``mx.array`` (see ``_Output``). A file and its pipeline open in one native call
(``aio_source_open``), which is most of what a short read costs beyond the decoding.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from . import _args, _lib
from ._lib import check, errbuf, ffi, lib
from ._source import NativeFile, Opener
from .errors import AudioDecodeError, AudioFormatError

_CHUNK_UNKNOWN = 1 << 16  # frames per read when a format does not state its length
# str paths go to the native layer as their UTF-8 bytes when that is what os.fsencode gives
_FS_UTF8 = sys.getfilesystemencoding().lower().replace("-", "") == "utf8"


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


class _Source:
    """An open file with a read pipeline (one ``aio_source``); native resources are freed on
    close or collection.

    A lock pairs every native read with close: closing from another thread (an error or
    Ctrl-C in the caller while a worker decodes) waits for the read in progress, and a read
    after close raises instead of touching freed memory.
    """

    def __init__(
        self,
        source,
        *,
        op,
        sr=None,
        offset=0.0,
        duration=None,
        mono=False,
        mono_mode="mean",
        quality="default",
        window=None,
    ):
        self.op = op
        self.source = source
        self.mix = (mono, mono_mode)
        self._lock = threading.Lock()
        out_sr = _args.optional_rate("sr", sr)
        mix = _args.mono_mode(mono, mono_mode)
        s = ffi.new("aio_source *")
        if window is not None:  # (start, count) in frames, for split decoding
            s.start, s.count = window
        else:
            s.start = -1
            s.offset = _args.seconds("offset", offset, allow_zero=True)
            if duration is not None:
                s.duration = _args.seconds("duration", duration, allow_zero=False)
            else:
                s.duration = -1.0
        s.mono_mode, s.out_rate, s.quality = mix, out_sr or 0, _args.quality(quality)
        opener = Opener(source)
        self.path, self._keep = opener.label, opener.keep
        rc = lib.aio_source_open(s, opener.path, opener.data, opener.size, opener.name)
        check(rc, s.err, op, self.path)
        self._s = s
        # frees the native state on close or collection, but not at interpreter exit: a
        # daemon thread may still be decoding then (the system reclaims it all), while
        # collection cannot happen mid-read (the reading thread holds a reference)
        self._finalizer = weakref.finalize(self, lib.aio_source_close, s)
        self._finalizer.atexit = False
        self.native_rate = s.info.sample_rate
        self.subtype = ffi.string(s.info.subtype).decode()
        self.start = s.start
        self.sample_rate = out_sr or self.native_rate
        self.channels = 1 if mix else s.info.channels
        self.total = s.total

    def read_into(self, ptr, frames: int, frame_stride: int, chan_stride: int) -> int:
        """Decodes up to `frames` output frames into ptr (no GIL, no MLX); returns the count."""
        s = self._s
        with self._lock:
            if not self._finalizer.alive:
                raise AudioFormatError(f"{self.op} failed for '{self.path}': the file is closed")
            n = lib.aio_pipe_read(s.pipe, ptr, frames, frame_stride, chan_stride, s.err)
        return check(n, s.err, self.op, self.path)

    def read_pieces(self, limit: int | None = None) -> np.ndarray:
        """Reads up to `limit` frames (None: to the end) in bounded pieces, for when the
        length is not known in advance: [frames, channels]."""
        parts, n = [], 0
        while limit is None or n < limit:
            step = _CHUNK_UNKNOWN if limit is None else min(_CHUNK_UNKNOWN, limit - n)
            buf = np.empty((step, self.channels), dtype=np.float32)
            got = self.read_into(ffi.from_buffer("float[]", buf), step, self.channels, 1)
            parts.append(buf[:got])
            n += got
            if got < step:
                break
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def close(self) -> None:
        with self._lock:
            self._finalizer()
            self._keep = None


_SMALL_OUTPUT_BYTES = 1 << 20
_INT32_MAX = 2**31 - 1


class _Output:
    """Where decoded frames go: an ``mx.array`` the native code writes in place. With
    ``_prim`` its memory comes from MLX's allocator unwritten (huge pages asked for when
    large), so the decoder's pass is the only one: ``mx.zeros`` wrote it first, one page fault
    per 4 KiB (28 ms of a 42 ms WAV load here), and small outputs come warm from MLX's buffer
    cache (1 s of WAV at 60 s: 80 to 38 us). Without ``_prim``: ``mx.zeros`` for large
    outputs, and a NumPy buffer copied into MLX for those up to 1 MiB, because evaluating a
    fresh MLX array costs more than that copy there (60 us against 26 us for 1 s of
    stereo)."""

    def __init__(self, shape):
        if max(shape) > _INT32_MAX:  # MLX's shapes are int32
            raise OverflowError(f"an array dimension is at most {_INT32_MAX}, got {max(shape)}")
        if (prim := _lib.prim()) is not None:
            self.buffer = prim.empty(list(shape))
        elif shape[0] * shape[1] * 4 <= _SMALL_OUTPUT_BYTES:
            self.buffer = np.empty(shape, dtype=np.float32)
        else:
            self.buffer = mx.zeros(shape, dtype=mx.float32)
            mx.eval(self.buffer)
        self.ptr = ffi.from_buffer("float[]", self.buffer, require_writable=True)

    def array(self, frames: int, layout: str = "channels_last") -> mx.array:
        """The first `frames` frames as an mx.array."""
        out = self.buffer
        if frames < (out.shape[0] if layout == "channels_last" else out.shape[1]):
            out = out[:frames] if layout == "channels_last" else out[:, :frames]
        return mx.array(out) if isinstance(out, np.ndarray) else out


class _LoadJob:
    """load() in three steps, so batch_load can decode in worker threads without MLX calls:
    allocate() (MLX, caller's thread), fill() (native only, any thread), result()."""

    def __init__(
        self,
        source,
        *,
        sr=None,
        offset=0.0,
        duration=None,
        mono=False,
        mono_mode="mean",
        layout="channels_last",
        dtype="float32",
        quality="default",
        squeeze_mono=False,
        split=False,
    ):
        self.split = split
        self.layout = _args.layout(layout)
        self.dtype = _args.dtype(dtype)
        self.squeeze = _args.flag("squeeze_mono", squeeze_mono)
        self.src = _Source(
            source,
            op="load",
            sr=sr,
            offset=offset,
            duration=duration,
            mono=mono,
            mono_mode=mono_mode,
            quality=quality,
        )
        self.out = self.unknown = None
        self.n = 0

    def allocate(self) -> None:
        total, ch = self.src.total, self.src.channels
        if total >= 0:
            shape = (total, ch) if self.layout == "channels_last" else (ch, total)
            try:
                self.out = _Output(shape)
            except (MemoryError, OverflowError, RuntimeError, ValueError) as e:
                src = self.src
                why = (
                    f" (resampled from {src.native_rate} Hz with sr={src.sample_rate})"
                    if src.sample_rate != src.native_rate
                    else ""
                )
                raise AudioDecodeError(
                    f"{src.op} failed for '{src.path}': cannot allocate {total} frames x {ch} "
                    f"channels ({4 * total * ch / 2**30:.1f} GiB){why}: {e}"
                ) from e

    def fill(self) -> None:
        src = self.src
        if self.out is None:
            self.unknown = src.read_pieces()
        elif self.split and _splittable(src):
            self.n = _split_read(src, self.out.ptr, self._strides())
        else:
            self.n = src.read_into(self.out.ptr, src.total, *self._strides())
        src.close()

    def _strides(self) -> tuple[int, int]:
        src = self.src
        return (src.channels, 1) if self.layout == "channels_last" else (1, src.total)

    def result(self) -> tuple[mx.array, int]:
        if self.unknown is not None:
            out = mx.array(self.unknown)
            if self.layout == "channels_first":
                out = mx.contiguous(out.T)
        else:  # fewer than total frames when the file ended early (truncated)
            out = self.out.array(self.n, self.layout)
        if self.dtype != mx.float32:
            out = out.astype(self.dtype)
        if self.squeeze:
            out = _args.squeeze(out, self.layout)
        mx.eval(out)
        return out, self.src.sample_rate


_SPLIT_MIN_FRAMES = 1 << 20  # ~24 s at 44.1 kHz: below this, threads cost more than they save
# lossless frames decode independently; libvorbisfile's seeks rebuild the block overlap and
# were checked bit-identical to a sequential decode
_SPLIT_CODECS = ("flac", "alac", "vorbis")
_split_pool: ThreadPoolExecutor | None = None
_CPUS = os.cpu_count() or 1  # os.cpu_count() costs ~2 us a call


def _splittable(src: _Source) -> bool:
    """Decoding in segments on several cores gives the very same samples only for codecs
    whose seeks are bit-exact, at the native rate (a resampler's state spans segments), from
    sources that can be opened twice."""
    return (
        src.total >= _SPLIT_MIN_FRAMES
        and _CPUS > 1
        and src.subtype in _SPLIT_CODECS
        and src.sample_rate == src.native_rate
        and isinstance(src.source, (str, os.PathLike, bytes, bytearray, memoryview))
    )


def _split_read(src: _Source, ptr, strides: tuple[int, int]) -> int:
    """Decodes src's window in one segment per core, each from its own seek, into ptr."""
    global _split_pool
    parts = min(_CPUS, 4)
    if _split_pool is None:
        _split_pool = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="mlx_audio_io")
    total, (fs, cs) = src.total, strides
    bounds = [total * k // parts for k in range(parts + 1)]
    sources = [src]
    try:
        for k in range(1, parts):
            window = (src.start + bounds[k], bounds[k + 1] - bounds[k])
            sources.append(
                _Source(src.source, op=src.op, mono=src.mix[0], mono_mode=src.mix[1], window=window)
            )
    except BaseException:  # the ones already opened close now, not at collection
        for extra in sources[1:]:
            extra.close()
        raise

    def run(k: int) -> int:
        return sources[k].read_into(ptr + bounds[k] * fs, bounds[k + 1] - bounds[k], fs, cs)

    futures = [_split_pool.submit(run, k) for k in range(parts)]
    try:
        wait(futures)  # every segment has finished writing into ptr before anything closes
        counts = [f.result() for f in futures]
    finally:
        for f in futures:
            f.cancel()
        for extra in sources[1:]:
            extra.close()
    if counts != [bounds[k + 1] - bounds[k] for k in range(parts)]:  # ended early: truncated
        reread = _Source(
            src.source, op=src.op, mono=src.mix[0], mono_mode=src.mix[1], window=(src.start, total)
        )
        try:
            return reread.read_into(ptr, total, fs, cs)
        finally:
            reread.close()
    return total


def load(
    path,
    sr=None,
    offset=0.0,
    duration=None,
    mono=False,
    mono_mode="mean",
    layout="channels_last",
    dtype="float32",
    resample_quality="default",
    low_memory=False,
    squeeze_mono=False,
):
    """Decodes audio into an ``mx.array``.

    Args:
        path: A file path (str or os.PathLike), or the file's bytes in memory: ``bytes``,
            ``bytearray``, ``memoryview``, ``io.BytesIO`` (read from its position) or a binary
            file object. The format is found from the content (WAV, MP3, and everything libav
            decodes: FLAC, M4A/AAC/ALAC, AIFF, CAF, Ogg Vorbis/Opus, ...).
        sr: Output sample rate in Hz; None keeps the file's rate. Resampling is band-limited
            (libsoxr) and returns ``ceil(frames * sr / file_rate)`` frames.
        offset: Start position in seconds (rounded to the nearest frame). Reading starts
            exactly there, in every format, seeking rather than decoding what comes before.
        duration: Seconds to read; None reads to the end.
        mono: Mix all channels down to one.
        mono_mode: How ``mono`` mixes: ``"mean"`` (the average) or ``"equal_power"``
            (sum / sqrt(channels), which keeps the loudness of uncorrelated channels).
        layout: ``"channels_last"`` gives ``[frames, channels]``, ``"channels_first"``
            ``[channels, frames]``.
        dtype: ``"float32"`` or ``"float16"``. Samples are in [-1, 1) for PCM sources.
        resample_quality: ``"fastest"``, ``"low"``, ``"medium"``, ``"default"``, ``"high"``,
            ``"best"`` (see docs/io.md for what each costs and gives).
        low_memory: Accepted for compatibility with mlx-audio-io 1.3. Every read here already
            decodes and resamples in bounded blocks straight into the output, so peak memory is
            the output plus a few hundred KiB whatever this says.
        squeeze_mono: Return a 1-D ``[frames]`` array when the result has one channel.

    Returns:
        ``(audio, sample_rate)``: a 2-D ``mx.array`` (1-D with ``squeeze_mono`` and one
        channel) and the sample rate in Hz. An offset past the end gives zero frames.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: Bad argument, or a format/codec that cannot be decoded.
        RuntimeError: The file is corrupt or cannot be read.
        TypeError: ``path`` is none of the accepted kinds.
    """
    if (
        sr is None
        and mono is False
        and layout == "channels_last"
        and dtype == "float32"
        and squeeze_mono is False
        and low_memory is False
        and type(path) is str
        and (prim := _lib.prim()) is not None
    ):  # the plain case in one native call (_prim.load_plain), the rest as below
        offset = _args.seconds("offset", offset, allow_zero=True)
        if duration is not None:
            duration = _args.seconds("duration", duration, allow_zero=False)
        label = _args.as_path(path)
        _args.mono_mode(mono, mono_mode)
        _args.quality(resample_quality)
        rc, out, rate = prim.load_plain(
            _args.native_path(label), offset, -1.0 if duration is None else duration,
            _SPLIT_MIN_FRAMES if _CPUS > 1 else _args.FRAMES_MAX, _SPLIT_CODECS,
        )  # fmt: skip
        if rc == 0:
            return out, rate
        if rc < 0:
            _lib.raise_error(rc, out, "load", label)
    _args.flag("low_memory", low_memory)
    job = _LoadJob(
        path,
        split=True,
        sr=sr,
        offset=offset,
        duration=duration,
        mono=mono,
        mono_mode=mono_mode,
        layout=layout,
        dtype=dtype,
        quality=resample_quality,
        squeeze_mono=squeeze_mono,
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
        path: A file path, or the file's bytes in memory (as for :func:`load`).

    Returns:
        AudioInfo whose ``frames`` always equals the length ``load`` returns. Formats that do
        not state their length exactly (e.g. MP3 without a LAME tag, Ogg) are counted by a
        frame scan or, failing that, a decode.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: Not an audio format that can be decoded.
        RuntimeError: The file is corrupt.
    """
    if type(path) is str and _FS_UTF8 and (prim := _lib.prim()) is not None:
        out = prim.info_plain(path)  # one call; the AudioInfo is made in C++
        if type(out) is not tuple:
            return out
        if out[0] < 0:
            _lib.raise_error(out[0], out[1], "info", path)
    if type(path) is str or isinstance(path, os.PathLike):  # one native call: open, count, close
        label, s = _args.as_path(path), ffi.new("aio_source *")
        check(lib.aio_probe(_args.native_path(label), s), s.err, "info", label)
        meta, n = s.info, s.total
    else:
        frames, err = ffi.new("int64_t *"), errbuf()
        nf = NativeFile(path, "info")
        try:
            check(lib.aio_count_frames(nf.handle, frames, err), err, "info", nf.label)
        finally:
            lib.aio_close(nf.handle)
        meta, n = nf.info, frames[0]
    rate = meta.sample_rate
    # the frozen dataclass's own __init__ sets each field through object.__setattr__: a third
    # of a WAV info() call; filling __dict__ gives the same object
    out = object.__new__(AudioInfo)
    out.__dict__.update(frames=n, sample_rate=rate, channels=meta.channels,
                        duration=n / rate, subtype=ffi.string(meta.subtype).decode(),
                        container=ffi.string(meta.container).decode())  # fmt: skip
    return out


class AudioStreamReader:
    """Chunked reader returned by :func:`stream`; iterate it for ``(chunk, sample_rate)``.

    Chunks are ``[frames, channels]`` ``mx.array``s of ``chunk_frames`` frames (the last may be
    shorter). Use it as a context manager, or call :meth:`close`, to release the file early.
    """

    def __init__(
        self,
        path,
        chunk_frames=None,
        chunk_duration=None,
        sr=None,
        mono=False,
        mono_mode="mean",
        dtype="float32",
        offset=0.0,
        duration=None,
        squeeze_mono=False,
    ):
        if (chunk_frames is None) == (chunk_duration is None):
            raise AudioFormatError("Exactly one of chunk_frames or chunk_duration must be given")
        self._dtype = _args.dtype(dtype)
        self._squeeze = _args.flag("squeeze_mono", squeeze_mono)
        if chunk_frames is not None:
            chunk_frames = _args.positive_int("chunk_frames", chunk_frames, _args.FRAMES_MAX)
        else:
            chunk_duration = _args.seconds("chunk_duration", chunk_duration, allow_zero=False)
        self._src = _Source(
            path,
            op="stream",
            sr=sr,
            offset=offset,
            duration=duration,
            mono=mono,
            mono_mode=mono_mode,
        )
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
        total = self._src.total
        # a chunk larger than what is left (chunk_frames=10**12) holds only what is left
        want = self.chunk_frames if total < 0 else min(self.chunk_frames, total - self.frames_read)
        if want > _CHUNK_UNKNOWN and total < 0:
            out = mx.array(self._src.read_pieces(want))
            n = out.shape[0]
        else:
            buf = _Output((max(want, 0), self.channels))
            n = self._src.read_into(buf.ptr, want, self.channels, 1) if want > 0 else 0
            out = buf.array(n) if n else None
        self.frames_read += n
        if n < self.chunk_frames or (total >= 0 and self.frames_read >= total):
            self._eof = True
            self._src.close()
        if n == 0:
            return None
        if self._dtype != mx.float32:
            out = out.astype(self._dtype)
        if self._squeeze:
            out = _args.squeeze(out, "channels_last")
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


def stream(
    path,
    chunk_frames=None,
    chunk_duration=None,
    sr=None,
    mono=False,
    mono_mode="mean",
    dtype="float32",
    offset=0.0,
    duration=None,
    squeeze_mono=False,
):
    """Reads audio in chunks; concatenated, the chunks equal ``load`` with the same arguments.

    Args:
        path: A file path, or the file's bytes in memory (as for :func:`load`).
        chunk_frames: Frames per chunk (at the output rate).
        chunk_duration: Seconds per chunk; exactly one of the two must be given.
        sr: Output sample rate in Hz; None keeps the file's rate.
        mono, mono_mode: Mix-down, as for :func:`load`.
        dtype: ``"float32"`` or ``"float16"``.
        offset: Start in seconds; the first chunk starts exactly at that frame.
        duration: Seconds to read; None reads to the end.
        squeeze_mono: Give 1-D chunks when there is one channel.

    Returns:
        An :class:`AudioStreamReader` yielding ``(chunk, sample_rate)`` with chunks shaped
        ``[frames, channels]``.

    Raises:
        ValueError: Neither or both chunk sizes, or other bad arguments.
        FileNotFoundError, RuntimeError: As for :func:`load`.
    """
    return AudioStreamReader(
        path,
        chunk_frames,
        chunk_duration,
        sr,
        mono,
        mono_mode,
        dtype,
        offset,
        duration,
        squeeze_mono,
    )
