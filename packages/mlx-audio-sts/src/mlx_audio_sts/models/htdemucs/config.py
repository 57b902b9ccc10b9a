"""HTDemucs hyper-parameters: the keyword arguments of ``demucs.htdemucs.HTDemucs``."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from fractions import Fraction


def to_fraction(value) -> Fraction:
    """A segment length as an exact Fraction (``int(segment * samplerate)`` must not lose a
    sample: ``7.8 * 44100`` is 343979.99...). Accepts Fractions, numbers, ``"39/5"`` strings
    and demucs' JSON encoding ``{"_type": "fraction", "numerator": .., "denominator": ..}``."""
    if isinstance(value, dict):
        return Fraction(value["numerator"], value["denominator"])
    if isinstance(value, float):
        return Fraction(repr(value))  # 7.8 -> 39/5, not the binary expansion
    return Fraction(value)


@dataclass
class ModelArgs:
    """The architecture of one HTDemucs model. Field names and defaults are those of the
    official ``HTDemucs.__init__`` (demucs 4), so a checkpoint's ``kwargs`` load as they are;
    training-only options are accepted and ignored."""

    sources: list = field(default_factory=lambda: ["drums", "bass", "other", "vocals"])
    audio_channels: int = 2
    channels: int = 48
    channels_time: int | None = None
    growth: float = 2
    nfft: int = 4096
    wiener_iters: int = 0
    cac: bool = True
    depth: int = 4
    rewrite: bool = True
    multi_freqs: list | None = None
    freq_emb: float = 0.2
    emb_scale: float = 10
    kernel_size: int = 8
    time_stride: int = 2
    stride: int = 4
    context: int = 1
    context_enc: int = 0
    norm_starts: int = 4
    norm_groups: int = 4
    dconv_mode: int = 1
    dconv_depth: int = 2
    dconv_comp: float = 8
    bottom_channels: int = 0
    t_layers: int = 5
    t_emb: str = "sin"
    t_hidden_scale: float = 4.0
    t_heads: int = 8
    t_norm_in: bool = True
    t_norm_in_group: bool = False
    t_group_norm: bool = False
    t_norm_first: bool = True
    t_norm_out: bool = True
    t_max_period: float = 10000.0
    t_layer_scale: bool = True
    t_gelu: bool = True
    t_weight_pos_embed: float = 1.0
    t_sin_random_shift: int = 0
    t_cape_mean_normalize: bool = True
    t_sparse_self_attn: bool = False
    t_sparse_cross_attn: bool = False
    t_cross_first: bool = False
    samplerate: int = 44100
    segment: Fraction = Fraction(10)
    use_train_segment: bool = True

    def __post_init__(self):
        self.segment = to_fraction(self.segment)
        self.sources = list(self.sources)
        unsupported = {
            "multi_freqs": bool(self.multi_freqs),
            "t_sparse_self_attn": self.t_sparse_self_attn,
            "t_sparse_cross_attn": self.t_sparse_cross_attn,
            "cac=False (Wiener masking)": not self.cac,
            "t_emb='scaled'": self.t_emb not in ("sin", "cape"),
            "t_norm_in_group": self.t_norm_in_group and not self.t_norm_in,
            "t_group_norm": self.t_group_norm,
        }
        bad = [name for name, on in unsupported.items() if on]
        if bad:
            raise ValueError(
                f"HTDemucs options not supported: {', '.join(bad)} (no released model uses them)"
            )

    @classmethod
    def from_dict(cls, params: dict) -> ModelArgs:
        """Builds the arguments from a checkpoint's ``kwargs`` or a ``config.json``,
        ignoring keys this implementation does not use (training options)."""
        names = inspect.signature(cls).parameters
        return cls(**{k: v for k, v in params.items() if k in names})

    def to_dict(self) -> dict:
        """JSON-ready parameters (``segment`` as a ``"num/den"`` string)."""
        out = dataclasses.asdict(self)
        out["segment"] = str(self.segment)
        return out
