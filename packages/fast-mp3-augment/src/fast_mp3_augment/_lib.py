"""Loads the native extension; FMA_NATIVE points at another build (the sanitizer run)."""

import importlib.util
import os


def _load():
    path = os.environ.get("FMA_NATIVE")
    if path:
        spec = importlib.util.spec_from_file_location("fast_mp3_augment._native", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    from . import _native

    return _native


_native = _load()
ffi, lib = _native.ffi, _native.lib
