"""Side-by-side I/O benchmark of mlx_audio_io against soundfile, librosa and a NumPy floor.

Generates a 194.8 s stereo 44.1 kHz test signal (and MP3/FLAC/M4A copies made with the
``ffmpeg`` CLI) into ``.bench/`` under the repository root, times each task for every library
that can do it (2 warm-ups, then N runs; median and minimum reported, page cache warm) and
writes a markdown report to ``docs/benchmarks.md``.

Usage::

    uv run --group bench python tools/bench/bench_io.py [--quick] [--out PATH]

A peer that is missing or fails shows as "n/a" with the reason in a footnote; the run goes on.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import os
import platform
import statistics
import struct
import subprocess
import sys
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
PEERS = ("soundfile", "librosa")
COLUMNS = ("mlx_audio_io", "soundfile", "librosa", "numpy floor")


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
    files = {k: CACHE / f"music.{k}" for k in ("wav", "mp3", "flac", "m4a")}
    wav_size = 44 + FRAMES * CHANNELS * 2
    fresh = not (files["wav"].exists() and files["wav"].stat().st_size == wav_size)
    if fresh:
        print(f"generating {files['wav']} ...", file=sys.stderr)
        write_pcm16_wav(files["wav"], synth_signal())
    encodings = {
        "mp3": ["-c:a", "libmp3lame", "-b:a", "192k"],
        "flac": ["-c:a", "flac"],
        "m4a": ["-c:a", "aac", "-b:a", "192k"],
    }
    for ext, codec_args in encodings.items():
        if fresh or not files[ext].exists() or files[ext].stat().st_size == 0:
            print(f"encoding {files[ext]} ...", file=sys.stderr)
            ffmpeg_encode(files["wav"], files[ext], codec_args)
    return files


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


def frames_of(out) -> int | None:
    """Frame count of a returned array (channels-first or channels-last), if it is one."""
    shape = getattr(out, "shape", None)
    if not shape:
        return None
    return max(shape)


def run_warmups(fn: Callable[[], object], warmups: int) -> tuple[object, list[str]]:
    """Runs the warm-ups, returning the last output and any distinct warnings raised."""
    out, seen = None, []
    for _ in range(warmups):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn()
        for w in caught:
            if issubclass(w.category, DeprecationWarning):
                continue  # import-time noise (aifc, audioop, ...), not about the task
            msg = f"{w.category.__name__}: {' '.join(str(w.message).split())[:160]}"
            if msg not in seen:
                seen.append(msg)
    return out, seen


def measure(fn: Callable[[], object], runs: int, warmups: int = WARMUPS) -> Result:
    """Times ``fn``: warm-ups, then ``runs`` timed calls; failures become a Result.error."""
    try:
        out, notes = run_warmups(fn, warmups)
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
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
    variants = (
        ("NumPy input", audio_np, True),
        ("mx.array input", audio_mx, True),
        ("NumPy input, clip=False", audio_np, False),
    )
    for label, src, clip in variants:
        fns = {
            "mlx_audio_io": lambda src=src, clip=clip: aio.save(
                dst["mlx"], src, SR, encoding="float32", clip=clip
            ),
            **peer_fns(mods, {"soundfile": sf_save(src)}),
            "numpy floor": lambda src=src: floor_save(np.asarray(src)),
        }
        rows.append(Task(f"WAV save float32 ({label})", fns))
    return rows


def compressed_load_tasks(files: dict[str, Path], mods: dict) -> list[Task]:
    """Full decode of the MP3, FLAC and M4A encodings."""
    rows = []
    for ext in ("mp3", "flac", "m4a"):
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


def resample_task(files: dict[str, Path], mods: dict) -> Task:
    """Load, downmix and resample to 16 kHz."""
    wav = str(files["wav"])

    def sf_soxr(sf):
        soxr, err = mods["soxr"]
        if soxr is None:
            return missing(err)
        return lambda: soxr.resample(
            sf.read(wav, dtype="float32")[0].mean(axis=1), SR, TARGET_SR, quality="HQ"
        )

    fns = {
        "mlx_audio_io": lambda: mlx_eval(aio.load(wav, sr=TARGET_SR, mono=True)),
        **peer_fns(
            mods,
            {
                "soundfile": sf_soxr,
                "librosa": lambda lr: lambda: lr.load(wav, sr=TARGET_SR, mono=True)[0],
            },
        ),
    }
    return Task("load + resample to 16 kHz mono", fns)


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
    mods = {name: optional_import(name) for name in (*PEERS, "soxr")}
    return [
        *wav_load_tasks(files, mods),
        *wav_save_tasks(files, mods),
        *compressed_load_tasks(files, mods),
        resample_task(files, mods),
        *info_tasks(files, mods),
        *anatomy_tasks(files),
    ]


# --------------------------------------------------------------------------------------------
# Accuracy of the resampling task
# --------------------------------------------------------------------------------------------


def snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    """Signal-to-noise ratio of ``x`` against ``ref`` over their common length."""
    n = min(len(ref), len(x))
    ref, x = ref[:n].astype(np.float64), np.asarray(x[:n], dtype=np.float64).reshape(-1)
    noise = np.sum((ref - x) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref**2) / noise))


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


def read_proc(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a /proc file, if present."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def version(dist: str) -> str:
    """Installed version of a distribution (or of its imported module), or "not installed"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(dist.replace("-", "_"))
        return getattr(module, "__version__", "not installed")


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


