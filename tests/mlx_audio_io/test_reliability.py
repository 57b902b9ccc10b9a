"""Regressions of issue 15's io findings: lifetimes under errors, atomic saves, literal paths,
validation against the formats' limits. Anything that could crash runs in a subprocess."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import mlx_audio_io as aio
from mlx_audio_io import AudioIOError

import mlx.core as mx
import numpy as np
import pytest
from signals import music

SR = 44100
LONG = (1 << 20) + 4321  # above the multi-core split threshold


def _py(code: str, cwd, timeout=120, **kw) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter; a crash shows as a negative return code."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory):
    """A 24 s FLAC, the same cut to a third, and one with 40 corrupt stretches."""
    d = tmp_path_factory.mktemp("long")
    aio.save(d / "long.flac", music(LONG, SR, 2, seed=5), SR, encoding="pcm16")
    data = (d / "long.flac").read_bytes()
    (d / "trunc.flac").write_bytes(data[: len(data) // 3])
    bad, rng = bytearray(data), np.random.default_rng(1)
    for _ in range(40):
        at = int(rng.integers(1000, len(bad) - 100))
        bad[at : at + 50] = rng.integers(0, 256, 50, dtype=np.uint8).tobytes()
    (d / "corrupt.flac").write_bytes(bytes(bad))
    return d


# --- crashes: nothing closes under a decoder that is still running --------------------------


def test_batch_load_with_a_failing_file_among_long_ones(long_flac):
    r = _py(
        """
        import mlx_audio_io as aio
        paths = ["long.flac"] * 5 + ["trunc.flac"] + ["long.flac"] * 5
        for _ in range(2):
            try:
                aio.batch_load(paths, num_workers=4)
            except aio.AudioIOError as e:
                assert "trunc.flac" in str(e), e
            else:
                raise SystemExit("no error")
        print("done")
        """,
        long_flac,
    )
    assert r.returncode == 0 and "done" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_batch_load_progress_callback_raising(long_flac):
    r = _py(
        """
        import mlx_audio_io as aio
        def progress(done, total):
            if done == 2:
                raise KeyError("from the callback")
        try:
            aio.batch_load(["long.flac"] * 8, num_workers=4, progress=progress)
        except KeyError:
            print("done")
        """,
        long_flac,
    )
    assert r.returncode == 0 and "done" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_batch_load_interrupted(long_flac):
    code = """
        import mlx_audio_io as aio, sys
        print("start", flush=True)
        try:
            aio.batch_load(["long.flac"] * 400, num_workers=4)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=long_flac,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "start"
    time.sleep(1.5)  # inside the decoding
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 3 and "interrupted" in out, (p.returncode, err[-2000:])


def test_split_load_of_corrupt_long_flac(long_flac):
    r = _py(
        """
        import mlx_audio_io as aio
        for _ in range(4):
            try:
                aio.load("corrupt.flac")
            except aio.AudioDecodeError as e:
                assert "corrupt.flac" in str(e)
        print("done")
        """,
        long_flac,
    )
    assert r.returncode == 0 and "done" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_batch_load_on_error_return_and_skip(long_flac, tmp_path):
    good = tmp_path / "g.wav"
    aio.save(good, music(4000, 16000, 1), 16000)
    paths = [good, long_flac / "trunc.flac", tmp_path / "missing.wav", good]
    got = aio.batch_load(paths, on_error="return", num_workers=2)
    assert [type(r).__name__ for r in got[1:3]] == ["AudioDecodeError", "AudioFileNotFoundError"]
    assert "trunc.flac" in str(got[1]) and "missing.wav" in str(got[2])
    np.testing.assert_array_equal(np.asarray(got[0][0]), np.asarray(aio.load(good)[0]))
    assert got[3][1] == 16000
    with pytest.warns(UserWarning, match=r"skipped 2 of 4 file\(s\)(.|\n)*missing.wav"):
        kept = aio.batch_load(paths, on_error="skip")
    assert len(kept) == 2 and all(sr == 16000 for _, sr in kept)
    with pytest.raises(ValueError, match="on_error must be one of"):
        aio.batch_load(paths, on_error="ignore")


