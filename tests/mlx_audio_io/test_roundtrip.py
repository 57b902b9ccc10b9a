"""save -> info -> load round trips over format x encoding x channels x sample rate."""

import mlx_audio_io as aio

import numpy as np
import pytest
from signals import chirp, lag, music, pcm_grid

RATES = [8000, 16000, 22050, 44100, 48000, 96000]
CHANNELS = [1, 2, 6]
# (extension, encoding, bits the decoded samples are exact to; None = exact float32)
LOSSLESS = [
    ("wav", "float32", None),
    ("wav", "pcm16", 16),
    ("wav", "pcm24", 24),
    ("flac", "pcm16", 16),
    ("flac", "pcm24", 24),
    ("flac", "float32", 24),
    ("aiff", "float32", None),
    ("aiff", "pcm16", 16),
    ("aiff", "pcm24", 24),
    ("caf", "float32", None),
    ("caf", "pcm16", 16),
    ("caf", "pcm24", 24),
    ("m4a", "alac", 24),
    ("m4a", "pcm16", 16),
]
SUBTYPES = {
    ("wav", "float32"): "float32",
    ("wav", "pcm16"): "pcm16",
    ("wav", "pcm24"): "pcm24",
    ("aiff", "float32"): "float32",
    ("aiff", "pcm16"): "pcm16",
    ("aiff", "pcm24"): "pcm24",
    ("caf", "float32"): "float32",
    ("caf", "pcm16"): "pcm16",
    ("caf", "pcm24"): "pcm24",
    ("flac", "pcm16"): "flac",
    ("flac", "pcm24"): "flac",
    ("flac", "float32"): "flac",
    ("m4a", "alac"): "alac",
    ("m4a", "pcm16"): "alac",
}


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("ext,encoding,bits", LOSSLESS)
def test_lossless_roundtrip(tmp_path, ext, encoding, bits, channels, rate):
    if ext == "m4a" and rate not in (8000, 16000, 22050, 44100, 48000, 96000):
        pytest.fail("grid rate outside AAC/ALAC rates")
    x = music(rate // 10 + 7, rate, channels, seed=channels)
    x[3] = 1.0  # full scale saturates at the top of the integer range
    path = tmp_path / f"x.{ext}"
    aio.save(path, x, rate, encoding=encoding)
    meta = aio.info(path)
    assert (meta.frames, meta.sample_rate, meta.channels) == (len(x), rate, channels)
    assert meta.subtype == SUBTYPES[(ext, encoding)]
    assert meta.container == ext
    assert meta.duration == pytest.approx(len(x) / rate)
    y, sr = aio.load(path)
    assert sr == rate and y.shape == (len(x), channels) and y.dtype == aio.load(path)[0].dtype
    expected = x if bits is None else pcm_grid(x, bits)
    np.testing.assert_array_equal(np.asarray(y), expected)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_mp3_roundtrip_keeps_length_and_alignment(tmp_path, channels, rate):
    x = chirp(rate + 333, rate, channels)
    path = tmp_path / "x.mp3"
    aio.save(path, x, rate)
    meta = aio.info(path)
    assert (meta.frames, meta.sample_rate, meta.channels, meta.subtype) == (
        len(x),
        rate,
        channels,
        "mp3",
    )
    y, _ = aio.load(path)
    y = np.asarray(y)
    assert y.shape == x.shape  # the LAME tag lets the decoder drop delay and padding
    assert lag(x, y, 256) == 0
    mid = slice(len(x) // 4, 3 * len(x) // 4)
    assert np.corrcoef(x[mid, 0], y[mid, 0])[0, 1] > 0.95


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_aac_roundtrip_keeps_length_and_alignment(tmp_path, channels, rate):
    x = chirp(rate + 555, rate, channels)
    path = tmp_path / "x.m4a"
    aio.save(path, x, rate, bitrate="128k" if channels < 6 else "auto")
    meta = aio.info(path)
    assert (meta.frames, meta.channels, meta.subtype, meta.container) == (
        len(x),
        channels,
        "aac",
        "m4a",
    )
    y = np.asarray(aio.load(path)[0])
    assert y.shape == x.shape  # priming removed through the edit list, padding cut
    assert lag(x, y, 256) == 0
    mid = slice(len(x) // 4, 3 * len(x) // 4)
    assert np.corrcoef(x[mid, 0], y[mid, 0])[0, 1] > 0.95


def test_save_channels_first_and_1d(tmp_path):
    x = music(1000, 16000, 2)
    aio.save(tmp_path / "cf.wav", x.T.copy(), 16000, layout="channels_first")
    np.testing.assert_array_equal(np.asarray(aio.load(tmp_path / "cf.wav")[0]), x)
    aio.save(tmp_path / "m.wav", x[:, 0], 16000)
    assert aio.load(tmp_path / "m.wav")[0].shape == (1000, 1)


def test_save_strided_mx_views_without_copy_errors(tmp_path):
    import mlx.core as mx

    x = mx.array(music(4000, 16000, 4))
    view = x[::2, ::-1]  # strided and reversed
    aio.save(tmp_path / "v.wav", view, 16000)
    np.testing.assert_array_equal(np.asarray(aio.load(tmp_path / "v.wav")[0]), np.asarray(view))
    aio.save(tmp_path / "t.flac", x.T, 16000, layout="channels_first", encoding="pcm24")
    np.testing.assert_array_equal(
        np.asarray(aio.load(tmp_path / "t.flac")[0]), pcm_grid(np.asarray(x), 24)
    )


def test_save_accepts_float16_and_float64(tmp_path):
    x = music(500, 8000, 2)
    aio.save(tmp_path / "h.wav", x.astype(np.float16), 8000)
    np.testing.assert_array_equal(
        np.asarray(aio.load(tmp_path / "h.wav")[0]), x.astype(np.float16).astype(np.float32)
    )
    aio.save(tmp_path / "d.wav", x.astype(np.float64), 8000)
    np.testing.assert_array_equal(np.asarray(aio.load(tmp_path / "d.wav")[0]), x)


def test_clip(tmp_path):
    x = np.array([[1.5], [-2.0], [0.25], [np.nan]], dtype=np.float32)
    aio.save(tmp_path / "c.wav", x, 8000)
    np.testing.assert_array_equal(
        np.asarray(aio.load(tmp_path / "c.wav")[0])[:, 0], [1, -1, 0.25, 0]
    )
    aio.save(tmp_path / "n.wav", x[:3], 8000, clip=False)
    np.testing.assert_array_equal(
        np.asarray(aio.load(tmp_path / "n.wav")[0])[:, 0], [1.5, -2, 0.25]
    )
    aio.save(tmp_path / "p.wav", x, 8000, encoding="pcm16", clip=False)  # integers saturate
    np.testing.assert_array_equal(
        np.asarray(aio.load(tmp_path / "p.wav")[0])[:, 0], [32767 / 32768, -1, 0.25, 0]
    )


def test_empty_audio_roundtrip(tmp_path):
    for name in ("e.wav", "e.flac", "e.aiff", "e.caf"):
        aio.save(tmp_path / name, np.zeros((0, 2), np.float32), 8000)
        assert aio.info(tmp_path / name).frames == 0
        assert aio.load(tmp_path / name)[0].shape == (0, 2)


def test_wav_header_layout(tmp_path):
    """Plain PCM for <=2 channels at 16 bit, IEEE float with a fact chunk, EXTENSIBLE above."""
    x = music(10, 8000, 2)
    aio.save(tmp_path / "a.wav", x, 8000, encoding="pcm16")
    head = (tmp_path / "a.wav").read_bytes()[:44]
    assert (
        head[:4] == b"RIFF"
        and head[20:22] == b"\x01\x00"
        and len((tmp_path / "a.wav").read_bytes()) == 44 + 40
    )
    aio.save(tmp_path / "f.wav", x, 8000)
    assert (tmp_path / "f.wav").read_bytes()[20:22] == b"\x03\x00"
    aio.save(tmp_path / "e.wav", music(10, 8000, 6), 8000)
    assert (tmp_path / "e.wav").read_bytes()[20:22] == b"\xfe\xff"
