"""Kokoro hyper-parameters: hexgrad's ``config.json`` (``kokoro.KModel``'s ``config``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# transformers.AlbertConfig's defaults, which Kokoro's ``plbert`` section overrides in part
ALBERT_DEFAULTS = {
    "embedding_size": 128,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 2048,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu_new",
}

ISTFTNET_DEFAULTS = {
    "upsample_kernel_sizes": [20, 12],
    "upsample_rates": [10, 6],
    "gen_istft_hop_size": 5,
    "gen_istft_n_fft": 20,
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "resblock_kernel_sizes": [3, 7, 11],
    "upsample_initial_channel": 512,
}


@dataclass
class ModelConfig:
    """The architecture of one Kokoro model, with the field names of hexgrad's
    ``config.json`` (``istftnet``; the v0.19 name ``decoder`` is read too). ``vocab`` maps
    phoneme symbols to token ids. ``decoder_width`` and ``decoder_residual`` are the
    decoder's widths, constants in kokoro's code (1024, 64), fields here so that reduced test
    models can shrink them. Unknown keys (``quantization``, ``model_type``...) are
    kept in ``extra`` and written back by :meth:`to_dict`."""

    n_token: int = 178
    hidden_dim: int = 512
    style_dim: int = 128
    n_layer: int = 3
    max_dur: int = 50
    dropout: float = 0.2
    text_encoder_kernel_size: int = 5
    n_mels: int = 80
    dim_in: int = 64
    max_conv_dim: int = 512
    multispeaker: bool = True
    sample_rate: int = 24000
    decoder_width: int = 1024
    decoder_residual: int = 64
    plbert: dict = field(default_factory=dict)
    istftnet: dict = field(default_factory=dict)
    vocab: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.plbert = {**ALBERT_DEFAULTS, **(self.plbert or {})}
        self.istftnet = {**ISTFTNET_DEFAULTS, **(self.istftnet or {})}
        if self.plbert["hidden_act"] not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
            raise ValueError(f"unsupported ALBERT hidden_act {self.plbert['hidden_act']!r}")
        ist = self.istftnet
        if len(ist["upsample_rates"]) != len(ist["upsample_kernel_sizes"]):
            raise ValueError("istftnet upsample_rates and upsample_kernel_sizes differ in length")
        if len(ist["resblock_kernel_sizes"]) != len(ist["resblock_dilation_sizes"]):
            raise ValueError("istftnet resblock kernel and dilation lists differ in length")

    @classmethod
    def from_dict(cls, config: dict) -> ModelConfig:
        """Reads a parsed ``config.json`` (ours, hexgrad's or the MLX-community copy)."""
        config = dict(config)
        nested = config.pop("extra", None) or {}
        if "istftnet" not in config and isinstance(config.get("decoder"), dict):
            config["istftnet"] = config.pop("decoder")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in config.items() if k in names}
        extra = {k: v for k, v in config.items() if k not in names}
        return cls(**known, extra={**nested, **extra})

    def to_dict(self) -> dict:
        """The JSON form, as hexgrad writes it (plus any ``extra`` keys)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**out, **self.extra}

    @property
    def hop_samples(self) -> int:
        """Audio samples per duration frame: the decoder doubles the frame rate, the
        generator multiplies it by the upsample rates and the iSTFT hop (600 at 24 kHz)."""
        rate = 2 * self.istftnet["gen_istft_hop_size"]
        for r in self.istftnet["upsample_rates"]:
            rate *= r
        return rate
