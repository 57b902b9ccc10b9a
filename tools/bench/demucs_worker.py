"""Times the official demucs 4.1.0 (PyTorch, CPU) for ``tools/bench/bench_sts.py``.

torch is kept out of the workspace's environment, so ``bench_sts.py`` runs this script with the
Python of a separate venv (``.bench/demucs-venv``: torch and demucs from PyPI) and talks to it in
JSON lines, so that its calls alternate with the in-process MLX ones call by call.

The first line on stdin is the spec::

    {"th": PATH, "seed": S, "mix": NPY, "threads": N}

The worker builds demucs' ``HTDemucs`` with the official htdemucs configuration and seeded
random weights rounded to float16 (``build_reference`` of ``tools/parity/htdemucs.py``), saves
it as a demucs ``.th`` package at ``th`` (which ``bench_sts.py`` converts for MLX, so both sides
run the same weights), loads the ``[channels, frames]`` float32 mix and answers
``{"ready": true, "torch": ..., "demucs": ..., "threads": ...}``. Then each line is a command,
answered by one JSON line on stdout:

- ``{"op": "apply", "shifts": K, "seed": S, "npy": PATH (optional)}``: ``random.seed(S)``, then
  ``demucs.apply.apply_model(model, mix[None], shifts=K, split=True, overlap=0.25)`` under
  ``torch.no_grad()`` -> ``{"ms": elapsed}``; with ``npy`` the output is saved there (outside
  the timing)
- ``{"op": "forward", "frames": N, "npy": PATH (optional)}``: one ``model(mix[None, :, :N])``
  -> ``{"ms": elapsed}``
- ``{"op": "quit"}``: exits.

A failing command answers ``{"error": "..."}``.
"""

from __future__ import annotations

import random
import sys
import time
from fractions import Fraction
from pathlib import Path

PARITY = Path(__file__).resolve().parents[1] / "parity" / "htdemucs.py"
PARITY_NAMES = ("OFFICIAL", "build_reference", "save_th")


def timed(fn) -> tuple[object, float]:
    """(output, elapsed ms) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def handle(cmd: dict, model, mix, apply_model, torch, np) -> dict:
    """Runs one command on ``model`` and the ``[1, channels, frames]`` tensor ``mix``."""
    op = cmd.get("op")
    with torch.no_grad():
        if op == "apply":
            random.seed(cmd["seed"])  # demucs draws its shifts from Python's random
            shifts = cmd["shifts"]
            out, ms = timed(
                lambda: apply_model(model, mix, shifts=shifts, split=True, overlap=0.25)
            )
        elif op == "forward":
            seg = mix[..., : cmd["frames"]].contiguous()
            out, ms = timed(lambda: model(seg))
        else:
            raise ValueError(f"unknown op {op!r}")
    if cmd.get("npy"):
        np.save(cmd["npy"], out.numpy())
    return {"ms": ms}


def _setup(spec: dict) -> tuple:
    import importlib.metadata

    import numpy as np
    import torch
    from demucs.apply import apply_model
    from demucs.htdemucs import HTDemucs
    from worker_loop import definitions_from

    torch.set_num_threads(int(spec["threads"]))
    ns = {"torch": torch, "RefHTDemucs": HTDemucs, "Fraction": Fraction, "Path": Path}
    ref = definitions_from(PARITY, PARITY_NAMES, ns)
    model = ref["build_reference"](ref["OFFICIAL"], seed=int(spec["seed"]))
    ref["save_th"](model, ref["OFFICIAL"], Path(spec["th"]))
    mix = torch.from_numpy(np.load(spec["mix"]))[None]
    versions = {d: importlib.metadata.version(d) for d in ("torch", "demucs", "numpy")}
    state = (model, mix, apply_model, torch, np)
    return state, {**versions, "threads": torch.get_num_threads()}


def main() -> int:
    """Reads the spec, builds and saves the model, then answers commands until ``quit``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # -I leaves it out
    from worker_loop import serve_lines

    return serve_lines(_setup, lambda cmd, state: handle(cmd, *state))


if __name__ == "__main__":
    sys.exit(main())
