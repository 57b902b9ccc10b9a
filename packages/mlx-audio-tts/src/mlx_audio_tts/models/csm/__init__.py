"""Sesame CSM-1B (SesameAILabs/csm): a Llama-3.2-1B backbone and a depth decoder through
mlx-lm, speaking Mimi codes.

:mod:`.model` (the two Llamas, frame embedding, per-frame decoding), :mod:`.config` (the three
``config.json`` styles), :mod:`.convert` (torchtune, transformers and mlx-audio layouts to
ours), :mod:`.load` (folders, files, Hub repos, the tokenizer) and :mod:`.generate`
(``Segment``, the prompt, ``CSM.generate``)."""

from .config import LLAMA3_ROPE, ModelArgs
from .convert import convert_weights, permute_for_rope, save_model, unpermute_for_rope
from .generate import CSM, Segment, check_reference, check_sampling, check_speaker
from .load import (
    DEFAULT_MODEL,
    DEFAULT_TOKENIZER,
    TextTokenizer,
    load_csm_weights,
    load_model,
    load_tokenizer,
)
from .model import Model, make_cache

__all__ = [
    "CSM",
    "DEFAULT_MODEL",
    "DEFAULT_TOKENIZER",
    "LLAMA3_ROPE",
    "Model",
    "ModelArgs",
    "Segment",
    "TextTokenizer",
    "check_reference",
    "check_sampling",
    "check_speaker",
    "convert_weights",
    "load_csm_weights",
    "load_model",
    "load_tokenizer",
    "make_cache",
    "permute_for_rope",
    "save_model",
    "unpermute_for_rope",
]
