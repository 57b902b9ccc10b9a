"""Every error: the right exception type, naming the file, saying what was wrong."""

import re

import mlx_audio_io as aio
from mlx_audio_io import AudioDecodeError, AudioFormatError, AudioIOError

import numpy as np
import pytest
from conftest import ffmpeg


def test_missing_file(tmp_path):
    p = tmp_path / "nope.wav"
    for fn, op in [(aio.load, "load"), (aio.info, "info"), (lambda q: aio.stream(q, 10), "stream")]:
        with pytest.raises(
            FileNotFoundError, match=f"{op} failed for '{re.escape(str(p))}': file not found"
        ) as e:
            fn(p)
        assert isinstance(e.value, AudioIOError) and e.value.filename == str(p)


@pytest.mark.parametrize(
    "content,ext,exc,reason",
    [
        (b"", "wav", RuntimeError, "file is empty"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "wav", RuntimeError, "no fmt chunk"),
        (
            b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes(16) + b"data\x00\x00\x00\x00",
            "wav",
            RuntimeError,
            "invalid WAV fmt chunk",
        ),
        (bytes(range(256)) * 40, "flac", RuntimeError, "not a recognised audio file or corrupt"),
        (b"hello, this is text" * 100, "mp3", RuntimeError, "not a recognised audio file"),
        (b"fLaC" + bytes(200), "flac", RuntimeError, ""),
    ],
)
def test_bad_content(tmp_path, content, ext, exc, reason):
    p = tmp_path / f"bad.{ext}"
    p.write_bytes(content)
    for fn in (aio.load, aio.info):
        with pytest.raises(exc, match=f"failed for '{re.escape(str(p))}': .*{re.escape(reason)}"):
            fn(p)


def test_file_without_audio_stream(tmp_path):
    p = tmp_path / "image.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=8x8", "-frames:v", "1", str(p))
    with pytest.raises(ValueError, match="no audio stream"):
        aio.load(p)


def test_directory(tmp_path):
    with pytest.raises(RuntimeError, match="is a directory"):
        aio.load(tmp_path)


def test_path_type():
    with pytest.raises(
        TypeError, match="path must be a str or os.PathLike, bytes, or a binary file"
    ):
        aio.load(123)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"dtype": "int16"}, "dtype must be 'float32' or 'float16', got 'int16'"),
        ({"layout": "xx"}, "layout must be one of ['channels_last', 'channels_first'], got 'xx'"),
        ({"offset": -1}, "offset must be >= 0, got -1"),
        ({"offset": float("nan")}, "offset must be a finite number of seconds, got nan"),
        ({"duration": 0}, "duration must be > 0, got 0"),
        ({"sr": 0}, "sr must be a positive integer, got 0"),
        ({"sr": 16000.5}, "sr must be a positive integer, got 16000.5"),
        ({"resample_quality": "ultra"}, "resample_quality must be one of"),
        ({"mono": "left"}, "mono must be True or False, got 'left'"),
    ],
)
def test_load_arguments(media, kwargs, message):
    with pytest.raises(AudioFormatError, match=re.escape(message)):
        aio.load(media["wav_p16"], **kwargs)


def test_stream_arguments(media):
    msg = "Exactly one of chunk_frames or chunk_duration must be given"
    with pytest.raises(ValueError, match=msg):
        aio.stream(media["wav_p16"])
    with pytest.raises(ValueError, match=msg):
        aio.stream(media["wav_p16"], chunk_frames=10, chunk_duration=1.0)
    with pytest.raises(ValueError, match="less than one frame at 44100 Hz"):
        aio.stream(media["wav_p16"], chunk_duration=1e-9)
    with pytest.raises(ValueError, match="chunk_frames must be a positive integer, got 0"):
        aio.stream(media["wav_p16"], chunk_frames=0)


X = np.zeros((100, 2), np.float32)


