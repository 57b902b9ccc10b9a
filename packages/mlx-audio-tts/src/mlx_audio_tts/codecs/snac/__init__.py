"""SNAC 24 kHz neural audio codec (hubertsiuzdak), in MLX."""

from .config import ModelArgs
from .load import load_model, save_model
from .model import SNAC, Model, PositionalNoise, StreamingDecoder

__all__ = [
    "SNAC",
    "Model",
    "ModelArgs",
    "PositionalNoise",
    "StreamingDecoder",
    "load_model",
    "save_model",
]
