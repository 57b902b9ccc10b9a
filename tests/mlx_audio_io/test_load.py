"""load(): every format, exact partial reads, layouts, dtypes, mono and resampling."""

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np
import pytest
from conftest import MEDIA_KEYS
from signals import music, pcm_grid

DECODED = MEDIA_KEYS
LOSSY = {"mp3", "m4a", "ff_ogg", "ff_opus", "ff_m4a", "ff_mp3_noxing", "ff_mp3", "ff_mono_mp3"}
EXACT = {
    "wav_f32": None,
    "wav_p16": 16,
    "wav_p24": 24,
    "flac": 24,
    "alac": 24,
    "aiff": 16,
    "caf": None,
    "ff_flac": None,
    "ff_s32": None,
    "ff_f64": None,
    "ff_rf64": 16,
    "ff_w64": 16,
    "ff_aiff": 24,
    "ff_caf": 24,
}


@pytest.mark.parametrize("key", DECODED)
def test_info_frames_equal_load_length(media, key):
    meta = aio.info(media[key])
    y, sr = aio.load(media[key])
    assert y.shape == (meta.frames, meta.channels)
    assert sr == meta.sample_rate and y.dtype == mx.float32


@pytest.mark.parametrize("key", sorted(EXACT))
def test_lossless_files_decode_exactly(media, key):
    x = media["signal"]
    bits = EXACT[key]
    y = np.asarray(aio.load(media[key])[0])
    if key == "ff_w64":  # ffmpeg's W64 muxer pads the data size to 8 bytes: one more frame
        assert len(y) == len(x) + 1
        y = y[: len(x)]
    if key == "ff_flac":  # ffmpeg converted the float source to 16 bit with its own rounding
        np.testing.assert_allclose(y, x, atol=1.6e-5)
    elif key in ("ff_s32", "ff_aiff", "ff_caf"):  # ffmpeg's float -> int rounding: 1 LSB
        np.testing.assert_allclose(y, x, atol=1.2e-7)
    else:
        np.testing.assert_array_equal(y, x if bits is None else pcm_grid(x, bits))


def test_containers_and_subtypes(media):
    got = {k: (aio.info(media[k]).container, aio.info(media[k]).subtype) for k in DECODED}
    assert got["ff_ogg"] == ("ogg", "vorbis")
    assert got["ff_opus"] == ("ogg", "opus")
    assert got["ff_ulaw"] == ("wav", "ulaw") and got["ff_alaw"] == ("wav", "alaw")
    assert got["ff_u8"] == ("wav", "pcm8") and got["ff_f64"] == ("wav", "float64")
    assert got["ff_rf64"] == ("wav", "pcm16") and got["ff_w64"] == ("w64", "pcm16")
    assert got["ff_caf"] == ("caf", "alac") and got["mp3"] == ("mp3", "mp3")
    assert aio.info(media["ff_6ch"]).channels == 6 and aio.info(media["ff_mono_mp3"]).channels == 1


@pytest.mark.parametrize("key", DECODED)
@pytest.mark.parametrize(
    "offset,duration", [(0.0, 0.5), (0.37, 0.011), (1.0001, 1.2345), (2.9, None), (0.0, None)]
)
def test_partial_reads_are_sample_exact(media, key, offset, duration):
    full, sr = aio.load(media[key])
    part, _ = aio.load(media[key], offset=offset, duration=duration)
    start = round(offset * sr)
    stop = len(full) if duration is None else min(len(full), start + round(duration * sr))
    expected = np.asarray(full)[start:stop]
    if key in ("m4a", "ff_m4a"):  # AAC noise substitution is random: see test_aac_seek_is_exact
        assert part.shape == expected.shape
        np.testing.assert_allclose(np.asarray(part), expected, atol=0.1)
    elif key in LOSSY:  # positions are exact; a seek rebuilds decoder state (float rounding)
        assert part.shape == expected.shape
        np.testing.assert_allclose(np.asarray(part), expected, atol=1e-6)
    else:
        np.testing.assert_array_equal(np.asarray(part), expected)


