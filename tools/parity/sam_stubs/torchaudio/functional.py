"""torchaudio.functional stand-in (resample is reached only for files not at 48 kHz)."""

from _sam_stubs import unavailable

resample = unavailable("torchaudio.functional.resample")
lfilter = unavailable("torchaudio.functional.lfilter")
