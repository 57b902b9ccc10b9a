"""CSM-1B hyper-parameters, read from any of the three ``config.json`` styles.

* ours (what :func:`~.convert.save_model` writes): ``backbone`` and ``decoder`` hold mlx-lm
  Llama arguments;
* transformers' ``CsmConfig`` (``sesame/csm-1b`` in transformers format): the backbone's
  Llama fields at the top level, the depth decoder's in ``depth_decoder_config``, RoPE in
  ``rope_parameters`` (transformers 5) or ``rope_theta`` + ``rope_scaling`` (4.x);
* the original's ``ModelArgs`` as mlx-community/csm-1b stores it: ``backbone_flavor:
  llama-1B``, ``decoder_flavor: llama-100M``.

No config at all means the official model. RoPE always runs interleaved (``rope_traditional``,
torchtune's convention): :mod:`.convert` un-permutes transformers' q/k rows to match.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mlx_audio_io.hub import check_number, check_type

#: torchtune's llama3_2 scaling, which both of CSM's Llamas use (``scale_factor=32``)
LLAMA3_ROPE = {
    "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}  # fmt: skip
_COMMON = {"intermediate_size": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
           "max_position_embeddings": 2048}  # fmt: skip
#: the original ``models.py`` flavors (torchtune ``llama3_2`` at these sizes)
FLAVORS = {
    "llama-1B": {**_COMMON, "hidden_size": 2048, "num_hidden_layers": 16,
                 "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64},
    "llama-100M": {**_COMMON, "hidden_size": 1024, "num_hidden_layers": 4,
                   "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128},
}  # fmt: skip
_LLAMA_KEYS = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
               "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling",
               "max_position_embeddings")  # fmt: skip
_BOUNDS = {"hidden_size": (8, 16384), "num_hidden_layers": (1, 128), "intermediate_size":
           (8, 65536), "num_attention_heads": (1, 256), "num_key_value_heads": (1, 256),
           "head_dim": (2, 1024), "max_position_embeddings": (1, 1 << 20)}  # fmt: skip


def _rope(config: dict) -> dict:
    """``rope_theta`` and ``rope_scaling`` from either transformers style; the official
    llama3 scaling where the config says nothing about RoPE (the original always scales)."""
    params = config.get("rope_parameters")
    if isinstance(params, dict):
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
        theta = params.get("rope_theta", config.get("rope_theta", 500000.0))
        return {"rope_theta": theta,
                "rope_scaling": scaling if scaling.get("rope_type", "default") != "default"
                else None}  # fmt: skip
    if "rope_theta" in config or "rope_scaling" in config:
        return {"rope_theta": config.get("rope_theta", 500000.0),
                "rope_scaling": config.get("rope_scaling")}  # fmt: skip
    return {"rope_theta": 500000.0, "rope_scaling": dict(LLAMA3_ROPE)}


def _llama(config: dict, name: str) -> dict:
    """One Llama's arguments for ``mlx_lm.models.llama.ModelArgs`` (checked)."""
    check_type(name, config, dict, "an object of Llama settings")
    out = {**FLAVORS["llama-1B"], "rope_scaling": dict(LLAMA3_ROPE)}
    out.update({k: config[k] for k in _LLAMA_KEYS if k in config})
    if "rope_theta" not in config and "rope_scaling" not in config:
        out.update(_rope(config))
    if config.get("head_dim") is None:
        out["head_dim"] = out["hidden_size"] // out["num_attention_heads"]
    if config.get("num_key_value_heads") is None and "num_attention_heads" in config:
        out["num_key_value_heads"] = out["num_attention_heads"]
    for key, (low, high) in _BOUNDS.items():
        check_number(f"{name}.{key}", out[key], low, high)
    if out["num_attention_heads"] % out["num_key_value_heads"]:
        raise ValueError(
            f"{name}.num_attention_heads must be a multiple of num_key_value_heads, "
            f"got {out['num_attention_heads']} and {out['num_key_value_heads']}"
        )
    check_number(f"{name}.rope_theta", out["rope_theta"], 1.0, 1e9, integer=False)
    if out["rope_scaling"] is not None:
        check_type(f"{name}.rope_scaling", out["rope_scaling"], dict, "an object or null")
    return out


