"""Loads an optimised BLAS into the process before ``mlx.core`` is first imported.

The ``mlx[cpu]`` Linux wheel links a reference BLAS; Debian's OpenBLAS loaded first with
``RTLD_GLOBAL`` takes over its symbols (a 1024x1024 matmul goes from about 0.5 s to 0.02 s
here). ``MLX_AUDIO_BLAS=off`` disables this, ``MLX_AUDIO_BLAS=/path/to/libblas.so`` picks
another library. macOS already uses Accelerate, so nothing happens there.

OpenBLAS's worker threads spin (``sched_yield``) for 2^28 cycles, about 0.1 s, after each
threaded call; the models' C kernels start their own threads right after MLX's matmuls, and a
spinning worker took 11% of the CPU samples of a Kokoro call here. Unless
``OPENBLAS_THREAD_TIMEOUT`` is set, it is set to 20 (2^20 cycles, about 0.4 ms: back-to-back
calls still find the workers awake) before the library loads: a Kokoro sentence then took 9%
less CPU time and 3% less wall time.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings

_CANDIDATES = ("libopenblas.so.0", "libopenblas.so", "libopenblasp-r0.so")
_OFF = {"off", "0", "false", "no", "none"}
#: OpenBLAS's spin after a threaded call, log2 cycles, unless the environment sets one.
THREAD_TIMEOUT = "20"

#: The library that was loaded (``ctypes.CDLL``), or None.
loaded: ctypes.CDLL | None = None
#: Why nothing was loaded, in words (empty when a library was loaded).
reason = ""


def _preload() -> None:
    global loaded, reason
    setting = os.environ.get("MLX_AUDIO_BLAS", "").strip()
    if sys.platform == "darwin":
        reason = "macOS uses Accelerate"
        return
    if setting.lower() in _OFF:
        reason = "disabled by MLX_AUDIO_BLAS"
        return
    if "mlx.core" in sys.modules:
        reason = "mlx.core was imported before mlx_audio_io"
        warnings.warn(
            "mlx.core was imported before mlx_audio_io, so OpenBLAS could not be loaded first "
            "and MLX matmul/convolution on the CPU stays 10-20x slower. Import mlx_audio_io "
            "(or any mlx_audio_* package) before mlx. Set MLX_AUDIO_BLAS=off to silence this.",
            RuntimeWarning,
            stacklevel=4,
        )
        return
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", THREAD_TIMEOUT)  # read when it loads
    for name in (setting,) if setting else _CANDIDATES:
        try:
            loaded = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            return
        except OSError as e:
            reason = f"cannot load {name}: {e}"
    if setting:
        warnings.warn(f"MLX_AUDIO_BLAS={setting!r}: {reason}", RuntimeWarning, stacklevel=4)
    else:
        reason = "OpenBLAS not found (Debian/Ubuntu: apt-get install libopenblas0-pthread)"


_preload()
