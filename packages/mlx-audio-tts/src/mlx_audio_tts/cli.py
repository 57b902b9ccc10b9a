"""``mlx-audio-tts``: synthesise speech to files, or stream it (``generate``; Kokoro or
Orpheus), quantize Kokoro (``quantize``), serve it (``server``, ``stream-server``)."""

from __future__ import annotations

import argparse
import sys

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)


def _sampling(args) -> dict:
    return {"temperature": args.temperature, "top_p": args.top_p,
            "repetition_penalty": args.repetition_penalty, "max_tokens": args.max_tokens,
            "seed": args.seed, "ref_audio": args.ref_audio, "ref_text": args.ref_text,
            "speaker": args.speaker, "top_k": args.top_k,
            "max_audio_length_ms": args.max_audio_length_ms}  # fmt: skip


def _generate(args) -> int:
    from .generate import generate_audio

    text = args.text
    if text is None or text == "-":
        text = sys.stdin.read()
    if args.real_streaming:
        return _stream(args, text)
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
        **_sampling(args),
    )
    return 0


def _stream(args, text: str) -> int:
    """--real_streaming: chunks written to one file (and played) as they are generated."""
    from pathlib import Path

    import mlx_audio_io as aio

    from .generate import _player, load_cached, stream_chunks

    if args.sample_rate != 24000:
        raise ValueError("--real_streaming writes 24000 Hz; leave --sample_rate at 24000")
    player = _player() if args.play else None
    model = load_cached(args.model)
    path = Path(args.file_prefix).expanduser()
    path = path.with_name(f"{path.name}.{args.audio_format}")
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"wav": {"encoding": "float32"}, "flac": {"encoding": "pcm24"}, "mp3": {}}
    out = writer = None
    try:
        for chunk, meta in stream_chunks(
            text, args.model, args.voice, args.streaming_chunk_tokens, args.temperature,
            args.ultra_low_latency, args.output_chunk_duration_ms, speed=args.speed,
            lang_code=args.lang_code, model=model, verbose=not args.quiet,
            **{k: v for k, v in _sampling(args).items() if k != "temperature"},
        ):  # fmt: skip
            if player is not None and out is None:
                out = player.OutputStream(samplerate=meta["sample_rate"], channels=1,
                                          dtype="float32")  # fmt: skip
                out.start()
            if len(chunk):
                if out is not None:
                    out.write(chunk.reshape(-1, 1))
                if writer is None:
                    writer = aio.AudioWriter(path, meta["sample_rate"], 1,
                                             **options[args.audio_format])  # fmt: skip
                writer.write(chunk)
    finally:
        if writer is not None:
            writer.close()
        if out is not None:
            out.stop()
            out.close()
    if not args.quiet:
        print(f"wrote {path}", file=sys.stderr)
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
    g.add_argument("--voice", help="Kokoro: name, file or 'a,b' blend (af_heart); Orpheus: "
                   "tara, leah, jess, leo, dan, mia, zac, zoe (tara)")  # fmt: skip
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
    o = g.add_argument_group("Orpheus (sampling) and streaming")
    o.add_argument("--temperature", type=float,
                   help="0: greedy; default the model's (Orpheus 0.6, CSM 0.9)")  # fmt: skip
    o.add_argument("--top_p", "--top-p", type=float, default=0.8)
    o.add_argument("--repetition_penalty", "--repetition-penalty", type=float, default=1.3)
    o.add_argument("--max_tokens", "--max-tokens", type=int, default=1200,
                   help="per segment (7 tokens = 85 ms of audio)")  # fmt: skip
    o.add_argument("--seed", type=int, help="fix sampling and decoder noise")
    c = g.add_argument_group("CSM (voice cloning)")
    c.add_argument("--ref_audio", "--ref-audio", help="audio of the voice to clone (any format)")
    c.add_argument("--ref_text", "--ref-text", help="the words spoken in --ref_audio")
    c.add_argument("--speaker", type=int, default=0, help="speaker id (0, 1, ...)")
    c.add_argument("--top_k", "--top-k", type=int, help="sample among the k likeliest (50)")
    c.add_argument("--max_audio_length_ms", "--max-audio-length-ms", type=float,
                   help="most audio per segment (90000)")  # fmt: skip
    o.add_argument("--real_streaming", "--real-streaming", action="store_true",
                   help="write (with --play: play) the audio while it is generated")  # fmt: skip
    o.add_argument("--ultra_low_latency", "--ultra-low-latency",
                   action=argparse.BooleanOptionalAction, default=True,
                   help="first chunk as soon as it can be decoded (default on)")  # fmt: skip
    o.add_argument("--streaming_chunk_tokens", "--streaming-chunk-tokens", type=int, default=21,
                   help="audio tokens per decoded chunk, a multiple of 7")  # fmt: skip
    o.add_argument("--output_chunk_duration_ms", "--output-chunk-duration-ms", type=float,
                   default=150.0, help="duration of the chunks written and played")  # fmt: skip
    g.add_argument("--quiet", action="store_true", help="print nothing but errors")
    g.set_defaults(func=_generate)

    for name, (_, what) in _SERVERS.items():  # listed in --help; main() hands them over
        sub.add_parser(name, help=f"{what} (`mlx-audio-tts {name} --help`)")

    q = sub.add_parser("quantize", help="quantize a model and save it as a folder")
    q.add_argument("--model", default=DEFAULT_MODEL, help="Hub repo id or local folder")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--bits", type=int, default=8, choices=[2, 3, 4, 5, 6, 8])
    q.add_argument("--group_size", "--group-size", type=int, default=64, choices=[32, 64, 128])
    q.set_defaults(func=_quantize)
    return parser


#: subcommands that are whole programs of their own: their arguments go to their ``main``
_SERVERS = {
    "server": ("mlx_audio_tts.server", "the web page, REST and OpenAI-compatible API server"),
    "stream-server": ("mlx_audio_tts.orpheus_streaming_server", "the WebSocket streaming server"),
}


def main(argv=None) -> int:
    """Entry point of the ``mlx-audio-tts`` command."""
    import importlib

    from mlx_audio_io.cli import run_subcommand

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in _SERVERS:
        try:
            module = importlib.import_module(_SERVERS[argv[0]][0])
        except ImportError as e:
            print(f"error: the servers need: pip install 'mlx-audio-tts[server]' ({e})",
                  file=sys.stderr)  # fmt: skip
            return 1
        return module.main(argv[1:])
    return run_subcommand(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
