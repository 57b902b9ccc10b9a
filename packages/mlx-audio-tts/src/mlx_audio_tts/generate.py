"""``generate_audio``: text to audio files with Kokoro, Orpheus or CSM, segment by segment,
written as it is synthesised (long texts are never held whole); ``generate_audio_streaming``
and ``generate_audio_with_callback``: the audio in chunks while it is generated; plus
``python -m mlx_audio_tts.generate``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np

from .audio_utils import AudioPiece, Rechunker
from .models.kokoro.pipeline import KokoroPipeline, check_speed
from .utils import DEFAULT_MODEL, load_model

__all__ = [
    "AUDIO_FORMATS",
    "ORPHEUS_MODEL",
    "clear_model_cache",
    "generate_audio",
    "generate_audio_streaming",
    "generate_audio_with_callback",
    "load_cached",
    "stream_chunks",
]

ORPHEUS_MODEL = "mlx-community/orpheus-3b-0.1-ft-4bit"

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


def _is_orpheus(model) -> bool:
    from .models.orpheus import OrpheusModel

    return isinstance(model, OrpheusModel)


_CACHE: dict[tuple[str, str | None], object] = {}


def load_cached(model_path: str, revision: str | None = None):
    """:func:`mlx_audio_tts.utils.load_model`, remembering the last model loaded (repeated
    calls with the same ``model_path`` do not load a 3B model again)."""
    key = (str(model_path), revision)
    if key not in _CACHE:
        _CACHE.clear()  # one model at a time: they are large
        _CACHE[key] = load_model(str(model_path), revision=revision)
    return _CACHE[key]


def clear_model_cache() -> None:
    """Forgets the model :func:`load_cached` holds."""
    _CACHE.clear()


def _check_text(text) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")


def _orpheus_sampling(temperature, top_p, repetition_penalty, max_tokens) -> dict:
    from .models.orpheus import check_sampling

    check_sampling(temperature, top_p, repetition_penalty, max_tokens)
    return {"temperature": temperature, "top_p": top_p,
            "repetition_penalty": repetition_penalty, "max_tokens": max_tokens}  # fmt: skip


def _seed_kokoro(seed) -> None:
    """Kokoro draws its harmonic source's phase and noise from MLX's generator."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    mx.random.seed(seed & 0xFFFFFFFF)


def _is_csm(model) -> bool:
    return type(model).__name__ == "CSM" and hasattr(model, "generate_frames")


def csm_context(model, ref_audio=None, ref_text: str | None = None, speaker: int = 0) -> list:
    """The context a CSM generation continues from: ``ref_audio`` (a path in any format
    mlx_audio_io reads, at any rate: resampled to 24 kHz and mixed to mono; or an array of
    24 kHz samples) said by ``speaker`` with the transcript ``ref_text``; no reference, none.

    Raises:
        ValueError: ``ref_audio`` without ``ref_text`` (the message says how to pass it), or
            audio that cannot be read.
        FileNotFoundError: No such file.
    """
    from .models.csm import Segment, check_reference, check_speaker

    check_reference(ref_audio, ref_text)
    if ref_audio is None:
        if ref_text:
            raise ValueError("ref_text was given without ref_audio (the audio it transcribes)")
        return []
    if isinstance(ref_audio, (str, Path)):
        audio, _ = aio.load(ref_audio, sr=model.sample_rate, mono=True)
        audio = np.asarray(audio)[:, 0]
    else:
        audio = np.asarray(ref_audio, np.float32).reshape(-1)
    if not len(audio):
        raise ValueError(f"ref_audio {str(ref_audio)[:80]!r} holds no samples")
    return [Segment(check_speaker(speaker), ref_text, audio)]


def _csm_speaker(voice, speaker) -> int:
    """CSM's voice is its reference audio; a ``voice`` of digits (what the servers list) is
    the speaker id."""
    if voice is None:
        return speaker
    if isinstance(voice, str) and voice.isdigit():
        return int(voice)
    raise ValueError(f"CSM's voice comes from ref_audio; voice may only be a speaker id "
                     f"('0', '1', ...), got {voice!r}")  # fmt: skip


def _csm_options(temperature, top_k, max_audio_length_ms) -> dict:
    from .models.csm import check_sampling

    longest = 90_000 if max_audio_length_ms is None else max_audio_length_ms
    opts = {"temperature": 0.9 if temperature is None else temperature,
            "topk": 50 if top_k is None else top_k, "max_audio_length_ms": longest}  # fmt: skip
    check_sampling(**opts)
    return opts


