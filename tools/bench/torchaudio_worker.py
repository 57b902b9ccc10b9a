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

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves it out
import soundfile as sf
import torch
import torchaudio
from worker_loop import serve  # noqa: E402

_SOURCES: dict[str, torch.Tensor] = {}


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


def written_note(task: dict) -> list[str]:
    """For a save task, what the file it wrote holds (as soundfile reads it back)."""
    if task["op"] != "save":
        return []
    info = sf.info(task["path"])
    return [f"torchaudio.save wrote {info.format} {info.subtype} ({info.subtype_info})"]


def main() -> int:
    """Times the tasks of the spec on stdin (see the module docstring)."""
    return serve(
        "torchaudio", make_fn, lambda path, out: np.save(path, np.asarray(out)), written_note
    )


if __name__ == "__main__":
    sys.exit(main())
