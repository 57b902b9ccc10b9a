"""``mlx-audio-sts``: separate tracks into stems, convert demucs checkpoints, and extract
prompted sounds with SAM-Audio."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)


class _ProgressBar:
    """``progress(done, total)`` drawn as a bar on stderr; :meth:`end` ends its line early
    (a failed track)."""

    def __init__(self, label: str):
        self.label, self.start, self.open = label, time.monotonic(), False

    def __call__(self, done: int, total: int) -> None:
        width = 30
        filled = min(width, int(width * done / max(total, 1)))
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.monotonic() - self.start
        self.open = done < total
        print(f"\r{self.label} [{bar}] {done}/{total} windows, {elapsed:.1f} s",
              end="" if self.open else "\n", file=sys.stderr, flush=True)  # fmt: skip

    def end(self) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


def _finish(wav, clip_mode: str):
    import numpy as np

    if clip_mode == "rescale":
        return wav / max(1.01 * float(np.abs(wav).max(initial=0.0)), 1.0)
    if clip_mode == "clamp":
        return np.clip(wav, -0.99, 0.99)
    return wav


def _extension(args) -> str:
    return "mp3" if args.mp3 else "flac" if args.flac else "wav"


def _check_args(args, model) -> None:
    """Every option that can fail, checked against the model before any track is separated
    (not after minutes of work, once per track)."""
    from .separate import check_options

    check_options(model, args.shifts, args.overlap, args.segment)
    sources = list(model.sources)
    if args.stem is not None and args.stem not in sources:
        raise ValueError(
            f"--two-stems must be one of the model's sources ({', '.join(sources)}), "
            f"got {args.stem!r}"
        )
    try:
        args.filename.format(track="t", trackext="t.wav", stem="s", ext="wav")
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise ValueError(
            "--filename must use only {track}, {trackext}, {stem} and {ext}, got "
            f"{args.filename!r} ({type(e).__name__}: {e})"
        ) from e
    if args.mp3:
        args.mp3_bps = _mp3_bitrate(args.mp3_bitrate, model)


def _mp3_bitrate(kbps: int, model) -> int:
    """The bit rate (bit/s) save() will code MP3 at the model's rate with, by mlx-audio-io's
    own rules: an error, or its warning that it takes the nearest rate MP3 carries there,
    comes before the separation rather than after it."""
    import warnings

    from mlx_audio_io._write import _bitrate, _check_rate

    sr, channels = model.samplerate, model.audio_channels
    _check_rate("mp3", "mp3", sr, channels, f"--mp3 for the model's {sr} Hz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bps = _bitrate("mp3", "mp3", f"{kbps}k", sr, channels, f"--mp3-bitrate {kbps}")
    for w in caught:
        print(f"warning: --mp3-bitrate {kbps}: {w.message}", file=sys.stderr)
    return bps


def _save_stems(stems: dict, track: Path, args, sample_rate: int) -> list[Path]:
    import mlx_audio_io as aio

    import numpy as np

    ext = _extension(args)
    if args.stem:
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
            kw["bitrate"] = args.mp3_bps
        elif ext == "wav":
            kw["encoding"] = "float32" if args.float32 else "pcm24" if args.int24 else "pcm16"
        else:
            kw["encoding"] = "pcm24" if args.int24 or args.float32 else "pcm16"
        aio.save(path, wav, sample_rate, layout="channels_last", **kw)
        written.append(path)
    return written


def _failed(track: Path, e: Exception) -> None:
    msg = str(e)
    if str(track) not in msg:  # most errors already name the file
        msg = f"separation failed for '{track}': {msg}"
    print(f"error: {msg}", file=sys.stderr)


def _separate(args) -> int:
    """Separates every track; one that fails is reported and the others go on. Returns 1
    when any failed, after a summary line naming them."""
    from .separate import get_model, separate

    tracks = [Path(t) for t in args.tracks]
    failed = [t for t in tracks if not t.is_file()]
    for track in failed:  # before the model loads
        print(f"error: file not found: '{track}'", file=sys.stderr)
    present = [t for t in tracks if t.is_file()]
    if present:
        model = get_model(args.model_path or args.name)
        _check_args(args, model)
    for track in present:
        show = None if args.quiet else _ProgressBar(track.name)
        try:
            stems = separate(
                track, model, shifts=args.shifts, overlap=args.overlap, split=args.split,
                segment=args.segment, seed=args.seed, progress=show,
            )  # fmt: skip
            paths = _save_stems(stems, track, args, model.samplerate)
        except (ValueError, OSError, RuntimeError) as e:  # the other tracks go on
            if show is not None:
                show.end()
            _failed(track, e)
            failed.append(track)
            continue
        for path in paths:
            print(path)
    if failed:
        names = ", ".join(f"'{t}'" for t in failed)
        print(f"error: {len(failed)} of {len(tracks)} track(s) failed: {names}", file=sys.stderr)
        return 1
    return 0


def _convert(args) -> int:
    from .models.htdemucs.convert import save_model
    from .models.htdemucs.pretrained import load_local

    print(save_model(load_local(args.src, name=args.name), args.dst, name=args.name))
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
    from .sam_cli import add_parser

    add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``mlx-audio-sts`` command."""
    from mlx_audio_io.cli import run_subcommand

    return run_subcommand(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
