"""Each package builds (sdist, then wheel from it) and installs alone into a fresh venv."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "mlx-audio-io": "mlx_audio_io",
    "mlx-audio-streaming": "mlx_audio_streaming",
    "mlx-audio-tts": "mlx_audio_tts",
    "mlx-audio-sts": "mlx_audio_sts",
    "fast-mp3-augment": "fast_mp3_augment",
}
SMOKE = """
import sys, numpy as np, {mod}, mlx_audio_io as aio
aio.save("s.flac", np.zeros((100, 2), np.float32), 44100)
assert aio.info("s.flac").frames == 100
heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "mlx_audio_tts", "mlx_audio_sts")]
assert not heavy or "{mod}" in ("mlx_audio_tts", "mlx_audio_sts"), heavy
from mlx_audio_io import _lib  # the wheel has _prim, loaded unless MLX's version differs
assert _lib.prim() is not None or "built for mlx" in _lib.prim_error(), _lib.prim_error()
print({mod}.__version__)
"""


def _uv(*args, **kw):
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not installed; `make test` installs it")
    return subprocess.run([uv, *args], check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    for dist in PACKAGES:
        _uv("build", "--package", dist, "-o", str(out), cwd=ROOT)
    return out


def test_versions_sort_after_the_pypi_releases_of_the_same_names():
    """mlx-audio-io (up to 1.3.24) and fast-mp3-augment (up to 0.2.0) have releases on PyPI
    under these names; ours are their next major version, so a sibling pin such as
    ``mlx-audio-io==X`` resolves to ours from an index, and ``pip install -U`` never goes back."""
    released = {"mlx-audio-io": (1, 3, 24), "fast-mp3-augment": (0, 2, 0)}
    for dist, newest in released.items():
        meta = tomllib.loads((ROOT / "packages" / dist / "pyproject.toml").read_text())
        ours = tuple(int(x) for x in meta["project"]["version"].split("."))
        assert ours[0] > newest[0], (dist, ours, newest)
    for dist in PACKAGES:  # siblings pin each other exactly
        meta = tomllib.loads((ROOT / "packages" / dist / "pyproject.toml").read_text())
        deps = meta["project"]["dependencies"] + sum(
            meta["project"].get("optional-dependencies", {}).values(), []
        )
        for dep in deps:
            name = dep.split("==")[0].split("[")[0].strip()
            if name in PACKAGES:
                assert dep.endswith("==" + meta["project"]["version"]), (dist, dep)


def test_versions_agree():
    versions = set()
    for dist, mod in PACKAGES.items():
        meta = tomllib.loads((ROOT / "packages" / dist / "pyproject.toml").read_text())
        versions.add(meta["project"]["version"])
        init = (ROOT / "packages" / dist / "src" / mod / "__init__.py").read_text()
        assert f'__version__ = "{meta["project"]["version"]}"' in init
    assert len(versions) == 1  # lockstep


@pytest.mark.parametrize("dist", list(PACKAGES))
def test_wheel_installs_alone(wheels, tmp_path, dist):
    venv = tmp_path / "venv"
    _uv("venv", "-q", "--python", sys.executable, str(venv))
    py = venv / "bin" / "python"
    wheel = next(wheels.glob(PACKAGES[dist] + "-*.whl"))
    _uv("pip", "install", "-q", "--python", str(py), "--find-links", str(wheels), str(wheel))
    r = subprocess.run(
        [str(py), "-c", SMOKE.format(mod=PACKAGES[dist])],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    meta = tomllib.loads((ROOT / "packages" / dist / "pyproject.toml").read_text())
    assert r.stdout.strip() == meta["project"]["version"]


@pytest.mark.parametrize("dist", list(PACKAGES))
def test_wheel_and_sdist_carry_the_license_and_the_notices(wheels, dist):
    import tarfile
    import zipfile

    wheel = next(wheels.glob(PACKAGES[dist] + "-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for want in ("LICENSE", "THIRD_PARTY_NOTICES.md"):
        assert any(n.endswith(f".dist-info/licenses/{want}") for n in names), (wheel.name, want)
    sdist = next(wheels.glob(PACKAGES[dist].replace("_", "-") + "-*.tar.gz"), None) or next(
        wheels.glob(PACKAGES[dist] + "-*.tar.gz")
    )
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
        for want in ("LICENSE", "THIRD_PARTY_NOTICES.md"):
            assert want in members and members[want].isfile(), (sdist.name, want)
            assert tar.extractfile(members[want]).read().strip(), (sdist.name, want)


# ---- release tooling (tools/wheels, the macOS shim): what can be checked on this machine ----


def _tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "wheels" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "wheel, version, ok",
    [
        ("mlx_audio_io-2.0.0-cp311-cp311-manylinux_2_35_x86_64.whl", (3, 11), True),
        ("mlx_audio_io-2.0.0-cp311-cp311-manylinux_2_35_x86_64.whl", (3, 12), False),
        ("fast_mp3_augment-2.0.0-cp310-abi3-manylinux_2_34_x86_64.whl", (3, 13), True),
        ("fast_mp3_augment-2.0.0-cp310-abi3-manylinux_2_34_x86_64.whl", (3, 9), False),
        ("mlx_audio_tts-2.0.0-py3-none-any.whl", (3, 10), True),
    ],
)
def test_check_wheels_matches_wheel_tags_to_pythons(wheel, version, ok):
    assert _tool("check_wheels").accepts(Path(wheel), version) is ok


def test_find_pythons_finds_this_interpreter():
    me = "{}.{}".format(*sys.version_info[:2])
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools/wheels/find_pythons.py"), me, "2.1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0 and "no Python 2.1" in r.stderr
    found = r.stdout.split()
    assert len(found) == 1
    out = subprocess.run([found[0], "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True).stdout  # fmt: skip
    assert out.strip() == str(sys.version_info[:2])


def test_static_sources_are_pinned_by_checksum():
    # every library the script builds has a pinned tarball (name, SHA-256, SHA-1 for
    # snapshot.debian.org), so the build is the same bytes on every platform
    script = (ROOT / "tools/wheels/build_static_libs.sh").read_text()
    table = script.split('SOURCES="', 1)[1].split('"', 1)[0]
    rows = {line.split()[0]: line.split() for line in table.strip().splitlines()}
    built = set(re.findall(r"^autotools (\S+)", script, re.M)) | {"libsoxr", "ffmpeg"}
    assert built == set(rows)
    for name, (_, pool, tarball, sha256, sha1) in rows.items():
        assert pool.startswith("main/") and pool.endswith("/" + tarball.split("_")[0]), name
        assert re.fullmatch(r"[0-9a-f]{64}", sha256) and re.fullmatch(r"[0-9a-f]{40}", sha1)


def test_macos_audiotoolbox_shim_compiles_against_the_api_declarations():
    # aio_at.c runs only on macOS (untested until the CI workflow runs there); here it and its
    # call sites in aio_core.c are compiled with the warnings the real build uses, against
    # tools/macos/stubs (the SDK's declarations of the API it calls); the C compiler is the
    # one every native build here needs
    for source in ("aio_at.c", "aio_core.c"):
        r = subprocess.run(
            ["cc", "-fsyntax-only", "-std=c11", "-D_GNU_SOURCE", "-DAIO_HAVE_AUDIOTOOLBOX",
             "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
             f"-I{ROOT / 'tools/macos/stubs'}", f"-I{ROOT / 'native/io'}",
             str(ROOT / "native/io" / source)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
