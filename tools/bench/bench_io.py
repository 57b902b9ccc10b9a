"""Side-by-side I/O benchmark of mlx_audio_io against soundfile, librosa, the public
mlx-audio-io 1.3.24 release, torchaudio and a NumPy floor.

Generates a 194.8 s stereo 44.1 kHz test signal (and MP3/FLAC/M4A copies made with the
``ffmpeg`` CLI) into ``.bench/`` under the repository root, times each task for every library
that can do it (2 warm-ups, then N runs; median and minimum reported, page cache warm) and
writes a markdown report to ``docs/benchmarks.md`` (or ``--out``).

The public release shares our import name, so it lives in its own venv (``.bench/anchor-venv``,
created and installed with ``uv`` on first use, built from the sdist on Linux) and is timed by
``anchor_worker.py`` in a subprocess, once before and once after the in-process measurements.
torchaudio is timed the same way (``torchaudio_worker.py``) from ``.bench/torch-venv``, because
torch is kept out of the default environment: a working venv is reused, a missing or broken one
is created with ``python3 -m venv`` and ``pip`` (torch 2.9.1 from PyPI, several minutes and about
7 GB); ``--no-torch`` skips torchaudio altogether.

Usage::

    uv run --group bench python tools/bench/bench_io.py [--quick] [--no-torch] [--out PATH]

A peer that is missing or fails shows as "n/a" with the reason in a footnote; the run goes on.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# isort: off
import mlx_audio_io as aio  # before mlx.core: it preloads OpenBLAS (see mlx_audio_io/_blas.py)
import mlx.core as mx

# isort: on
import numpy as np
from common import (
    Anchor,
    ExternalPeer,
    Footnotes,
    cpu_model,
    first_error,
    probe_venv,
    ram_total,
    text_tail,
    version,
)
from worker_loop import frames_of, timed_runs, warm_up

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".bench"
DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"

SR = 44100
SECONDS = 194.8
CHANNELS = 2
FRAMES = int(round(SECONDS * SR))
SEED = 20240607
WARMUPS = 2
RUNS_FULL = 9
RUNS_QUICK = 3
TARGET_SR = 16000
ANCHOR_VERSION = "1.3.24"
ANCHOR = f"mlx-audio-io {ANCHOR_VERSION}"
ANCHOR_VENV = CACHE / "anchor-venv"
ANCHOR_WORKER = Path(__file__).resolve().with_name("anchor_worker.py")
ANCHOR_NPY = CACHE / "anchor_resampled_16k.npy"
TORCHAUDIO = "torchaudio"
TORCH_VERSION = "2.9.1"
TORCHAUDIO_SERIES = "2.9"
TORCH_VENV = CACHE / "torch-venv"
TORCH_WORKER = Path(__file__).resolve().with_name("torchaudio_worker.py")
RSS_WORKER = Path(__file__).resolve().with_name("rss_worker.py")
TORCH_NPY = CACHE / "torchaudio_resampled_16k.npy"
# pip steps into the torch venv: torch with torchvision first, then torchaudio and TorchCodec
TORCH_INSTALL = (
    (f"torch=={TORCH_VERSION}", "torchvision==0.24.1"),
    (
        f"torch=={TORCH_VERSION}",
        f"torchaudio=={TORCHAUDIO_SERIES}.*",
        "torchcodec==0.8.1",
        "numpy",
        "soundfile",
    ),
)
INSTALL_TIMEOUT_S = 1800
WORKER_TIMEOUT_S = 3600
IN_PROCESS_PEERS = ("soundfile", "librosa")
PEERS = (*IN_PROCESS_PEERS, ANCHOR, TORCHAUDIO)
COLUMNS = ("mlx_audio_io", *PEERS, "numpy floor")
# WAV save rows: label, input kind ("numpy" or "mx"), clip
SAVE_VARIANTS = (
    ("NumPy input", "numpy", True),
    ("mx.array input", "mx", True),
    ("NumPy input, clip=False", "numpy", False),
)


# --------------------------------------------------------------------------------------------
# Test material
# --------------------------------------------------------------------------------------------


def synth_signal() -> np.ndarray:
    """A music-like stereo signal: three harmonic tones with a plucked envelope plus noise."""
    rng = np.random.default_rng(SEED)
    t = np.arange(FRAMES, dtype=np.float64) / SR
    out = np.zeros((FRAMES, CHANNELS), dtype=np.float64)
    notes = ((220.0, 0.5, 0.0), (277.18, 0.75, 0.25), (329.63, 1.0, 0.5))
    for f0, period, phase in notes:
        since_onset = (t + phase) % period
        env = (1.0 - np.exp(-since_onset / 0.005)) * np.exp(-since_onset / (0.3 * period))
        tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * env
        pan = 0.5 + 0.3 * np.sin(2 * np.pi * f0 / 1000.0)
        out[:, 0] += (1.0 - pan) * tone
        out[:, 1] += pan * tone
    out += 0.01 * rng.standard_normal(out.shape)
    out *= 0.5 / np.max(np.abs(out))
    return out


def wav_header(frames: int, channels: int, sr: int, bits: int, fmt_tag: int) -> bytes:
    """A canonical 44-byte RIFF/WAVE header (fmt_tag 1 = PCM, 3 = IEEE float)."""
    block = channels * bits // 8
    data_bytes = frames * block
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, fmt_tag, channels, sr, sr * block, block, bits)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def write_pcm16_wav(path: Path, audio: np.ndarray) -> None:
    """Writes float audio in [-1, 1] as 16-bit PCM with NumPy."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with open(path, "wb") as f:
        f.write(wav_header(pcm.shape[0], pcm.shape[1], SR, 16, 1))
        pcm.tofile(f)


def ffmpeg_encode(src: Path, dst: Path, codec_args: list[str]) -> None:
    """Encodes ``src`` to ``dst`` with the ffmpeg CLI (raises on failure)."""
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *codec_args]
    subprocess.run([*cmd, str(dst)], check=True)


