"""Kokoro's decoder: AdaIN residual blocks, the harmonic-plus-noise source and the iSTFTNet
generator (``kokoro.istftnet``), channels-last (``[batch, frames, channels]``).

Weight-normalised convolutions are folded into plain weights by the converter; every
convolution takes ``mlx_audio_io.nn``'s fast CPU paths.
"""

from __future__ import annotations

import math

from mlx_audio_io import dsp
from mlx_audio_io import nn as fnn

import mlx.core as mx
import mlx.nn as nn
import numpy as np

RSQRT2 = float(np.float32(1.0) / np.sqrt(np.float32(2.0)))  # torch.rsqrt(torch.tensor(2))


class DepthwiseUpsample(nn.Module):
    """The depthwise ``ConvTranspose1d(C, C, 3, stride=2, padding=1, output_padding=1,
    groups=C)`` of an upsampling block: output frame ``2t`` is ``x[t] * w1`` and ``2t + 1``
    is ``x[t] * w2 + x[t + 1] * w0``, plus the bias (twice the length)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = mx.random.uniform(-0.5, 0.5, (channels, 3))
        self.bias = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        w0, w1, w2 = self.weight[:, 0], self.weight[:, 1], self.weight[:, 2]
        nxt = mx.pad(x[:, 1:], [(0, 0), (0, 1), (0, 0)])
        even = x * w1 + self.bias
        odd = x * w2 + nxt * w0 + self.bias
        b, t, c = x.shape
        return mx.stack([even, odd], axis=2).reshape(b, 2 * t, c)


class AdaIN1d(nn.Module):
    """Instance norm whose affine comes from the style: ``(1 + gamma) * norm(x) + beta``.
    ``norm`` keeps torch's ``InstanceNorm1d(affine=True)`` parameters (1 and 0 in the
    released weights, which do not carry them)."""

    def __init__(self, style_dim: int, channels: int):
        super().__init__()
        self.fc = nn.Linear(style_dim, 2 * channels)
        self.norm = {"weight": mx.ones((channels,)), "bias": mx.zeros((channels,))}

    def __call__(self, x: mx.array, s: mx.array, activation: str | None = None,
                 param=None, input_bias=None) -> mx.array:  # fmt: skip
        """``activation`` (``"snake"`` with ``param`` alpha, ``"leaky_relu"`` with the slope)
        of the normalised ``x`` (plus ``input_bias`` ``[C]``: the bias of the convolution
        before), fused into the same pass on the CPU."""
        c = x.shape[-1]
        h = self.fc(s)  # [batch, 2C]
        gamma, beta = 1.0 + h[:, :c], h[:, c:]
        w, b = self.norm["weight"], self.norm["bias"]
        if x.shape[0] == 1:  # the style's affine folds into the norm's own: one fused pass
            return fnn.group_norm(x, c, w * gamma[0], b * gamma[0] + beta[0], eps=1e-5,
                                  activation=activation, input_bias=input_bias,
                                  activation_param=param)  # fmt: skip
        y = fnn.group_norm(x, c, w, b, eps=1e-5, input_bias=input_bias)
        y = y * gamma[:, None] + beta[:, None]
        return (
            y if activation is None else fnn.bias_act(y, None, activation, activation_param=param)
        )


class AdainResBlk1d(nn.Module):
    """StyleTTS2's ``AdainResBlk1d`` (LeakyReLU 0.2, optional 2x upsampling, a 1x1
    shortcut when the width changes); output scaled by ``1/sqrt(2)``."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.upsample = upsample
        self.learned_sc = dim_in != dim_out
        self.conv1 = fnn.Conv1d(dim_in, dim_out, 3, padding=1)
        self.conv2 = fnn.Conv1d(dim_out, dim_out, 3, padding=1)
        self.norm1 = AdaIN1d(style_dim, dim_in)
        self.norm2 = AdaIN1d(style_dim, dim_out)
        if self.learned_sc:
            self.conv1x1 = fnn.Conv1d(dim_in, dim_out, 1, bias=False)
        if upsample:
            self.pool = DepthwiseUpsample(dim_in)

    def __call__(self, x: mx.array, s: mx.array) -> mx.array:
        h = self.norm1(x, s, "leaky_relu", 0.2)
        if self.upsample:
            h = self.pool(h)
        h = _unbiased(self.conv1, h)  # its bias goes into norm2's passes
        h = self.norm2(h, s, "leaky_relu", 0.2, input_bias=self.conv1.bias)
        h = self.conv2(h)
        sc = mx.repeat(x, 2, axis=1) if self.upsample else x
        if self.learned_sc:
            sc = self.conv1x1(sc)
        return (h + sc) * RSQRT2


