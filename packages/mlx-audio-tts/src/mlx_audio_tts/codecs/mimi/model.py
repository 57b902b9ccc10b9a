"""Mimi: Kyutai's streaming neural audio codec (Défossez et al., "Moshi: a speech-text
foundation model for real-time dialogue", 2024, arXiv:2410.00037), the codec CSM speaks
through.

A causal SEANet encoder turns 24 kHz audio into 25 Hz frames, an 8-layer causal transformer
(sliding window of 250 frames, RoPE, LayerScale) refines them, a strided convolution halves
the rate to 12.5 Hz, and a split residual vector quantizer codes each frame with 1 semantic
and 31 acoustic codebooks of 2048 entries. Decoding mirrors it. Everything is causal, so
:class:`StreamingDecoder` decodes frame by frame, keeping the convolutions' and the
transformer's state, and gives the audio of one whole-signal decode (measured: equal to
float rounding). Arrays are channels-last.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io import nn as fnn

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .config import ModelArgs
from .layers import (
    CausalConv1d,
    CausalConvTranspose1d,
    SEANetDecoder,
    SEANetEncoder,
    SplitResidualVectorQuantizer,
    Transformer,
)

_INT_DTYPES = (mx.int8, mx.int16, mx.int32, mx.int64, mx.uint8, mx.uint16, mx.uint32, mx.uint64)


class Mimi(nn.Module):
    """The Mimi codec: :meth:`encode` audio to codes, :meth:`decode` them back,
    :meth:`decode_stream` / :class:`StreamingDecoder` chunk by chunk.

    Audio is mono float32 at ``config.sampling_rate``: ``[samples]``, ``[samples, 1]`` or
    ``[batch, samples, 1]``. Codes are int32 ``[codebooks, frames]`` (``[batch, codebooks,
    frames]``), one frame per ``samples_per_frame`` samples, codebook 0 the semantic one.
    """

    def __init__(self, config: ModelArgs):
        super().__init__()
        self.config = config
        h, stride = config.hidden_size, config.latent_stride
        self.encoder = SEANetEncoder(config)
        self.encoder_transformer = Transformer(config)
        self.downsample = CausalConv1d(h, h, 2 * stride, stride=stride, bias=False,
                                       pad_mode="replicate")  # fmt: skip
        self.quantizer = SplitResidualVectorQuantizer(config)
        self.upsample = CausalConvTranspose1d(h, h, 2 * stride, stride, bias=False,
                                              depthwise=True)  # fmt: skip
        self.decoder_transformer = Transformer(config)
        self.decoder = SEANetDecoder(config)

    @property
    def sample_rate(self) -> int:
        """Hz (24000)."""
        return self.config.sampling_rate

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per code frame (1920 at 24 kHz: 12.5 frames per second)."""
        return self.config.frame_size

    @property
    def num_codebooks(self) -> int:
        """Codebooks per frame (32)."""
        return self.config.num_quantizers

    def encoder_latents(self, audio: mx.array) -> mx.array:
        """Audio ``[batch, samples, 1]`` -> the latents before quantization
        ``[batch, frames, hidden_size]`` (``frames = ceil(samples / samples_per_frame)``)."""
        with fnn.buffer_cache():
            z = self.downsample(self.encoder_transformer(self.encoder(audio)))
            mx.eval(z)
        return z

    def encode(self, audio) -> mx.array:
        """Audio -> codes. The audio is padded at the end to a whole number of frames (zeros),
        as transformers' ``MimiModel.encode`` does.

        Args:
            audio: ``[samples]``, ``[samples, 1]`` or ``[batch, samples, 1]`` float (mx or
                numpy), mono, at ``sample_rate``.

        Returns:
            int32 ``[num_codebooks, frames]`` (``[batch, num_codebooks, frames]`` for 3-D
            input), ``frames = ceil(samples / samples_per_frame)``.

        Raises:
            ValueError: Not mono, empty, or not finite.
        """
        x = audio if isinstance(audio, mx.array) else mx.array(np.asarray(audio))
        batched = x.ndim == 3
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[-1] != 1 or x.shape[1] == 0 or x.shape[0] == 0:
            raise ValueError(
                "audio must be mono, [samples], [samples, 1] or [batch, samples, 1] with "
                f"samples > 0, got shape {tuple(np.shape(audio))}"
            )
        if not mx.issubdtype(x.dtype, mx.floating):
            raise ValueError(f"audio must be floating point, got {x.dtype}")
        x = x.astype(mx.float32)
        if not mx.all(mx.isfinite(x)).item():
            raise ValueError("audio must be finite (no NaN or infinity)")
        with fnn.buffer_cache():
            codes = self.quantizer.encode(self.encoder_latents(x))
            mx.eval(codes)
        return codes if batched else codes[0]

    def check_codes(self, codes) -> tuple[mx.array, bool]:
        """Validates codes; returns them as ``[batch, k, frames]`` int32 and whether they came
        batched.

        Raises:
            ValueError: Not 2-D or 3-D, not integers, more codebooks than ``num_codebooks``
                (or none), no frames, or values out of ``[0, codebook_size)``.
        """
        a = codes if isinstance(codes, mx.array) else mx.array(np.asarray(codes))
        if a.ndim not in (2, 3):
            raise ValueError(f"codes must be [codebooks, frames] or [batch, codebooks, frames], "
                             f"got shape {tuple(a.shape)}")  # fmt: skip
        batched = a.ndim == 3
        a = a if batched else a[None]
        if a.dtype not in _INT_DTYPES:
            raise ValueError(f"codes must be integers, got {a.dtype}")
        k, n = a.shape[1], self.config.num_quantizers
        if not 1 <= k <= n:
            raise ValueError(f"codes must have 1 to {n} codebooks (axis -2), got {k}")
        if a.shape[2] == 0 or a.shape[0] == 0:
            raise ValueError(f"codes must not be empty, got shape {tuple(np.shape(codes))}")
        size = self.config.codebook_size
        lo, hi = mx.min(a).item(), mx.max(a).item()
        if lo < 0 or hi >= size:
            raise ValueError(f"codes must be in [0, {size}), got values in [{lo}, {hi}]")
        return a.astype(mx.int32), batched

    def decode(self, codes) -> mx.array:
        """Codes -> audio.

        Args:
            codes: Ints ``[k, frames]`` or ``[batch, k, frames]``: the first ``k`` codebooks
                (all 32, or fewer for a coarser decode).

        Returns:
            float32 ``[frames * samples_per_frame, 1]`` (``[batch, …, 1]`` for batched codes).

        Raises:
            ValueError: Bad codes (see :meth:`check_codes`).
        """
        codes, batched = self.check_codes(codes)
        with fnn.buffer_cache():
            audio = self._decode(codes, None)
            mx.eval(audio)
        return audio if batched else audio[0]

    def _decode(self, codes: mx.array, state: dict | None) -> mx.array:
        z = self.upsample(self.quantizer.decode(codes), state)
        return self.decoder(self.decoder_transformer(z, state), state)

    def decode_stream(self, chunks: Iterable) -> Iterator[mx.array]:
        """Decodes code chunks as they come (any number of frames each); the yielded audio,
        concatenated, is :meth:`decode` of all the codes.

        Yields:
            Audio ``[frames * samples_per_frame, 1]`` per chunk (batched: ``[batch, …, 1]``).
        """
        stream = StreamingDecoder(self)
        for chunk in chunks:
            yield stream.push(chunk)

    def sanitize(self, weights: dict, torch_layout: bool) -> dict:
        """Checkpoint weights in this model's names and layout (:func:`.load.convert`)."""
        from .load import convert

        return convert(weights, self.config, torch_layout)

    @staticmethod
    def transposed_conv_names_for(args: ModelArgs) -> set[str]:
        """Names of the transposed convolutions' weights (PyTorch's layout differs): the
        up-sampling to 25 Hz and the decoder's ``[ELU, transposed conv, residual blocks...]``
        stages after its first convolution."""
        per = 2 + args.num_residual_layers
        names = {f"decoder.layers.{2 + i * per}.conv.weight"
                 for i in range(len(args.upsampling_ratios))}  # fmt: skip
        return names | {"upsample.conv.weight"}