def prepare_material() -> dict[str, Path]:
    """Creates (or reuses) the WAV and its MP3/FLAC/M4A encodings under ``.bench/``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    files = {k: CACHE / f"music.{k}" for k in ("wav", "mp3", "flac", "m4a", "ogg")}
    wav_size = 44 + FRAMES * CHANNELS * 2
    fresh = not (files["wav"].exists() and files["wav"].stat().st_size == wav_size)
    if fresh:
        print(f"generating {files['wav']} ...", file=sys.stderr)
        write_pcm16_wav(files["wav"], synth_signal())
    encodings = {
        "mp3": ["-c:a", "libmp3lame", "-b:a", "192k"],
        "flac": ["-c:a", "flac"],
        "m4a": ["-c:a", "aac", "-b:a", "192k"],
        "ogg": ["-c:a", "libvorbis", "-q:a", "5"],
    }
    for ext, codec_args in encodings.items():
        if fresh or not files[ext].exists() or files[ext].stat().st_size == 0:
            print(f"encoding {files[ext]} ...", file=sys.stderr)
            ffmpeg_encode(files["wav"], files[ext], codec_args)
    files.update(batch_clips(files["wav"], fresh))
    return files


BATCH_CLIPS = 16


def batch_clips(wav: Path, fresh: bool) -> dict[str, Path]:
    """Sixteen 10 s FLAC clips cut from the WAV, for the batch_load rows."""
    clips = {f"clip{i}": CACHE / f"clip{i:02d}.flac" for i in range(BATCH_CLIPS)}
    if fresh or not all(p.exists() for p in clips.values()):
        for i, path in enumerate(clips.values()):
            audio, _ = aio.load(wav, offset=10.0 * i, duration=10.0)
            aio.save(path, audio, SR, encoding="pcm16")
    return clips


def wav_data_chunk(path: Path) -> tuple[int, int]:
    """Returns (offset, size) of the ``data`` chunk of a RIFF/WAVE file by walking its chunks."""
    with open(path, "rb") as f:
        if f.read(12)[8:12] != b"WAVE":
            raise ValueError(f"{path} is not a WAVE file")
        pos = 12
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{path} has no data chunk")
            cid, size = head[:4], struct.unpack("<I", head[4:])[0]
            if cid == b"data":
                return pos + 8, size
            pos += 8 + size + (size & 1)
            f.seek(pos)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    """Timing of one library on one task, or the reason it could not run."""

    p50_ms: float | None = None
    min_ms: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    frames: int | None = None


def measure(fn: Callable[[], object], runs: int, warmups: int = WARMUPS) -> Result:
    """Times ``fn``: warm-ups, then ``runs`` timed runs (``timed_runs``: batches for calls
    under 2 ms); failures become a Result.error."""
    try:
        out, notes = warm_up(fn, warmups)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            times = timed_runs(fn, runs)
    except Exception as e:  # noqa: BLE001 - any failure of a peer is reported, not raised
        return Result(error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    return Result(statistics.median(times), min(times), notes=notes, frames=frames_of(out))


def mlx_eval(out):
    """Forces evaluation of an MLX result ``(array, sr)`` or array and returns the array."""
    arr = out[0] if isinstance(out, tuple) else out
    mx.eval(arr)
    return arr


# --------------------------------------------------------------------------------------------
# Peers (imported lazily so a missing one only costs its own cells)
# --------------------------------------------------------------------------------------------


def optional_import(name: str):
    """Imports a module, returning it or the ImportError text."""
    try:
        return importlib.import_module(name), None
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"


def missing(reason: str) -> Callable[[], object]:
    """A stand-in task for an unavailable library: raises with the import error."""

    def fail():
        raise RuntimeError(reason)

    return fail


@dataclass
class Task:
    """One benchmark row: a callable per column (absent = the library cannot do it)."""

    name: str
    fns: dict[str, Callable[[], object]]


def peer_fns(mods: dict, build: dict[str, Callable[[object], Callable[[], object]]]) -> dict:
    """Builds each peer's task callable, or a failing stand-in when its module is missing."""
    fns = {}
    for name, make in build.items():
        mod, err = mods[name]
        fns[name] = make(mod) if mod is not None else missing(err)
    return fns


