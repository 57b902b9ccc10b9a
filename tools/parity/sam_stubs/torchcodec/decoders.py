"""torchcodec.decoders stand-in (used for audio and video files only)."""

from _sam_stubs import unavailable

AudioDecoder = unavailable("torchcodec.decoders.AudioDecoder")
VideoDecoder = unavailable("torchcodec.decoders.VideoDecoder")
