"""Orpheus' token protocol: how text becomes a prompt and generated tokens become SNAC codes.

Orpheus-3B is a Llama-3.2-3B whose vocabulary ends in 7 x 4096 audio tokens. The prompt is
``[start of human] + tokens("{voice}: {text}") + [end of text, end of human, start of AI, start
of speech]``; the model then speaks in groups of 7 tokens, one SNAC frame each (2048 samples,
85.3 ms at 24 kHz), and ends with ``end of speech``. Token ``128266 + slot * 4096 + code``
carries ``code`` in position ``slot`` (0-6) of its group; the positions map onto SNAC's three
levels as ``[t0]``, ``[t1, t4]``, ``[t2, t3, t5, t6]``.

Slots follow the count of audio tokens kept so far, as in canopyai's decoder: a token whose
code falls outside ``[0, 4096)`` for its slot is dropped (it does not advance the count).
canopyai's decoder also drops code 0 (it keeps ``code > 0``), which misaligns every later
frame; code 0 is a valid SNAC code and is kept here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence

START_OF_HUMAN = 128259
END_OF_TEXT = 128009
END_OF_HUMAN = 128260
START_OF_AI = 128261
START_OF_SPEECH = 128257
END_OF_SPEECH = 128258
END_OF_AI = 128262
AUDIO_BASE = 128266
CODEBOOK_SIZE = 4096
FRAME_TOKENS = 7
SAMPLES_PER_FRAME = 2048  # SNAC 24 kHz: one coarse code per 2048 samples

VOICES = ("tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe")
EMOTION_TAGS = ("<laugh>", "<chuckle>", "<sigh>", "<cough>", "<sniffle>", "<groan>", "<yawn>",
                "<gasp>")  # fmt: skip
#: the official sampling defaults (canopyai's engine)
DEFAULT_SAMPLING = {"temperature": 0.6, "top_p": 0.8, "repetition_penalty": 1.3, "max_tokens": 1200}

# slot -> (SNAC level, position within the frame's codes of that level)
_LEVEL_OF_SLOT = ((0, 0), (1, 0), (2, 0), (2, 1), (1, 1), (2, 2), (2, 3))


def check_voice(voice: str) -> str:
    """The voice name for the prompt. One of the eight trained voices is expected; another
    name is a warning that lists them (the model still conditions on the name).

    Raises:
        ValueError: ``voice`` is not a non-empty string.
    """
    if not isinstance(voice, str) or not voice.strip():
        raise ValueError(f"voice must be a non-empty string, got {voice!r}")
    if voice not in VOICES:
        warnings.warn(
            f"voice {voice!r} is not one of Orpheus' trained voices ({', '.join(VOICES)}); "
            "the model conditions on the name anyway",
            UserWarning,
            stacklevel=2,
        )
    return voice


def prompt_ids(encode: Callable[[str], Sequence[int]], text: str, voice: str = "tara") -> list[int]:
    """The prompt's token ids.

    Args:
        encode: The checkpoint tokenizer's ``encode`` (adds ``<|begin_of_text|>``).
        text: What to say; emotion tags such as ``<laugh>`` stay in the text.
        voice: The speaker (see :func:`check_voice`).

    Raises:
        ValueError: Empty text or a bad voice.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    voice = check_voice(voice)
    body = [int(t) for t in encode(f"{voice}: {text}")]
    return [START_OF_HUMAN, *body, END_OF_TEXT, END_OF_HUMAN, START_OF_AI, START_OF_SPEECH]


def audio_token(slot: int, code: int) -> int:
    """The token id carrying ``code`` at position ``slot`` of a frame."""
    if not 0 <= slot < FRAME_TOKENS or not 0 <= code < CODEBOOK_SIZE:
        raise ValueError(f"slot must be in [0, 7) and code in [0, 4096), got {slot}, {code}")
    return AUDIO_BASE + slot * CODEBOOK_SIZE + code


def frame_tokens(l0: int, l1: Sequence[int], l2: Sequence[int]) -> list[int]:
    """The 7 token ids of one SNAC frame (1, 2 and 4 codes at levels 0, 1, 2)."""
    levels = (l0,), tuple(l1), tuple(l2)
    if len(levels[1]) != 2 or len(levels[2]) != 4:
        raise ValueError(f"a frame has 1, 2 and 4 codes, got {l1!r} and {l2!r}")
    return [audio_token(s, levels[lv][i]) for s, (lv, i) in enumerate(_LEVEL_OF_SLOT)]


class FrameAssembler:
    """Turns generated token ids into SNAC frames as they come (for streaming).

    ``push(token)`` returns True once the stream has ended (end of speech or end of AI);
    complete frames accumulate in :attr:`frames` as ``(l0, (l1a, l1b), (l2a, ..., l2d))``.
    Tokens before the audio (start of AI, start of speech) and other non-audio tokens are
    ignored; out-of-range codes are dropped (:attr:`dropped` counts them).
    """

    def __init__(self) -> None:
        self.frames: list[tuple[int, tuple[int, int], tuple[int, int, int, int]]] = []
        self.dropped = 0
        self.ended = False
        self._group: list[int] = []

    def push(self, token: int) -> bool:
        if self.ended:
            return True
        token = int(token)
        if token in (END_OF_SPEECH, END_OF_AI):
            self.ended = True
            return True
        if token < AUDIO_BASE:
            return False  # framing, or text the model emitted: not audio
        slot = len(self._group)
        code = token - AUDIO_BASE - slot * CODEBOOK_SIZE
        if not 0 <= code < CODEBOOK_SIZE:
            self.dropped += 1
            return False
        self._group.append(code)
        if len(self._group) == FRAME_TOKENS:
            g = self._group
            self.frames.append((g[0], (g[1], g[4]), (g[2], g[3], g[5], g[6])))
            self._group = []
        return False

    def extend(self, tokens: Iterable[int]) -> bool:
        """push() for each token until the stream ends; True when it has."""
        return any(self.push(t) for t in tokens)

    @property
    def partial(self) -> int:
        """Audio tokens of the frame in progress (0-6); dropped at the end of the stream."""
        return len(self._group)


def frames_from_tokens(tokens: Iterable[int]) -> list:
    """The complete SNAC frames in a generated token sequence (see :class:`FrameAssembler`)."""
    asm = FrameAssembler()
    asm.extend(tokens)
    return asm.frames


def level_codes(frames: Sequence) -> tuple[list[int], list[int], list[int]]:
    """Frames as SNAC's three code sequences: ``n``, ``2 n`` and ``4 n`` codes."""
    l0 = [f[0] for f in frames]
    l1 = [c for f in frames for c in f[1]]
    l2 = [c for f in frames for c in f[2]]
    return l0, l1, l2


def iter_frames(tokens: Iterable[int]) -> Iterator:
    """Yields each frame as soon as its 7th token arrives; stops at the end of speech."""
    asm = FrameAssembler()
    for t in tokens:
        before = len(asm.frames)
        ended = asm.push(t)
        if len(asm.frames) > before:
            yield asm.frames[-1]
        if ended:
            return