def wav_load_tasks(files: dict[str, Path], mods: dict) -> list[Task]:
    """Full WAV decode and a 1 s excerpt at 60 s."""
    wav = str(files["wav"])
    start, n = 60 * SR, SR

    def floor_full():
        off, size = wav_data_chunk(files["wav"])
        raw = np.fromfile(wav, dtype="<i2", count=size // 2, offset=off)
        return raw.astype(np.float32).reshape(-1, CHANNELS) / 32768

    def floor_slice():
        off, _ = wav_data_chunk(files["wav"])
        raw = np.fromfile(wav, dtype="<i2", count=n * CHANNELS, offset=off + start * CHANNELS * 2)
        return raw.astype(np.float32).reshape(-1, CHANNELS) / 32768

    full = {
        "mlx_audio_io": lambda: mlx_eval(aio.load(wav)),
        **peer_fns(
            mods,
            {
                "soundfile": lambda sf: lambda: sf.read(wav, dtype="float32")[0],
                "librosa": lambda lr: lambda: lr.load(wav, sr=None, mono=False)[0],
            },
        ),
        "numpy floor": floor_full,
    }
    part = {
        "mlx_audio_io": lambda: mlx_eval(aio.load(wav, offset=60, duration=1)),
        **peer_fns(
            mods,
            {
                "soundfile": lambda sf: (
                    lambda: sf.read(wav, start=start, frames=n, dtype="float32")[0]
                ),
                "librosa": lambda lr: (
                    lambda: lr.load(wav, offset=60, duration=1, sr=None, mono=False)[0]
                ),
            },
        ),
        "numpy floor": floor_slice,
    }
    return [Task("WAV full load", full), Task("WAV 1 s at 60 s", part)]


def wav_save_tasks(files: dict[str, Path], mods: dict) -> list[Task]:
    """float32 WAV encode from a NumPy array and from an mx.array.

    mlx_audio_io clamps to [-1, 1] by default (``clip=True``); soundfile and the floor do not,
    so the ``clip=False`` row is the like-for-like one.
    """
    audio_np = np.array(aio.load(str(files["wav"]))[0], dtype=np.float32)
    audio_mx = mx.array(audio_np)
    mx.eval(audio_mx)
    dst = {k: str(CACHE / f"out_{k}.wav") for k in ("mlx", "sf", "np")}

    def floor_save(arr):
        with open(dst["np"], "wb") as f:
            f.write(wav_header(arr.shape[0], arr.shape[1], SR, 32, 3))
            arr.astype("<f4", copy=False).tofile(f)

    def sf_save(src):
        return lambda sf: lambda: sf.write(dst["sf"], np.asarray(src), SR, subtype="FLOAT")

    rows = []
    for label, kind, clip in SAVE_VARIANTS:
        src = audio_mx if kind == "mx" else audio_np
        fns = {
            "mlx_audio_io": lambda src=src, clip=clip: aio.save(
                dst["mlx"], src, SR, encoding="float32", clip=clip
            ),
            **peer_fns(mods, {"soundfile": sf_save(src)}),
            "numpy floor": lambda src=src: floor_save(np.asarray(src)),
        }
        rows.append(Task(f"WAV save float32 ({label})", fns))
    return rows


COMPRESSED = ("mp3", "flac", "m4a", "ogg")


def compressed_load_tasks(files: dict[str, Path], mods: dict) -> list[Task]:
    """Full decode of the MP3, FLAC, M4A and Ogg Vorbis encodings."""
    rows = []
    for ext in COMPRESSED:
        path = str(files[ext])
        fns = {
            "mlx_audio_io": lambda path=path: mlx_eval(aio.load(path)),
            **peer_fns(
                mods,
                {
                    "soundfile": lambda sf, path=path: lambda: sf.read(path, dtype="float32")[0],
                    "librosa": lambda lr, path=path: lambda: lr.load(path, sr=None, mono=False)[0],
                },
            ),
        }
        rows.append(Task(f"{ext.upper()} load", fns))
    return rows


def compressed_slice_tasks(files: dict[str, Path], mods: dict) -> list[Task]:
    """One second from 60 s into each compressed file: seeking, not decoding the start."""
    rows = []
    for ext in COMPRESSED:
        path = str(files[ext])

        def sf_slice(sf, path=path):
            return lambda: sf.read(path, start=60 * SR, frames=SR, dtype="float32")[0]

        def lr_slice(lr, path=path):
            return lambda: lr.load(path, sr=None, mono=False, offset=60.0, duration=1.0)[0]

        fns = {
            "mlx_audio_io": lambda path=path: mlx_eval(aio.load(path, offset=60, duration=1)),
            **peer_fns(mods, {"soundfile": sf_slice, "librosa": lr_slice}),
        }
        rows.append(Task(f"{ext.upper()} 1 s at 60 s", fns))
    return rows


def memory_task(files: dict[str, Path], mods: dict) -> Task:
    """Decoding an MP3 held in memory (bytes / BytesIO)."""
    import io

    data = files["mp3"].read_bytes()
    fns = {
        "mlx_audio_io": lambda: mlx_eval(aio.load(data)),
        **peer_fns(
            mods,
            {"soundfile": lambda sf: lambda: sf.read(io.BytesIO(data), dtype="float32")[0]},
        ),
    }
    return Task("MP3 load from bytes in memory", fns)


def batch_tasks(files: dict[str, Path]) -> list[Task]:
    """batch_load against a plain loop, over the sixteen 10 s FLAC clips (2 cores here)."""
    clips = [str(files[f"clip{i}"]) for i in range(BATCH_CLIPS)]

    def loop():
        return [mlx_eval(aio.load(p)) for p in clips]

    def batch(workers: int):
        return lambda: [mlx_eval(a) for a, _ in aio.batch_load(clips, num_workers=workers)]

    n = f"{BATCH_CLIPS} x 10 s FLAC"
    return [
        Task(f"{n}: load() in a loop", {"mlx_audio_io": loop}),
        Task(f"{n}: batch_load(num_workers=2)", {"mlx_audio_io": batch(2)}),
    ]


def resample_task(files: dict[str, Path], mods: dict, best: bool = False) -> Task:
    """Load, downmix and resample to 16 kHz, at the default quality (soxr HQ, librosa's default)
    or at the best (soxr VHQ) for every library."""
    wav = str(files["wav"])
    soxr_q, res_type, ours = ("VHQ", "soxr_vhq", "best") if best else ("HQ", "soxr_hq", "default")

    def sf_soxr(sf):
        soxr, err = mods["soxr"]
        if soxr is None:
            return missing(err)
        return lambda: soxr.resample(
            sf.read(wav, dtype="float32")[0].mean(axis=1), SR, TARGET_SR, quality=soxr_q
        )

    def lr_load(lr):
        return lambda: lr.load(wav, sr=TARGET_SR, mono=True, res_type=res_type)[0]

    fns = {
        "mlx_audio_io": lambda: mlx_eval(
            aio.load(wav, sr=TARGET_SR, mono=True, resample_quality=ours)
        ),
        **peer_fns(mods, {"soundfile": sf_soxr, "librosa": lr_load}),
    }
    name = "load + resample to 16 kHz mono"
    return Task(f"{name}, best (soxr VHQ)" if best else name, fns)


def info_tasks(files: dict[str, Path], mods: dict) -> list[Task]:
    """Metadata only: WAV and MP3."""
    rows = []
    for ext in ("wav", "mp3"):
        path = str(files[ext])
        fns = {
            "mlx_audio_io": lambda path=path: aio.info(path),
            **peer_fns(
                mods,
                {
                    "soundfile": lambda sf, path=path: lambda: sf.info(path),
                    "librosa": lambda lr, path=path: lambda: lr.get_duration(path=path),
                },
            ),
        }
        if ext == "wav":
            fns["numpy floor"] = lambda: wav_data_chunk(files["wav"])
        rows.append(Task(f"info ({ext.upper()})", fns))
    return rows


def anatomy_tasks(files: dict[str, Path]) -> list[Task]:
    """Where a full load's time goes: MLX's allocation of the output, and decoding alone into
    a warm preallocated buffer (no MLX)."""
    from mlx_audio_io._lib import ffi
    from mlx_audio_io._read import _Source

    frames = aio.info(str(files["wav"])).frames
    warm = np.ones((frames, CHANNELS), dtype=np.float32)

    def decode_only(path: str):
        src = _Source(path, op="load")
        try:
            return src.read_into(ffi.from_buffer("float[]", warm), src.total, CHANNELS, 1)
        finally:
            src.close()

    rows = [
        Task(
            "anatomy: mx.zeros of the output (MLX allocation)",
            {"mlx_audio_io": lambda: mlx_eval(mx.zeros((frames, CHANNELS)))},
        )
    ]
    for ext in ("wav", "mp3", "flac"):
        path = str(files[ext])
        rows.append(
            Task(
                f"anatomy: {ext.upper()} decode into a warm buffer (no MLX)",
                {"mlx_audio_io": lambda path=path: decode_only(path)},
            )
        )
    return rows


def build_tasks(files: dict[str, Path]) -> list[Task]:
    """All benchmark rows, in report order."""
    mods = {name: optional_import(name) for name in (*IN_PROCESS_PEERS, "soxr")}
    return [
        *wav_load_tasks(files, mods),
        *wav_save_tasks(files, mods),
        *compressed_load_tasks(files, mods),
        *compressed_slice_tasks(files, mods),
        memory_task(files, mods),
        resample_task(files, mods),
        resample_task(files, mods, best=True),
        *batch_tasks(files),
        *info_tasks(files, mods),
        *anatomy_tasks(files),
    ]


# --------------------------------------------------------------------------------------------
# External peers, each in its own venv and timed by its worker script in a subprocess: the
# public mlx-audio-io release (it shares our import name) and torchaudio (torch stays out of
# our environment)
# --------------------------------------------------------------------------------------------


ANCHOR_PROBE = (
    "import json, mlx.core as mx, mlx_audio_io as m; print(json.dumps({'version': m.__version__,"
    " 'soxr': bool(m.supports_soxr()), 'mlx': mx.__version__, 'file': m.__file__}))"
)
TORCH_PROBE = """
import json, platform, torch, torchaudio, torchcodec
from torchcodec.decoders import AudioDecoder
try:
    from torchcodec._core import get_ffmpeg_library_versions
    ffmpeg = get_ffmpeg_library_versions().get("ffmpeg_version", "unknown")
except Exception:
    ffmpeg = "unknown"
print(json.dumps({"torch": torch.__version__, "torchaudio": torchaudio.__version__,
    "torchcodec": torchcodec.__version__, "ffmpeg": ffmpeg,
    "python": platform.python_version(), "threads": torch.get_num_threads()}))
"""
# pip's lines worth echoing while the torch venv installs
PIP_PROGRESS = ("Collecting", "Downloading", "Installing", "Successfully", "ERROR")


def worker_env() -> dict[str, str]:
    """Our environment minus PYTHON*, VIRTUAL_ENV and MLX_AUDIO_IO_* variables, so an external
    peer imports its own packages and runs with its own defaults."""
    drop = ("PYTHON", "VIRTUAL_ENV", "MLX_AUDIO_IO_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def probe_anchor(python: Path) -> dict | None:
    """What the anchor venv's package reports about itself, or None when it is not the
    release we compare against."""
    probe = probe_venv(python, ANCHOR_PROBE, worker_env())
    return probe if probe and probe.get("version") == ANCHOR_VERSION else None


def probe_torch(python: Path) -> dict | None:
    """The torch, torchaudio, TorchCodec and FFmpeg versions of the torch venv, or None when it
    does not import them or holds other versions than the ones the bench installs."""
    probe = probe_venv(python, TORCH_PROBE, worker_env())
    if not probe:
        return None
    torch_ok = probe.get("torch", "").split("+")[0] == TORCH_VERSION
    audio_ok = probe.get("torchaudio", "").startswith(f"{TORCHAUDIO_SERIES}.")
    return probe if torch_ok and audio_ok else None


def stream_output(cmd: list[str], env: dict | None) -> tuple[int, str]:
    """Runs ``cmd``, echoing its progress lines to stderr as they come; returns (exit status,
    output). Killed after INSTALL_TIMEOUT_S, which raises TimeoutExpired."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    timer = threading.Timer(INSTALL_TIMEOUT_S, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(PIP_PROGRESS):
                print(f"    {line.rstrip()}", file=sys.stderr)
        status = proc.wait()
        fired = timer.finished.is_set()
    finally:
        timer.cancel()
    if fired:
        raise subprocess.TimeoutExpired(cmd, INSTALL_TIMEOUT_S)
    return status, "".join(lines)


def run_step(cmd: list[str], env: dict | None = None, echo: bool = False) -> tuple[str | None, str]:
    """Runs one install command (echoing its progress when ``echo``); returns (error or None,
    its combined output)."""
    name = " ".join([Path(cmd[0]).name, *cmd[1:3]])
    try:
        if echo:
            status, log = stream_output(cmd, env)
        else:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT_S
            )
            status, log = proc.returncode, proc.stderr + proc.stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`{name}`: {type(e).__name__}: {e}", ""
    if status == 0:
        return None, log
    print(f"`{name}` failed (exit {status}):\n{text_tail(log)}", file=sys.stderr)
    return f"`{name}` failed (exit {status}): {first_error(log)}", log


def install_anchor(python: Path) -> tuple[str | None, str]:
    """Creates the venv if needed and installs the release and numpy into it with uv.

    Returns (error or None, how it was obtained)."""
    steps = []
    if not python.exists():
        steps.append(["uv", "venv", "--clear", "--python", sys.executable, str(ANCHOR_VENV)])
    pkg = f"mlx-audio-io=={ANCHOR_VERSION}"
    steps.append(["uv", "pip", "install", "--python", str(python), pkg, "numpy"])
    log = ""
    for cmd in steps:
        err, log = run_step(cmd)
        if err:
            return err, ""
    return (
        None,
        "built from the sdist and installed" if "Built mlx-audio-io" in log else "installed",
    )


def install_torch(python: Path) -> tuple[str | None, str]:
    """Creates the torch venv if needed (``python3 -m venv``) and installs torch, torchaudio,
    TorchCodec, numpy and soundfile into it with its own pip, echoing pip's progress.

    Returns (error or None, how it was obtained)."""
    steps = []
    if not python.exists():
        base = shutil.which("python3") or sys.executable
        steps.append([base, "-m", "venv", "--clear", str(TORCH_VENV)])
    pip = str(TORCH_VENV / "bin" / "pip")
    steps += [[pip, "install", *pkgs, "--progress-bar", "off"] for pkgs in TORCH_INSTALL]
    for cmd in steps:
        err, _ = run_step(cmd, env=worker_env(), echo=True)
        if err:
            return err, ""
    return None, "installed with pip"


def setup_venv(
    what: str,
    python: Path,
    probe: Callable[[Path], dict | None],
    install: Callable[[Path], tuple[str | None, str]],
    hint: str = "",
) -> Anchor:
    """Reuses a peer's venv when its probe passes, else (re)installs it and probes again."""
    found = probe(python)
    if found:
        return Anchor(python, setup="cached venv reused", probe=found)
    print(f"installing {what} into {python.parents[1]}{hint} ...", file=sys.stderr)
    t0 = time.perf_counter()
    err, how = install(python)
    secs = time.perf_counter() - t0
    found = None if err else probe(python)
    if err is None and not found:
        err = "installed, but the import check in the venv failed"
    if err:
        print(f"{what}: unavailable ({err})", file=sys.stderr)
        return Anchor(None, error=err, setup=f"install failed after {secs:.0f} s")
    print(f"{what}: {how} in {secs:.1f} s", file=sys.stderr)
    return Anchor(python, setup=f"{how} in {secs:.1f} s", probe=found)


def setup_anchor() -> Anchor:
    """The anchor venv, reused when it imports the right version, else (re)installed."""
    what = f"mlx-audio-io=={ANCHOR_VERSION}"
    return setup_venv(what, ANCHOR_VENV / "bin" / "python", probe_anchor, install_anchor)


def setup_torch(skip: bool) -> Anchor:
    """The torch venv, reused when it works, else (re)installed; nothing with ``--no-torch``."""
    if skip:
        return Anchor(None, error="left out with --no-torch", setup="not set up")
    what = f"torch=={TORCH_VERSION} + torchaudio {TORCHAUDIO_SERIES}"
    hint = " (a CUDA build from PyPI, about 7 GB: several minutes; --no-torch skips this)"
    return setup_venv(what, TORCH_VENV / "bin" / "python", probe_torch, install_torch, hint)


def load_spec(name: str, path: Path, **kwargs) -> dict:
    """A worker task that times its library's ``load(path, **kwargs)``."""
    return {"name": name, "op": "load", "path": str(path), "kwargs": kwargs}


def anchor_specs(files: dict[str, Path]) -> list[dict]:
    """The anchor worker's task list, named like the rows it fills."""
    wav = files["wav"]
    specs = [
        load_spec("WAV full load", wav),
        load_spec("WAV 1 s at 60 s", wav, offset=60, duration=1),
    ]
    for label, kind, clip in SAVE_VARIANTS:
        specs.append(
            {
                "name": f"WAV save float32 ({label})",
                "op": "save",
                "path": str(CACHE / "out_anchor.wav"),
                "source": str(wav),
                "sr": SR,
                "input": kind,
                "kwargs": {"encoding": "float32", "clip": clip},
            }
        )
    specs += [load_spec(f"{ext.upper()} load", files[ext]) for ext in ("mp3", "flac", "m4a")]
    specs += [
        load_spec(f"{ext.upper()} 1 s at 60 s", files[ext], offset=60, duration=1)
        for ext in ("mp3", "flac", "m4a")
    ]
    resample = load_spec("load + resample to 16 kHz mono", wav, sr=TARGET_SR, mono=True)
    specs.append({**resample, "npy": str(ANCHOR_NPY)})
    # its Linux default with libsoxr is already soxr VHQ
    specs.append(
        load_spec("load + resample to 16 kHz mono, best (soxr VHQ)", wav, sr=TARGET_SR, mono=True)
    )
    specs += [
        {"name": f"info ({ext.upper()})", "op": "info", "path": str(files[ext])}
        for ext in ("wav", "mp3")
    ]
    return specs


def torchaudio_specs(files: dict[str, Path]) -> list[dict]:
    """The torchaudio worker's task list, named like the rows it fills."""
    wav = files["wav"]
    part = {"frame_offset": 60 * SR, "num_frames": SR}
    save = {
        "name": "WAV save float32 (NumPy input)",
        "op": "save",
        "path": str(CACHE / "out_torchaudio.wav"),
        "source": str(wav),
        "sr": SR,
        "kwargs": {"encoding": "PCM_F", "bits_per_sample": 32},
    }
    resample = {
        "name": "load + resample to 16 kHz mono",
        "op": "resample",
        "path": str(wav),
        "orig_sr": SR,
        "sr": TARGET_SR,
        "npy": str(TORCH_NPY),
    }
    return [
        load_spec("WAV full load", wav),
        load_spec("WAV 1 s at 60 s", wav, **part),
        save,
        *[load_spec(f"{ext.upper()} load", files[ext]) for ext in COMPRESSED],
        *[load_spec(f"{ext.upper()} 1 s at 60 s", files[ext], **part) for ext in COMPRESSED],
        resample,
    ]


def external_peers(files: dict[str, Path], no_torch: bool) -> list[ExternalPeer]:
    """The peers timed in their own venvs, with those venvs set up (or the reason not)."""
    return [
        ExternalPeer(ANCHOR, ANCHOR_VENV, ANCHOR_WORKER, anchor_specs(files), setup_anchor()),
        ExternalPeer(
            TORCHAUDIO, TORCH_VENV, TORCH_WORKER, torchaudio_specs(files), setup_torch(no_torch)
        ),
    ]


def worker_results(out: dict, specs: list[dict]) -> dict[str, Result]:
    """Converts a worker's JSON into Results (a task it did not report is an error)."""
    results = {}
    for name in (s["name"] for s in specs):
        d = out.get(name, {"error": "no result from the worker"})
        if "error" in d:
            results[name] = Result(error=d["error"])
        else:
            results[name] = Result(d["p50"], d["min"], notes=d.get("notes", []), frames=d["frames"])
    return results


def run_peer_pass(peer: ExternalPeer, runs: int, label: str) -> dict[str, Result]:
    """Times every task of an external peer in one worker process; failures become Result
    errors."""
    if peer.state.python is None:
        return {s["name"]: Result(error=peer.state.error) for s in peer.specs}
    print(f"{peer.name}: {label} pass ...", file=sys.stderr)
    spec = json.dumps({"runs": runs, "warmups": WARMUPS, "tasks": peer.specs})
    cmd = [str(peer.state.python), "-I", str(peer.worker)]
    try:
        proc = subprocess.run(
            cmd,
            input=spec,
            capture_output=True,
            text=True,
            env=worker_env(),
            timeout=WORKER_TIMEOUT_S,
        )
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"worker exited {proc.returncode}: {text_tail(proc.stderr, 1)}")
        return worker_results(json.loads(proc.stdout.strip().splitlines()[-1]), peer.specs)
    except Exception as e:  # noqa: BLE001 - a broken worker costs only its column
        error = f"{type(e).__name__}: {str(e)[:200]}"
        return {s["name"]: Result(error=error) for s in peer.specs}


def best_pass(*passes: dict[str, Result]) -> dict[str, Result]:
    """Per task, the pass with the lower p50 (or the first pass's error if none ran)."""
    best = {}
    for name in passes[0]:
        ok = [p[name] for p in passes if p[name].p50_ms is not None]
        best[name] = min(ok, key=lambda r: r.p50_ms) if ok else passes[0][name]
    return best


def merge_peer(rows: list[tuple[str, dict[str, Result]]], column: str, cells: dict) -> None:
    """Adds an external peer's cells to the rows of the same name, in its column."""
    for name, results in rows:
        if name in cells:
            results[column] = cells[name]
    unmatched = set(cells) - {name for name, _ in rows}
    if unmatched:
        print(f"warning: {column} tasks without a row: {sorted(unmatched)}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Accuracy of the resampling task
# --------------------------------------------------------------------------------------------


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    """Signal-to-noise ratio of ``x`` against ``ref`` over their common length."""
    n = min(len(ref), len(x))
    ref, x = ref[:n].astype(np.float64), np.asarray(x[:n], dtype=np.float64).reshape(-1)
    noise = np.sum((ref - x) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref**2) / noise))


