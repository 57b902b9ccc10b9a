"""Times the public PyPI release of mlx-audio-io for ``tools/bench/bench_io.py``.

It shares its import name with the in-tree package, so ``bench_io.py`` runs this script with
the Python of a separate venv (``.bench/anchor-venv``). The JSON spec comes on stdin (or as the
first argument)::

    {"runs": N, "warmups": W, "tasks": [TASK, ...]}

    TASK = {"name": ..., "op": "load", "path": ..., "kwargs": {...}, "npy": PATH (optional)}
         | {"name": ..., "op": "save", "path": ..., "source": WAV, "sr": SR,
            "input": "numpy" | "mx", "kwargs": {...}}
         | {"name": ..., "op": "info", "path": ...}

Each task gets the same timing loop as ``bench_io.measure`` (warm-ups, then timed runs; MLX
outputs forced with ``mx.eval``). A load task with ``npy`` saves its last warm-up output there.
The last line of stdout is the JSON result::

    {name: {"p50": ms, "min": ms, "frames": n | null, "notes": [...]} | {"error": "..."}}
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves it out
from worker_loop import serve  # noqa: E402

_SOURCES: dict[tuple[str, str], object] = {}


def force(out):
    """Evaluates an MLX result ``(array, sr)`` or array and returns the array."""
    arr = out[0] if isinstance(out, tuple) else out
    if isinstance(arr, mx.array):
        mx.eval(arr)
    return arr


def source_array(path: str, kind: str):
    """The float32 audio of ``path``, loaded once, as a NumPy array or an evaluated mx.array."""
    key = (path, kind)
    if key not in _SOURCES:
        audio = np.array(aio.load(path)[0], dtype=np.float32)
        if kind == "mx":
            audio = mx.array(audio)
            mx.eval(audio)
        _SOURCES[key] = audio
    return _SOURCES[key]


def make_fn(task: dict) -> Callable[[], object]:
    """The callable that performs one task with the public package."""
    op, path, kwargs = task["op"], task["path"], task.get("kwargs", {})
    if op == "load":
        return lambda: force(aio.load(path, **kwargs))
    if op == "save":
        audio = source_array(task["source"], task.get("input", "numpy"))
        return lambda: aio.save(path, audio, task["sr"], **kwargs)
    if op == "info":
        return lambda: aio.info(path)
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    """Times the tasks of the spec on stdin (see the module docstring)."""
    return serve("anchor", make_fn, lambda path, out: np.save(path, np.array(out)))


if __name__ == "__main__":
    sys.exit(main())
