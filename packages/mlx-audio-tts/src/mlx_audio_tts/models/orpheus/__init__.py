"""Orpheus-3B text-to-speech (canopylabs): a Llama-3.2-3B speaking SNAC 24 kHz codes.

This session's part is the token protocol (:mod:`.protocol`); the language model (through
mlx-lm) and the generation API follow (issue 16)."""

from .protocol import (
    DEFAULT_SAMPLING,
    EMOTION_TAGS,
    VOICES,
    FrameAssembler,
    check_voice,
    frame_tokens,
    frames_from_tokens,
    iter_frames,
    level_codes,
    prompt_ids,
)

__all__ = [
    "DEFAULT_SAMPLING",
    "EMOTION_TAGS",
    "VOICES",
    "FrameAssembler",
    "check_voice",
    "frame_tokens",
    "frames_from_tokens",
    "iter_frames",
    "level_codes",
    "prompt_ids",
]
