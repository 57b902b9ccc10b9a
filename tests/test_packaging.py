"""Each package builds (sdist, then wheel from it) and installs alone into a fresh venv."""

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