@pytest.mark.parametrize("bitrate", ["64k", "192k"])
def test_aac_seek_is_sample_exact(tmp_path, bitrate):
    """Seeking decodes from a packet before the target. AAC codes noise-like bands as random
    noise (PNS), whose generator state depends on where decoding began, so a few frames may
    differ from a full decode (ffmpeg behaves the same); positions must be exact: a one-frame
    slip would drop the SNR to about 0 dB."""
    from signals import sinusoid

    aio.save(tmp_path / "t.m4a", sinusoid(44100 * 4, 44100, 2), 44100, bitrate=bitrate)
    full = np.asarray(aio.load(tmp_path / "t.m4a")[0])
    for offset in (0.5, 1.0, 1.2345, 3.9):
        part = np.asarray(aio.load(tmp_path / "t.m4a", offset=offset, duration=0.25)[0])
        start = round(offset * 44100)
        ref = full[start : start + part.shape[0]]
        assert part.shape == ref.shape
        assert 10 * np.log10(np.sum(ref**2) / max(np.sum((part - ref) ** 2), 1e-30)) > 40


def test_offset_past_end_gives_zero_frames(media):
    y, _ = aio.load(media["flac"], offset=100.0)
    assert y.shape == (0, 2)
    y, _ = aio.load(media["wav_p16"], offset=100.0, duration=1.0, layout="channels_first")
    assert y.shape == (2, 0)


@pytest.mark.parametrize("key", ["wav_p16", "mp3", "flac", "ff_ogg"])
def test_layouts_and_dtypes(media, key):
    y, _ = aio.load(media[key])
    cf, _ = aio.load(media[key], layout="channels_first")
    np.testing.assert_array_equal(np.asarray(cf), np.asarray(y).T)
    h, _ = aio.load(media[key], dtype="float16")
    assert h.dtype == mx.float16
    np.testing.assert_array_equal(np.asarray(h), np.asarray(y).astype(np.float16))
    assert aio.load(media[key], dtype=mx.float16)[0].dtype == mx.float16


@pytest.mark.parametrize("key", ["wav_p16", "mp3", "ff_6ch", "ff_ogg"])
def test_mono_is_the_channel_mean(media, key):
    y = np.asarray(aio.load(media[key])[0])
    m, _ = aio.load(media[key], mono=True)
    assert m.shape == (len(y), 1)
    np.testing.assert_allclose(np.asarray(m)[:, 0], y.mean(axis=1), atol=2e-7)
    cf, _ = aio.load(media[key], mono=True, layout="channels_first")
    assert cf.shape == (1, len(y))


