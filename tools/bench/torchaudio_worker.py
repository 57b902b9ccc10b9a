"""Times torchaudio for ``tools/bench/bench_io.py``.

torch is kept out of the default environment, so ``bench_io.py`` runs this script with the
Python of a separate venv (``.bench/torch-venv``); every tensor stays on the CPU. The JSON spec
comes on stdin (or as the first argument)::

    {"runs": N, "warmups": W, "tasks": [TASK, ...]}

    TASK = {"name": ..., "op": "load", "path": ..., "kwargs": {...}}
         | {"name": ..., "op": "save", "path": ..., "source": WAV, "sr": SR, "kwargs": {...}}
         | {"name": ..., "op": "resample", "path": ..., "orig_sr": SR, "sr": SR,
            "npy": PATH (optional)}

``load`` is ``torchaudio.load(path, **kwargs)``; ``save`` is ``torchaudio.save`` of the
channels-first float32 tensor of ``source`` (loaded once, outside the timing), and notes the
format soundfile reads back from what it wrote; ``resample`` is ``torchaudio.load``, a mean over
the channels and ``torchaudio.functional.resample`` (its default filter). Each task gets the
same timing loop as ``bench_io.measure`` (warm-ups, then timed runs). A task with ``npy`` saves
its last warm-up output there. The last line of stdout is the JSON result::

    {name: {"p50": ms, "min": ms, "frames": n | null, "notes": [...]} | {"error": "..."}}
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import soundfile as sf
import torch
import torchaudio

_SOURCES: dict[str, torch.Tensor] = {}


def frames_of(out) -> int | None:
    """Frame count of a returned tensor (channels-first or channels-last), if it is one."""
    shape = getattr(out, "shape", None)
    return max(shape) if shape else None


def source_tensor(path: str) -> torch.Tensor:
    """The channels-first float32 audio of ``path``, loaded once."""
    if path not in _SOURCES:
        _SOURCES[path] = torchaudio.load(path)[0].contiguous()
    return _SOURCES[path]


def load_resample(path: str, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Loads ``path``, averages its channels and resamples with torchaudio's default filter."""
    audio, _ = torchaudio.load(path)
    return torchaudio.functional.resample(audio.mean(dim=0), orig_sr, new_sr)


def make_fn(task: dict) -> Callable[[], object]:
    """The callable that performs one task with torchaudio."""
    op, path, kwargs = task["op"], task["path"], task.get("kwargs", {})
    if op == "load":
        return lambda: torchaudio.load(path, **kwargs)[0]
    if op == "save":
        audio = source_tensor(task["source"])
        return lambda: torchaudio.save(path, audio, task["sr"], **kwargs)
    if op == "resample":
        return lambda: load_resample(path, task["orig_sr"], task["sr"])
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


def written_note(task: dict) -> list[str]:
    """For a save task, what the file it wrote holds (as soundfile reads it back)."""
    if task["op"] != "save":
        return []
    info = sf.info(task["path"])
    return [f"torchaudio.save wrote {info.format} {info.subtype} ({info.subtype_info})"]


def time_task(task: dict, runs: int, warmups: int) -> dict:
    """Times one task; any failure becomes ``{"error": ...}``."""
    try:
        fn = make_fn(task)
        out, notes = warm_up(fn, warmups)
        notes += written_note(task)
        if task.get("npy"):
            np.save(task["npy"], np.asarray(out))
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
        print(f"  {task['name']:<36} {'(torchaudio)':<13} {shown}", file=sys.stderr)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
