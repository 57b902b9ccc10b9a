"""Exceptions raised by mlx_audio_io; each also subclasses the matching builtin."""


class AudioIOError(Exception):
    """Root of every error raised by mlx_audio_io."""


class AudioFileNotFoundError(AudioIOError, FileNotFoundError):
    """The path does not exist; ``filename`` holds it and ``errno`` is ENOENT."""

    def __str__(self) -> str:
        return str(self.strerror)


class AudioFormatError(AudioIOError, ValueError):
    """Unsupported format, codec, encoding or argument combination."""


class AudioDecodeError(AudioIOError, RuntimeError):
    """The file is corrupt or could not be read or written."""