# --- lost data: saves are atomic ----------------------------------------------------------

FORMATS = [".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aiff", ".caf", ".w64"]


@pytest.mark.parametrize("ext", FORMATS)
def test_failed_save_keeps_the_old_file(tmp_path, ext):
    """A full disk (RLIMIT_FSIZE) mid-save: an error, and the old file is intact."""
    target = tmp_path / f"out{ext}"
    aio.save(target, music(2000, 48000, 2), 48000)
    before = target.read_bytes()
    r = _py(
        f"""
        import resource, numpy as np, mlx_audio_io as aio
        x = np.random.default_rng(0).uniform(-0.5, 0.5, (48000 * 20, 2)).astype(np.float32)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            aio.save("out{ext}", x, 48000)
        except aio.AudioIOError as e:
            print("error:", e)
        """,
        tmp_path,
    )
    assert r.returncode == 0 and "error:" in r.stdout, (r.returncode, r.stdout, r.stderr[-2000:])
    assert "out" + ext in r.stdout
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary left


def test_save_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "real.wav"
    aio.save(real, np.zeros(100, np.float32), 16000)
    os.chmod(real, 0o640)
    link = tmp_path / "link.wav"
    link.symlink_to(real.name)
    aio.save(link, np.ones(300, np.float32) * 0.5, 16000)
    assert link.is_symlink() and aio.info(real).frames == 300
    assert oct(real.stat().st_mode & 0o777) == "0o640"  # the old file's mode is kept


def test_save_to_a_device_writes_through_and_never_deletes_it():
    before = os.stat("/dev/null")
    aio.save("/dev/null", np.zeros(1000, np.float32), 16000, format="wav")
    with aio.AudioWriter("/dev/null", 16000, 1, format="flac") as w:
        w.write(np.zeros(1000, np.float32))
    with pytest.raises(AudioIOError, match="/dev/full"):
        aio.save("/dev/full", np.zeros(100000, np.float32), 16000, format="wav")
    assert os.stat("/dev/null").st_rdev == before.st_rdev and os.path.exists("/dev/full")


def test_save_into_a_fifo(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    got = {}
    reader = threading.Thread(target=lambda: got.update(data=fifo.read_bytes()))
    reader.start()
    x = music(4000, 16000, 1)
    aio.save(fifo, x, 16000, encoding="pcm16")
    reader.join(30)
    y, _ = aio.load(got["data"])
    assert y.shape == (4000, 1) and fifo.exists()


def test_killed_save_leaves_the_old_or_the_new_file(tmp_path):
    target = tmp_path / "big.wav"
    old = music(1000, SR, 2)
    aio.save(target, old, SR)
    code = """
        import numpy as np, mlx_audio_io as aio
        x = np.random.default_rng(0).uniform(-0.5, 0.5, (44100 * 400, 2)).astype(np.float32)
        print("go", flush=True)
        for _ in range(100):
            aio.save("big.wav", x, 44100, encoding="pcm24")
        """
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, stdout=subprocess.PIPE
    )
    assert p.stdout.readline().strip() == b"go"
    deadline = time.time() + 60
    while time.time() < deadline:  # kill it while a temporary file is being written
        parts = [q for q in tmp_path.iterdir() if q.name.endswith(".part")]
        if parts and parts[0].stat().st_size > 1 << 20:
            break
        time.sleep(0.01)
    p.kill()
    p.wait()
    frames = aio.info(target).frames
    assert frames in (1000, 44100 * 400)
    assert aio.load(target)[0].shape == (frames, 2)


