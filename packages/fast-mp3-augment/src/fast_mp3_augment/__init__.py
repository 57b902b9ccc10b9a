"""fast-mp3-augment: MP3 round trips (LAME + libmpg123) for audio data augmentation."""

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

from ._core import (
    SUPPORTED_BITRATES,
    SUPPORTED_QUALITY_VALUES,
    SUPPORTED_SAMPLE_RATES,
    compress_roundtrip,
    compress_roundtrip_batch,
)
from .errors import (
    Mp3AugmentError,
    NonContiguousAudio,
    NonFiniteAudio,
    RoundTripError,
    TooShortAudio,
    UnsupportedBitrate,
    UnsupportedNumberOfChannels,
    UnsupportedQuality,
    UnsupportedSampleRate,
    WrongMultichannelAudioShape,
)

__version__ = "2.0.0"

__all__ = [
    "SUPPORTED_BITRATES",
    "SUPPORTED_QUALITY_VALUES",
    "SUPPORTED_SAMPLE_RATES",
    "Mp3AugmentError",
    "NonContiguousAudio",
    "NonFiniteAudio",
    "RoundTripError",
    "TooShortAudio",
    "UnsupportedBitrate",
    "UnsupportedNumberOfChannels",
    "UnsupportedQuality",
    "UnsupportedSampleRate",
    "WrongMultichannelAudioShape",
    "__version__",
    "compress_roundtrip",
    "compress_roundtrip_batch",
]
