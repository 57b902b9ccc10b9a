"""Orpheus-3B: its Llama through mlx-lm, its audio through SNAC 24 kHz.

The language model, KV cache, samplers and quantized layers are mlx-lm's (``mlx_lm.models.
llama``, ``generate_step``, ``sample_utils``); this module adds what is Orpheus' own: the
prompt, the token protocol (:mod:`.protocol`), the codec and the checks.
"""

from __future__ import annotations

import importlib
import math
import numbers
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io.hub import read_config, resolve_model_path

import mlx.core as mx
import numpy as np

from ...audio_utils import AudioPiece
from ...codecs import snac
from ...text_split import split_text
from . import protocol

DEFAULT_MODEL = "mlx-community/orpheus-3b-0.1-ft-4bit"
DEFAULT_CODEC = "mlx-community/snac_24khz"
SAMPLE_RATE = 24000
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
_MLX_LM_MODULES = ("generate", "sample_utils", "utils")


def _mlx_lm() -> SimpleNamespace:
    """mlx-lm's modules (``mlx_lm.generate`` the module: the package's attribute of that name
    is the function)."""
    try:
        modules = {n: importlib.import_module(f"mlx_lm.{n}") for n in _MLX_LM_MODULES}
    except ImportError as e:
        raise RuntimeError(
            f"Orpheus needs mlx-lm: pip install 'mlx-audio-tts[orpheus]' ({e})"
        ) from e
    return SimpleNamespace(**modules)


