"""The API of mlx-audio-io 1.3: mono modes, squeeze_mono, stream windows, batch options,
save layouts and FLAC levels, prepare_save/save_prepared, build info and the doctor."""

import io
import subprocess
import sys
import threading

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np
import pytest
from signals import music


def test_equal_power_mono(media):
    y = np.asarray(aio.load(media["ff_6ch"])[0])
    m = np.asarray(aio.load(media["ff_6ch"], mono=True, mono_mode="equal_power")[0])
    np.testing.assert_allclose(m[:, 0], y.sum(axis=1) / np.sqrt(6), atol=1e-6)
    with pytest.raises(ValueError, match="mono_mode must be one of"):
        aio.load(media["ff_6ch"], mono=True, mono_mode="left")


def test_squeeze_mono(media):
    y, _ = aio.load(media["wav_p16"], mono=True, squeeze_mono=True)
    assert y.ndim == 1
    cf, _ = aio.load(media["wav_p16"], mono=True, squeeze_mono=True, layout="channels_first")
    np.testing.assert_array_equal(np.asarray(cf), np.asarray(y))
    stereo, _ = aio.load(media["wav_p16"], squeeze_mono=True)
    assert stereo.ndim == 2  # only one channel is squeezed
    chunks = [
        c for c, _ in aio.stream(media["mp3"], chunk_frames=5000, mono=True, squeeze_mono=True)
    ]
    assert chunks[0].shape == (5000,)
    ((b, _),) = aio.batch_load([media["flac"]], mono=True, squeeze_mono=True)
    assert b.ndim == 1


def test_low_memory_is_accepted_and_identical(media):
    a, _ = aio.load(media["flac"], sr=16000, low_memory=True)
    b, _ = aio.load(media["flac"], sr=16000)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("key", ["wav_p16", "mp3", "flac", "m4a", "ff_ogg", "ff_opus"])
@pytest.mark.parametrize("sr", [None, 16000])
def test_stream_window_equals_load_window(media, key, sr):
    want, _ = aio.load(media[key], offset=0.731, duration=1.5, sr=sr)
    got = [
        np.asarray(c)
        for c, _ in aio.stream(media[key], chunk_frames=3000, offset=0.731, duration=1.5, sr=sr)
    ]
    np.testing.assert_array_equal(np.concatenate(got), np.asarray(want))


def test_batch_load_options_and_progress(media):
    paths = [media["wav_p16"], media["mp3"], media["flac"]]
    seen = []
    got = aio.batch_load(
        paths,
        layout="channels_first",
        resample_quality="best",
        sr=22050,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]
    for p, (a, _) in zip(paths, got, strict=True):
        ref, _ = aio.load(p, sr=22050, resample_quality="best", layout="channels_first")
        np.testing.assert_array_equal(np.asarray(a), np.asarray(ref))
    with pytest.raises(ValueError, match="progress must be None, True or a callable"):
        aio.batch_load(paths, progress="yes")
    with pytest.raises(ValueError, match="layout must be one of"):
        aio.batch_load(paths, layout="x")


