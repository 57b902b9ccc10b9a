"""mlx-audio-io: decode and encode audio files straight to and from ``mlx.core.array``."""

from . import _blas  # noqa: F401  (first: loads OpenBLAS before mlx.core, see _blas.py)
from ._batch import batch_load
from ._build import show_build_info, supports_soxr
from ._encoder import AudioEncoder
from ._read import AudioInfo, AudioStreamReader, info, load, stream
from ._write import PreparedAudio, prepare_save, resample, save, save_prepared
from ._writer import AudioWriter
from .errors import AudioDecodeError, AudioFileNotFoundError, AudioFormatError, AudioIOError

__version__ = "2.0.0"

__all__ = [
    "AudioEncoder",
    "AudioDecodeError",
    "AudioFileNotFoundError",
    "AudioFormatError",
    "AudioIOError",
    "AudioInfo",
    "AudioStreamReader",
    "AudioWriter",
    "PreparedAudio",
    "__version__",
    "batch_load",
    "info",
    "load",
    "prepare_save",
    "resample",
    "save",
    "save_prepared",
    "show_build_info",
    "stream",
    "supports_soxr",
]
