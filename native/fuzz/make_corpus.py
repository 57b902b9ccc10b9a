"""Writes the seed corpus for fuzz_io: short files of every format the readers take, each
prefixed with the option byte the fuzz target reads first."""

import sys
from pathlib import Path

import mlx_audio_io as aio
import numpy as np

FORMATS = [
    ("wav", "pcm16"),
    ("wav", "float32"),
    ("wav", "ulaw"),
    ("w64", "pcm24"),
    ("flac", "pcm16"),
    ("mp3", "float32"),
    ("m4a", "float32"),
    ("m4a", "alac"),
    ("ogg", "vorbis"),
    ("opus", "opus"),
    ("aiff", "pcm16"),
    ("caf", "float32"),
]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(4800) / 16000
    x = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], 1)
    x = (x + 0.01 * rng.standard_normal(x.shape)).astype(np.float32)
    for i, (fmt, enc) in enumerate(FORMATS):
        sr = 48000 if fmt == "opus" else 16000
        data = _encode(x, sr, fmt, enc)
        for opt in (0, 8 | 16 | 32, 64 | 128):
            (out / f"{i:02d}_{fmt}_{enc}_{opt}").write_bytes(bytes([opt]) + data)


def _encode(x, sr, fmt, enc) -> bytes:
    import io

    buf = io.BytesIO()
    aio.save(buf, x, sr, format=fmt, encoding=enc)
    return buf.getvalue()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
