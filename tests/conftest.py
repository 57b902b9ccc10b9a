"""Shared fixtures: encoded files made at test time with our save() and the ffmpeg CLI, and a
loopback Hugging Face Hub (tests/hub_server.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlx_audio_io as aio  # noqa: E402  (after sys.path, before mlx)

from hub_server import HubServer, reset_session, use_hub  # noqa: E402
from signals import music  # noqa: E402

FFMPEG = shutil.which("ffmpeg")


def ffmpeg(*args: str) -> None:
    """Runs the ffmpeg CLI (installed by `make test`; a missing ffmpeg fails, never skips)."""
    if FFMPEG is None:
        pytest.fail("ffmpeg is not installed; `make test` installs it (apt-get install ffmpeg)")
    subprocess.run([FFMPEG, "-y", "-v", "error", *args], check=True)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """A 3.3 s stereo 44.1 kHz reference signal and the same audio in many formats.

    Returns a dict: name -> path, plus "signal" -> the float32 [frames, 2] source.
    """
    d = tmp_path_factory.mktemp("media")
    sr = 44100
    x = music(int(3.3 * sr) + 17, sr, 2)
    files = {"signal": x}
    src = d / "src.wav"
    aio.save(src, x, sr)
    ours = {
        "wav_f32": ("a.wav", "float32"),
        "wav_p16": ("b.wav", "pcm16"),
        "wav_p24": ("c.wav", "pcm24"),
        "flac": ("a.flac", "pcm24"),
        "mp3": ("a.mp3", "float32"),
        "m4a": ("a.m4a", "float32"),
        "alac": ("b.m4a", "alac"),
        "aiff": ("a.aiff", "pcm16"),
        "caf": ("a.caf", "float32"),
    }
    for key, (name, enc) in ours.items():
        aio.save(d / name, x, sr, encoding=enc)
        files[key] = d / name
    made = {
        "ff_ogg": ("f.ogg", ["-c:a", "libvorbis"]),
        "ff_opus": ("f.opus", ["-c:a", "libopus"]),
        "ff_m4a": ("f.m4a", ["-c:a", "aac", "-b:a", "128k"]),
        "ff_mp3_noxing": ("f.mp3", ["-c:a", "libmp3lame", "-write_xing", "0"]),
        "ff_mp3": ("g.mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
        "ff_flac": ("f.flac", ["-c:a", "flac"]),
        "ff_ulaw": ("u.wav", ["-c:a", "pcm_mulaw"]),
        "ff_alaw": ("al.wav", ["-c:a", "pcm_alaw"]),
        "ff_u8": ("u8.wav", ["-c:a", "pcm_u8"]),
        "ff_s32": ("s32.wav", ["-c:a", "pcm_s32le"]),
        "ff_f64": ("f64.wav", ["-c:a", "pcm_f64le"]),
        "ff_rf64": ("rf.wav", ["-c:a", "pcm_s16le", "-rf64", "always"]),
        "ff_w64": ("f.w64", ["-c:a", "pcm_s16le"]),
        "ff_aiff": ("f.aiff", ["-c:a", "pcm_s24be"]),
        "ff_caf": ("f.caf", ["-c:a", "alac"]),
        "ff_6ch": (
            "six.wav",
            [
                "-filter_complex",
                "[0:a]pan=5.1|c0=c0|c1=c1|c2=c0|c3=c1|c4=c0|c5=c1",
                "-c:a",
                "pcm_s16le",
            ],
        ),
        "ff_mono_mp3": ("mono.mp3", ["-ac", "1", "-c:a", "libmp3lame"]),
        "ff_adpcm": ("adpcm.wav", ["-c:a", "adpcm_ms"]),
    }
    for key, (name, args) in made.items():
        ffmpeg("-i", str(src), *args, str(d / name))
        files[key] = d / name
    return files


@pytest.fixture
def hub_server():
    """A loopback Hub: ``.add_repo(repo_id, folder)`` serves a folder at ``.endpoint``."""
    server = HubServer().start()
    yield server
    server.stop()


@pytest.fixture
def hub_env(hub_server, tmp_path, monkeypatch):
    """huggingface_hub pointed at `hub_server`, online, with HF_HOME under tmp; yields the cache."""
    yield use_hub(monkeypatch, hub_server.endpoint, tmp_path / "hf_home")
    reset_session()


#: every key of the `media` fixture that names a file
MEDIA_KEYS = [
    "wav_f32",
    "wav_p16",
    "wav_p24",
    "flac",
    "mp3",
    "m4a",
    "alac",
    "aiff",
    "caf",
    "ff_ogg",
    "ff_opus",
    "ff_m4a",
    "ff_mp3_noxing",
    "ff_mp3",
    "ff_flac",
    "ff_ulaw",
    "ff_alaw",
    "ff_u8",
    "ff_s32",
    "ff_f64",
    "ff_rf64",
    "ff_w64",
    "ff_aiff",
    "ff_caf",
    "ff_6ch",
    "ff_mono_mp3",
    "ff_adpcm",
]


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright, with every host but loopback
    unreachable (no CDN, no network). ``tools/install_deps.sh`` installs chromium.

    Module-scoped: Playwright's sync API keeps an event loop running in the main thread
    while it is open, and ``asyncio.run`` in a later test module would refuse to start."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make deps` (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--autoplay-policy=no-user-gesture-required",
                "--use-fake-ui-for-media-stream",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                "--enable-unsafe-swiftshader",  # WebGL on the CPU
            ],
        )
        yield b
        b.close()


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts mlx_audio_io.nn's C kernel calls (by name), so that a silent fallback to MLX
    fails the test."""
    from mlx_audio_io import nn as aio_nn

    calls = []
    native, graph = aio_nn._native, aio_nn._graph

    def spy(name, *args):
        calls.append(name)
        return native(name, *args)

    def graph_spy(name, *args):  # the same kernels as MLX graph nodes (mlx_audio_io._prim)
        calls.append(name)
        return graph(name, *args)

    monkeypatch.setattr(aio_nn, "_native", spy)
    monkeypatch.setattr(aio_nn, "_graph", graph_spy)
    return calls


KOKORO_FIX = Path(__file__).parent / "fixtures" / "kokoro"


@pytest.fixture(scope="module")
def kokoro_folder(tmp_path_factory) -> Path:
    """The reduced Kokoro in hexgrad's layout: config.json, kokoro-v1_0.pth, voices/*.pt."""
    folder = tmp_path_factory.mktemp("kokoro")
    shutil.copy(KOKORO_FIX / "kokoro_reduced_config.json", folder / "config.json")
    shutil.copy(KOKORO_FIX / "kokoro_reduced.pth", folder / "kokoro-v1_0.pth")
    shutil.copytree(KOKORO_FIX / "voices", folder / "voices")
    return folder
