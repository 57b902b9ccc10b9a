"""batch_load(): threads, order, equality with load, errors."""

import threading

import mlx_audio_io as aio

import numpy as np
import pytest

KEYS = ["wav_p16", "mp3", "flac", "m4a", "ff_ogg", "ff_opus", "aiff", "caf", "ff_6ch"]


@pytest.mark.parametrize("workers", [1, 3, 8])
@pytest.mark.parametrize("sr,mono", [(None, False), (16000, True)])
def test_batch_equals_load_in_order(media, workers, sr, mono):
    paths = [media[k] for k in KEYS] * 5  # more files than one window of open files
    got = aio.batch_load(paths, sr=sr, mono=mono, num_workers=workers)
    assert len(got) == len(paths)
    for path, (audio, rate) in zip(paths, got, strict=True):
        expected, expected_sr = aio.load(path, sr=sr, mono=mono)
        assert rate == expected_sr
        np.testing.assert_array_equal(np.asarray(audio), np.asarray(expected))


def test_batch_load_from_several_threads_at_once(media):
    paths = [media[k] for k in KEYS]
    expected = [np.asarray(aio.load(p)[0]) for p in paths]
    failures = []

    def worker():
        try:
            for _ in range(3):
                for (audio, _), want in zip(
                    aio.batch_load(paths, num_workers=2), expected, strict=True
                ):
                    np.testing.assert_array_equal(np.asarray(audio), want)
        except Exception as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_batch_error_names_the_file(media, tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        aio.batch_load([media["wav_p16"], missing, media["mp3"]])


def test_batch_float16_and_empty(media):
    assert aio.batch_load([]) == []
    ((audio, _),) = aio.batch_load([media["mp3"]], dtype="float16")
    assert str(audio.dtype) == "mlx.core.float16"
    with pytest.raises(ValueError, match="num_workers"):
        aio.batch_load([media["mp3"]], num_workers=0)
