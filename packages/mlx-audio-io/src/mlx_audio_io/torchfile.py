"""Read PyTorch checkpoints (``torch.save`` files) into NumPy with no torch and no code execution.

Security model: a pickle is a small program whose GLOBAL opcodes import any name and whose
REDUCE opcodes call it, so ``pickle.load`` on a downloaded checkpoint runs whatever the file asks
for. This loader unpickles with a ``pickle.Unpickler`` whose ``find_class`` answers from a fixed
table and never imports a module: tensor rebuilders (reimplemented here on NumPy),
``collections.OrderedDict``, ``fractions.Fraction``, ``set``/``frozenset``/``complex``/``slice``,
``torch.Size`` (a tuple), latin-1 ``bytes`` and the inert names of torch storage classes and
dtypes (returned as `GlobalRef`). Any other name is refused with `UnsafeCheckpointError` before
anything is called, unless the caller maps it in ``extra_globals`` or asks for ``globals_as_refs``,
which turns it into an inert `GlobalRef` that refuses to be called or built. Tensor geometry is
checked against the storage size before any strided view is made, and PUT indices before C
pickle sizes its memo by them, so a corrupt file raises instead of crashing or exhausting memory.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import fractions
import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from .errors import AudioDecodeError, AudioFileNotFoundError, AudioFormatError, AudioIOError

__all__ = ["GlobalRef", "UnsafeCheckpointError", "load_torch_file"]

_ALLOWED = "only tensors, dicts, lists, numbers, strings and Fractions are allowed"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}  # fmt: skip
_DTYPES = {"bfloat16", "bool", "complex64", "complex128", "float16", "float32", "float64"}
_DTYPES |= {f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)}


class UnsafeCheckpointError(AudioFormatError):
    """The checkpoint names a class or function this loader does not import or call."""


@dataclasses.dataclass(frozen=True)
class GlobalRef:
    """A global (class, function, torch dtype or storage type) named by a checkpoint, not imported.

    Torch dtypes and storage classes stored as values always come back as ``GlobalRef("torch",
    "float32")`` and the like. Other names come back as a `GlobalRef` only with
    ``load_torch_file(..., globals_as_refs=True)``; demucs, for one, keeps its model class under
    ``"klass"``. Calling one, or building an object from one, raises `UnsafeCheckpointError`.
    """

    module: str
    name: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafeCheckpointError(_refusal(self, "calls"))

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(_refusal(self, "sets the state of"))

    def __reduce__(self) -> tuple:
        return GlobalRef, (self.module, self.name)


def _refusal(ref: GlobalRef, verb: str) -> str:
    where = f"'{ref.module}.{ref.name}'"
    return f"the checkpoint {verb} {where}, which this loader does not run ({_ALLOWED})"


@dataclasses.dataclass
class _Storage:
    data: bytes | memoryview | None  # None in the legacy format's first pass
    dtype: str
    big_endian: bool


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    # protocol 2 pickles bytes as _codecs.encode(str, "latin1"); no other codec is reachable
    if encoding not in ("latin1", "latin-1"):
        raise ValueError(f"bytes must be latin-1 encoded, got {encoding!r}")
    return text.encode("latin-1")


def _bits(dtype: str) -> np.dtype:
    return np.dtype("uint16" if dtype == "bfloat16" else dtype)


def _tensor(storage, offset, size, stride, dtype=None, metadata=None) -> np.ndarray | None:
    """A tensor's values copied out of its storage: ``offset`` and ``stride`` count elements."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"a tensor's storage is a {type(storage).__name__}")
    if storage.data is None:
        return None
    dtype = dtype or storage.dtype
    bits = _bits(dtype).newbyteorder(">" if storage.big_endian else "<")
    count = len(storage.data) // bits.itemsize
    shaped = all(isinstance(v, (tuple, list)) for v in (size, stride)) and len(size) == len(stride)
    if not (shaped and all(type(i) is int and i >= 0 for i in (offset, *size, *stride))):
        raise ValueError(
            f"bad tensor geometry: offset {offset!r}, size {size!r}, stride {stride!r}"
        )
    if 0 in size:
        out = np.empty(size, bits)
    elif offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= count:
        raise ValueError(f"a tensor of size {size} at offset {offset} overruns its storage")
    elif math.prod(size) > max(count, 2**31 // bits.itemsize):  # a view repeating its storage
        raise ValueError(f"a tensor of size {size} repeats its storage beyond 2 GiB")
    else:
        flat = np.frombuffer(storage.data, bits, count)[offset:]
        strides = [s * bits.itemsize for s in stride]
        out = np.lib.stride_tricks.as_strided(flat, size, strides, writeable=False)
    out = out.astype(bits.newbyteorder("="), order="C")
    if dtype == "bfloat16":  # exact: bfloat16 is the top half of a float32
        out = (out.astype(np.uint32) << 16).view(np.float32)
    metadata = metadata if isinstance(metadata, dict) else {}
    out = np.conj(out) if metadata.get("conj") else out
    return -out if metadata.get("neg") else out


def _rebuild_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _tensor(storage, offset, size, stride, metadata=metadata)


def _rebuild_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    if not (isinstance(dtype, GlobalRef) and dtype.name in _DTYPES):
        raise ValueError(f"unknown tensor dtype {dtype!r}")
    return _tensor(storage, offset, size, stride, dtype.name, metadata)


_SAFE: dict[tuple[str, str], Callable] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("fractions", "Fraction"): fractions.Fraction,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("builtins", "bytes"): lambda: b"",
    ("_codecs", "encode"): _latin1,
    ("torch", "Size"): tuple,
    ("torch._utils", "_rebuild_tensor"): _tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_v3,
    ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda data, *_: data,
}


