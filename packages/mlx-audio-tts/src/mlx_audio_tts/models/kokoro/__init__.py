"""Kokoro-82M text-to-speech (hexgrad), in MLX."""

from .config import ModelConfig
from .load import load_model, save_model
from .model import KokoroModel, Output

__all__ = ["KokoroModel", "ModelConfig", "Output", "load_model", "save_model"]