def worker_output(path: Path) -> Callable[[], np.ndarray]:
    """Reads the 16 kHz mono output an external peer's worker saved at ``path``."""

    def read() -> np.ndarray:
        if not path.exists():
            raise FileNotFoundError("its worker saved no output")
        return np.load(path)

    return read


def resample_accuracy(files: dict[str, Path]) -> str:
    """SNR of each 16 kHz mono result vs soxr VHQ of the float64 downmix."""
    try:
        import soundfile as sf
        import soxr

        mono = sf.read(str(files["wav"]), dtype="float64")[0].mean(axis=1)
        ref = soxr.resample(mono, SR, TARGET_SR, quality="VHQ")
    except Exception as e:  # noqa: BLE001
        return f"n/a ({type(e).__name__}: {e})"
    wav = str(files["wav"])
    candidates = {
        "mlx_audio_io": lambda: np.array(aio.load(wav, sr=TARGET_SR, mono=True)[0]),
        "soundfile+soxr HQ": lambda: soxr.resample(
            mono.astype(np.float32), SR, TARGET_SR, quality="HQ"
        ),
        "librosa": lambda: importlib.import_module("librosa").load(wav, sr=TARGET_SR)[0],
        f"{ANCHOR} (its default quality)": worker_output(ANCHOR_NPY),
        f"{TORCHAUDIO} (functional.resample default)": worker_output(TORCH_NPY),
    }
    parts = []
    for name, fn in candidates.items():
        try:
            out = fn()
            parts.append(f"{name} {snr_db(ref, out):.1f} dB ({len(out)} vs {len(ref)} samples)")
        except Exception as e:  # noqa: BLE001
            parts.append(f"{name} n/a ({type(e).__name__}: {e})")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def native_versions() -> str:
    """Versions of the libraries mlx_audio_io was built against, if it reports them."""
    try:
        from mlx_audio_io import _lib

        return _lib.ffi.string(_lib.lib.aio_version_info()).decode()
    except Exception as e:  # noqa: BLE001
        return f"unavailable ({type(e).__name__})"


