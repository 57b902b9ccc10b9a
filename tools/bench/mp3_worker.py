"""Times the public PyPI release ``fast-mp3-augment==0.2.0`` for ``tools/bench/bench_mp3.py``.

The release shares its import name with the in-tree package, so ``bench_mp3.py`` runs this
script with the Python of a separate venv (``.bench/fma-anchor-venv``), once per case, and
talks to it in JSON lines so that its calls alternate with the in-process ones call by call.

The first line on stdin describes the material; the worker builds it with :func:`make_signal`
(``bench_mp3.py`` imports the same function, so both sides hold identical arrays)::

    {"clips": [[seconds, sample_rate, channels, seed], ...], "bitrate": 64, "quality": 7}

and answers ``{"ready": true, "version": ..., "digest": ...}``. Then each line is a command,
answered by one JSON line on stdout:

- ``{"op": "run"}``: one ``compress_roundtrip`` of the first clip -> ``{"ms": elapsed}``
- ``{"op": "seq"}``: ``compress_roundtrip`` over every clip in turn -> ``{"ms": elapsed}``
- ``{"op": "save", "path": P}``: one call on the first clip, output saved as .npy -> ``{}``
- ``{"op": "quit"}``: exits.

A failing command answers ``{"error": "..."}``. Only this module's :func:`make_signal` and
:func:`digest` are used by the benchmark itself; they need nothing but NumPy.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

PEAK = 0.8
# (frequency Hz, amplitude, tremolo rate Hz): a chord plus a bright partial
TONES = ((196.0, 1.0, 0.7), (261.63, 0.8, 1.3), (329.63, 0.7, 2.1), (392.0, 0.5, 3.7))
BRIGHT = (3520.0, 0.15, 5.3)
NOISE = 0.02


def make_signal(seconds: float, sample_rate: int, channels: int, seed: int) -> np.ndarray:
    """A deterministic music-like float32 signal peaking at ``PEAK``.

    Harmonic tones with tremolo (amplitude modulation), a quiet bright partial and seeded
    white noise; each channel gets its own pan and phase. Mono is 1-D ``(frames,)``, more
    channels are ``(channels, frames)``, C-contiguous.
    """
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * sample_rate))
    t = np.arange(frames, dtype=np.float64) / sample_rate
    out = np.zeros((channels, frames), dtype=np.float64)
    for f0, amp, rate in (*TONES, BRIGHT):
        f = f0 * (1.0 + rng.uniform(-0.01, 0.01))
        phase = rng.uniform(0.0, 2.0 * np.pi)
        env = amp * (0.6 + 0.4 * np.sin(2.0 * np.pi * rate * t + phase))
        tone = np.sin(2.0 * np.pi * f * t) + 0.3 * np.sin(4.0 * np.pi * f * t + phase)
        for c in range(channels):
            pan = 0.5 + 0.4 * np.sin(phase + c * np.pi / 2.0)
            out[c] += (pan if c % 2 else 1.0 - pan) * env * tone
    out += NOISE * rng.standard_normal(out.shape)
    out *= PEAK / np.max(np.abs(out))
    audio = np.ascontiguousarray(out, dtype=np.float32)
    return audio[0].copy() if channels == 1 else audio


def digest(arrays: list[np.ndarray]) -> str:
    """A short SHA-256 of the arrays' bytes, to check both processes hold the same input."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def handle(cmd: dict, fn, clips: list[np.ndarray], spec: dict) -> dict:
    """Runs one command with ``fn = fast_mp3_augment.compress_roundtrip``."""
    sr, kbps, q = spec["sample_rate"], spec["bitrate"], spec["quality"]
    op = cmd.get("op")
    if op == "run":
        t0 = time.perf_counter()
        fn(clips[0], sr, kbps, preserve_delay=False, quality=q)
        return {"ms": (time.perf_counter() - t0) * 1e3}
    if op == "seq":
        t0 = time.perf_counter()
        for clip in clips:
            fn(clip, sr, kbps, preserve_delay=False, quality=q)
        return {"ms": (time.perf_counter() - t0) * 1e3}
    if op == "save":
        np.save(cmd["path"], fn(clips[0], sr, kbps, preserve_delay=False, quality=q))
        return {}
    raise ValueError(f"unknown op {op!r}")


def _setup(spec: dict) -> tuple:
    import importlib.metadata

    import fast_mp3_augment

    clips = [make_signal(s, sr, ch, seed) for s, sr, ch, seed in spec["clips"]]
    spec["sample_rate"] = spec["clips"][0][1]
    version = importlib.metadata.version("fast-mp3-augment")
    state = (fast_mp3_augment.compress_roundtrip, clips, spec)
    return state, {"version": version, "digest": digest(clips)}


def main() -> int:
    """Reads the spec, builds the clips, then answers commands until ``quit`` or EOF."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves it out
    from worker_loop import serve_lines

    return serve_lines(_setup, lambda cmd, state: handle(cmd, *state))


if __name__ == "__main__":
    sys.exit(main())
