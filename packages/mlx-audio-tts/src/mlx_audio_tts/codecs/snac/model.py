"""SNAC: a multi-scale neural audio codec (Siuzdak et al., "SNAC: Multi-Scale Neural Audio
Codec", 2024, arXiv:2410.14411), the codec Orpheus speaks through.

A DAC-style convolutional encoder turns audio into latent frames (one per ``hop_length``
samples); a residual vector quantizer codes them at several temporal resolutions (level i
averages ``vq_strides[i]`` latent frames into one code, so the 24 kHz model has 12, 23 and
47 codes per second); a DAC-style decoder with noise injection turns the summed codebook
vectors back into audio. The blocks are :mod:`mlx_audio_io.dac`'s; arrays are channels-last.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Iterator, Sequence

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io import nn as fnn
from mlx_audio_io.dac import (
    DecoderBlock,
    EncoderBlock,
    Snake1d,
    WNConv1d,
    torch_to_mlx_layout,
)

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .config import ModelArgs


class NoiseBlock(nn.Module):
    """``x + noise * linear(x)``: Gaussian noise, one value per frame shared by every channel,
    scaled per channel by a learnt 1x1 convolution of the input."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = WNConv1d(dim, dim, 1, bias=False)

    def __call__(self, x: mx.array, noise: mx.array | bool | None = None) -> mx.array:
        """``noise``: None draws it, False leaves it out, else ``batch * frames`` values."""
        if noise is False:
            return x
        b, t, _ = x.shape
        if noise is None:
            noise = mx.random.normal((b, t, 1), dtype=x.dtype)
        elif noise.size != b * t:
            raise ValueError(f"noise must have {b} x {t} values for this block, got {noise.shape}")
        return x + noise.reshape(b, t, 1) * self.linear(x)


