"""torchaudio stand-in: sam_audio.processor and descript-audiotools import it at module level;
only file loading and resampling use it, and the parity path passes 48 kHz tensors."""

from _sam_stubs import unavailable

from . import functional

__version__ = "0.0.0+sam-stub"
__all__ = ["functional", "load", "save", "info"]

load = unavailable("torchaudio.load")
save = unavailable("torchaudio.save")
info = unavailable("torchaudio.info")