def test_audio_writer_leaves_the_old_file_until_its_first_write(tmp_path):
    target = tmp_path / "w.flac"
    aio.save(target, music(1000, SR, 2), SR)
    before = target.read_bytes()
    w = aio.AudioWriter(target, SR, 2)
    assert target.read_bytes() == before  # opened, not yet written: untouched
    with pytest.raises(ValueError, match="takes 2 channel"):
        w.write(np.zeros((10, 3), np.float32))
    assert target.read_bytes() == before
    w.write(music(500, SR, 2))
    w.close()
    assert aio.info(target).frames == 500
    with pytest.raises(ValueError, match="at least one frame"):
        with aio.AudioWriter(tmp_path / "e.mp3", SR, 2):
            pass
    assert not (tmp_path / "e.mp3").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.flac"]


@pytest.mark.parametrize("ext", [".wav", ".flac", ".mp3", ".ogg"])
def test_audio_writer_keeps_what_was_written_when_a_write_fails(tmp_path, ext):
    r = _py(
        f"""
        import resource, numpy as np, mlx_audio_io as aio
        x = np.random.default_rng(0).uniform(-0.5, 0.5, (48000, 2)).astype(np.float32)
        w = aio.AudioWriter("s{ext}", 48000, 2)
        w.write(x)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
        try:
            for _ in range(200):
                w.write(x)
        except aio.AudioIOError as e:
            print("error:", e)
        try:
            w.close()
        except aio.AudioIOError:
            pass
        """,
        tmp_path,
    )
    assert "error:" in r.stdout, (r.returncode, r.stderr[-2000:])
    assert aio.load(tmp_path / f"s{ext}")[0].shape[0] >= 48000 * 0.9


