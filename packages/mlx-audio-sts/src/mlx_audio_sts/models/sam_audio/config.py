"""SAM-Audio's configuration: the official ``config.json`` (``SAMAudioConfig`` of
facebookresearch/sam-audio) read into dataclasses; unknown keys are ignored."""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any


def _from_dict(cls, values: dict | None):
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)} & set(inspect.signature(cls).parameters)
    return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class CodecConfig:
    """DAC-VAE (``audio_codec``): 48 kHz mono, hop ``prod(encoder_rates)`` = 1920 samples,
    ``codebook_dim`` features per frame."""

    encoder_dim: int = 64
    encoder_rates: list[int] = field(default_factory=lambda: [2, 8, 10, 12])
    latent_dim: int = 1024
    decoder_dim: int = 1536
    decoder_rates: list[int] = field(default_factory=lambda: [12, 10, 8, 2])
    n_codebooks: int = 16
    codebook_size: int = 1024
    codebook_dim: int = 128
    sample_rate: int = 48_000

    @property
    def hop_length(self) -> int:
        return math.prod(self.encoder_rates)

    def __post_init__(self):
        if len(self.decoder_rates) != 4:
            raise ValueError(
                f"audio_codec.decoder_rates must have 4 strides (the watermark branch has "
                f"4), got {self.decoder_rates!r}"
            )
        if self.decoder_dim % 48:
            raise ValueError(
                f"audio_codec.decoder_dim must be a multiple of 48 (the watermark branch is a "
                f"third of every block's width), got {self.decoder_dim}"
            )


@dataclass
class TransformerConfig:
    """The DiT (``transformer``); defaults are the official ``TransformerConfig``'s (base)."""

    dim: int = 2048
    n_heads: int = 16
    n_layers: int = 16
    norm_eps: float = 1e-5
    qk_norm: bool = True
    fc_bias: bool = False
    ffn_exp: int = 4
    ffn_dim_multiplier: int = 1
    multiple_of: int = 64
    non_linearity: str = "swiglu"
    use_rope: bool = True
    max_positions: int = 10000
    frequency_embedding_dim: int = 256
    timestep_non_linearity: str = "swiglu"
    t_block_non_linearity: str = "silu"
    t_block_bias: bool = True
    context_dim: int = 2048
    context_non_linearity: str = "swiglu"
    context_norm: bool = False
    out_channels: int = 256

    def __post_init__(self):
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(
                f"transformer.dim ({self.dim}) must split into n_heads ({self.n_heads}) heads "
                "of an even size"
            )
        for name in ("non_linearity", "timestep_non_linearity", "context_non_linearity"):
            if getattr(self, name) != "swiglu":
                raise ValueError(
                    f"transformer.{name} must be 'swiglu', got {getattr(self, name)!r}"
                )
        if self.t_block_non_linearity != "silu":
            raise ValueError(
                f"transformer.t_block_non_linearity must be 'silu', got "
                f"{self.t_block_non_linearity!r}"
            )

    @property
    def ffn_hidden(self) -> int:
        """The SwiGLU width: ``int(2/3 * ffn_exp * dim)`` scaled and rounded up as the
        reference's ``FeedForward`` does."""
        hidden = int(self.ffn_dim_multiplier * int(2 * int(self.ffn_exp * self.dim) / 3))
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


@dataclass
class TextEncoderConfig:
    """The T5 text encoder (``text_encoder``): its Hub name, token limit and width."""

    name: str = "t5-base"
    max_length: int | None = 512
    pad_mode: str = "longest"
    dim: int = 768


@dataclass
class SAMAudioConfig:
    """The whole model. ``vision_dim`` is the vision encoder's feature width (1024 for
    PE-Core-L14-336): audio-only prompts feed zeros of that width through
    ``align_masked_video``."""

    in_channels: int = 768
    audio_codec: CodecConfig = field(default_factory=CodecConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    vision_dim: int = 1024
    num_anchors: int = 3
    anchor_embedding_dim: int = 128

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SAMAudioConfig:
        """The official ``config.json`` dict (nested ``audio_codec``, ``text_encoder``,
        ``vision_encoder``, ``transformer``); unknown keys are ignored."""
        if not isinstance(values, dict):
            raise ValueError(f"SAM-Audio config must be a JSON object, got {values!r}")
        vision = values.get("vision_encoder") or {}
        cfg = cls(
            in_channels=int(values.get("in_channels", 768)),
            audio_codec=_from_dict(CodecConfig, values.get("audio_codec")),
            text_encoder=_from_dict(TextEncoderConfig, values.get("text_encoder")),
            transformer=_from_dict(TransformerConfig, values.get("transformer")),
            vision_dim=int(vision.get("dim", 1024)) if isinstance(vision, dict) else 1024,
            num_anchors=int(values.get("num_anchors", 3)),
            anchor_embedding_dim=int(values.get("anchor_embedding_dim", 128)),
        )
        if cfg.in_channels != 6 * cfg.audio_codec.codebook_dim:
            raise ValueError(
                f"in_channels must be 6 x audio_codec.codebook_dim "
                f"({6 * cfg.audio_codec.codebook_dim}), got {cfg.in_channels}"
            )
        if cfg.transformer.out_channels != 2 * cfg.audio_codec.codebook_dim:
            raise ValueError(
                f"transformer.out_channels must be 2 x audio_codec.codebook_dim, got "
                f"{cfg.transformer.out_channels}"
            )
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """The official ``config.json`` layout."""
        return {
            "in_channels": self.in_channels,
            "audio_codec": dataclasses.asdict(self.audio_codec),
            "text_encoder": dataclasses.asdict(self.text_encoder),
            "vision_encoder": {"dim": self.vision_dim},
            "transformer": dataclasses.asdict(self.transformer),
            "num_anchors": self.num_anchors,
            "anchor_embedding_dim": self.anchor_embedding_dim,
            "model_type": "sam_audio",
        }
