"""DAC-VAE, SAM-Audio's audio codec (facebookresearch/dacvae): 48 kHz mono audio to 25 latent
frames a second of 128 features, and back.

The encoder and the decoder's main path are descript-audio-codec's (:mod:`mlx_audio_io.dac`'s
blocks); a VAE bottleneck (``quantizer.in_proj``, of which SAM-Audio keeps the mean, and
``quantizer.out_proj``) sits between them. The decoder ends in an AudioSeal-style watermark,
as the reference's does: every :meth:`DACVAE.decode` embeds a 16-bit message (random unless
given), added as ``0.25 * h`` to the decoder's last ``tanh(conv(snake(x)))``. ``h`` runs the
decoder's output back down through each block's causal ELU branch (to 1/320 of the sample rate),
through two LSTM layers, adds the message's embedding, and up again through the other half of
those branches. Arrays are channels-last, ``[batch, frames, channels]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io import nn as fnn
from mlx_audio_io.dac import EncoderBlock, ResidualUnit, Snake1d, WNConv1d, WNConvTranspose1d

import mlx.core as mx
import mlx.nn as nn

from .config import CodecConfig

WM_BITS = 16
_WM_RATES = (8, 5, 4, 2)  # the watermark branch's strides, the reference's default


def _conv_weight(module: nn.Module, c_in: int, c_out: int, kernel: int, bias: bool = True):
    scale = math.sqrt(1 / (c_in * kernel))
    module.weight = mx.random.uniform(-scale, scale, (c_out, kernel, c_in))
    if bias:
        module.bias = mx.zeros((c_out,))


class CausalConv1d(nn.Module):
    """dacvae's ``NormConv1d(causal=True, pad_mode="auto", norm="none")``: left-padded by
    ``kernel - stride``, right-padded to a whole number of strides. ``weight``
    ``[out, kernel, in]``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1,
                 activation: str | None = None):  # fmt: skip
        super().__init__()
        _conv_weight(self, c_in, c_out, kernel)
        self.stride, self.activation = stride, activation

    def __call__(self, x: mx.array) -> mx.array:
        k, s, length = self.weight.shape[1], self.stride, x.shape[1]
        total = k - s
        frames = math.ceil((length - k + total) / s + 1)
        extra = (frames - 1) * s + (k - total) - length
        x = mx.pad(x, [(0, 0), (total, extra), (0, 0)])
        return fnn.conv_axis(x, self.weight, 1, stride=s, bias=self.bias,
                             activation=self.activation)  # fmt: skip


