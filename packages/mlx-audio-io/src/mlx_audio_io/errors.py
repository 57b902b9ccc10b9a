"""Exceptions raised by mlx_audio_io; each also subclasses the matching builtin."""


class AudioIOError(Exception):
    """Root of every error raised by mlx_audio_io."""


class AudioFileNotFoundError(AudioIOError, FileNotFoundError):
    """The path does not exist."""


class AudioFormatError(AudioIOError, ValueError):
    """Unsupported format, codec, encoding or argument combination."""


class AudioDecodeError(AudioIOError, RuntimeError):
    """The file is corrupt or could not be read or written."""
