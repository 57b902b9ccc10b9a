"""HTDemucs hyper-parameters: the keyword arguments of ``demucs.htdemucs.HTDemucs``."""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import re
from dataclasses import dataclass, field
from fractions import Fraction

from mlx_audio_io.hub import check_number, check_type

# a decimal or "num/den", as str(Fraction) and JSON write segments; no huge exponents
_FRACTION_TEXT = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d{1,3})?(\s*/\s*\d+)?\s*")


def to_fraction(value) -> Fraction:
    """A segment length as an exact Fraction (``int(segment * samplerate)`` must not lose a
    sample: ``7.8 * 44100`` is 343979.99...). Accepts Fractions, numbers, ``"39/5"`` strings
    and demucs' JSON encoding ``{"_type": "fraction", "numerator": .., "denominator": ..}``.

    Raises:
        ValueError: Anything else (bools, NaN, infinities, zero denominators, strings that
            are not short decimals or fractions).
    """
    what = "seconds as a number, a 'num/den' string or {numerator, denominator}"
    try:
        if isinstance(value, dict):
            num, den = value.get("numerator"), value.get("denominator")
            if all(type(v) is int and abs(v) < 2**63 for v in (num, den)):
                return Fraction(num, den)
        elif isinstance(value, float) and math.isfinite(value):
            return Fraction(repr(value))  # 7.8 -> 39/5, not the binary expansion
        elif isinstance(value, str) and len(value) <= 100 and _FRACTION_TEXT.fullmatch(value):
            return Fraction(value)
        elif isinstance(value, numbers.Rational) and not isinstance(value, bool):
            return Fraction(value)
    except ZeroDivisionError:
        pass
    raise ValueError(f"segment must be {what}, got {value!r:.100}")


# (low, high) of every number the model reads: generous (10-100x the releases'), but a config
# cannot ask for billions of parameters; HTDemucs also caps the total it builds
_INTS = {
    "audio_channels": (1, 16), "channels": (1, 4096), "nfft": (4, 65536),
    "wiener_iters": (0, 1000), "depth": (1, 16), "kernel_size": (1, 64), "time_stride": (1, 64),
    "stride": (1, 64), "context": (0, 64), "context_enc": (0, 64), "norm_starts": (0, 1000),
    "norm_groups": (1, 1024), "dconv_mode": (0, 3), "dconv_depth": (0, 16),
    "bottom_channels": (0, 16384), "t_layers": (0, 64), "t_heads": (1, 256),
    "t_sin_random_shift": (0, 1_000_000), "samplerate": (1, 768_000),
}  # fmt: skip
_REALS = {
    "growth": (0.25, 16), "freq_emb": (0, 1000), "emb_scale": (0, 1e6), "dconv_comp": (1e-3, 1e4),
    "t_hidden_scale": (1e-3, 64), "t_max_period": (1, 1e12), "t_weight_pos_embed": (-1e6, 1e6),
}  # fmt: skip
_BOOLS = ("cac", "rewrite", "t_norm_in", "t_norm_in_group", "t_group_norm", "t_norm_first",
          "t_norm_out", "t_layer_scale", "t_gelu", "t_sparse_self_attn", "t_sparse_cross_attn",
          "t_cross_first", "use_train_segment")  # fmt: skip
_MAX_WIDTH = 65536  # channels * growth ** (depth - 1), the bottom of the U-Net (384 released)
_MAX_SEGMENT_SAMPLES = 1 << 26  # segment * samplerate: the longest forward pass (343980)


def _check_fields(args: ModelArgs) -> None:
    """Types and ranges of every field; raises ValueError naming the field."""
    check_type("sources", args.sources, (list, tuple), "a list of 1 to 64 source names")
    if not 1 <= len(args.sources) <= 64:
        raise ValueError(f"sources must be a list of 1 to 64 source names, got {len(args.sources)}")
    for i, name in enumerate(args.sources):
        check_type(f"sources[{i}]", name, str, "a source name (a string)")
    if len(set(args.sources)) != len(args.sources):
        raise ValueError(f"sources must be distinct, got {list(args.sources)!r:.300}")
    for name, (low, high) in _INTS.items():
        check_number(name, getattr(args, name), low, high)
    if args.channels_time is not None:
        check_number("channels_time", args.channels_time, 1, 4096)
    for name, (low, high) in _REALS.items():
        check_number(name, getattr(args, name), low, high, integer=False)
    for name in _BOOLS:
        check_type(name, getattr(args, name), bool, "true or false")
    check_type("t_emb", args.t_emb, str, "'sin' or 'cape'")
    check_type("multi_freqs", args.multi_freqs or [], list, "a list")
    width = args.channels * args.growth ** (args.depth - 1)
    if width > _MAX_WIDTH:
        raise ValueError(
            f"channels * growth ** (depth - 1) must be at most {_MAX_WIDTH}, got {width:g}"
        )
    if not 0 < args.segment <= 3600:
        raise ValueError(f"segment must be in (0, 3600] seconds, got {float(args.segment)}")
    if args.segment * args.samplerate > _MAX_SEGMENT_SAMPLES:
        raise ValueError(
            f"segment * samplerate must be at most {_MAX_SEGMENT_SAMPLES} samples, got "
            f"{int(args.segment * args.samplerate)}"
        )


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
        """Checks every field: types, and ranges that bound the model's size.

        Raises:
            ValueError: ``"<field> must be <expected>, got <value>"``, or an option no released
                model uses.
        """
        self.segment = to_fraction(self.segment)
        _check_fields(self)
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
        ignoring keys this implementation does not use (training options).

        Raises:
            ValueError: Not a dict, or a field of the wrong type or out of range.
        """
        check_type("the model's config", params, dict, "a dict of keyword arguments")
        names = inspect.signature(cls).parameters
        return cls(**{k: v for k, v in params.items() if k in names})

    def to_dict(self) -> dict:
        """JSON-ready parameters (``segment`` as a ``"num/den"`` string)."""
        out = dataclasses.asdict(self)
        out["segment"] = str(self.segment)
        return out
