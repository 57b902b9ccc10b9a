"""Sound devices through sounddevice (PortAudio): MicrophoneSource and SpeakerSink."""

from __future__ import annotations

import queue

import mlx.core as mx
import numpy as np

from .core import StreamChunk
from .sinks import AudioSink, _select
from .sources import AudioSource


def _sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the PortAudio library itself is missing
        raise ImportError(
            "sound devices need the sounddevice package and PortAudio: pip install "
            "'mlx-audio-streaming[devices]' (Debian/Ubuntu: apt-get install libportaudio2)"
        ) from e
    return sounddevice


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
        sd = _sounddevice()
        self.sample_rate, self.channels, self.chunk_size = sample_rate, channels, chunk_size
        self.dropped_chunks = 0
        self._left = None if duration is None else int(round(duration * sample_rate))
        self._queue: queue.Queue = queue.Queue(queue_size)
        self._stream = sd.InputStream(
            samplerate=sample_rate,
            channels=channels,
            blocksize=chunk_size,
            device=device_id,
            dtype="float32",
            callback=self._on_block,
        )
        self._stream.start()

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
        self._stream.stop()
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
        self._sd = _sounddevice()
        self.sample_rate, self.channels = sample_rate, channels
        self.device_id, self.stem_index = device_id, stem_index
        self.underruns = 0
        self._stream = None

    def write(self, chunk: StreamChunk) -> None:
        frames = _select(chunk, self.stem_index)
        if self._stream is None:
            self.sample_rate = self.sample_rate or chunk.sample_rate
            self.channels = self.channels or frames.shape[1]
            self._stream = self._sd.OutputStream(
                samplerate=self.sample_rate,
                channels=self.channels,
                device=self.device_id,
                dtype="float32",
            )
            self._stream.start()
        if frames.shape[1] != self.channels:
            raise ValueError(f"SpeakerSink plays {self.channels} channel(s), got {frames.shape[1]}")
        if self._stream.write(np.ascontiguousarray(frames)):
            self.underruns += 1

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()  # plays what is queued, then stops
            self._stream.close()
            self._stream = None
