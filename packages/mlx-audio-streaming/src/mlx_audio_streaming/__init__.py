"""mlx-audio-streaming: real-time Source -> Processor -> Sink audio pipelines on MLX."""

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

from .core import AudioRingBuffer, StreamChunk, StreamingContext
from .devices import AudioDeviceError, MicrophoneSource, SpeakerSink
from .metrics import SeparationMetrics, correlation, sdr, si_sdr, snr
from .pipeline import PipelineError, PipelineStats, PipelineTimeoutError, StreamingPipeline
from .processors import GainProcessor, IdentityProcessor, ProcessorChain, StreamProcessor
from .sinks import AudioSink, CallbackSink, FileSink, MultiFileSink
from .sources import AudioSource, CallbackSource, FileSource

__version__ = "2.0.0"

__all__ = [
    "AudioDeviceError",
    "AudioRingBuffer",
    "AudioSink",
    "AudioSource",
    "CallbackSink",
    "CallbackSource",
    "FileSink",
    "FileSource",
    "GainProcessor",
    "IdentityProcessor",
    "MicrophoneSource",
    "MultiFileSink",
    "PipelineError",
    "PipelineStats",
    "PipelineTimeoutError",
    "ProcessorChain",
    "SeparationMetrics",
    "SpeakerSink",
    "StreamChunk",
    "StreamProcessor",
    "StreamingContext",
    "StreamingPipeline",
    "__version__",
    "correlation",
    "sdr",
    "si_sdr",
    "snr",
]

# HTDemucsStreamProcessor imports mlx_audio_sts, an optional dependency
# (pip install mlx-audio-streaming[sts]): it loads on first use, not with this package,
# and stays out of __all__ so that `import *` works without it.
_LAZY = {"HTDemucsStreamProcessor": "separation"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
