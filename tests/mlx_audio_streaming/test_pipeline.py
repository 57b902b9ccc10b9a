"""Pipelines: file -> processors -> file, stop, errors, threads, stats, reset."""

import subprocess
import sys
import textwrap
import threading
import time

import mlx_audio_io as aio

import mlx.core as mx
import mlx_audio_streaming as ms
import numpy as np
import pytest
from signals import music


@pytest.fixture
def song(tmp_path):
    x = music(44100 * 2 + 333, 44100, 2)
    aio.save(tmp_path / "in.wav", x, 44100)
    return tmp_path / "in.wav", x


def _no_stage_threads():
    return not [t for t in threading.enumerate() if t.name.startswith("mlx_audio_streaming")]


@pytest.mark.parametrize("out_name", ["out.wav", "out.flac"])
def test_file_gain_file(song, tmp_path, out_name):
    path, x = song
    p = ms.StreamingPipeline(
        ms.FileSource(path, chunk_size=1000),
        ms.GainProcessor(gain_db=-6.0),
        ms.FileSink(tmp_path / out_name),
    )
    p.start()
    assert p.wait() is True and not p.is_running and _no_stage_threads()
    y, sr = aio.load(tmp_path / out_name)
    assert sr == 44100 and y.shape == x.shape
    np.testing.assert_allclose(np.asarray(y), x * 10 ** (-6 / 20), atol=1e-4)
    s = p.stats
    assert s.chunks_processed == -(-len(x) // 1000) and s.samples_processed == len(x)
    assert s.realtime_factor > 1 and len(s.latencies) == s.chunks_processed


def test_processor_list_and_seed_lowpass_example(song, tmp_path):
    class LowPassFilter(ms.StreamProcessor):  # the seed's custom processor, unchanged
        def __init__(self, cutoff: float = 0.1):
            super().__init__()
            self.cutoff = cutoff
            self._prev_sample = None

        def process(self, chunk):
            audio = chunk.audio
            if self._prev_sample is None:
                self._prev_sample = mx.zeros((audio.shape[0], 1))
            filtered = mx.concatenate([self._prev_sample, audio], axis=1)
            output = self.cutoff * audio + (1 - self.cutoff) * filtered[:, :-1]
            self._prev_sample = audio[:, -1:]
            return ms.StreamChunk(
                audio=output, sample_rate=chunk.sample_rate, channels=chunk.channels
            )

        def reset(self):
            self._prev_sample = None

    path, x = song
    got = []
    p = ms.StreamingPipeline(
        ms.FileSource(path, chunk_size=4096),
        [LowPassFilter(0.5), ms.GainProcessor(2.0), ms.IdentityProcessor()],
        ms.CallbackSink(lambda a, sr, ch: got.append(np.asarray(a))),
    )
    p.start()
    p.wait()
    y = np.concatenate(got, axis=1).T
    ref = 2 * (0.5 * x + 0.5 * np.concatenate([np.zeros((1, 2)), x[:-1]]))
    np.testing.assert_allclose(y, ref, atol=1e-5)  # state carried across chunk borders


def test_callback_source_and_resampling_file_source(tmp_path, song):
    def gen():
        for i in range(10):
            yield np.full((2, 512), i / 10, np.float32)

    got = []
    p = ms.StreamingPipeline(
        ms.CallbackSource(gen, 16000, 2),
        None,
        ms.CallbackSink(lambda a, sr, ch: got.append((a.shape, sr, ch))),
    )
    p.start()
    p.wait()
    assert got == [((2, 512), 16000, 2)] * 10
    src = ms.FileSource(song[0], chunk_size=800, sample_rate=16000)
    assert (src.sample_rate, src.channels) == (16000, 2)
    assert src.read().audio.shape == (2, 800)


def test_stop_ends_every_stage_within_a_chunk(tmp_path):
    def endless():
        while True:
            yield np.zeros((1, 1024), np.float32)

    class Slow(ms.StreamProcessor):
        def process(self, chunk):
            time.sleep(0.01)
            return chunk

    p = ms.StreamingPipeline(
        ms.CallbackSource(endless, 44100, 1), Slow(), ms.FileSink(tmp_path / "live.wav")
    )
    p.start()
    time.sleep(0.2)
    assert p.is_running
    t0 = time.perf_counter()
    p.stop()
    assert time.perf_counter() - t0 < 0.5 and not p.is_running and _no_stage_threads()
    assert p.wait(timeout=1) is True
    written = aio.info(tmp_path / "live.wav").frames  # the sink was closed: a valid file
    assert written > 0 and written % 1024 == 0


@pytest.mark.parametrize("stage", ["source", "processor", "sink"])
def test_a_failing_stage_stops_the_pipeline_and_is_named(stage, tmp_path):
    def gen():
        for i in range(50):
            if stage == "source" and i == 3:
                raise OSError("device unplugged")
            yield np.zeros((1, 256), np.float32)

    class Boom(ms.StreamProcessor):
        def process(self, chunk):
            raise ValueError("bad chunk")

    def sink_cb(a, sr, ch):
        raise RuntimeError("disk full")

    proc = Boom() if stage == "processor" else ms.IdentityProcessor()
    sink = ms.CallbackSink(sink_cb) if stage == "sink" else ms.CallbackSink(lambda *a: None)
    p = ms.StreamingPipeline(ms.CallbackSource(gen, 8000, 1), proc, sink)
    p.start()
    with pytest.raises(ms.PipelineError, match=f"the {stage} stage failed") as e:
        p.wait(timeout=5)
    assert e.value.stage == stage and e.value.__cause__ is not None
    assert not p.is_running and _no_stage_threads()


def test_wait_timeout_and_reset(song):
    path, _ = song

    class Slow(ms.StreamProcessor):
        def process(self, chunk):
            time.sleep(0.05)
            return chunk

    p = ms.StreamingPipeline(
        ms.FileSource(path, chunk_size=4096), Slow(), ms.CallbackSink(lambda *a: None)
    )
    p.start()
    assert p.wait(timeout=0.05) is False
    with pytest.raises(RuntimeError, match="already running"):
        p.start()
    p.wait()
    first = p.stats.samples_processed
    p.reset()
    assert p.stats.chunks_processed == 0
    p.start()
    p.wait()
    assert p.stats.samples_processed == first


def test_multifile_sink_and_stem_selection(tmp_path):
    stems = np.stack([np.full((2, 300), v, np.float32) for v in (0.1, 0.2, 0.3, 0.4)])

    def gen():
        for _ in range(3):
            yield stems

    class Split(ms.StreamProcessor):  # stands in for a separator: [stems, channels, n]
        def process(self, chunk):
            return chunk

    class StemSource(ms.AudioSource):  # a source whose chunks already hold four stems
        sample_rate, channels = 8000, 2

        def __init__(self):
            self.it = gen()

        def read(self):
            s = next(self.it, None)
            return None if s is None else ms.StreamChunk(mx.array(s), 8000, 2)

    src = StemSource()
    p = ms.StreamingPipeline(
        src, Split(), ms.MultiFileSink(tmp_path / "stems", ["drums", "bass", "other", "vocals"])
    )
    p.start()
    p.wait()
    for i, name in enumerate(["drums", "bass", "other", "vocals"]):
        y, _ = aio.load(tmp_path / "stems" / f"{name}.wav")
        assert y.shape == (900, 2) and np.allclose(np.asarray(y), 0.1 * (i + 1))
    one = ms.FileSink(tmp_path / "vocals.flac", stem_index=3)
    one.write(ms.StreamChunk(mx.array(stems), 8000, 2))
    one.close()
    assert np.allclose(np.asarray(aio.load(tmp_path / "vocals.flac")[0]), 0.4, atol=1e-6)


def test_file_sink_wav_is_valid_after_every_chunk(tmp_path):
    sink = ms.FileSink(tmp_path / "grow.wav")
    for i in range(1, 4):
        sink.write(ms.StreamChunk(mx.full((2, 100), 0.25), 8000, 2))
        assert aio.info(tmp_path / "grow.wav").frames == 100 * i  # before close()
    sink.close()


def _chunks(*rates, channels=2, frames=100):
    class Source(ms.AudioSource):  # a source whose chunks carry the given rates in turn
        sample_rate, channels_ = rates[0], channels

        def __init__(self):
            self.channels = channels
            self.it = iter(rates)

        def read(self):
            rate = next(self.it, None)
            return None if rate is None else ms.StreamChunk(mx.full((channels, frames), 0.1),
                                                            rate, channels)  # fmt: skip

    return Source()


def test_file_sink_refuses_a_chunk_at_another_rate(tmp_path):
    sink = ms.FileSink(tmp_path / "one.wav")
    sink.write(ms.StreamChunk(mx.full((2, 100), 0.1), 44100, 2))
    with pytest.raises(ValueError, match="were 44100 Hz, this one is 16000 Hz; a file has one"):
        sink.write(ms.StreamChunk(mx.full((2, 100), 0.1), 16000, 2))
    with pytest.raises(ValueError, match="had 2 channel"):
        sink.write(ms.StreamChunk(mx.full((1, 100), 0.1), 44100, 1))
    sink.close()
    info = aio.info(tmp_path / "one.wav")
    assert (info.sample_rate, info.frames) == (44100, 100)  # nothing at the wrong speed
    # through a pipeline, and with resampling on (which holds the chunks until the end)
    for options in ({}, {"sample_rate": 8000}):
        p = ms.StreamingPipeline(_chunks(16000, 16000, 44100), None,
                                 ms.FileSink(tmp_path / "two.wav", **options))  # fmt: skip
        p.start()
        with pytest.raises(ms.PipelineError, match="the sink stage failed: ValueError") as e:
            p.wait(timeout=10)
        assert "this one is 44100 Hz" in str(e.value)
    with pytest.raises(ValueError, match=r"sample_rate must be None or an int > 0 \(Hz\), got 0"):
        ms.FileSink(tmp_path / "x.wav", sample_rate=0)
    with pytest.raises(ValueError, match="chunk sample_rate must be an int > 0"):
        ms.FileSink(tmp_path / "x.wav").write(ms.StreamChunk(mx.zeros((1, 4)), 0, 1))


class _Failing(ms.AudioSink):
    def __init__(self, write_error=None, close_error=None):
        self.write_error, self.close_error, self.closed = write_error, close_error, 0

    def write(self, chunk):
        raise self.write_error

    def close(self):
        self.closed += 1
        if self.close_error is not None:
            raise self.close_error


def test_the_first_error_wins_and_the_later_ones_are_noted():
    def gen():
        yield np.zeros((1, 64), np.float32)

    sink = _Failing(ValueError("write failed: disk full"), RuntimeError("close failed too"))
    p = ms.StreamingPipeline(ms.CallbackSource(gen, 8000, 1), None, sink)
    p.start()
    with pytest.raises(ms.PipelineError, match="sink stage failed: ValueError: write failed") as e:
        p.wait(timeout=10)
    assert isinstance(e.value.__cause__, ValueError) and sink.closed == 1
    assert e.value.__cause__.__notes__ == [
        "closing the sink failed too: RuntimeError: close failed too"
    ]

    class BadSource(ms.AudioSource):  # read fails, then close fails; then the sink's close
        sample_rate, channels = 8000, 1

        def read(self):
            raise OSError("device unplugged")

        def close(self):
            raise RuntimeError("source close failed")

    p = ms.StreamingPipeline(BadSource(), None, _Failing(close_error=OSError("sink close")))
    p.start()
    with pytest.raises(ms.PipelineError, match="source stage failed: OSError: device") as e:
        p.wait(timeout=10)
    assert e.value.__cause__.__notes__ == [
        "closing the source failed too: RuntimeError: source close failed"
    ]
    assert e.value.__notes__ == ["then the sink stage failed too: OSError: sink close"]


def test_file_sink_closes_its_writer_and_keeps_the_file_after_a_write_error(
    song, tmp_path, monkeypatch
):
    writers = []

    class FullDisk(aio.AudioWriter):  # the third write finds the disk full
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.writes, self.closes = 0, 0
            writers.append(self)

        def write(self, audio, layout="auto"):
            self.writes += 1
            if self.writes == 3:  # as AudioWriter reports a full disk
                raise aio.AudioDecodeError(
                    f"AudioWriter failed for '{self.path}': write failed: No space left on device"
                )
            super().write(audio, layout)

        def close(self):
            self.closes += 1
            super().close()

    monkeypatch.setattr(aio, "AudioWriter", FullDisk)
    path, x = song
    out = tmp_path / "out.wav"
    sink = ms.FileSink(out)
    p = ms.StreamingPipeline(ms.FileSource(path, chunk_size=1000), None, sink)
    p.start()
    with pytest.raises(ms.PipelineError, match="No space left on device") as e:
        p.wait(timeout=10)
    assert isinstance(e.value.__cause__, RuntimeError) and str(out) in str(e.value.__cause__)
    assert [w.closes for w in writers] == [1]  # closed once, by the pipeline
    sink.close()  # idempotent
    assert [w.closes for w in writers] == [1]
    y, sr = aio.load(out)  # what was written before the error is there
    assert y.shape == (2000, 2)
    np.testing.assert_allclose(np.asarray(y), x[:2000], atol=1e-6)


def test_a_full_disk_leaves_the_file_with_what_was_written(tmp_path):
    # RLIMIT_FSIZE stands in for a full disk: a write past it fails (EFBIG) and leaves what
    # came before. FileSink's promise: the file holds every chunk written before the error.
    code, out, err = _script(
        tmp_path,
        """
        import resource, signal, numpy as np, mlx_audio_io as aio, mlx_audio_streaming as ms
        x = np.random.default_rng(0).uniform(-0.5, 0.5, (44100, 2)).astype(np.float32)
        aio.save("in.wav", x, 44100)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        p = ms.StreamingPipeline(ms.FileSource("in.wav", chunk_size=1000), None,
                                 ms.FileSink("out.wav"))
        p.start()
        try:
            p.wait()
        except ms.PipelineError as e:
            print(e)
        """,
    )
    assert code == 0, err
    assert out.startswith("the sink stage failed: ")  # naming the file and the reason
    assert "File too large" in out and "'out.wav'" in out
    x = np.asarray(aio.load(tmp_path / "in.wav")[0])
    y = np.asarray(aio.load(tmp_path / "out.wav")[0])
    assert len(y) == 12000  # the 12 chunks of 8000 bytes that fit in 100 kB
    np.testing.assert_array_equal(y, x[:12000])


def test_multi_file_sink_closes_every_stem_when_one_fails(tmp_path):
    sink = ms.MultiFileSink(tmp_path / "stems", ["a", "b", "c"])
    sink.write(ms.StreamChunk(mx.zeros((3, 2, 50)), 8000, 2))

    def fail():
        raise OSError(5, "I/O error")

    sink.sinks[0]._writer.close = fail
    with pytest.raises(OSError, match="I/O error"):
        sink.close()
    assert [s._writer for s in sink.sinks] == [None, None, None]  # b and c were closed too
    for name in "bc":
        assert aio.info(tmp_path / "stems" / f"{name}.wav").frames == 50


def _script(tmp_path, *parts: str, timeout: float = 60):
    code = "\n".join(textwrap.dedent(part) for part in parts)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                       capture_output=True, text=True, timeout=timeout)  # fmt: skip
    return r.returncode, r.stdout, r.stderr


