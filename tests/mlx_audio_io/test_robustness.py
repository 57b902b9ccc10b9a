"""Truncated and corrupted files of every format: an exception or audio, never a crash."""

import mlx_audio_io as aio
from mlx_audio_io import AudioIOError

import numpy as np
import pytest
from conftest import MEDIA_KEYS

# decoders and container parsers differ across these; the rest repeat them
KEYS = [
    k
    for k in MEDIA_KEYS
    if k
    not in (
        "ff_m4a",
        "ff_mp3",
        "ff_flac",
        "ff_alaw",
        "ff_u8",
        "ff_s32",
        "ff_f64",
        "ff_aiff",
        "ff_caf",
        "ff_6ch",
        "ff_mono_mp3",
        "wav_p24",
    )
]


def _exercise(path):
    """Every reader on one file; returns what happened, raising anything but our errors."""
    outcomes = []
    for fn in (
        aio.info,
        aio.load,
        lambda p: aio.load(p, offset=1.0, duration=0.5, sr=16000),
        lambda p: [c for c, _ in aio.stream(p, chunk_frames=4096, mono=True)],
    ):
        try:
            fn(path)
            outcomes.append("ok")
        except AudioIOError as e:
            assert str(path) in str(e)
            outcomes.append(type(e).__name__)
    return outcomes


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("cut", [1, 11, 45, 300, 4000, 0.5, -9])
def test_truncated(media, tmp_path, key, cut):
    data = media[key].read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(data) + cut)
    p = tmp_path / f"t{media[key].suffix}"
    p.write_bytes(data[:n])
    _exercise(p)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corrupted(media, tmp_path, key, seed):
    data = bytearray(media[key].read_bytes())
    rng = np.random.default_rng(seed)
    start = int(rng.integers(0, min(len(data) - 64, 2000) if seed == 0 else len(data) - 64))
    data[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    p = tmp_path / f"c{media[key].suffix}"
    p.write_bytes(bytes(data))
    _exercise(p)


@pytest.mark.parametrize("ext", [".wav", ".mp3", ".flac", ".m4a", ".ogg", ".aiff", ".caf", ""])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_bytes(tmp_path, ext, seed):
    p = tmp_path / f"r{ext}"
    p.write_bytes(np.random.default_rng(seed).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    assert "ok" not in _exercise(p)[:2]