def _csm_pieces(model, text, speaker, context, frames_per_chunk, ultra_low_latency,
                split_pattern, options):  # fmt: skip
    """CSM's audio as it is generated: frames through Mimi's streaming decoder (exact: Mimi
    is causal), ``frames_per_chunk`` frames of 80 ms at a time (the first alone with
    ``ultra_low_latency``); segment by segment, each with the same context."""
    from .codecs import mimi
    from .text_split import split_text

    parts = split_text(text, 400, split_pattern)
    if not parts:
        raise ValueError("text must be a non-empty string")
    for i, part in enumerate(parts):
        frames = model.generate_frames(part, speaker, context, **options)
        decoder = mimi.StreamingDecoder(model.codec) if isinstance(model.codec, mimi.Mimi) else None
        pending, target = [], 1 if ultra_low_latency else frames_per_chunk

        def decode(frames_now, decoder=decoder):
            codes = mx.stack(frames_now, axis=1)
            audio = decoder.push(codes) if decoder is not None else model.codec.decode(codes)
            return np.asarray(audio).reshape(-1)

        for frame in frames:
            pending.append(frame)
            if len(pending) >= target:
                yield AudioPiece(decode(pending), i, part, False)
                pending, target = [], frames_per_chunk
        tail = decode(pending) if pending else np.zeros(0, np.float32)
        yield AudioPiece(tail, i, part, i == len(parts) - 1, segment_end=True)


def _check_orpheus_speed(speed) -> None:
    if speed != 1.0:
        raise ValueError(
            f"speed is a Kokoro option; this model speaks at its own pace (got {speed})"
        )


def generate_audio(
    text,
    model_path: str = DEFAULT_MODEL,
    voice: str | None = None,
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
    *,
    temperature: float | None = None,
    top_p: float = 0.8,
    repetition_penalty: float = 1.3,
    max_tokens: int = 1200,
    seed: int | None = None,
    ref_audio=None,
    ref_text: str | None = None,
    speaker: int = 0,
    top_k: int | None = None,
    max_audio_length_ms: float | None = None,
) -> list[Path]:
    """Synthesises ``text`` and writes it to audio files.

    Each segment (the text split at ``split_pattern``, then at sentences where a part
    exceeds the model's context: Kokoro's 510 phonemes, Orpheus'
    :attr:`~mlx_audio_tts.models.orpheus.OrpheusModel.segment_chars` characters) is written
    as soon as it is synthesised: to ``{file_prefix}_{i:03d}.{audio_format}`` one file per
    segment, or with ``join_audio`` appended to one ``{file_prefix}.{audio_format}``.

    Args:
        text: The text (a string); Orpheus reads emotion tags such as ``<laugh>`` in it.
        model_path: A Hub repo id or a local folder: Kokoro (any layout) or Orpheus (e.g.
            ``"mlx-community/orpheus-3b-0.1-ft-4bit"``).
        voice: Kokoro: name, path, ``"a,b"`` blend or ``{name: weight}`` (default
            ``"af_heart"``); Orpheus: tara, leah, jess, leo, dan, mia, zac, zoe (default
            ``"tara"``).
        speed: Kokoro's speaking rate, 0.5 to 2.0 (Orpheus: 1.0 only).
        lang_code: Kokoro: ``"a"`` American English, ``"b"`` British, ``"e" "f" "h" "i" "p"
            "j" "z"`` (see :data:`mlx_audio_tts.g2p.LANG_CODES`).
        file_prefix: Output path without the extension (folders are created).
        audio_format: ``"wav"`` (float32), ``"mp3"`` or ``"flac"`` (24-bit).
        sample_rate: Output rate; other than 24000 resamples each segment (libsoxr).
        join_audio: One file instead of one per segment.
        verbose: Print each segment's duration and speed, and the files written.
        play: Also play each segment (needs sounddevice).
        split_pattern: Regular expression the text is first split on (None: not split).
        model: An already loaded model to use instead of loading ``model_path``.
        temperature: Sampling temperature (None: the model's default, Orpheus 0.6, CSM 0.9).
        top_p, repetition_penalty, max_tokens: Orpheus' sampling (the official defaults;
            ``max_tokens`` per segment).
        ref_audio, ref_text, speaker: CSM: the voice to clone, as audio (a file in any
            format and rate, or 24 kHz samples) with its transcript, said by ``speaker``.
        top_k, max_audio_length_ms: CSM's sampling (50) and length bound per segment
            (90 000).
        seed: Fixes the randomness (Orpheus: sampling and decoder noise; Kokoro: its
            harmonic source), so a later call with the same seed gives the same audio.

    Returns:
        The paths written.

    Raises:
        ValueError: Empty text, speed out of range, unknown format, language or voice
            layout, bad sample rate or sampling argument.
        FileNotFoundError: Model or voice not found.
        RuntimeError: Missing G2P packages or mlx-lm (named), or no audio device for
            ``play``.
    """
    _check_text(text)
    speed = check_speed(speed)
    fmt = str(audio_format).lower().lstrip(".")
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    player = _player() if play else None
    if model is None:
        model = load_model(model_path)
    if _is_orpheus(model):
        _check_orpheus_speed(speed)
        sampling = _orpheus_sampling(_temp(temperature), top_p, repetition_penalty, max_tokens)
        segments = (
            (part, np.asarray(audio[:, 0]))
            for part, audio in model.generate_segments(text, voice or "tara", seed=seed,
                                                       split_pattern=split_pattern, **sampling)
        )  # fmt: skip
    elif _is_csm(model):
        _check_orpheus_speed(speed)
        speaker = _csm_speaker(voice, speaker)
        options = _csm_options(temperature, top_k, max_audio_length_ms)
        context = csm_context(model, ref_audio, ref_text, speaker)
        _seed_kokoro(seed)
        segments = (
            (p.text, p.audio)
            for p in _join_segments(_csm_pieces(model, text, speaker, context, 10**9, False,
                                                split_pattern, options))
        )  # fmt: skip
    else:
        _seed_kokoro(seed)
        pipeline = KokoroPipeline(lang_code, model=model, repo_id=model_path)
        segments = (
            (r.graphemes, np.asarray(r.audio[0]))
            for r in pipeline(text, voice or "af_heart", speed, split_pattern)
        )
    prefix = Path(file_prefix).expanduser()
    prefix.parent.mkdir(parents=True, exist_ok=True)
    options = {"wav": {"encoding": "float32"}, "flac": {"encoding": "pcm24"}, "mp3": {}}[fmt]
    written: list[Path] = []
    writer = None
    total_audio = 0.0
    start = time.perf_counter()
    try:
        for i, (graphemes, audio) in enumerate(segments):
            took = time.perf_counter() - start
            if sample_rate != model.sample_rate:
                audio = np.asarray(aio.resample(audio, model.sample_rate, sample_rate))
            if join_audio:
                if writer is None:
                    written.append(prefix.with_name(f"{prefix.name}.{fmt}"))
                    writer = aio.AudioWriter(written[-1], sample_rate, 1, **options)
                if len(audio):
                    writer.write(audio)
            else:
                written.append(prefix.with_name(f"{prefix.name}_{i:03d}.{fmt}"))
                aio.save(written[-1], audio, sample_rate, **options)
            seconds = len(audio) / sample_rate
            total_audio += seconds
            if verbose:
                print(f"segment {i}: {seconds:.2f} s of audio, {took:.2f} s since start, "
                      f"{graphemes[:60]!r}", file=sys.stderr)  # fmt: skip
            if player is not None and len(audio):
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


