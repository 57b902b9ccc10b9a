"""STFT/iSTFT against a plain NumPy implementation of torch's definition, and round trips."""

from mlx_audio_io import dsp

import mlx.core as mx
import numpy as np
import pytest


def _np_stft(x, n_fft, hop, win, center, pad_mode, normalized):
    """torch.stft's definition, frame by frame."""
    if center:
        x = np.pad(x, n_fft // 2, mode="reflect" if pad_mode == "reflect" else "constant")
    n = 1 + (len(x) - n_fft) // hop
    out = np.stack([np.fft.rfft(x[t * hop : t * hop + n_fft] * win) for t in range(n)], axis=1)
    return out / np.sqrt(n_fft) if normalized else out


def _np_hann(n):
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


@pytest.mark.parametrize(
    "n_fft,hop,win_length", [(4096, 1024, None), (20, 5, None), (512, 128, 400), (256, 100, None)]
)
@pytest.mark.parametrize(
    "center,pad_mode", [(True, "reflect"), (True, "constant"), (False, "reflect")]
)
@pytest.mark.parametrize("normalized", [False, True])
def test_stft_matches_the_definition(n_fft, hop, win_length, center, pad_mode, normalized):
    x = np.random.default_rng(n_fft + hop).standard_normal(9000).astype(np.float32)
    wl = win_length or n_fft
    win = np.pad(_np_hann(wl), ((n_fft - wl) // 2, n_fft - wl - (n_fft - wl) // 2))
    want = _np_stft(x.astype(np.float64), n_fft, hop, win, center, pad_mode, normalized)
    got = np.asarray(
        dsp.stft(
            mx.array(x),
            n_fft,
            hop,
            win_length,
            center=center,
            pad_mode=pad_mode,
            normalized=normalized,
        )
    )
    assert got.shape == want.shape and got.dtype == np.complex64
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, atol=2e-5 * scale)


@pytest.mark.parametrize("n_fft,hop", [(4096, 1024), (20, 5), (512, 128), (400, 160)])
@pytest.mark.parametrize("normalized", [False, True])
def test_istft_inverts_stft(n_fft, hop, normalized):
    x = np.random.default_rng(1).standard_normal((2, 3, 12000)).astype(np.float32)
    spec = dsp.stft(mx.array(x), n_fft, hop, normalized=normalized)
    assert spec.shape[:2] == (2, 3)
    y = np.asarray(dsp.istft(spec, n_fft, hop, normalized=normalized, length=12000))
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-4)


@pytest.mark.parametrize("normalized", [False, True])
def test_frames_first_is_the_transposed_layout(normalized):
    x = mx.array(np.random.default_rng(2).standard_normal((2, 3, 5000)).astype(np.float32))
    spec = dsp.stft(x, 512, 128, normalized=normalized)
    first = dsp.stft(x, 512, 128, normalized=normalized, frames_first=True)
    assert first.shape == (2, 3, spec.shape[-1], 257)
    np.testing.assert_allclose(np.asarray(first), np.asarray(spec.swapaxes(-1, -2)), atol=1e-5)
    y = dsp.istft(first, 512, 128, normalized=normalized, length=5000, frames_first=True)
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-4)
    # a transposed (non-contiguous) view is read as well as a contiguous array
    y2 = dsp.istft(
        spec.swapaxes(-1, -2), 512, 128, normalized=normalized, length=5000, frames_first=True
    )
    np.testing.assert_allclose(np.asarray(y2), np.asarray(x), atol=1e-4)


def test_hann_and_errors():
    np.testing.assert_allclose(np.asarray(dsp.hann_window(8)), _np_hann(8), atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(dsp.hann_window(8, periodic=False)), np.hanning(8), atol=1e-6
    )
    with pytest.raises(ValueError, match="reflect padding"):
        dsp.stft(mx.zeros((10,)), 64)
    with pytest.raises(ValueError, match="frequency bins"):
        dsp.istft(mx.zeros((10, 5), dtype=mx.complex64), 64)
    with pytest.raises(ValueError, match="frequency bins"):
        dsp.istft(mx.zeros((33, 5), dtype=mx.complex64), 64, frames_first=True)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        dsp.istft(mx.zeros((33,), dtype=mx.complex64), 64)