def check_sampling(temperature, top_p, repetition_penalty, max_tokens) -> None:
    """Raises ValueError naming the first sampling argument out of range."""
    for name, value, ok, expected in (
        ("temperature", temperature, lambda v: v >= 0, "a number >= 0"),
        ("top_p", top_p, lambda v: 0 < v <= 1, "a number in (0, 1]"),
        ("repetition_penalty", repetition_penalty, lambda v: v > 0, "a number > 0"),
    ):
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and ok(value)):
            raise ValueError(f"{name} must be {expected}, got {value!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral):
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if max_tokens < protocol.FRAME_TOKENS:
        raise ValueError(f"max_tokens must be at least 7 (one SNAC frame), got {max_tokens!r}")


class OrpheusModel:
    """Orpheus text-to-speech: ``generate(text, voice)`` gives 24 kHz audio.

    Attributes:
        lm: The Llama (an ``mlx_lm.models.llama.Model``, quantized or not).
        tokenizer: mlx-lm's wrapper of the checkpoint's fast tokenizer.
        codec: The :class:`~mlx_audio_tts.codecs.snac.SNAC` 24 kHz codec.
        sample_rate: 24000.
    """

    sample_rate = SAMPLE_RATE
    #: the longest segment (characters) generated from one prompt: about 10 s of speech,
    #: inside the 14.6 s that ``max_tokens=1200`` allows
    segment_chars = 150

    def __init__(self, lm, tokenizer, codec, path: Path | None = None):
        self.lm, self.tokenizer, self.codec, self.path = lm, tokenizer, codec, path

    def prompt(self, text: str, voice: str = "tara") -> list[int]:
        """The prompt's token ids (see :func:`.protocol.prompt_ids`)."""
        return protocol.prompt_ids(self.tokenizer.encode, text, voice)

    def segments(self, text: str, split_pattern: str | None = r"\n+") -> list[str]:
        """``text`` as the segments generated one by one: cut at ``split_pattern``, then
        sentences (clauses, words) joined up to :attr:`segment_chars` characters each.

        Raises:
            ValueError: Empty text.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text must be a non-empty string, got {text!r}")
        return split_text(text, self.segment_chars, split_pattern)

    def generate_tokens(
        self,
        text: str,
        voice: str = "tara",
        *,
        temperature: float = 0.6,
        top_p: float = 0.8,
        repetition_penalty: float = 1.3,
        max_tokens: int = 1200,
        repetition_context_size: int | None = None,
        sampler: Callable | None = None,
        logits_processors: list | None = None,
    ) -> Iterator[int]:
        """Yields the generated token ids of one prompt (no segmenting) until the end of
        speech or ``max_tokens`` (then a warning says the speech was cut).

        The repetition penalty covers the whole sequence, prompt included, as the official
        engine (vLLM) and transformers apply it; ``repetition_context_size`` limits it to the
        last that many tokens (mlx-lm's default is 20). ``sampler`` and
        ``logits_processors`` replace mlx-lm's (as in ``mlx_lm.generate_step``).
        """
        check_sampling(temperature, top_p, repetition_penalty, max_tokens)
        lm = _mlx_lm()
        prompt = self.prompt(text, voice)
        if sampler is None:
            sampler = lm.sample_utils.make_sampler(temp=temperature, top_p=top_p)
        if logits_processors is None:
            context = repetition_context_size or len(prompt) + max_tokens
            logits_processors = lm.sample_utils.make_logits_processors(
                repetition_penalty=repetition_penalty, repetition_context_size=context
            )
        steps = lm.generate.generate_step(
            mx.array(prompt), self.lm, max_tokens=max_tokens, sampler=sampler,
            logits_processors=logits_processors,
        )  # fmt: skip
        n = 0
        for token, _ in steps:
            token = int(token)
            n += 1
            yield token
            if token in (protocol.END_OF_SPEECH, protocol.END_OF_AI):
                return
        warnings.warn(
            f"Orpheus stopped at max_tokens={max_tokens} ({n} tokens, about "
            f"{n / protocol.FRAME_TOKENS * protocol.SAMPLES_PER_FRAME / SAMPLE_RATE:.1f} s of "
            f"audio) before the end of speech in {text[:60]!r}: the speech is cut; raise "
            "max_tokens or split the text into shorter segments",
            UserWarning,
            stacklevel=2,
        )

    def decode(self, frames, noise: snac.PositionalNoise | None = None) -> mx.array:
        """SNAC frames (from :mod:`.protocol`) as audio ``[samples, 1]`` at 24 kHz, with
        the decoder noise of ``noise`` (None: drawn)."""
        if not frames:
            return mx.zeros((0, 1))
        codes = [mx.array(level, dtype=mx.int32) for level in protocol.level_codes(frames)]
        return self.codec.decode(codes, noise=noise)

    def generate_segments(
        self, text: str, voice: str = "tara", *, seed: int | None = None,
        split_pattern: str | None = r"\n+", **sampling,
    ) -> Iterator[tuple[str, mx.array]]:  # fmt: skip
        """Yields ``(segment text, audio [samples, 1])`` for each segment of ``text`` (see
        :meth:`segments`), all in the same voice. ``seed`` fixes the sampling and the
        decoder noise (the same ``seed`` makes :meth:`stream` give the same audio);
        other keyword arguments as for :meth:`generate_tokens`."""
        parts = self.segments(text, split_pattern)
        check_sampling(**{**protocol.DEFAULT_SAMPLING, **_sampling_only(sampling)})
        noises = _seed(seed, len(parts))
        for part, noise in zip(parts, noises, strict=True):
            asm = protocol.FrameAssembler()
            for token in self.generate_tokens(part, voice, **sampling):
                asm.push(token)
            yield part, self.decode(asm.frames, noise)

    def generate(self, text: str, voice: str = "tara", **kwargs) -> mx.array:
        """Speech for ``text`` as ``[samples, 1]`` float32 at 24 kHz, segment after segment
        (keyword arguments as for :meth:`generate_segments`)."""
        audio = [a for _, a in self.generate_segments(text, voice, **kwargs)]
        return audio[0] if len(audio) == 1 else mx.concatenate(audio, axis=0)

    def stream(
        self, text: str, voice: str = "tara", *, chunk_tokens: int = 21,
        ultra_low_latency: bool = True, seed: int | None = None,
        split_pattern: str | None = r"\n+", **sampling,
    ) -> Iterator[AudioPiece]:  # fmt: skip
        """Yields the audio as it is generated, in :class:`~mlx_audio_tts.audio_utils.
        AudioPiece` s: every ``chunk_tokens / 7`` SNAC frames once the decoder's lookahead
        (:meth:`~mlx_audio_tts.codecs.snac.SNAC.decoder_reach`, 3 frames) has been
        generated after them, the rest of a segment when it ends. Each piece is exactly the
        one-shot decode's audio at that place (:meth:`generate` with the same ``seed``
        gives the concatenation).

        Args:
            chunk_tokens: Audio tokens per chunk, a positive multiple of 7.
            ultra_low_latency: The first chunk of a segment holds one frame (85 ms) and comes
                as soon as it can be decoded exactly (after 4 frames, 28 tokens).
            seed, split_pattern, sampling: As for :meth:`generate_segments`.

        Raises:
            ValueError: A bad ``chunk_tokens`` or any argument :meth:`generate_tokens`
                refuses (checked before anything is generated).
        """
        frames_per_chunk = check_chunk_tokens(chunk_tokens) // protocol.FRAME_TOKENS
        parts = self.segments(text, split_pattern)
        check_sampling(**{**protocol.DEFAULT_SAMPLING, **_sampling_only(sampling)})
        noises = _seed(seed, len(parts))
        for i, (part, noise) in enumerate(zip(parts, noises, strict=True)):
            last_part = i == len(parts) - 1
            decoder = snac.StreamingDecoder(self.codec, noise=noise)
            asm = protocol.FrameAssembler()
            pushed = 0
            target = 1 if ultra_low_latency else frames_per_chunk
            for token in self.generate_tokens(part, voice, **sampling):
                asm.push(token)
                if len(asm.frames) - decoder.emitted_frames >= target + decoder.lookahead:
                    audio = decoder.push(_codes(asm.frames[pushed:]))
                    pushed, target = len(asm.frames), frames_per_chunk
                    yield AudioPiece(np.asarray(audio[:, 0]), i, part, False)
            rest = [decoder.push(_codes(asm.frames[pushed:]))] if len(asm.frames) > pushed else []
            rest.append(decoder.flush())
            tail = np.concatenate([np.asarray(a[:, 0]) for a in rest])
            yield AudioPiece(tail, i, part, last_part, segment_end=True)


def check_chunk_tokens(chunk_tokens) -> int:
    """``chunk_tokens`` checked to be a positive multiple of 7 (one SNAC frame per 7).

    Raises:
        ValueError: Anything else.
    """
    ok = isinstance(chunk_tokens, numbers.Integral) and not isinstance(chunk_tokens, bool)
    if not ok or chunk_tokens <= 0 or chunk_tokens % protocol.FRAME_TOKENS:
        raise ValueError(
            f"streaming_chunk_tokens must be a positive multiple of 7 (7 tokens per SNAC "
            f"frame), got {chunk_tokens!r}"
        )
    return int(chunk_tokens)


def _sampling_only(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k in protocol.DEFAULT_SAMPLING}


def _codes(frames) -> list[mx.array]:
    return [mx.array(level, dtype=mx.int32) for level in protocol.level_codes(frames)]


def _seed(seed: int | None, n: int) -> list[snac.PositionalNoise]:
    """Seeds MLX's sampler (when ``seed`` is given) and returns each segment's noise."""
    if seed is None:
        return [snac.PositionalNoise() for _ in range(n)]
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    mx.random.seed(int(seed) & 0xFFFFFFFF)
    return [snac.PositionalNoise(int(seed) + i) for i in range(n)]


def _codec_for(folder: Path, codec_path) -> snac.SNAC:
    """The folder's own ``snac/`` if it has one, else ``codec_path`` (folder or Hub id)."""
    where = folder / "snac" if (folder / "snac" / "config.json").is_file() else codec_path
    try:
        return snac.load_model(where)
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"loading failed for '{folder}': Orpheus needs the SNAC 24 kHz codec, and "
            f"'{where}' could not be loaded ({e}); pass codec_path= a SNAC folder or repo id"
        ) from e