def blas_state() -> str:
    """Which BLAS mlx_audio_io preloaded for mlx.core on the CPU, if any."""
    blas = getattr(aio, "_blas", None)
    if blas is None:
        return "unknown"
    return blas.loaded._name if blas.loaded is not None else (blas.reason or "none")


def libsndfile_version() -> str:
    """The libsndfile version soundfile uses."""
    mod, err = optional_import("soundfile")
    return getattr(mod, "__libsndfile_version__", "unknown") if mod else "n/a"


def anchor_line(peer: ExternalPeer) -> str:
    """The Machine-section line about the anchor venv."""
    anchor = peer.state
    head = f"- {ANCHOR} (PyPI, own venv `{peer.label}`, Python {platform.python_version()})"
    if anchor.python is None:
        return f"{head}: unavailable ({anchor.setup}: {anchor.error})"
    p = anchor.probe
    return f"{head}: {anchor.setup}; mlx {p.get('mlx')}; supports_soxr() = {p.get('soxr')}"


def torch_line(peer: ExternalPeer) -> str:
    """The Machine-section line about the torch venv."""
    state, p = peer.state, peer.state.probe
    if state.python is None:
        return (
            f"- {TORCHAUDIO} (own venv `{peer.label}`): unavailable ({state.setup}: {state.error})"
        )
    return (
        f"- {TORCHAUDIO} {p.get('torchaudio')} (PyPI, own venv `{peer.label}`, Python "
        f"{p.get('python')}): {state.setup}; torch {p.get('torch')}; torchcodec "
        f"{p.get('torchcodec')} (FFmpeg {p.get('ffmpeg')}); CPU only, same {os.cpu_count()} "
        f"cores (torch threads: {p.get('threads')})"
    )


