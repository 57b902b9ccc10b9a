"""Reading the reference fixtures the parity scripts (tools/parity/) write, and the error
measure the model tests compare against them with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def rel_error(ours, ref) -> float:
    """Max abs error over the reference's max abs value (complex arrays compared as such);
    the shapes must agree."""
    ours, ref = np.asarray(ours, np.complex128), np.asarray(ref, np.complex128)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


def load_stages(stem: Path) -> tuple[dict, dict]:
    """``{stem}.npz`` and ``{stem}.json``: (stage name -> reference array, every array)."""
    data = dict(np.load(stem.with_suffix(".npz")))
    names = json.loads(stem.with_suffix(".json").read_text())
    return {name: data[key] for key, name in names.items()}, data
