"""Orpheus-3B text-to-speech (canopylabs): a Llama-3.2-3B speaking SNAC 24 kHz codes.

The token protocol (:mod:`.protocol`) and the model (:mod:`.model`: the Llama through mlx-lm,
the SNAC codec, ``generate`` and ``stream``); :mod:`mlx_audio_tts.generate` has the user-facing
calls."""

from .model import (
    DEFAULT_CODEC,
    DEFAULT_MODEL,
    OrpheusModel,
    check_chunk_tokens,
    check_sampling,
    load_model,
)
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
    "DEFAULT_CODEC",
    "DEFAULT_MODEL",
    "DEFAULT_SAMPLING",
    "EMOTION_TAGS",
    "VOICES",
    "FrameAssembler",
    "OrpheusModel",
    "check_chunk_tokens",
    "check_sampling",
    "check_voice",
    "frame_tokens",
    "frames_from_tokens",
    "iter_frames",
    "level_codes",
    "load_model",
    "prompt_ids",
]
