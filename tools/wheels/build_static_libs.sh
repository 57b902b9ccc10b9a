#!/usr/bin/env bash
# Builds the C libraries mlx-audio-io and fast-mp3-augment call as static, position-independent
# archives into a prefix, from Debian's source packages (the versions `make test` links
# dynamically), so that a wheel can carry them inside its extension: FFmpeg 5.1 reduced to
# audio (its demuxers, muxers, decoders, encoders and parsers for the formats docs/io.md lists,
# no video codec, no network, no TLS), LAME, libvorbis + libogg, Opus, libmpg123, libsoxr and
# libFLAC. Usage:
#
#     tools/wheels/build_static_libs.sh [PREFIX]     # default build/static
#
# Needs deb-src entries (it adds one for Debian's main archive when apt has none), a C
# toolchain, cmake and nasm. Then
#     MLX_AUDIO_IO_STATIC=PREFIX python packages/mlx-audio-io/build_native.py OUTDIR
# links the extension against these archives (build_native.py).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PREFIX="$(realpath -m "${1:-$ROOT/build/static}")"
SRC="$PREFIX/src"
JOBS="$(nproc)"
mkdir -p "$SRC" "$PREFIX/lib" "$PREFIX/include"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
export CFLAGS="-O2 -fPIC -fvisibility=hidden"
export CXXFLAGS="$CFLAGS"
export CPPFLAGS="-I$PREFIX/include"
export LDFLAGS="-L$PREFIX/lib"

if ! grep -rqs "^Types: deb-src\|^deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        > /etc/apt/sources.list.d/mlx-audio-debsrc.sources
    apt-get update -qq
fi

fetch() {  # fetch PACKAGE: unpacks its upstream tarball into $SRC/PACKAGE, once
    local pkg=$1
    [ -d "$SRC/$pkg" ] && return
    (cd "$SRC" && apt-get source --download-only "$pkg" >/dev/null 2>&1 || true)
    local tarball
    tarball=$(ls "$SRC"/"${pkg}"_*.orig.tar.* | grep -v '\.asc$' | head -1)
    mkdir -p "$SRC/$pkg"
    tar xf "$tarball" -C "$SRC/$pkg" --strip-components=1
}

autotools() {  # autotools PACKAGE [configure options...]
    local pkg=$1; shift
    [ -f "$PREFIX/.done-$pkg" ] && return
    fetch "$pkg"
    echo "== $pkg"
    (cd "$SRC/$pkg" && ./configure --prefix="$PREFIX" --enable-static --disable-shared \
        --with-pic "$@" >"$SRC/$pkg.log" 2>&1 && make -j"$JOBS" >>"$SRC/$pkg.log" 2>&1 \
        && make install >>"$SRC/$pkg.log" 2>&1) || { tail -30 "$SRC/$pkg.log"; exit 1; }
    touch "$PREFIX/.done-$pkg"
}

autotools libogg
autotools libvorbis --disable-docs --disable-examples --disable-oggtest
autotools opus --disable-doc --disable-extra-programs
autotools lame --disable-frontend --disable-gtktest --disable-decoder
autotools mpg123 --disable-components --enable-libmpg123 --with-cpu=x86-64
autotools flac --disable-cpplibs --disable-programs --disable-examples --disable-ogg \
    --disable-doxygen-docs --disable-xmms-plugin

if [ ! -f "$PREFIX/.done-libsoxr" ]; then
    fetch libsoxr
    echo "== libsoxr"
    cmake -S "$SRC/libsoxr" -B "$SRC/libsoxr/build" -DCMAKE_INSTALL_PREFIX="$PREFIX" \
        -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DWITH_OPENMP=OFF \
        -DBUILD_TESTS=OFF -DWITH_LSR_BINDINGS=OFF -DCMAKE_BUILD_TYPE=Release \
        >"$SRC/libsoxr.log" 2>&1
    cmake --build "$SRC/libsoxr/build" -j"$JOBS" >>"$SRC/libsoxr.log" 2>&1
    cmake --install "$SRC/libsoxr/build" >>"$SRC/libsoxr.log" 2>&1
    touch "$PREFIX/.done-libsoxr"
fi

# FFmpeg, audio only: what aio_av.c opens, decodes and writes (docs/io.md's format table);
# libswresample stays: the Opus decoder needs it
# (plus a few containers of video and images, so that such a file is refused as "no audio
# stream in this png file" rather than as corrupt audio)
DEMUXERS="wav,w64,aiff,caf,mov,flac,ogg,matroska,mp3,aac,ac3,eac3,wv,ape,tta,au,amr,mpc,mpc8,dts,dsf,asf,xwma,voc,truehd,mlp,gsm,avi,mpegts,mpegps,gif,image_png_pipe,image_jpeg_pipe,image_webp_pipe,image_bmp_pipe"
DECODERS="pcm_*,adpcm_*,flac,alac,aac,aac_latm,mp1,mp2,mp3,mp1float,mp2float,mp3float,vorbis,opus,wavpack,ape,tta,ac3,eac3,dca,truehd,mlp,wmav1,wmav2,wmapro,wmalossless,amrnb,amrwb,gsm,gsm_ms,mpc7,mpc8,dsd_*"
ENCODERS="flac,alac,aac,pcm_s16le,pcm_s16be,pcm_s24le,pcm_s24be,pcm_f32le,pcm_f32be,pcm_mulaw,pcm_alaw,libmp3lame,libvorbis,libopus"
MUXERS="flac,mp3,ipod,mp4,aiff,caf,ogg,wav,w64,adts"
PARSERS="aac,aac_latm,ac3,flac,mpegaudio,vorbis,opus,dca,mlp,gsm"
if [ ! -f "$PREFIX/.done-ffmpeg" ]; then
    fetch ffmpeg
    echo "== ffmpeg (audio only)"
    (cd "$SRC/ffmpeg" && ./configure --prefix="$PREFIX" --enable-static --disable-shared \
        --enable-pic --disable-programs --disable-doc --disable-network --disable-autodetect \
        --disable-everything --disable-avdevice --disable-avfilter --disable-swscale \
        --disable-postproc --disable-debug \
        --enable-protocol=file --enable-demuxer="$DEMUXERS" --enable-decoder="$DECODERS" \
        --enable-encoder="$ENCODERS" --enable-muxer="$MUXERS" --enable-parser="$PARSERS" \
        --enable-libmp3lame --enable-libvorbis --enable-libopus \
        --pkg-config-flags=--static --extra-cflags="-I$PREFIX/include -fvisibility=hidden" \
        --extra-ldflags="-L$PREFIX/lib" >"$SRC/ffmpeg.log" 2>&1 \
        && make -j"$JOBS" >>"$SRC/ffmpeg.log" 2>&1 && make install >>"$SRC/ffmpeg.log" 2>&1) \
        || { tail -40 "$SRC/ffmpeg.log"; exit 1; }
    touch "$PREFIX/.done-ffmpeg"
fi
echo "static libraries in $PREFIX/lib:"
ls -la "$PREFIX"/lib/*.a
