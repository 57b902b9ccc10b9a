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

import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np

_SOURCES: dict[tuple[str, str], object] = {}


def frames_of(out) -> int | None:
    """Frame count of a returned array (channels-first or channels-last), if it is one."""
    shape = getattr(out, "shape", None)
    return max(shape) if shape else None


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


def warm_up(fn: Callable[[], object], warmups: int) -> tuple[object, list[str]]:
    """Runs the warm-ups, returning the last output and the distinct warnings raised."""
    out, seen = None, []
    for _ in range(warmups):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn()
        for w in caught:
            if issubclass(w.category, DeprecationWarning):
                continue
            msg = f"{w.category.__name__}: {' '.join(str(w.message).split())[:160]}"
            if msg not in seen:
                seen.append(msg)
    return out, seen


def time_task(task: dict, runs: int, warmups: int) -> dict:
    """Times one task; any failure becomes ``{"error": ...}``."""
    try:
        fn = make_fn(task)
        out, notes = warm_up(fn, warmups)
        if task.get("npy"):
            np.save(task["npy"], np.array(out))
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(runs):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
    except Exception as e:  # noqa: BLE001 - reported to the caller, not raised
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    return {
        "p50": statistics.median(times),
        "min": min(times),
        "frames": frames_of(out),
        "notes": notes,
    }


def main() -> int:
    """Reads the spec, times every task and prints the JSON result as the last line."""
    spec = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    runs, warmups = int(spec["runs"]), int(spec.get("warmups", 2))
    results = {}
    for task in spec["tasks"]:
        res = results[task["name"]] = time_task(task, runs, warmups)
        shown = res.get("error") or f"p50 {res['p50']:.2f} ms"
        print(f"  {task['name']:<36} {'(anchor)':<13} {shown}", file=sys.stderr)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