@pytest.mark.parametrize("key", ["wav_p16", "mp3", "flac", "m4a", "ff_ogg", "ff_opus"])
@pytest.mark.parametrize("target", [8000, 16000, 22050, 44100, 48000, 96000])
def test_resampled_frame_counts(media, key, target):
    meta = aio.info(media[key])
    y, sr = aio.load(media[key], sr=target)
    assert sr == target
    assert y.shape == (-(-meta.frames * target // meta.sample_rate), meta.channels)


def test_resampled_window_counts(media):
    y, _ = aio.load(media["wav_p16"], sr=16000, offset=0.5, duration=1.0)
    assert y.shape == (16000, 2)


def test_resampling_is_band_limited(tmp_path):
    """A 9 kHz tone resampled 44.1 -> 16 kHz must vanish (linear interpolation aliases it)."""
    sr = 44100
    t = np.arange(sr) / sr
    x = (0.5 * np.sin(2 * np.pi * 9000 * t)).astype(np.float32)[:, None]
    aio.save(tmp_path / "t.wav", x, sr)
    y = np.asarray(aio.load(tmp_path / "t.wav", sr=16000)[0])[2000:-2000, 0]
    assert 20 * np.log10(np.sqrt(np.mean(y**2)) / (0.5 / np.sqrt(2))) < -90
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[:, None]
    aio.save(tmp_path / "k.wav", tone, sr)
    y = np.asarray(aio.load(tmp_path / "k.wav", sr=16000)[0])[:, 0]
    ref = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / 16000)
    err = (y - ref)[2000:-2000]
    assert 10 * np.log10(np.mean(ref**2) / np.mean(err**2)) > 80


def test_quality_levels_differ_and_are_ordered(tmp_path):
    sr = 44100
    x = np.random.default_rng(1).standard_normal((sr, 1)).astype(np.float32) * 0.1
    aio.save(tmp_path / "n.wav", x, sr)
    best = np.asarray(aio.load(tmp_path / "n.wav", sr=16000, resample_quality="best")[0])
    errors = []
    for q in ["fastest", "low", "medium", "default"]:
        y = np.asarray(aio.load(tmp_path / "n.wav", sr=16000, resample_quality=q)[0])
        errors.append(np.mean((y - best) ** 2))
    assert errors == sorted(errors, reverse=True) and len(set(errors)) == 4
    same = aio.load(tmp_path / "n.wav", sr=16000, resample_quality="high")[0]
    np.testing.assert_array_equal(np.asarray(same), best)


def test_resample_function_matches_load(media):
    x, sr = aio.load(media["wav_p16"])
    y = aio.resample(x, sr, 16000)
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(aio.load(media["wav_p16"], sr=16000)[0]), atol=1e-6
    )
    cf = aio.resample(x.T, sr, 16000, layout="channels_first")
    np.testing.assert_allclose(np.asarray(cf), np.asarray(y).T, atol=1e-6)
    one = aio.resample(np.asarray(x)[:, 0], sr, 16000)
    assert one.ndim == 1 and one.shape[0] == y.shape[0]
    assert aio.resample(x.astype(mx.float16), sr, 8000).dtype == mx.float16
    np.testing.assert_array_equal(np.asarray(aio.resample(x, sr, sr)), np.asarray(x))


