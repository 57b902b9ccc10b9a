"""``python -m mlx_audio_io.doctor``: checks an installation and says in plain words what is
wrong and how to fix it. Exits 0 when everything works, 1 otherwise."""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

from . import __version__, _blas, _lib
from ._build import show_build_info

_APT = "apt-get install ffmpeg libmpg123-0 libsoxr0 libflac12 libvorbisfile3 libopenblas0-pthread"
_FORMATS = ["wav", "flac", "mp3", "m4a", "ogg", "opus", "aiff", "caf"]


class Report:
    def __init__(self):
        self.problems = 0

    def ok(self, what: str, detail: str = "") -> None:
        print(f"  ok       {what}{': ' + detail if detail else ''}")

    def problem(self, what: str, detail: str, fix: str) -> None:
        self.problems += 1
        print(f"  PROBLEM  {what}: {detail}\n           fix: {fix}")


def check_native(r: Report) -> bool:
    if _lib.load_error is None:
        r.ok("native extension", str(_lib._native.__file__))
        return True
    msg = str(_lib.load_error)
    missing = re.search(r"(lib[\w.+-]+\.so[.\d]*): cannot open shared object", msg)
    if missing:
        fix = f"install the system library {missing.group(1)} (Debian/Ubuntu: {_APT})"
    else:
        # pinned to this version: PyPI also holds the older 1.x releases under this name
        fix = (
            "reinstall: pip install --force-reinstall --no-binary mlx-audio-io "
            f"'mlx-audio-io=={__version__}'"
        )
    r.problem("native extension", msg, fix)
    return False


def check_mlx(r: Report) -> None:
    info = show_build_info()
    if info["mlx"].startswith("not importable"):
        fix = "pip install 'mlx[cpu]' (Linux) or pip install mlx (macOS)"
        if any(b.startswith("mlx-cuda") for b in info["mlx_backends"]):
            fix = "MLX's CUDA build needs an NVIDIA driver and GPU; " + fix + " for the CPU"
        r.problem("mlx", info["mlx"], fix)
        return
    r.ok("mlx", info["mlx"])
    check_backend(r, info)
    if sys.platform == "darwin":
        r.ok("BLAS", "Accelerate (macOS)")
    elif _blas.loaded is None:
        r.problem(
            "BLAS preload",
            _blas.reason,
            "apt-get install libopenblas0-pthread, and import mlx_audio_io before mlx "
            "(MLX's matmul and convolutions are 10-20x slower without it)",
        )
    else:
        import mlx.core as mx

        a = mx.random.normal((1024, 1024))
        mx.eval(a @ a)
        t0 = time.perf_counter()
        mx.eval(a @ a)
        gflops = 2 * 1024**3 / (time.perf_counter() - t0) / 1e9
        r.ok("BLAS preload", f"{_blas.loaded._name}, 1024x1024 matmul at {gflops:.0f} GFLOP/s")
    check_prim(r)


def check_backend(r: Report, info: dict) -> None:
    """Where MLX computes, and on Linux that exactly one backend distribution is installed."""
    backends = info["mlx_backends"]
    if sys.platform == "linux" and len(backends) > 1:
        r.problem(
            "MLX backend",
            f"{', '.join(backends)} are all installed; they write the same mlx/lib/libmlx.so, "
            "so it is whichever was installed last, and uninstalling one deletes it",
            "keep one: pip uninstall -y mlx-cpu mlx-cuda-12 mlx-cuda-13, then "
            "pip install --force-reinstall --no-deps mlx-cpu==<mlx version> (or mlx-cuda-12 / "
            "mlx-cuda-13 for an NVIDIA GPU; see docs/install.md)",
        )
        return
    r.ok("MLX backend", f"{info['mlx_device']}" + (f" ({backends[0]})" if backends else ""))


def check_prim(r: Report) -> None:
    from . import _lib

    if _lib.prim() is not None:
        r.ok("graph kernels", "mlx_audio_io._prim (nn kernels run as MLX graph nodes)")
    elif sys.platform != "darwin":  # macOS models run on Metal, where the kernels are not used
        r.problem(
            "graph kernels",
            f"mlx_audio_io._prim {_lib.prim_error()}",
            "reinstall mlx-audio-io from source with a C++ compiler (it builds against the "
            "installed mlx); without it, decoding models is slower on the CPU",
        )


def check_formats(r: Report) -> None:
    import numpy as np

    from ._read import info, load
    from ._write import save

    x = (0.5 * np.sin(np.linspace(0, 2000, 48000))).astype(np.float32)[:, None]
    with tempfile.TemporaryDirectory() as d:
        for ext in _FORMATS:
            path = Path(d) / f"check.{ext}"
            try:
                save(path, x, 48000)
                frames = info(path).frames
                y, _ = load(path)
                if y.shape[0] != frames:
                    raise RuntimeError(f"info says {frames} frames, load gave {y.shape[0]}")
                r.ok(f"write and read .{ext}")
            except Exception as e:  # every failure is reported, then the next format runs
                r.problem(
                    f"write and read .{ext}",
                    f"{type(e).__name__}: {e}",
                    f"the libav build may lack this codec ({_APT})",
                )


def main() -> int:
    info = show_build_info()
    print(f"mlx-audio-io {info['version']} on {info['platform']}, Python {info['python']}")
    r = Report()
    if check_native(r):
        for name, version in info["libraries"].items():
            r.ok(name, version)
        check_mlx(r)
        check_formats(r)
    print("all good" if not r.problems else f"{r.problems} problem(s) found")
    return 1 if r.problems else 0


if __name__ == "__main__":
    sys.exit(main())
