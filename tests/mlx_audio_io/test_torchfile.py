"""mlx_audio_io.torchfile: torch.save files read with no torch and no code execution.

The fixtures come from tools/parity/make_torchfile_fixtures.py (run in the torch venv): each
`<name>.pt` has a `<name>.npz` (the tensors as torch's own .numpy() gave them) and a `<name>.json`
(the rest of the tree, tagged), so every value is compared bit for bit without torch here.
Hostile pickles are also built here, byte by byte, from pickle opcodes.
"""

import collections
import copy
import hashlib
import io
import json
import os
import pickle
import random
import re
import resource
import struct
import subprocess
import sys
import zipfile
from fractions import Fraction
from pathlib import Path

from mlx_audio_io.errors import AudioDecodeError, AudioFormatError, AudioIOError
from mlx_audio_io.torchfile import GlobalRef, UnsafeCheckpointError, load_torch_file

import numpy as np
import pytest

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "torchfile"
TREES = ["dtypes", "views", "nested", "legacy_dtypes", "legacy_views", "legacy_nested"]
TREES += ["legacy_storage_views"]
EVIL = ["evil_system.pt", "evil_eval.pt", "evil_legacy.pt"]
PWNED = "pwned_by_torchfile"  # the file every payload here would create in the working folder
LEGACY_HEAD = b"".join(pickle.dumps(h, protocol=2) for h in (0x1950A86A20F9469CFC6C, 1001, {}))


def _decode(node, arrays):
    """The expected tree from its JSON form (see encode() in the fixture maker)."""
    if not isinstance(node, dict):
        return node
    ((tag, v),) = node.items()
    if tag in ("__dict__", "__odict__"):
        pairs = [(_decode(k, arrays), _decode(x, arrays)) for k, x in v]
        return collections.OrderedDict(pairs) if tag == "__odict__" else dict(pairs)
    containers = {"__list__": list, "__tuple__": tuple, "__set__": set, "__frozenset__": frozenset}
    if tag in containers:
        return containers[tag](_decode(x, arrays) for x in v)
    scalars = {"__global__": GlobalRef, "__fraction__": Fraction, "__complex__": complex}
    if tag in scalars:
        return scalars[tag](*v)
    return arrays[v] if tag == "__array__" else bytes.fromhex(v)


