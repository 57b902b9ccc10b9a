"""Prints the interpreters of the requested Python versions that this machine has, one per line.

    python tools/wheels/find_pythons.py 3.10 3.11 3.12 3.13

Looks in this order: ``uv python find``, ``pythonX.Y`` on PATH, pyenv's versions folder. A
version with no working interpreter is named on stderr; the exit status is 1 when none of the
requested versions was found.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys


def _version_of(exe: str) -> str | None:
    try:
        r = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def find(version: str) -> str | None:
    """The path of a working interpreter for `version` ("3.12"), or None."""
    candidates = []
    uv = shutil.which("uv")
    if uv:
        r = subprocess.run([uv, "python", "find", version], capture_output=True, text=True)
        if r.returncode == 0:
            candidates.append(r.stdout.strip())
    if exe := shutil.which(f"python{version}"):
        candidates.append(exe)
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))[::-1]
    for exe in candidates:
        if _version_of(exe) == version:
            return os.path.realpath(exe)
    return None


def main(argv: list[str]) -> int:
    """Prints one interpreter per version found (see the module docstring)."""
    found = 0
    for version in argv:
        exe = find(version)
        if exe is None:
            print(f"no Python {version} on this machine", file=sys.stderr)
            continue
        print(exe)
        found += 1
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