def machine_section(runs: int) -> list[str]:
    """The "Machine" and "Method" lines above the table."""
    mem_kb = read_proc("/proc/meminfo", "MemTotal")
    ram = f"{int(mem_kb.split()[0]) / 2**20:.1f} GiB" if mem_kb else "unknown"
    return [
        "## Machine",
        "",
        f"- CPU: {read_proc('/proc/cpuinfo', 'model name') or platform.processor() or 'unknown'}",
        f"- Cores: {os.cpu_count()}; RAM: {ram}; OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; mlx {version('mlx')}; "
        f"mlx-audio-io {version('mlx-audio-io')}; numpy {np.__version__}",
        f"- soundfile {version('soundfile')} (libsndfile {libsndfile_version()}); "
        f"librosa {version('librosa')}; soxr {version('soxr')}",
        f"- mlx_audio_io native: {native_versions()}; BLAS preload: {blas_state()}",
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        "## Method",
        "",
        f"- Material: {SECONDS} s stereo {SR} Hz synthetic music-like signal (seeded); PCM16 WAV,",
        "  MP3 (libmp3lame CBR 192k), FLAC (default level), M4A (native aac 192k), via ffmpeg.",
        f"- Each cell: {WARMUPS} warm-ups, then {runs} timed runs in one process; p50 (min) in ms.",
        "  Page cache warm. MLX outputs forced with `mx.eval`.",
        "- ratio = best peer p50 (soundfile, librosa) / mlx_audio_io p50; >1 means we are faster.",
        "  The NumPy floor is a reference lower bound, not a peer, and is not in the ratio.",
        "- Saves use mlx_audio_io's default `clip=True` (clamps to [-1, 1]) unless the row says",
        "  otherwise; soundfile and the floor write the floats as they are.",
        "- info: librosa column is `librosa.get_duration(path=...)`; the floor parses the header.",
        "- Command: `make bench` (`uv run --group bench python tools/bench/bench_io.py`).",
        "",
    ]


def fmt_ms(v: float) -> str:
    """A millisecond value with sensible precision."""
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


class Footnotes:
    """Numbered markdown footnotes, deduplicated by text."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[^{self.items.index(text) + 1}]"

    def lines(self) -> list[str]:
        return [f"[^{i}]: {t}" for i, t in enumerate(self.items, 1)]


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
    head = ["task", "mlx_audio_io p50 (min)", "soundfile", "librosa", "numpy floor", "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * 5) + "|"]
    for name, results in rows:
        ours = results.get("mlx_audio_io")
        cells = [cell(c, results.get(c), ours, notes) for c in COLUMNS]
        lines.append("| " + " | ".join([name, *cells, ratio(results)]) + " |")
    return lines


def render(rows, runs: int, accuracy: str) -> str:
    """The whole markdown report."""
    notes = Footnotes()
    body = [
        "# mlx_audio_io I/O benchmarks",
        "",
        *machine_section(runs),
        "## Results (ms, lower is better)",
        "",
        *table(rows, notes),
        "",
        f"**Accuracy** (load + resample to 16 kHz mono, SNR vs soxr VHQ of the float64 "
        f"downmix, common length): {accuracy}",
        "",
        *notes.lines(),
        "",
        *READING,
    ]
    return "\n".join(body).rstrip() + "\n"


READING = [
    "## Reading the table",
    "",
    "- Every full load returns a fresh `mx.array`. MLX's CPU allocator hands large buffers",
    "  back to the OS and does not use transparent huge pages, so the output's first touch",
    "  costs a page fault per 4 KiB (the `anatomy: mx.zeros` row). NumPy-based peers get huge",
    "  pages and pay far less. The anatomy rows split our load time into that allocation and",
    "  the decode itself: where we trail a peer on a full load, compare the decode-only row",
    "  with the peer's time.",
    "- MP3: libmpg123 decodes for us and for soundfile (libsndfile uses it too), so decode",
    "  speed is equal; the difference is the allocation. FLAC: libav's decoder against",
    "  libFLAC's, plus the allocation. A libFLAC fast path is planned (issue 3).",
    "- M4A: soundfile cannot read it; librosa falls back to an ffmpeg subprocess and keeps",
    "  the AAC end padding (680 more frames than the file's edit list says).",
    "- The 2-core machine is shared: p50 drifts by up to about 20% between runs; the min",
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{RUNS_QUICK} runs per cell")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = RUNS_QUICK if args.quick else RUNS_FULL
    files = prepare_material()
    try:
        rows = run_all(build_tasks(files), runs)
    finally:
        cleanup_outputs()
    report = render(rows, runs, resample_accuracy(files))
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
