"""HTDemucs (Demucs v4) source separation."""

from .apply import BagOfModels, apply_model
from .config import ModelArgs
from .convert import save_model
from .model import HTDemucs

__all__ = ["BagOfModels", "HTDemucs", "ModelArgs", "apply_model", "save_model"]
