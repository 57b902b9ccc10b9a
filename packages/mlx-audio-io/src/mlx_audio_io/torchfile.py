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

Resource bounds: a short file must not make the loader run long or allocate much. Before C pickle
runs a pickle, its opcodes are walked once to bound how much every object expands to when hashed,
compared or walked (memo references let 5 bytes double a tuple) and how deep it nests; the allowed
callables bound their own arguments (``Fraction("1e999999999")`` would compute 10**999999999);
a zip member is read only if its size matches its storage's and the archive inflates to at most
64 times its own size; and all tensors together may hold at most twice their storages' bytes
plus 16 MiB (torch saves ``expand``'s stride-0 views, which repeat their storage). What goes past
a bound raises `UnsafeCheckpointError`.
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
import re
import reprlib
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

# bounds on what a file may make the loader do (see the module docstring)
_WORK_PER_BYTE, _WORK_FLOOR = 16, 1 << 20  # object visits per pickle byte: torch's take 1-3
_MAX_NESTING = 100  # hashing or printing a deeper tuple recurses in C (10**5 levels crash)
_INFLATION, _INFLATION_FLOOR = 64, 1 << 20  # torch stores its members: they do not inflate
_REPEAT_BYTES = 16 << 20  # tensor bytes allowed beyond twice the storages' (stride-0 views)
_MAX_INT_BITS = 1 << 16  # Fraction's gcd is quadratic: 8 kB integers take a millisecond
_MAX_EXPONENT_DIGITS = 4  # Fraction("1e9999") computes 10**9999: fast; 5 digits is not
_SHORT = reprlib.Repr()  # bounded reprs for messages: a shared tuple can print 2**100 items
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 60, 60, 60


def _short(value: Any) -> str:
    return _SHORT.repr(value)


class UnsafeCheckpointError(AudioFormatError):
    """The checkpoint asks for what this loader refuses: a class or function it does not import
    or call, or values past its resource bounds (a zip bomb, a tensor repeating its storage
    beyond the allowance, objects that take far longer to build than their bytes suggest)."""


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
    where = f"'{ref.module[:200]}.{ref.name[:200]}'"
    return f"the checkpoint {verb} {where}, which this loader does not run ({_ALLOWED})"


@dataclasses.dataclass
class _Storage:
    data: bytes | memoryview | None = dataclasses.field(repr=False)  # None: legacy first pass
    dtype: str
    big_endian: bool


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    # protocol 2 pickles bytes as _codecs.encode(str, "latin1"); no other codec is reachable
    if encoding not in ("latin1", "latin-1"):
        raise ValueError(f"bytes must be latin-1 encoded, got {_short(encoding)}")
    return text.encode("latin-1")


def _fraction(*args: Any) -> fractions.Fraction:
    """``fractions.Fraction`` for the values torch and demucs pickle (``Fraction("39/5")``),
    refusing the arguments that take unbounded time: huge exponents and huge integers."""
    for arg in args:
        if isinstance(arg, str):
            exponent = re.search(r"[eE]\s*[-+]?([\d_]*)", arg)
            digits = exponent.group(1).replace("_", "").lstrip("0") if exponent else ""
            if len(arg) > 4096 or len(digits) > _MAX_EXPONENT_DIGITS:
                raise UnsafeCheckpointError(
                    f"the checkpoint builds Fraction({_short(arg)}), whose exponent or length is "
                    f"beyond this loader's bound (at most {_MAX_EXPONENT_DIGITS} exponent digits)"
                )
        elif isinstance(arg, int) and arg.bit_length() > _MAX_INT_BITS:
            raise UnsafeCheckpointError(
                f"the checkpoint builds a Fraction of a {arg.bit_length()}-bit integer, beyond "
                f"this loader's bound of {_MAX_INT_BITS} bits"
            )
        elif not isinstance(arg, (int, float, fractions.Fraction)):
            raise ValueError(f"Fraction takes numbers or a string, got a {type(arg).__name__}")
    return fractions.Fraction(*args)


def _bits(dtype: str) -> np.dtype:
    return np.dtype("uint16" if dtype == "bfloat16" else dtype)


def _check_geometry(offset: Any, size: Any, stride: Any) -> None:
    """Non-negative ints below 2**62, one stride per dimension, at most 64 dimensions."""
    shaped = all(isinstance(v, (tuple, list)) for v in (size, stride))
    shaped = shaped and len(size) == len(stride) <= 64
    if not (shaped and all(type(i) is int and 0 <= i < 2**62 for i in (offset, *size, *stride))):
        raise ValueError(
            f"bad tensor geometry: offset {_short(offset)}, size {_short(size)}, stride "
            f"{_short(stride)} (expected non-negative ints, one stride per dimension)"
        )


_SAFE: dict[tuple[str, str], Callable] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("fractions", "Fraction"): _fraction,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("builtins", "bytes"): lambda: b"",
    ("_codecs", "encode"): _latin1,
    ("torch", "Size"): tuple,
    ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda data, *_: data,
}
# the tensor rebuilders: methods of the loader, which keeps the tensor byte budget
_REBUILDERS = {
    ("torch._utils", "_rebuild_tensor"): "tensor",
    ("torch._utils", "_rebuild_tensor_v2"): "tensor_v2",
    ("torch._utils", "_rebuild_tensor_v3"): "tensor_v3",
}

