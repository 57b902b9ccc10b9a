"""GELU and GLU for the HTDemucs layers (mlx_audio_io.nn's, with their CPU fast paths)."""

from mlx_audio_io.nn import gelu, glu

__all__ = ["gelu", "glu"]
