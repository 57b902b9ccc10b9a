"""Mimi hyper-parameters: transformers' ``MimiConfig`` (``kyutai/mimi``'s ``config.json``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from mlx_audio_io.hub import check_number, check_type

# generous bounds (8-100x the release's), so that a config cannot ask for billions of weights
_INTS = {
    "sampling_rate": (1000, 384000), "audio_channels": (1, 1), "hidden_size": (2, 8192),
    "num_filters": (1, 4096), "num_residual_layers": (1, 8), "kernel_size": (1, 63),
    "last_kernel_size": (1, 63), "residual_kernel_size": (1, 63), "dilation_growth_rate": (1, 8),
    "compress": (1, 64), "codebook_size": (2, 65536), "codebook_dim": (1, 8192),
    "num_quantizers": (1, 256), "vector_quantization_hidden_dimension": (1, 8192),
    "num_semantic_quantizers": (1, 255), "num_hidden_layers": (0, 64),
    "intermediate_size": (1, 65536), "num_attention_heads": (1, 256),
    "num_key_value_heads": (1, 256), "max_position_embeddings": (1, 1 << 30),
    "sliding_window": (1, 1 << 30),
}  # fmt: skip
MAX_PARAMETERS = 2_000_000_000


@dataclass
class ModelArgs:
    """Mimi's configuration; the defaults are ``kyutai/mimi``'s (transformers' ``MimiConfig()``,
    moshi's ``get_mimi(num_codebooks=32)``): 24 kHz audio, 12.5 frames per second, 32 codebooks
    of 2048 entries.

    Attributes:
        sampling_rate: Hz.
        audio_channels: Must be 1.
        hidden_size: Width of the latent and of both transformers.
        num_filters: Width of the SEANet encoder's first convolution (doubling at every
            down-sampling).
        num_residual_layers: Residual blocks per SEANet stage.
        upsampling_ratios: The decoder's up-sampling factors (the encoder's, reversed); their
            product is the hop in samples of the transformers' frame rate (25 Hz).
        kernel_size, last_kernel_size, residual_kernel_size: The first, last and residual
            convolutions' kernels.
        dilation_growth_rate: Dilation of residual block j is ``dilation_growth_rate ** j``.
        pad_mode: ``"constant"`` or ``"replicate"``: how the causal convolutions are padded on
            the left (the encoder's down-sampling to 12.5 Hz always replicates).
        compress: Residual blocks narrow the width by this factor inside.
        codebook_size, codebook_dim: Entries and width of each codebook.
        num_quantizers: Codebooks in all (semantic + acoustic).
        vector_quantization_hidden_dimension: Width the latent is projected to before the
            codebooks (equal to ``codebook_dim``; no projection when equal to ``hidden_size``).
        num_semantic_quantizers: Codebooks of the first (semantic) residual quantizer.
        upsample_groups: Groups of the transposed convolution from 12.5 to 25 Hz (must be
            ``hidden_size``: depthwise).
        num_hidden_layers, intermediate_size, num_attention_heads, num_key_value_heads,
            head_dim: Each transformer's shape (``head_dim`` None: ``hidden_size / heads``).
        hidden_act: ``"gelu"`` (exact) or ``"gelu_pytorch_tanh"``.
        max_position_embeddings: Kept for writing back (RoPE works at any position).
        norm_eps: LayerNorm epsilon.
        rope_theta: RoPE base (``rope_parameters["rope_theta"]`` in newer configs).
        sliding_window: Keys each query sees, itself included (250 = 10 s).
        attention_bias: Whether the attention projections have biases.
        use_causal_conv, trim_right_ratio, use_conv_shortcut: Must be true, 1.0 and false
            (as in every Mimi release).
        frame_rate: Codes per second, or None (computed: ``sampling_rate / (hop * 2)``).
        extra: Unknown keys of ``config.json``, kept for writing back.
    """

    sampling_rate: int = 24000
    audio_channels: int = 1
    hidden_size: int = 512
    num_filters: int = 64
    num_residual_layers: int = 1
    upsampling_ratios: list[int] = field(default_factory=lambda: [8, 6, 5, 4])
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    pad_mode: str = "constant"
    compress: int = 2
    codebook_size: int = 2048
    codebook_dim: int = 256
    num_quantizers: int = 32
    vector_quantization_hidden_dimension: int = 256
    num_semantic_quantizers: int = 1
    upsample_groups: int = 512
    num_hidden_layers: int = 8
    intermediate_size: int = 2048
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    head_dim: int | None = None
    hidden_act: str = "gelu"
    max_position_embeddings: int = 8000
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    sliding_window: int = 250
    attention_bias: bool = False
    use_causal_conv: bool = True
    trim_right_ratio: float = 1.0
    use_conv_shortcut: bool = False
    frame_rate: float | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, (low, high) in _INTS.items():
            check_number(key, getattr(self, key), low, high)
        check_type("upsampling_ratios", self.upsampling_ratios, list, "a list of 1 to 8 ints")
        if not 1 <= len(self.upsampling_ratios) <= 8:
            raise ValueError(f"upsampling_ratios must be a list of 1 to 8 ints, got "
                             f"{len(self.upsampling_ratios)} items")  # fmt: skip
        for i, r in enumerate(self.upsampling_ratios):
            check_number(f"upsampling_ratios[{i}]", r, 1, 64)
        check_number("norm_eps", self.norm_eps, 0.0, 1.0, integer=False)
        check_number("rope_theta", self.rope_theta, 1.0, 1e12, integer=False)
        for key in ("attention_bias", "use_causal_conv", "use_conv_shortcut"):
            check_type(key, getattr(self, key), bool, "true or false")
        if self.pad_mode not in ("constant", "replicate"):
            raise ValueError(f"pad_mode must be 'constant' or 'replicate', got {self.pad_mode!r}")
        if self.hidden_act not in ("gelu", "gelu_pytorch_tanh"):
            raise ValueError(f"hidden_act must be 'gelu' or 'gelu_pytorch_tanh', got "
                             f"{self.hidden_act!r}")  # fmt: skip
        if not self.use_causal_conv or self.trim_right_ratio != 1.0 or self.use_conv_shortcut:
            raise ValueError(
                "use_causal_conv must be true, trim_right_ratio 1.0 and use_conv_shortcut false "
                f"(as in every Mimi release), got {self.use_causal_conv!r}, "
                f"{self.trim_right_ratio!r} and {self.use_conv_shortcut!r}"
            )
        self._check_shapes()
        if self.approx_parameters() > MAX_PARAMETERS:
            raise ValueError(
                f"this config asks for about {self.approx_parameters():,} parameters, more "
                f"than the {MAX_PARAMETERS:,} allowed (kyutai/mimi has 79.3 million)"
            )

    def _check_shapes(self) -> None:
        if self.num_semantic_quantizers >= self.num_quantizers:
            raise ValueError(f"num_semantic_quantizers ({self.num_semantic_quantizers}) must be "
                             f"less than num_quantizers ({self.num_quantizers})")  # fmt: skip
        if self.codebook_dim != self.vector_quantization_hidden_dimension:
            vq = self.vector_quantization_hidden_dimension
            raise ValueError(f"codebook_dim ({self.codebook_dim}) must equal "
                             f"vector_quantization_hidden_dimension ({vq})")  # fmt: skip
        if self.head_dim is not None:
            check_number("head_dim", self.head_dim, 2, 1024)
        elif self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")  # fmt: skip
        if self.attention_head_dim % 2:
            raise ValueError(f"head_dim must be even (RoPE), got {self.attention_head_dim}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple "
                             f"of num_key_value_heads ({self.num_key_value_heads})")  # fmt: skip
        if self.upsample_groups != self.hidden_size:
            raise ValueError(f"upsample_groups must equal hidden_size ({self.hidden_size}: a "
                             f"depthwise up-sampling), got {self.upsample_groups!r}")  # fmt: skip
        width = self.num_filters * 2 ** len(self.upsampling_ratios)
        if width > 65536 or width % self.compress:
            raise ValueError(f"num_filters * 2 ** len(upsampling_ratios) ({width}) must be at most "
                             f"65536 and divisible by compress ({self.compress})")  # fmt: skip
        if self.num_filters % self.compress:
            raise ValueError(f"num_filters ({self.num_filters}) must be divisible by compress "
                             f"({self.compress})")  # fmt: skip
        if self.frame_rate is not None:
            check_number("frame_rate", self.frame_rate, 0.0, 1e6, integer=False)
            if not math.isclose(self.frame_rate, self.sampling_rate / self.frame_size):
                raise ValueError(
                    f"frame_rate must be sampling_rate / (hop * 2) = "
                    f"{self.sampling_rate / self.frame_size} for this config (a 2x down-sampling "
                    f"after the transformer), got {self.frame_rate!r}"
                )

    def approx_parameters(self) -> int:
        """The weights the config asks for (biases and norms left out)."""
        total, c = 0, self.num_filters
        total += self.kernel_size * c
        for r in reversed(self.upsampling_ratios):
            unit = c * (c // self.compress) * self.residual_kernel_size + c * (c // self.compress)
            total += self.num_residual_layers * unit + c * 2 * c * 2 * r
            c *= 2
        total *= 2  # the decoder mirrors the encoder
        h, hd = self.hidden_size, self.attention_head_dim
        total += 2 * c * h * max(self.kernel_size, self.last_kernel_size)
        attn = h * hd * (2 * self.num_attention_heads + 2 * self.num_key_value_heads)
        total += 2 * self.num_hidden_layers * (attn + 2 * h * self.intermediate_size)
        total += 2 * h * h * 4  # down/up-sampling
        vq = self.vector_quantization_hidden_dimension
        return total + 4 * h * vq + self.num_quantizers * self.codebook_size * (vq + 1)

    @classmethod
    def from_dict(cls, config: dict) -> ModelArgs:
        """Reads a parsed ``config.json`` (transformers' keys; ``rope_parameters`` or the older
        ``rope_theta``), keeping unknown keys in ``extra``.

        Raises:
            ValueError: Not a dict, or a field of the wrong type or out of range.
        """
        check_type("config", config, dict, "a JSON object (dict)")
        config = dict(config)
        rope = config.pop("rope_parameters", None)
        if rope is not None:
            check_type("rope_parameters", rope, dict, "a JSON object (dict)")
            if rope.get("rope_type", "default") != "default":
                raise ValueError(f"rope_parameters.rope_type must be 'default' (Mimi's), got "
                                 f"{rope.get('rope_type')!r}")  # fmt: skip
            if "rope_theta" in rope:
                config["rope_theta"] = rope["rope_theta"]
        if "_frame_rate" in config:  # transformers 5's private spelling
            config.setdefault("frame_rate", config.pop("_frame_rate"))
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in config.items() if k in names}
        extra = {k: v for k, v in config.items() if k not in names}
        if rope is not None:
            extra["rope_parameters"] = rope
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        """The JSON form, with transformers' keys (plus any ``extra`` keys)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out = {**out, "model_type": "mimi", **self.extra}
        if "rope_parameters" in out:
            out["rope_parameters"] = {**out["rope_parameters"], "rope_theta": self.rope_theta}
        return out

    @property
    def attention_head_dim(self) -> int:
        """Width of one attention head."""
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def hop_length(self) -> int:
        """Audio samples per transformer frame (960 at 24 kHz: 25 Hz)."""
        return math.prod(self.upsampling_ratios)

    @property
    def frame_size(self) -> int:
        """Audio samples per code frame (1920 at 24 kHz: 12.5 Hz)."""
        return self.hop_length * 2

    @property
    def latent_stride(self) -> int:
        """Transformer frames per code frame (2)."""
        return 2

    @property
    def seanet_channels(self) -> int:
        """Width of the SEANet's narrow end (``num_filters * 2 ** len(upsampling_ratios)``)."""
        return self.num_filters * 2 ** len(self.upsampling_ratios)
