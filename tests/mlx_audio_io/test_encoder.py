"""AudioEncoder: one encoder per stream, bytes out as they come, decoding as one file."""

from __future__ import annotations

import gc
import struct
import threading

import mlx_audio_io as aio

import numpy as np
import pytest
from signals import chirp, music, sinusoid

SR = 24000
EXT = {"wav": "wav", "flac": "flac", "mp3": "mp3", "opus": "opus", "aac": "aac"}


def encode_all(enc: aio.AudioEncoder, x: np.ndarray, chunk: int) -> tuple[list[bytes], bytes]:
    parts = [enc.encode(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return parts, enc.close()


def decode(tmp_path, fmt: str, data: bytes, sr: int = SR) -> np.ndarray:
    path = tmp_path / f"stream.{EXT[fmt]}"
    path.write_bytes(data)
    audio, rate = aio.load(str(path), sr=sr)
    assert rate == sr
    return np.asarray(audio)


def best_lag(ref: np.ndarray, got: np.ndarray, max_lag: int = 4096) -> int:
    """The delay of got behind ref (codec priming), by cross-correlation."""
    n = min(len(ref), len(got) - max_lag)
    scores = [float(np.dot(ref[:n], got[k : k + n])) for k in range(max_lag)]
    return int(np.argmax(scores))


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - got) ** 2), 1e-20)))


@pytest.mark.parametrize("chunk", [1, 7, 256, 1000, 4096, 24000])
@pytest.mark.parametrize(
    "fmt,encoding,tol", [("wav", "float32", 1e-7), ("wav", "pcm16", 1 / 32768 + 1e-7),
                         ("flac", "float32", 1 / 2**23 + 1e-7), ("flac", "pcm16", 1 / 32768 + 1e-7)]
)  # fmt: skip
def test_lossless_stream_decodes_as_one_file(tmp_path, fmt, encoding, tol, chunk):
    x = music(SR, SR, channels=1)[:, 0]
    if chunk == 1:
        x = x[:3000]  # a sample at a time: short
    enc = aio.AudioEncoder(fmt, SR, 1, encoding=encoding)
    parts, tail = encode_all(enc, x, chunk)
    data = b"".join(parts) + tail
    y = decode(tmp_path, fmt, data)[:, 0]
    assert len(y) == len(x)  # one header, no gaps: the total length
    np.testing.assert_allclose(y, x, atol=tol)
    magic = {"wav": b"RIFF", "flac": b"fLaC"}[fmt]
    assert data[:4] == magic and data.count(magic) == 1  # no header per chunk


def test_wav_header_says_unknown_sizes():
    enc = aio.AudioEncoder("wav", SR, 2, encoding="pcm16")
    data = enc.encode(sinusoid(1000, SR, 2)) + enc.close()
    assert struct.unpack("<I", data[4:8])[0] == 0xFFFFFFFF
    k = data.index(b"data")
    assert struct.unpack("<I", data[k + 4 : k + 8])[0] == 0xFFFFFFFF
    assert len(data) - (k + 8) == 1000 * 2 * 2


@pytest.mark.parametrize("chunk", [100, 960, 3600, 24000])
@pytest.mark.parametrize("fmt,min_snr", [("mp3", 15.0), ("opus", 10.0), ("aac", 15.0)])
def test_lossy_stream_decodes_as_one_file(tmp_path, fmt, min_snr, chunk):
    x = chirp(2 * SR, SR)[:, 0] * 0.8
    enc = aio.AudioEncoder(fmt, SR, 1)
    parts, tail = encode_all(enc, x, chunk)
    data = b"".join(parts) + tail
    y = decode(tmp_path, fmt, data)[:, 0]
    # priming and padding at most a few codec frames; no gap in the middle
    assert len(x) <= len(y) + 16 and len(y) <= len(x) + 3000
    lag = best_lag(x, y)
    n = min(len(x), len(y) - lag)
    body = slice(2000, n - 2000)  # edges: priming fade-in and padding
    assert snr_db(x[body], y[lag:][body]) > min_snr
    assert np.corrcoef(x[body], y[lag:][body])[0, 1] > 0.95


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac", "pcm"])
def test_bytes_arrive_incrementally(fmt):
    x = music(3 * SR, SR, channels=1)[:, 0]
    enc = aio.AudioEncoder(fmt, SR)
    parts, tail = encode_all(enc, x, 3600)  # 150 ms chunks, as the TTS stream gives
    sent = sum(len(p) for p in parts)
    assert sum(1 for p in parts if p) >= len(parts) // 2
    assert sent > 2 * len(tail), "most bytes must leave before close()"
    assert parts[0] or parts[1], "the first bytes leave with the first chunks"


