"""Sesame CSM-1B's two language models: a Llama-3.2-1B backbone that reads frames of text
or audio and predicts each 80 ms frame's first Mimi codebook, and a small depth decoder
that predicts the other 31 codebooks one after another (SesameAILabs/csm ``models.py``).

Both Llamas are mlx-lm's (``mlx_lm.models.llama.LlamaModel``, its KV caches); this module
holds what is CSM's own: the frame embedding, the two heads and the per-frame decoding.

A frame is 33 columns: the 32 codebooks, then a text token. A text frame uses only the text
column, an audio frame only the 32 audio columns (``mask`` says which); its embedding is
the sum of the used columns' embeddings (codebook ``i``'s code ``c`` is row
``i * audio_vocab_size + c`` of ``audio_embeddings``).
"""

from __future__ import annotations

from collections.abc import Callable

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io import nn as aio_nn

import mlx.core as mx
import mlx.nn as nn

from .config import ModelArgs

Sampler = Callable[[mx.array], mx.array]


def _llama_model(args: ModelArgs, which: str) -> nn.Module:
    """mlx-lm's ``LlamaModel`` without its token embedding (CSM feeds embeddings)."""
    from mlx_lm.models import llama

    model = llama.LlamaModel(args.llama_args(which))
    model.embed_tokens = nn.Identity()
    return model


def make_cache(llama: nn.Module) -> list:
    """A fresh mlx-lm KV cache for one of the Llamas (``make_prompt_cache``)."""
    from mlx_lm.models.cache import make_prompt_cache

    return make_prompt_cache(llama)


class Model(nn.Module):
    """CSM's backbone and depth decoder with their embeddings and heads.

    Weights are in our layout (see :mod:`.convert`): torchtune's q/k row order with
    interleaved RoPE, mlx-lm's names. Call :meth:`generate_frame` once per 80 ms frame.
    """

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        k, v = args.audio_num_codebooks, args.audio_vocab_size
        dim, dec_dim = args.backbone["hidden_size"], args.decoder["hidden_size"]
        self.backbone = _llama_model(args, "backbone")
        self.decoder = _llama_model(args, "decoder")
        self.text_embeddings = nn.Embedding(args.text_vocab_size, dim)
        self.audio_embeddings = nn.Embedding(v * k, dim)
        self.projection = nn.Linear(dim, dec_dim, bias=False)
        self.codebook0_head = nn.Linear(dim, v, bias=False)
        self.audio_head = mx.zeros((k - 1, dec_dim, v))

    def embed_audio(self, codebook: int, codes: mx.array) -> mx.array:
        """Embeddings ``[..., dim]`` of codebook ``codebook``'s ``codes`` (int)."""
        return self.audio_embeddings(codes + codebook * self.args.audio_vocab_size)

    def embed_frames(self, tokens: mx.array, mask: mx.array) -> mx.array:
        """Frame embeddings ``[B, L, dim]`` of ``tokens`` ``[B, L, 33]`` int32 (32 codes, then
        the text token) under ``mask`` ``[B, L, 33]`` bool: the sum of the used columns."""
        k, v = self.args.audio_num_codebooks, self.args.audio_vocab_size
        text = self.text_embeddings(tokens[..., -1])[..., None, :]
        audio = self.audio_embeddings(tokens[..., :-1] + mx.arange(k, dtype=tokens.dtype) * v)
        embeds = mx.concatenate([audio, text], axis=-2)
        return (embeds * mask[..., None].astype(embeds.dtype)).sum(axis=-2)

    def backbone_hidden(self, tokens: mx.array, mask: mx.array, cache: list) -> mx.array:
        """The backbone's normed hidden states ``[B, L, dim]`` for these frames, appended to
        ``cache`` (positions continue from the cache's offset)."""
        return self.backbone(None, cache=cache, input_embeddings=self.embed_frames(tokens, mask))

    def generate_frame(
        self, tokens: mx.array, mask: mx.array, cache: list, sampler: Sampler,
        decoder_sampler: Sampler | None = None,
    ) -> mx.array:  # fmt: skip
        """One 80 ms frame: a backbone step over ``tokens``/``mask`` (the prompt, or the last
        frame) through ``cache``, codebook 0 from ``codebook0_head``, then a fresh depth
        decoder cache and one depth step per further codebook (``audio_head[i - 1]``).

        Args:
            tokens, mask: ``[B, L, 33]`` as for :meth:`embed_frames`.
            cache: The backbone's KV cache (:func:`make_cache` of :attr:`backbone`).
            sampler: Logits ``[B, vocab]`` to codes ``[B]`` (mlx-lm's ``make_sampler``).
            decoder_sampler: The depth decoder's sampler; None means ``sampler``.

        Returns:
            The frame's codes ``[B, audio_num_codebooks]`` int32.
        """
        decoder_sampler = decoder_sampler or sampler
        last = self.backbone_hidden(tokens, mask, cache)[:, -1]
        code = sampler(self.codebook0_head(last)).astype(mx.int32).reshape(-1)
        codes = [code]
        h = mx.stack([last, self.embed_audio(0, code)], axis=1)
        dec_cache = make_cache(self.decoder)  # every frame starts the decoder afresh
        for i in range(1, self.args.audio_num_codebooks):
            out = self.decoder(None, cache=dec_cache, input_embeddings=self.projection(h))
            # [i - 1, :, :] is a view (an int index copies the 8 MB matrix); nn.matmul
            # streams it once instead of OpenBLAS's packing sgemm
            logits = aio_nn.matmul(out[:, -1], self.audio_head[i - 1, :, :])
            code = decoder_sampler(logits).astype(mx.int32)
            code = code.reshape(-1)
            codes.append(code)
            h = self.embed_audio(i, code)[:, None]
        return mx.stack(codes, axis=1)

    def sanitize(self, weights: dict) -> dict:
        """Any of the three checkpoint layouts to ours (see :func:`.convert.convert_weights`)."""
        from .convert import convert_weights

        return convert_weights(weights, self.args)