def test_batch_load_progress_line(media, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain line, not tqdm's bar
    aio.batch_load([media["wav_p16"]] * 2, progress=True)
    assert "batch_load: 2/2 files" in capsys.readouterr().err


def test_save_layout_auto(tmp_path):
    x = music(1000, 8000, 2)
    aio.save(tmp_path / "cf.wav", x.T, 8000)  # [2, 1000]: channels first, found by "auto"
    aio.save(tmp_path / "cl.wav", x, 8000)
    for name in ("cf.wav", "cl.wav"):
        np.testing.assert_array_equal(np.asarray(aio.load(tmp_path / name)[0]), x)
    tall = music(4, 8000, 2)  # 4 frames x 2 channels stays channels_last
    aio.save(tmp_path / "t.wav", tall, 8000)
    assert aio.info(tmp_path / "t.wav").channels == 2


def test_flac_compression_levels_are_lossless(tmp_path):
    x = music(44100, 44100, 2)
    sizes = {}
    for level in ("fast", "default", 12):
        aio.save(tmp_path / f"{level}.flac", x, 44100, flac_compression=level)
        sizes[level] = (tmp_path / f"{level}.flac").stat().st_size
        y = np.asarray(aio.load(tmp_path / f"{level}.flac")[0])
        np.testing.assert_array_equal(y, np.asarray(aio.load(tmp_path / "fast.flac")[0]))
    assert sizes["fast"] > sizes["default"] >= sizes[12]


def test_prepare_save_in_worker_threads(tmp_path):
    x = mx.array(music(20000, 16000, 4))
    jobs = [aio.prepare_save(x), aio.prepare_save(x[::2, ::-1]), aio.prepare_save(x.T)]
    assert jobs[2].channels == 4 and jobs[2].frames == 20000  # [4, 20000] taken as channels first
    errors = []

    def write(i, prepared):
        try:
            for ext in ("wav", "flac"):
                aio.save_prepared(tmp_path / f"{i}.{ext}", prepared, 16000, encoding="pcm24")
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i, p)) for i, p in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_array_equal(
        np.asarray(aio.load(tmp_path / "1.flac")[0]), np.asarray(aio.load(tmp_path / "1.wav")[0])
    )
    with pytest.raises(TypeError, match="PreparedAudio"):
        aio.save_prepared(tmp_path / "x.wav", np.zeros((10, 1), np.float32), 8000)


def test_build_info_and_soxr():
    info = aio.show_build_info()
    assert info["version"] == aio.__version__ and info["soxr"] is True
    libraries = {"libavformat", "libavcodec", "libmpg123", "libsoxr", "libFLAC"}
    assert libraries <= set(info["libraries"])
    assert info["native"].endswith(".so")
    assert aio.supports_soxr() is True


def test_doctor_reports_a_healthy_install():
    r = subprocess.run(
        [sys.executable, "-m", "mlx_audio_io.doctor"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all good" in r.stdout and "write and read .opus" in r.stdout


def test_build_info_names_the_mlx_backend():
    info = aio.show_build_info()
    assert info["mlx_device"] == "cpu"  # this machine has no GPU
    if sys.platform == "linux":
        assert [b.split()[0] for b in info["mlx_backends"]] == ["mlx-cpu"]


def test_doctor_flags_two_mlx_backends(monkeypatch, capsys):
    # mlx-cpu and mlx-cuda-12 both write mlx/lib/libmlx.so: the doctor must say so, with the fix
    from importlib import metadata

    from mlx_audio_io import _build, doctor

    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda n: "0.32.4" if n == "mlx-cuda-12" else real(n))
    monkeypatch.setattr(sys, "platform", "linux")
    assert [b.split()[0] for b in _build.mlx_backends()] == ["mlx-cpu", "mlx-cuda-12"]
    r = doctor.Report()
    doctor.check_backend(r, aio.show_build_info())
    out = capsys.readouterr().out
    assert r.problems == 1 and "PROBLEM  MLX backend" in out
    assert "mlx-cpu 0.32.4, mlx-cuda-12 0.32.4" in out and "--no-deps" in out


def test_broken_native_extension_is_explained(tmp_path):
    bad = tmp_path / "_native.so"
    bad.write_bytes(b"not a shared object")
    env = {"MLX_AUDIO_IO_NATIVE": str(bad), "PATH": "/usr/bin:/bin"}
    code = (
        "import mlx_audio_io as a\n"
        "try:\n    a.load('x.wav')\nexcept ImportError as e:\n    print('ImportError', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "ImportError" in r.stdout and "mlx_audio_io.doctor" in r.stdout
    d = subprocess.run(
        [sys.executable, "-m", "mlx_audio_io.doctor"], capture_output=True, text=True, env=env
    )
    assert d.returncode == 1 and "PROBLEM  native extension" in d.stdout


def test_save_to_file_object_needs_a_format():
    buf = io.BytesIO()
    with pytest.raises(ValueError, match="writing to a file object needs format="):
        aio.save(buf, np.zeros((10, 1), np.float32), 8000)
