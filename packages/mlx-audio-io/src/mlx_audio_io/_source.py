"""Opening what the readers accept: a path, or audio already in memory (bytes, bytearray,
memoryview, io.BytesIO, or any binary file object with read())."""

from __future__ import annotations

import io
import os

from . import _args
from ._lib import check, errbuf, ffi, lib


def describe(source) -> str:
    """How errors name a source: the path, or the file object's name, or its type."""
    if type(source) is str or isinstance(source, (str, os.PathLike)):
        return _args.as_path(source)
    name = getattr(source, "name", None)
    if isinstance(name, str):
        return name
    return f"<{type(source).__name__}>"


def _memory_of(source):
    """A contiguous byte buffer holding the source's data (no copy for bytes-likes/BytesIO)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        return view if view.contiguous else view.tobytes()
    if isinstance(source, io.BytesIO):
        return source.getbuffer()[source.tell() :]
    if callable(getattr(source, "read", None)):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(
                f"file object must be opened in binary mode (read() gave {type(data).__name__})"
            )
        return data
    raise TypeError(
        "path must be a str or os.PathLike, bytes, or a binary file object, "
        f"got {type(source).__name__}"
    )


class Opener:
    """What the native open functions take for a source: ``path`` (the file system's bytes) or
    ``data``/``size``/``name`` for memory input. ``keep`` holds that memory alive while the
    native file is open, ``label`` names the source in errors."""

    __slots__ = ("label", "keep", "path", "data", "size", "name")

    def __init__(self, source):
        self.label = describe(source)
        if type(source) is str or isinstance(source, os.PathLike):
            self.keep = None
            self.path = _args.native_path(self.label)
            self.data, self.size, self.name = ffi.NULL, 0, ffi.NULL
        else:
            memory = _memory_of(source)
            buf = ffi.from_buffer("char[]", memory)
            self.keep = (memory, buf)
            self.path, self.data, self.size = ffi.NULL, buf, len(buf)
            named = not self.label.startswith("<")  # "<bytes>": no name to hint the format
            self.name = self.label.encode("utf-8", "replace") if named else ffi.NULL


class NativeFile:
    """An open native file (aio_file *); `keep` holds memory input alive while it is open."""

    def __init__(self, source, op: str):
        src = Opener(source)
        self.label, self.keep = src.label, src.keep
        err = errbuf()
        handle_p = ffi.new("aio_file **")
        self.info = ffi.new("aio_info *")
        if src.path is not ffi.NULL:
            rc = lib.aio_open(src.path, handle_p, self.info, err)
        else:
            rc = lib.aio_open_memory(src.data, src.size, src.name, handle_p, self.info, err)
        check(rc, err, op, self.label)
        self.handle = handle_p[0]
