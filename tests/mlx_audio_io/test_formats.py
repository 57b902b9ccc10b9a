"""Formats added beyond the 1.0 contract: Ogg Vorbis/Opus, W64, 8-bit PCM, mu-law, A-law."""

import mlx_audio_io as aio

import numpy as np
import pytest
from signals import chirp, lag, music, pcm_grid


@pytest.mark.parametrize(
    "name,encoding,subtype",
    [("a.ogg", "float32", "vorbis"), ("b.ogg", "opus", "opus"), ("c.opus", "float32", "opus")],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_ogg_roundtrip_keeps_length_and_alignment(tmp_path, name, encoding, subtype, channels):
    sr = 48000
    x = chirp(sr + 777, sr, channels)
    aio.save(tmp_path / name, x, sr, encoding=encoding)
    meta = aio.info(tmp_path / name)
    assert (meta.container, meta.subtype, meta.channels, meta.sample_rate) == (
        "ogg",
        subtype,
        channels,
        sr,
    )
    y = np.asarray(aio.load(tmp_path / name)[0])
    assert y.shape == x.shape  # pre-skip and end trimming through the granule positions
    assert lag(x, y, 256) == 0
    mid = slice(len(x) // 4, 3 * len(x) // 4)
    assert np.corrcoef(x[mid, 0], y[mid, 0])[0, 1] > 0.95


def test_opus_at_other_rates_is_resampled_to_48k(tmp_path):
    x = chirp(44100, 44100, 2)
    aio.save(tmp_path / "x.opus", x, 44100)
    meta = aio.info(tmp_path / "x.opus")
    assert meta.sample_rate == 48000 and meta.frames == 48000
    aio.save(tmp_path / "y.opus", chirp(16000, 16000, 1), 16000)  # coded at 16 kHz natively,
    assert aio.info(tmp_path / "y.opus").frames == 48000  # decoded at 48 kHz as Opus always is


def test_vorbis_bitrate_changes_size(tmp_path):
    x = music(48000 * 2, 48000, 2)
    aio.save(tmp_path / "lo.ogg", x, 48000, bitrate="64k")
    aio.save(tmp_path / "hi.ogg", x, 48000, bitrate="256k")
    assert (tmp_path / "lo.ogg").stat().st_size < (tmp_path / "hi.ogg").stat().st_size


@pytest.mark.parametrize(
    "encoding,bits", [("float32", None), ("pcm16", 16), ("pcm24", 24), ("pcm8", 8)]
)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_w64_roundtrip(tmp_path, encoding, bits, channels):
    x = music(1001, 22050, channels)
    aio.save(tmp_path / "x.w64", x, 22050, encoding=encoding)
    meta = aio.info(tmp_path / "x.w64")
    assert (meta.container, meta.frames, meta.channels) == ("w64", 1001, channels)
    y = np.asarray(aio.load(tmp_path / "x.w64")[0])
    np.testing.assert_array_equal(y, x if bits is None else pcm_grid(x, bits))


def test_pcm8_wav(tmp_path):
    x = music(999, 8000, 2)
    aio.save(tmp_path / "x.wav", x, 8000, encoding="pcm8")
    assert aio.info(tmp_path / "x.wav").subtype == "pcm8"
    np.testing.assert_array_equal(np.asarray(aio.load(tmp_path / "x.wav")[0]), pcm_grid(x, 8))


@pytest.mark.parametrize("encoding", ["ulaw", "alaw"])
def test_g711_wav(tmp_path, encoding):
    x = music(8000, 8000, 1)
    aio.save(tmp_path / "x.wav", x, 8000, encoding=encoding)
    meta = aio.info(tmp_path / "x.wav")
    assert (meta.subtype, meta.frames) == (encoding, 8000)
    y = np.asarray(aio.load(tmp_path / "x.wav")[0])
    # G.711 keeps about 13 bits near zero and ~3% relative error at full scale
    np.testing.assert_allclose(y, x, atol=0.02)
    snr = 10 * np.log10(np.sum(x**2) / np.sum((y - x) ** 2))
    assert snr > 30


@pytest.mark.parametrize("channels", [3, 4, 5, 6, 7, 8])
def test_multichannel_ogg_keeps_wav_channel_order(tmp_path, channels):
    from conftest import ffmpeg
    from signals import sinusoid

    x = sinusoid(48000, 48000, channels, freq=300.0)  # each channel its own frequency
    if channels >= 6:  # channel 3 is the LFE, which lossy codecs low-pass: give it a low tone
        x[:, 3] = 0.5 * np.sin(2 * np.pi * 50 * np.arange(48000) / 48000)
    aio.save(tmp_path / "src.wav", x, 48000)
    ffmpeg("-i", str(tmp_path / "src.wav"), "-c:a", "libvorbis", str(tmp_path / "ff.ogg"))
    aio.save(tmp_path / "ours.ogg", x, 48000)
    aio.save(tmp_path / "ours.opus", x, 48000)
    aio.save(tmp_path / "ours.m4a", x, 48000, bitrate=f"{64 * channels}k")
    for name in ("ff.ogg", "ours.ogg", "ours.opus", "ours.m4a"):
        y = np.asarray(aio.load(tmp_path / name)[0])[4000:44000]
        corr = np.abs(np.corrcoef(x[4000:44000].T, y.T)[:channels, channels:])
        assert list(corr.argmax(axis=1)) == list(range(channels)), name


@pytest.mark.parametrize(
    "name,enc",
    [
        ("a.wav", "pcm16"),
        ("b.wav", "pcm24"),
        ("c.wav", "float32"),
        ("d.wav", "ulaw"),
        ("e.flac", "pcm24"),
        ("f.mp3", "float32"),
        ("g.m4a", "float32"),
        ("h.m4a", "alac"),
        ("i.ogg", "opus"),
        ("j.aiff", "pcm16"),
        ("k.caf", "float32"),
    ],
)
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_audio_writer_equals_save(tmp_path, name, enc, channels):
    if name.endswith(".mp3") and channels > 2:
        return
    sr = 48000
    x = music(sr + 4321, sr, channels)
    with aio.AudioWriter(tmp_path / name, sr, channels, encoding=enc) as w:
        for i in range(0, len(x), 1777):  # chunk boundaries unrelated to codec frames
            w.write(x[i : i + 1777], layout="channels_last")
        assert w.frames_written == len(x)
    aio.save(tmp_path / f"ref_{name}", x, sr, encoding=enc, layout="channels_last")
    np.testing.assert_array_equal(
        np.asarray(aio.load(tmp_path / name)[0]), np.asarray(aio.load(tmp_path / f"ref_{name}")[0])
    )


@pytest.mark.parametrize("name", ["a.wav", "b.flac", "c.mp3", "d.ogg"])
def test_audio_writer_survives_a_crash(tmp_path, name):
    import subprocess
    import sys

    code = f"""
import os, numpy as np, mlx_audio_io as aio
w = aio.AudioWriter({str(tmp_path / name)!r}, 48000, 2)
for _ in range(10):
    w.write(np.full((4800, 2), 0.25, np.float32))
os._exit(0)  # dies without close()
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    y = np.asarray(aio.load(tmp_path / name)[0])
    # all but what the encoder still held: its frame being filled (FLAC 4608, MP3 1152 plus
    # delay) or, for Ogg, the page being filled (100 ms)
    lost = {"a.wav": 0, "b.flac": 4608, "c.mp3": 3 * 1152, "d.ogg": 9600}[name]
    assert y.shape[0] >= 48000 - lost
    assert np.allclose(y[2000:20000], 0.25, atol=0.05)


def test_audio_writer_errors(tmp_path):
    with pytest.raises(ValueError, match="encoding 'alac' is not supported for .wav"):
        aio.AudioWriter(tmp_path / "x.wav", 44100, 2, encoding="alac")
    with aio.AudioWriter(tmp_path / "x.flac", 44100, 2) as w:
        with pytest.raises(ValueError, match="takes 2 channel"):
            w.write(np.zeros((100, 3), np.float32), layout="channels_last")
    with pytest.raises(ValueError, match="is closed"):
        w.write(np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="Opus codes 8, 12, 16, 24 or 48 kHz"):
        aio.AudioWriter(tmp_path / "x.opus", 44100, 2)
    with pytest.raises(ValueError, match="use save"):
        aio.AudioWriter(tmp_path / "x.w64", 44100, 2)