@dataclass
class ModelArgs:
    """CSM's configuration; the defaults are ``sesame/csm-1b``'s.

    Attributes:
        backbone: The backbone Llama's mlx-lm arguments (llama-1B: 2048 wide, 16 layers, 32/8
            heads, llama3 RoPE scaling, 2048 positions).
        decoder: The depth decoder's (llama-100M: 1024 wide, 4 layers, 8/2 heads).
        text_vocab_size: Llama-3 text tokens (128256).
        audio_vocab_size: Entries per codebook: Mimi's 2048 plus specials (2051; code 0 of
            every codebook at once ends the speech).
        audio_num_codebooks: Mimi codebooks per 80 ms frame (32).
    """

    backbone: dict = field(default_factory=lambda: _llama({}, "backbone"))
    decoder: dict = field(default_factory=lambda: _llama(FLAVORS["llama-100M"], "decoder"))
    text_vocab_size: int = 128256
    audio_vocab_size: int = 2051
    audio_num_codebooks: int = 32
    model_type: str = "csm"

    def __post_init__(self):
        self.backbone = _llama(self.backbone, "backbone")
        self.decoder = _llama(self.decoder, "decoder")
        check_number("text_vocab_size", self.text_vocab_size, 1, 1 << 20)
        check_number("audio_vocab_size", self.audio_vocab_size, 2, 1 << 16)
        check_number("audio_num_codebooks", self.audio_num_codebooks, 2, 64)

    @property
    def max_seq_len(self) -> int:
        """Positions the backbone was trained on (2048 frames: text tokens + audio frames)."""
        return int(self.backbone["max_position_embeddings"])

    @classmethod
    def from_dict(cls, config: dict) -> ModelArgs:
        """Reads any of the three styles (see the module's docstring), ignoring unknown keys.

        Raises:
            ValueError: A field of the wrong type or out of range, naming it.
        """
        check_type("config", config, dict, "a JSON object")
        if isinstance(config.get("backbone"), dict):  # ours
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in config.items() if k in names and k != "model_type"})
        if (
            "depth_decoder_config" in config
            or "backbone_flavor" not in config
            and ("hidden_size" in config)
        ):  # transformers' CsmConfig
            decoder = config.get("depth_decoder_config") or {}
            if "rope_parameters" not in decoder and "rope_theta" not in decoder:
                decoder = {**decoder, **_rope(config)}
            decoder.setdefault("max_position_embeddings", 33)
            return cls(
                backbone=_llama({**config, **_rope(config)}, "backbone"),
                decoder=_llama({**FLAVORS["llama-100M"], **decoder, **_rope(decoder)}, "decoder"),
                text_vocab_size=config.get("text_vocab_size", 128256),
                audio_vocab_size=config.get("vocab_size", config.get("codebook_size", 2051)),
                audio_num_codebooks=config.get("num_codebooks", 32),
            )
        flavors = []
        for key, default in (("backbone_flavor", "llama-1B"), ("decoder_flavor", "llama-100M")):
            flavor = config.get(key, default)
            if flavor not in FLAVORS:
                raise ValueError(f"{key} must be one of {sorted(FLAVORS)}, got {flavor!r}")
            flavors.append(FLAVORS[flavor])
        return cls(
            backbone=flavors[0], decoder=flavors[1],
            text_vocab_size=config.get("text_vocab_size", 128256),
            audio_vocab_size=config.get("audio_vocab_size", 2051),
            audio_num_codebooks=config.get("audio_num_codebooks", 32),
        )  # fmt: skip

    def to_dict(self) -> dict:
        """Our ``config.json`` (``model_type: csm``)."""
        return dataclasses.asdict(self)

    def llama_args(self, which: str):
        """``mlx_lm.models.llama.ModelArgs`` of ``"backbone"`` or ``"decoder"``: interleaved
        RoPE (torchtune's), no embedding of its own (CSM feeds embeddings)."""
        from mlx_lm.models import llama

        return llama.ModelArgs(model_type="llama", vocab_size=1, rope_traditional=True,
                               tie_word_embeddings=True, **getattr(self, which))  # fmt: skip
