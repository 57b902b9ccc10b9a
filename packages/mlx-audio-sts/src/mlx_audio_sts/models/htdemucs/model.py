"""HTDemucs: Hybrid Transformer Demucs (Rouard, Massa and Défossez, "Hybrid Transformers for
Music Source Separation", ICASSP 2023), the Demucs v4 model.

Two U-Nets run side by side: one over the complex spectrogram (real and imaginary parts as
channels, convolutions over frequency), one over the waveform; their innermost layers meet in
a cross-domain transformer, and the output is the time branch plus the inverse STFT of the
frequency branch. This is the inference half of ``demucs.htdemucs.HTDemucs``, channels-last,
with the same parameter names; chunking, shifts and bags live in ``apply.py``.
"""

from __future__ import annotations

import math

import mlx_audio_io.dsp as dsp
import mlx_audio_io.nn as fnn

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .config import ModelArgs
from .layers import HDecLayer, HEncLayer, ScaledEmbedding
from .transformer import CrossTransformerEncoder

# 25x the largest release: a config cannot make the loader allocate tens of GB
MAX_PARAMETERS = 1_000_000_000


def _reflect_pad_time(x: mx.array, left: int, right: int) -> mx.array:
    """demucs' ``pad1d(mode="reflect")`` on ``[B, C, L]``: zeros first when the signal is too
    short to reflect."""
    length = x.shape[-1]
    max_pad = max(left, right)
    if length <= max_pad:
        extra = max_pad - length + 1
        extra_right = min(right, extra)
        extra_left = extra - extra_right
        x = mx.pad(x, [(0, 0), (0, 0), (extra_left, extra_right)])
        left, right = left - extra_left, right - extra_right
    parts = []
    if left:
        parts.append(x[..., 1 : left + 1][..., ::-1])
    parts.append(x)
    if right:
        parts.append(x[..., -right - 1 : -1][..., ::-1])
    return mx.concatenate(parts, axis=-1)


