"""``mlx-audio-sts``: separate tracks into stems, and convert demucs checkpoints."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)


def _progress_bar(label: str):
    start = time.monotonic()

    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.monotonic() - start
        end = "\n" if done >= total else ""
        print(f"\r{label} [{bar}] {done}/{total} windows, {elapsed:.1f} s", end=end,
              file=sys.stderr, flush=True)  # fmt: skip

    return show


def _finish(wav, clip_mode: str):
    import numpy as np

    if clip_mode == "rescale":
        return wav / max(1.01 * float(np.abs(wav).max(initial=0.0)), 1.0)
    if clip_mode == "clamp":
        return np.clip(wav, -0.99, 0.99)
    return wav


def _save_stems(stems: dict, track: Path, args, sample_rate: int) -> list[Path]:
    import mlx_audio_io as aio

    import numpy as np

    ext = "mp3" if args.mp3 else "flac" if args.flac else "wav"
    if args.stem:
        if args.stem not in stems:
            raise ValueError(f"--two-stems: no stem {args.stem!r} (have {', '.join(stems)})")
        rest = sum(np.array(v) for k, v in stems.items() if k != args.stem)
        stems = {args.stem: stems[args.stem], f"no_{args.stem}": rest}
    written = []
    for name, audio in stems.items():
        rel = args.filename.format(track=track.stem, trackext=track.name, stem=name, ext=ext)
        path = Path(args.out) / args.name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        wav = _finish(np.array(audio), args.clip_mode)
        kw = {}
        if ext == "mp3":
            kw["bitrate"] = args.mp3_bitrate * 1000
        elif ext == "wav":
            kw["encoding"] = "float32" if args.float32 else "pcm24" if args.int24 else "pcm16"
        else:
            kw["encoding"] = "pcm24" if args.int24 or args.float32 else "pcm16"
        aio.save(path, wav, sample_rate, layout="channels_last", **kw)
        written.append(path)
    return written


def _separate(args) -> int:
    from .separate import get_model, separate

    model = get_model(args.model_path or args.name)
    for track in args.tracks:
        track = Path(track)
        if not track.is_file():
            print(f"error: file not found: '{track}'", file=sys.stderr)
            return 1
        show = None if args.quiet else _progress_bar(track.name)
        stems = separate(
            track, model, shifts=args.shifts, overlap=args.overlap, split=args.split,
            segment=args.segment, seed=args.seed, progress=show,
        )  # fmt: skip
        for path in _save_stems(stems, track, args, model.samplerate):
            print(path)
    return 0


def _convert(args) -> int:
    from .models.htdemucs.convert import save
    from .models.htdemucs.pretrained import load_local

    model = load_local(args.src, name=args.name)
    models = getattr(model, "models", [model])
    sigs = [getattr(m, "signature", f"model{i}") for i, m in enumerate(models)]
    weights = getattr(model, "weights", None)
    folder = save(list(zip(sigs, models, strict=True)), args.dst, weights=weights,
                  name=args.name)  # fmt: skip
    print(folder)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlx-audio-sts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("separate", help="split tracks into stems (HTDemucs)")
    p.add_argument("tracks", nargs="+", help="audio files")
    p.add_argument("-n", "--name", default="htdemucs",
                   help="htdemucs, htdemucs_ft, htdemucs_6s, or a Hub repo id")  # fmt: skip
    p.add_argument("--model-path", help="a local model folder or file (overrides -n)")
    p.add_argument("-o", "--out", default="separated", help="output root (default: separated)")
    p.add_argument("--filename", default="{track}/{stem}.{ext}",
                   help="name under OUT/NAME: {track}, {trackext}, {stem}, {ext}")  # fmt: skip
    p.add_argument("--shifts", type=int, default=1, help="random shifts to average (default 1)")
    p.add_argument("--overlap", type=float, default=0.25, help="window overlap (default 0.25)")
    p.add_argument("--no-split", dest="split", action="store_false", help="one pass, no windows")
    p.add_argument("--segment", type=float, help="window length in seconds")
    p.add_argument("--seed", type=int, help="seed for the shifts")
    p.add_argument("--two-stems", dest="stem", metavar="STEM",
                   help="write STEM and no_STEM (the sum of the others)")  # fmt: skip
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--mp3", action="store_true", help="write MP3")
    fmt.add_argument("--flac", action="store_true", help="write FLAC")
    p.add_argument("--mp3-bitrate", type=int, default=320, help="kbit/s (default 320)")
    depth = p.add_mutually_exclusive_group()
    depth.add_argument("--int24", action="store_true", help="24-bit WAV/FLAC")
    depth.add_argument("--float32", action="store_true", help="float WAV")
    p.add_argument("--clip-mode", default="rescale", choices=["rescale", "clamp", "none"],
                   help="avoid clipping: rescale the stem (default) or clamp it")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_separate)
    c = sub.add_parser("convert", help="demucs checkpoint (.th, .yaml, Hub form) -> MLX folder")
    c.add_argument("src", help="a .th/.safetensors/.yaml file or a folder holding them")
    c.add_argument("dst", help="output folder")
    c.add_argument("--name", help="bag name to pick from a folder, recorded in config.json")
    c.set_defaults(func=_convert)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``mlx-audio-sts`` command."""
    from mlx_audio_io.cli import run_subcommand

    return run_subcommand(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