def _temp(temperature) -> float:
    return 0.6 if temperature is None else temperature


def _join_segments(pieces):
    """Pieces joined into one per segment."""
    held: list[np.ndarray] = []
    for piece in pieces:
        held.append(piece.audio)
        if piece.segment_end:
            yield AudioPiece(np.concatenate(held), piece.segment, piece.text, piece.last, True)
            held = []


# Kokoro streams sentence by sentence with ultra_low_latency, else as generate_audio cuts
_KOKORO_SENTENCES = r"\n+|(?<=[.!?…])\s+"


def _kokoro_pieces(model, model_path, text, voice, speed, lang_code, split_pattern):
    pipeline = KokoroPipeline(lang_code, model=model, repo_id=model_path)
    pack = pipeline.load_voice(voice)
    parts = pipeline.segments(text, split_pattern)
    if not parts:
        raise ValueError(f"nothing to say in {text[:80]!r} (no phonemes)")
    for i, (graphemes, phonemes) in enumerate(parts):
        audio = pipeline.synthesize(graphemes, phonemes, pack, speed).audio
        last = i == len(parts) - 1
        yield AudioPiece(np.asarray(audio).reshape(-1), i, graphemes, last, segment_end=True)


def _check_stream_args(streaming_chunk_tokens, output_chunk_duration_ms) -> None:
    from .models.orpheus import check_chunk_tokens

    check_chunk_tokens(streaming_chunk_tokens)
    ms = output_chunk_duration_ms
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 1 <= ms <= 60_000:
        raise ValueError(f"output_chunk_duration_ms must be a number in [1, 60000], got {ms!r}")