class _Unpickler(pickle.Unpickler):
    """The restricted unpickler; ``fetch(key, dtype)`` returns a storage's raw bytes."""

    def __init__(self, file: BinaryIO, loader: _Loader):
        super().__init__(file)
        self.loader = loader

    def find_class(self, module: str, name: str) -> Any:
        loader, key = self.loader, (module, name)
        if key in loader.extra_globals:
            return loader.extra_globals[key]
        if module == "__builtin__":
            key = ("builtins", name)
        if key in _SAFE:
            return _SAFE[key]
        if module in ("torch", "torch.cuda", "torch.storage") and (
            name in _STORAGES or name in _DTYPES
        ):
            return GlobalRef(module, name)
        if loader.globals_as_refs:
            return GlobalRef(module, name)
        hint = "; pass extra_globals or globals_as_refs=True to accept it as a value"
        raise UnsafeCheckpointError(_refusal(GlobalRef(module, name), "refers to") + hint)

    def persistent_load(self, pid: Any) -> Any:
        kind = pid[0] if isinstance(pid, tuple) and pid else None
        if kind in ("module", b"module"):  # legacy format: an nn.Module class and its source
            return pid[1]
        if kind not in ("storage", b"storage") or len(pid) not in (5, 6):
            raise ValueError(f"unknown persistent id {str(pid)[:80]}")
        storage_type, key, _location, _numel = pid[1:5]
        if not isinstance(storage_type, GlobalRef):
            raise ValueError(f"unknown storage type {storage_type!r}")
        if storage_type.name not in _STORAGES:
            raise UnsafeCheckpointError(_refusal(storage_type, "stores tensors in"))
        dtype, loader = _STORAGES[storage_type.name], self.loader
        if key not in loader.storages:
            data = loader.fetch(str(key), dtype) if loader.fetch else None
            loader.storages[key] = _Storage(data, dtype, loader.big_endian)
        if len(pid) == 5 or pid[5] is None:
            return loader.storages[key]
        view_key, offset, numel = pid[5]  # legacy storage views: a slice of the root storage
        if view_key not in loader.storages:
            root, size = loader.storages[key].data, _bits(dtype).itemsize
            view = None if root is None else memoryview(root)[offset * size :][: numel * size]
            loader.storages[view_key] = _Storage(view, dtype, loader.big_endian)
        return loader.storages[view_key]


@dataclasses.dataclass
class _Loader:
    extra_globals: dict
    globals_as_refs: bool
    fetch: Callable[[str, str], Any] | None = None  # None: the legacy first pass reads no data
    big_endian: bool = False
    storages: dict = dataclasses.field(default_factory=dict)

    def unpickle(self, file: BinaryIO) -> Any:
        start = file.tell()  # C pickle sizes its memo by the largest PUT index: check them first
        for i, (op, arg, _) in enumerate(pickletools.genops(file)):
            if op.name.endswith("PUT") and arg > i:
                raise ValueError(f"memo index {arg} at opcode {i}")
        file.seek(start)
        return _Unpickler(file, self).load()

    def zip(self, file: BinaryIO) -> Any:
        with zipfile.ZipFile(file) as zf:
            names = zf.namelist()
            pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
            if pkl is None:
                raise _NotCheckpoint("a zip archive without <folder>/data.pkl")
            prefix = pkl[: -len("data.pkl")]
            self.big_endian = (
                prefix + "byteorder" in names and zf.read(prefix + "byteorder") == b"big"
            )
            self.fetch = lambda key, dtype: zf.read(f"{prefix}data/{key}")
            return self.unpickle(io.BytesIO(zf.read(pkl)))

    def legacy(self, data: bytes) -> Any:
        f = io.BytesIO(data)
        magic = self.unpickle(f)
        if type(magic) is not int or magic != _LEGACY_MAGIC:
            raise _NotCheckpoint("a pickle without the torch.save magic number")
        if self.unpickle(f) != _LEGACY_PROTOCOL:
            raise ValueError("unsupported legacy protocol version")
        info = self.unpickle(f)
        self.big_endian = isinstance(info, dict) and info.get("little_endian") is False
        start = f.tell()
        self.unpickle(f)  # first pass: storage dtypes (the raw bytes follow the pickle)
        dtypes = {key: s.dtype for key, s in self.storages.items()}
        keys, pos, records = self.unpickle(f), f.tell(), {}
        if not isinstance(keys, list):
            raise ValueError("the storage key list is missing")
        for key in keys:
            (numel,) = struct.unpack_from(">q" if self.big_endian else "<q", data, pos)
            dtype = dtypes[key]
            nbytes = numel * _bits(dtype).itemsize
            if numel < 0 or pos + 8 + nbytes > len(data):
                raise ValueError(f"storage {key!r} is cut short")
            records[str(key)] = memoryview(data)[pos + 8 : pos + 8 + nbytes]
            pos += 8 + nbytes
        self.storages, self.fetch = {}, lambda key, dtype: records[key]
        f.seek(start)
        return self.unpickle(f)


