"""`make demo`: makes a short piece of music, converts it between formats, inspects and
streams it with mlx_audio_io, and prints what it did."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mlx_audio_io as aio  # first: loads OpenBLAS before mlx.core

import numpy as np


def make_music(seconds: float, sr: int) -> np.ndarray:
    """A few bars of a stereo arpeggio with decaying notes: [frames, 2] float32."""
    t = np.arange(int(seconds * sr)) / sr
    notes = [261.63, 329.63, 392.00, 523.25]
    out = np.zeros((len(t), 2))
    for i, f in enumerate(notes * 4):
        start = i * 0.25
        env = np.where(t >= start, np.exp(-(t - start) * 4), 0.0)
        tone = env * np.sin(2 * np.pi * f * (t - start))
        out[:, 0] += tone * (0.6 if i % 2 else 0.4)
        out[:, 1] += tone * (0.4 if i % 2 else 0.6)
    return (0.3 * out).astype(np.float32)


def timed(label: str, fn):
    t0 = time.perf_counter()
    result = fn()
    print(f"  {label:<44} {1e3 * (time.perf_counter() - t0):7.1f} ms")
    return result


def main() -> None:
    sr = 44100
    audio = make_music(4.0, sr)
    out = Path(tempfile.mkdtemp(prefix="mlx-audio-demo-"))
    print(f"Generated {len(audio) / sr:.1f} s of stereo music at {sr} Hz; files go to {out}\n")

    print("Convert (save):")
    timed("save WAV float32", lambda: aio.save(out / "song.wav", audio, sr))
    wav, _ = aio.load(out / "song.wav")
    for name, kw in [
        ("song.flac", {}),
        ("song.mp3", {"bitrate": "192k"}),
        ("song.m4a", {"bitrate": "192k"}),
        ("song_alac.m4a", {"encoding": "alac"}),
        ("song.aiff", {"encoding": "pcm16"}),
        ("song.caf", {}),
    ]:
        timed(f"WAV -> {name} {kw or ''}", lambda n=name, k=kw: aio.save(out / n, wav, sr, **k))

    print("\nInspect (info) and check the round trip:")
    for path in sorted(out.iterdir()):
        meta = aio.info(path)
        back, _ = aio.load(path)
        err = float(np.max(np.abs(np.asarray(back) - audio)))
        print(
            f"  {path.name:<16} {meta.container:>5}/{meta.subtype:<8} {meta.frames} frames, "
            f"{meta.channels} ch, {meta.sample_rate} Hz, {path.stat().st_size / 1024:6.0f} KiB, "
            f"max |error| {err:.1e}"
        )

    print("\nStream the MP3 in 0.5 s chunks, resampled to 16 kHz mono:")
    n = frames = 0
    reader = aio.stream(out / "song.mp3", chunk_duration=0.5, sr=16000, mono=True)
    for chunk, _ in reader:
        n += 1
        frames += chunk.shape[0]
    whole, _ = aio.load(out / "song.mp3", sr=16000, mono=True)
    rate = reader.sample_rate
    print(f"  {n} chunks, {frames} frames at {rate} Hz; load() gives {whole.shape[0]} frames")

    print("\nPartial read: 0.5 s from 2.0 s of the FLAC:")
    part, _ = timed(
        "load(offset=2.0, duration=0.5)",
        lambda: aio.load(out / "song.flac", offset=2.0, duration=0.5),
    )
    print(f"  shape {tuple(part.shape)}")

    print("\nbatch_load of every file at 16 kHz mono:")
    items = timed(
        "batch_load(num_workers=2)",
        lambda: aio.batch_load(sorted(out.iterdir()), sr=16000, mono=True, num_workers=2),
    )
    print(f"  {len(items)} arrays, shapes {sorted({tuple(a.shape) for a, _ in items})}")


if __name__ == "__main__":
    main()
