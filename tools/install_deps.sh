#!/usr/bin/env bash
# Installs what the workspace needs from outside PyPI: Debian packages (as root) and uv.
# Without root, prints the exact apt-get line and stops.
set -euo pipefail

PACKAGES=(build-essential pkg-config libavformat-dev libavcodec-dev libavutil-dev
          libswresample-dev libmpg123-dev libmp3lame-dev libsoxr-dev libvorbis-dev libflac-dev libopenblas0-pthread
          ffmpeg lame clang libclang-rt-14-dev libportaudio2 chromium fonts-liberation
          nasm cmake curl)  # nasm, cmake, curl: make wheels builds FFmpeg & co. from source

if [ "$(uname -s)" = "Linux" ] && command -v dpkg-query >/dev/null; then
    missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "Missing system packages. Run as root, then run make again:" >&2
            echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
            exit 1
        fi
        echo "Installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

if ! command -v uv >/dev/null; then
    echo "Installing uv from PyPI"
    python3 -m pip install -q --user uv 2>/dev/null || python3 -m pip install -q uv \
        || python3 -m pip install -q --break-system-packages uv
fi
