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
    reason = ffi.string(err).decode("utf-8", "replace") or f"error {rc}"
    where = f" for '{path}'" if path is not None else ""
    message = f"{what} failed{where}: {reason}"
    if rc == lib.AIO_ENOENT:
        raise AudioFileNotFoundError(errno.ENOENT, message, path)
    if rc in (lib.AIO_EFORMAT, lib.AIO_EARG):
        raise AudioFormatError(message)
    raise AudioDecodeError(message)