def load_model(
    model_path: str | Path = DEFAULT_MODEL,
    codec_path: str | Path = DEFAULT_CODEC,
    revision: str | None = None,
) -> OrpheusModel:
    """Loads Orpheus from a folder or Hub repo id: mlx-lm's layout (``config.json``,
    ``model*.safetensors``, quantized or not, sharded or not) plus ``tokenizer.json``; SNAC
    from the folder's ``snac/`` or ``codec_path``.

    Raises:
        FileNotFoundError: No such folder or repo.
        ValueError: Not a Llama checkpoint, or no tokenizer.
        RuntimeError: mlx-lm missing, or the codec cannot be loaded.
    """
    lm = _mlx_lm()
    folder = Path(resolve_model_path(model_path, revision=revision))
    config = read_config(folder / "config.json")
    if config.get("model_type") != "llama":
        raise ValueError(
            f"loading failed for '{folder / 'config.json'}': Orpheus is a Llama; model_type "
            f"is {config.get('model_type')!r}"
        )
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise ValueError(
            f"loading failed for '{folder}': no tokenizer (tokenizer.json); Orpheus needs the "
            "checkpoint's tokenizer"
        )
    model = load_lm(folder, config)
    tokenizer = lm.utils.load_tokenizer(folder)
    return OrpheusModel(model, tokenizer, _codec_for(folder, codec_path), folder)