def machine_section(runs: int, peers: dict[str, ExternalPeer]) -> list[str]:
    """The "Machine" and "Method" lines above the table."""
    return [
        "## Machine",
        "",
        f"- CPU: {cpu_model()}",
        f"- Cores: {os.cpu_count()}; RAM: {ram_total()}; "
        f"OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; mlx {version('mlx')}; "
        f"mlx_audio_io (this repo) {version('mlx-audio-io')}; numpy {np.__version__}",
        f"- soundfile {version('soundfile')} (libsndfile {libsndfile_version()}); "
        f"librosa {version('librosa')}; soxr {version('soxr')}",
        f"- mlx_audio_io native: {native_versions()}; BLAS preload: {blas_state()}",
        anchor_line(peers[ANCHOR]),
        torch_line(peers[TORCHAUDIO]),
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        "## Method",
        "",
        f"- Material: {SECONDS} s stereo {SR} Hz synthetic music-like signal (seeded); PCM16 WAV,",
        "  MP3 (libmp3lame CBR 192k), FLAC (default level), M4A (native aac 192k), via ffmpeg.",
        f"- Each cell: {WARMUPS} warm-ups, then {runs} timed runs in one process; p50 (min) in ms.",
        "  Calls under 2 ms are timed in batches of repeated calls about 2 ms long, each run the",
        "  batch's mean, on every side (`worker_loop.timed_runs`).",
        "  Page cache warm. MLX outputs forced with `mx.eval`.",
        f"- {ANCHOR} is the public release (same import name), so it runs in its own venv as a",
        "  subprocess (`tools/bench/anchor_worker.py`) with the same timing loop. Its worker",
        "  runs the whole task list once before and once after the in-process measurements",
        "  (order A B A); each of its cells is the pass with the lower p50.",
        "- torchaudio runs the same way from its own venv (`.bench/torch-venv`), timed by",
        "  `tools/bench/torchaudio_worker.py`, on the CPU. It loads through TorchCodec (FFmpeg);",
        "  its save row takes a channels-first float32 `torch.Tensor`; its resample row is",
        "  `torchaudio.load`, a mean over the channels and `torchaudio.functional.resample`",
        "  (its default: Hann-windowed sinc, 6 zero crossings).",
        f"- ratio = best peer p50 ({', '.join(PEERS)})",
        "  / mlx_audio_io p50; >1 means we are faster. The NumPy floor is a reference lower",
        "  bound, not a peer, and is not in the ratio.",
        "- Saves use mlx_audio_io's default `clip=True` (clamps to [-1, 1]) unless the row says",
        f"  otherwise, and so does {ANCHOR} (its default is also `clip=True`); soundfile and the",
        "  floor write the floats as they are.",
        f"- Resampling: {ANCHOR} runs with its default quality (soxr VHQ on Linux, AudioToolbox",
        "  on macOS); soundfile's column is soxr HQ on the downmix; librosa uses its default.",
        "- info: librosa column is `librosa.get_duration(path=...)`; the floor parses the header.",
        "- Command: `make bench` (`uv run --group bench python tools/bench/bench_io.py`).",
        "",
    ]


def fmt_ms(v: float) -> str:
    """A millisecond value with sensible precision (three digits below 0.1 ms: info() is a few
    microseconds)."""
    if v < 0.1:
        return f"{v:.4f}"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def cell(col: str, res: Result | None, ours: Result | None, notes: Footnotes) -> str:
    """One table cell: "p50 (min)", "n/a" with a footnote, or "—" when not applicable."""
    if res is None:
        return "—"
    if res.error is not None:
        return f"n/a {notes.ref(f'{col}: {res.error}')}"
    text = f"{fmt_ms(res.p50_ms)} ({fmt_ms(res.min_ms)})"
    extra = list(res.notes)
    if ours is not None and ours.frames and res.frames and res.frames != ours.frames:
        extra.append(f"returned {res.frames} frames, mlx_audio_io {ours.frames}")
    for note in extra:
        text += f" {notes.ref(f'{col}: {note}')}"
    return text


def ratio(results: dict[str, Result]) -> str:
    """Best peer p50 over our p50."""
    ours = results.get("mlx_audio_io")
    peers = [results[p].p50_ms for p in PEERS if p in results and results[p].p50_ms is not None]
    if ours is None or ours.p50_ms is None or not peers:
        return "—"
    return f"{min(peers) / ours.p50_ms:.2f}x"


def table(rows: list[tuple[str, dict[str, Result]]], notes: Footnotes) -> list[str]:
    """The results table in markdown."""
    head = ["task", "mlx_audio_io p50 (min)", *COLUMNS[1:], "ratio"]
    align = ["---"] + ["---:"] * (len(COLUMNS) + 1)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for name, results in rows:
        ours = results.get("mlx_audio_io")
        cells = [cell(c, results.get(c), ours, notes) for c in COLUMNS]
        lines.append("| " + " | ".join([name, *cells, ratio(results)]) + " |")
    return lines


