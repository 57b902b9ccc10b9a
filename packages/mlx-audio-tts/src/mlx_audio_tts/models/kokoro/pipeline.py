"""``KokoroPipeline``: text -> (graphemes, phonemes, audio) segment by segment, as
``kokoro.KPipeline`` does: split the text (``split_pattern``), normalise numbers, dates and
currencies (English), phonemize, cut what exceeds the model's 510-phoneme context at sentence,
then clause, then word boundaries, and synthesise each piece with the voice pack's row for
its length."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import mlx.core as mx

from ...g2p import G2P, resolve_lang_code, shared_g2p
from ...normalize import normalize_text
from ...text_split import BREAKS as _BREAKS
from .load import DEFAULT_REPO, load_model
from .model import KokoroModel
from .voices import load_voice, style_for

__all__ = ["KokoroPipeline", "Result", "check_speed"]

log = logging.getLogger(__name__)

MIN_SPEED, MAX_SPEED = 0.5, 2.0


def check_speed(speed) -> float:
    """``speed`` as a float, checked to lie in Kokoro's usable range [0.5, 2.0].

    Raises:
        ValueError: Outside the range, or not a number.
    """
    try:
        value = float(speed)
    except (TypeError, ValueError):
        raise ValueError(f"speed must be a number, got {speed!r}") from None
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed}")
    return value


@dataclass
class Result:
    """One synthesised segment. Unpacks as ``graphemes, phonemes, audio`` (kokoro's
    ``KPipeline.Result``); ``audio`` is ``[1, samples]`` at 24 kHz (None when the pipeline
    has no model), ``pred_dur`` the frames per token."""

    graphemes: str
    phonemes: str
    audio: mx.array | None = None
    pred_dur: mx.array | None = None

    def __iter__(self):
        return iter((self.graphemes, self.phonemes, self.audio))


class KokoroPipeline:
    """Text to speech with Kokoro for one language.

    Args:
        lang_code: ``"a"`` American English, ``"b"`` British, ``"e"`` Spanish, ``"f"``
            French, ``"h"`` Hindi, ``"i"`` Italian, ``"p"`` Brazilian Portuguese, ``"j"``
            Japanese, ``"z"`` Mandarin (or ``"en-us"``-style aliases).
        model: A loaded :class:`KokoroModel`; ``True`` loads ``repo_id``; ``False`` makes a
            phonemes-only pipeline (``audio`` is None).
        repo_id: Where the model (``model=True``) and voices come from: a Hub repo id or a
            local folder (default ``hexgrad/Kokoro-82M``). Voices are looked for in the
            model's own folder first.
        g2p: A text -> phonemes callable to use instead of the language's shared one
            (:func:`mlx_audio_tts.g2p.shared_g2p`, loaded once per process).
        normalize: Spell out numbers, dates and currencies before English G2P.

    Raises:
        ValueError: Unknown language or a ``model`` that is not a Kokoro model.
        RuntimeError: The language's G2P packages are missing (names them).
    """

    def __init__(self, lang_code: str = "a", model: KokoroModel | bool = True,
                 repo_id: str | None = None, g2p=None, normalize: bool = True):  # fmt: skip
        self.lang_code = resolve_lang_code(lang_code)
        self.repo_id = repo_id or DEFAULT_REPO
        if model is True:
            model = load_model(self.repo_id)
        elif model is False or model is None:
            model = None
        elif not isinstance(model, KokoroModel):
            raise ValueError(f"model must be a KokoroModel, True or False, got {type(model)}")
        self.model = model
        self.g2p: G2P = g2p if g2p is not None else shared_g2p(self.lang_code)
        self.normalize = normalize and self.lang_code in "ab"
        self.context = model.context_length - 2 if model is not None else 510
        self._voices: dict[str, mx.array] = {}

    def load_voice(self, voice) -> mx.array:
        """A voice pack (name, path, ``"a,b"`` blend, ``{name: weight}`` or array; see
        :func:`mlx_audio_tts.models.kokoro.voices.load_voice`), cached by name."""
        key = voice if isinstance(voice, str) else None
        if key is not None and key in self._voices:
            return self._voices[key]
        folder = getattr(self.model, "folder", None)
        pack = load_voice(voice, folder=folder, repo_id=self.repo_id)
        if key is not None:
            self._voices[key] = pack
        return pack

    def phonemize(self, text: str) -> list[tuple[str, str]]:
        """``(graphemes, phonemes)`` pieces of one text, each within the model's context."""
        return [piece for piece in self._fit(text.strip(), 0) if piece[1]]

    def _phonemes(self, text: str) -> str:
        return self.g2p(normalize_text(text, self.lang_code == "b") if self.normalize else text)

    def _fit(self, text: str, level: int) -> list[tuple[str, str]]:
        phonemes = self._phonemes(text)
        if len(phonemes) <= self.context:
            return [(text, phonemes)]
        parts: list[str] = []
        while len(parts) <= 1 and level < len(_BREAKS):
            parts = [p for p in re.split(_BREAKS[level], text) if p.strip()]
            level += 1
        if len(parts) <= 1:  # one word beyond the context: kokoro truncates too
            log.warning("a piece of %d phonemes exceeds Kokoro's context of %d and was cut: %r",
                        len(phonemes), self.context, text[:80])  # fmt: skip
            return [(text, phonemes[: self.context])]
        pieces: list[tuple[str, str]] = []
        for part in parts:
            for g, p in self._fit(part, level):
                if pieces and len(pieces[-1][1]) + 1 + len(p) <= self.context:
                    pieces[-1] = (f"{pieces[-1][0]} {g}", f"{pieces[-1][1]} {p}")
                else:
                    pieces.append((g, p))
        return pieces

    def __call__(self, text, voice=None, speed: float = 1.0,
                 split_pattern: str | None = r"\n+") -> Iterator[Result]:  # fmt: skip
        """Yields one :class:`Result` per segment: the text is cut at ``split_pattern``
        (None: not cut), each part phonemized and, if longer than the context, cut further.

        Args:
            text: A string or a list of strings (each split on its own).
            voice: A voice name, path, blend or pack (required when there is a model).
            speed: 0.5 to 2.0; durations are divided by it.
            split_pattern: A regular expression to split the text on.

        Raises:
            ValueError: No voice with a model, speed out of range, text not a string.
        """
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, list | tuple) or not all(isinstance(t, str) for t in texts):
            raise ValueError("text must be a str or a list of str")
        speed = check_speed(speed)
        pack = None
        if self.model is not None:
            if voice is None:
                raise ValueError("a voice is needed to synthesise, e.g. voice='af_heart'")
            pack = self.load_voice(voice)
        for t in texts:
            for graphemes, phonemes in self.segments(t, split_pattern):
                yield self.synthesize(graphemes, phonemes, pack, speed)

    def segments(self, text: str, split_pattern: str | None = r"\n+") -> list[tuple[str, str]]:
        """``(graphemes, phonemes)`` of each segment of ``text``: cut at ``split_pattern``
        (None: not cut), each part phonemized and cut further where it exceeds the context."""
        parts = re.split(split_pattern, text) if split_pattern else [text]
        return [piece for part in parts if part.strip() for piece in self.phonemize(part)]

    def synthesize(self, graphemes: str, phonemes: str, pack, speed: float = 1.0) -> Result:
        """One segment's :class:`Result` with ``pack`` (from :meth:`load_voice`; None: no
        audio)."""
        if pack is None or self.model is None:
            return Result(graphemes, phonemes)
        out = self.model(phonemes, style_for(pack, len(phonemes)), speed)
        return Result(graphemes, phonemes, out.audio.reshape(1, -1), out.pred_dur)