def expected(stem: str):
    with np.load(FIX / f"{stem}.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return _decode(json.loads((FIX / f"{stem}.json").read_text()), arrays)


def assert_same(ours, want, where="root"):
    """Same types, keys, order and values; arrays bit-exact, same dtype and shape, C-contiguous."""
    assert type(ours) is type(want), f"{where}: {type(ours).__name__} != {type(want).__name__}"
    if isinstance(want, np.ndarray):
        assert (ours.dtype, ours.shape) == (want.dtype, want.shape), where
        assert ours.flags.c_contiguous and ours.flags.writeable, where
        assert ours.tobytes() == np.ascontiguousarray(want).tobytes(), where
    elif isinstance(want, dict):
        assert list(ours) == list(want), where
        for k in want:
            assert_same(ours[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(ours) == len(want), where
        for i, (a, b) in enumerate(zip(ours, want, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert ours == want or (ours != ours and want != want), f"{where}: {ours!r} != {want!r}"


# hand-made pickles: GLOBAL, values, tensors, and the two containers
def glob(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def val(x) -> bytes:
    """The opcodes that push x (protocol 2, without PROTO and STOP)."""
    return pickle.dumps(x, protocol=2)[2:-1]


def tensor(offset=0, size=(2, 2), stride=(2, 1), key="0", storage=("torch", "FloatStorage"),
           numel=4):  # fmt: skip
    pid = b"(" + val("storage") + glob(*storage) + val(key) + val("cpu") + val(numel) + b"tQ"
    args = pid + val(offset) + val(size) + val(stride) + val(False) + b"}"
    return glob("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"


def program(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def zip_of(pkl: bytes, storages=None, folder="archive", byteorder="little") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{folder}/data.pkl", pkl)
        zf.writestr(f"{folder}/byteorder", byteorder)
        for key, data in (storages or {}).items():
            zf.writestr(f"{folder}/data/{key}", data)
    return buf.getvalue()


def legacy_of(pkl: bytes, storages=None) -> bytes:
    records = b"".join(struct.pack("<q", len(d) // 4) + d for d in (storages or {}).values())
    return LEGACY_HEAD + pkl + val(list(storages or {})) + b"." + records


def write(tmp_path, data: bytes, name="x.pt") -> Path:
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


FOUR = np.arange(4, dtype="<f4").tobytes()


@pytest.mark.parametrize("stem", TREES)
def test_trees_match_torch(stem):
    path = FIX / f"{stem}.pt"
    assert_same(load_torch_file(path), expected(stem))


def test_every_dtype():
    ours = load_torch_file(FIX / "dtypes.pt")
    for name in ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8"]:
        assert ours[name].dtype == np.dtype(name)
    assert ours["uint16"].dtype == np.uint16 and ours["bool"].dtype == np.bool_
    assert ours["complex64"].dtype == np.complex64 and ours["complex128"].dtype == np.complex128
    assert ours["bfloat16"].dtype == np.float32  # widened exactly: the low 16 bits are zero
    assert not (ours["bfloat16"].view(np.uint32) & 0xFFFF).any()
    np.testing.assert_allclose(ours["bfloat16"], ours["float32"], rtol=2**-8)
    assert ours["scalar"].shape == () and ours["scalar"] == 2.5
    assert ours["empty"].shape == (0, 4) and ours["param"].shape == (2, 3)


def test_views_are_right_and_independent():
    ours = load_torch_file(FIX / "views.pt")
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert np.array_equal(ours["transposed"], base.T)
    assert np.array_equal(ours["slice"], base[1:3, 2:5])
    assert np.array_equal(ours["every_other"], base[:, ::2])
    assert np.array_equal(ours["expanded"], np.broadcast_to(np.arange(3.0), (4, 3)))
    assert np.array_equal(ours["shared_a"], np.arange(2, 8))
    assert np.array_equal(ours["shared_b"], np.arange(12).reshape(3, 4)[1:, 1:])
    ours["base"][:] = -1  # copies: writing one array leaves the views of its storage alone
    assert np.array_equal(ours["transposed"], base.T)
    a, b = ours["same_twice"]  # one tensor saved twice: one array twice, as torch.load gives
    assert a is b and not np.shares_memory(a, ours["shared_a"])


def test_legacy_and_zip_agree():
    for stem in ("dtypes", "views", "nested"):
        assert_same(load_torch_file(FIX / f"legacy_{stem}.pt"), load_torch_file(FIX / f"{stem}.pt"))


def test_plain_values():
    ours = load_torch_file(FIX / "nested.pt")
    assert type(ours["config"]["segment"]) is Fraction and ours["config"]["segment"] == Fraction(
        39, 5
    )
    assert type(ours["ordered"]) is collections.OrderedDict and list(ours["ordered"]) == ["z", "a"]
    assert ours["shape"] == (2, 3) and ours["int_keys"] == {0: "zero", 7: "seven"}
    assert ours["misc"][:5] == [complex(1, -2), b"\x00\xffab", b"", {1, 2, 3}, frozenset({"x"})]
    assert ours["dtype"] == GlobalRef("torch", "float32")
    assert ours["bf16_dtype"] == GlobalRef("torch", "bfloat16")


def test_demucs_package_refused_by_default():
    with pytest.raises(UnsafeCheckpointError) as e:
        load_torch_file(FIX / "demucs.th")
    assert isinstance(e.value, ValueError) and isinstance(e.value, AudioFormatError)
    msg = str(e.value)
    assert msg.startswith(f"load failed for '{FIX / 'demucs.th'}': ")
    assert "'demucs.htdemucs.HTDemucs', which this loader does not run" in msg
    assert "globals_as_refs" in msg


def test_demucs_package_with_refs_and_stand_ins():
    ours = load_torch_file(FIX / "demucs.th", globals_as_refs=True)
    assert_same(ours, expected("demucs"))
    assert ours["klass"] == GlobalRef("demucs.htdemucs", "HTDemucs")
    assert ours["kwargs"]["segment"] == Fraction(39, 5)
    assert all(v.dtype == np.float16 for v in ours["state"].values())

    class Marker:
        pass

    stand_in = {("demucs.htdemucs", "HTDemucs"): Marker}
    assert load_torch_file(FIX / "demucs.th", extra_globals=stand_in)["klass"] is Marker


def test_extra_globals_are_called_with_their_arguments(tmp_path):
    body = b"(" + val("n") + glob("my.mod", "Thing") + val((1, "two")) + b"Ru"
    path = write(tmp_path, zip_of(program(b"}" + body)))
    got = load_torch_file(path, extra_globals={("my.mod", "Thing"): lambda *a: ("made", a)})
    assert got == {"n": ("made", (1, "two"))}


def test_global_ref_is_inert():
    ref = GlobalRef("os", "system")
    with pytest.raises(UnsafeCheckpointError, match="calls 'os.system'"):
        ref("echo hi")
    assert copy.deepcopy(ref) == ref and pickle.loads(pickle.dumps(ref)) == ref
    assert {ref: 1}[GlobalRef("os", "system")] == 1


@pytest.mark.parametrize("name", EVIL)
@pytest.mark.parametrize("refs", [False, True])
def test_malicious_fixtures_refused(name, refs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeCheckpointError) as e:
        load_torch_file(FIX / name, globals_as_refs=refs)
    target = "'builtins.eval'" if "eval" in name else "'os.system'"
    assert target in str(e.value) and "which this loader does not run" in str(e.value)
    assert str(FIX / name) in str(e.value)
    assert not (tmp_path / PWNED).exists()


TOUCH = glob("os", "system") + val(f"touch {PWNED}")
PAYLOADS = {
    "reduce": TOUCH + b"\x85R",
    "newobj": glob("subprocess", "Popen") + val(("touch", PWNED)) + b"\x81",
    "newobj_ex": glob("subprocess", "Popen") + val(("touch", PWNED)) + b"}\x92",
    "build": glob("os", "system") + val({"__class__": 1}) + b"b",
    "inst": b"(" + val(f"touch {PWNED}") + b"ios\nsystem\n",
    "obj": b"(" + TOUCH + b"o",
    "stack_global": val("os") + val("system") + b"\x93" + val(f"touch {PWNED}") + b"\x85R",
    "python2_name": glob("__builtin__", "eval") + val(f"open('{PWNED}', 'w')") + b"\x85R",
    "as_storage": tensor(storage=("os", "system")),
    "in_tensor_args": glob("torch._utils", "_rebuild_tensor_v2") + b"(" + TOUCH + b"\x85Rt" + b"R",
    "deep": b"}(" + val("state") + b"](" + val(1) + TOUCH + b"\x85Reu",
}


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("container", [zip_of, legacy_of])
@pytest.mark.parametrize("refs", [False, True])
def test_crafted_attacks_refused(payload, container, refs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, container(program(PAYLOADS[payload])))
    with pytest.raises(UnsafeCheckpointError, match="this loader does not run"):
        load_torch_file(path, globals_as_refs=refs)
    assert not (tmp_path / PWNED).exists()


def test_refs_only_as_plain_values(tmp_path):
    pkl = program(b"]" + glob("os", "system") + b"a" + glob("a.b", "C") + b"a")
    path = write(tmp_path, zip_of(pkl))
    assert load_torch_file(path, globals_as_refs=True) == [
        GlobalRef("os", "system"),
        GlobalRef("a.b", "C"),
    ]


@pytest.mark.parametrize("container", [zip_of, legacy_of])
def test_hand_made_tensors(container, tmp_path):
    path = write(
        tmp_path, container(program(tensor(offset=1, size=(3,), stride=(1,))), {"0": FOUR})
    )
    assert np.array_equal(load_torch_file(path), np.array([1, 2, 3], np.float32))


def test_big_endian_zip(tmp_path):
    data = np.arange(4, dtype=">f4").tobytes()
    path = write(tmp_path, zip_of(program(tensor()), {"0": data}, byteorder="big"))
    got = load_torch_file(path)
    assert got.dtype == np.float32 and got.dtype.isnative
    assert np.array_equal(got, np.arange(4, dtype=np.float32).reshape(2, 2))


@pytest.mark.parametrize(
    "geometry",
    [
        dict(offset=1),  # 1 + (2 - 1) * 2 + (2 - 1) * 1 = 4: one past the end
        dict(size=(3, 2)),
        dict(stride=(2, -1)),
        dict(size=(2, "a")),
        dict(size=(2,)),
        dict(offset=-1),
        dict(key="1"),  # no such storage in the archive
        dict(size=(2**70,), stride=(1,)),
        dict(size=[2] * 65, stride=[0] * 65),
    ],
)
@pytest.mark.parametrize("container", [zip_of, legacy_of])
def test_bad_tensor_geometry(geometry, container, tmp_path):
    path = write(tmp_path, container(program(tensor(**geometry)), {"0": FOUR}))
    with pytest.raises(AudioDecodeError, match=r"load failed for '.*x\.pt': corrupt or truncated"):
        load_torch_file(path)


# Resource bounds (issue 15): short files that used to hang, crash or exhaust memory. Those that
# could still do so run in a child process with a time limit and a 2 GiB address-space cap.
CHILD = """
import sys
from mlx_audio_io.torchfile import load_torch_file
try:
    load_torch_file(sys.argv[1])
    print("loaded")
except Exception as e:
    print(type(e).__name__, e)
"""


def _cap_memory():
    # AddressSanitizer (make test-asan) reserves terabytes of shadow address space at start:
    # under it the bounds are checked by the loader's own refusals, without the cap
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def load_in_child(path: Path, timeout: float = 60) -> str:
    """``"<exception name> <message>"`` (or ``"loaded"``) of load_torch_file(path) in a capped
    child; a hang fails the test at ``timeout`` seconds, a crash on the exit code."""
    run = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                         text=True, timeout=timeout, preexec_fn=_cap_memory)  # fmt: skip
    assert run.returncode == 0, f"the loader crashed ({run.returncode}): {run.stderr[-2000:]}"
    return run.stdout.strip()


def shared_pairs(levels: int) -> bytes:
    """T_k = (T_{k-1}, T_{k-1}) from 0: 5 bytes a level, 2**levels leaves when walked."""
    body = val(0)
    for k in range(levels):
        body += b"q" + bytes([k]) + b"h" + bytes([k]) + b"\x86"  # BINPUT k, BINGET k, TUPLE2
    return body


def call(module: str, name: str, *args) -> bytes:
    return glob(module, name) + val(args) + b"R"


BIG = random.Random(0).getrandbits(8 << 20)  # 1 MB integers: Fraction's gcd takes minutes
SIZE = glob("torch", "Size")  # tuple(): each call copies its argument
LONG_LIST = b"](" + val(0) * 200_000 + b"eq\x00"  # memo 0: a list of 200000 zeros, 400 kB
SHARED_DICT = b"}q\x00(" + b"h\x00" * 50_000 + b"l"  # a list of 50000 references to one dict
ITEMS = b"".join(val(i) + val(0) for i in range(50_000))  # which is filled after
BOMBS = {
    "fraction_exponent": call("fractions", "Fraction", "1e999999999"),
    "fraction_big_integers": call("fractions", "Fraction", BIG | 1, (BIG >> 3) | 1),
    "shared_tuple_as_dict_key": b"}" + shared_pairs(120) + val(1) + b"s",
    "shared_tuple_in_a_set": glob("builtins", "set") + b"(]" + shared_pairs(120) + b"at" + b"R",
    "shared_tuple_in_a_persistent_id": shared_pairs(120) + b"Q",
    "nesting_as_dict_key": b"}" + val(0) + b"\x85" * 200_000 + val(1) + b"s",
    "self_containing_list": b"]q\x00" + b"h\x00a" * 200 + SIZE + b"h\x00\x85R",
    "repeated_tuple_of_a_long_list": LONG_LIST + b"]" + (SIZE + b"h\x00\x85Ra") * 5000,  # 8 GB
    "shared_dict_filled_late": SHARED_DICT + b"h\x00(" + ITEMS + b"u0",  # 2.5e9 to walk
}


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_pickle_bombs_are_refused(bomb, tmp_path):
    path = write(tmp_path, zip_of(program(BOMBS[bomb])))
    got = load_in_child(path)
    assert got.startswith(f"UnsafeCheckpointError load failed for '{path}': "), got
    assert "bound" in got


def test_stride_zero_tensors_are_bounded(tmp_path):
    """Four stride-0 views of a 16-byte storage asked for 8 GiB; torch's own expand() views
    (views.pt's "expanded") and a few MiB of broadcast still load."""
    pkl = program(b"](" + tensor(size=(2**14, 2**15), stride=(0, 0)) * 4 + b"e")
    got = load_in_child(write(tmp_path, zip_of(pkl, {"0": FOUR})))
    assert got.startswith("UnsafeCheckpointError") and "repeats its storage of 4" in got, got
    pkl = program(tensor(size=(2**20, 2**20), stride=(0, 0)))  # 4 TiB
    with pytest.raises(UnsafeCheckpointError, match=r"more than twice its storages' 16 bytes"):
        load_torch_file(write(tmp_path, zip_of(pkl, {"0": FOUR})))
    pkl = program(tensor(size=(512, 1024), stride=(0, 1), numel=1024))  # 2 MiB from 4 kB
    small = load_torch_file(write(tmp_path, zip_of(pkl, {"0": np.ones(1024, "<f4").tobytes()})))
    assert small.shape == (512, 1024) and small.sum() == 512 * 1024


@pytest.mark.parametrize("container", [zip_of, legacy_of])
def test_many_views_of_one_storage_are_bounded(container, tmp_path):
    """200 full views of a 256 kB storage would be 51 MB from a 256 kB file."""
    data = np.zeros(65536, "<f4").tobytes()
    one = tensor(size=(65536,), stride=(1,), numel=65536)
    path = write(tmp_path, container(program(b"](" + one * 200 + b"e"), {"0": data}))
    with pytest.raises(UnsafeCheckpointError, match="more than twice its storages'"):
        load_torch_file(path)
    path = write(tmp_path, container(program(b"](" + one * 2 + b"e"), {"0": data}))
    assert len(load_torch_file(path)) == 2


def test_zip_bombs_are_refused_before_inflating(tmp_path):
    # a storage bigger than the 16 bytes its tensor's storage declares
    with pytest.raises(
        UnsafeCheckpointError, match="holds 1048576 bytes where its storage declares 16"
    ):
        load_torch_file(write(tmp_path, zip_of(program(tensor()), {"0": bytes(1 << 20)})))
    # 64 MiB of zeros deflated to 64 kB, declared as such: past 64 times the archive's size
    big = tensor(numel=16 << 20)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", program(big))
        with zf.open("archive/data/0", "w") as f:
            for _ in range(64):
                f.write(bytes(1 << 20))
    assert len(buf.getvalue()) < 100_000
    with pytest.raises(UnsafeCheckpointError, match="past 64 times its size"):
        load_torch_file(write(tmp_path, buf.getvalue()))
    # and a data.pkl that inflates to 64 MiB
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("archive/data.pkl", "w") as f:
            f.write(b"\x80\x02(")
            for _ in range(64):
                f.write(b"N" * (1 << 20))
            f.write(b"l.")
    with pytest.raises(UnsafeCheckpointError, match="data.pkl' would inflate"):
        load_torch_file(write(tmp_path, buf.getvalue()))


def test_bounds_leave_real_checkpoints_alone(monkeypatch):
    """torch's own pickles (demucs' and Kokoro's too) walk in under 3 steps a byte: a fifth of
    the bound."""
    from mlx_audio_io import torchfile

    monkeypatch.setattr(torchfile, "_WORK_PER_BYTE", 3)
    monkeypatch.setattr(torchfile, "_WORK_FLOOR", 0)
    others = [
        FIX.parent / "parity" / "htdemucs_reduced.th",
        FIX.parent / "kokoro" / "kokoro_reduced.pth",
    ]
    for path in [*(FIX / n for n in ["dtypes.pt", "views.pt", "nested.pt", "demucs.th"]), *others]:
        with zipfile.ZipFile(path) as zf:
            pkl = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
        torchfile._check_program(io.BytesIO(pkl), len(pkl))


@pytest.mark.parametrize("container", [zip_of, legacy_of])
def test_memo_bomb(container, tmp_path):
    """C pickle would size its memo by a PUT index: 2**31 of them is 16 GiB; refused up front."""
    path = write(tmp_path, container(program(val(1) + b"r" + struct.pack("<I", 2**31))))
    with pytest.raises(AudioDecodeError, match="memo index 2147483648"):
        load_torch_file(path)


@pytest.mark.parametrize(
    "name", ["dtypes.pt", "legacy_dtypes.pt", "legacy_views.pt", "demucs.th", "af_heart.pt"]
)
def test_truncated(name, tmp_path):
    data = (FIX / name).read_bytes()
    cuts = sorted({*range(1, 200, 7), *range(len(data) - 300, len(data), 13)})
    cuts += [len(data) // k for k in (2, 3, 5, 7)] + [len(data) - 1]
    for cut in cuts:
        path = write(tmp_path, data[:cut], f"cut{cut}.pt")
        with pytest.raises(AudioIOError) as e:
            load_torch_file(path, globals_as_refs=True)
        assert f"load failed for '{path}'" in str(e.value)
        assert isinstance(
            e.value, AudioDecodeError if cut >= 4 else (AudioDecodeError, AudioFormatError)
        )


@pytest.mark.parametrize(
    "name", ["views.pt", "legacy_views.pt", "legacy_nested.pt", "legacy_dtypes.pt"]
)
def test_corrupted_bytes_never_escape(name, tmp_path):
    """Random byte flips: the file loads (the flip hit data) or raises one of our errors."""
    data = (FIX / name).read_bytes()
    rng = np.random.default_rng(0)
    for _ in range(300):
        bad = bytearray(data)
        for pos in rng.integers(0, len(data), rng.integers(1, 4)):
            bad[pos] = rng.integers(0, 256)
        try:
            load_torch_file(io.BytesIO(bytes(bad)), globals_as_refs=True)
        except AudioIOError:
            pass


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "the file is empty"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "no zip or pickle header"),
        (pickle.dumps({"a": 1}, protocol=2), "a pickle without the torch.save magic number"),
        (b"just some text\n", "no zip or pickle header"),
    ],
)
def test_not_a_checkpoint(data, reason, tmp_path):
    path = write(tmp_path, data)
    with pytest.raises(
        AudioFormatError, match=f"load failed for '.*': not a PyTorch checkpoint \\({reason}"
    ):
        load_torch_file(path)


def test_zip_without_data_pkl(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("song.txt", "la la")
    with pytest.raises(AudioFormatError, match="a zip archive without <folder>/data.pkl"):
        load_torch_file(write(tmp_path, buf.getvalue()))


def test_missing_file_and_bad_arguments(tmp_path):
    missing = tmp_path / "nope.pt"
    message = re.escape(f"load failed for '{missing}': file not found")
    with pytest.raises(FileNotFoundError, match=message) as e:
        load_torch_file(missing)
    assert e.value.filename == str(missing)
    with pytest.raises(AudioDecodeError, match="load failed for"):
        load_torch_file(tmp_path)  # a folder
    with pytest.raises(TypeError, match="must be a path or a binary file object, got 3"):
        load_torch_file(3)


class _Stream(io.RawIOBase):
    """A read-only, non-seekable stream (a pipe or an HTTP response body)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, b):
        return self._data.readinto(b)


@pytest.mark.parametrize("stem", ["views", "legacy_views"])
def test_file_objects(stem):
    path = FIX / f"{stem}.pt"
    want = expected(stem)
    with open(path, "rb") as f:
        assert_same(load_torch_file(f), want)
    assert_same(load_torch_file(io.BytesIO(path.read_bytes())), want)
    assert_same(load_torch_file(_Stream(path.read_bytes())), want)
    with pytest.raises(AudioFormatError, match="load failed for '<file object>'"):
        load_torch_file(io.BytesIO(b"junk"))
    with pytest.raises(UnsafeCheckpointError, match="load failed for '<file object>'"):
        load_torch_file(io.BytesIO((FIX / "evil_system.pt").read_bytes()))


@pytest.mark.parametrize("voice", ["af_heart", "af_bella"])
def test_kokoro_voice_packs(voice):
    want = json.loads((FIX / "kokoro_voices.json").read_text())[voice]
    ours = load_torch_file(FIX / f"{voice}.pt")
    assert ours.shape == tuple(want["shape"]) == (510, 1, 256)
    assert ours.dtype == np.float32 == np.dtype(want["dtype"])
    assert hashlib.sha256(ours.tobytes()).hexdigest() == want["sha256"]
