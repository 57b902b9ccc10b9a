"""Seeded synthetic signals for the tests (after torchaudio's get_sinusoid/get_whitenoise)."""

from __future__ import annotations

import numpy as np


def sinusoid(
    frames: int, sample_rate: int, channels: int = 1, freq: float = 440.0, amplitude: float = 0.5
) -> np.ndarray:
    """[frames, channels] float32 sines, each channel a different frequency and phase."""
    t = np.arange(frames) / sample_rate
    cols = [
        amplitude * np.sin(2 * np.pi * freq * (1 + 0.25 * c) * t + 0.3 * c) for c in range(channels)
    ]
    return np.stack(cols, axis=1).astype(np.float32)


def whitenoise(frames: int, channels: int = 1, seed: int = 0, scale: float = 0.5) -> np.ndarray:
    """[frames, channels] float32 uniform noise in [-scale, scale)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale, scale, (frames, channels)).astype(np.float32)


def music(frames: int, sample_rate: int, channels: int = 2, seed: int = 0) -> np.ndarray:
    """Tones plus a little noise: a signal every codec keeps recognisably."""
    return (
        sinusoid(frames, sample_rate, channels) + whitenoise(frames, channels, seed, 0.02)
    ).astype(np.float32)


def chirp(frames: int, sample_rate: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    """A sweep from 100 Hz to a quarter of the rate: aligns unambiguously by correlation."""
    t = np.arange(frames) / sample_rate
    f1 = sample_rate / 4
    phase = 2 * np.pi * (100 * t + (f1 - 100) * t**2 / (2 * t[-1] if frames > 1 else 1))
    return np.repeat((amplitude * np.sin(phase))[:, None], channels, axis=1).astype(np.float32)


def pcm_grid(x: np.ndarray, bits: int) -> np.ndarray:
    """x quantized the way save() quantizes (round(x * 2**(bits-1)), saturating)."""
    scale = 2.0 ** (bits - 1)
    return (np.clip(np.rint(x.astype(np.float64) * scale), -scale, scale - 1) / scale).astype(
        np.float32
    )


def lag(reference: np.ndarray, decoded: np.ndarray, max_lag: int = 4096) -> int:
    """The shift (in frames) that best aligns decoded to reference (0: aligned)."""
    r = reference[:, 0].astype(np.float64)
    d = decoded[:, 0].astype(np.float64)
    n = min(len(r), len(d)) - 2 * max_lag
    scores = [
        np.dot(r[max_lag : max_lag + n], d[max_lag + k : max_lag + k + n])
        for k in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(scores)) - max_lag
