"""The seed's quality comparison tool: the same text and voice through normal generation,
clean streaming, processed streaming (crossfaded) and callback streaming, written side by
side, with how far each is from normal generation.

    python -m mlx_audio_tts.simple_streaming_example [--model M] [--voice V] [--text T]
        [--out DIR] [--seed 0] [--streaming_chunk_tokens 35]

Writes ``consistent_normal_000.wav`` (more ``_NNN`` files for a longer text),
``consistent_clean_streaming.wav``, ``consistent_processed_streaming.wav`` and
``consistent_callback_streaming.wav``. With the same seed, clean and callback streaming equal
normal generation; processed streaming is shorter by the crossfades and differs at the joins.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlx_audio_io as aio

import numpy as np

from .audio_utils import StreamingAudioProcessor
from .generate import (
    ORPHEUS_MODEL,
    generate_audio,
    generate_audio_streaming,
    generate_audio_with_callback,
    load_cached,
)

TEXT = ("Hello! This is a comparison of normal generation and streaming, "
        "with the same voice and the same text.")  # fmt: skip


def compare(model, text: str, voice: str | None, out: Path, seed: int = 0,
            chunk_tokens: int = 35, model_path: str = ORPHEUS_MODEL) -> dict:  # fmt: skip
    """Runs the four methods with ``model`` and writes their files into ``out``; returns
    ``{method: {"path", "seconds", "max_diff"}}`` (``max_diff``: largest sample difference
    from normal generation over the common length, None for processed streaming, whose
    timing differs by design)."""
    out.mkdir(parents=True, exist_ok=True)
    rate = model.sample_rate
    stream = {"model": model, "model_path": model_path, "voice": voice, "seed": seed,
              "streaming_chunk_tokens": chunk_tokens}  # fmt: skip
    paths = generate_audio(text, model=model, model_path=model_path, voice=voice, seed=seed,
                           file_prefix=str(out / "consistent_normal"), verbose=False)  # fmt: skip
    normal = np.concatenate([np.asarray(aio.load(p)[0])[:, 0] for p in paths])
    clean = np.concatenate(list(generate_audio_streaming(text, **stream)))
    processor = StreamingAudioProcessor(crossfade_ms=10.0, sample_rate=rate)
    for chunk in generate_audio_streaming(text, **stream):
        processor.process_chunk(chunk)
    processed = processor.get_concatenated_audio()
    received: list[np.ndarray] = []
    generate_audio_with_callback(text, lambda chunk, meta: received.append(chunk), **stream)
    callback = np.concatenate(received)
    results = {"normal": {"path": paths[0], "seconds": len(normal) / rate, "max_diff": 0.0}}
    for name, audio in (("clean_streaming", clean), ("processed_streaming", processed),
                        ("callback_streaming", callback)):  # fmt: skip
        path = out / f"consistent_{name}.wav"
        aio.save(path, audio, rate, encoding="float32")
        n = min(len(audio), len(normal))
        diff = float(np.abs(audio[:n] - normal[:n]).max()) if n else 0.0
        exact = name != "processed_streaming"
        results[name] = {"path": path, "seconds": len(audio) / rate,
                         "max_diff": diff if exact else None}  # fmt: skip
    return results


def main(argv=None) -> int:
    """Entry point: parses the arguments, runs :func:`compare`, prints the table."""
    parser = argparse.ArgumentParser(prog="python -m mlx_audio_tts.simple_streaming_example",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--model", default=ORPHEUS_MODEL, help="Hub repo id or local folder")
    parser.add_argument("--voice", help="default: tara (Orpheus), af_heart (Kokoro)")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--out", default="streaming_comparison", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--streaming_chunk_tokens", "--streaming-chunk-tokens", type=int,
                        default=35)  # fmt: skip
    args = parser.parse_args(argv)
    from mlx_audio_io.cli import run_subcommand

    def run(args) -> int:
        model = load_cached(args.model)
        results = compare(model, args.text, args.voice, Path(args.out), args.seed,
                          args.streaming_chunk_tokens, args.model)  # fmt: skip
        print("| method | file | seconds | max difference from normal |")
        print("|---|---|---:|---:|")
        for name, r in results.items():
            diff = "(crossfaded joins)" if r["max_diff"] is None else f"{r['max_diff']:.1e}"
            print(f"| {name} | {r['path']} | {r['seconds']:.2f} | {diff} |")
        return 0

    args.func = run
    return run_subcommand(args)


if __name__ == "__main__":
    sys.exit(main())