def test_saves_from_threads_to_one_path(tmp_path):
    """Concurrent saves of different lengths to one path: the file is always one of them."""
    target = tmp_path / "t.flac"
    lengths = [1000 * (k + 1) for k in range(8)]

    def save(n):
        for _ in range(5):
            aio.save(target, music(n, 16000, 1), 16000)

    threads = [threading.Thread(target=save, args=(n,)) for n in lengths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert aio.info(target).frames in lengths
    assert [p.name for p in tmp_path.iterdir()] == ["t.flac"]


# --- paths are literal file names ---------------------------------------------------------


def test_url_like_names_are_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    aio.save("p.flac", music(1000, 16000, 1), 16000)
    aio.save("file:p.flac", music(3000, 16000, 1), 16000)
    assert aio.info("file:p.flac").frames == 3000 and aio.info("p.flac").frames == 1000
    assert aio.load("file:p.flac")[0].shape == (3000, 1)
    with pytest.raises(FileNotFoundError):
        aio.load("pipe:0")
    aio.save("pipe:1.flac", music(500, 16000, 1), 16000)  # a file of that name, not stdout
    assert aio.info(tmp_path / "pipe:1.flac").frames == 500
    with aio.AudioWriter("pipe:2.m4a", 16000, 1) as w:
        w.write(music(700, 16000, 1))
    assert aio.info(tmp_path / "pipe:2.m4a").frames == 700


def test_no_network_from_a_url_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    with pytest.raises(AudioIOError, match="No such file|cannot open"):
        aio.save(f"tcp://127.0.0.1:{port}/x.flac", np.zeros(100, np.float32), 16000)
    with pytest.raises(FileNotFoundError):
        aio.load(f"tcp://127.0.0.1:{port}/x.flac")
    with pytest.raises(TimeoutError):
        server.accept()  # nobody connected
    server.close()


def test_nul_in_path(tmp_path):
    with pytest.raises(ValueError, match="NUL"):
        aio.save(str(tmp_path / "n.wav\0.flac"), np.zeros(10, np.float32), 16000)
    for fn in (aio.load, aio.info):
        with pytest.raises(ValueError, match="NUL"):
            fn(str(tmp_path / "n.wav\0.flac"))
    with pytest.raises(ValueError, match="NUL"):
        aio.AudioWriter(str(tmp_path / "n.wav\0.flac"), 16000, 1)
    assert not list(tmp_path.iterdir())


def test_non_utf8_file_names(tmp_path):
    name = os.fsdecode(b"caf\xe9-\xff.wav")  # Latin-1 bytes: not valid UTF-8
    path = os.path.join(tmp_path, name)
    aio.save(path, music(800, 16000, 1), 16000)
    assert os.listdir(os.fsencode(tmp_path)) == [b"caf\xe9-\xff.wav"]
    assert aio.info(path).frames == 800
    assert aio.load(path)[0].shape == (800, 1)
    assert aio.batch_load([path])[0][0].shape == (800, 1)
    with aio.AudioWriter(path, 16000, 1) as w:
        w.write(music(100, 16000, 1))
    assert aio.info(path).frames == 100


# --- validation: the formats' limits and the arguments' ranges -----------------------------


@pytest.mark.parametrize("clip", [False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("ext", [".mp3", ".m4a", ".ogg", ".opus"])
def test_lossy_encoders_refuse_non_finite_samples_without_clip(tmp_path, ext, bad, clip):
    x = np.zeros((4800, 2), np.float32)
    x[1234, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite samples .first at frame 1234"):
        aio.save(tmp_path / f"a{ext}", x, 48000, clip=clip)
    with aio.AudioWriter(tmp_path / f"w{ext}", 48000, 2, clip=clip) as w:
        w.write(np.zeros((100, 2), np.float32))
        with pytest.raises(ValueError, match="NaN or infinite"):
            w.write(x)
    aio.save(tmp_path / f"c{ext}", x, 48000)  # clip=True: NaN -> 0, inf -> +-1
    assert np.isfinite(np.asarray(aio.load(tmp_path / f"c{ext}")[0])).all()


def test_wav_limits(tmp_path):
    with pytest.raises(ValueError, match="holds at most 16383 channels"):
        aio.save(
            tmp_path / "a.wav", np.zeros((16384, 2), np.float32), 8000, layout="channels_first"
        )
    target = tmp_path / "w.wav"
    aio.save(target, np.zeros(10, np.float32), 8000)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="holds at most 16383 channels"):
        aio.AudioWriter(target, 8000, 30000)
    with pytest.raises(ValueError, match="sample rates up to"):
        aio.AudioWriter(target, 2**31 - 1, 2)
    with pytest.raises(ValueError, match="sample_rate must be at most 2147483647"):
        aio.AudioWriter(target, 2**40, 2)
    assert target.read_bytes() == before
    with pytest.raises(ValueError, match="sample rates up to"):
        aio.save(tmp_path / "b.wav", np.zeros(10, np.float32), 2**31 - 1)
    aio.save(tmp_path / "c.wav", np.zeros((16383, 10), np.float32), 8000, layout="channels_first")
    assert aio.info(tmp_path / "c.wav").channels == 16383


def _rf64(data_size: int, frames_present: int) -> bytes:
    fmt = (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    fmt += (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    ds64 = (0).to_bytes(8, "little") + data_size.to_bytes(8, "little") + bytes(12)
    body = b"WAVE" + b"ds64" + len(ds64).to_bytes(4, "little") + ds64
    body += b"fmt " + (16).to_bytes(4, "little") + fmt
    body += b"data" + b"\xff\xff\xff\xff" + bytes(2 * frames_present)
    return b"RF64" + b"\xff\xff\xff\xff" + body


def test_rf64_size_that_lies(tmp_path):
    p = tmp_path / "lie.wav"
    p.write_bytes(_rf64(2**63 - 8, 1234))
    assert aio.info(p).frames == 1234 == aio.load(p)[0].shape[0]


def test_info_frames_equal_load_for_truncated_files(tmp_path):
    x = music(SR * 3, SR, 2)
    aio.save(tmp_path / "full.mp3", x, SR)
    aio.save(tmp_path / "full.wav", x, SR, encoding="ulaw")
    aio.save(tmp_path / "full.caf", x, SR, encoding="pcm16")
    for name, src in [("t.mp3", "full.mp3"), ("t.wav", "full.wav"), ("t.caf", "full.caf")]:
        data = (tmp_path / src).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        assert aio.info(tmp_path / name).frames == aio.load(tmp_path / name)[0].shape[0], name
    assert aio.info(tmp_path / "t.wav").frames == pytest.approx(SR * 3 / 2, rel=0.01)


def test_load_of_a_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "f.wav"
    os.mkfifo(fifo)
    r = _py(
        f"""
        import mlx_audio_io as aio
        for fn in (aio.load, aio.info):
            try:
                fn({str(fifo)!r})
            except aio.AudioIOError as e:
                print(e)
        """,
        tmp_path,
        timeout=60,
    )
    assert r.stdout.count("not a regular file") == 2, r.stderr[-2000:]


def test_extreme_arguments(tmp_path):
    p = tmp_path / "a.wav"
    aio.save(p, music(1000, 16000, 2), 16000)
    assert aio.load(p, offset=1e300)[0].shape == (0, 2)
    assert aio.load(p, duration=1e300)[0].shape == (1000, 2)
    assert aio.load(p, offset=1e300, duration=1e300)[0].shape == (0, 2)
    with pytest.raises(ValueError, match="sr must be at most 2147483647, got 2147483648"):
        aio.load(p, sr=2**31)
    with pytest.raises(ValueError, match="chunk_frames must be at most"):
        aio.stream(p, chunk_frames=10**30)
    chunks = [c.shape for c, _ in aio.stream(p, chunk_frames=10**12)]
    assert chunks == [(1000, 2)]
    with pytest.raises(ValueError, match="more than one array holds"):
        aio.resample(np.zeros((1000, 2), np.float32), 1, 2**31 - 1)
    with pytest.raises(ValueError, match="out_sr must be at most"):
        aio.resample(np.zeros((1000, 2), np.float32), 1, 2**31)
    with pytest.raises(ValueError, match="sr must be a positive integer, got inf"):
        aio.save(p, np.zeros(10, np.float32), float("inf"))


def test_bfloat16_and_reversed_arrays(tmp_path):
    x = music(1000, 16000, 2)
    for audio in (mx.array(x).astype(mx.bfloat16), mx.array(x)[::-1], x[::-1], x.T[:, ::-1]):
        layout = "channels_first" if audio.shape[0] == 2 else "channels_last"
        aio.save(tmp_path / "a.wav", audio, 16000, layout=layout)
        assert aio.info(tmp_path / "a.wav").frames == 1000
        y = aio.resample(audio, 16000, 8000, layout=layout)
        assert y.shape[0 if layout == "channels_last" else 1] == 500
        z = aio.resample(audio, 16000, 16000, layout=layout)
        np.testing.assert_allclose(
            np.asarray(z.astype(mx.float32)),
            np.asarray(audio.astype(mx.float32)) if isinstance(audio, mx.array) else audio,
        )
    np.testing.assert_array_equal(
        np.asarray(aio.resample(x[::-1], 16000, 8000)),
        np.asarray(aio.resample(x[::-1].copy(), 16000, 8000)),
    )


@pytest.mark.parametrize("ext", [".mp3", ".m4a", ".opus"])
def test_empty_audio_in_formats_that_cannot_hold_it(tmp_path, ext):
    with pytest.raises(ValueError, match="needs at least one frame"):
        aio.save(tmp_path / f"e{ext}", np.zeros((0, 2), np.float32), 48000)
    assert not list(tmp_path.iterdir())
    for ok in (".wav", ".flac", ".ogg", ".aiff", ".caf"):
        aio.save(tmp_path / f"e{ok}", np.zeros((0, 2), np.float32), 48000)
        assert aio.load(tmp_path / f"e{ok}")[0].shape == (0, 2)


@pytest.mark.parametrize("sr,channels", [(48000, 2), (44100, 1), (22050, 2), (8000, 1)])
def test_mp3_length_just_past_a_frame_boundary(tmp_path, sr, channels):
    """libav's muxer caps the LAME tag's end padding: 1-47 samples past a frame boundary
    came back up to 46 samples long. The tag is corrected after writing."""
    for n in (1, 20, 47, 48, 1153, 1190, 2305, 5000):
        x = music(n, sr, channels)
        aio.save(tmp_path / "s.mp3", x, sr)
        assert aio.info(tmp_path / "s.mp3").frames == n == aio.load(tmp_path / "s.mp3")[0].shape[0]
        with aio.AudioWriter(tmp_path / "w.mp3", sr, channels) as w:
            w.write(x)
        assert aio.load(tmp_path / "w.mp3")[0].shape[0] == n
        buf = io.BytesIO()
        aio.save(buf, x, sr, format="mp3")
        assert aio.load(buf.getvalue())[0].shape[0] == n


def test_failing_file_object(tmp_path):
    class Full(io.RawIOBase):
        name = "full.wav"

        def writable(self):
            return True

        def write(self, b):
            raise OSError(28, "No space left on device")

    with pytest.raises(RuntimeError, match="save failed for 'full.wav': write failed"):
        aio.save(Full(), np.zeros(100, np.float32), 16000)


@pytest.mark.parametrize("ext", [".flac", ".mp3", ".wav"])
def test_exit_while_a_thread_writes(tmp_path, ext):
    """The writer's finalizer runs at exit while a daemon thread is inside write(): it waits
    for that write instead of freeing the encoder under it (was SIGSEGV / LAME abort)."""
    r = _py(
        f"""
        import threading, time, numpy as np, mlx_audio_io as aio
        w = aio.AudioWriter("x{ext}", 48000, 2)
        x = np.random.default_rng(0).uniform(-.1, .1, (4800, 2)).astype(np.float32)
        def loop():
            try:
                while True:
                    w.write(x)
            except aio.AudioIOError:
                pass  # closed under it at exit
        threading.Thread(target=loop, daemon=True).start()
        time.sleep(0.3)  # then exit, the writer still open and being written
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert aio.load(tmp_path / f"x{ext}")[0].shape[0] > 4800


@pytest.mark.parametrize("sr", [22050, 24000])
def test_mp3_stereo_at_8k_keeps_both_channels(tmp_path, sr):
    """8k stereo frames at 22.05/24 kHz are too small for libmpg123: 16k, with a warning."""
    t = np.arange(sr // 2) / sr
    x = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1000 * t + 1)], 1) * 0.5
    with pytest.warns(UserWarning, match="using 16k"):
        aio.save(tmp_path / "lo.mp3", x.astype(np.float32), sr, bitrate="8k")
    y = np.asarray(aio.load(tmp_path / "lo.mp3")[0])
    for c in range(2):
        assert np.corrcoef(x[:, c], y[:, c])[0, 1] > 0.9


# --- found by an independent review of the change ------------------------------------------


def test_exit_while_a_thread_reads(long_flac):
    """A reader left to the collector at exit while a daemon thread decodes: not freed under
    it (was SIGSEGV)."""
    r = _py(
        """
        import threading, time, mlx_audio_io as aio
        def loop():
            while True:
                aio.load("long.flac", sr=16000)
                for _ in aio.stream("long.flac", chunk_frames=4096):
                    pass
        threading.Thread(target=loop, daemon=True).start()
        time.sleep(0.5)
        """,
        long_flac,
    )
    assert r.returncode == 0, r.stderr[-2000:]


def test_exit_while_a_write_blocks(tmp_path):
    """A write blocked on a FIFO nobody reads does not hold interpreter exit for ever."""
    fifo = tmp_path / "f.wav"
    os.mkfifo(fifo)
    holder = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
    try:
        r = _py(
            f"""
            import threading, time, numpy as np, mlx_audio_io as aio
            w = aio.AudioWriter({str(fifo)!r}, 48000, 2)
            x = np.zeros((48000, 2), np.float32)
            def loop():
                while True:
                    w.write(x)
            threading.Thread(target=loop, daemon=True).start()
            time.sleep(0.5)
            """,
            tmp_path,
            timeout=60,
        )
    finally:
        os.close(holder)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("ext", [".mp3", ".m4a", ".opus", ".wav"])
def test_empty_writes_leave_the_old_file(tmp_path, ext):
    target = tmp_path / f"x{ext}"
    aio.save(target, music(4800, 48000, 2), 48000)
    before = target.read_bytes()
    w = aio.AudioWriter(target, 48000, 2)
    w.write(np.zeros((0, 2), np.float32))
    if ext == ".wav":
        w.close()  # an empty WAV is a file: it replaces the old one at close
        assert aio.info(target).frames == 0
        return
    with pytest.raises(ValueError, match="at least one frame"):
        w.close()
    assert target.read_bytes() == before


@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_a_failed_first_commit_closes_the_writer(tmp_path, ext):
    target = tmp_path / f"out{ext}"
    w = aio.AudioWriter(target, 16000, 1)
    target.mkdir()  # the rename over it will fail
    with pytest.raises(RuntimeError, match="cannot replace the file"):
        w.write(music(1000, 16000, 1))
    assert w.frames_written == 0
    with pytest.raises(ValueError, match="is closed"):
        w.write(music(1000, 16000, 1))
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_long_non_ascii_names(tmp_path):
    name = "é" * 120 + ".wav"  # 244 bytes: legal, but too long with a temporary's suffix
    aio.save(tmp_path / name, music(100, 16000, 1), 16000)
    with aio.AudioWriter(tmp_path / ("ü" * 120 + ".flac"), 16000, 1) as w:
        w.write(music(100, 16000, 1))
    assert sorted(aio.info(p).frames for p in tmp_path.iterdir()) == [100, 100]


def test_save_to_dev_stdout_as_a_pipe(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import numpy as np, mlx_audio_io as aio; "
            "aio.save('/dev/stdout', np.zeros(1000, np.float32), 16000, format='wav')",
        ],
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert aio.load(r.stdout)[0].shape == (1000, 1)


def test_read_only_files_stay_read_only(tmp_path):
    target = tmp_path / "ro.wav"
    aio.save(target, music(100, 16000, 1), 16000)
    os.chmod(target, 0o444)
    if os.geteuid() == 0:  # root writes anyway, in place or not; the mode is kept
        aio.save(target, music(300, 16000, 1), 16000)
        assert oct(target.stat().st_mode & 0o777) == "0o444" and aio.info(target).frames == 300
    else:
        with pytest.raises(RuntimeError, match="Permission denied"):
            aio.save(target, music(300, 16000, 1), 16000)


def test_batch_load_return_keeps_a_bad_entry_type(tmp_path):
    good = tmp_path / "g.wav"
    aio.save(good, music(100, 16000, 1), 16000)
    got = aio.batch_load([good, 123], on_error="return")
    assert got[0][1] == 16000 and isinstance(got[1], TypeError)


def test_rates_as_fractions_and_floats(tmp_path):
    from fractions import Fraction

    for sr in (Fraction(16000), 16000.0, np.int64(16000), np.float32(16000)):
        aio.save(tmp_path / "f.wav", music(100, 16000, 1), sr)
        assert aio.info(tmp_path / "f.wav").sample_rate == 16000
    for bad in (Fraction(1, 3), Fraction(10**400), float("nan")):
        with pytest.raises(ValueError, match="sr must be"):
            aio.save(tmp_path / "f.wav", music(100, 16000, 1), bad)
