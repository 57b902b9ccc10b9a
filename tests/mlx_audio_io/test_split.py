"""Long FLAC/ALAC loads decode in segments on several cores: the result must be exactly what
one sequential decode gives (stream() decodes sequentially)."""

import mlx_audio_io as aio
from mlx_audio_io import _read

import numpy as np
import pytest
from signals import music, pcm_grid


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    x = music((1 << 20) + 12345, 44100, 2, seed=3)  # above the split threshold
    aio.save(d / "x.flac", x, 44100, encoding="pcm24")
    aio.save(d / "x.m4a", x, 44100, encoding="alac")
    aio.save(d / "x.ogg", x, 44100)
    return d, pcm_grid(x, 24)


def _sequential(path, **kw):
    return np.concatenate([np.asarray(c) for c, _ in aio.stream(path, chunk_frames=1 << 16, **kw)])


@pytest.mark.parametrize("name", ["x.flac", "x.m4a", "x.ogg"])
def test_split_load_equals_sequential_decode(long_files, name, monkeypatch):
    d, x = long_files
    if name.endswith(".ogg"):  # lossy: compare with its own sequential decode
        x = _sequential(d / name)
    calls = []
    real = _read._split_read
    monkeypatch.setattr(_read, "_split_read", lambda *a: calls.append(1) or real(*a))
    y = np.asarray(aio.load(d / name)[0])
    assert calls, "the split path was not taken"
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(y, _sequential(d / name))
    w = np.asarray(aio.load(d / name, offset=1.5, duration=25.0, mono=True)[0])
    np.testing.assert_array_equal(w, _sequential(d / name, offset=1.5, duration=25.0, mono=True))
    cf = np.asarray(aio.load(d / name, layout="channels_first")[0])
    np.testing.assert_array_equal(cf, x.T)
    np.testing.assert_array_equal(np.asarray(aio.load((d / name).read_bytes())[0]), x)


def test_resampled_and_batch_loads_are_not_split(long_files, monkeypatch):
    d, _ = long_files
    monkeypatch.setattr(_read, "_split_read", lambda *a: pytest.fail("split"))
    aio.load(d / "x.flac", sr=16000)
    aio.batch_load([d / "x.flac"])


def test_truncated_long_flac_falls_back_to_one_decode(long_files, tmp_path):
    d, _ = long_files
    data = (d / "x.flac").read_bytes()
    (tmp_path / "t.flac").write_bytes(data[: len(data) * 2 // 3])
    try:
        y = np.asarray(aio.load(tmp_path / "t.flac")[0])
    except RuntimeError:
        return  # the decoder may call the cut frame corrupt: an error, never a crash
    np.testing.assert_array_equal(y, _sequential(tmp_path / "t.flac"))