def test_pathlike_and_str(media):
    a = aio.load(str(media["wav_p16"]))[0]
    b = aio.load(media["wav_p16"])[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_streamed_wav_with_unknown_size(tmp_path):
    """A WAV written to a pipe says 0xFFFFFFFF bytes of data: the real size is used."""
    x = pcm_grid(np.random.default_rng(0).uniform(-0.5, 0.5, (1234, 2)).astype(np.float32), 16)
    aio.save(tmp_path / "a.wav", x, 8000, encoding="pcm16")
    raw = bytearray((tmp_path / "a.wav").read_bytes())
    raw[4:8] = b"\xff\xff\xff\xff"
    raw[40:44] = b"\xff\xff\xff\xff"
    (tmp_path / "p.wav").write_bytes(raw)
    assert aio.info(tmp_path / "p.wav").frames == 1234
    np.testing.assert_array_equal(np.asarray(aio.load(tmp_path / "p.wav")[0]), x)


def test_sr_more_than_1024_times_the_files_rate_is_refused(tmp_path):
    """soxr's work grows with the ratio: load/stream refuse rates over 1024x apart, naming sr."""
    path = tmp_path / "slow.wav"
    aio.save(path, np.zeros((400, 1), np.float32), 8)  # an 8 Hz file
    assert aio.load(path, sr=8192)[0].shape == (409600, 1)  # 1024x: allowed
    for sr in (8200, 2_147_483_647):
        with pytest.raises(ValueError, match="sr=") as e:
            aio.load(path, sr=sr)
        assert "1024 times apart" in str(e.value)
    with pytest.raises(ValueError, match="1024 times apart"):
        next(iter(aio.stream(path, chunk_frames=1024, sr=16000)))


@pytest.mark.parametrize("name", ["x.wav", "x.flac", "x.mp3", "x.ogg", "x.m4a", "x.aiff"])
def test_plain_loads_in_one_call_equal_the_general_path(tmp_path, monkeypatch, name):
    """load(path, offset=, duration=) with every other argument at its default goes through
    _prim.load_plain (one native call); low_memory=True takes the general path, which must
    give the very same array."""
    from mlx_audio_io import _lib

    prim = _lib.prim()
    assert prim is not None, _lib.prim_error()
    calls, real = [], prim.load_plain
    monkeypatch.setattr(prim, "load_plain", lambda *a: calls.append(a) or real(*a))
    x = music(3 * 22050 + 17, 22050, 2)
    aio.save(tmp_path / name, x, 22050)
    for kw in ({}, {"offset": 0.5}, {"offset": 1.25, "duration": 0.5}, {"offset": 9.0},
               {"duration": 1e-9}):  # fmt: skip
        fast, sr = aio.load(str(tmp_path / name), **kw)
        general, sr2 = aio.load(str(tmp_path / name), low_memory=True, **kw)
        assert sr == sr2 == 22050 and fast.dtype == general.dtype == mx.float32
        np.testing.assert_array_equal(np.asarray(fast), np.asarray(general), err_msg=str(kw))
    assert len(calls) == 5  # the general path never calls it
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        aio.load(str(tmp_path / "nope.wav"), offset=1.0)
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(RuntimeError, match="bad.wav"):
        aio.load(str(tmp_path / "bad.wav"))


def test_plain_load_of_a_truncated_file_gives_the_frames_it_holds(tmp_path):
    x = music(22050, 22050, 2)
    aio.save(tmp_path / "x.wav", x, 22050, encoding="float32")
    data = (tmp_path / "x.wav").read_bytes()
    (tmp_path / "t.wav").write_bytes(data[: len(data) - 4000])
    fast = np.asarray(aio.load(str(tmp_path / "t.wav"))[0])
    general = np.asarray(aio.load(str(tmp_path / "t.wav"), low_memory=True)[0])
    np.testing.assert_array_equal(fast, general)
    np.testing.assert_array_equal(fast, x[: len(fast)])


@pytest.mark.parametrize("name", ["x.wav", "x.flac", "x.mp3", "x.ogg", "x.m4a"])
def test_info_on_a_str_path_in_one_call_equals_the_general_path(tmp_path, name):
    """info("path") builds its AudioInfo in _prim (one call); a Path takes the general path."""
    import dataclasses
    from pathlib import Path

    aio.save(tmp_path / name, music(22050 + 5, 22050, 2), 22050)
    fast, general = aio.info(str(tmp_path / name)), aio.info(Path(tmp_path / name))
    assert type(fast) is aio.AudioInfo and fast == general
    assert dataclasses.asdict(fast) == dataclasses.asdict(general)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.frames = 1
    with pytest.raises(FileNotFoundError, match="nope.flac"):
        aio.info(str(tmp_path / "nope.flac"))
    with pytest.raises(ValueError, match="NUL"):
        aio.info(str(tmp_path / "a\0b.wav"))


def test_plain_load_of_a_length_the_file_does_not_state(tmp_path, monkeypatch):
    """Ogg Opus states no length: load_plain reads it in pieces, once, like the general path."""
    from mlx_audio_io import _lib

    prim = _lib.prim()
    assert prim is not None, _lib.prim_error()
    calls, real = [], prim.load_plain
    monkeypatch.setattr(prim, "load_plain", lambda *a: calls.append(a) or real(*a))
    from mlx_audio_io import _read

    aio.save(tmp_path / "x.opus", music(48000 * 3, 48000, 2), 48000)
    with monkeypatch.context() as m:  # no second open through the general path
        m.setattr(_read, "_LoadJob", lambda *a, **k: pytest.fail("took the general path"))
        fast, sr = aio.load(str(tmp_path / "x.opus"), offset=0.5)
    general, _ = aio.load(str(tmp_path / "x.opus"), offset=0.5, low_memory=True)
    assert sr == 48000 and len(calls) == 1
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(general))


def test_plain_load_checks_every_argument_as_the_general_path(tmp_path):
    aio.save(tmp_path / "x.wav", music(1000, 8000, 1), 8000)
    with pytest.raises(ValueError, match="mono_mode"):
        aio.load(str(tmp_path / "x.wav"), mono_mode="loudest")
    with pytest.raises(ValueError, match="resample_quality"):
        aio.load(str(tmp_path / "x.wav"), resample_quality="great")