STUCK = """
    import threading, time, numpy as np, mlx_audio_streaming as ms

    class Stuck(ms.AudioSource):  # a device that stopped delivering: read() never returns
        sample_rate, channels = 8000, 1
        def read(self):
            threading.Event().wait()

    class Blocking(ms.AudioSink):  # a device whose write() never returns
        def write(self, chunk):
            threading.Event().wait()

    def endless():
        while True:
            yield np.zeros((1, 256), np.float32)
"""


def test_stop_times_out_naming_the_stuck_stage(tmp_path):
    code, out, err = _script(
        tmp_path,
        STUCK,
        """
    for source, sink in ((Stuck(), ms.CallbackSink(lambda *a: None)),
                         (ms.CallbackSource(endless, 8000, 1), Blocking())):
        p = ms.StreamingPipeline(source, None, sink)
        p.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        try:
            p.stop(timeout=0.5)
        except ms.PipelineTimeoutError as e:
            assert isinstance(e, TimeoutError) and p.is_running
            print(e.stage, e.stuck, round(time.monotonic() - t0, 1), flush=True)
    print("exiting", flush=True)
    """,
    )
    assert code == 0, err
    assert out.splitlines() == [
        "source {'source': 'Stuck.read()'} 0.5",
        "sink {'sink': 'Blocking.write()'} 0.5",
        "exiting",
    ]
    assert err == ""  # the stuck pipelines were reported by stop(): not again at exit


