"""Native FLAC goes through libFLAC (native/io/aio_flac.c): exact samples at every bit depth
and channel count, sample-accurate partial reads, memory input, clear errors on corrupt
frames; streams without a stated length and Ogg FLAC still go through libav."""

import subprocess

import mlx_audio_io as aio

import numpy as np
import pytest
from signals import music, pcm_grid


def _ffmpeg_reference(path, bits: int, channels: int) -> np.ndarray:
    """ffmpeg's own decode (libavcodec), as integers scaled by 2^-(bits-1)."""
    fmt, dtype, shift = ("s16le", np.int16, 16) if bits <= 16 else ("s32le", np.int32, 32)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", fmt, "-"], capture_output=True, check=True
    ).stdout
    return (
        (np.frombuffer(raw, dtype).astype(np.float64) / 2.0 ** (shift - 1))
        .astype(np.float32)
        .reshape(-1, channels)
    )


@pytest.mark.parametrize("encoding,bits", [("pcm16", 16), ("pcm24", 24)])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_flac_loads_exactly_what_it_holds(tmp_path, encoding, bits, channels):
    x = pcm_grid(music(30011, 48000, channels), bits)
    path = tmp_path / "x.flac"
    aio.save(path, x, 48000, encoding=encoding)
    meta = aio.info(path)
    assert (meta.frames, meta.channels, meta.subtype, meta.container) == (
        30011,
        channels,
        "flac",
        "flac",
    )
    y = np.asarray(aio.load(path)[0])
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(y, _ffmpeg_reference(path, bits, channels))
    np.testing.assert_array_equal(np.asarray(aio.load(path.read_bytes())[0]), x)


def test_flac_partial_reads_are_sample_exact(tmp_path):
    sr = 44100
    x = pcm_grid(music(20 * sr + 123, sr, 2), 16)
    path = tmp_path / "x.flac"
    aio.save(path, x, sr)
    data = path.read_bytes()
    for start in (0, 1, 4095, 4096, 4097, 5 * sr + 17, 19 * sr, len(x) - 5):
        for source in (path, data):
            y = np.asarray(aio.load(source, offset=start / sr, duration=0.25)[0])
            np.testing.assert_array_equal(y, x[start : start + sr // 4], err_msg=str(start))
    assert aio.load(path, offset=30.0)[0].shape == (0, 2)  # past the end: nothing
    # a stream reads on from the seek, block after block
    with aio.stream(path, chunk_frames=10000, offset=12.5) as s:
        got = np.concatenate([np.asarray(c) for c, _ in s])
    np.testing.assert_array_equal(got, x[round(12.5 * sr) :])


def test_flac_without_a_stated_length_goes_to_libav(tmp_path):
    x = pcm_grid(music(20000, 16000, 1), 16)
    aio.save(tmp_path / "x.wav", x, 16000)
    # written to a pipe, ffmpeg cannot seek back to fill in STREAMINFO's sample count
    flac = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(tmp_path / "x.wav"), "-f", "flac", "-"],
        capture_output=True,
        check=True,
    ).stdout
    assert flac[:4] == b"fLaC" and int.from_bytes(flac[18:26], "big") & (2**36 - 1) == 0
    (tmp_path / "s.flac").write_bytes(flac)
    assert aio.info(tmp_path / "s.flac").frames == 20000  # counted
    np.testing.assert_array_equal(np.asarray(aio.load(tmp_path / "s.flac")[0]), x)


def test_ogg_flac_still_loads(tmp_path):
    x = pcm_grid(music(12000, 16000, 2), 16)
    aio.save(tmp_path / "x.wav", x, 16000)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(tmp_path / "x.wav"), "-c:a", "flac",
         str(tmp_path / "x.oga")],
        check=True,
    )  # fmt: skip
    np.testing.assert_array_equal(np.asarray(aio.load(tmp_path / "x.oga")[0]), x)


def test_corrupt_flac_frame_is_an_error_naming_the_file(tmp_path):
    sr = 16000
    x = pcm_grid(music(10 * sr, sr, 2), 16)
    aio.save(tmp_path / "x.flac", x, sr)
    data = bytearray((tmp_path / "x.flac").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)  # a run of zeros inside a frame: its CRC no longer holds
    (tmp_path / "bad.flac").write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=r"bad\.flac.*corrupt (or truncated )?FLAC data"):
        aio.load(tmp_path / "bad.flac")
    # what lies before the damage still reads
    np.testing.assert_array_equal(np.asarray(aio.load(tmp_path / "bad.flac", duration=1.0)[0]),
                                  x[:sr])  # fmt: skip


def test_cut_short_flac_is_an_error_naming_the_file(tmp_path):
    x = pcm_grid(music(5 * 16000, 16000, 1), 16)
    aio.save(tmp_path / "x.flac", x, 16000)
    data = (tmp_path / "x.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) * 3 // 4])
    assert aio.info(tmp_path / "cut.flac").frames == len(x)  # STREAMINFO still says so
    with pytest.raises(RuntimeError, match=r"cut\.flac.*truncated FLAC data"):
        aio.load(tmp_path / "cut.flac")
