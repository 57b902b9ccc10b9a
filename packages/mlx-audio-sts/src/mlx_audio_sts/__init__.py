"""Source separation on MLX: HTDemucs (Demucs v4), proven against the official demucs, and
SAM-Audio (text- and anchor-prompted), proven against facebookresearch/sam-audio."""

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

from .models.htdemucs import BagOfModels, HTDemucs, ModelArgs, apply_model, save_model
from .models.htdemucs.pretrained import from_pretrained
from .models.sam_audio import (
    Batch,
    SAMAudio,
    SAMAudioConfig,
    SAMAudioProcessor,
    SeparationResult,
)
from .models.sam_audio.separate import save_audio
from .separate import get_model, separate

__version__ = "2.0.0"

__all__ = [
    "BagOfModels",
    "Batch",
    "HTDemucs",
    "ModelArgs",
    "SAMAudio",
    "SAMAudioConfig",
    "SAMAudioProcessor",
    "SeparationResult",
    "__version__",
    "apply_model",
    "from_pretrained",
    "get_model",
    "save_audio",
    "save_model",
    "separate",
]
