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
# Needs curl, a C toolchain, cmake and nasm (x86-64). Then
#     MLX_AUDIO_IO_STATIC=PREFIX python packages/mlx-audio-io/build_native.py OUTDIR
# links the extension against these archives (build_native.py).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PREFIX="${1:-$ROOT/build/static}"
case "$PREFIX" in /*) ;; *) PREFIX="$PWD/$PREFIX" ;; esac  # macOS has no realpath -m
SRC="$PREFIX/src"
JOBS="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
mkdir -p "$SRC" "$PREFIX/lib" "$PREFIX/include"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
export CFLAGS="-O2 -fPIC -fvisibility=hidden"
export CXXFLAGS="$CFLAGS"
export CPPFLAGS="-I$PREFIX/include"
export LDFLAGS="-L$PREFIX/lib"

# The sources: Debian bookworm's upstream tarballs (the versions `make test` links
# dynamically), pinned by name and SHA-256. They come from Debian's pool, or from
# snapshot.debian.org (by SHA-1) once the pool has moved on to a newer version; the same
# bytes on every platform, so the build runs where apt does not (macOS, manylinux images).
#   directory      pool path                 tarball                       sha256 sha1
SOURCES="
libogg     main/libo/libogg     libogg_1.3.5.orig.tar.xz     c4d91be36fc8e54deae7575241e03f4211eb102afb3fc0775fbbc1b740016705 5a368421a636f7faa4c2f662857cb507dffd7c99
libvorbis  main/libv/libvorbis  libvorbis_1.3.7.orig.tar.gz  0e982409a9c3fc82ee06e08205b1355e5c6aa4c36bca58146ef399621b0ce5ab 2b415495f89b103138a23da5017a2a00837c6c94
opus       main/o/opus          opus_1.3.1.orig.tar.gz       65b58e1e25b2a114157014736a3d9dfeaad8d41be1c8179866f144a2fb44ff9d ed226536537861c9f0f1ef7ca79dffc225bc181b
lame       main/l/lame          lame_3.100.orig.tar.gz       ddfe36cab873794038ae2c1210557ad34857a4b6bdc515785d1da9e175b1da1e 64c53b1a4d493237cef5e74944912cd9f98e618d
mpg123     main/m/mpg123        mpg123_1.31.2.orig.tar.bz2   b17f22905e31f43b6b401dfdf6a71ed11bb7d056f68db449d70b9f9ae839c7de 47c76d468261da20a8894656d3cd71456a92624a
flac       main/f/flac          flac_1.4.2+ds.orig.tar.xz    47274ac8fcb1f0e6caa91d29f943925d7a40c0a3f6357c3275773bdb1ee46638 3faf3a5be50d669f23b4389fe5b317cf39ff2b65
libsoxr    main/libs/libsoxr    libsoxr_0.1.3.orig.tar.xz    b111c15fdc8c029989330ff559184198c161100a59312f5dc19ddeb9b5a15889 32ea46b1a8c0c15f835422892d02fce8286aec3c
ffmpeg     main/f/ffmpeg        ffmpeg_5.1.9.orig.tar.xz     d9b593bb2ba93d4b50f74177e0cdcd41747e708596367deed0c30348a71dd176 c42a24a256e3e9f4b989835bcd1e3b1dbe9bb853
"
DEBIAN_POOL="${DEBIAN_POOL:-https://deb.debian.org/debian/pool}"

sha256() { if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -c1-64; }

fetch() {  # fetch PACKAGE: its pinned tarball, checked, unpacked into $SRC/PACKAGE, once
    local pkg=$1 line dir pool file want sha1
    [ -d "$SRC/$pkg" ] && return
    line=$(echo "$SOURCES" | awk -v p="$pkg" '$1 == p')
    read -r dir pool file want sha1 <<<"$line"
    if [ ! -f "$SRC/$file" ] || [ "$(sha256 "$SRC/$file")" != "$want" ]; then
        curl -fsSL --retry 3 -o "$SRC/$file.part" "$DEBIAN_POOL/$pool/$file" \
            || curl -fsSL --retry 3 -o "$SRC/$file.part" "https://snapshot.debian.org/file/$sha1" \
            || { echo "cannot download $file (Debian's pool and snapshot.debian.org)" >&2; exit 1; }
        mv "$SRC/$file.part" "$SRC/$file"
    fi
    if [ "$(sha256 "$SRC/$file")" != "$want" ]; then
        echo "$file: SHA-256 mismatch (expected $want)" >&2
        exit 1
    fi
    mkdir -p "$SRC/$pkg"
    tar xf "$SRC/$file" -C "$SRC/$pkg" --strip-components=1
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
case "$(uname -m)" in  # libmpg123's decoders for this machine, picked at run time
    x86_64) MPG123_CPU=x86-64 ;;
    aarch64|arm64) MPG123_CPU=aarch64 ;;
    *) MPG123_CPU=generic_fpu ;;
esac
autotools mpg123 --disable-components --enable-libmpg123 --with-cpu=$MPG123_CPU
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