def rope_overrides(config: dict) -> dict:
    """transformers 5 saves RoPE settings as ``rope_parameters`` (``rope_theta`` and the
    scaling together); mlx-lm's Llama reads ``rope_theta`` and ``rope_scaling`` and would
    silently fall back to theta 10000 without llama3 scaling. The equivalent older keys."""
    params = config.get("rope_parameters")
    if not isinstance(params, dict) or "rope_theta" in config:
        return {}
    out = {"rope_theta": params.get("rope_theta", 10000.0)}
    scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    if scaling.get("rope_type", "default") != "default":
        out["rope_scaling"] = scaling
    return out


def load_lm(folder: Path, config: dict | None = None):
    """The Llama in ``folder`` through ``mlx_lm.utils.load_model`` (quantized or not, sharded
    or not), with transformers 5's ``rope_parameters`` read and its layers on the fast CPU
    paths (:func:`fast_layers`)."""
    lm = _mlx_lm()
    config = read_config(folder / "config.json") if config is None else config
    check_shards(folder)
    model, _ = lm.utils.load_model(folder, model_config=rope_overrides(config) or None)
    fast_layers(model)
    return model


def fast_layers(model) -> int:
    """Puts the Llama's layers on :mod:`mlx_audio_io.quant`'s CPU kernels (quantized
    products as memory-bound mat-vecs; MLX's kernels on other devices); returns how many."""
    from mlx_audio_io import quant

    switch = getattr(quant, "use_fast_layers", None) or quant.use_fast_quantized
    return switch(model)


def check_shards(folder: Path) -> None:
    """Every shard ``model.safetensors.index.json`` lists is there, and no other
    ``model*.safetensors`` (mlx-lm reads whatever ``model*.safetensors`` it finds: a missing
    shard would surface as a list of missing weights, a stale file be mixed in).

    Raises:
        FileNotFoundError: A listed shard is missing (named).
        ValueError: An index that is not a JSON object with a ``weight_map`` object, or a
            weight file the index does not list.
    """
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return
    weight_map = read_config(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise ValueError(f"loading failed for '{index}': no weight_map object")
    shards = sorted(set(map(str, weight_map.values())))
    for shard in shards:
        if Path(shard).name != shard:
            raise ValueError(f"loading failed for '{index}': shard name {shard!r} is a path")
        if not (folder / shard).is_file():
            raise FileNotFoundError(
                f"loading failed for '{folder}': shard '{shard}' listed in "
                "model.safetensors.index.json is missing (an interrupted download?)"
            )
    stale = sorted({p.name for p in folder.glob("model*.safetensors")} - set(shards))
    if stale:  # mlx-lm would load them too, mixing other weights in
        raise ValueError(
            f"loading failed for '{folder}': {', '.join(stale)} not listed in "
            "model.safetensors.index.json (left from another checkpoint?); remove it"
        )
