"""Source separation on MLX: HTDemucs (Demucs v4), proven against the official demucs."""

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

from .models.htdemucs import BagOfModels, HTDemucs, ModelArgs, apply_model, save_model
from .models.htdemucs.pretrained import from_pretrained
from .separate import get_model, separate

__version__ = "0.1.0"

__all__ = [
    "BagOfModels",
    "HTDemucs",
    "ModelArgs",
    "__version__",
    "apply_model",
    "from_pretrained",
    "get_model",
    "save_model",
    "separate",
]