class CausalConvTranspose1d(nn.Module):
    """dacvae's causal ``NormConvTranspose1d`` (no padding, ``kernel - stride`` output frames
    cropped at the end). ``weight`` ``[out, kernel, in]`` (MLX's layout)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        _conv_weight(self, c_in, c_out, kernel)
        self.stride = stride

    def __call__(self, x: mx.array) -> mx.array:
        k, s = self.weight.shape[1], self.stride
        y = fnn.conv_transpose1d(x, self.weight, stride=s, bias=self.bias)
        return y[:, : y.shape[1] - (k - s)]


class Elu(nn.Module):
    """``ELU(alpha=1)`` (no parameters; a placeholder that keeps checkpoint indices)."""

    def __call__(self, x: mx.array) -> mx.array:
        return fnn.bias_act(x, None, "elu")


class EluUnit(nn.Module):
    """The watermark branch's residual unit: ``x + conv1x1(elu(causal_conv3(elu(x))))``
    with half the channels inside."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(
            Elu(),
            CausalConv1d(dim, dim // 2, 3, activation="elu"),
            Elu(),
            CausalConv1d(dim // 2, dim, 1),
        )

    def __call__(self, x: mx.array) -> mx.array:
        _, conv, _, project = self.block.layers
        return x + project(conv(fnn.bias_act(x, None, "elu")))  # 2nd ELU fused into conv


class DecoderBlock(nn.Module):
    """One upsampling stage: the main path (Snake, weight-normed transposed convolution, Snake
    residual units with dilations 1, 3, 9) and, interleaved in the checkpoint's order, the
    watermark branch's layers at a third of the channels (indices 2, 3, 6, 7, 10, 11)."""

    def __init__(self, c_in: int, c_out: int, stride: int, wm_stride: int):
        super().__init__()
        w_in, w_out = c_in // 3, c_out // 3
        self.block = nn.Sequential(
            Snake1d(c_in),
            WNConvTranspose1d(
                c_in,
                c_out,
                2 * stride,
                stride=stride,
                padding=(stride + 1) // 2,
                output_padding=stride % 2,
            ),  # fmt: skip
            Elu(),
            CausalConvTranspose1d(w_in, w_out, 2 * wm_stride, wm_stride),
            ResidualUnit(c_out, dilation=1),
            ResidualUnit(c_out, dilation=3),
            EluUnit(w_out),
            EluUnit(w_out),
            ResidualUnit(c_out, dilation=9),
            nn.Identity(),
            Elu(),
            CausalConv1d(w_out, w_in, 2 * wm_stride, wm_stride),
        )

    def __call__(self, x: mx.array) -> mx.array:
        layers = self.block.layers
        x = layers[1](layers[0](x))
        for i in (4, 5, 8):
            x = layers[i](x)
        return x

    def wm_down(self, h: mx.array) -> mx.array:
        """The watermark branch's strided half: to ``1 / wm_stride`` the frames, 3x wider."""
        layers = self.block.layers
        return layers[11](fnn.bias_act(layers[7](h), None, "elu"))

    def wm_up(self, h: mx.array) -> mx.array:
        """The watermark branch's transposed half: back to ``wm_stride`` times the frames."""
        layers = self.block.layers
        return layers[6](layers[3](fnn.bias_act(h, None, "elu")))


class LSTM(nn.Module):
    """torch's ``nn.LSTM(hidden, hidden, layers)`` (gates i, f, g, o; both biases) over
    ``[batch, frames, hidden]``, with the input added to the output (dacvae's LSTMBlock)."""

    def __init__(self, hidden: int, layers: int):
        super().__init__()
        scale = 1 / math.sqrt(hidden)
        for i in range(layers):
            for name in ("weight_ih", "weight_hh"):
                setattr(
                    self, f"{name}_l{i}", mx.random.uniform(-scale, scale, (4 * hidden, hidden))
                )
            for name in ("bias_ih", "bias_hh"):
                setattr(self, f"{name}_l{i}", mx.random.uniform(-scale, scale, (4 * hidden,)))
        self.num_layers = layers

    def __call__(self, x: mx.array) -> mx.array:
        y = x
        for i in range(self.num_layers):
            bias = self[f"bias_ih_l{i}"] + self[f"bias_hh_l{i}"]
            gates_x = fnn.linear(y, self[f"weight_ih_l{i}"], bias)
            y = _recur(gates_x, self[f"weight_hh_l{i}"])
        return y + x


def _recur(gates_x: mx.array, w_hh: mx.array) -> mx.array:
    """The LSTM recurrence over ``[batch, frames, 4 * hidden]`` input gates. One step's
    product is a few rows by ``[hidden, 4 * hidden]``: :func:`mlx_audio_io.nn.matmul`'s
    memory-bound kernel, evaluated step by step so the graph stays small."""
    b, t, four = gates_x.shape
    hidden = four // 4
    w = mx.contiguous(w_hh.T)
    h = mx.zeros((b, hidden), mx.float32)
    c = mx.zeros_like(h)
    out = []
    for step in range(t):
        h, c = _cell(gates_x[:, step] + fnn.matmul(h, w), c)
        mx.eval(h, c)
        out.append(h)
    return mx.stack(out, axis=1)


@mx.compile
def _cell(g: mx.array, c: mx.array) -> tuple[mx.array, mx.array]:
    """One LSTM step's gates (i, f, g, o) -> the new hidden and cell states."""
    hidden = c.shape[-1]
    sig = mx.sigmoid(g[:, : 2 * hidden])
    c = sig[:, hidden:] * c + sig[:, :hidden] * mx.tanh(g[:, 2 * hidden : 3 * hidden])
    return mx.sigmoid(g[:, 3 * hidden :]) * mx.tanh(c), c


class LSTMBlock(nn.Module):
    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.lstm = LSTM(hidden, layers)

    def __call__(self, x: mx.array) -> mx.array:
        return self.lstm(x)


class WatermarkEncoderBlock(nn.Module):
    """``pre``: Snake, weight-normed conv to one channel, tanh, causal conv to 32 channels;
    ``post``: LSTMs, ELU, causal conv to the 128-d latent."""

    def __init__(self, dim: int, latent: int = 128, channels: int = 32, hidden: int = 512):
        super().__init__()
        self.pre = nn.Sequential(
            Snake1d(dim), WNConv1d(dim, 1, 7, padding=3), nn.Tanh(), CausalConv1d(1, channels, 7)
        )
        self.post = nn.Sequential(LSTMBlock(hidden, 2), Elu(), CausalConv1d(hidden, latent, 7))


class WatermarkDecoderBlock(nn.Module):
    def __init__(self, latent: int = 128, channels: int = 32, hidden: int = 512):
        super().__init__()
        self.pre = nn.Sequential(CausalConv1d(latent, hidden, 7), LSTMBlock(hidden, 2))
        self.post = nn.Sequential(Elu(), CausalConv1d(channels, 1, 7))


class MsgProcessor(nn.Module):
    """Adds ``sum_k embedding[2k + bit_k]`` to every frame."""

    def __init__(self, bits: int, hidden: int):
        super().__init__()
        self.msg_processor = nn.Embedding(2 * bits, hidden)

    def __call__(self, h: mx.array, message: mx.array) -> mx.array:
        index = 2 * mx.arange(message.shape[-1]) + message.astype(mx.int32)
        return h + self.msg_processor(index).sum(axis=1)[:, None, :]


class Watermarker(nn.Module):
    """The watermark's own layers; ``channels`` and ``hidden`` are the widths of the
    decoder blocks' watermark branches at their ends (32 and 512 in the official codec,
    the only sizes the reference builds)."""

    def __init__(self, dim: int, channels: int, hidden: int):
        super().__init__()
        self.encoder_block = WatermarkEncoderBlock(dim, channels=channels, hidden=hidden)
        self.msg_processor = MsgProcessor(WM_BITS, 128)
        self.decoder_block = WatermarkDecoderBlock(channels=channels, hidden=hidden)


class Encoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        d = cfg.encoder_dim
        layers = [WNConv1d(1, d, 7, padding=3)]
        for stride in cfg.encoder_rates:
            d *= 2
            layers.append(EncoderBlock(d, stride=stride))
        layers += [Snake1d(d), WNConv1d(d, cfg.latent_dim, 3, padding=1)]
        self.block = nn.Sequential(*layers)

    def __call__(self, x: mx.array) -> mx.array:
        return self.block(x)


class Decoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        c = cfg.decoder_dim
        layers = [WNConv1d(cfg.latent_dim, c, 7, padding=3)]
        for i, (stride, wm) in enumerate(zip(cfg.decoder_rates, _WM_RATES, strict=True)):
            layers.append(DecoderBlock(c // 2**i, c // 2 ** (i + 1), stride, wm))
        self.model = nn.Sequential(*layers)
        final = c // 2 ** len(cfg.decoder_rates)
        self.wm_model = Watermarker(final, channels=final // 3, hidden=c // 3)
        self.alpha = 32 / 128

    def __call__(self, x: mx.array, message: mx.array) -> mx.array:
        return self.watermark(self.audio(x), message)

    def audio(self, x: mx.array) -> mx.array:
        """The main path: ``[B, frames, latent]`` -> ``tanh(conv(snake(...)))`` ``[B, T, 1]``,
        the audio before the watermark (every step local in time)."""
        for layer in self.model.layers:
            x = layer(x)
        snake, conv, _, _ = self.wm_model.encoder_block.pre.layers
        return mx.tanh(conv(snake(x)))

    def watermark(self, y: mx.array, message: mx.array) -> mx.array:
        """``y + 0.25 * h``: the watermark branch (causal throughout) over the whole signal."""
        enc = self.wm_model.encoder_block
        blocks = self.model.layers[1:]
        h = enc.pre.layers[3](y)
        for block in reversed(blocks):
            h = block.wm_down(h)
        h = enc.post(h)
        h = self.wm_model.msg_processor(h, message)
        h = self.wm_model.decoder_block.pre(h)
        for block in blocks:
            h = block.wm_up(h)
        h = self.wm_model.decoder_block.post(h)
        return y + self.alpha * h


class Bottleneck(nn.Module):
    def __init__(self, latent: int, codebook_dim: int):
        super().__init__()
        self.in_proj = WNConv1d(latent, 2 * codebook_dim, 1)
        self.out_proj = WNConv1d(codebook_dim, latent, 1)


class DACVAE(nn.Module):
    """The codec: :meth:`encode` ``[batch, samples, 1]`` audio to ``[batch, frames, 128]``
    features (the VAE's mean; frames = ceil(samples / 1920)), :meth:`decode` them back to
    ``[batch, frames * 1920, 1]``, :meth:`decode_streaming` chunk by chunk."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = Bottleneck(cfg.latent_dim, cfg.codebook_dim)
        self.decoder = Decoder(cfg)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return math.prod(self.config.encoder_rates)

    def encode(self, audio: mx.array) -> mx.array:
        """``[batch, samples, 1]`` float32 at :attr:`sample_rate` -> ``[batch, frames, 128]``;
        reflect-padded at the end to a whole number of hops, as the reference does."""
        if audio.ndim != 3 or audio.shape[-1] != 1:
            raise ValueError(f"audio must be [batch, samples, 1], got shape {audio.shape}")
        rest = audio.shape[1] % self.hop_length
        if rest:
            pad = self.hop_length - rest
            if pad >= audio.shape[1]:
                raise ValueError(
                    f"audio must have more than {pad} samples to be reflect-padded to a whole "
                    f"number of {self.hop_length}-sample hops, got {audio.shape[1]}"
                )
            tail = audio[:, -pad - 1 : -1][:, ::-1]
            audio = mx.concatenate([audio, tail], axis=1)
        z = self.encoder(audio)
        proj = self.quantizer.in_proj
        d = self.config.codebook_dim
        w = proj._weight()[:d]  # the mean's half of the projection only
        return fnn.conv_axis(z, w, 1, bias=proj.bias[:d])

    def decode(self, features: mx.array, message: mx.array | None = None,
               chunk_size: int | None = None, context: int = 8) -> mx.array:  # fmt: skip
        """``[batch, frames, 128]`` -> ``[batch, frames * hop_length, 1]`` audio.

        Args:
            features: The latent features.
            message: ``[batch, 16]`` bits (0/1) of the watermark; None draws them with
                ``mx.random`` (the reference draws a new message on every call).
            chunk_size: None decodes all frames at once; else the main path runs this many
                frames at a time with ``context`` frames of context each side (its convolutions
                reach about 6.6 frames each way, so 8 gives the same result to float
                rounding), which bounds memory; the watermark, 32 channels at most at the
                full rate, then runs over the whole signal.
        """
        self._check_features(features)
        message = self._message(features.shape[0], message)
        if chunk_size is None or features.shape[1] <= chunk_size:
            return self.decoder(self.quantizer.out_proj(features), message)
        hop, pieces = self.hop_length, []
        for lo, start, end, hi in decode_plan(features.shape[1], chunk_size, context):
            y = self.decoder.audio(self.quantizer.out_proj(features[:, lo:hi]))
            pieces.append(y[:, (start - lo) * hop : (end - lo) * hop])
            mx.eval(pieces[-1])
        return self.decoder.watermark(mx.concatenate(pieces, axis=1), message)

    def _check_features(self, features: mx.array) -> None:
        if features.ndim != 3 or features.shape[-1] != self.config.codebook_dim:
            raise ValueError(
                f"features must be [batch, frames, {self.config.codebook_dim}], got "
                f"shape {features.shape}"
            )

    def _message(self, batch: int, message: mx.array | None) -> mx.array:
        if message is None:
            return mx.random.randint(0, 2, (batch, WM_BITS))
        if tuple(message.shape) != (batch, WM_BITS):
            raise ValueError(
                f"message must be [{batch}, {WM_BITS}] bits, got shape {message.shape}"
            )
        return message

    def decode_streaming(
        self,
        features: mx.array,
        chunk_size: int = 50,
        overlap: int = 4,
        message: mx.array | None = None,
    ) -> Iterator[tuple[mx.array, bool]]:
        """Decodes ``chunk_size`` frames at a time, each with ``overlap`` frames of context
        on both sides (decoded, then cut off), yielding each chunk's audio as soon as it is
        ready.

        Yields:
            ``(audio [batch, samples, 1], is_last)``; the chunks concatenate to
            ``frames * hop_length`` samples, close to :meth:`decode`'s (the convolutions see
            ``overlap`` frames of context, the watermark branch's LSTMs start afresh each
            chunk; ``overlap=8`` leaves only the latter).
        """
        self._check_features(features)
        plan = decode_plan(features.shape[1], chunk_size, overlap)
        message = self._message(features.shape[0], message)
        hop = self.hop_length
        for n, (lo, start, end, hi) in enumerate(plan):
            audio = self.decode(features[:, lo:hi], message)
            audio = audio[:, (start - lo) * hop : (end - lo) * hop]
            mx.eval(audio)
            yield audio, n == len(plan) - 1


def decode_plan(frames: int, chunk_size: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(context_start, start, end, context_end)`` frame ranges covering ``frames``."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"overlap must be an int >= 0, got {overlap!r}")
    plan = []
    for start in range(0, frames, chunk_size):
        end = min(start + chunk_size, frames)
        plan.append((max(start - overlap, 0), start, end, min(end + overlap, frames)))
    return plan
