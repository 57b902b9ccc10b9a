"""The only module that touches the native extension: loading it and checking return codes."""

from __future__ import annotations

import errno
import importlib.util
import os

from .errors import AudioDecodeError, AudioFileNotFoundError, AudioFormatError

if os.environ.get("MLX_AUDIO_IO_NATIVE"):
    # A separately built extension (the AddressSanitizer build of `make test-asan`).
    _spec = importlib.util.spec_from_file_location(
        "mlx_audio_io._native", os.environ["MLX_AUDIO_IO_NATIVE"]
    )
    _native = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_native)
else:
    from . import _native

ffi = _native.ffi
lib = _native.lib


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
