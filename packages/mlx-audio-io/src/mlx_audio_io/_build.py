"""What this installation was built with and loaded: show_build_info() and supports_soxr()."""

from __future__ import annotations

import platform
import sys

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


def show_build_info() -> dict:
    """Describes this installation: versions, native libraries, BLAS, platform.

    Returns:
        A dict with ``version``, ``python``, ``platform``, ``mlx``, ``native`` (the extension's
        file, or the error that stopped it loading), ``libraries`` (libav*, libmpg123, libsoxr,
        libFLAC versions), ``blas`` (the library preloaded for MLX, or why none was) and ``soxr``.
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
    }
    if _lib.load_error is not None:
        info["native"] = f"failed to load: {_lib.load_error}"
        info["libraries"] = {}
    else:
        info["native"] = getattr(_lib._native, "__file__", "?")
        info["libraries"] = native_versions()
    return info
