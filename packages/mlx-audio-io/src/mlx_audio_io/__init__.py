"""mlx-audio-io: decode and encode audio files straight to and from ``mlx.core.array``."""

from . import _blas  # noqa: F401  (first: loads OpenBLAS before mlx.core, see _blas.py)
from ._read import AudioInfo, AudioStreamReader, batch_load, info, load, stream
from ._write import resample, save
from .errors import AudioDecodeError, AudioFileNotFoundError, AudioFormatError, AudioIOError

__version__ = "0.1.0"

__all__ = [
    "AudioDecodeError",
    "AudioFileNotFoundError",
    "AudioFormatError",
    "AudioIOError",
    "AudioInfo",
    "AudioStreamReader",
    "__version__",
    "batch_load",
    "info",
    "load",
    "resample",
    "save",
    "stream",
]
