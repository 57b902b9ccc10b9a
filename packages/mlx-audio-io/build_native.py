"""cffi (API mode, out-of-line) builder for ``mlx_audio_io._native``.

The C sources live in ``native/`` (a link to the repository's ``native/io``). Compiler and
linker flags for libav, libmpg123, libsoxr, libvorbisfile and libFLAC come from pkg-config.
``MLX_AUDIO_IO_SANITIZE=1`` builds with AddressSanitizer and UndefinedBehaviorSanitizer
(``make test-asan``). On macOS, AudioToolbox is linked too (``aio_at.c``: AIFF, CAF and M4A);
macOS's linker keeps each library's symbols to itself (two-level namespace), so the static
archives need no ``--exclude-libs`` there.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
NATIVE = HERE / "native"
PKG_CONFIG_LIBS = [
    "libavformat",
    "libavcodec",
    "libavutil",
    "libmpg123",
    "soxr",
    "vorbisfile",
    "vorbis",
    "ogg",
    "flac",
]
SOURCES = [
    "aio_core.c",
    "aio_wav.c",
    "aio_mp3.c",
    "aio_av.c",
    "aio_resample.c",
    "aio_ogg.c",
    "aio_flac.c",
    "aio_nn.c",
    "aio_at.c",  # macOS only (AudioToolbox); empty elsewhere
]
#: macOS decodes and encodes AIFF, CAF and M4A through AudioToolbox (native/io/aio_at.c)
APPLE = sys.platform == "darwin"


#: a prefix of static, position-independent archives (tools/wheels/build_static_libs.sh) to
#: link into the extension instead of the system's shared libraries
STATIC = os.environ.get("MLX_AUDIO_IO_STATIC")


def _pkg_config(*args: str) -> list[str]:
    env = None
    if STATIC:
        env = {**os.environ, "PKG_CONFIG_PATH": str(Path(STATIC) / "lib" / "pkgconfig")}
        env["PKG_CONFIG_LIBDIR"] = env["PKG_CONFIG_PATH"]  # not the system's .pc files
        args = ("--static", *args)
    try:
        out = subprocess.run(
            ["pkg-config", *args, *PKG_CONFIG_LIBS],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        sys.exit(
            "mlx-audio-io needs pkg-config and the development files of libav, libmpg123, "
            "libsoxr, libvorbisfile and libFLAC. On Debian/Ubuntu: apt-get install pkg-config "
            "libavformat-dev libavcodec-dev libavutil-dev libmpg123-dev libsoxr-dev "
            "libvorbis-dev libflac-dev\n" + detail
        )
    return shlex.split(out)


def _flags() -> tuple[list[str], list[str]]:
    cflags = ["-std=c11", "-O3", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"]
    # no errno from lrintf & co, no floating-point traps: lets the sample-conversion loops and
    # the model kernels (aio_nn.c) vectorise
    cflags += ["-D_GNU_SOURCE", "-fvisibility=hidden", "-fno-math-errno", "-fno-trapping-math"]
    ldflags: list[str] = []
    if os.environ.get("MLX_AUDIO_IO_SANITIZE") == "1":
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover"]
        cflags = [f for f in cflags if f != "-O3"] + ["-O1", "-g"] + san
        ldflags += san
    inc = _pkg_config("--cflags")
    if APPLE:
        cflags.append("-DAIO_HAVE_AUDIOTOOLBOX")
        ldflags += ["-framework", "AudioToolbox", "-framework", "CoreFoundation"]
    if STATIC and not APPLE:  # the archives' symbols stay inside, clashing with no other copy
        ldflags += ["-Wl,--exclude-libs,ALL", "-Wl,-Bsymbolic"]
        # their headers as system headers, as /usr/include's are (-Werror is for our code)
        inc = ["-isystem" + f[2:] if f.startswith("-I") else f for f in inc]
    return cflags + inc, ldflags + _pkg_config("--libs")


ffibuilder = FFI()
ffibuilder.cdef((NATIVE / "io.cdef.h").read_text())
_cflags, _ldflags = _flags()
ffibuilder.set_source(
    "mlx_audio_io._native",
    '#include "aio.h"',
    # setuptools wants paths relative to the project; the standalone build (below) chdirs
    sources=[str(NATIVE / s) if __name__ == "__main__" else f"native/{s}" for s in SOURCES],
    include_dirs=[str(NATIVE)],
    extra_compile_args=_cflags,
    extra_link_args=_ldflags,
)

if __name__ == "__main__":
    # Standalone build into a folder, for the sanitizer run: python build_native.py OUTDIR
    ffibuilder.compile(tmpdir=sys.argv[1] if len(sys.argv) > 1 else ".", verbose=False)