@pytest.mark.parametrize(
    "name,kwargs,audio,message",
    [
        ("o.xyz", {}, X, "unsupported output format '.xyz'; supported: .aif, .aifc, .aiff"),
        ("o", {}, X, "unsupported output format '(no extension)'"),
        (
            "o.wav",
            {"encoding": "pcm12"},
            X,
            "encoding 'pcm12' is not supported for .wav; use one of ['float32', 'pcm16', 'pcm24', "
            "'pcm8', 'ulaw', 'alaw']",
        ),
        ("o.mp3", {"encoding": "pcm16"}, X, "encoding 'pcm16' is not supported for .mp3"),
        ("o.flac", {"encoding": "alac"}, X, "encoding 'alac' is not supported for .flac"),
        ("o.opus", {"encoding": "vorbis"}, X, "encoding 'vorbis' is not supported for .opus"),
        ("o.wav", {"bitrate": "192k"}, X, "bitrate is only used by lossy encodings"),
        ("o.flac", {"bitrate": "192k"}, X, "bitrate is only used by lossy encodings"),
        ("o.m4a", {"encoding": "alac", "bitrate": "192k"}, X, "bitrate is only used by lossy"),
        ("o.mp3", {"bitrate": "fast"}, X, "bitrate must be 'auto', a string like '192k'"),
        ("o.m4a", {"bitrate": "1k"}, X, "aac bitrate must be 16k-320k for 2 channel(s), got '1k'"),
        ("o.ogg", {"bitrate": "8k"}, X, "vorbis bitrate must be 32k-500k"),
        ("o.opus", {"bitrate": "2k"}, X, "opus bitrate must be 6k-510k"),
        (
            "o.flac",
            {"flac_compression": "max"},
            X,
            "flac_compression must be 'default' or 'fast' (or a level 0-12), got 'max'",
        ),
        ("o.wav", {}, np.zeros((10, 2), np.int16), "audio must be floating point"),
        ("o.wav", {}, np.zeros((2, 2, 2), np.float32), "audio must be 1-D or 2-D, got shape"),
        (
            "o.wav",
            {"layout": "channels_last"},
            np.zeros((2, 4410), np.float32),
            "pass layout='channels_first'",
        ),
        ("o.wav", {"layout": "zz"}, X, "layout must be one of"),
        ("o.wav", {"format": "xyz"}, X, "format must be one of"),
    ],
)
def test_save_arguments(tmp_path, name, kwargs, audio, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        aio.save(tmp_path / name, audio, 44100, **kwargs)
    assert not (tmp_path / name).exists()


def test_save_rates_and_channels(tmp_path):
    with pytest.raises(ValueError, match="MP3 supports sample rates .* got 96000; resample first"):
        aio.save(tmp_path / "a.mp3", X, 96000)
    # an MP3 bitrate the MPEG version cannot carry becomes the nearest one, with a warning
    with pytest.warns(UserWarning, match=r"bitrate='192k' cannot be coded as MP3 at 16000 Hz"):
        aio.save(tmp_path / "a.mp3", np.zeros((32000, 1), np.float32), 16000, bitrate="192k")
    assert 150_000 < 8 * (tmp_path / "a.mp3").stat().st_size / 2 < 180_000  # 160k, not 192k
    with pytest.raises(ValueError, match="M4A supports sample rates"):
        aio.save(tmp_path / "a.m4a", X, 12345)
    with pytest.raises(ValueError, match=r"\.mp3 holds at most 2 channels, got 6"):
        aio.save(tmp_path / "a.mp3", np.zeros((10, 6), np.float32), 44100)
    with pytest.raises(ValueError, match="sr must be a positive integer, got 0"):
        aio.save(tmp_path / "a.wav", X, 0)


@pytest.mark.parametrize("name", ["a.wav", "a.flac", "a.mp3"])
def test_save_into_missing_directory(tmp_path, name):
    p = tmp_path / "no" / "such" / name
    with pytest.raises(
        AudioDecodeError,
        match=f"save failed for '{re.escape(str(p))}': .*(No such file|cannot open)",
    ):
        aio.save(p, X, 44100)


def test_resample_arguments():
    with pytest.raises(ValueError, match="audio must be floating point"):
        aio.resample(np.zeros(10, np.int16), 16000, 8000)
    with pytest.raises(ValueError, match="in_sr must be a positive integer, got 0"):
        aio.resample(np.zeros(10, np.float32), 0, 8000)
    with pytest.raises(ValueError, match="resample_quality must be one of"):
        aio.resample(np.zeros(10, np.float32), 16000, 8000, quality="x")
