"""``mlx-audio-tts``: synthesise speech to files (``generate``) and quantize models
(``quantize``)."""

from __future__ import annotations

import argparse
import sys

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)


def _generate(args) -> int:
    from .generate import generate_audio

    text = args.text
    if text is None or text == "-":
        text = sys.stdin.read()
    generate_audio(
        text,
        model_path=args.model,
        voice=args.voice,
        speed=args.speed,
        lang_code=args.lang_code,
        file_prefix=args.file_prefix,
        audio_format=args.audio_format,
        sample_rate=args.sample_rate,
        join_audio=args.join_audio,
        verbose=not args.quiet,
        play=args.play,
        split_pattern=args.split_pattern or None,
    )
    return 0


def _quantize(args) -> int:
    from .models.kokoro.load import save_model
    from .utils import load_model, quantize_model

    model = load_model(args.model)
    weights, config = quantize_model(model, model.config, args.group_size, args.bits)
    folder = save_model(model, args.out, weights=weights, config=config)
    print(f"wrote {args.bits}-bit {folder}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mlx-audio-tts`` command."""
    from .utils import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="mlx-audio-tts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="synthesise speech to audio files")
    g.add_argument("--text", help="the text ('-' or none: read standard input)")
    g.add_argument("--model", default=DEFAULT_MODEL, help="Hub repo id or local folder")
    g.add_argument("--voice", default="af_heart", help="voice name, file or 'a,b' blend")
    g.add_argument("--speed", type=float, default=1.0, help="speaking rate, 0.5 to 2.0")
    g.add_argument("--lang_code", "--lang-code", default="a",
                   help="a, b (English), e, f, h, i, p (espeak-ng), j, z")  # fmt: skip
    g.add_argument("--file_prefix", "--file-prefix", default="audio",
                   help="output path without extension")  # fmt: skip
    g.add_argument("--audio_format", "--audio-format", default="wav",
                   choices=["wav", "mp3", "flac"])  # fmt: skip
    g.add_argument("--sample_rate", "--sample-rate", type=int, default=24000)
    g.add_argument("--join_audio", "--join-audio", action="store_true",
                   help="one file instead of one per segment")  # fmt: skip
    g.add_argument("--split_pattern", "--split-pattern", default=r"\n+",
                   help="regular expression the text is split on ('' : none)")  # fmt: skip
    g.add_argument("--play", action="store_true", help="also play the audio")
    g.add_argument("--quiet", action="store_true", help="print nothing but errors")
    g.set_defaults(func=_generate)

    q = sub.add_parser("quantize", help="quantize a model and save it as a folder")
    q.add_argument("--model", default=DEFAULT_MODEL, help="Hub repo id or local folder")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--bits", type=int, default=8, choices=[2, 3, 4, 5, 6, 8])
    q.add_argument("--group_size", "--group-size", type=int, default=64, choices=[32, 64, 128])
    q.set_defaults(func=_quantize)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``mlx-audio-tts`` command."""
    from mlx_audio_io.cli import run_subcommand

    return run_subcommand(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
