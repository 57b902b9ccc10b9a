"""Kokoro-82M text-to-speech (hexgrad), in MLX."""

from .config import ModelConfig
from .load import load_model, save_model
from .model import KokoroModel, Output
from .pipeline import KokoroPipeline, Result

__all__ = [
    "KokoroModel",
    "KokoroPipeline",
    "ModelConfig",
    "Output",
    "Result",
    "load_model",
    "save_model",
]
