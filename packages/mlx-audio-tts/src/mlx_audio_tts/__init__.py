"""Text-to-speech models on MLX: Kokoro-82M (``mlx_audio_tts.models.kokoro``) so far;
Orpheus and CSM follow."""

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

__version__ = "0.1.0"

__all__ = ["__version__"]