def render(rows, runs: int, accuracy: str, peers: list[ExternalPeer], memory: dict) -> str:
    """The whole markdown report."""
    notes = Footnotes()
    body = [
        "# mlx_audio_io I/O benchmarks",
        "",
        *machine_section(runs, {p.name: p for p in peers}),
        "## Results (ms, lower is better)",
        "",
        *table(rows, notes),
        "",
        f"**Accuracy** (load + resample to 16 kHz mono, SNR vs soxr VHQ of the float64 "
        f"downmix, common length): {accuracy}",
        "",
        *notes.lines(),
        "",
        *memory_section(memory),
        "",
        *targets(rows),
        "",
        *READING,
    ]
    return "\n".join(body).rstrip() + "\n"


# Why a target is missed when it is: what was measured and what stands in the way.
MISSED_BECAUSE = {
    "WAV full load": "the load is the output's allocation plus a ~7 ms decode (anatomy rows): "
    "MLX's CPU allocator returns large buffers to the OS and uses no huge pages, so every "
    "fresh 68 MB output pays ~16,800 page faults that NumPy's THP-backed buffers avoid",
    "MP3 load": "libmpg123 (AVX synth) decodes for us and for libsndfile alike (anatomy row: "
    "decode alone is on par with the peers' whole load); the difference is MLX's output "
    "allocation. Decoding MP3 in segments is not bit-identical to one pass (mpg123's synthesis "
    "filter alternates its buffer offset), so it stays sequential",
    "WAV save float32": "the floor neither clips nor replaces atomically. Our default "
    "clip=True clamps through a 1 MB buffer (the clip=False row, a single write, is ~1.15x "
    "the floor), and a save writes a new file renamed over the old one (docs/reliability.md) "
    "rather than truncating the old file in place: fresh page-cache pages for the new file and "
    "the old one's freed, a few ms on this 69 MB file",
}


def _p50(results: dict, col: str) -> float | None:
    res = results.get(col)
    return res.p50_ms if res is not None and res.error is None else None


def targets(rows) -> list[str]:
    """Issue 3's speed targets, checked against this run's numbers."""
    by = dict(rows)
    out = ["## Targets", ""]

    def line(name: str, ok: bool | None, text: str) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "**missed**")
        why = f" Why: {MISSED_BECAUSE[name]}." if ok is False and name in MISSED_BECAUSE else ""
        out.append(f"- {name}: {text} — {verdict}.{why}")

    wav = by.get("WAV full load", {})
    ours, floor = _p50(wav, "mlx_audio_io"), _p50(wav, "numpy floor")
    if ours and floor:
        line("WAV full load", ours <= 1.3 * floor, f"{ours / floor:.2f}x the NumPy floor (<= 1.3x)")
    for ext in COMPRESSED:
        res = by.get(f"{ext.upper()} load", {})
        ours = _p50(res, "mlx_audio_io")
        peers = [v for c in PEERS if (v := _p50(res, c)) is not None]
        if ours and peers:
            line(
                f"{ext.upper()} load",
                ours < min(peers),
                f"{min(peers) / ours:.2f}x the fastest peer (> 1x)",
            )
    res = by.get("load + resample to 16 kHz mono", {})
    ours, librosa = _p50(res, "mlx_audio_io"), _p50(res, "librosa")
    if ours and librosa:
        line(
            "load + resample to 16 kHz mono",
            ours < librosa,
            f"{librosa / ours:.2f}x librosa (> 1x; SNR in the Accuracy line, >= 60 dB)",
        )
    save = by.get("WAV save float32 (NumPy input)", {})
    ours, floor = _p50(save, "mlx_audio_io"), _p50(save, "numpy floor")
    if ours and floor:
        line(
            "WAV save float32",
            ours <= 1.5 * floor,
            f"{ours / floor:.2f}x the NumPy floor (<= 1.5x)",
        )
    res = by.get("FLAC 1 s at 60 s", {})
    ours = _p50(res, "mlx_audio_io")
    if ours:
        line(
            "FLAC 1 s from the middle", ours < 5, f"{ours:.2f} ms (a few ms, no whole-file decode)"
        )
    behind = []
    for name, res in rows:
        ours = res.get("mlx_audio_io")
        peers = [r for c in PEERS if (r := res.get(c)) is not None and r.error is None and r.p50_ms]
        if ours is None or ours.error is not None or not ours.p50_ms or not peers:
            continue
        p50 = min(r.p50_ms for r in peers) / ours.p50_ms
        best = min(r.min_ms for r in peers) / ours.min_ms
        if p50 < 1 or best < 1:
            behind.append(f"{name} {p50:.2f}x ({best:.2f}x min)")
    line(
        "Every row ahead of the fastest peer, p50 and min (issue 20)",
        not behind,
        "behind: " + "; ".join(behind) if behind else "all rows ahead",
    )
    for entry in behind:
        name = entry.rsplit(" ", 3)[0]  # "<row> 0.96x (0.94x min)"
        if name in BEHIND_BECAUSE:
            out.append(f"  - {name}: {BEHIND_BECAUSE[name]}.")
    return out


# What was measured where a row is behind its fastest peer (issue 20).
BEHIND_BECAUSE = {
    "WAV 1 s at 60 s": "the read itself is faster than mlx-audio-io 1.3.24's (1 s of 16-bit "
    "stereo converted in ~19 us against ~27), but a load() call costs ~15 us around it: the "
    "argument checks, the source object (one native call opens file and pipeline) with its "
    "finalizer, the MLX output and its evaluation, the close; 1.3.24's is one C++ call of "
    "~7.5 us. A tiny read (10 ms of audio) takes ~15 us against ~7.5",
    "info (WAV)": "mlx-audio-io 1.3.24's whole info() is ~2.2 us (a C++ call returning its own "
    "C++ object); ours is one native call of ~1.6 us (open, fstat, one 512-byte read, close) "
    "plus ~2 us of Python: the cffi call, the frozen-dataclass AudioInfo and its two strings",
}