# the pickle opcodes, by what they do to the stack (see _check_program)
_LEAVES = frozenset(
    """INT BININT BININT1 BININT2 LONG LONG1 LONG4 STRING BINSTRING
    SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 UNICODE SHORT_BINUNICODE
    BINUNICODE BINUNICODE8 NONE NEWTRUE NEWFALSE FLOAT BINFLOAT EMPTY_LIST EMPTY_TUPLE
    EMPTY_DICT EMPTY_SET GLOBAL PERSID EXT1 EXT2 EXT4 NEXT_BUFFER""".split()
)
# pop n items (-1: down to the last MARK) and push one object made from them
_MAKES = {"TUPLE": -1, "LIST": -1, "DICT": -1, "FROZENSET": -1, "INST": -1, "OBJ": -1,
          "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3, "REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3,
          "STACK_GLOBAL": 2, "BINPERSID": 1}  # fmt: skip
# pop n items (-1: down to the last MARK) into the object below them
_FILLS = {"APPEND": 1, "SETITEM": 2, "BUILD": 1, "APPENDS": -1, "SETITEMS": -1, "ADDITEMS": -1}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}


class _Node:
    """What the prescan knows of one object C pickle would build."""

    __slots__ = ("children", "depth", "own", "weight")

    def __init__(self, own: int, children: list | None = None):
        self.own, self.children = own, children if children is not None else []
        self.weight = own + sum(c.weight for c in self.children)  # at its making
        self.depth = 1 + max((c.depth for c in self.children), default=0)


