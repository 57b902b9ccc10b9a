"""Build hook: compiles native/ (the C shim) into mlx_audio_io._native with cffi, then
prim/prim.cpp into mlx_audio_io._prim (the kernels as MLX graph nodes) with CMake, against
the mlx and nanobind of the build environment (pyproject's build requirements).

``_prim`` is optional: without a C++ compiler, or if its build fails, the package still
works (the kernels are then called through cffi, with an evaluation before each call); the
reason is printed. Its MLX version is written next to it (``_prim.mlx-version``), and
``mlx_audio_io.nn`` loads it only under that exact MLX version (MLX has no stable C++ ABI).
"""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def _cmake() -> str | None:
    try:
        import cmake  # the PyPI package's binary

        return str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    except ImportError:
        return shutil.which("cmake")


def build_prim(out_dir: Path) -> str | None:
    """Builds _prim into out_dir; returns why not, or None when built."""
    if os.environ.get("MLX_AUDIO_IO_NO_PRIM") == "1":
        return "MLX_AUDIO_IO_NO_PRIM=1"
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return "mlx is not installed in the build environment"
    mlx_dir = Path(list(spec.submodule_search_locations)[0])
    if not (mlx_dir / "share" / "cmake" / "MLX").is_dir():
        return f"no MLX CMake package under {mlx_dir}"
    try:
        import nanobind
    except ImportError:
        return "nanobind is not installed in the build environment"
    cmake = _cmake()
    if cmake is None:
        return "no cmake"
    version = importlib.metadata.version("mlx")
    with tempfile.TemporaryDirectory() as work:
        configure = [
            cmake, "-S", str(HERE / "prim"), "-B", work, "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}", f"-Dnanobind_ROOT={nanobind.cmake_dir()}",
            f"-DMLX_ROOT={mlx_dir}", f"-DMLX_BUILD_VERSION={version}", f"-DPRIM_OUT={out_dir}",
        ]  # fmt: skip
        for cmd in (configure, [cmake, "--build", work, "-j", str(os.cpu_count() or 1)]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                return f"{' '.join(cmd[:2])} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    if not (out_dir / f"_prim{suffix}").is_file():
        return f"the build made no _prim{suffix} in {out_dir}"
    (out_dir / "_prim.mlx-version").write_text(version + "\n")
    return None


class BuildExt(build_ext):
    """cffi's extension, then _prim next to it (in place for editable installs)."""

    def run(self):
        super().run()
        out_dir = Path(self.get_ext_fullpath("mlx_audio_io._native")).parent.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("_prim*"):
            stale.unlink()
        why = build_prim(out_dir)
        if why:
            print(f"mlx-audio-io: _prim not built ({why}); kernels go through cffi",
                  file=sys.stderr)  # fmt: skip


setup(cffi_modules=["build_native.py:ffibuilder"], cmdclass={"build_ext": BuildExt})