def test_stereo_and_layouts(tmp_path):
    x = sinusoid(5000, SR, 2)
    enc = aio.AudioEncoder("wav", SR, 2)
    data = enc.encode(x[:2000]) + enc.encode(x[2000:].T.copy(), layout="channels_first")
    y = decode(tmp_path, "wav", data + enc.close())
    np.testing.assert_allclose(y, x, atol=1e-7)


def test_pcm_is_raw_little_endian_int16():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, np.nan], np.float32)
    enc = aio.AudioEncoder("pcm", SR)
    raw = enc.encode(x) + enc.close()
    np.testing.assert_array_equal(
        np.frombuffer(raw, "<i2"), [0, 16384, -16384, 32767, -32768, 32767, 0]
    )


def test_mx_array_input(tmp_path):
    import mlx.core as mx

    x = sinusoid(4000, SR)
    enc = aio.AudioEncoder("flac", SR)
    data = enc.encode(mx.array(x[:, 0])) + enc.close()
    np.testing.assert_allclose(decode(tmp_path, "flac", data), x, atol=1e-6)


@pytest.mark.parametrize(
    "args,kwargs",
    [
        (("ogg-vorbis", SR), {}),
        ((None, SR), {}),
        (("wav", 0), {}),
        (("wav", SR, 0), {}),
        (("wav", SR, 1.5), {}),
        (("wav", SR), {"encoding": "pcm24"}),
        (("mp3", SR), {"encoding": "pcm16"}),
        (("mp3", 11111), {}),
        (("opus", 44100), {}),
        (("aac", 11111), {}),
        (("mp3", SR), {"bitrate": "fast"}),
        (("flac", SR), {"bitrate": "128k"}),
        (("pcm", SR), {"bitrate": "128k"}),
        (("flac", SR), {"flac_compression": 99}),
        (("mp3", SR, 3), {}),
    ],
)
def test_bad_arguments_raise_value_error(args, kwargs):
    with pytest.raises(ValueError):
        aio.AudioEncoder(*args, **kwargs)


def test_wrong_channels_and_use_after_close():
    enc = aio.AudioEncoder("mp3", SR, 1)
    with pytest.raises(ValueError, match="channel"):
        enc.encode(np.zeros((10, 2), np.float32))
    enc.encode(np.zeros(100, np.float32))
    assert enc.close()
    assert enc.close() == b""  # idempotent
    with pytest.raises(ValueError, match="closed"):
        enc.encode(np.zeros(100, np.float32))
    raw = aio.AudioEncoder("pcm", SR)
    raw.close()
    with pytest.raises(ValueError, match="closed"):
        raw.encode(np.zeros(4, np.float32))


def test_context_manager_and_abandoned_encoders_free_cleanly():
    with aio.AudioEncoder("opus", SR) as enc:
        enc.encode(np.zeros(5000, np.float32))
    for fmt in ("mp3", "opus", "aac", "flac", "wav"):
        enc = aio.AudioEncoder(fmt, SR)
        enc.encode(music(2000, SR, channels=1)[:, 0])
        del enc  # never closed: freed by the finalizer
    gc.collect()


def test_empty_stream_and_empty_chunks(tmp_path):
    enc = aio.AudioEncoder("wav", SR)
    data = enc.encode(np.zeros(0, np.float32))
    assert data[:4] == b"RIFF"  # the header comes with the first call
    data += enc.encode(np.zeros(0, np.float32)) + enc.close()
    assert len(decode(tmp_path, "wav", data)) == 0
    flac = aio.AudioEncoder("flac", SR)
    x = sinusoid(3000, SR)[:, 0]
    data = flac.encode(x[:0]) + flac.encode(x) + flac.encode(x[:0]) + flac.close()
    assert len(decode(tmp_path, "flac", data)) == 3000


def test_threads_each_with_their_own_encoder(tmp_path):
    x = music(SR, SR, channels=1)[:, 0]
    out: dict[int, bytes] = {}

    def work(i: int) -> None:
        enc = aio.AudioEncoder("flac", SR)
        parts, tail = encode_all(enc, x, 500 + i)
        out[i] = b"".join(parts) + tail

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 8
    for data in out.values():
        np.testing.assert_allclose(decode(tmp_path, "flac", data)[:, 0], x, atol=1e-6)
