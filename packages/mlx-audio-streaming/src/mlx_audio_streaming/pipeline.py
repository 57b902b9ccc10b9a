"""StreamingPipeline: source -> processor -> sink on three threads joined by bounded queues."""

from __future__ import annotations

import atexit
import numbers
import queue
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field

import mlx.core as mx

from .core import StreamChunk, _note
from .processors import IdentityProcessor, ProcessorChain, StreamProcessor

_END = object()  # end of stream marker
_POLL = 0.05  # seconds between checks of the stop flag while blocked on a queue
_STAGES = ("source", "processor", "sink")
STOP_TIMEOUT = 10.0  # seconds stop() waits by default for the stages to end


class PipelineError(RuntimeError):
    """A stage of a pipeline failed; ``stage`` names it and ``__cause__`` is the error.

    The first failure wins: errors that followed it (the sink's ``close()`` failing after its
    ``write()`` did, another stage failing on the way down) are attached to ``__cause__`` or
    to this error as notes (``__notes__``)."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"the {stage} stage failed: {type(error).__name__}: {error}")
        self.stage = stage


class PipelineTimeoutError(PipelineError, TimeoutError):
    """:meth:`StreamingPipeline.stop` timed out: a stage did not end. ``stage`` names the
    first such stage and ``stuck`` maps each to the call it is in (``"SpeakerSink.write()"``).
    Its thread is left running; it is a daemon thread, so it does not keep Python alive."""

    def __init__(self, stuck: dict[str, str], timeout: float):
        what = "; ".join(f"the {stage} stage is still in {call}" for stage, call in stuck.items())
        RuntimeError.__init__(
            self,
            f"stopping the pipeline timed out after {timeout:g} s: {what}; its thread is left "
            "running (a stage must return from each call within about a chunk for stop() to "
            "end it: a source's read() or a sink's write() must not block for ever)",
        )
        self.stage = next(iter(stuck))
        self.stuck = dict(stuck)


# Pipelines still running when the interpreter exits are stopped by an atexit hook (atexit
# runs before daemon threads are frozen): a stage thread that comes back from MLX while Python
# finalizes is ended by pthread_exit inside C++ code, which aborts the process ("terminate
# called without an active exception"). Stopping also closes the sink: its file is complete.
_LIVE: weakref.WeakSet = weakref.WeakSet()
_HOOK = threading.Lock()
_hooked = False


def _stop_at_exit() -> None:
    # a pipeline whose stop() already timed out was reported then: not waited for again
    running = [p for p in list(_LIVE) if p.is_running and not p._abandoned]
    for p in running:
        p._stop.set()  # all at once, then wait for each
    for p in running:
        try:
            p.stop(timeout=STOP_TIMEOUT)
        except PipelineTimeoutError as e:
            print(f"mlx_audio_streaming: at exit, {e}", file=sys.stderr)


# weakref.finalize registers its own exit hook at its first use; using it here, at import, puts
# that hook before ours (registered at the first start()), and exit hooks run last-in first-out:
# the pipelines stop and their sinks close their files before the finalizers of the writers run.
weakref.finalize(_stop_at_exit, lambda: None)


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
        self._error_lock = threading.Lock()
        self._doing: dict[str, str | None] = dict.fromkeys(_STAGES)  # call each stage is in
        self._abandoned = False  # stop() timed out: a stage thread may never end

    @property
    def is_running(self) -> bool:
        """True while any stage's thread is alive."""
        return any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Starts the three threads and returns at once."""
        global _hooked
        if self.is_running:
            raise RuntimeError("the pipeline is already running")
        with _HOOK:
            if not _hooked:
                atexit.register(_stop_at_exit)
                _hooked = True
        _LIVE.add(self)
        self._stop.clear()
        self._error = None
        self._abandoned = False
        self._doing = dict.fromkeys(_STAGES)
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
            PipelineError: A stage failed (the pipeline has stopped); the first failure, with
                any that followed it attached as notes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for t in self._threads:
                while t.is_alive():  # short joins so Ctrl-C reaches this thread
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    t.join(_POLL if left is None else min(_POLL, left))
        except KeyboardInterrupt as interrupt:
            try:
                self.stop()
            except PipelineTimeoutError as e:
                _note(interrupt, str(e))
            raise
        if self._error is not None:
            raise self._error from self._error.__cause__
        return True

    def stop(self, timeout: float | None = STOP_TIMEOUT) -> None:
        """Asks every stage to stop and waits for them; they end within one chunk and the
        sink is closed.

        Args:
            timeout: Seconds to wait for the stages (default 10); None waits for ever.

        Raises:
            PipelineTimeoutError: A stage is still running after ``timeout`` seconds (a
                source's ``read()`` or a sink's ``write()`` that blocks); it names the stage
                and the call. The thread is left running (a daemon thread).
            ValueError: ``timeout`` is negative or not a number.
        """
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout < 0
        ):
            raise ValueError(f"timeout must be None or a number >= 0, got {timeout!r}")
        self._stop.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        stuck = {
            stage: self._doing[stage] or "between calls"
            for stage, t in zip(_STAGES, self._threads, strict=False)
            if t is not me and t.is_alive()
        }
        if stuck:
            self._abandoned = True
            raise PipelineTimeoutError(stuck, timeout)

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
            with self._error_lock:
                if self._error is None:  # the first failure wins, later ones become notes
                    self._error = PipelineError(stage, e)
                    self._error.__cause__ = e
                else:
                    _note(
                        self._error, f"then the {stage} stage failed too: {type(e).__name__}: {e}"
                    )
            self._stop.set()

    def _call(self, stage: str, name: str, fn, *args):
        """``fn(*args)``, remembering what the stage is in, for stop() to name it."""
        self._doing[stage] = name
        result = fn(*args)
        self._doing[stage] = None
        return result

    def _close(self, stage: str, obj, error: BaseException | None) -> None:
        """Closes the source or sink; after ``error`` a failing close() must not hide it, so
        its error is attached to ``error`` as a note."""
        try:
            self._call(stage, f"{type(obj).__name__}.close()", obj.close)
        except Exception as e:
            if error is None:
                raise
            _note(error, f"closing the {stage} failed too: {type(e).__name__}: {e}")

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
        read = f"{type(self.source).__name__}.read()"
        error = None
        try:
            while not self._stop.is_set():
                chunk = self._call("source", read, self.source.read)
                # live sources and sinks count what they had to drop or could not play
                self.stats.dropped_chunks = getattr(self.source, "dropped_chunks", 0)
                if chunk is None:
                    break
                # MLX streams are per thread: a lazy array must be evaluated on the thread
                # that built it before another thread can use it
                mx.eval(chunk.audio)
                if not self._put(out, (time.perf_counter(), chunk)):
                    break
        except BaseException as e:
            error = e
            raise
        finally:
            self._put(out, _END)
            self._close("source", self.source, error)

    def _run_processor(self, inq: queue.Queue, out: queue.Queue) -> None:
        name = type(self.processor).__name__
        while True:
            item = self._get(inq)
            if item is _END:
                tail = None
                if not self._stop.is_set():
                    tail = self._call("processor", f"{name}.flush()", self.processor.flush)
                if tail is not None:
                    mx.eval(tail.audio)
                    self._put(out, (time.perf_counter(), tail))
                self._put(out, _END)
                return
            t_in, chunk = item
            t0 = time.perf_counter()
            self._doing["processor"] = f"{name}.process()"  # MLX runs it in the eval
            result = self.processor.process(chunk)
            mx.eval(result.audio)
            self._doing["processor"] = None
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
        write = f"{type(self.sink).__name__}.write()"
        error = None
        try:
            while True:
                item = self._get(inq)
                if item is _END:
                    return
                t_in, chunk = item
                self._call("sink", write, self.sink.write, chunk)
                self.stats.latencies.append(time.perf_counter() - t_in)
                self.stats.underruns = getattr(self.sink, "underruns", 0)
        except BaseException as e:
            error = e
            raise
        finally:
            self._close("sink", self.sink, error)
