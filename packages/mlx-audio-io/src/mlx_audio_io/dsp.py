"""Spectral transforms in MLX with PyTorch's semantics (``torch.stft`` / ``torch.istft``), so
models ported from PyTorch (HTDemucs, Kokoro's iSTFTNet) can use them unchanged.

Signals are ``[..., samples]``; spectrograms are complex ``[..., freq, frames]``.
"""

from __future__ import annotations

import math

import mlx.core as mx


def hann_window(length: int, periodic: bool = True) -> mx.array:
    """Hann window as ``torch.hann_window`` (periodic by default, as STFTs want)."""
    if length == 1:
        return mx.ones((1,))
    n = mx.arange(length, dtype=mx.float32)
    denom = length if periodic else length - 1
    return 0.5 - 0.5 * mx.cos(2 * math.pi * n / denom)


def _window(window, n_fft: int, win_length: int) -> mx.array:
    """The analysis window as n_fft samples: a shorter one is centred with zeros (as torch)."""
    if window is None:
        w = mx.ones((win_length,))
    elif isinstance(window, str):
        if window != "hann":
            raise ValueError(f"window must be 'hann', None or an array, got {window!r}")
        w = hann_window(win_length)
    else:
        w = mx.array(window, dtype=mx.float32)
    if w.shape[0] > n_fft:
        raise ValueError(f"window length {w.shape[0]} exceeds n_fft={n_fft}")
    left = (n_fft - w.shape[0]) // 2
    return mx.pad(w, [(left, n_fft - w.shape[0] - left)]) if w.shape[0] < n_fft else w


def _reflect_pad(x: mx.array, pad: int) -> mx.array:
    """Reflection padding of the last axis (the edge sample is not repeated), as torch's."""
    if pad == 0:
        return x
    if x.shape[-1] <= pad:
        raise ValueError(
            f"reflect padding of {pad} needs more than {pad} samples, got {x.shape[-1]}"
        )
    left = x[..., 1 : pad + 1][..., ::-1]
    right = x[..., -pad - 1 : -1][..., ::-1]
    return mx.concatenate([left, x, right], axis=-1)


def stft(
    x,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    window="hann",
    center: bool = True,
    pad_mode: str = "reflect",
    normalized: bool = False,
    *,
    frames_first: bool = False,
) -> mx.array:
    """Short-time Fourier transform, as ``torch.stft(..., return_complex=True, onesided=True)``.

    Args:
        x: ``[..., samples]`` float audio.
        n_fft: FFT size.
        hop_length: Frame step; default ``n_fft // 4``.
        win_length: Window length; default ``n_fft``.
        window: ``"hann"`` (periodic), None (rectangular) or an array of ``win_length``.
        center: Pad ``n_fft // 2`` on both sides so frame t is centred on sample t * hop.
        pad_mode: ``"reflect"`` or ``"constant"`` (zeros), for ``center``.
        normalized: Scale by ``n_fft ** -0.5``.
        frames_first: Return ``[..., frames, n_fft // 2 + 1]`` (channels-last models' layout,
            without the transposing copy).

    Returns:
        complex64 ``[..., n_fft // 2 + 1, frames]`` (``[..., frames, n_fft // 2 + 1]`` with
        ``frames_first``).
    """
    hop = hop_length or n_fft // 4
    win = _window(window, n_fft, win_length or n_fft)
    x = mx.array(x) if not isinstance(x, mx.array) else x
    lead, length = x.shape[:-1], x.shape[-1]
    x = x.reshape(-1, length).astype(mx.float32)
    if center:
        pad = n_fft // 2
        if pad_mode == "reflect":
            x = _reflect_pad(x, pad)
        elif pad_mode == "constant":
            x = mx.pad(x, [(0, 0), (pad, pad)])
        else:
            raise ValueError(f"pad_mode must be 'reflect' or 'constant', got {pad_mode!r}")
    total = x.shape[-1]
    if total < n_fft:
        raise ValueError(f"signal of {total} samples is shorter than n_fft={n_fft}")
    frames = 1 + (total - n_fft) // hop
    x = mx.contiguous(x)
    framed = mx.as_strided(x, (x.shape[0], frames, n_fft), (total, hop, 1))
    spec = mx.fft.rfft(framed * (win * n_fft**-0.5 if normalized else win), axis=-1)
    if frames_first:
        return spec.reshape(*lead, frames, n_fft // 2 + 1)
    return spec.swapaxes(-1, -2).reshape(*lead, n_fft // 2 + 1, frames)


def _overlap_add(frames: mx.array, hop: int) -> mx.array:
    """Sums [batch, n, width] frames placed hop apart: [batch, (n - 1) * hop + width]."""
    b, n, width = frames.shape
    m = math.ceil(width / hop)
    if m * hop != width:
        frames = mx.pad(frames, [(0, 0), (0, 0), (0, m * hop - width)])
    blocks = frames.reshape(b, n, m, hop)
    out = sum(mx.pad(blocks[:, :, j], [(0, 0), (j, m - 1 - j), (0, 0)]) for j in range(m))
    return out.reshape(b, (n + m - 1) * hop)[:, : (n - 1) * hop + width]


def istft(
    spec,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    window="hann",
    center: bool = True,
    normalized: bool = False,
    length: int | None = None,
    *,
    frames_first: bool = False,
) -> mx.array:
    """Inverse STFT, as ``torch.istft`` (windowed overlap-add divided by the window envelope).

    Args:
        spec: complex ``[..., n_fft // 2 + 1, frames]``.
        n_fft, hop_length, win_length, window, center, normalized: As given to :func:`stft`.
        length: Samples to return (trimmed or zero-padded); default all but the centre padding.
        frames_first: ``spec`` is ``[..., frames, n_fft // 2 + 1]`` (as ``stft(...,
            frames_first=True)`` returns), read without a transposing copy.

    Returns:
        float32 ``[..., samples]``.
    """
    hop = hop_length or n_fft // 4
    win = _window(window, n_fft, win_length or n_fft)
    spec = mx.array(spec) if not isinstance(spec, mx.array) else spec
    if spec.ndim < 2:
        raise ValueError(f"spec must have at least 2 dimensions, got shape {spec.shape}")
    lead = spec.shape[:-2]
    spec = spec.reshape(-1, *spec.shape[-2:])
    if not frames_first:
        spec = spec.swapaxes(-1, -2)  # [batch, frames, bins]
    n, bins = spec.shape[1:]
    if bins != n_fft // 2 + 1:
        raise ValueError(f"expected {n_fft // 2 + 1} frequency bins for n_fft={n_fft}, got {bins}")
    frames = mx.fft.irfft(spec, n=n_fft, axis=-1)
    y = _overlap_add(frames * (win * n_fft**0.5 if normalized else win), hop)
    envelope = _overlap_add(mx.broadcast_to(win * win, (1, n, n_fft)), hop)
    start = n_fft // 2 if center else 0
    end = y.shape[-1] - (n_fft // 2 if center else 0)
    if length is not None:
        end = min(start + length, y.shape[-1])
    y = y[:, start:end] / mx.where(envelope[:, start:end] > 1e-11, envelope[:, start:end], 1.0)
    if length is not None and y.shape[-1] < length:
        y = mx.pad(y, [(0, 0), (0, length - y.shape[-1])])
    return y.reshape(*lead, y.shape[-1])
