"""What the parity scripts share: the error measure, the fixture files they write for the
default tests, and their command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np


def rel_error(ours, ref) -> float:
    """Max abs error over the reference's max abs value (complex arrays compared as such);
    infinite when the shapes differ."""
    ours, ref = np.asarray(ours, np.complex128), np.asarray(ref, np.complex128)
    if ours.shape != ref.shape:
        return float("inf")
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


def write_stage_fixtures(folder: Path, stem: str, results: dict, arrays: dict) -> None:
    """``{stem}.npz`` with ``arrays`` and each stage's reference as ``stage{i}`` (float32 or
    complex64), ``{stem}.json`` naming the stages; prints ours' error per stage."""
    arrays, names = dict(arrays), {}
    for i, (name, (ref, ours)) in enumerate(results.items()):
        arrays[f"stage{i}"] = np.asarray(ref, np.complex64 if np.iscomplexobj(ref) else np.float32)
        names[f"stage{i}"] = name
        print(f"{name}: {rel_error(ours, ref):.1e}")
    np.savez_compressed(folder / f"{stem}.npz", **arrays)
    (folder / f"{stem}.json").write_text(json.dumps(names, indent=1) + "\n")


def main(doc: str, run_official: Callable[[], int], write_fixtures: Callable[[Path], None]):
    """``script.py`` runs the official configuration (exit 1 on a failed stage);
    ``script.py --fixtures DIR`` writes the reduced-config test fixtures."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, help="write reduced-config test fixtures here")
    opts = parser.parse_args()
    if opts.fixtures:
        write_fixtures(opts.fixtures)
        sys.exit(0)
    sys.exit(run_official())
