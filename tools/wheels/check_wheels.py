"""Installs each wheel of a folder alone into a fresh venv and proves it self-contained.

    python tools/wheels/check_wheels.py dist/wheels [PYTHON...]

For every ``*.whl`` and every given interpreter its tags accept (``cp311-cp311``: 3.11 only;
``cp310-abi3``: 3.10 and later; ``py3-none-any``: all; default: this interpreter): a new venv
(``uv venv``), the wheel installed with its siblings from the same folder and everything else
from the index, then a smoke test in a subprocess. mlx-audio-io must also load its ``_prim``
module (the nn kernels as MLX graph nodes) under the MLX that the index gives. The native
packages (mlx-audio-io, fast-mp3-augment) must write and read back every format they list, and
afterwards ``/proc/self/maps`` must show none of the system's audio libraries (libav*,
libmpg123, libmp3lame, libsoxr, libFLAC, libvorbis, libogg, libopus): their code is the copy
linked into the extension, so the wheel works on a machine without those packages (that
check is Linux only). Exits 1 on the first failure.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SYSTEM_AUDIO_LIBS = (
    *("libavformat", "libavcodec", "libavutil", "libswresample", "libmpg123", "libmp3lame"),
    *("libsoxr", "libFLAC", "libvorbis", "libogg", "libopus"),
)

SMOKE = {
    "mlx_audio_io": """
import numpy as np, mlx_audio_io as aio
x = (0.3 * np.sin(np.arange(48000) / 48000 * 2 * np.pi * 440)).astype(np.float32)
x = np.stack([x, -x], axis=1)
for ext in ("wav", "flac", "mp3", "m4a", "ogg", "opus", "aiff", "caf"):
    aio.save(f"s.{ext}", x, 48000)
    y, sr = aio.load(f"s.{ext}")
    assert y.shape[1] == 2 and abs(y.shape[0] - 48000) < 2048, (ext, y.shape)
    aio.load(f"s.{ext}", sr=16000, mono=True, offset=0.25, duration=0.5)
""",
    "fast_mp3_augment": """
import numpy as np, fast_mp3_augment as fma
x = (0.3 * np.sin(np.arange(44100) / 44100 * 2 * np.pi * 440)).astype(np.float32)
y = fma.compress_roundtrip(x, 44100, 128)
assert y.shape == x.shape
""",
}
# _prim loads only under the MLX version it was built with (MLX has no stable C++ ABI); when
# the index already has a newer MLX, the cffi fallback is what runs, and that is said
PRIM_CHECK = """
import mlx.core as mx, pathlib
from mlx_audio_io import _lib
built = (pathlib.Path(_lib.__file__).parent / "_prim.mlx-version").read_text().strip()
if mx.__version__ == built:
    assert _lib.prim() is not None, f"_prim does not load: {_lib.prim_error()}"
    print("_prim loads")
else:
    print(f"_prim built for MLX {built}, index has {mx.__version__}: cffi fallback")
"""
MAPS_CHECK = """
maps = open("/proc/self/maps").read()
found = sorted({l.split("/")[-1] for l in maps.splitlines() if "/" in l
                and any(n in l.split("/")[-1] for n in LIBS)})
assert not found, f"system audio libraries loaded: {found}"
"""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def accepts(wheel: Path, version: tuple[int, int]) -> bool:
    """Whether the wheel's Python and ABI tags install on that Python version."""
    _, _, py_tag, abi_tag, _ = wheel.name[: -len(".whl")].split("-")
    if py_tag.startswith("py3"):
        return True
    tag_version = (3, int(py_tag[3:]))
    return version >= tag_version if abi_tag == "abi3" else version == tag_version


def python_version(exe: str) -> tuple[int, int]:
    """The (major, minor) version of an interpreter."""
    out = _run([exe, "-c", "import sys; print(*sys.version_info[:2])"]).stdout.split()
    return int(out[0]), int(out[1])


def check(wheel: Path, folder: Path, uv: str, python: str, version: tuple[int, int]) -> str:
    """Installs `wheel` alone in a fresh venv of `python` (Python `version`) and runs its smoke
    test; returns a line saying what was checked."""
    module = wheel.name.split("-")[0]
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        _run([uv, "venv", "-q", "--python", python, str(venv)])
        py = str(venv / "bin" / "python")
        try:
            _run([uv, "pip", "install", "-q", "--python", py, "--find-links", str(folder),
                  str(wheel)])  # fmt: skip
        except subprocess.CalledProcessError as e:
            msg = f"{wheel.name}: does not install on {python}\n{e.stderr[-3000:]}"
            raise SystemExit(msg) from None
        code = f"import {module}\nprint({module}.__version__)\n" + SMOKE.get(module, "")
        if module == "mlx_audio_io":
            code += PRIM_CHECK
        if module in SMOKE and sys.platform == "linux":  # /proc/self/maps: Linux only
            code += f"LIBS = {SYSTEM_AUDIO_LIBS!r}\n" + MAPS_CHECK
        r = subprocess.run([py, "-c", code], cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{wheel.name}: smoke test failed on {python}\n{r.stderr[-3000:]}")
        said = ", ".join(r.stdout.split("\n")).strip(", ")
        line = f"{wheel.name} on Python {version[0]}.{version[1]}: installs alone, {module} {said}"
        if module in SMOKE:
            line += ", every format round-trips"
            if sys.platform == "linux":
                line += " with no system audio library loaded"
        return line


def main(argv: list[str]) -> int:
    """Checks every wheel of the folder (see the module docstring)."""
    folder = Path(argv[0] if argv else "dist/wheels").resolve()
    pythons = argv[1:] or [sys.executable]
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is needed (make test installs it)")
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {folder}")
    versions = {exe: python_version(exe) for exe in pythons}
    for wheel in wheels:
        usable = [exe for exe in pythons if accepts(wheel, versions[exe])]
        if not usable:
            raise SystemExit(f"{wheel.name}: none of the given Pythons can install it")
        for exe in usable:
            print(check(wheel, folder, uv, exe, versions[exe]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
