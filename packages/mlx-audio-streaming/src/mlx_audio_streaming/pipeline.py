"""StreamingPipeline: source -> processor -> sink on three threads joined by bounded queues."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import mlx.core as mx

from .core import StreamChunk
from .processors import IdentityProcessor, ProcessorChain, StreamProcessor

_END = object()  # end of stream marker
_POLL = 0.05  # seconds between checks of the stop flag while blocked on a queue


class PipelineError(RuntimeError):
    """A stage of a pipeline failed; ``stage`` names it and ``__cause__`` is the error."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"the {stage} stage failed: {type(error).__name__}: {error}")
        self.stage = stage


@dataclass
class PipelineStats:
    """What a pipeline has done so far.

    Attributes:
        chunks_processed: Chunks that went through the processor.
        samples_processed: Frames (samples per channel) that went through it.
        processing_time: Seconds spent in the processor.
        audio_duration: Seconds of audio processed.
        latencies: Per chunk, seconds from the source handing it over to the sink taking it.
        dropped_chunks: Chunks a live source had to drop because the pipeline fell behind.
        underruns: Times a live sink ran out of audio.
    """

    chunks_processed: int = 0
    samples_processed: int = 0
    processing_time: float = 0.0
    audio_duration: float = 0.0
    latencies: list = field(default_factory=list)
    dropped_chunks: int = 0
    underruns: int = 0

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio processed per second of processing (> 1: faster than real time)."""
        return self.audio_duration / self.processing_time if self.processing_time else 0.0

    @property
    def mean_latency_ms(self) -> float:
        return 1000 * sum(self.latencies) / len(self.latencies) if self.latencies else 0.0

    @property
    def max_latency_ms(self) -> float:
        return 1000 * max(self.latencies) if self.latencies else 0.0


class StreamingPipeline:
    """Runs a source, processor(s) and sink on their own threads.

    Bounded queues between the stages give back-pressure: a fast source waits for a slow
    processor instead of filling memory. :meth:`stop` ends every stage within one chunk, an
    error in any stage stops the pipeline and is raised by :meth:`wait` naming the stage, and
    the sink is always closed (a file sink leaves a valid file).

    Args:
        source: An AudioSource.
        processor: A StreamProcessor, a list of them (run in order), or None (pass-through).
        sink: An AudioSink.
        queue_size: Chunks each queue holds.
    """

    def __init__(self, source, processor=None, sink=None, queue_size: int = 8):
        if sink is None:
            raise ValueError("a pipeline needs a sink")
        if processor is None:
            processor = IdentityProcessor()
        elif isinstance(processor, (list, tuple)):
            processor = ProcessorChain(processor)
        if not isinstance(processor, StreamProcessor):
            raise TypeError(
                f"processor must be a StreamProcessor or a list of them, got "
                f"{type(processor).__name__}"
            )
        self.source, self.processor, self.sink = source, processor, sink
        self.queue_size = int(queue_size)
        self.stats = PipelineStats()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._error: PipelineError | None = None

    @property
    def is_running(self) -> bool:
        """True while any stage's thread is alive."""
        return any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Starts the three threads and returns at once."""
        if self.is_running:
            raise RuntimeError("the pipeline is already running")
        self._stop.clear()
        self._error = None
        to_proc, to_sink = queue.Queue(self.queue_size), queue.Queue(self.queue_size)
        stages = [
            ("source", self._run_source, (to_proc,)),
            ("processor", self._run_processor, (to_proc, to_sink)),
            ("sink", self._run_sink, (to_sink,)),
        ]
        self._threads = [
            threading.Thread(
                target=self._guard,
                args=(name, fn, args),
                name=f"mlx_audio_streaming-{name}",
                daemon=True,
            )
            for name, fn, args in stages
        ]
        for t in self._threads:
            t.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the pipeline to finish.

        Returns:
            True when every stage has finished, False when ``timeout`` passed first.

        Raises:
            PipelineError: A stage failed (the pipeline has stopped).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for t in self._threads:
                while t.is_alive():  # short joins so Ctrl-C reaches this thread
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    t.join(_POLL if left is None else min(_POLL, left))
        except KeyboardInterrupt:
            self.stop()
            raise
        if self._error is not None:
            raise self._error from self._error.__cause__
        return True

    def stop(self) -> None:
        """Asks every stage to stop; they end within one chunk and the sink is closed."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    def reset(self) -> None:
        """Rewinds the source, clears processor state and statistics (when stopped)."""
        if self.is_running:
            raise RuntimeError("stop the pipeline before reset()")
        self.source.reset()
        self.processor.reset()
        self.stats = PipelineStats()

    def _guard(self, stage: str, fn, args) -> None:
        try:
            fn(*args)
        except BaseException as e:  # any failure stops the whole pipeline; wait() raises it
            if self._error is None:
                self._error = PipelineError(stage, e)
                self._error.__cause__ = e
            self._stop.set()

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue):
        while not self._stop.is_set():
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue
        return _END

    def _run_source(self, out: queue.Queue) -> None:
        try:
            while not self._stop.is_set():
                chunk = self.source.read()
                # live sources and sinks count what they had to drop or could not play
                self.stats.dropped_chunks = getattr(self.source, "dropped_chunks", 0)
                if chunk is None:
                    break
                # MLX streams are per thread: a lazy array must be evaluated on the thread
                # that built it before another thread can use it
                mx.eval(chunk.audio)
                if not self._put(out, (time.perf_counter(), chunk)):
                    break
        finally:
            self._put(out, _END)
            self.source.close()

    def _run_processor(self, inq: queue.Queue, out: queue.Queue) -> None:
        while True:
            item = self._get(inq)
            if item is _END:
                tail = self.processor.flush() if not self._stop.is_set() else None
                if tail is not None:
                    mx.eval(tail.audio)
                    self._put(out, (time.perf_counter(), tail))
                self._put(out, _END)
                return
            t_in, chunk = item
            t0 = time.perf_counter()
            result = self.processor.process(chunk)
            mx.eval(result.audio)
            self._count(chunk, time.perf_counter() - t0)
            if not self._put(out, (t_in, result)):
                return

    def _count(self, chunk: StreamChunk, seconds: float) -> None:
        s = self.stats
        s.chunks_processed += 1
        s.samples_processed += chunk.num_frames
        s.audio_duration += chunk.duration
        s.processing_time += seconds

    def _run_sink(self, inq: queue.Queue) -> None:
        try:
            while True:
                item = self._get(inq)
                if item is _END:
                    return
                t_in, chunk = item
                self.sink.write(chunk)
                self.stats.latencies.append(time.perf_counter() - t_in)
                self.stats.underruns = getattr(self.sink, "underruns", 0)
        finally:
            self.sink.close()
