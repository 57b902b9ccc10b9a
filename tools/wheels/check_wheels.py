"""Installs each wheel of a folder alone into a fresh venv and proves it self-contained.

    python tools/wheels/check_wheels.py dist/wheels

For every ``*.whl``: a new venv (``uv venv``), the wheel installed with its siblings from the
same folder and everything else from the index, then a smoke test in a subprocess. The native
packages (mlx-audio-io, fast-mp3-augment) must write and read back every format they list, and
afterwards ``/proc/self/maps`` must show none of the system's audio libraries (libav*,
libmpg123, libmp3lame, libsoxr, libFLAC, libvorbis, libogg, libopus): their code is the copy
linked into the extension, so the wheel works on a machine without those packages. Exits 1 on
the first failure. Linux only.
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
MAPS_CHECK = """
maps = open("/proc/self/maps").read()
found = sorted({l.split("/")[-1] for l in maps.splitlines() if "/" in l
                and any(n in l.split("/")[-1] for n in LIBS)})
assert not found, f"system audio libraries loaded: {found}"
"""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def check(wheel: Path, folder: Path, uv: str) -> str:
    """Installs `wheel` alone in a fresh venv and runs its smoke test; returns its import name."""
    module = wheel.name.split("-")[0]
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        _run([uv, "venv", "-q", "--python", sys.executable, str(venv)])
        py = str(venv / "bin" / "python")
        _run([uv, "pip", "install", "-q", "--python", py, "--find-links", str(folder),
              str(wheel)])  # fmt: skip
        code = f"import {module}\nprint({module}.__version__)\n" + SMOKE.get(module, "")
        if module in SMOKE:
            code += f"LIBS = {SYSTEM_AUDIO_LIBS!r}\n" + MAPS_CHECK
        r = subprocess.run([py, "-c", code], cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{wheel.name}: smoke test failed\n{r.stderr[-3000:]}")
        return f"{wheel.name}: installs alone, {module} {r.stdout.strip()}" + (
            ", every format round-trips with no system audio library loaded"
            if module in SMOKE
            else ""
        )


def main(argv: list[str]) -> int:
    """Checks every wheel of the folder (see the module docstring)."""
    folder = Path(argv[0] if argv else "dist/wheels").resolve()
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is needed (make test installs it)")
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {folder}")
    for wheel in wheels:
        print(check(wheel, folder, uv), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