class _NotCheckpoint(Exception):
    pass


def load_torch_file(
    path_or_fileobj: str | os.PathLike | BinaryIO,
    *,
    extra_globals: dict[tuple[str, str], Callable] | None = None,
    globals_as_refs: bool = False,
) -> Any:
    """Loads a ``torch.save`` file into plain Python objects and NumPy arrays, running no code.

    Reads the zip format (torch >= 1.6, ``<folder>/data.pkl`` + ``<folder>/data/<key>``) and the
    legacy format (magic number, protocol and system pickles, the object pickle, then the raw
    storages). Every tensor or ``nn.Parameter`` becomes a C-contiguous ``numpy.ndarray`` of the
    same shape and dtype, copied out of its storage (strides, storage offsets and shared storages
    are honoured; arrays never share memory, though a tensor saved twice comes back as one array
    object twice, as with ``torch.load``). bfloat16 tensors become float32 arrays (exact:
    the bits are widened), since NumPy has no bfloat16. Dicts, lists, tuples, numbers, strings,
    ``OrderedDict`` and ``Fraction`` come back as themselves.

    Args:
        path_or_fileobj: Path of the checkpoint, or a binary file object (read from its position).
        extra_globals: ``{(module, name): callable}`` for further globals the caller trusts or
            stands in for; consulted before the built-in table.
        globals_as_refs: Return any other global stored as a plain value as a `GlobalRef` instead
            of refusing it. Calling or instantiating such a global is still refused.

    Returns:
        The unpickled object tree.

    Raises:
        AudioFileNotFoundError: The path does not exist (a ``FileNotFoundError``).
        UnsafeCheckpointError: The checkpoint names a global this loader does not run (a
            ``ValueError``).
        AudioFormatError: The file is not a PyTorch checkpoint (a ``ValueError``).
        AudioDecodeError: The file is truncated or corrupt (a ``RuntimeError``).
        TypeError: ``path_or_fileobj`` is neither a path nor a file object.
    """
    loader, opened = _Loader(dict(extra_globals or {}), globals_as_refs), None
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        name = os.fspath(path_or_fileobj)
        where = f"load failed for '{name}'"
        try:
            file = opened = open(name, "rb")
        except FileNotFoundError as e:
            raise AudioFileNotFoundError(errno.ENOENT, f"{where}: file not found", name) from e
        except OSError as e:
            raise AudioDecodeError(f"{where}: {e.strerror or e}") from e
    elif hasattr(path_or_fileobj, "read"):
        file, name = path_or_fileobj, getattr(path_or_fileobj, "name", None)
        where = f"load failed for '{name if isinstance(name, str) else '<file object>'}'"
    else:
        raise TypeError(
            f"path_or_fileobj must be a path or a binary file object, got {path_or_fileobj!r}"
        )
    try:
        if not (hasattr(file, "seekable") and file.seekable()):
            file = io.BytesIO(file.read())
        start = file.tell()
        head = file.read(4)
        file.seek(start)
        if head == b"PK\x03\x04":
            return loader.zip(file)
        if head[:1] == b"\x80":
            return loader.legacy(file.read())
        raise _NotCheckpoint("the file is empty" if not head else "no zip or pickle header")
    except _NotCheckpoint as e:
        raise AudioFormatError(
            f"{where}: not a PyTorch checkpoint ({e}); expected a torch.save file"
        ) from None
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"{where}: {e}") from e
    except AudioIOError:
        raise
    except Exception as e:
        if isinstance(e, pickle.UnpicklingError) and str(e).endswith("not GlobalRef"):
            ref = f"the checkpoint instantiates a class this loader does not run ({_ALLOWED})"
            raise UnsafeCheckpointError(f"{where}: {ref}") from e
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise AudioDecodeError(f"{where}: corrupt or truncated checkpoint ({reason})") from e
    finally:
        if opened is not None:
            opened.close()
