"""Writes the fixtures of tests/mlx_audio_io/test_torchfile.py: small torch.save files (zip and
legacy formats, every dtype, strided views, a demucs package, malicious pickles) and, next to
each, the expected values for a test that runs without torch: `<name>.npz` holds the arrays and
`<name>.json` the rest of the tree, tagged ({"__array__": "a0"}, {"__tuple__": [...]}, ...).
Also copies the two Kokoro voice packs and records the sha256 of their float32 bytes.

Run in the torch venv: .parity-venv/bin/python tools/parity/make_torchfile_fixtures.py
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import pickle
import shutil
import struct
import sys
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from demucs.htdemucs import HTDemucs
from demucs.states import get_state

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "torchfile"
VOICES = Path("/work/shared/fixtures/real/kokoro-voices")


def encode(x, arrays: dict):
    """The JSON form of an object tree; tensors go to `arrays` as NumPy (bfloat16 as float32)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().resolve_conj().resolve_neg()
        t = t.float() if t.dtype == torch.bfloat16 else t
        key = f"a{len(arrays)}"
        arrays[key] = t.numpy().copy()
        return {"__array__": key}
    if isinstance(x, torch.dtype):
        return {"__global__": ["torch", str(x).removeprefix("torch.")]}
    if isinstance(x, type):
        return {"__global__": [x.__module__, x.__qualname__]}
    if isinstance(x, Fraction):
        return {"__fraction__": [x.numerator, x.denominator]}
    if isinstance(x, complex):
        return {"__complex__": [x.real, x.imag]}
    if isinstance(x, bytes):
        return {"__bytes__": x.hex()}
    if isinstance(x, (set, frozenset)):
        tag = "__set__" if isinstance(x, set) else "__frozenset__"
        return {tag: [encode(v, arrays) for v in sorted(x)]}
    if isinstance(x, dict):
        tag = "__odict__" if isinstance(x, collections.OrderedDict) else "__dict__"
        return {tag: [[encode(k, arrays), encode(v, arrays)] for k, v in x.items()]}
    if isinstance(x, (list, tuple)):  # torch.Size is a tuple
        return {"__list__" if isinstance(x, list) else "__tuple__": [encode(v, arrays) for v in x]}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"cannot encode {type(x)}")


def dtypes_tree():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(3, 5, generator=g)
    f[0, :3] = torch.tensor([float("nan"), float("inf"), -0.0])
    ints = torch.randint(-100, 100, (4, 3), generator=g)
    return {
        "float32": f,
        "float16": f.half(),
        "bfloat16": f.bfloat16(),
        "float64": f.double() / 3,
        "int8": ints.to(torch.int8),
        "int16": ints.to(torch.int16) * 300,
        "int32": ints.to(torch.int32) * 70000,
        "int64": ints * 2**40,
        "uint8": (ints + 100).to(torch.uint8),
        "uint16": (ints + 100).to(torch.uint16),  # torch >= 2.3: _rebuild_tensor_v3
        "bool": ints > 0,
        "complex64": torch.complex(f, -f),
        "complex128": torch.complex(f.double(), f.double() * 2),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "param": torch.nn.Parameter(torch.randn(2, 3, generator=g)),
    }


def views_tree():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    shared = torch.arange(12, dtype=torch.int64)
    z = torch.complex(torch.randn(4), torch.randn(4))
    return {
        "base": base,
        "transposed": base.t(),
        "slice": base[1:3, 2:5],  # storage offset 8
        "row": base[3],
        "every_other": base[:, ::2],
        "expanded": torch.arange(3.0).expand(4, 3),  # stride 0
        "shared_a": shared[2:8],
        "shared_b": shared.view(3, 4)[1:, 1:],
        "same_twice": [shared, shared],
        "conj": z.conj(),  # saved with the conj bit in its metadata
        "neg": z.clone().conj().imag,  # the neg bit (a storage of its own: float, not complex)
        "half_t": base.half().t()[1:],
    }


def nested_tree():
    return {
        "config": {"sources": ["drums", "bass"], "sr": 44100, "segment": Fraction(39, 5)},
        "layers": [{"w": torch.ones(2, 2), "name": "a"}, {"w": torch.zeros(3), "name": "b"}],
        "ordered": collections.OrderedDict([("z", 1), ("a", torch.tensor([1, 2]))]),
        "shape": torch.Size([2, 3]),
        "tuple": (1, 2.5, None, True),
        "int_keys": {0: "zero", 7: "seven"},
        "misc": [complex(1, -2), b"\x00\xffab", b"", {3, 1, 2}, frozenset({"x"}), float("inf")],
        "dtype": torch.float32,
        "bf16_dtype": torch.bfloat16,
    }


