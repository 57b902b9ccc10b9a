"""Audio in memory: load/info/stream from bytes and file objects, save to file objects."""

import io

import mlx_audio_io as aio

import numpy as np
import pytest
from conftest import MEDIA_KEYS
from signals import music


def _sources(path):
    data = path.read_bytes()
    buf = io.BytesIO(b"junk" + data)
    buf.seek(4)  # read from the current position, as soundfile does
    return {
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "BytesIO": buf,
        "file": open(path, "rb"),  # noqa: SIM115  (closed below)
    }


@pytest.mark.parametrize("key", MEDIA_KEYS)
def test_load_and_info_from_memory_equal_the_file(media, key):
    want, sr = aio.load(media[key])
    meta = aio.info(media[key])
    for kind, src in _sources(media[key]).items():
        try:
            got, got_sr = aio.load(src)
            assert got_sr == sr, kind
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=kind)
        finally:
            if kind == "file":
                src.close()
    assert aio.info(media[key].read_bytes()) == meta


@pytest.mark.parametrize("key", ["wav_p16", "mp3", "flac", "m4a", "ff_ogg"])
def test_windows_streams_and_batches_from_memory(media, key):
    data = media[key].read_bytes()
    want, _ = aio.load(media[key], offset=1.1, duration=0.7, sr=16000, mono=True)
    got, _ = aio.load(data, offset=1.1, duration=0.7, sr=16000, mono=True)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    chunks = [np.asarray(c) for c, _ in aio.stream(io.BytesIO(data), chunk_frames=4096)]
    np.testing.assert_array_equal(np.concatenate(chunks), np.asarray(aio.load(media[key])[0]))
    ((b, _),) = aio.batch_load([data])
    np.testing.assert_array_equal(np.asarray(b), np.asarray(aio.load(media[key])[0]))


@pytest.mark.parametrize(
    "fmt,encoding",
    [
        ("wav", "pcm16"),
        ("wav", "float32"),
        ("w64", "pcm24"),
        ("flac", "pcm24"),
        ("mp3", "float32"),
        ("m4a", "float32"),
        ("m4a", "alac"),
        ("aiff", "pcm16"),
        ("caf", "float32"),
        ("ogg", "vorbis"),
        ("opus", "opus"),
    ],
)
def test_save_to_bytesio_equals_save_to_file(tmp_path, fmt, encoding):
    x = music(24000, 48000, 2)
    buf = io.BytesIO()
    aio.save(buf, x, 48000, format=fmt, encoding=encoding)
    aio.save(tmp_path / f"f.{fmt}", x, 48000, encoding=encoding)
    from_mem, _ = aio.load(buf.getvalue())
    from_file, _ = aio.load(tmp_path / f"f.{fmt}")
    np.testing.assert_array_equal(np.asarray(from_mem), np.asarray(from_file))
    if fmt in ("wav", "w64", "flac", "aiff", "caf"):  # lossless containers: identical bytes
        assert buf.getvalue() == (tmp_path / f"f.{fmt}").read_bytes()


def test_save_to_named_file_object(tmp_path):
    with open(tmp_path / "n.flac", "wb") as f:
        aio.save(f, music(1000, 8000, 1), 8000)  # format from f.name
    assert aio.info(tmp_path / "n.flac").container == "flac"


def test_memory_errors(tmp_path):
    with pytest.raises(RuntimeError, match="load failed for '<bytes>': no data"):
        aio.load(b"")
    with pytest.raises(RuntimeError, match="load failed for '<bytes>'"):
        aio.load(b"\x00" * 1000)
    (tmp_path / "t.txt").write_text("text")
    with open(tmp_path / "t.txt") as f, pytest.raises(TypeError, match="binary mode"):
        aio.load(f)
