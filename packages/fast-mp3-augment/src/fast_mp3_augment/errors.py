"""Exceptions, named as in the public fast-mp3-augment 0.2.0; each is also a ValueError."""


class Mp3AugmentError(ValueError):
    """Root of the errors this package raises for bad input."""


class UnsupportedSampleRate(Mp3AugmentError):
    """The sample rate is not one MP3 can carry."""


class UnsupportedBitrate(Mp3AugmentError):
    """The bitrate is not an MP3 bitrate."""


class UnsupportedQuality(Mp3AugmentError):
    """LAME's quality must be 0 (best, slowest) to 9 (worst, fastest)."""


class WrongMultichannelAudioShape(Mp3AugmentError):
    """A 2-D input must be (channels, samples)."""


class UnsupportedNumberOfChannels(Mp3AugmentError):
    """Only mono and stereo are supported."""


class NonContiguousAudio(Mp3AugmentError):
    """A 2-D input must be C-contiguous."""


class TooShortAudio(Mp3AugmentError):
    """The input must be at least 100 ms long."""


class NonFiniteAudio(Mp3AugmentError):
    """NaN or inf in the input (LAME would abort the process on it)."""


class RoundTripError(RuntimeError):
    """LAME or libmpg123 failed."""