def test_interpreter_exit_stops_running_pipelines(tmp_path):
    # a stage thread running MLX code while the interpreter finalizes used to abort it
    # ("terminate called without an active exception", exit code 134)
    for _ in range(2):
        code, out, err = _script(
            tmp_path,
            STUCK,
            """
        import mlx_audio_streaming.pipeline as pl
        pl.STOP_TIMEOUT = 1.0
        running = ms.StreamingPipeline(ms.CallbackSource(endless, 8000, 1),
                                       ms.GainProcessor(0.5), ms.FileSink("live.wav"))
        stuck = ms.StreamingPipeline(Stuck(), None, ms.CallbackSink(lambda *a: None))
        running.start(); stuck.start()
        time.sleep(0.3)
        print("exiting", flush=True)
        """,
        )
        assert (code, out) == (0, "exiting\n"), err
        assert "terminate called" not in err
        assert err.strip().startswith("mlx_audio_streaming: at exit, stopping the pipeline "
                                      "timed out after 1 s: the source stage is still in "
                                      "Stuck.read()")  # fmt: skip
        written = aio.info(tmp_path / "live.wav").frames  # the sink was closed at exit
        assert written > 0 and written % 256 == 0


def test_stop_timeout_must_be_a_number():
    p = ms.StreamingPipeline(ms.CallbackSource(lambda: iter(()), 8000, 1), None,
                             ms.CallbackSink(lambda *a: None))  # fmt: skip
    for bad in (-1, "1", True):
        with pytest.raises(ValueError, match="timeout must be None or a number >= 0"):
            p.stop(timeout=bad)
