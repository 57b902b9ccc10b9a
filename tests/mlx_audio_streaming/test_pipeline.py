"""Pipelines: file -> processors -> file, stop, errors, threads, stats, reset."""

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
