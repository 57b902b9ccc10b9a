"""Mimi, Kyutai's 24 kHz / 12.5 Hz streaming neural audio codec (CSM's), in MLX."""

from .config import ModelArgs
from .load import build_model, convert, load_model, save_model
from .model import Mimi, Model, StreamingDecoder

__all__ = [
    "Mimi",
    "Model",
    "ModelArgs",
    "StreamingDecoder",
    "build_model",
    "convert",
    "load_model",
    "save_model",
]
