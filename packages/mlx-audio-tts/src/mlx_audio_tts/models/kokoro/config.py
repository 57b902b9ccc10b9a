"""Kokoro hyper-parameters: hexgrad's ``config.json`` (``kokoro.KModel``'s ``config``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from mlx_audio_io.hub import check_number, check_type

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

# (low, high) of every integer the model reads: generous (8-100x the release's), but a config
# cannot ask for billions of parameters; KokoroModel also caps the total it builds
_INTS = {
    "n_token": (1, 65536), "hidden_dim": (2, 4096), "style_dim": (1, 2048), "n_layer": (1, 64),
    "max_dur": (1, 10000), "text_encoder_kernel_size": (1, 255), "n_mels": (1, 1024),
    "dim_in": (1, 8192), "max_conv_dim": (1, 8192), "sample_rate": (1000, 384000),
    "decoder_width": (1, 16384), "decoder_residual": (1, 4096),
}  # fmt: skip
_ALBERT_INTS = {
    "embedding_size": (1, 8192), "hidden_size": (1, 16384), "num_hidden_layers": (1, 256),
    "num_attention_heads": (1, 256), "intermediate_size": (1, 65536),
    "max_position_embeddings": (3, 65536), "type_vocab_size": (1, 1024),
}  # fmt: skip
_ISTFT_INTS = {"gen_istft_hop_size": (1, 4096), "gen_istft_n_fft": (2, 16384),
               "upsample_initial_channel": (2, 16384)}  # fmt: skip
_MAX_HOP_SAMPLES = 1 << 16  # audio samples per duration frame (600 in the release)
_QUANT_BITS, _QUANT_GROUPS = (2, 3, 4, 5, 6, 8), (32, 64, 128)


def _check_int_list(name: str, value, high: int, max_len: int = 8) -> None:
    check_type(name, value, list, f"a list of 1 to {max_len} ints")
    if not 1 <= len(value) <= max_len:
        raise ValueError(f"{name} must be a list of 1 to {max_len} ints, got {len(value)} items")
    for i, v in enumerate(value):
        check_number(f"{name}[{i}]", v, 1, high)


def _check_istftnet(ist: dict) -> None:
    for key, (low, high) in _ISTFT_INTS.items():
        check_number(f"istftnet.{key}", ist[key], low, high)
    _check_int_list("istftnet.upsample_rates", ist["upsample_rates"], 64)
    _check_int_list("istftnet.upsample_kernel_sizes", ist["upsample_kernel_sizes"], 256)
    _check_int_list("istftnet.resblock_kernel_sizes", ist["resblock_kernel_sizes"], 255)
    dilations = ist["resblock_dilation_sizes"]
    check_type("istftnet.resblock_dilation_sizes", dilations, list, "a list of lists of ints")
    for i, d in enumerate(dilations):
        _check_int_list(f"istftnet.resblock_dilation_sizes[{i}]", d, 1024)
    if len(ist["upsample_rates"]) != len(ist["upsample_kernel_sizes"]):
        raise ValueError("istftnet upsample_rates and upsample_kernel_sizes differ in length")
    if len(ist["resblock_kernel_sizes"]) != len(dilations):
        raise ValueError("istftnet resblock kernel and dilation lists differ in length")
    if ist["upsample_initial_channel"] < 2 ** len(ist["upsample_rates"]):
        raise ValueError(
            "istftnet.upsample_initial_channel must be at least 2**len(upsample_rates) (the "
            f"widths halve at every upsampling), got {ist['upsample_initial_channel']}"
        )
    hop = 2 * ist["gen_istft_hop_size"] * math.prod(ist["upsample_rates"])
    if hop > _MAX_HOP_SAMPLES:
        raise ValueError(
            f"istftnet's samples per frame (2 * gen_istft_hop_size * prod(upsample_rates)) "
            f"must be at most {_MAX_HOP_SAMPLES}, got {hop}"
        )


def _check_plbert(bert: dict) -> None:
    for key, (low, high) in _ALBERT_INTS.items():
        check_number(f"plbert.{key}", bert[key], low, high)
    check_number("plbert.layer_norm_eps", bert["layer_norm_eps"], 1e-30, 1.0, integer=False)
    if bert["hidden_act"] not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise ValueError(f"unsupported ALBERT hidden_act {bert['hidden_act']!r:.100}")
    if bert["hidden_size"] % bert["num_attention_heads"]:
        raise ValueError(
            f"plbert.hidden_size ({bert['hidden_size']}) must be a multiple of "
            f"plbert.num_attention_heads ({bert['num_attention_heads']})"
        )


def _check_quantization(quant) -> None:
    check_type("quantization", quant, dict, "a dict with group_size and bits")
    bits, group_size = quant.get("bits"), quant.get("group_size")
    if not (type(bits) is int and bits in _QUANT_BITS) or not (
        type(group_size) is int and group_size in _QUANT_GROUPS
    ):
        raise ValueError(
            f"quantization must have bits in {_QUANT_BITS} and group_size in {_QUANT_GROUPS}, "
            f"got {quant!r}"[:300]
        )


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
        """Checks every field the model reads: types, and ranges that bound its size.

        Raises:
            ValueError: ``"<field> must be <expected>, got <value>"``.
        """
        for name in ("plbert", "istftnet", "vocab", "extra"):
            value = {} if getattr(self, name) is None else getattr(self, name)  # null: defaults
            check_type(name, value, dict, "a JSON object (dict)")
            setattr(self, name, value)
        self.plbert = {**ALBERT_DEFAULTS, **self.plbert}
        self.istftnet = {**ISTFTNET_DEFAULTS, **self.istftnet}
        for name, (low, high) in _INTS.items():
            check_number(name, getattr(self, name), low, high)
        check_number("dropout", self.dropout, 0.0, 1.0, integer=False)
        check_type("multispeaker", self.multispeaker, bool, "true or false")
        if self.hidden_dim % 2:
            raise ValueError(
                f"hidden_dim must be even (two LSTM directions), got {self.hidden_dim}"
            )
        _check_plbert(self.plbert)
        _check_istftnet(self.istftnet)
        for symbol, index in self.vocab.items():
            check_type("vocab's symbols", symbol, str, "strings")
            check_number(f"vocab[{symbol[:20]!r}]", index, 0, self.n_token - 1)
        if self.extra.get("quantization") is not None:
            _check_quantization(self.extra["quantization"])

    @classmethod
    def from_dict(cls, config: dict) -> ModelConfig:
        """Reads a parsed ``config.json`` (ours, hexgrad's or the MLX-community copy).

        Raises:
            ValueError: Not a dict, or a field of the wrong type or out of range.
        """
        check_type("config", config, dict, "a JSON object (dict)")
        config = dict(config)
        nested = config.pop("extra", None) or {}
        check_type("extra", nested, dict, "a JSON object (dict)")
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