class HTDemucs(nn.Module):
    """One HTDemucs model. Call it on ``[batch, channels, samples]`` float32 audio (at most
    ``segment`` seconds when ``use_train_segment``, as in demucs) to get
    ``[batch, sources, channels, samples]``; use :func:`mlx_audio_sts.apply_model` or
    :func:`mlx_audio_sts.separate` for whole tracks."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        a = args
        self.sources, self.samplerate, self.segment = a.sources, a.samplerate, a.segment
        self.audio_channels = a.audio_channels
        self.depth, self.nfft, self.hop_length = a.depth, a.nfft, a.nfft // 4
        self.bottom_channels = a.bottom_channels
        self.encoder, self.decoder, self.tencoder, self.tdecoder = [], [], [], []
        self.freq_emb = None
        chin = a.audio_channels
        chin_z = chin * 2 if a.cac else chin
        chout = a.channels_time or a.channels
        chout_z = a.channels
        freqs = a.nfft // 2
        dconv_kw = {"depth": a.dconv_depth, "compress": a.dconv_comp}
        for index in range(a.depth):
            norm = index >= a.norm_starts
            freq = freqs > 1
            stri, ker = a.stride, a.kernel_size
            if not freq:
                ker, stri = a.time_stride * 2, a.time_stride
            pad, last_freq = True, False
            if freq and freqs <= a.kernel_size:
                ker, pad, last_freq = freqs, False, True
            kw = dict(kernel_size=ker, stride=stri, freq=freq, pad=pad, norm=norm,
                      rewrite=a.rewrite, norm_groups=a.norm_groups, dconv_kw=dconv_kw)  # fmt: skip
            kwt = dict(kw, freq=False, kernel_size=a.kernel_size, stride=a.stride, pad=True)
            if last_freq:
                chout_z = max(chout, chout_z)
                chout = chout_z
            self.encoder.append(
                HEncLayer(chin_z, chout_z, dconv=a.dconv_mode & 1, context=a.context_enc, **kw)
            )
            if freq:
                self.tencoder.append(
                    HEncLayer(
                        chin,
                        chout,
                        dconv=a.dconv_mode & 1,
                        context=a.context_enc,
                        empty=last_freq,
                        **kwt,
                    )  # fmt: skip
                )
            if index == 0:
                chin = a.audio_channels * len(a.sources)
                chin_z = chin * 2 if a.cac else chin
            self.decoder.insert(
                0,
                HDecLayer(
                    chout_z,
                    chin_z,
                    dconv=a.dconv_mode & 2,
                    last=index == 0,
                    context=a.context,
                    **kw,
                ),  # fmt: skip
            )
            if freq:
                self.tdecoder.insert(
                    0,
                    HDecLayer(
                        chout,
                        chin,
                        dconv=a.dconv_mode & 2,
                        empty=last_freq,
                        last=index == 0,
                        context=a.context,
                        **kwt,
                    ),  # fmt: skip
                )
            chin, chin_z = chout, chout_z
            chout, chout_z = int(a.growth * chout), int(a.growth * chout_z)
            if freq:
                freqs = 1 if freqs <= a.kernel_size else freqs // a.stride
            if index == 0 and a.freq_emb:
                self.freq_emb = ScaledEmbedding(freqs, chin_z, scale=a.emb_scale)
                self.freq_emb_scale = a.freq_emb
        dim = a.channels * a.growth ** (a.depth - 1)
        if a.bottom_channels:
            lin = nn.Linear  # the 1x1 convs around the transformer
            self.channel_upsampler = lin(dim, a.bottom_channels)
            self.channel_downsampler = lin(a.bottom_channels, dim)
            self.channel_upsampler_t = lin(dim, a.bottom_channels)
            self.channel_downsampler_t = lin(a.bottom_channels, dim)
            dim = a.bottom_channels
        self.crosstransformer = None
        if a.t_layers > 0 and int(dim) % a.t_heads:
            raise ValueError(
                f"t_heads must divide the transformer's width ({int(dim)}), got {a.t_heads}"
            )
        if a.t_layers > 0:
            self.crosstransformer = CrossTransformerEncoder(
                dim=int(dim), emb=a.t_emb, hidden_scale=a.t_hidden_scale, num_heads=a.t_heads,
                num_layers=a.t_layers, cross_first=a.t_cross_first, norm_in=a.t_norm_in,
                norm_first=a.t_norm_first, norm_out=a.t_norm_out, max_period=a.t_max_period,
                layer_scale=a.t_layer_scale, gelu=a.t_gelu,
                weight_pos_embed=a.t_weight_pos_embed,
                cape_mean_normalize=a.t_cape_mean_normalize,
            )  # fmt: skip
        count = sum(v.size for _, v in tree_flatten(self.parameters()))  # lazy: nothing allocated
        if count > MAX_PARAMETERS:
            raise ValueError(
                f"the config asks for {count:,} parameters, more than the {MAX_PARAMETERS:,} "
                "allowed (the released models have 27 to 42 million)"
            )

    @classmethod
    def from_pretrained(cls, name_or_path, revision: str | None = None):
        """Loads ``"htdemucs"``, ``"htdemucs_6s"`` (one model) or ``"htdemucs_ft"`` (a
        ``BagOfModels`` of four, which every function taking a model accepts), a local folder
        or file (ours, or demucs' ``.th``/``.yaml``/Hub form, converted on load), or a Hub repo
        id. See ``mlx_audio_sts.models.htdemucs.pretrained.from_pretrained``."""
        from .pretrained import from_pretrained

        return from_pretrained(name_or_path, revision)

    @property
    def training_length(self) -> int:
        """Samples per forward pass: ``int(segment * samplerate)``."""
        return int(self.segment * self.samplerate)

    def _spec(self, x):
        """CaC spectrogram ``[B, T, F, 2C]`` of ``[B, C, L]`` (demucs' ``_spec`` +
        ``_magnitude``), channel ``2c`` real and ``2c + 1`` imaginary."""
        hl, length = self.hop_length, x.shape[-1]
        le = math.ceil(length / hl)
        pad = hl // 2 * 3
        x = _reflect_pad_time(x, pad, pad + le * hl - length)
        z = dsp.stft(x, self.nfft, hl, normalized=True, frames_first=True)  # [B, C, T, F + 1]
        z = mx.contiguous(z[..., 2 : 2 + le, :-1].transpose(0, 2, 3, 1))  # [B, T, F, C]
        return z.view(mx.float32)  # (re, im) of each channel side by side: [B, T, F, 2C]

    def _ispec(self, m, length):
        """Waveforms ``[B, S, C, length]`` from CaC output ``[B, T, F, S*2C]``."""
        b, t, f, _ = m.shape
        z = mx.contiguous(m).view(mx.complex64)  # (re, im) pairs: [B, T, F, S*C]
        z = mx.pad(z.transpose(0, 3, 1, 2), [(0, 0), (0, 0), (2, 2), (0, 1)])  # [B, S*C, T+4, F+1]
        hl = self.hop_length
        pad = hl // 2 * 3
        le = hl * math.ceil(length / hl) + 2 * pad
        x = dsp.istft(z, self.nfft, hl, normalized=True, length=le, frames_first=True)
        return x.reshape(b, len(self.sources), -1, le)[..., pad : pad + length]

    def __call__(self, mix: mx.array, rng=None, capture: dict | None = None) -> mx.array:
        """Separates ``mix`` ``[batch, channels, samples]``.

        Args:
            mix: float32 audio, at most ``segment`` seconds when ``use_train_segment``.
            rng: A ``random.Random`` for the transformer's random position shift
                (``t_sin_random_shift``); demucs draws it from Python's ``random`` on every
                call, even when the shift can only be 0, so apply_model passes its generator
                here to keep the same sequence of shifts as demucs for a given seed.
            capture: If given, filled with intermediate arrays (channels-last) for parity
                checks: ``spec`` (the CaC spectrogram, before normalisation),
                ``transformer`` (its two outputs), ``freq`` and ``time`` (the two branches'
                outputs, before de-normalisation).

        Returns:
            ``[batch, sources, channels, samples]``.
        """
        length = mix.shape[-1]
        length_pre_pad = None
        if self.args.use_train_segment:
            training_length = self.training_length
            if length > training_length:
                raise ValueError(
                    f"HTDemucs takes at most {training_length} samples ({float(self.segment)} s)"
                    f" per call, got {length}; use apply_model() or separate() for longer audio"
                )
            if length < training_length:
                length_pre_pad = length
                mix = mx.pad(mix, [(0, 0), (0, 0), (0, training_length - length)])
            length = training_length
        x = self._spec(mix)  # [B, T, F, 2C]
        b = x.shape[0]
        if capture is not None:
            capture["spec"] = x
        mean, var = fnn.var(x, (1, 2, 3), ddof=1)
        std = mx.sqrt(var)
        x = (x - mean) / (1e-5 + std)
        xt = mix.transpose(0, 2, 1)  # [B, L, C]
        meant, vart = fnn.var(xt, (1, 2), ddof=1)
        stdt = mx.sqrt(vart)
        xt = (xt - meant) / (1e-5 + stdt)

        saved, saved_t, lengths, lengths_t = [], [], [], []
        for idx, encode in enumerate(self.encoder):
            lengths.append(x.shape[1])
            inject = None
            if idx < len(self.tencoder):
                lengths_t.append(xt.shape[1])
                tenc = self.tencoder[idx]
                xt = tenc(xt)
                if not tenc.empty:
                    saved_t.append(xt)
                else:
                    inject = xt
            x = encode(x, inject)
            if idx == 0 and self.freq_emb is not None:
                x = x + self.freq_emb_scale * self.freq_emb.table
            saved.append(x)
        if self.crosstransformer is not None:
            if self.bottom_channels:
                x, xt = self.channel_upsampler(x), self.channel_upsampler_t(xt)
            limit = self.args.t_sin_random_shift
            shift = rng.randrange(limit + 1) if rng is not None else 0
            x, xt = self.crosstransformer(x, xt, shift)
            if capture is not None:
                capture["transformer"] = (x, xt)
            if self.bottom_channels:
                x, xt = self.channel_downsampler(x), self.channel_downsampler_t(xt)

        offset = self.depth - len(self.tdecoder)
        for idx, decode in enumerate(self.decoder):
            x, pre = decode(x, saved.pop(-1), lengths.pop(-1))
            if idx >= offset:
                tdec = self.tdecoder[idx - offset]
                length_t = lengths_t.pop(-1)
                if tdec.empty:
                    xt, _ = tdec(pre[:, :, 0], None, length_t)
                else:
                    xt, _ = tdec(xt, saved_t.pop(-1), length_t)

        if capture is not None:
            capture["freq"], capture["time"] = x, xt
        s = len(self.sources)
        x = x * std + mean
        x = self._ispec(x, length)  # [B, S, C, L]
        xt = xt * stdt + meant  # [B, L, S*C]
        xt = xt.reshape(b, length, s, -1).transpose(0, 2, 3, 1)
        out = xt + x
        if length_pre_pad is not None:
            out = out[..., :length_pre_pad]
        return out

    def sanitize(self, weights: dict) -> dict:
        """Official demucs ``state_dict`` -> this module's layout (idempotent: tensors that
        already have this module's shapes pass through)."""
        from .convert import sanitize

        return sanitize(self, weights)
