"""What the stand-ins in this folder share.

tools/parity/sam_audio_ref.py appends this folder to ``sys.path`` (so an installed real package
wins): torchaudio, torchcodec, torchvision, timm and xformers, which the official SAM-Audio
reference imports at module level but never calls on the audio-only path. Each stub holds only
the names imported at module level; calling one raises ``NotImplementedError``.
"""


def unavailable(what: str):
    """Return a callable that raises for ``what`` (a stubbed function or class)."""

    def call(*args, **kwargs):
        raise NotImplementedError(
            f"{what} is a stub in tools/parity/sam_stubs: the offline SAM-Audio reference "
            "supports audio tensors only (no files, video or rankers)"
        )

    return call
