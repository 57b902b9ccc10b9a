"""CSM generation as Sesame's ``generator.py`` does it: a prompt of context segments (each
its ``[speaker]text`` tokens, then its audio's Mimi frames and an all-zero EOS frame), then
the new ``[speaker]text``; frames are generated one per 80 ms until an all-zero frame or
``max_audio_length_ms``.

The codec is anything with ``encode(audio) -> codes [32, T]``, ``decode(codes [32, T]) ->
audio [samples, 1]`` and ``sample_rate`` (Mimi at 24 kHz); :meth:`CSM.generate_frames`
yields codes as they come, so a streaming decoder can follow.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)

import mlx.core as mx
import numpy as np

from .model import Model, Sampler, make_cache

SAMPLE_RATE = 24000
FRAME_MS = 80  # Mimi's 12.5 Hz
MIMI_CODES = 2048  # entries per Mimi codebook (when no codec is attached)


@dataclass
class Segment:
    """One turn of the conversation: who spoke (``speaker``, an int), what was said, and the
    audio (``[samples]`` or ``[samples, 1]``, 24 kHz, ``mx.array`` or numpy) or None."""

    speaker: int
    text: str
    audio: mx.array | np.ndarray | None = None


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_sampling(temperature, topk, max_audio_length_ms) -> None:
    """Raises ValueError naming the first generation argument out of range."""
    if not (_real(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if isinstance(topk, bool) or not isinstance(topk, numbers.Integral) or topk < 1:
        raise ValueError(f"topk must be an int >= 1, got {topk!r}")
    if not (_real(max_audio_length_ms) and max_audio_length_ms >= FRAME_MS):
        raise ValueError(f"max_audio_length_ms must be a number >= {FRAME_MS} (one frame), "
                         f"got {max_audio_length_ms!r}")  # fmt: skip


def check_speaker(speaker) -> int:
    """``speaker`` checked to be a non-negative int (CSM's speakers are ``[0]``, ``[1]``...).

    Raises:
        ValueError: Anything else.
    """
    if isinstance(speaker, bool) or not isinstance(speaker, numbers.Integral) or speaker < 0:
        raise ValueError(f"speaker must be a non-negative int (0, 1, ...), got {speaker!r}")
    return int(speaker)


def check_reference(ref_audio, ref_text) -> None:
    """Reference audio needs its transcript: CSM conditions on the words with the audio.

    Raises:
        ValueError: ``ref_audio`` given without a non-empty ``ref_text``.
    """
    if ref_audio is not None and (not isinstance(ref_text, str) or not ref_text.strip()):
        raise ValueError(
            f"ref_text must be the transcript of ref_audio, got {ref_text!r}: CSM clones a voice "
            "from the reference audio together with what is said in it; pass ref_text='...' "
            "(the words spoken in ref_audio), or Segment(speaker, text, audio) in context"
        )


class CSM:
    """Sesame CSM-1B speech generation: ``generate(text, speaker, context)``.

    Attributes:
        model: The :class:`~.model.Model` (backbone and depth decoder).
        tokenizer: The Llama-3 text tokenizer (``encode(text) -> ids`` with BOS/EOS).
        codec: Mimi (``encode``/``decode``/``sample_rate``), or None for codes only.
    """

    def __init__(self, model: Model, tokenizer, codec=None):
        self.model, self.tokenizer, self.codec = model, tokenizer, codec

    @property
    def sample_rate(self) -> int:
        """The codec's (24000 for Mimi)."""
        return int(getattr(self.codec, "sample_rate", SAMPLE_RATE))

    @property
    def num_codebooks(self) -> int:
        """Codes per frame (32)."""
        return self.model.args.audio_num_codebooks

    def text_frames(self, text: str, speaker: int) -> tuple[np.ndarray, np.ndarray]:
        """``[speaker]text`` as frames ``[L, 33]`` int32 and mask ``[L, 33]`` bool."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {text!r}")
        ids = self.tokenizer.encode(f"[{check_speaker(speaker)}]{text}")
        vocab = self.model.args.text_vocab_size
        if min(ids, default=0) < 0 or max(ids, default=0) >= vocab:
            raise ValueError(
                f"the tokenizer gave token ids outside the model's {vocab} text "
                "tokens: the tokenizer does not belong to this checkpoint"
            )
        tokens = np.zeros((len(ids), self.num_codebooks + 1), np.int32)
        tokens[:, -1] = ids
        mask = np.zeros(tokens.shape, bool)
        mask[:, -1] = True
        return tokens, mask

    def audio_frames(self, codes) -> tuple[np.ndarray, np.ndarray]:
        """Mimi codes ``[32, T]`` as frames ``[T + 1, 33]`` and mask: the codes, then the
        all-zero EOS frame that ends every audio segment."""
        codes = np.asarray(codes)
        while codes.ndim > 2 and codes.shape[0] == 1:
            codes = codes[0]
        k = self.num_codebooks
        if codes.ndim != 2 or codes.shape[0] < k:
            raise ValueError(f"codes must be [{k}, frames], got shape {codes.shape}")
        codes = codes[:k].astype(np.int32)  # a codec with more codebooks: CSM uses the first k
        vocab = self.model.args.audio_vocab_size
        if codes.size and (codes.min() < 0 or codes.max() >= vocab):
            raise ValueError(f"codes must be in [0, {vocab}), got {codes.min()}..{codes.max()}")
        tokens = np.zeros((codes.shape[1] + 1, k + 1), np.int32)
        tokens[:-1, :k] = codes.T
        mask = np.zeros(tokens.shape, bool)
        mask[:, :k] = True
        return tokens, mask

    def encode(self, audio) -> np.ndarray:
        """Audio (``[samples]`` or ``[samples, 1]``, 24 kHz) as codes ``[32, T]`` through the
        codec (given ``[samples, 1]`` float32)."""
        if self.codec is None:
            raise RuntimeError("context audio needs the Mimi codec: load CSM with codec=...")
        audio = mx.array(np.asarray(audio, np.float32)).reshape(-1, 1)
        return np.asarray(self.codec.encode(audio))

    def segment_frames(self, segment: Segment) -> tuple[np.ndarray, np.ndarray]:
        """A context segment's frames: its text, then its audio with the EOS frame."""
        tokens, mask = self.text_frames(segment.text, segment.speaker)
        if segment.audio is None:
            return tokens, mask
        audio_tokens, audio_mask = self.audio_frames(self.encode(segment.audio))
        return np.concatenate([tokens, audio_tokens]), np.concatenate([mask, audio_mask])

    def prompt(self, text: str, speaker: int, context: Sequence[Segment] = ()):
        """The prompt's frames ``[L, 33]`` and mask: each context segment, then the text."""
        parts = []
        for i, segment in enumerate(context):
            if not isinstance(segment, Segment):
                raise ValueError(f"context[{i}] must be a Segment, got {type(segment).__name__}")
            parts.append(self.segment_frames(segment))
        parts.append(self.text_frames(text, speaker))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def check_length(self, prompt_len: int, max_frames: int, context_len: int) -> None:
        """Prompt and generated frames must fit the backbone's 2048 positions.

        Raises:
            ValueError: Saying how many positions (80 ms frames or tokens) to cut.
        """
        limit = self.model.args.max_seq_len
        if prompt_len + max_frames <= limit:
            return
        over = prompt_len + max_frames - limit
        fixes = []
        if context_len >= over:
            fixes.append(f"shorten the context by {over} positions (about {over * FRAME_MS} ms "
                         "of context audio)")  # fmt: skip
        if max_frames > over:
            fixes.append(f"lower max_audio_length_ms to {(max_frames - over) * FRAME_MS}")
        hint = " or ".join(fixes) or "shorten the text and the context"
        raise ValueError(
            f"the prompt ({prompt_len} positions: {context_len} of context, "
            f"{prompt_len - context_len} of text) and up to {max_frames} generated frames "
            f"exceed CSM's {limit} positions by {over}: {hint}"
        )

    def generate_frames(
        self, text: str, speaker: int = 0, context: Sequence[Segment] = (),
        max_audio_length_ms: float = 90_000, temperature: float = 0.9, topk: int = 50, *,
        sampler: Sampler | None = None,
    ) -> Iterator[mx.array]:  # fmt: skip
        """An iterator of each generated frame's codes ``[32]`` int32, until an all-zero frame
        (not yielded) or ``max_audio_length_ms`` (80 ms a frame). The arguments are checked
        and the prompt is built now; the frames are generated as they are taken.

        Args:
            text: What to say.
            speaker: The speaker id (an int; context segments of the same id set the voice).
            context: Earlier :class:`Segment` s (text and audio) to continue from.
            max_audio_length_ms: The most audio to generate.
            temperature: Sampling temperature (0: greedy).
            topk: Sample among the ``topk`` most likely codes.
            sampler: Replaces the temperature/top-k sampler (logits ``[1, V]`` to ``[1]``).

        Raises:
            ValueError: A bad argument, or prompt plus audio past 2048 positions.
            RuntimeError: Context audio without a codec.
        """
        check_sampling(temperature, topk, max_audio_length_ms)
        check_speaker(speaker)
        max_frames = int(max_audio_length_ms / FRAME_MS)
        if sampler is None:
            from mlx_lm.sample_utils import make_sampler

            # mlx-lm refuses top_k >= vocabulary; keeping every code is what it means
            top_k = int(topk) if topk < self.model.args.audio_vocab_size else 0
            sampler = make_sampler(temp=float(temperature), top_k=top_k)
        sampler = self.decodable(sampler)
        tokens, mask = self.prompt(text, speaker, context)
        n_text = len(self.text_frames(text, speaker)[0])
        self.check_length(len(tokens), max_frames, len(tokens) - n_text)
        return self.frames_from_prompt(tokens, mask, max_frames, sampler)

    def decodable(self, sampler: Sampler) -> Sampler:
        """``sampler`` restricted to the codes the codec decodes: CSM's 2051 ids per codebook
        end with three (2048-2050: padding and specials) that Mimi has no entry for; the
        official generator can sample them (then its codec fails), so their logits are set
        to -inf first. A vocabulary no larger than the codec's is left as it is."""
        config = getattr(self.codec, "config", None)
        size = getattr(config, "codebook_size", MIMI_CODES)
        if self.model.args.audio_vocab_size <= size:
            return sampler

        def masked(logits: mx.array) -> mx.array:
            keep = mx.arange(logits.shape[-1]) < size
            return sampler(mx.where(keep, logits, -mx.inf))

        return masked

    def frames_from_prompt(
        self,
        tokens,
        mask,
        max_frames: int,
        sampler: Sampler,
        decoder_sampler: Sampler | None = None,
    ) -> Iterator[mx.array]:
        """Yields frames' codes ``[32]`` int32 after a prompt of frames ``tokens`` ``[L, 33]``
        and ``mask`` (see :meth:`prompt`), until an all-zero frame (not yielded) or
        ``max_frames``; each frame is fed back as an audio frame. No length check."""
        cache = make_cache(self.model.backbone)
        tokens, mask = mx.array(tokens)[None], mx.array(mask)[None]
        frame_mask = mx.array([[[True] * self.num_codebooks + [False]]])
        for _ in range(max_frames):
            codes = self.model.generate_frame(tokens, mask, cache, sampler, decoder_sampler)
            mx.eval(codes)
            if not mx.any(codes).item():
                return
            yield codes[0]
            tokens = mx.concatenate([codes, mx.zeros((1, 1), mx.int32)], axis=1)[None]
            mask = frame_mask

    def generate_codes(
        self, text: str, speaker: int = 0, context: Sequence[Segment] = (),
        max_audio_length_ms: float = 90_000, temperature: float = 0.9, topk: int = 50, *,
        sampler: Sampler | None = None,
    ) -> mx.array:  # fmt: skip
        """All the frames' codes as ``[32, T]`` int32 (arguments as for
        :meth:`generate_frames`)."""
        frames = list(self.generate_frames(text, speaker, context, max_audio_length_ms,
                                           temperature, topk, sampler=sampler))  # fmt: skip
        if not frames:
            return mx.zeros((self.num_codebooks, 0), mx.int32)
        return mx.stack(frames, axis=1)

    def generate(
        self, text: str, speaker: int = 0, context: Sequence[Segment] = (),
        max_audio_length_ms: float = 90_000, temperature: float = 0.9, topk: int = 50, *,
        sampler: Sampler | None = None,
    ) -> mx.array:  # fmt: skip
        """Speech for ``text`` as ``[samples, 1]`` float32 at :attr:`sample_rate`, as
        Sesame's ``Generator.generate`` (arguments as for :meth:`generate_frames`).

        Raises:
            RuntimeError: No codec.
            ValueError: As for :meth:`generate_frames`.
        """
        if self.codec is None:
            raise RuntimeError(
                "generating audio needs the Mimi codec: load CSM with codec=... "
                "(generate_codes gives the codes without it)"
            )
        codes = self.generate_codes(text, speaker, context, max_audio_length_ms, temperature,
                                    topk, sampler=sampler)  # fmt: skip
        if codes.shape[1] == 0:
            return mx.zeros((0, 1))
        return self.codec.decode(codes)
