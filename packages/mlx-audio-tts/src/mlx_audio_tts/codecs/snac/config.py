"""SNAC hyper-parameters: hubertsiuzdak's ``config.json`` (the arguments of ``snac.SNAC``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from mlx_audio_io.hub import check_number, check_type

# generous bounds (8-100x the 24 kHz release's), so a config cannot ask for billions of weights
_INTS = {
    "sampling_rate": (1000, 384000), "encoder_dim": (1, 1024), "decoder_dim": (2, 16384),
    "codebook_size": (2, 65536), "codebook_dim": (1, 1024),
}  # fmt: skip


MAX_PARAMETERS = 1_000_000_000


def _check_int_list(name: str, value, low: int, high: int, max_len: int = 8) -> None:
    check_type(name, value, list, f"a list of 1 to {max_len} ints")
    if not 1 <= len(value) <= max_len:
        raise ValueError(f"{name} must be a list of 1 to {max_len} ints, got {len(value)} items")
    for i, v in enumerate(value):
        check_number(f"{name}[{i}]", v, low, high)


@dataclass
class ModelArgs:
    """SNAC's configuration; the defaults are ``hubertsiuzdak/snac_24khz``'s.

    Attributes:
        sampling_rate: Hz.
        encoder_dim: Width of the encoder's first layer (doubling at every down-sampling).
        encoder_rates: Down-sampling factors; their product is the hop in samples.
        latent_dim: Width of the latent; None means ``encoder_dim * 2 ** len(encoder_rates)``.
        decoder_dim: Width of the decoder's first layer (halving at every up-sampling).
        decoder_rates: Up-sampling factors (their product must equal the hop).
        attn_window_size: Local attention window; must be None (the 24 kHz model has none).
        codebook_size, codebook_dim: Entries and width of each level's codebook.
        vq_strides: Latent frames per code at each level, coarsest first.
        noise: Whether the decoder adds learnt, input-scaled Gaussian noise after upsampling.
        depthwise: Whether the residual units' dilated convolutions are depthwise.
        extra: Unknown keys of ``config.json``, kept for writing back.
    """

    sampling_rate: int = 24000
    encoder_dim: int = 48
    encoder_rates: list[int] = field(default_factory=lambda: [2, 4, 8, 8])
    latent_dim: int | None = None
    decoder_dim: int = 1024
    decoder_rates: list[int] = field(default_factory=lambda: [8, 8, 4, 2])
    attn_window_size: int | None = None
    codebook_size: int = 4096
    codebook_dim: int = 8
    vq_strides: list[int] = field(default_factory=lambda: [4, 2, 1])
    noise: bool = True
    depthwise: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, (low, high) in _INTS.items():
            check_number(key, getattr(self, key), low, high)
        _check_int_list("encoder_rates", self.encoder_rates, 1, 64)
        _check_int_list("decoder_rates", self.decoder_rates, 1, 64)
        _check_int_list("vq_strides", self.vq_strides, 1, 64)
        if self.latent_dim is not None:
            check_number("latent_dim", self.latent_dim, 1, 16384)
        if self.attn_window_size is not None:
            raise ValueError(
                f"attn_window_size must be null (local attention is not implemented; the "
                f"24 kHz SNAC has none), got {self.attn_window_size!r}"
            )
        check_type("noise", self.noise, bool, "true or false")
        check_type("depthwise", self.depthwise, bool, "true or false")
        if self.encoder_dim * 2 ** len(self.encoder_rates) > 16384:
            raise ValueError("encoder_dim * 2 ** len(encoder_rates) must be at most 16384")
        if self.decoder_dim % 2 ** len(self.decoder_rates):
            raise ValueError(
                f"decoder_dim must be divisible by 2 ** len(decoder_rates) (the width halves "
                f"at every up-sampling), got {self.decoder_dim} and {len(self.decoder_rates)} rates"
            )
        if math.prod(self.decoder_rates) != self.hop_length:
            raise ValueError(
                f"the product of decoder_rates ({math.prod(self.decoder_rates)}) must equal "
                f"that of encoder_rates ({self.hop_length})"
            )
        if self.approx_parameters() > MAX_PARAMETERS:
            raise ValueError(
                f"this config asks for about {self.approx_parameters():,} parameters, more "
                f"than the {MAX_PARAMETERS:,} allowed (the 24 kHz release has 19.8 million)"
            )

    def approx_parameters(self) -> int:
        """The convolution and codebook weights the config asks for (biases and norms left out)."""

        def unit(d: int) -> int:  # a residual unit: k7 (depthwise or not) and 1x1 convolutions
            return (7 * d if self.depthwise else 7 * d * d) + d * d

        total, d = 0, self.encoder_dim
        for s in self.encoder_rates:
            total += 3 * unit(d) + d * 2 * d * 2 * s
            d *= 2
        c, latent = self.decoder_dim, self.latent_channels
        total += latent * c * (1 if self.depthwise else 7)
        for i, s in enumerate(self.decoder_rates):
            c_in = c // 2**i
            c_out = c_in // 2
            total += c_in * c_out * 2 * s + 3 * unit(c_out)
            total += c_out * c_out if self.noise else 0
        levels = len(self.vq_strides)
        return total + levels * (self.codebook_size + 2 * latent) * self.codebook_dim

    @classmethod
    def from_dict(cls, config: dict) -> ModelArgs:
        """Reads a parsed ``config.json``, keeping unknown keys in ``extra``.

        Raises:
            ValueError: Not a dict, or a field of the wrong type or out of range.
        """
        check_type("config", config, dict, "a JSON object (dict)")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in config.items() if k in names}
        extra = {k: v for k, v in config.items() if k not in names}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        """The JSON form, as ``snac`` writes it (plus any ``extra`` keys)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**out, **self.extra}

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame (512 at 24 kHz)."""
        return math.prod(self.encoder_rates)

    @property
    def latent_channels(self) -> int:
        return self.latent_dim or self.encoder_dim * 2 ** len(self.encoder_rates)

    @property
    def frame_latents(self) -> int:
        """Latent frames per code frame: one code of the coarsest level (4 at 24 kHz)."""
        return math.lcm(*self.vq_strides)
