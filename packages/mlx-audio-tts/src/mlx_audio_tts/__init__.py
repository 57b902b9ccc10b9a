"""Text-to-speech models on MLX: Kokoro-82M (``mlx_audio_tts.models.kokoro``) so far;
Orpheus and CSM follow. The seed's entry points are here: ``generate_audio``,
``load_model`` and ``quantize_model`` (``mlx_audio.tts.utils``'), ``KokoroPipeline``."""

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

from .generate import generate_audio
from .models.kokoro import KokoroModel, KokoroPipeline
from .utils import load_model, quantize_model

__version__ = "2.0.0"

__all__ = [
    "KokoroModel",
    "KokoroPipeline",
    "__version__",
    "generate_audio",
    "load_model",
    "quantize_model",
]