def stream_chunks(
    text,
    model_path: str = ORPHEUS_MODEL,
    voice: str | None = None,
    streaming_chunk_tokens: int = 21,
    temperature: float | None = None,
    ultra_low_latency: bool = True,
    output_chunk_duration_ms: float = 150,
    respect_source_boundaries: bool = False,
    *,
    top_p: float = 0.8,
    repetition_penalty: float = 1.3,
    max_tokens: int = 1200,
    seed: int | None = None,
    speed: float = 1.0,
    lang_code: str = "a",
    split_pattern: str | None = None,
    model=None,
    verbose: bool = False,
    ref_audio=None,
    ref_text: str | None = None,
    speaker: int = 0,
    top_k: int | None = None,
    max_audio_length_ms: float | None = None,
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yields ``(chunk, metadata)``: what :func:`generate_audio_streaming` yields, with the
    metadata :func:`generate_audio_with_callback` passes (same arguments)."""
    _check_text(text)
    _check_stream_args(streaming_chunk_tokens, output_chunk_duration_ms)
    start = time.perf_counter()
    source = model_path
    if model is None:
        model = load_cached(model_path)
    elif model_path == ORPHEUS_MODEL:
        source = None  # a model passed in: its voices come from its own folder
    rate = model.sample_rate
    if _is_orpheus(model):
        _check_orpheus_speed(check_speed(speed))
        sampling = _orpheus_sampling(_temp(temperature), top_p, repetition_penalty, max_tokens)
        pieces = model.stream(
            text, voice or "tara", chunk_tokens=streaming_chunk_tokens,
            ultra_low_latency=bool(ultra_low_latency), seed=seed,
            split_pattern=split_pattern or r"\n+", **sampling,
        )  # fmt: skip
    elif _is_csm(model):
        _check_orpheus_speed(check_speed(speed))
        speaker = _csm_speaker(voice, speaker)
        options = _csm_options(temperature, top_k, max_audio_length_ms)
        context = csm_context(model, ref_audio, ref_text, speaker)
        _seed_kokoro(seed)
        pieces = _csm_pieces(model, text, speaker, context, streaming_chunk_tokens // 7,
                             bool(ultra_low_latency), split_pattern or r"\n+", options)  # fmt: skip
    else:
        _seed_kokoro(seed)
        pattern = split_pattern or (_KOKORO_SENTENCES if ultra_low_latency else r"\n+")
        pieces = _kokoro_pieces(model, source, text, voice or "af_heart", check_speed(speed),
                                lang_code, pattern)  # fmt: skip
    rechunk = None
    if not respect_source_boundaries:
        samples = max(1, round(output_chunk_duration_ms * rate / 1000))
        rechunk = Rechunker(samples, first_now=bool(ultra_low_latency))
    index, total, first = 0, 0, None
    for piece in pieces:
        chunks = [piece.audio] if rechunk is None else rechunk.push(piece.audio)
        if piece.last and rechunk is not None:
            chunks.append(rechunk.flush())
        chunks = [c for c in chunks if len(c)]
        if piece.last and not chunks:
            chunks = [np.zeros(0, np.float32)]  # the end, marked
        for j, chunk in enumerate(chunks):
            now = time.perf_counter() - start
            first = now if first is None else first
            total += len(chunk)
            meta = {
                "chunk_index": index,
                "sample_rate": rate,
                "is_last": piece.last and j == len(chunks) - 1,
                "elapsed_s": now,
                "segment_index": piece.segment,
                "segment_text": piece.text,
                "samples_so_far": total,
                "first_chunk_s": first,
            }
            index += 1
            if verbose:
                print(f"chunk {meta['chunk_index']}: {len(chunk)} samples at {now:.2f} s",
                      file=sys.stderr)  # fmt: skip
            yield np.ascontiguousarray(chunk, dtype=np.float32), meta
    if verbose:
        took = time.perf_counter() - start
        print(f"{total / rate:.2f} s of audio in {took:.2f} s ({total / rate / took:.2f}x real "
              f"time), first chunk after {first:.2f} s", file=sys.stderr)  # fmt: skip


def generate_audio_streaming(
    text,
    model_path: str = ORPHEUS_MODEL,
    voice: str | None = None,
    streaming_chunk_tokens: int = 21,
    temperature: float | None = None,
    ultra_low_latency: bool = True,
    output_chunk_duration_ms: float = 150,
    respect_source_boundaries: bool = False,
    **kwargs,
) -> Iterator[np.ndarray]:
    """Yields the speech for ``text`` as float32 NumPy chunks (mono, 24 kHz) while it is
    generated.

    Clean mode: the concatenated chunks are the audio normal generation gives for the same
    tokens (Orpheus: the one-shot SNAC decode, each chunk decoded with the decoder's full
    context and lookahead and the same positional noise; pass the same ``seed`` to
    :func:`generate_audio` to get the same audio). For smoother joins at some cost in
    fidelity, pass the chunks through :class:`~mlx_audio_tts.audio_utils.
    StreamingAudioProcessor`.

    Args:
        text: What to say (Orpheus reads emotion tags such as ``<laugh>``).
        model_path: Orpheus (default ``"mlx-community/orpheus-3b-0.1-ft-4bit"``) or Kokoro,
            by Hub repo id or folder; loaded once and kept (:func:`clear_model_cache`).
        voice: Orpheus: tara (default), leah, jess, leo, dan, mia, zac, zoe (another name is
            a warning); Kokoro: a voice name (default ``"af_heart"``).
        streaming_chunk_tokens: Orpheus audio tokens per decoded chunk, a positive multiple
            of 7 (7 tokens = one 85 ms SNAC frame); smaller is lower latency, more decoding.
        temperature: Sampling temperature (0: greedy; None: the model's default, Orpheus 0.6
            as the seed gives, CSM 0.9).
        ultra_low_latency: The first chunk as soon as the first frame can be decoded exactly
            (Orpheus: after 28 tokens), released at once; Kokoro: speak sentence by sentence.
        output_chunk_duration_ms: Duration of the chunks yielded (the model's pieces are
            re-cut to it; the last chunk may be shorter).
        respect_source_boundaries: Yield the model's pieces as they come instead of
            re-cutting them.
        **kwargs: ``top_p`` (0.8), ``repetition_penalty`` (1.3), ``max_tokens`` (1200 per
            segment), ``seed``, ``speed`` and ``lang_code`` (Kokoro), ``split_pattern``,
            ``model`` (an already loaded model), ``verbose``; CSM: ``ref_audio``,
            ``ref_text``, ``speaker``, ``top_k`` (50), ``max_audio_length_ms`` (90 000).
            CSM decodes ``streaming_chunk_tokens / 7`` frames of 80 ms at a time through
            Mimi's streaming decoder (exact: Mimi is causal).

    Raises:
        ValueError: Empty text, ``streaming_chunk_tokens`` not a positive multiple of 7, a
            bad duration or sampling argument (before anything is generated).
        FileNotFoundError: No such model.
        RuntimeError: mlx-lm missing, or no SNAC codec for Orpheus.
    """
    for chunk, _ in stream_chunks(
        text, model_path, voice, streaming_chunk_tokens, temperature, ultra_low_latency,
        output_chunk_duration_ms, respect_source_boundaries, **kwargs,
    ):  # fmt: skip
        yield chunk


def generate_audio_with_callback(text, callback, **kwargs) -> dict:
    """Streams ``text`` as :func:`generate_audio_streaming` does (same keyword arguments),
    calling ``callback(chunk, metadata)`` for each chunk as soon as it exists.

    ``metadata`` holds ``chunk_index``, ``sample_rate``, ``is_last`` (the final chunk,
    possibly empty when the audio ended exactly on a chunk boundary), ``elapsed_s`` (since
    the call), ``segment_index``, ``segment_text``, ``samples_so_far`` and ``first_chunk_s``.
    An exception in ``callback`` stops the generation and propagates.

    Returns:
        ``{"chunks", "samples", "sample_rate", "audio_s", "elapsed_s", "first_chunk_s",
        "real_time_factor"}`` (``real_time_factor``: seconds of audio per second taken).

    Raises:
        ValueError: ``callback`` is not callable, or as :func:`generate_audio_streaming`.
    """
    if not callable(callback):
        raise ValueError(f"callback must be callable, got {type(callback).__name__}")
    start = time.perf_counter()
    chunks = samples = rate = 0
    first = None
    for chunk, meta in stream_chunks(text, **kwargs):
        callback(chunk, meta)
        chunks, samples, rate = chunks + 1, samples + len(chunk), meta["sample_rate"]
        first = meta["first_chunk_s"]
    elapsed = time.perf_counter() - start
    audio_s = samples / rate if rate else 0.0
    return {"chunks": chunks, "samples": samples, "sample_rate": rate, "audio_s": audio_s,
            "elapsed_s": elapsed, "first_chunk_s": first,
            "real_time_factor": audio_s / elapsed if elapsed else 0.0}  # fmt: skip


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["generate", *sys.argv[1:]]))
