"""SAM-Audio: text- and anchor-prompted source separation (facebookresearch/sam-audio)."""

from .codec import DACVAE
from .config import CodecConfig, SAMAudioConfig, TextEncoderConfig, TransformerConfig
from .load import from_pretrained, save_model
from .model import DEFAULT_ODE_OPT, SAMAudio, SeparationResult
from .processor import Batch, SAMAudioProcessor

__all__ = [
    "DACVAE",
    "DEFAULT_ODE_OPT",
    "Batch",
    "CodecConfig",
    "SAMAudio",
    "SAMAudioConfig",
    "SAMAudioProcessor",
    "SeparationResult",
    "TextEncoderConfig",
    "TransformerConfig",
    "from_pretrained",
    "save_model",
]