class Encoder(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        d = args.encoder_dim
        layers = [WNConv1d(1, d, 7, padding=3)]
        for stride in args.encoder_rates:
            d *= 2
            layers.append(EncoderBlock(d, stride=stride, groups=d // 2 if args.depthwise else 1))
        layers.append(WNConv1d(d, d, 7, padding=3, groups=d if args.depthwise else 1))
        self.block = nn.Sequential(*layers)

    def __call__(self, x: mx.array) -> mx.array:
        return self.block(x)


class Decoder(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        c_in, c = args.latent_channels, args.decoder_dim
        if args.depthwise:
            layers = [WNConv1d(c_in, c_in, 7, padding=3, groups=c_in), WNConv1d(c_in, c, 1)]
        else:
            layers = [WNConv1d(c_in, c, 7, padding=3)]
        for i, stride in enumerate(args.decoder_rates):
            c_out = c // 2 ** (i + 1)
            noise = NoiseBlock(c_out) if args.noise else None
            groups = c_out if args.depthwise else 1
            layers.append(DecoderBlock(c // 2**i, c_out, stride, groups, noise_block=noise))
        layers += [Snake1d(c_out), WNConv1d(c_out, 1, 7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def __call__(self, x: mx.array, noise: Sequence[mx.array | None] | None = None) -> mx.array:
        blocks = 0
        for layer in self.model.layers:
            if isinstance(layer, DecoderBlock):
                x = layer(x, None if noise is None else noise[blocks])
                blocks += 1
            else:
                x = layer(x)
        return x


class VectorQuantize(nn.Module):
    """One level: average ``stride`` latent frames, project to ``codebook_dim``, pick the
    nearest codebook entry by cosine (both sides L2-normalised), project back."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int, stride: int):
        super().__init__()
        self.stride = stride
        self.in_proj = WNConv1d(input_dim, codebook_dim, 1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def codes(self, z: mx.array) -> mx.array:
        """``[batch, frames, input_dim]`` -> codes ``[batch, frames // stride]``."""
        b, t, c = z.shape
        if self.stride > 1:
            t //= self.stride
            z = z[:, : t * self.stride].reshape(b, t, self.stride, c).mean(axis=2)
        e = _l2_normalize(self.in_proj(z).reshape(b * t, -1))
        book = _l2_normalize(self.codebook.weight)
        dist = (
            mx.sum(e * e, axis=1, keepdims=True)
            - 2 * (e @ book.T)
            + mx.sum(book * book, axis=1)[None]
        )  # the reference's formula, so that near ties break the same way
        return mx.argmin(dist, axis=1).astype(mx.int32).reshape(b, t)

    def latents(self, codes: mx.array) -> mx.array:
        """Codes ``[batch, n]`` -> ``[batch, n * stride, input_dim]``."""
        z = self.out_proj(self.codebook(codes))
        return mx.repeat(z, self.stride, axis=1) if self.stride > 1 else z


def _l2_normalize(x: mx.array, eps: float = 1e-12) -> mx.array:
    return x / mx.maximum(mx.sqrt(mx.sum(x * x, axis=-1, keepdims=True)), eps)


class ResidualVectorQuantize(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.quantizers = [
            VectorQuantize(args.latent_channels, args.codebook_size, args.codebook_dim, s)
            for s in args.vq_strides
        ]

    def encode(self, z: mx.array) -> list[mx.array]:
        residual, codes = z, []
        for q in self.quantizers:
            c = q.codes(residual)
            zq = q.latents(c)
            pad = residual.shape[1] - zq.shape[1]  # frames the average pooling dropped
            if pad:
                zq = mx.pad(zq, [(0, 0), (0, pad), (0, 0)])
            residual = residual - zq
            codes.append(c)
        return codes

    def decode(self, codes: Sequence[mx.array]) -> mx.array:
        z = None
        for q, c in zip(self.quantizers, codes, strict=True):
            zq = q.latents(c)
            z = zq if z is None else z + zq
        return z


class SNAC(nn.Module):
    """SNAC codec: :meth:`encode` audio to codes at ``len(vq_strides)`` levels,
    :meth:`decode` them back, :meth:`decode_stream` them chunk by chunk.

    Audio is mono float32, ``[frames]`` or ``[frames, 1]`` (or ``[batch, frames, 1]``) at
    ``config.sampling_rate``. Codes are int32, one array per level, coarsest first:
    ``[n_i]`` (or ``[batch, n_i]``) with ``n_i * vq_strides[i]`` the same for every level.
    """

    def __init__(self, config: ModelArgs):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualVectorQuantize(config)
        self.decoder = Decoder(config)

    @property
    def sample_rate(self) -> int:
        return self.config.sampling_rate

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per code frame (one code of the coarsest level; 2048 at 24 kHz)."""
        return self.config.hop_length * self.config.frame_latents

    def codes_per_frame(self) -> list[int]:
        """Codes of each level per code frame (1, 2, 4 at 24 kHz)."""
        return [self.config.frame_latents // s for s in self.config.vq_strides]

    def encode(self, audio) -> list[mx.array]:
        """Audio -> codes. The audio is zero-padded at the end to a whole number of
        ``hop_length * vq_strides[0]`` samples, as the reference does.

        Args:
            audio: ``[frames]``, ``[frames, 1]`` or ``[batch, frames, 1]`` float (mx or numpy).

        Returns:
            One int32 array per level: ``[n_i]`` (``[batch, n_i]`` for 3-D input).

        Raises:
            ValueError: Not mono, empty, or not finite.
        """
        x = mx.array(audio) if not isinstance(audio, mx.array) else audio
        batched = x.ndim == 3
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[-1] != 1 or x.shape[1] == 0:
            raise ValueError(
                "audio must be mono, [frames], [frames, 1] or [batch, frames, 1] with frames "
                f"> 0, got shape {tuple(np.shape(audio))}"
            )
        x = x.astype(mx.float32)
        if not mx.all(mx.isfinite(x)).item():
            raise ValueError("audio must be finite (no NaN or infinity)")
        pad_to = self.config.hop_length * self.config.vq_strides[0]
        right = -x.shape[1] % pad_to
        if right:
            x = mx.pad(x, [(0, 0), (0, right), (0, 0)])
        with fnn.buffer_cache():
            codes = self.quantizer.encode(self.encoder(x))
            mx.eval(codes)
        return codes if batched else [c[0] for c in codes]

    def check_codes(self, codes) -> tuple[list[mx.array], bool]:
        """Validates codes; returns them as ``[batch, n_i]`` int32 arrays and whether they
        came batched.

        Raises:
            ValueError: Wrong number of levels, mismatched lengths or batch, not integers,
                or out of ``[0, codebook_size)``.
        """
        levels = len(self.config.vq_strides)
        if not isinstance(codes, list | tuple) or len(codes) != levels:
            got = f"{len(codes)} items" if isinstance(codes, list | tuple) else type(codes).__name__
            raise ValueError(f"codes must be a list of {levels} arrays (one per level), got {got}")
        arrays = [c if isinstance(c, mx.array) else mx.array(np.asarray(c)) for c in codes]
        ndims = {a.ndim for a in arrays}
        if len(ndims) != 1 or ndims.pop() not in (1, 2):
            raise ValueError(f"codes must all be [n] or all [batch, n], got shapes "
                             f"{[tuple(a.shape) for a in arrays]}")  # fmt: skip
        batched = arrays[0].ndim == 2
        arrays = [a if batched else a[None] for a in arrays]
        if any(a.dtype not in (mx.int32, mx.int64, mx.uint32, mx.int16, mx.uint16, mx.uint8,
                               mx.int8, mx.uint64) for a in arrays):  # fmt: skip
            raise ValueError(f"codes must be integers, got {[str(a.dtype) for a in arrays]}")
        if len({a.shape[0] for a in arrays}) != 1:
            raise ValueError(f"codes must have one batch size, got {[a.shape[0] for a in arrays]}")
        latents = [a.shape[1] * s for a, s in zip(arrays, self.config.vq_strides, strict=True)]
        if len(set(latents)) != 1 or latents[0] == 0:
            per = self.codes_per_frame()
            raise ValueError(f"code levels must have lengths in the ratio {per} (and not be "
                             f"empty), got {[a.shape[1] for a in arrays]}")  # fmt: skip
        size = self.config.codebook_size
        for i, a in enumerate(arrays):
            lo, hi = mx.min(a).item(), mx.max(a).item()
            if lo < 0 or hi >= size:
                raise ValueError(f"codes[{i}] must be in [0, {size}), got values in [{lo}, {hi}]")
        return [a.astype(mx.int32) for a in arrays], batched

    def decode(self, codes, noise=None, key: mx.array | None = None, add_noise: bool = True):
        """Codes -> audio.

        Args:
            codes: One int array per level, ``[n_i]`` or ``[batch, n_i]``.
            noise: For the noise blocks: None (draw it), a :class:`PositionalNoise` (noise
                fixed by position, so that a streamed decode equals this one), or one array
                per decoder block holding ``batch * frames`` values of that block's output
                (for reproducing another run, as the parity check does).
            key: PRNG key for the drawn noise (None: MLX's global generator).
            add_noise: False leaves the noise blocks out (a deterministic decode).

        Returns:
            ``[n_0 * samples_per_frame / codes_per_frame()[0], 1]`` float32 (``[batch, …, 1]``
            for batched codes).

        Raises:
            ValueError: Bad codes (see :meth:`check_codes`) or noise.
        """
        return self._decode_at(codes, noise, key, add_noise, 0)

    def _decode_at(self, codes, noise, key, add_noise, offset: int):
        """:meth:`decode` of codes that start ``offset`` code frames into a stream."""
        codes, batched = self.check_codes(codes)
        with fnn.buffer_cache():
            audio = self._decode(codes, noise, key, add_noise, offset)
            mx.eval(audio)
        return audio if batched else audio[0]

    def _decode(self, codes, noise, key, add_noise, offset=0):
        blocks = len(self.config.decoder_rates)
        if not (self.config.noise and add_noise):
            return self.decoder(self.quantizer.decode(codes), [False] * blocks)
        if isinstance(noise, PositionalNoise):
            noise = noise.arrays(self.config, codes[0].shape[0], offset, codes[0].shape[1])
        elif noise is not None:
            if isinstance(noise, (str, bytes)) or not isinstance(noise, Sequence):
                raise ValueError(f"noise must be a PositionalNoise or a list of arrays, got "
                                 f"{type(noise).__name__}")  # fmt: skip
            if len(noise) != blocks:
                raise ValueError(f"noise must hold {blocks} arrays (one per decoder block), "
                                 f"got {len(noise)}")  # fmt: skip
            noise = [mx.array(n) if not isinstance(n, mx.array) else n for n in noise]
        elif key is not None:
            noise = _drawn_noise(codes[0].shape[0], codes, self.config, key)
        return self.decoder(self.quantizer.decode(codes), noise)

    def decode_stream(self, chunks: Iterable, **kwargs) -> Iterator[mx.array]:
        """Decodes code chunks as they come, yielding audio whose concatenation equals
        :meth:`decode` of all the codes (up to float rounding) with ``add_noise=False`` or
        the same :class:`PositionalNoise` as ``noise=`` (drawn noise is drawn anew for every
        window).

        Args:
            chunks: Iterable of code chunks, each as :meth:`decode` takes them, with a whole
                number of code frames (``codes_per_frame()`` codes per level per frame).
            **kwargs: :class:`StreamingDecoder`'s options.

        Yields:
            Audio ``[samples, 1]`` (``[batch, samples, 1]``), a multiple of
            ``samples_per_frame`` each, the last one after the chunks run out.
        """
        stream = StreamingDecoder(self, **kwargs)
        for chunk in chunks:
            audio = stream.push(chunk)
            if audio.shape[-2]:
                yield audio
        tail = stream.flush()
        if tail.shape[-2]:
            yield tail

    def decoder_reach(self) -> int:
        """How many code frames on either side of a frame its audio depends on."""
        cfg, f, reach = self.config, 1, 3.0  # first (depthwise) k7 convolution
        for s in cfg.decoder_rates:
            reach += 2 / f  # transposed conv, kernel 2s: within one input frame, bounded by 2
            f *= s
            reach += 3 * (1 + 3 + 9) / f  # residual units, k7, dilations 1, 3, 9
        reach += 3 / f  # last k7 convolution
        return math.ceil(math.ceil(reach) / cfg.frame_latents)

    @staticmethod
    def sanitize(weights: dict, torch_layout: bool) -> dict:
        """Checkpoint weights in this model's names and layout: a PyTorch state dict
        (``weight_g``/``weight_v`` or ``parametrizations.weight.original0/1``) is renamed and
        transposed; MLX-layout weights (``mlx-community/snac_24khz``, ours) pass as they are."""
        weights = torch_to_mlx_layout(weights) if torch_layout else dict(weights)
        return {k: v if isinstance(v, mx.array) else mx.array(v) for k, v in weights.items()}


Model = SNAC


def _drawn_noise(batch, codes, cfg: ModelArgs, key) -> list[mx.array]:
    frames = codes[0].shape[1] * cfg.vq_strides[0]
    out = []
    for k, s in zip(mx.random.split(key, len(cfg.decoder_rates)), cfg.decoder_rates, strict=True):
        frames *= s
        out.append(mx.random.normal((batch, frames), key=k))
    return out


def _mix32(x: mx.array) -> mx.array:
    """A 32-bit integer hash with full avalanche (lowbias32, C. Wellons)."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


class PositionalNoise:
    """SNAC's decoder noise as a function of where it falls: the value at output frame ``t``
    of decoder block ``i`` (batch row ``b``) depends only on ``(seed, i, b, t)``. A decode of
    any window of codes then adds exactly the noise a decode of the whole gives at the same
    place, which is what makes streamed audio equal one-shot audio (:class:`StreamingDecoder`).

    Standard normal values from a counter-based hash (two uniforms per value, Box-Muller).

    Args:
        seed: Any int (None: a random one, kept in :attr:`seed`).
    """

    def __init__(self, seed: int | None = None):
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = int(seed)

    def values(self, block: int, batch: int, start: int, count: int) -> mx.array:
        """Noise ``[batch, count]`` for frames ``start .. start + count`` of ``block``."""
        lo = mx.array([self.seed & 0xFFFFFFFF], dtype=mx.uint32)
        salt = _mix32(lo ^ (block * 0x9E3779B9 & 0xFFFFFFFF))
        salt = _mix32(salt ^ ((self.seed >> 32) & 0xFFFFFFFF))
        rows = _mix32(salt + mx.arange(batch, dtype=mx.uint32) * 0x85EBCA77)[:, None]
        t = mx.arange(count, dtype=mx.uint32) + (start & 0xFFFFFFFF)
        h = _mix32(t ^ rows)
        u1 = ((_mix32(h ^ 0x68E31DA4) >> 8) + 1).astype(mx.float32) * 2.0**-24  # (0, 1]
        u2 = (_mix32(h + 0x1B56C4E9) >> 8).astype(mx.float32) * 2.0**-24  # [0, 1)
        return mx.sqrt(-2.0 * mx.log(u1)) * mx.cos(2.0 * math.pi * u2)

    def arrays(self, cfg: ModelArgs, batch: int, offset: int, frames: int) -> list[mx.array]:
        """One array per decoder block for ``frames`` code frames starting at code frame
        ``offset`` (as :meth:`SNAC.decode` takes ``noise``)."""
        per = cfg.vq_strides[0]  # latent frames per code frame
        out = []
        for i, rate in enumerate(cfg.decoder_rates):
            per *= rate
            out.append(self.values(i, batch, offset * per, frames * per))
        return out


class StreamingDecoder:
    """Decodes SNAC codes pushed a few frames at a time.

    Every decode covers the new frames plus ``context_frames`` already emitted before them
    and ``lookahead_frames`` after them (withheld until they arrive or :meth:`flush`), both
    at least the decoder's reach (:meth:`SNAC.decoder_reach`, 3 frames = 6144 samples at
    24 kHz), so the audio kept is what a one-shot decode gives. Latency: ``lookahead_frames``
    code frames.

    Args:
        model: The codec.
        context_frames, lookahead_frames: None for the decoder's reach.
        key, add_noise: As :meth:`SNAC.decode` (each window draws its own noise).
        noise: A :class:`PositionalNoise`: every window gets the noise a one-shot decode
            with the same ``noise`` adds there, so the audio equals that decode's (``key`` is
            then unused).
    """

    def __init__(self, model: SNAC, context_frames: int | None = None,
                 lookahead_frames: int | None = None, key: mx.array | None = None,
                 add_noise: bool = True, noise: PositionalNoise | None = None):  # fmt: skip
        reach = model.decoder_reach()
        if noise is not None and not isinstance(noise, PositionalNoise):
            raise ValueError(f"noise must be a PositionalNoise or None, got {noise!r}")
        self.model, self.key, self.add_noise, self.noise = model, key, add_noise, noise
        self.context = reach if context_frames is None else int(context_frames)
        self.lookahead = reach if lookahead_frames is None else int(lookahead_frames)
        if self.context < 0 or self.lookahead < 0:
            raise ValueError("context_frames and lookahead_frames must be >= 0")
        self.per_frame = model.codes_per_frame()
        self._codes: list[mx.array] | None = None
        self._batched: bool | None = None
        self._start = self._emitted = self._total = 0  # in code frames

    def push(self, codes) -> mx.array:
        """Adds codes (a whole number of frames); returns the audio now final (possibly none)."""
        codes, batched = self.model.check_codes(codes)
        if self._batched is not None and batched != self._batched:
            raise ValueError("every chunk must be batched, or none")
        n = codes[0].shape[1] // self.per_frame[0]
        if any(c.shape[1] != n * p for c, p in zip(codes, self.per_frame, strict=True)):
            raise ValueError(
                f"each chunk must hold whole code frames ({self.per_frame} codes per level per "
                f"frame), got {[c.shape[1] for c in codes]}"
            )
        self._batched = batched
        if self._codes is None:
            self._codes = codes
        else:
            if codes[0].shape[0] != self._codes[0].shape[0]:
                raise ValueError("every chunk must have the same batch size")
            self._codes = [
                mx.concatenate(ab, axis=1) for ab in zip(self._codes, codes, strict=True)
            ]
        self._total += n
        return self._emit(self._total - self.lookahead)

    @property
    def emitted_frames(self) -> int:
        """Code frames whose audio has been returned."""
        return self._emitted

    def flush(self) -> mx.array:
        """Returns the rest of the audio (the withheld lookahead)."""
        return self._emit(self._total)

    def _empty(self) -> mx.array:
        b = 1 if self._codes is None else self._codes[0].shape[0]
        out = mx.zeros((b, 0, 1))
        return out if self._batched else out[0]

    def _from(self, frame: int) -> list[mx.array]:
        """The buffered codes from code frame ``frame`` on."""
        pairs = zip(self._codes, self.per_frame, strict=True)
        return [c[:, (frame - self._start) * p :] for c, p in pairs]

    def _emit(self, upto: int) -> mx.array:
        if upto <= self._emitted or self._codes is None:
            return self._empty()
        lo = max(0, self._emitted - self.context)
        window = self._from(lo)
        key = None
        if self.key is not None and self.noise is None:
            self.key, key = mx.random.split(self.key)
        audio = self.model._decode_at(window, self.noise, key, self.add_noise, lo)  # [b, s, 1]
        spf = self.model.samples_per_frame
        out = audio[:, (self._emitted - lo) * spf : (upto - lo) * spf]
        self._emitted = upto
        keep = max(0, upto - self.context)  # frames before this are never needed again
        self._codes = self._from(keep)
        self._start = keep
        mx.eval(out)
        return out if self._batched else out[0]