def _leaf(arg: Any) -> _Node:
    if isinstance(arg, (str, bytes, bytearray)):
        return _Node(1 + len(arg) // 4)
    return _Node(1 + arg.bit_length() // 32 if type(arg) is int else 1)


def _pop(stack: list, marks: list, count: int, at: int) -> list:
    if count < 0:
        if not marks:
            raise ValueError(f"pickle opcode {at} pops to a MARK that is not there")
        start = marks.pop()
    else:
        start = len(stack) - count
        if start < (marks[-1] if marks else 0):
            raise ValueError(f"pickle opcode {at} pops more than the stack holds")
    items = stack[start:]
    del stack[start:]
    return items


def _walk(root: _Node, limit: int) -> tuple[int, int]:
    """``(objects, depth)`` of a walk over the finished tree under ``root``, shared objects once
    per reference (containers filled after they were shared included); past ``limit``, or a
    cycle, gives ``limit + 1``."""
    done: dict[int, tuple[int, int]] = {}
    active: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if expanded:
            active.discard(key)
            size = node.own + sum(done[id(c)][0] for c in node.children)
            depth = 1 + max((done[id(c)][1] for c in node.children), default=0)
            done[key] = (min(size, limit + 1), depth)
        elif key in active:
            return limit + 1, 0  # an object inside itself: a walk never ends
        elif key not in done:
            active.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in node.children if id(c) not in done)
    return done[id(root)]


def _check_program(file: BinaryIO, size: int) -> None:
    """Walks a pickle's opcodes without building anything, as C pickle would run them.

    Every object it would build is tracked as a `_Node`: how many objects a walk over it visits
    (shared ones once per reference: memo references let 5 bytes double a tuple) and how deeply
    it nests. Each opcode that consumes objects (a tuple built, a dict filled, a call, which may
    hash or iterate them) adds their weight to the work, and so does a walk over the finished
    tree; the work may not exceed ``_WORK_PER_BYTE`` visits per pickle byte, nor nesting
    ``_MAX_NESTING``. PUT indices are checked too: C pickle sizes its memo by the largest.
    """
    budget, work = _WORK_PER_BYTE * size + _WORK_FLOOR, 0
    stack: list = []
    marks: list = []
    memo: dict = {}
    for at, (op, arg, _) in enumerate(pickletools.genops(file)):
        name, depth = op.name, 0
        if name in _LEAVES:
            stack.append(_leaf(arg))
        elif name == "MARK":
            marks.append(len(stack))
        elif name in _MAKES or name in _FILLS:
            items = _pop(stack, marks, _MAKES.get(name, _FILLS.get(name, 0)), at)
            work += sum(item.weight for item in items)
            if name in _MAKES:
                stack.append(_Node(1, items))
                depth = stack[-1].depth
            elif len(stack) > (marks[-1] if marks else 0):
                target = stack[-1]
                target.children += items
                target.weight += sum(item.weight for item in items)
                depth = target.depth = max([target.depth, *(1 + i.depth for i in items)])
            else:
                raise ValueError(f"pickle opcode {at} ({name}) has nothing to fill")
        elif name in _PUTS:
            index = len(memo) if name == "MEMOIZE" else arg
            if not stack or index > at:
                raise ValueError(f"memo index {index} at opcode {at}")
            memo[index] = stack[-1]
        elif name in _GETS:
            if arg not in memo:
                raise ValueError(f"memo index {arg} read at opcode {at} before it is written")
            stack.append(memo[arg])
        elif name in ("DUP", "POP", "POP_MARK"):
            if name == "POP_MARK" or (name == "POP" and len(stack) <= (marks[-1] if marks else 0)):
                _pop(stack, marks, -1, at)  # POP with nothing above the MARK pops the MARK
            elif not stack:
                raise ValueError(f"pickle opcode {at} ({name}) on an empty stack")
            else:
                stack.append(stack[-1]) if name == "DUP" else stack.pop()
        elif name == "STOP" and stack:  # the caller walks what it gets
            objects, depth = _walk(stack[-1], budget)
            work += objects
        elif name not in ("PROTO", "FRAME", "READONLY_BUFFER", "STOP"):
            raise ValueError(f"unsupported pickle opcode {name}")
        if work > budget or depth > _MAX_NESTING:
            what = (
                f"nests objects more than {_MAX_NESTING} deep"
                if depth > _MAX_NESTING
                else f"builds objects that take more than {budget} steps to walk from "
                f"{size} bytes (shared references repeated)"
            )
            raise UnsafeCheckpointError(
                f"the checkpoint's pickle {what}, beyond this loader's bounds"
            )


class _Unpickler(pickle.Unpickler):
    """The restricted unpickler; ``fetch(key, nbytes)`` returns a storage's raw bytes."""

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
        if key in _REBUILDERS:
            return getattr(loader, _REBUILDERS[key])
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
            raise ValueError(f"unknown persistent id {_short(pid)}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, GlobalRef):
            raise ValueError(f"unknown storage type {_short(storage_type)}")
        if storage_type.name not in _STORAGES:
            raise UnsafeCheckpointError(_refusal(storage_type, "stores tensors in"))
        if type(key) is not str or type(numel) is not int or numel < 0:
            raise ValueError(f"bad storage key {_short(key)} or size {_short(numel)}")
        dtype, loader = _STORAGES[storage_type.name], self.loader
        size = _bits(dtype).itemsize
        if key not in loader.storages:
            data = loader.fetch(key, numel * size) if loader.fetch else None
            loader.storage_bytes += len(data) if data is not None else 0
            loader.storages[key] = _Storage(data, dtype, loader.big_endian)
        if len(pid) == 5 or pid[5] is None:
            return loader.storages[key]
        view = pid[5]  # legacy storage views: (key, offset, numel), a slice of the root storage
        if not (isinstance(view, tuple) and len(view) == 3 and type(view[0]) is str):
            raise ValueError(f"bad storage view {_short(view)}")
        view_key, offset, count = view
        if not all(type(v) is int and v >= 0 for v in (offset, count)):
            raise ValueError(f"bad storage view {_short(view)}")
        if view_key not in loader.storages:
            root = loader.storages[key].data
            data = None if root is None else memoryview(root)[offset * size :][: count * size]
            loader.storages[view_key] = _Storage(data, dtype, loader.big_endian)
        return loader.storages[view_key]


@dataclasses.dataclass
class _Loader:
    extra_globals: dict
    globals_as_refs: bool
    fetch: Callable[[str, int], Any] | None = None  # None: the legacy first pass reads no data
    big_endian: bool = False
    storages: dict = dataclasses.field(default_factory=dict)
    storage_bytes: int = 0  # of the storages read so far
    tensor_bytes: int = 0  # of the tensors made so far
    inflate_budget: int = 0  # zip: bytes the members may still inflate to

    def unpickle(self, file: BinaryIO, size: int) -> Any:
        """The next pickle in ``file``, checked first; ``size`` bytes of file bound the work."""
        start = file.tell()
        _check_program(file, size)
        file.seek(start)
        return _Unpickler(file, self).load()

    def tensor(self, storage, offset, size, stride, dtype=None, metadata=None):
        """A tensor's values copied out of its storage (``offset`` and ``stride`` in elements),
        within the checkpoint's tensor byte budget."""
        if not isinstance(storage, _Storage):
            raise ValueError(f"a tensor's storage is a {type(storage).__name__}")
        _check_geometry(offset, size, stride)
        if storage.data is None:
            return None
        dtype = dtype or storage.dtype
        bits = _bits(dtype).newbyteorder(">" if storage.big_endian else "<")
        count = len(storage.data) // bits.itemsize
        numel = math.prod(size)
        if numel == 0:
            out = np.empty(size, bits)
        else:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= count:
                raise ValueError(
                    f"a tensor of size {tuple(size)} and stride {tuple(stride)} at offset "
                    f"{offset} reaches element {last} of a storage of {count}: it overruns it"
                )
            self.tensor_bytes += numel * bits.itemsize
            allowed = 2 * self.storage_bytes + _REPEAT_BYTES
            if self.tensor_bytes > allowed:
                raise UnsafeCheckpointError(
                    f"a tensor of size {tuple(size)} and stride {tuple(stride)} repeats its "
                    f"storage of {count} elements: the checkpoint's tensors would take "
                    f"{self.tensor_bytes} bytes, more than twice its storages' "
                    f"{self.storage_bytes} bytes plus {_REPEAT_BYTES >> 20} MiB"
                )
            flat = np.frombuffer(storage.data, bits, count)[offset:]
            strides = [s * bits.itemsize for s in stride]
            out = np.lib.stride_tricks.as_strided(flat, size, strides, writeable=False)
        out = out.astype(bits.newbyteorder("="), order="C")
        if dtype == "bfloat16":  # exact: bfloat16 is the top half of a float32
            out = (out.astype(np.uint32) << 16).view(np.float32)
        metadata = metadata if isinstance(metadata, dict) else {}
        out = np.conj(out) if metadata.get("conj") else out
        return -out if metadata.get("neg") else out

    def tensor_v2(self, storage, offset, size, stride, requires_grad=False, hooks=None,
                  metadata=None):  # fmt: skip
        return self.tensor(storage, offset, size, stride, metadata=metadata)

    def tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype,
                  metadata=None):  # fmt: skip
        if not (isinstance(dtype, GlobalRef) and dtype.name in _DTYPES):
            raise ValueError(f"unknown tensor dtype {_short(dtype)}")
        return self.tensor(storage, offset, size, stride, dtype.name, metadata)

    def read_member(self, zf: zipfile.ZipFile, name: str, nbytes: int | None = None) -> bytes:
        """A zip member's bytes, refused before inflating when its header's size is not
        ``nbytes`` or would take the archive past its inflation budget, and read with a bound
        (zipfile stops at the header's size and checks the CRC there)."""
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise ValueError(f"the archive has no member {_short(name)}") from None
        if nbytes is not None and info.file_size != nbytes:
            raise UnsafeCheckpointError(
                f"the archive's {_short(name)} holds {info.file_size} bytes where its storage "
                f"declares {nbytes}"
            )
        self.inflate_budget -= info.file_size
        if self.inflate_budget < 0:
            raise UnsafeCheckpointError(
                f"the archive's {_short(name)} would inflate the archive past {_INFLATION} times "
                "its size (a zip bomb; torch stores its members uncompressed)"
            )
        with zf.open(info) as member:
            data = member.read(info.file_size + 1)
        if len(data) != info.file_size:
            raise ValueError(f"{_short(name)} inflates to {len(data)} bytes, not its header's")
        return data

    def zip(self, file: BinaryIO, size: int) -> Any:
        self.inflate_budget = _INFLATION * size + _INFLATION_FLOOR
        with zipfile.ZipFile(file) as zf:
            names = zf.namelist()
            pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
            if pkl is None:
                raise _NotCheckpoint("a zip archive without <folder>/data.pkl")
            prefix = pkl[: -len("data.pkl")]
            order = prefix + "byteorder"
            self.big_endian = order in names and self.read_member(zf, order) == b"big"
            self.fetch = lambda key, nbytes: self.read_member(zf, f"{prefix}data/{key}", nbytes)
            data = self.read_member(zf, pkl)
            return self.unpickle(io.BytesIO(data), len(data))

    def legacy(self, data: bytes) -> Any:
        f, size = io.BytesIO(data), len(data)
        magic = self.unpickle(f, size)
        if type(magic) is not int or magic != _LEGACY_MAGIC:
            raise _NotCheckpoint("a pickle without the torch.save magic number")
        if self.unpickle(f, size) != _LEGACY_PROTOCOL:
            raise ValueError("unsupported legacy protocol version")
        info = self.unpickle(f, size)
        self.big_endian = isinstance(info, dict) and info.get("little_endian") is False
        start = f.tell()
        self.unpickle(f, size)  # first pass: storage dtypes (the raw bytes follow the pickle)
        dtypes = {key: s.dtype for key, s in self.storages.items()}
        keys, pos, records = self.unpickle(f, size), f.tell(), {}
        if not (isinstance(keys, list) and all(type(k) is str for k in keys)):
            raise ValueError("the storage key list is missing")
        for key in keys:
            (numel,) = struct.unpack_from(">q" if self.big_endian else "<q", data, pos)
            if key not in dtypes:
                raise ValueError(f"storage {_short(key)} is listed but never used")
            nbytes = numel * _bits(dtypes[key]).itemsize
            if numel < 0 or pos + 8 + nbytes > len(data):
                raise ValueError(f"storage {_short(key)} is cut short")
            records[key] = memoryview(data)[pos + 8 : pos + 8 + nbytes]
            pos += 8 + nbytes
        self.storages, self.storage_bytes = {}, 0

        def fetch(key: str, nbytes: int) -> memoryview:
            if key not in records:
                raise ValueError(f"storage {_short(key)} is missing from the file")
            return records[key]

        self.fetch = fetch
        f.seek(start)
        return self.unpickle(f, size)


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
        UnsafeCheckpointError: The checkpoint names a global this loader does not run, or
            asks for more than its bounds allow: members inflating past 64 times the archive's
            size, tensors past twice their storages' bytes plus 16 MiB, pickles that take far
            more steps than their size suggests (a ``ValueError``).
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
        size = file.seek(0, io.SEEK_END) - start
        file.seek(start)
        head = file.read(4)
        file.seek(start)
        if head == b"PK\x03\x04":
            return loader.zip(file, size)
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
