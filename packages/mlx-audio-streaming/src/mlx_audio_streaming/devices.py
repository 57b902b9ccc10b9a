"""Sound devices through sounddevice (PortAudio): MicrophoneSource and SpeakerSink."""

from __future__ import annotations

import queue

import mlx.core as mx
import numpy as np

from .core import StreamChunk, _count
from .sinks import AudioSink, _chunk_rate, _select
from .sources import AudioSource


class AudioDeviceError(RuntimeError):
    """A sound device could not be opened or used: none is there, PortAudio failed, or the
    device does not take the rate or channels asked for."""


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the PortAudio library itself is missing
        raise ImportError(
            "sound devices need the sounddevice package and PortAudio: pip install "
            "'mlx-audio-streaming[devices]' (Debian/Ubuntu: apt-get install libportaudio2)"
        ) from e
    return sounddevice


def _device_error(what: str, device_id, e: Exception) -> AudioDeviceError:
    name = "default" if device_id is None else device_id
    return AudioDeviceError(
        f"{what} failed for device {str(name)!r}: {e} (PortAudio); is a sound device there? "
        "`python -m sounddevice` lists them, device_id= picks one"
    )


def _device(sd, device_id, kind: str):
    """Checks that ``device_id`` (None: the default) names a ``kind`` ("input"/"output")
    device before anything is computed for it."""
    try:
        return sd.query_devices(device_id, kind)
    except (sd.PortAudioError, ValueError) as e:
        raise _device_error(f"opening the sound {kind}", device_id, e) from e


class MicrophoneSource(AudioSource):
    """Captures audio from an input device in chunks of ``chunk_size`` frames.

    PortAudio delivers blocks on its own thread into a bounded queue; when the pipeline falls
    behind, blocks are dropped and counted in ``dropped_chunks`` (a live source cannot wait).

    Args:
        sample_rate: Capture rate in Hz.
        channels: Channels to capture.
        chunk_size: Frames per chunk.
        device_id: PortAudio device index or name; None for the system default.
        duration: Stop after this many seconds (None: until the pipeline is stopped).
        queue_size: Chunks buffered between PortAudio and the pipeline.
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        channels: int = 1,
        chunk_size: int = 1024,
        device_id=None,
        duration: float | None = None,
        queue_size: int = 32,
    ):
        self.sample_rate = _count("sample_rate", sample_rate, 1)
        self.channels = _count("channels", channels, 1)
        self.chunk_size = _count("chunk_size", chunk_size, 1)
        if duration is not None and not (
            isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration > 0
        ):
            raise ValueError(f"duration must be None or seconds > 0, got {duration!r}")
        sd = _sounddevice()
        _device(sd, device_id, "input")
        self.dropped_chunks = 0
        self._left = None if duration is None else int(round(duration * self.sample_rate))
        self._queue: queue.Queue = queue.Queue(_count("queue_size", queue_size, 1))
        try:
            self._stream = sd.InputStream(
                samplerate=self.sample_rate,
                channels=self.channels,
                blocksize=self.chunk_size,
                device=device_id,
                dtype="float32",
                callback=self._on_block,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as e:
            raise _device_error("opening the sound input", device_id, e) from e

    def _on_block(self, data, frames, time_info, status) -> None:
        if status.input_overflow:  # the device produced audio nobody collected in time
            self.dropped_chunks += 1
        try:
            self._queue.put_nowait(data.T.copy())
        except queue.Full:
            self.dropped_chunks += 1

    def read(self) -> StreamChunk | None:
        if self._left is not None and self._left <= 0:
            return None
        block = self._queue.get()
        if self._left is not None:
            block = block[:, : self._left]
            self._left -= block.shape[1]
        return StreamChunk(mx.array(block), self.sample_rate, self.channels)

    def close(self) -> None:
        try:
            self._stream.stop()
        finally:
            self._stream.close()


class SpeakerSink(AudioSink):
    """Plays chunks on an output device (blocking writes pace the pipeline to real time).

    Args:
        sample_rate: Playback rate; None takes the first chunk's.
        channels: Output channels; None takes the first chunk's.
        device_id: PortAudio device index or name; None for the system default.
        stem_index: With [stems, channels, samples] chunks, the stem to play.
    """

    def __init__(
        self,
        sample_rate: int | None = None,
        channels: int | None = None,
        device_id=None,
        stem_index: int | None = None,
    ):
        self.sample_rate = None if sample_rate is None else _count("sample_rate", sample_rate, 1)
        self.channels = None if channels is None else _count("channels", channels, 1)
        self._sd = _sounddevice()
        _device(self._sd, device_id, "output")  # no device: fail now, not mid-stream
        self.device_id, self.stem_index = device_id, stem_index
        self.underruns = 0
        self._stream = None

    def write(self, chunk: StreamChunk) -> None:
        rate = _chunk_rate(chunk, "SpeakerSink failed")
        frames = _select(chunk, self.stem_index)
        if self._stream is None:
            self.sample_rate = self.sample_rate or rate
            self.channels = self.channels or frames.shape[1]
            self._stream = self._open()
        if rate != self.sample_rate:  # played at another rate it would sound at the wrong pitch
            raise ValueError(
                f"SpeakerSink failed: it plays {self.sample_rate} Hz, got a {rate} Hz chunk; "
                f"resample upstream (FileSource(path, sample_rate={self.sample_rate})) or leave "
                "sample_rate=None to play at the stream's rate"
            )
        if frames.shape[1] != self.channels:
            raise ValueError(f"SpeakerSink plays {self.channels} channel(s), got {frames.shape[1]}")
        try:
            underflow = self._stream.write(np.ascontiguousarray(frames))
        except self._sd.PortAudioError as e:
            raise _device_error("playing", self.device_id, e) from e
        if underflow:
            self.underruns += 1

    def _open(self):
        stream = None
        try:
            stream = self._sd.OutputStream(
                samplerate=self.sample_rate,
                channels=self.channels,
                device=self.device_id,
                dtype="float32",
            )
            stream.start()
        except (self._sd.PortAudioError, ValueError) as e:
            if stream is not None:  # opened but would not start: not left open
                stream.close()
            raise _device_error("opening the sound output", self.device_id, e) from e
        return stream

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()  # plays what is queued, then stops
            finally:
                stream.close()