class AdaINResBlock1(nn.Module):
    """The generator's HiFi-GAN block with AdaIN and Snake: three (dilated conv, conv) pairs,
    each added to the running input."""

    def __init__(self, channels: int, kernel: int, dilations, style_dim: int):
        super().__init__()
        c, k = channels, kernel
        self.convs1 = [fnn.Conv1d(c, c, k, padding=d * (k - 1) // 2, dilation=d) for d in dilations]
        self.convs2 = [fnn.Conv1d(c, c, k, padding=(k - 1) // 2) for _ in dilations]
        self.adain1 = [AdaIN1d(style_dim, channels) for _ in dilations]
        self.adain2 = [AdaIN1d(style_dim, channels) for _ in dilations]
        self.alpha1 = [mx.ones((channels,)) for _ in dilations]
        self.alpha2 = [mx.ones((channels,)) for _ in dilations]

    def __call__(self, x: mx.array, s: mx.array) -> mx.array:
        for c1, c2, n1, n2, a1, a2 in zip(
            self.convs1, self.convs2, self.adain1, self.adain2, self.alpha1, self.alpha2,
            strict=True,
        ):  # fmt: skip
            # each convolution's bias goes into the pass after it (the next norm's input, the
            # residual add), so the convolutions write their matmul's output directly
            xt = _unbiased(c1, n1(x, s, "snake", a1))
            xt = _unbiased(c2, n2(xt, s, "snake", a2, input_bias=c1.bias))
            x = fnn.bias_act(xt, c2.bias, residual=x)
        return x


def _unbiased(conv: fnn.Conv1d, x: mx.array) -> mx.array:
    """``conv(x)`` without its bias."""
    return fnn.conv_axis(x, conv.weight, 1, conv.stride, conv.padding, conv.dilation)


def _interp_index(n_in: int, n_out: int, scale: float):
    """The source rows and blend of torch's CPU ``F.interpolate(mode="linear",
    scale_factor=scale)`` (align_corners False) from ``n_in`` to ``n_out`` positions: ``(i0,
    i1, w0, w1)``, ``w0`` float64 for :func:`_interp`'s fused multiply-add."""
    f32 = np.float32
    step = np.float64(f32(1.0 / scale))
    dst = np.arange(n_out, dtype=f32) + f32(0.5)
    src = np.maximum((step * dst.astype(np.float64) - 0.5).astype(f32), f32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = np.clip(src - i0.astype(f32), f32(0.0), f32(1.0))[:, None]
    return i0, i1, (f32(1.0) - w1).astype(np.float64), w1


def _interp(x: np.ndarray, n_out: int, scale: float) -> np.ndarray:
    """torch's CPU ``F.interpolate(mode="linear", scale_factor=scale)`` (align_corners False)
    of float32 ``[batch, length, channels]`` along ``length``, rounded as torch rounds: the
    source position and the blend are fused multiply-adds there (emulated in float64 here),
    which matters because the sine source interpolates phases of 10^4 radians and more."""
    return _interp_rows(lambda i: x[:, i], x.shape[1], n_out, scale)


def _interp_rows(rows, n_in: int, n_out: int, scale: float) -> np.ndarray:
    """:func:`_interp` of an input of ``n_in`` rows given by ``rows(index array)`` (``x[:,
    index]``): only the rows read need computing (2 of every 300 when downsampling)."""
    i0, i1, w0, w1 = _interp_index(n_in, n_out, scale)
    far = (rows(i1) * w1).astype(np.float32)
    return (rows(i0).astype(np.float64) * w0 + far).astype(np.float32)


def _standard_normal(shape: tuple[int, ...]) -> mx.array:
    """Standard normal float32 noise from NumPy's generator, seeded from ``mx.random`` (so
    ``mx.random.seed`` still fixes it): MLX's CPU sampler took 38 ms for the 1.4 million
    values of a 7 s utterance here, NumPy's 6."""
    seed = np.asarray(mx.random.randint(0, 2**31 - 1, (4,))).tolist()
    return mx.array(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


class SourceModuleHnNSF(nn.Module):
    """The harmonic source: ``tanh(Linear(sines of F0 and 8 harmonics))``, unvoiced frames
    (F0 <= 10 Hz) noise only (``SineGen`` + ``SourceModuleHnNSF``)."""

    def __init__(self, sample_rate: int, upsample_scale: int, harmonic_num: int = 8):
        super().__init__()
        self.sample_rate, self.upsample_scale = sample_rate, upsample_scale
        self.harmonics = harmonic_num + 1
        self.sine_amp, self.noise_std, self.voiced_threshold = 0.1, 0.003, 10.0
        self.l_linear = nn.Linear(self.harmonics, 1)

    def __call__(self, f0: mx.array, phase0=None, noise=None) -> mx.array:
        """``f0``: ``[batch, samples, 1]`` at the output rate. ``phase0`` ``[batch,
        harmonics]`` (initial phases in turns; torch draws ``rand`` with the fundamental's 0)
        and ``noise`` ``[batch, samples, harmonics]`` (standard normal) default to draws from
        ``mx.random`` (the noise through NumPy's generator, seeded from ``mx.random``).
        Returns ``[batch, samples]``."""
        b, n, _ = f0.shape
        h = self.harmonics
        if phase0 is None:
            phase0 = mx.random.uniform(shape=(b, h)) * (mx.arange(h) > 0)
        if noise is None:
            noise = _standard_normal((b, n, h))
        # the phase path in NumPy, rounded as torch's CPU kernels round it: the phases reach
        # 10^4-10^6 radians before their sine, so a last-bit difference is a 1e-4 difference
        f32, scale = np.float32, self.upsample_scale
        f0_np, harmonics = np.asarray(f0, dtype=f32), np.arange(1, h + 1, dtype=f32)
        first = np.asarray(phase0, dtype=f32)[:, None]

        def rad(rows: np.ndarray) -> np.ndarray:  # only the rows the interpolation reads
            r = np.remainder(f0_np[:, rows] * harmonics / f32(self.sample_rate), f32(1.0))
            r[:, rows == 0] += first
            return r

        down = _interp_rows(rad, n, n // scale, 1.0 / scale)
        turns = np.cumsum(down, axis=1, dtype=np.float64).astype(f32)  # torch: double sums
        phase = turns * f32(2) * f32(math.pi) * f32(scale)
        # NumPy's float32 sine: as accurate as MLX's here and 2-15x faster
        sines = mx.array(np.sin(_interp(phase, n, float(scale)))) * self.sine_amp
        uv = (f0 > self.voiced_threshold).astype(mx.float32)
        noise_amp = uv * self.noise_std + (1 - uv) * (self.sine_amp / 3)
        sines = sines * uv + noise_amp * noise
        return mx.tanh(self.l_linear(sines))[..., 0]


class Generator(nn.Module):
    """iSTFTNet: upsampling convolutions with a harmonic source injected at every scale,
    a magnitude/phase head and an inverse STFT."""

    def __init__(self, style_dim: int, cfg: dict, sample_rate: int = 24000):
        super().__init__()
        rates, kernels = cfg["upsample_rates"], cfg["upsample_kernel_sizes"]
        ch0, n_fft = cfg["upsample_initial_channel"], cfg["gen_istft_n_fft"]
        self.n_fft, self.hop = n_fft, cfg["gen_istft_hop_size"]
        self.num_kernels = len(cfg["resblock_kernel_sizes"])
        self.upsample_scale = math.prod(rates) * self.hop
        self.m_source = SourceModuleHnNSF(sample_rate, self.upsample_scale)
        self.ups, self.resblocks, self.noise_convs, self.noise_res = [], [], [], []
        self.up_specs = []
        for i, (u, k) in enumerate(zip(rates, kernels, strict=True)):
            c = ch0 // 2 ** (i + 1)
            self.ups.append(fnn.ConvTranspose1d(ch0 // 2**i, c, k, u, padding=(k - u) // 2))
            for rk, rd in zip(cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"],
                              strict=True):  # fmt: skip
                self.resblocks.append(AdaINResBlock1(c, rk, rd, style_dim))
            if i + 1 < len(rates):
                sf = math.prod(rates[i + 1 :])
                self.noise_convs.append(fnn.Conv1d(n_fft + 2, c, 2 * sf, sf, (sf + 1) // 2))
                self.noise_res.append(AdaINResBlock1(c, 7, [1, 3, 5], style_dim))
            else:
                self.noise_convs.append(fnn.Conv1d(n_fft + 2, c, 1))
                self.noise_res.append(AdaINResBlock1(c, 11, [1, 3, 5], style_dim))
        self.conv_post = fnn.Conv1d(c, n_fft + 2, 7, padding=3)

    def source(self, f0: mx.array, phase0=None, noise=None) -> mx.array:
        """The harmonic source's STFT, ``[batch, frames, n_fft + 2]`` (magnitudes, then
        phases), from the F0 curve ``[batch, f0_frames]``."""
        f0 = mx.repeat(f0[..., None], self.upsample_scale, axis=1)  # nearest upsampling
        har = self.m_source(f0, phase0, noise)
        spec = np.asarray(dsp.stft(har, self.n_fft, self.hop, frames_first=True))
        # magnitude and angle in NumPy: MLX's complex abs and arctan2 took 10 ms here, these 2
        return mx.array(np.concatenate([np.abs(spec), np.arctan2(spec.imag, spec.real)], -1))

    def __call__(self, x, s, f0=None, har=None, phase0=None, noise=None,
                 capture: dict | None = None) -> mx.array:  # fmt: skip
        """Audio ``[batch, samples]`` from features ``x`` ``[batch, frames, C]`` and the F0
        curve (or its precomputed source spectrum ``har``); ``capture`` gets ``post``, the
        spectrum head's output, when given."""
        if har is None:
            har = self.source(f0, phase0, noise)
        n = len(self.ups)
        for i in range(n):
            x = nn.leaky_relu(x, 0.1)
            xs = self.noise_res[i](self.noise_convs[i](har), s)
            x = self.ups[i](x)
            if i == n - 1:  # ReflectionPad1d((1, 0))
                x = mx.concatenate([x[:, 1:2], x], axis=1)
            x = x + xs
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x, s)
            for block in blocks[1:]:
                xs = xs + block(x, s)
            x = xs / self.num_kernels
        x = self.conv_post(nn.leaky_relu(x, 0.01))
        if capture is not None:
            capture["post"] = x
        return self.spectrum_to_audio(x)

    def spectrum_to_audio(self, x: mx.array) -> mx.array:
        """``conv_post``'s output ``[batch, frames, n_fft + 2]`` (log-magnitudes, then
        phases before their sine) to audio by the inverse STFT."""
        bins = self.n_fft // 2 + 1
        mag, phase = mx.exp(x[..., :bins]), mx.sin(x[..., bins:])
        spec = mx.stack([mag * mx.cos(phase), mag * mx.sin(phase)], axis=-1)
        spec = spec.view(mx.complex64)[..., 0]
        return dsp.istft(spec, self.n_fft, self.hop, frames_first=True)


class Decoder(nn.Module):
    """Kokoro's ``Decoder``: ASR features, F0 and energy to audio."""

    def __init__(self, dim_in: int, style_dim: int, cfg: dict, sample_rate: int = 24000,
                 width: int = 1024, residual: int = 64):  # fmt: skip
        super().__init__()
        wide = width + 2 + residual
        self.encode = AdainResBlk1d(dim_in + 2, width, style_dim)
        self.decode = [AdainResBlk1d(wide, width, style_dim) for _ in range(3)]
        self.decode.append(AdainResBlk1d(wide, cfg["upsample_initial_channel"], style_dim,
                                         upsample=True))  # fmt: skip
        self.F0_conv = fnn.Conv1d(1, 1, 3, stride=2, padding=1)
        self.N_conv = fnn.Conv1d(1, 1, 3, stride=2, padding=1)
        self.asr_res = [fnn.Conv1d(dim_in, residual, 1)]
        self.generator = Generator(style_dim, cfg, sample_rate)

    def features(self, asr, f0_curve, n_curve, s) -> mx.array:
        """Everything before the generator: ``[batch, 2 * frames, 512]``."""
        f0 = self.F0_conv(f0_curve[..., None])
        n = self.N_conv(n_curve[..., None])
        x = self.encode(mx.concatenate([asr, f0, n], axis=-1), s)
        asr_res = self.asr_res[0](asr)
        residual = True
        for block in self.decode:
            if residual:
                x = mx.concatenate([x, asr_res, f0, n], axis=-1)
            x = block(x, s)
            residual = residual and not block.upsample  # none after the upsampling block
        return x

    def __call__(self, asr, f0_curve, n_curve, s, phase0=None, noise=None) -> mx.array:
        """Audio ``[batch, samples]`` from ``asr`` ``[batch, frames, dim_in]``, F0 and
        energy curves ``[batch, 2 * frames]`` and the acoustic style ``[batch, style_dim]``."""
        x = self.features(asr, f0_curve, n_curve, s)
        return self.generator(x, s, f0_curve, phase0=phase0, noise=noise)
