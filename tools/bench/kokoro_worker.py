"""Times the official kokoro 0.9.4 (PyTorch, CPU) for ``tools/bench/bench_tts.py``.

torch is kept out of the workspace's environment, so ``bench_tts.py`` runs this script with the
Python of a separate venv (``.bench/kokoro-venv``: torch and kokoro from PyPI) and talks to it
in JSON lines (``worker_loop.serve_lines``), so that its calls alternate with the in-process
MLX ones call by call.

The first line on stdin is the spec::

    {"folder": DIR, "seed": S, "threads": N, "vocab": {...}, "mean_frames": F, "voice": PT}

The worker builds ``kokoro.KModel`` with the official configuration (``OFFICIAL`` of
``tools/parity/kokoro.py``, with the given vocab) and seeded random weights, the duration head
set to about ``mean_frames`` frames per token, and saves it in hexgrad's layout
(``config.json``, ``kokoro-test.pth``) in ``folder``, which ``bench_tts.py`` loads for MLX: both
sides run the same weights. It loads the voice pack ``voice`` and answers ``{"ready": true,
"torch": ..., "kokoro": ..., "threads": ...}``. Then:

- ``{"op": "synth", "phonemes": STR, "speed": X}``: ``KModel(phonemes, pack[len - 1], speed,
  return_output=True)`` under ``torch.no_grad()`` -> ``{"ms": elapsed, "samples": N,
  "pred_dur": [...]}``
- ``{"op": "quit"}``: exits.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

PARITY = Path(__file__).resolve().parents[1] / "parity" / "kokoro.py"
PARITY_NAMES = ("VOCAB", "OFFICIAL", "build_reference")


def _setup(spec: dict) -> tuple:
    import importlib.metadata

    import kokoro.istftnet as kist
    import torch
    from kokoro import KModel
    from worker_loop import definitions_from

    torch.set_num_threads(int(spec["threads"]))
    ns = {"torch": torch, "json": json, "KModel": KModel, "kist": kist, "Path": Path}
    ref = definitions_from(PARITY, PARITY_NAMES, ns)
    cfg = {**ref["OFFICIAL"], "vocab": spec["vocab"]}
    model, _ = ref["build_reference"](cfg, int(spec["seed"]), Path(spec["folder"]),
                                      mean_frames=float(spec["mean_frames"]))  # fmt: skip
    pack = torch.load(spec["voice"], weights_only=True).float()
    versions = {d: importlib.metadata.version(d) for d in ("torch", "kokoro", "numpy")}
    return (model, pack, torch), {**versions, "threads": torch.get_num_threads()}


def handle(cmd: dict, model, pack, torch) -> dict:
    """Runs one command."""
    if cmd.get("op") != "synth":
        raise ValueError(f"unknown op {cmd.get('op')!r}")
    phonemes = cmd["phonemes"]
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(phonemes, pack[len(phonemes) - 1], float(cmd.get("speed", 1.0)),
                    return_output=True)  # fmt: skip
        ms = (time.perf_counter() - t0) * 1e3
    return {"ms": ms, "samples": int(out.audio.numel()), "pred_dur": out.pred_dur.tolist()}


def main() -> int:
    """Reads the spec, builds and saves the model, then answers commands until ``quit``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves it out
    from worker_loop import serve_lines

    return serve_lines(_setup, lambda cmd, state: handle(cmd, *state))


if __name__ == "__main__":
    sys.exit(main())
