"""Process-level behaviour, each in a fresh interpreter: the BLAS preload, import order, and
libav staying silent on stderr."""

import subprocess
import sys
import textwrap

import pytest

MATMUL = textwrap.dedent(
    """
    import time
    import mlx_audio_io
    import mlx.core as mx
    a = mx.random.normal((1024, 1024)); mx.eval(a @ a)
    best = min((lambda t: (mx.eval(a @ a), time.perf_counter() - t)[1])(time.perf_counter())
               for _ in range(3))
    print(best)
    """
)


def _run(code: str, env_extra=None, **kw) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, **kw
    )


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS uses Accelerate; no preload there")
def test_blas_preload_makes_matmul_at_least_5x_faster():
    fast = float(_run(MATMUL).stdout)
    slow = float(_run(MATMUL, {"MLX_AUDIO_BLAS": "off"}).stdout)
    assert slow / fast >= 5, f"preloaded {fast:.4f} s vs off {slow:.4f} s"


def test_preload_state_is_reported():
    out = _run("import mlx_audio_io._blas as b; print(b.loaded is not None, repr(b.reason))").stdout
    assert out.startswith("True") or sys.platform == "darwin"
    off = _run(
        "import mlx_audio_io._blas as b; print(b.loaded, b.reason)", {"MLX_AUDIO_BLAS": "off"}
    ).stdout
    assert off.strip() == "None disabled by MLX_AUDIO_BLAS"


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS uses Accelerate; no preload there")
def test_preload_shortens_openblas_spin_unless_set():
    code = "import os, mlx_audio_io; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True).stdout  # fmt: skip
    assert default.strip() == "20"
    assert _run(code, {"OPENBLAS_THREAD_TIMEOUT": "25"}).stdout.strip() == "25"


def test_importing_mlx_first_warns_with_the_fix():
    r = _run(
        "import warnings; warnings.simplefilter('always')\nimport mlx.core\nimport mlx_audio_io"
    )
    if sys.platform != "darwin":
        assert "Import mlx_audio_io" in r.stderr and "before mlx" in r.stderr
    clean = _run("import warnings; warnings.simplefilter('error')\nimport mlx_audio_io")
    assert clean.stderr == ""


def test_libav_never_writes_to_stderr(tmp_path):
    bad = tmp_path / "bad.m4a"
    bad.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(range(256)) * 20)
    code = (
        "import mlx_audio_io as a\n"
        f"for p in [{str(bad)!r}]:\n"
        "    try: a.load(p)\n"
        "    except Exception as e: print(type(e).__name__, e)\n"
    )
    r = _run(code)
    assert r.stderr == ""
    assert "RuntimeError" in r.stdout or "AudioDecodeError" in r.stdout
