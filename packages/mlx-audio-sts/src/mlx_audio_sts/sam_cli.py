"""``mlx-audio-sts sam``: text- and anchor-prompted separation with SAM-Audio."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)


def parse_anchor(text: str) -> tuple[str, float, float]:
    """``"+,1.5,3.0"`` -> ``("+", 1.5, 3.0)``."""
    parts = text.split(",")
    if len(parts) != 3 or parts[0].strip() not in ("+", "-"):
        raise argparse.ArgumentTypeError(
            f"--anchor must be TOKEN,START,END with TOKEN + or - and times in seconds, got {text!r}"
        )
    try:
        start, end = float(parts[1]), float(parts[2])
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--anchor times must be seconds, got {text!r}") from e
    return parts[0].strip(), start, end


def _ode_opt(args) -> dict:
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.steps == 1:
        raise ValueError("--steps must be >= 2 (the step size must be below 1)")
    return {"method": args.method, "step_size": 1 / args.steps}


def _progress(step: int, steps: int) -> None:
    print(f"\rODE step {step}/{steps}", end="\n" if step == steps else "", file=sys.stderr,
          flush=True)  # fmt: skip


def _run(args) -> int:
    from .models.sam_audio import from_pretrained
    from .models.sam_audio.separate import save_audio

    audio = Path(args.audio)
    if not audio.is_file():
        print(f"error: file not found: '{audio}'", file=sys.stderr)
        return 1
    if args.anchor and args.long:
        raise ValueError("--anchor works with a single pass only, not with --long")
    ode_opt = _ode_opt(args)
    began = time.perf_counter()
    model = from_pretrained(args.model, text_encoder=args.text_encoder)
    if not args.quiet:
        print(f"loaded {args.model} in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    began = time.perf_counter()
    if args.long:
        result = model.separate_long([str(audio)], [args.description], ode_opt=ode_opt,
                                     chunk_seconds=args.chunk_seconds,
                                     overlap_seconds=args.overlap_seconds, seed=args.seed,
                                     verbose=not args.quiet)  # fmt: skip
    else:
        import mlx.core as mx

        mx.random.seed(args.seed)
        anchors = [list(args.anchor)] if args.anchor else None
        show = None if args.quiet else _progress
        result = model.separate([str(audio)], [args.description], anchors=anchors,
                                ode_opt=ode_opt, progress=show)  # fmt: skip
    if not args.quiet:
        print(f"separated in {time.perf_counter() - began:.1f} s, peak memory "
              f"{result.peak_memory:.2f} GB", file=sys.stderr)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, wav in (("target", result.target[0]), ("residual", result.residual[0])):
        path = out / f"{audio.stem}_{name}.{args.format}"
        save_audio(wav, path, model.sample_rate)
        print(path)
    return 0


def add_parser(sub) -> None:
    """Registers ``sam`` on the ``mlx-audio-sts`` subcommand parser."""
    p = sub.add_parser("sam", help="separate the sound a text prompt names (SAM-Audio)")
    p.add_argument("--audio", required=True, help="the mixture (any format mlx-audio-io reads)")
    p.add_argument("--description", required=True, help='what to extract, e.g. "man speaking"')
    p.add_argument("--anchor", action="append", type=parse_anchor, metavar="TOKEN,START,END",
                   help="+ (target here) or - (not here) between START and END seconds; "
                   "repeatable; single pass only")  # fmt: skip
    p.add_argument("--long", action="store_true", help="chunked processing (separate_long)")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="with --long (default 10)")
    p.add_argument("--overlap-seconds", type=float, default=3.0, help="with --long (default 3)")
    p.add_argument("--method", choices=["midpoint", "euler"], default="midpoint",
                   help="ODE solver (default midpoint)")  # fmt: skip
    p.add_argument("--steps", type=int, default=16, help="ODE steps (default 16: step 2/32)")
    p.add_argument("--seed", type=int, default=42, help="noise seed (default 42)")
    p.add_argument("-m", "--model", default="facebook/sam-audio-large",
                   help="Hub repo id or folder (default facebook/sam-audio-large)")  # fmt: skip
    p.add_argument("--text-encoder", help="T5 repo id or folder (default: the config's)")
    p.add_argument("-o", "--out", default="separated", help="output folder (default separated)")
    p.add_argument("--format", default="wav", choices=["wav", "flac", "mp3"], help="output format")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(func=_run)
