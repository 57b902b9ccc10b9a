"""Source separation models (HTDemucs, SAM-Audio) on MLX.

Placeholder: installs and imports; its API arrives with its own issue.
"""

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

__version__ = "0.1.0"

__all__ = ["__version__"]
