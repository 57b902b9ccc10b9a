"""HTDemucsStreamProcessor: streaming separation equals the offline apply_model, whatever the
chunking; the sinks take its stems apart; errors, reset, latency, the lazy import."""

import subprocess
import sys

import mlx_audio_io as aio

import mlx.core as mx
import mlx_audio_streaming as ms
import numpy as np
import pytest
from mlx_audio_streaming import HTDemucsStreamProcessor
from mlx_audio_sts.models.htdemucs import BagOfModels, HTDemucs, ModelArgs, apply_model
from signals import music

SR = 8000
WINDOW = 4000  # samples in the tiny model's 0.5 s segment


def _tiny(seed: int) -> HTDemucs:
    mx.random.seed(seed)
    return HTDemucs(
        ModelArgs(
            channels=8,
            nfft=1024,
            depth=4,
            bottom_channels=16,
            t_layers=2,
            t_heads=2,
            t_hidden_scale=2.0,
            segment="1/2",
            samplerate=SR,
            dconv_mode=3,
            dconv_comp=8,
        )
    )


@pytest.fixture(scope="module")
def model():
    return _tiny(0)


def _mix(frames: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """[channels, frames] float32."""
    return np.ascontiguousarray(music(frames, SR, channels, seed).T)


def _stream(proc, x: np.ndarray, chunk_size: int) -> np.ndarray:
    """Feeds [channels, T] in chunks, then flushes; returns [sources, channels, T]."""
    outs = []
    for i in range(0, x.shape[1], chunk_size):
        out = proc.process(ms.StreamChunk(mx.array(x[:, i : i + chunk_size]), SR, x.shape[0]))
        assert out.channels == proc.channels and out.audio.shape[0] == 4 * proc.channels
        outs.append(np.asarray(out.audio))
    tail = proc.flush()
    if tail is not None:
        outs.append(np.asarray(tail.audio))
    return np.concatenate(outs, axis=1).reshape(len(proc.sources), proc.channels, -1)


def _offline(model, x: np.ndarray, segment=0.5, overlap=0.25) -> np.ndarray:
    ref = apply_model(model, x[None], shifts=0, split=True, overlap=overlap, segment=segment)
    return np.asarray(ref)[0]


def _assert_same(y: np.ndarray, ref: np.ndarray) -> None:
    assert y.shape == ref.shape
    # float32 rounding at most; on the CPU the windows see the same input, so it is exact
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("chunk_size", [37, 1000, 5000])
@pytest.mark.parametrize(
    "frames",
    [1000, WINDOW, 17000, 4 * 3000 + 7],  # < one window, one window, several, a 7-sample last
)
def test_stream_equals_apply_model(model, frames, chunk_size):
    x = _mix(frames)
    y = _stream(HTDemucsStreamProcessor(model, segment_length=0.5), x, chunk_size)
    _assert_same(y, _offline(model, x))


@pytest.mark.parametrize(("segment", "overlap"), [(0.3, 0.5), (0.25, 0.75), (0.5, 0.0)])
def test_other_segments_and_overlaps(model, segment, overlap):
    # with overlap 0.75 the last three windows are all shorter than a window
    x = _mix(9001)
    proc = HTDemucsStreamProcessor(model, segment_length=segment, overlap=overlap)
    _assert_same(_stream(proc, x, 1000), _offline(model, x, segment, overlap))


def test_bag_of_models_with_per_source_weights():
    bag = BagOfModels([_tiny(1), _tiny(2)], weights=[[1, 0, 0.5, 2], [0, 1, 0.5, 1]])
    x = _mix(10001, seed=3)
    y = _stream(HTDemucsStreamProcessor(bag, segment_length=0.5), x, 1000)
    # the bag is weighted per window here and per track offline: rounding differs slightly
    _assert_same(y, _offline(bag, x))


def test_mono_input_is_duplicated(model):
    x = _mix(7000, channels=1)
    proc = HTDemucsStreamProcessor(model, segment_length=0.5)
    y = _stream(proc, x, 1000)
    assert y.shape == (4, 2, 7000)
    _assert_same(y, _offline(model, np.repeat(x, 2, axis=0)))


def test_errors(model):
    with pytest.raises(ValueError, match=r"segment_length must be in \(0, 0.5\]"):
        HTDemucsStreamProcessor(model)  # 6.0 s default, the tiny model takes 0.5 s
    with pytest.raises(ValueError, match="segment_length"):
        HTDemucsStreamProcessor(model, segment_length=0)
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\)"):
        HTDemucsStreamProcessor(model, segment_length=0.5, overlap=1.0)
    proc = HTDemucsStreamProcessor(model, segment_length=0.5)
    with pytest.raises(ValueError, match=r"8000 Hz.*got 44100 Hz.*FileSource\(path, sample_rate"):
        proc.process(ms.StreamChunk(mx.zeros((2, 100)), 44100, 2))
    with pytest.raises(ValueError, match="2-channel audio.*got 3 channels"):
        proc.process(ms.StreamChunk(mx.zeros((3, 100)), SR, 3))
    proc.process(ms.StreamChunk(mx.zeros((2, 100)), SR, 2))
    with pytest.raises(ValueError, match="started with 2 channel"):
        proc.process(ms.StreamChunk(mx.zeros((1, 100)), SR, 1))


