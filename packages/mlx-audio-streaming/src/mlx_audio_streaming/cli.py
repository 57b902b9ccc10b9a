"""``mlx-audio-stream IN [OUT] [--gain-db X] [--chunk-size N] [--play]``: streams a file through
a gain into another file and/or the speaker, with a live progress line."""

from __future__ import annotations

import argparse
import sys
import threading
import time

import mlx_audio_io as aio  # first: the BLAS preload must run before mlx.core

from .pipeline import PipelineError, StreamingPipeline
from .processors import GainProcessor
from .sinks import AudioSink, FileSink, _close_all


class _Tee(AudioSink):
    """Writes every chunk to several sinks."""

    def __init__(self, sinks):
        self.sinks = sinks

    def write(self, chunk) -> None:
        for s in self.sinks:
            s.write(chunk)

    def close(self) -> None:
        _close_all(self.sinks)


def _parse(argv):
    p = argparse.ArgumentParser(prog="mlx-audio-stream", description=__doc__.split(":")[1].strip())
    p.add_argument("input", help="audio file to read (any format mlx-audio-io decodes)")
    p.add_argument("output", nargs="?", help="file to write (format from the extension)")
    p.add_argument("--gain-db", type=float, default=0.0, help="gain in dB (default 0)")
    p.add_argument("--chunk-size", type=int, default=4096, help="frames per chunk")
    p.add_argument("--play", action="store_true", help="also play through the default speaker")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    args = p.parse_args(argv)
    if args.output is None and not args.play:
        p.error("give an OUTPUT file, --play, or both")
    if args.chunk_size < 1:
        p.error(f"--chunk-size must be >= 1, got {args.chunk_size}")
    return args


def _progress(pipeline: StreamingPipeline, total: float, done: threading.Event) -> None:
    t0 = time.perf_counter()
    while not done.wait(0.2):
        _line(pipeline, total, time.perf_counter() - t0)
    _line(pipeline, total, time.perf_counter() - t0, end="\n")


def _line(pipeline, total: float, elapsed: float, end: str = "") -> None:
    s = pipeline.stats
    sys.stderr.write(
        f"\r{elapsed:6.1f} s  {s.audio_duration:7.1f} / {total:.1f} s of audio  "
        f"{s.realtime_factor:6.1f}x real time{end}"
    )
    sys.stderr.flush()


def _error(e: BaseException) -> int:
    print(f"mlx-audio-stream: error: {e}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    """Runs the command; returns the exit code (1 after an error, 130 after Ctrl-C)."""
    args = _parse(argv)
    from .sources import FileSource

    try:
        source = FileSource(args.input, chunk_size=args.chunk_size)
        total = aio.info(args.input).duration
        sinks = []
        if args.play:  # before any output is written: no sound device is an error up front
            from .devices import SpeakerSink

            sinks.append(SpeakerSink())
    except (OSError, ValueError, RuntimeError, ImportError) as e:
        return _error(e)
    if args.output:
        sinks.insert(0, FileSink(args.output))
    pipeline = StreamingPipeline(
        source, GainProcessor(gain_db=args.gain_db), sinks[0] if len(sinks) == 1 else _Tee(sinks)
    )
    done = threading.Event()
    reporter = (
        None
        if args.quiet
        else threading.Thread(target=_progress, args=(pipeline, total, done), daemon=True)
    )
    pipeline.start()
    if reporter:
        reporter.start()
    failure = None
    try:
        pipeline.wait()
        code = 0
    except KeyboardInterrupt:
        code = 130
    except PipelineError as e:
        failure, code = e, 1
    finally:
        done.set()
        if reporter:
            reporter.join()  # ends the progress line before any message
    if failure is not None:
        return _error(failure)
    if code == 130:
        print("stopped", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
