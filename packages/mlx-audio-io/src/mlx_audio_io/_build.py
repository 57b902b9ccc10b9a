"""What this installation was built with and loaded: show_build_info() and supports_soxr()."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from . import _blas, _lib


def supports_soxr() -> bool:
    """True: band-limited resampling (libsoxr) is always built in. Kept for compatibility with
    mlx-audio-io 1.3, where it depended on the build."""
    return True


def native_versions() -> dict[str, str]:
    """Versions of the C libraries the extension was compiled against."""
    text = _lib.ffi.string(_lib.lib.aio_version_info()).decode()
    out = {}
    for part in text.split(";"):
        name, _, version = part.strip().partition(" ")
        out[name] = version.replace("libsoxr-", "")
    return out


#: The distributions that provide MLX's compiled library on Linux (``mlx[cpu]``,
#: ``mlx[cuda12]``, ``mlx[cuda13]``). Each ships the same file, ``mlx/lib/libmlx.so``.
MLX_BACKEND_DISTRIBUTIONS = ("mlx-cpu", "mlx-cuda-12", "mlx-cuda-13")


def mlx_backends() -> list[str]:
    """The MLX backend distributions installed next to ``mlx`` (Linux), e.g. ``["mlx-cpu"]``.

    More than one is a broken install: they all write ``mlx/lib/libmlx.so``, so the file is
    whichever was installed last, and uninstalling either one deletes it (docs/install.md).
    """
    found = []
    for name in MLX_BACKEND_DISTRIBUTIONS:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def mlx_device() -> str:
    """What MLX computes on by default here: ``"cpu"``, ``"gpu (cuda)"`` or ``"gpu (metal)"``,
    or why ``mlx.core`` does not import."""
    try:
        import mlx.core as mx
    except ImportError as e:  # reported, not raised: this is a diagnostic
        return f"not importable: {e}"
    if mx.default_device() == mx.cpu:
        return "cpu"
    if getattr(mx, "cuda", None) is not None and mx.cuda.is_available():
        return "gpu (cuda)"
    return "gpu (metal)" if mx.metal.is_available() else "gpu"


def show_build_info() -> dict:
    """Describes this installation: versions, native libraries, BLAS, platform.

    Returns:
        A dict with ``version``, ``python``, ``platform``, ``mlx``, ``native`` (the extension's
        file, or the error that stopped it loading), ``libraries`` (libav*, libmpg123, libsoxr,
        libFLAC versions), ``blas`` (the library preloaded for MLX, or why none was), ``soxr``,
        ``mlx_device`` (where MLX computes by default) and ``mlx_backends`` (the installed
        MLX backend distributions on Linux: ``mlx-cpu``, ``mlx-cuda-12`` or ``mlx-cuda-13``).
    """
    from . import __version__

    try:
        import mlx.core as mx

        mlx_version = mx.__version__
    except ImportError as e:  # reported, not raised: this is a diagnostic
        mlx_version = f"not importable: {e}"
    info = {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "mlx": mlx_version,
        "blas": getattr(_blas.loaded, "_name", None) or f"none ({_blas.reason})",
        "soxr": supports_soxr(),
        "mlx_device": mlx_device(),
        "mlx_backends": mlx_backends(),
    }
    if _lib.load_error is not None:
        info["native"] = f"failed to load: {_lib.load_error}"
        info["libraries"] = {}
    else:
        info["native"] = getattr(_lib._native, "__file__", "?")
        info["libraries"] = native_versions()
    return info