def test_latency_and_held_audio(model):
    proc = HTDemucsStreamProcessor(model, segment_length=0.5, overlap=0.25)
    assert proc.latency_seconds == 0.5 and (proc.window, proc.stride) == (4000, 3000)
    assert proc.sources == proc.stem_names == ["drums", "bass", "other", "vocals"]
    x = _mix(20000)
    fed = out = 0
    for n in [3999, 1, 2999, 1, 6000, 1000]:
        chunk = proc.process(ms.StreamChunk(mx.array(x[:, fed : fed + n]), SR, 2))
        fed += n
        out += chunk.num_frames
        # window k runs once its last sample is in; samples before window k+1 are then final
        windows = max(0, (fed - WINDOW) // 3000 + 1)
        assert out == windows * 3000
        assert fed - out <= WINDOW  # never more than latency_seconds behind
    assert proc.flush().num_frames == fed - out


def test_reset_and_reuse(model):
    x = _mix(9000)
    ref = _offline(model, x)
    proc = HTDemucsStreamProcessor(model, segment_length=0.5)
    proc.process(ms.StreamChunk(mx.array(_mix(5000, seed=7)), SR, 2))
    proc.reset()  # a half-read stream is forgotten
    _assert_same(_stream(proc, x, 1000), ref)
    _assert_same(_stream(proc, x, 5000), ref)  # flush() leaves it ready for the next stream
    assert proc.flush() is None  # an empty stream holds nothing


def test_pipeline_file_to_stem_files(tmp_path):
    x = _mix(14321)
    aio.save(tmp_path / "mix.wav", x.T, SR, encoding="float32")
    # a fresh model's weights are still lazy, and the processor runs on another thread
    model = _tiny(4)
    proc = HTDemucsStreamProcessor(model, segment_length=0.5)
    p = ms.StreamingPipeline(
        ms.FileSource(tmp_path / "mix.wav", chunk_size=1000),
        proc,
        ms.FileSink(tmp_path / "vocals.wav", stem_index=3, encoding="float32"),
    )
    p.start()
    p.wait()
    ref = _offline(model, x)
    vocals, sr = aio.load(tmp_path / "vocals.wav", layout="channels_first")
    assert sr == SR
    _assert_same(np.asarray(vocals), ref[3])

    p = ms.StreamingPipeline(
        ms.FileSource(tmp_path / "mix.wav", chunk_size=777),
        proc,
        ms.MultiFileSink(tmp_path / "stems", stem_names=proc.stem_names, encoding="float32"),
    )
    p.start()
    p.wait()
    for s, name in enumerate(proc.stem_names):
        y, _ = aio.load(tmp_path / "stems" / f"{name}.wav", layout="channels_first")
        _assert_same(np.asarray(y), ref[s])

    p.reset()  # a second run of the same pipeline gives the same files
    p.start()
    p.wait()
    y, _ = aio.load(tmp_path / "stems" / "bass.wav", layout="channels_first")
    _assert_same(np.asarray(y), ref[1])


def test_sinks_take_flat_and_stacked_stems(tmp_path):
    stems = np.stack([np.full((2, 50), v, np.float32) for v in (0.1, 0.2, 0.3, 0.4)])
    flat = ms.StreamChunk(mx.array(stems.reshape(8, 50)), SR, 2)
    stacked = ms.StreamChunk(mx.array(stems), SR, 2)
    for chunk, name in [(flat, "flat.wav"), (stacked, "stacked.wav")]:
        sink = ms.FileSink(tmp_path / name, stem_index=2)
        sink.write(chunk)
        sink.close()
        assert np.allclose(np.asarray(aio.load(tmp_path / name)[0]), 0.3)
    with pytest.raises(ValueError, match="stem_index=4 needs"):
        ms.FileSink(tmp_path / "x.wav", stem_index=4).write(flat)
    with pytest.raises(ValueError, match=r"expected \[3 stems"):
        ms.MultiFileSink(tmp_path / "three", ["a", "b", "c"]).write(flat)


def test_import_is_lazy_and_names_the_extra():
    code = (
        "import sys, mlx_audio_streaming as ms\n"
        "assert 'mlx_audio_sts' not in sys.modules\n"
        "assert 'HTDemucsStreamProcessor' in dir(ms)\n"
        "sys.modules['mlx_audio_sts'] = None  # as if mlx-audio-sts were not installed\n"
        "try:\n"
        "    from mlx_audio_streaming import HTDemucsStreamProcessor\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pip install mlx-audio-streaming[sts]" in r.stdout
