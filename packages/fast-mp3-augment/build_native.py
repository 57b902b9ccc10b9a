"""cffi (API mode) builder for ``fast_mp3_augment._native``: LAME encodes, libmpg123 decodes.

LAME has no pkg-config file on Debian; it is linked as ``-lmp3lame``.
``FMA_SANITIZE=1`` builds with AddressSanitizer and UndefinedBehaviorSanitizer.
``FMA_STATIC=PREFIX`` links the static archives of ``tools/wheels/build_static_libs.sh``
instead of the system's shared libraries (what a self-contained wheel carries).
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
NATIVE = HERE / "native"


STATIC = os.environ.get("FMA_STATIC")


def _mpg123(flag: str) -> list[str]:
    env, args = None, [flag]
    if STATIC:
        pc = str(Path(STATIC) / "lib" / "pkgconfig")
        env = {**os.environ, "PKG_CONFIG_PATH": pc, "PKG_CONFIG_LIBDIR": pc}
        args = ["--static", flag]
    try:
        out = subprocess.run(
            ["pkg-config", *args, "libmpg123"], check=True, capture_output=True, text=True, env=env
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(
            "fast-mp3-augment needs pkg-config, libmpg123 and LAME. On Debian/Ubuntu: "
            f"apt-get install pkg-config libmpg123-dev libmp3lame-dev\n{e}"
        )
    return shlex.split(out)


cflags = [
    "-std=c11",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-D_GNU_SOURCE",
    "-fvisibility=hidden",
    *_mpg123("--cflags"),
]
ldflags = [*_mpg123("--libs"), "-lmp3lame", "-lpthread"]
if STATIC:  # headers as system headers; the archives' symbols stay inside the extension
    cflags = ["-isystem" + f[2:] if f.startswith("-I") else f for f in cflags]
    ldflags = [f"-L{Path(STATIC) / 'lib'}", *ldflags, "-lm"]
    if sys.platform != "darwin":  # macOS's two-level namespace keeps them inside already
        ldflags.append("-Wl,--exclude-libs,ALL")
if os.environ.get("FMA_SANITIZE") == "1":
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover", "-g"]
    cflags += san
    ldflags += san

ffibuilder = FFI()
ffibuilder.cdef((NATIVE / "mp3.cdef.h").read_text())
ffibuilder.set_source(
    "fast_mp3_augment._native",
    '#include "mp3.cdef.h"',
    sources=[str(NATIVE / "fma.c") if __name__ == "__main__" else "native/fma.c"],
    include_dirs=[str(NATIVE)],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=sys.argv[1] if len(sys.argv) > 1 else ".", verbose=False)