READING = [
    "## Reading the table",
    "",
    "- Every load returns a fresh `mx.array`, whose memory the decoder writes once: it comes",
    "  from MLX's allocator unwritten (`_prim.empty`), with transparent huge pages asked for",
    "  when large (MLX's CPU allocator does not, and `mx.zeros` would write it first, a page",
    "  fault per 4 KiB: the `anatomy: mx.zeros` row), and warm from MLX's buffer cache when",
    "  small. The anatomy rows split a load into allocation and decode.",
    "- FLAC, ALAC and Ogg Vorbis loads longer than ~24 s decode in one segment per core (their",
    "  seeks are bit-exact); MP3 decodes in one pass (see Targets).",
    "- Native FLAC decodes through libFLAC (as libsndfile does; libav probed 96 KB on open and",
    "  bisected by timestamps from the end of the file), MP3 through libmpg123 fed from a 64 KiB",
    "  read buffer (its own reader makes two `read` calls per frame), Ogg Vorbis through",
    "  libav's Vorbis decoder fed by our own Ogg page walk (libav's demuxer drops up to a block",
    "  at the end of some files; docs/io.md).",
    "- M4A: soundfile cannot read it; librosa falls back to an ffmpeg subprocess, and it,",
    "  mlx-audio-io 1.3.24 and torchaudio keep the AAC end padding (680 more frames than the",
    "  edit list).",
    "- The resample rows compare equal quality: `default` is soxr HQ (as librosa's default),",
    "  `best` is soxr VHQ (mlx-audio-io 1.3.24's Linux default with libsoxr).",
    "- torchaudio runs in its own venv (`.bench/torch-venv`: torch 2.9.1 from PyPI, a CUDA",
    "  build of about 7 GB, used on the CPU only) because torch is kept out of the default",
    "  environment; the bench creates it when missing, and `--no-torch` leaves it out.",
    "  torchaudio 2.9 reads through TorchCodec, and its `load(frame_offset=, num_frames=)`",
    '  decodes the whole file and then slices, so its "1 s at 60 s" cells cost a full load.',
    "- The 2-core machine may be shared: p50 drifts by up to about 20% between runs; the min",
    "  column shows the undisturbed cost.",
]


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def run_all(tasks: list[Task], runs: int) -> list[tuple[str, dict[str, Result]]]:
    """Times every cell of every task, logging progress to stderr."""
    rows = []
    for task in tasks:
        results = {}
        for col in COLUMNS:
            if col in task.fns:
                results[col] = measure(task.fns[col], runs)
                r = results[col]
                shown = r.error or f"p50 {fmt_ms(r.p50_ms)} ms"
                print(f"  {task.name:<36} {col:<13} {shown}", file=sys.stderr)
        rows.append((task.name, results))
    return rows


def cleanup_outputs() -> None:
    """Removes the files written by the save tasks."""
    for p in CACHE.glob("out_*.wav"):
        p.unlink(missing_ok=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{RUNS_QUICK} runs per cell")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    parser.add_argument(
        "--no-torch",
        action="store_true",
        help="leave torchaudio out (no torch venv is created, probed or installed)",
    )
    return parser.parse_args(argv)


def remove_worker_outputs() -> None:
    """Removes the resampled outputs the external peers' workers saved."""
    for path in (ANCHOR_NPY, TORCH_NPY):
        path.unlink(missing_ok=True)


def measure_everything(files: dict[str, Path], runs: int, peers: list[ExternalPeer]) -> list:
    """A pass of every external peer, the in-process measurements, a second pass of every
    external peer; each peer's better pass per task is merged into its column."""
    remove_worker_outputs()
    try:
        before = {p.name: run_peer_pass(p, runs, "first") for p in peers}
        rows = run_all(build_tasks(files), runs)
        after = {p.name: run_peer_pass(p, runs, "second") for p in peers}
    finally:
        cleanup_outputs()
    for p in peers:
        merge_peer(rows, p.name, best_pass(before[p.name], after[p.name]))
    return rows


# full loads whose peak memory is measured, and each column's library name for rss_worker.py
MEMORY_ROWS = ("wav", *COMPRESSED)
MEMORY_LIBS = {
    "mlx_audio_io": "mlx_audio_io",
    "soundfile": "soundfile",
    "librosa": "librosa",
    ANCHOR: "mlx_audio_io",
    TORCHAUDIO: "torchaudio",
}


def peak_memory(files: dict[str, Path], peers: list[ExternalPeer]) -> dict:
    """{format: {column: {"peak": bytes, "output": bytes} | {"error": ...}}}: one full load per
    fresh process (rss_worker.py), the peak resident set above the one before the load."""
    pythons = {col: sys.executable for col in ("mlx_audio_io", *IN_PROCESS_PEERS)}
    for peer in peers:
        pythons[peer.name] = str(peer.state.python) if peer.state.python else None
    out: dict = {}
    for ext in MEMORY_ROWS:
        row = out.setdefault(ext, {})
        for col, lib_name in MEMORY_LIBS.items():
            if ext == "ogg" and col == ANCHOR:
                continue  # 1.3.24 cannot read Ogg (its load row is empty too)
            python = pythons.get(col)
            if python is None:
                row[col] = {"error": "venv unavailable"}
                continue
            cmd = [python, "-I", str(RSS_WORKER), lib_name, str(files[ext])]
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, env=worker_env(), timeout=600
                )
                row[col] = json.loads(proc.stdout.strip().splitlines()[-1])
            except Exception as e:  # noqa: BLE001 - a broken probe costs only its cell
                row[col] = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
            cell_ = row[col]
            shown = cell_.get("error") or f"{cell_['peak'] / 2**20:.0f} MiB"
            print(f"  peak memory {ext:<5} {col:<22} {shown}", file=sys.stderr)
    return out


def memory_section(memory: dict) -> list[str]:
    """The peak-memory table: MiB above the resident set before the load, and that as a
    multiple of the output's size."""
    cols = list(MEMORY_LIBS)
    lines = [
        "## Peak memory of a full load (MiB above the process's resident set before it)",
        "",
        "One load per fresh process (`tools/bench/rss_worker.py`): the peak resident set "
        "(`VmHWM`, reset through `/proc/self/clear_refs` after the import) less the resident "
        "set before the load, and in brackets that peak as a multiple of the output's size "
        "(float32; 1.00x is the output alone).",
        "",
        "| load | output MiB | " + " | ".join(cols) + " |",
        "|---|---:|" + "---:|" * len(cols),
    ]
    for ext, row in memory.items():
        sizes = [c["output"] for c in row.values() if "output" in c]
        cells = []
        for col in cols:
            c = row.get(col)
            if c is None:
                cells.append("—")
            elif "error" in c:
                cells.append("n/a")
            else:
                cells.append(f"{c['peak'] / 2**20:.0f} ({c['peak'] / c['output']:.2f}x)")
        size = f"{max(sizes) / 2**20:.0f}" if sizes else "—"
        lines.append(f"| {ext.upper()} load | {size} | " + " | ".join(cells) + " |")
    ours = [r["mlx_audio_io"] for r in memory.values() if "peak" in r.get("mlx_audio_io", {})]
    if ours:
        worst = max(c["peak"] / c["output"] for c in ours)
        lines += ["", f"mlx_audio_io's loads peak at most {worst:.2f}x their output."]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Prepares the material and the external peers' venvs, measures, and writes the report."""
    args = parse_args(argv)
    runs = RUNS_QUICK if args.quick else RUNS_FULL
    files = prepare_material()
    peers = external_peers(files, args.no_torch)
    try:
        rows = measure_everything(files, runs, peers)
        accuracy = resample_accuracy(files)
        memory = peak_memory(files, peers)
    finally:
        remove_worker_outputs()
    report = render(rows, runs, accuracy, peers, memory)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