Model = Mimi


class StreamingDecoder:
    """Decodes Mimi codes pushed a few frames at a time, with no latency: every causal
    convolution (transposed ones too) keeps its last input frames, and both
    transformers their keys and values (the last ``sliding_window - 1``), so each frame's audio
    is final as soon as its codes arrive and equals a whole-signal :meth:`Mimi.decode`.

    Args:
        model: The codec.
    """

    def __init__(self, model: Mimi):
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Starts a new stream."""
        self._state: dict = {}
        self._batched: bool | None = None
        self._shape: tuple[int, int] | None = None
        self.frames = 0

    def push(self, codes) -> mx.array:
        """Decodes the next frames.

        Args:
            codes: ``[k, frames]`` or ``[batch, k, frames]`` ints, the same ``k`` and batch for
                every push of a stream.

        Returns:
            float32 ``[frames * samples_per_frame, 1]`` (``[batch, …, 1]``).

        Raises:
            ValueError: Bad codes, or a batch size, codebook count or batching unlike the
                earlier pushes'.
        """
        codes, batched = self.model.check_codes(codes)
        shape = (codes.shape[0], codes.shape[1])
        if self._batched is not None and (batched, shape) != (self._batched, self._shape):
            raise ValueError(
                f"every push of a stream must have the same batching, batch size and "
                f"codebooks: first {self._shape} (batched {self._batched}), now {shape} "
                f"(batched {batched}); call reset() to start another stream"
            )
        self._batched, self._shape = batched, shape
        with fnn.buffer_cache():
            audio = self.model._decode(codes, self._state)
            mx.eval(audio, self._state_arrays())
        self.frames += codes.shape[2]
        return audio if batched else audio[0]

    def decode_step(self, codes) -> mx.array:
        """Decodes one frame: codes ``[k]`` (-> ``[samples_per_frame, 1]``) or ``[batch, k]``
        (-> ``[batch, samples_per_frame, 1]``); as :meth:`push` otherwise."""
        a = codes if isinstance(codes, mx.array) else mx.array(np.asarray(codes))
        if a.ndim not in (1, 2):
            raise ValueError(f"decode_step takes one frame, [k] or [batch, k], got shape "
                             f"{tuple(a.shape)}")  # fmt: skip
        return self.push(a[..., None])

    def _state_arrays(self) -> list:
        out = []
        for v in self._state.values():
            if isinstance(v, mx.array):  # a convolution's last inputs
                out.append(v)
            else:  # a transformer's keys and values
                out += [a for cache in v["caches"] for a in cache]
        return out
