"""``generate_audio``: text to audio files with Kokoro, segment by segment, written as it is
synthesised (long texts are never held whole), plus ``python -m mlx_audio_tts.generate``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np

from .models.kokoro.pipeline import KokoroPipeline, check_speed
from .utils import DEFAULT_MODEL, load_model

__all__ = ["AUDIO_FORMATS", "generate_audio"]

AUDIO_FORMATS = ("wav", "mp3", "flac")


_NO_DEVICE = "is a sound device there? `python -m sounddevice` lists them"


def _player():
    """sounddevice, once an output device is known to be there: checked before the model
    loads, so that ``play`` with no sound device fails at once with one line."""
    try:
        import sounddevice
    except (ImportError, OSError) as e:
        raise RuntimeError(f"play=True needs sounddevice and PortAudio: pip install "
                           f"sounddevice ({e})") from e  # fmt: skip
    try:
        sounddevice.query_devices(kind="output")
    except (sounddevice.PortAudioError, ValueError) as e:
        raise RuntimeError(f"playing failed for the default output device: {e} (PortAudio); "
                           f"{_NO_DEVICE}") from e  # fmt: skip
    return sounddevice


def _play(player, audio: np.ndarray, sample_rate: int) -> None:
    try:
        player.play(audio, sample_rate, blocking=True)
    except (player.PortAudioError, ValueError) as e:
        raise RuntimeError(f"playing failed for the default output device: {e} (PortAudio); "
                           f"{_NO_DEVICE}") from e  # fmt: skip


def generate_audio(
    text,
    model_path: str = DEFAULT_MODEL,
    voice: str = "af_heart",
    speed: float = 1.0,
    lang_code: str = "a",
    file_prefix: str = "audio",
    audio_format: str = "wav",
    sample_rate: int = 24000,
    join_audio: bool = False,
    verbose: bool = True,
    play: bool = False,
    split_pattern: str | None = r"\n+",
    model=None,
) -> list[Path]:
    """Synthesises ``text`` and writes it to audio files.

    Each segment (the text split at ``split_pattern``, then at sentences where a part
    exceeds Kokoro's context) is written as soon as it is synthesised: to
    ``{file_prefix}_{i:03d}.{audio_format}`` one file per segment, or with ``join_audio``
    appended to one ``{file_prefix}.{audio_format}``.

    Args:
        text: The text (a string).
        model_path: A Hub repo id or a local folder (any Kokoro layout).
        voice: Voice name, path, ``"a,b"`` blend or ``{name: weight}``.
        speed: Speaking rate, 0.5 to 2.0.
        lang_code: ``"a"`` American English, ``"b"`` British, ``"e" "f" "h" "i" "p" "j"
            "z"`` (see :data:`mlx_audio_tts.g2p.LANG_CODES`).
        file_prefix: Output path without the extension (folders are created).
        audio_format: ``"wav"`` (float32), ``"mp3"`` or ``"flac"`` (24-bit).
        sample_rate: Output rate; other than 24000 resamples each segment (libsoxr).
        join_audio: One file instead of one per segment.
        verbose: Print each segment's duration and speed, and the files written.
        play: Also play each segment (needs sounddevice).
        split_pattern: Regular expression the text is first split on (None: not split).
        model: An already loaded model to use instead of loading ``model_path``.

    Returns:
        The paths written.

    Raises:
        ValueError: Empty text, speed out of [0.5, 2.0], unknown format, language or voice
            layout, bad sample rate.
        FileNotFoundError: Model or voice not found.
        RuntimeError: Missing G2P packages (named), or no audio device for ``play``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    speed = check_speed(speed)
    fmt = str(audio_format).lower().lstrip(".")
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    player = _player() if play else None
    if model is None:
        model = load_model(model_path)
    pipeline = KokoroPipeline(lang_code, model=model, repo_id=model_path)
    prefix = Path(file_prefix).expanduser()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    options = {"wav": {"encoding": "float32"}, "flac": {"encoding": "pcm24"}, "mp3": {}}[fmt]
    written: list[Path] = []
    writer = None
    total_audio = 0.0
    start = time.perf_counter()
    try:
        for i, result in enumerate(pipeline(text, voice, speed, split_pattern)):
            took = time.perf_counter() - start
            audio = np.asarray(result.audio[0])
            if sample_rate != model.sample_rate:
                audio = np.asarray(aio.resample(audio, model.sample_rate, sample_rate))
            if join_audio:
                if writer is None:
                    written.append(prefix.with_name(f"{prefix.name}.{fmt}"))
                    writer = aio.AudioWriter(written[-1], sample_rate, 1, **options)
                writer.write(audio)
            else:
                written.append(prefix.with_name(f"{prefix.name}_{i:03d}.{fmt}"))
                aio.save(written[-1], audio, sample_rate, **options)
            seconds = len(audio) / sample_rate
            total_audio += seconds
            if verbose:
                print(f"segment {i}: {seconds:.2f} s of audio, {took:.2f} s since start, "
                      f"{result.graphemes[:60]!r}", file=sys.stderr)  # fmt: skip
            if player is not None:
                _play(player, audio, sample_rate)
    finally:
        if writer is not None:
            writer.close()
    if not written:
        raise ValueError(f"nothing to say in {text[:80]!r} (no phonemes)")
    if verbose:
        took = time.perf_counter() - start
        print(
            f"{total_audio:.2f} s of audio in {took:.2f} s ({total_audio / took:.2f}x real "
            f"time), peak memory {mx.get_peak_memory() / 2**30:.2f} GiB",
            file=sys.stderr,
        )
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    return written


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["generate", *sys.argv[1:]]))