def demucs_package():
    torch.manual_seed(0)
    model = HTDemucs(
        ["drums", "bass"], channels=4, depth=1, t_layers=1, t_heads=2, segment=Fraction(39, 5)
    )
    args, kwargs = model._init_args_kwargs
    state = get_state(model, None, half=True)
    return {
        "klass": model.__class__,
        "args": args,
        "kwargs": kwargs,
        "state": state,
        "training_args": {"lr": 3e-4, "epochs": 360},
    }


class _Key:
    def __init__(self, key: str):
        self.key = key


class _View:
    """A tensor over a legacy storage view: pickles as _rebuild_tensor_v2(<storage view>, ...)."""

    def __init__(self, view, offset, size, stride):
        self.args = (view, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


def legacy_views_file() -> tuple[bytes, object]:
    """A legacy file with storage views, as torch < 1.0 wrote them (torch now always saves the
    root storage); returns the bytes and the expected tree."""
    root = torch.arange(10, dtype=torch.float32)
    views = {"v1": ("root", 2, 6), "v2": ("root", 5, 4)}  # key: (root key, offset, numel)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Key):
                _, offset, numel = views[obj.key]
                view = (obj.key, offset, numel)
                return ("storage", torch.FloatStorage, "root", "cpu", 10, view)
            return None

    tree = {"a": _View(_Key("v1"), 1, (2, 2), (2, 1)), "b": _View(_Key("v2"), 0, (4,), (1,))}
    expected = {"a": root[2:8][1:5].reshape(2, 2), "b": root[5:9]}
    buf = io.BytesIO()
    for head in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(head, buf, protocol=2)
    Pickler(buf, protocol=2).dump(tree)
    pickle.dump(["root"], buf, protocol=2)
    buf.write(struct.pack("<q", 10) + root.numpy().tobytes())
    return buf.getvalue(), expected


def reduce_payload(module: bytes, name: bytes, arg: bytes) -> bytes:
    """A protocol-2 pickle of GLOBAL module.name, REDUCE with one string argument."""
    text = b"X" + struct.pack("<I", len(arg)) + arg
    return b"\x80\x02c" + module + b"\n" + name + b"\n" + text + b"\x85R."


def evil_zip(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def write(name: str, data: bytes | None, tree, expected=None) -> None:
    if data is not None:
        (OUT / name).write_bytes(data)
    arrays: dict = {}
    doc = encode(tree if expected is None else expected, arrays)
    stem = Path(name).stem
    np.savez(OUT / f"{stem}.npz", **arrays)
    (OUT / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")


def saved(tree, zip_format: bool = True) -> bytes:
    buf = io.BytesIO()
    torch.save(tree, buf, _use_new_zipfile_serialization=zip_format)
    return buf.getvalue()


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    for name, tree in [
        ("dtypes", dtypes_tree()),
        ("views", views_tree()),
        ("nested", nested_tree()),
    ]:
        write(f"{name}.pt", saved(tree), tree)
        write(f"legacy_{name}.pt", saved(tree, zip_format=False), tree)
    package = demucs_package()
    write("demucs.th", saved(package), package)
    data, expected = legacy_views_file()
    write("legacy_storage_views.pt", data, None, expected)
    # os.system / builtins.eval through REDUCE; each would create a file in the working folder
    system = reduce_payload(b"os", b"system", b"touch pwned_by_torchfile")
    evil = reduce_payload(b"builtins", b"eval", b"open('pwned_by_torchfile', 'w').write('x')")
    (OUT / "evil_system.pt").write_bytes(evil_zip(system))
    (OUT / "evil_eval.pt").write_bytes(evil_zip(evil))
    legacy_head = b"".join(pickle.dumps(h, protocol=2) for h in (0x1950A86A20F9469CFC6C, 1001, {}))
    (OUT / "evil_legacy.pt").write_bytes(legacy_head + system)
    voices = {}
    for name in ("af_heart", "af_bella"):
        shutil.copyfile(VOICES / f"{name}.pt", OUT / f"{name}.pt")
        t = torch.load(VOICES / f"{name}.pt", weights_only=True)
        data = t.numpy().tobytes()
        voices[name] = {"shape": list(t.shape), "dtype": str(t.numpy().dtype)}
        voices[name]["sha256"] = hashlib.sha256(data).hexdigest()
    (OUT / "kokoro_voices.json").write_text(json.dumps(voices, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total / 1024:.0f} KiB, to {OUT}")


if __name__ == "__main__":
    sys.exit(main())
