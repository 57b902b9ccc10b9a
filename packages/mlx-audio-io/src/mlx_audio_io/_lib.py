"""The only module that touches the native extension: loading it and checking return codes."""

from __future__ import annotations

import errno
import importlib.util
import os

from .errors import AudioDecodeError, AudioFileNotFoundError, AudioFormatError


class _Unavailable:
    """Stands in for the extension when it failed to load: the package still imports (so
    ``python -m mlx_audio_io.doctor`` can explain), and the first call raises ImportError."""

    def __init__(self, error: BaseException):
        self.error = error

    def __getattr__(self, name):
        raise ImportError(
            f"mlx_audio_io's native extension could not be loaded: {self.error}. "
            "Run `python -m mlx_audio_io.doctor` for what to install or rebuild."
        ) from self.error


def _load_native():
    path = os.environ.get("MLX_AUDIO_IO_NATIVE")
    if path:  # a separately built extension (the AddressSanitizer build of `make test-asan`)
        spec = importlib.util.spec_from_file_location("mlx_audio_io._native", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    from . import _native

    return _native


try:
    _native = _load_native()
    ffi, lib = _native.ffi, _native.lib
    load_error: BaseException | None = None
except ImportError as e:
    _native = None
    ffi = lib = _Unavailable(e)
    load_error = e


def errbuf():
    """A fresh buffer for the native layer's error message."""
    return ffi.new("char[]", lib.AIO_ERRLEN)


def check(rc: int, err, what: str, path: str | None = None) -> int:
    """Raises the exception matching a negative native return code; returns rc otherwise."""
    if rc >= 0:
        return rc
    raise_error(rc, ffi.string(err).decode("utf-8", "replace"), what, path)


def raise_error(rc: int, reason: str, what: str, path: str | None = None) -> None:
    """Raises the exception for native return code rc (< 0) with the native message."""
    reason = reason or f"error {rc}"
    where = f" for '{path}'" if path is not None else ""
    message = f"{what} failed{where}: {reason}"
    if rc == lib.AIO_ENOENT:
        raise AudioFileNotFoundError(errno.ENOENT, message, path)
    if rc in (lib.AIO_EFORMAT, lib.AIO_EARG):
        raise AudioFormatError(message)
    raise AudioDecodeError(message)


_prim_state: list = []  # [module or None, why not]


def prim():
    """``mlx_audio_io._prim`` (the nn kernels as MLX graph nodes), wired to the loaded
    extension's kernels; None when it is not there, or was built for another MLX version
    (MLX has no stable C++ ABI), or ``MLX_AUDIO_IO_NO_PRIM=1``. :func:`prim_error` says why."""
    if not _prim_state:
        _prim_state.extend(_load_prim())
    return _prim_state[0]


def prim_error() -> str | None:
    """Why :func:`prim` is None (None when it is loaded)."""
    prim()
    return _prim_state[1]


def _load_prim():
    if os.environ.get("MLX_AUDIO_IO_NO_PRIM") == "1":
        return None, "MLX_AUDIO_IO_NO_PRIM=1"
    if load_error is not None:
        return None, f"the native extension did not load: {load_error}"
    import mlx.core as mx  # libmlx first: _prim links to the one mlx loaded

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        with open(os.path.join(here, "_prim.mlx-version"), encoding="utf-8") as f:
            built = f.read().strip()
    except OSError:
        return None, "not built (see setup.py: needs a C++ compiler, cmake and nanobind)"
    if built != mx.__version__:
        return None, f"built for mlx {built}, running mlx {mx.__version__}: reinstall to rebuild"
    try:
        from . import _prim
    except ImportError as e:
        return None, f"could not be loaded: {e}"
    _prim.set_kernels(*(kernel_address(n) for n in PRIM_KERNELS))
    from ._read import AudioInfo

    io = ("aio_source_open", "aio_pipe_read", "aio_source_close", "aio_probe")
    _prim.set_io(*(kernel_address(n) for n in io), AudioInfo)
    return _prim, None


#: the C kernels ``_prim.set_kernels`` takes, in its order
PRIM_KERNELS = ("aio_nn_linear", "aio_nn_quantized_matmul", "aio_nn_matmul", "aio_nn_norm_act",
                "aio_nn_conv2d", "aio_nn_depthwise_conv1d", "aio_nn_attention_window")  # fmt: skip


def kernel_address(name: str) -> int:
    """The address of the loaded extension's C function ``name`` (what ``_prim`` calls)."""
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))
