"""stream(): chunks concatenate to exactly what load() returns, in every configuration."""

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np
import pytest

KEYS = [
    "wav_p16",
    "wav_f32",
    "mp3",
    "flac",
    "m4a",
    "ff_ogg",
    "ff_opus",
    "ff_mp3_noxing",
    "ff_6ch",
    "aiff",
    "ff_ulaw",
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("sr,mono", [(None, False), (16000, False), (None, True), (48000, True)])
@pytest.mark.parametrize("chunk", [1, 1000, 4096, 100000])
def test_stream_equals_load(media, key, sr, mono, chunk):
    if chunk == 1 and (sr is not None or key not in ("wav_p16", "mp3")):
        return  # one-frame chunks are slow; covered on two formats at the native rate
    expected = np.asarray(aio.load(media[key], sr=sr, mono=mono)[0])
    parts = [np.asarray(c) for c, _ in aio.stream(media[key], chunk_frames=chunk, sr=sr, mono=mono)]
    assert all(len(p) == chunk for p in parts[:-1]) and 0 < len(parts[-1]) <= chunk
    np.testing.assert_array_equal(np.concatenate(parts), expected)


def test_chunk_duration_and_reader_properties(media):
    meta = aio.info(media["wav_p16"])
    with aio.stream(media["wav_p16"], chunk_duration=0.5) as reader:
        assert reader.sample_rate == 44100 and reader.channels == 2
        assert reader.chunk_frames == 22050
        assert not reader.at_eof()
        first = reader.read_chunk()
        assert first.shape == (22050, 2) and reader.frames_read == 22050
        rest = [c for c, _ in reader]
    assert reader.at_eof() and reader.read_chunk() is None
    assert reader.frames_read == meta.frames == 22050 + sum(len(c) for c in rest)


def test_stream_resampled_chunk_duration_counts_output_frames(media):
    reader = aio.stream(media["flac"], chunk_duration=0.25, sr=8000)
    assert reader.chunk_frames == 2000
    chunks = [c for c, sr in reader]
    assert all(c.shape == (2000, 2) for c in chunks[:-1])


def test_stream_float16(media):
    chunks = [c for c, _ in aio.stream(media["mp3"], chunk_frames=8192, dtype="float16")]
    assert chunks[0].dtype == mx.float16
    np.testing.assert_array_equal(
        np.concatenate([np.asarray(c) for c in chunks]),
        np.asarray(aio.load(media["mp3"], dtype="float16")[0]),
    )


def test_close_early_releases_the_file(media):
    reader = aio.stream(media["wav_p16"], chunk_frames=100)
    assert reader.read_chunk().shape == (100, 2)
    reader.close()
    assert reader.at_eof() and reader.read_chunk() is None


def test_empty_file_streams_nothing(tmp_path):
    aio.save(tmp_path / "e.wav", np.zeros((0, 1), np.float32), 8000)
    assert list(aio.stream(tmp_path / "e.wav", chunk_frames=10)) == []
