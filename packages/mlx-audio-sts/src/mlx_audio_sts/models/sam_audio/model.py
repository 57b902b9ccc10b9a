"""SAM-Audio (Meta, "SAM Audio: Segment Anything in Audio", arXiv:2512.18099): text- and
anchor-prompted source separation by flow matching in a codec's latent space.

The mixture is encoded by DAC-VAE (25 frames a second, 128 features); a DiT, conditioned on
those features, on a T5 encoding of the prompt and on the anchors, predicts the velocity that
carries Gaussian noise to the latents of [target, residual] (256 channels); an ODE solver
(midpoint, 16 steps by default) integrates it from t = 0 to 1, and the codec decodes both
halves. This module is the model; chunked and streaming inference is in :mod:`.separate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io import nn as fnn

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .codec import DACVAE
from .config import SAMAudioConfig
from .processor import Batch
from .transformer import DiT, timestep_embedding

DEFAULT_ODE_OPT = {"method": "midpoint", "step_size": 2 / 32}


@dataclass
class SeparationResult:
    """What a separation returns.

    Attributes:
        target: The prompted sound: one ``[samples, 1]`` float32 array per input (a list) from
            ``separate``/``separate_long``; one ``[samples, 1]`` chunk from
            ``separate_streaming``.
        residual: Everything else, shaped as ``target``.
        noise: The initial noise ``[batch, frames, 256]`` the ODE started from (for
            ``separate_streaming``, every chunk's, joined on the frame axis, on the last chunk
            only).
        chunk_idx: The chunk's index (streaming only).
        is_last: True on the final chunk (streaming only).
        peak_memory: MLX's peak memory in GB during the call (streaming: on the last chunk).
        sizes: Codec frames of each audio (``separate`` only; the outputs are ``sizes * 1920``
            samples long, as the reference trims them).
    """

    target: Any
    residual: Any
    noise: mx.array | None = None
    chunk_idx: int | None = None
    is_last: bool | None = None
    peak_memory: float | None = None
    sizes: list[int] = field(default_factory=list)


class EmbedAnchors(nn.Module):
    """``x + tanh(gate) * proj(embed(anchor_ids[alignment]))``."""

    def __init__(self, num_anchors: int, dim: int, out_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_anchors + 1, dim)
        self.gate = mx.zeros((1,))
        self.proj = fnn.Linear(dim, out_dim, bias=False)

    def term(self, anchor_ids: mx.array, alignment: mx.array) -> mx.array:
        """The added term, ``[batch, frames, out_dim]``."""
        ids = mx.take_along_axis(anchor_ids, alignment, axis=1)
        return mx.tanh(self.gate) * self.proj(self.embed(ids))


class AlignModalities(nn.Module):
    """``x + tanh(gate) * LayerNorm(conv1x1(video))``. Without a video the reference feeds
    zeros, so the term is the constant ``tanh(gate) * LayerNorm(conv.bias)``: always there."""

    def __init__(self, c_in: int, dim: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, dim, 1)
        self.layer_norm = nn.LayerNorm(dim)
        self.gate = mx.zeros((1,))

    def no_video_term(self) -> mx.array:
        """``[dim]``: the term for zero video features."""
        return mx.tanh(self.gate) * self.layer_norm(self.conv.bias)


class SAMAudio(nn.Module):
    """The SAM-Audio network (codec, DiT and the conditioning heads; the T5 text encoder is
    attached by :meth:`set_text_encoder` and kept out of the parameters, as the official
    checkpoint keeps it out of ``checkpoint.pt``)."""

    def __init__(self, config: SAMAudioConfig):
        super().__init__()
        self.config = config
        dim = config.transformer.dim
        self.audio_codec = DACVAE(config.audio_codec)
        self.transformer = DiT(config.transformer)
        self.proj = fnn.Linear(config.in_channels, dim)
        self.align_masked_video = AlignModalities(config.vision_dim, dim)
        self.embed_anchors = EmbedAnchors(config.num_anchors, config.anchor_embedding_dim, dim)
        self.memory_proj = fnn.Linear(config.text_encoder.dim, dim)
        object.__setattr__(self, "_text", None)

    # ---- loading ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str = "facebook/sam-audio-large", **kwargs) -> SAMAudio:
        """A model from a Hub repo or a folder: see :func:`.load.from_pretrained`."""
        from .load import from_pretrained

        return from_pretrained(name_or_path, **kwargs)

    def set_text_encoder(self, encoder, tokenizer) -> None:
        """Attaches the T5 encoder and its tokenizer (outside the parameter tree)."""
        object.__setattr__(self, "_text", (encoder, tokenizer))

    @property
    def sample_rate(self) -> int:
        return self.audio_codec.sample_rate

    @property
    def hop_length(self) -> int:
        return self.audio_codec.hop_length

    def processor(self):
        """A :class:`~.processor.SAMAudioProcessor` for this model's rate and hop."""
        from .processor import SAMAudioProcessor

        return SAMAudioProcessor(self.sample_rate, self.hop_length)

    # ---- conditioning -------------------------------------------------------------------------
    def encode_text(self, descriptions: list[str]) -> tuple[mx.array, mx.array]:
        """T5 features ``[batch, tokens, 768]`` and their mask ``[batch, tokens]`` (True =
        a real token)."""
        if self._text is None:
            raise RuntimeError(
                "this SAMAudio has no text encoder: load it with SAMAudio.from_pretrained, "
                "call set_text_encoder, or pass text_features and text_mask"
            )
        encoder, tokenizer = self._text
        ids, mask = tokenizer(list(descriptions), max_length=self.config.text_encoder.max_length)
        return encoder(ids, mask), mask.astype(mx.bool_)

    def conditioning(self, batch: Batch, text_features=None, text_mask=None) -> dict:
        """Everything the velocity needs besides the state and the time, computed once."""
        feats = self.audio_codec.encode(batch.audios)  # [B, T, 128]
        t = feats.shape[1]
        if text_features is None:
            text_features, text_mask = self.encode_text(batch.descriptions)
        text_features = mx.array(text_features, dtype=mx.float32)
        if text_mask is not None:
            text_mask = mx.array(text_mask).astype(mx.bool_)
        if text_features.ndim != 3 or text_features.shape[0] != feats.shape[0]:
            raise ValueError(
                f"text_features must be [{feats.shape[0]}, tokens, {self.config.text_encoder.dim}],"
                f" got shape {text_features.shape}"
            )
        if text_mask is None:
            text_mask = mx.ones(text_features.shape[:2], mx.bool_)
        c = self.config.audio_codec.codebook_dim
        w = self.proj.weight  # [dim, 6c]: noisy (2c) | zeros (2c) | features twice (2c)
        w_feat = w[:, 4 * c : 5 * c] + w[:, 5 * c :]
        base = fnn.linear(feats, w_feat, self.proj.bias)
        base = base + self.align_masked_video.no_video_term()
        base = base + self.embed_anchors.term(batch.anchor_ids, batch.anchor_alignment[:, :t])
        pad_mask = batch.audio_pad_mask[:, :t]
        all_valid = bool(mx.all(pad_mask).item())
        text_valid = bool(mx.all(text_mask).item())
        cond = {
            "base": base,
            "w_noisy": mx.contiguous(w[:, : 2 * c]),
            "memory": self.memory_proj(text_features),
            "mask": None if all_valid else pad_mask[:, None, None, :],
            "text_mask": None if text_valid else text_mask[:, None, None, :],
        }
        mx.eval(cond["base"], cond["memory"])
        return cond

    def velocity(self, cond: dict, t: float, x: mx.array) -> mx.array:
        """The DiT's velocity at time ``t`` for the state ``x`` ``[batch, frames, 256]``."""
        b = x.shape[0]
        time = mx.full((b,), t, mx.float32)
        h = fnn.linear(x, cond["w_noisy"]) + cond["base"]
        memory = cond["memory"] + timestep_embedding(time, self.config.transformer.dim)[:, None]
        return self.transformer(h, time, memory, cond["mask"], cond["text_mask"])

    # ---- separation ---------------------------------------------------------------------------
    def separate(
        self,
        audios,
        descriptions=None,
        anchors=None,
        ode_opt: dict | None = None,
        ode_decode_chunk_size: int | None = 50,
        sizes=None,
        noise: mx.array | None = None,
        text_features: mx.array | None = None,
        text_mask: mx.array | None = None,
        message: mx.array | None = None,
        progress=None,
    ) -> SeparationResult:
        """Separates the prompted sound from each audio: see :func:`.separate.separate`."""
        from .separate import separate

        return separate(self, audios, descriptions, anchors=anchors, ode_opt=ode_opt,
                        ode_decode_chunk_size=ode_decode_chunk_size, sizes=sizes, noise=noise,
                        text_features=text_features, text_mask=text_mask, message=message,
                        progress=progress)  # fmt: skip

    def separate_long(self, audios, descriptions=None, chunk_seconds: float = 10.0,
                      overlap_seconds: float = 3.0, ode_opt: dict | None = None, seed: int = 42,
                      verbose: bool = True, **kwargs) -> SeparationResult:  # fmt: skip
        """Chunked separation with crossfades: see :func:`.separate.separate_long`."""
        from .separate import separate_long

        return separate_long(self, audios, descriptions, chunk_seconds=chunk_seconds,
                             overlap_seconds=overlap_seconds, ode_opt=ode_opt, seed=seed,
                             verbose=verbose, **kwargs)  # fmt: skip

    def separate_streaming(self, audios, descriptions=None, chunk_seconds: float = 10.0,
                           overlap_seconds: float = 3.0, ode_opt: dict | None = None,
                           seed: int = 42, verbose: bool = False, target_callback=None,
                           residual_callback=None, **kwargs):  # fmt: skip
        """Chunk-by-chunk separation as it goes: see :func:`.separate.separate_streaming`."""
        from .separate import separate_streaming

        return separate_streaming(self, audios, descriptions, chunk_seconds=chunk_seconds,
                                  overlap_seconds=overlap_seconds, ode_opt=ode_opt, seed=seed,
                                  verbose=verbose, target_callback=target_callback,
                                  residual_callback=residual_callback, **kwargs)  # fmt: skip


def ode_grid(ode_opt: dict | None) -> tuple[str, np.ndarray]:
    """The solver and its time grid, as torchdiffeq builds a fixed grid from ``step_size``
    (float32: ``ceil(1 / step + 1)`` points ``i * step``, the last set to 1).

    Raises:
        ValueError: An unknown method, or a step size not in (0, 1).
    """
    opt = dict(DEFAULT_ODE_OPT if ode_opt is None else ode_opt)
    if "options" in opt and isinstance(opt["options"], dict):  # torchdiffeq's nesting
        opt.update(opt.pop("options"))
    method, step = opt.get("method", "midpoint"), opt.get("step_size", 2 / 32)
    if method not in ("midpoint", "euler"):
        raise ValueError(f"ode_opt['method'] must be 'midpoint' or 'euler', got {method!r}")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step < 1:
        raise ValueError(
            f"ode_opt['step_size'] must be between 0 and 1 (exclusive), e.g. 2/32 for 16 "
            f"steps, got {step!r}"
        )
    step32 = np.float32(step)
    points = int(np.ceil(np.float32(1.0) / step32 + np.float32(1.0)))
    grid = np.arange(points, dtype=np.float32) * step32
    grid[-1] = 1.0
    return method, grid
