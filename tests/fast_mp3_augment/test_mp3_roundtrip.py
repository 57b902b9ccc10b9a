"""fast_mp3_augment: alignment, lengths, quality, the public package's contract, errors."""

import sys
import threading
import time
import warnings

import fast_mp3_augment as fma
import numpy as np
import pytest
from fast_mp3_augment._lib import lib
from signals import chirp, lag, music

RATES = sorted(fma.SUPPORTED_SAMPLE_RATES)


def _clip(sr, channels, seconds=1.3, fn=chirp):
    x = fn(int(seconds * sr) + 123, sr, channels).T.copy()
    return x[0].copy() if channels == 1 else x


def _snr(a, b):
    return 10 * np.log10(
        np.sum(a.astype(np.float64) ** 2) / np.sum((a - b).astype(np.float64) ** 2)
    )


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("kbps", [32, 64, 128])
def test_aligned_full_length_and_good_tail(sr, channels, kbps):
    x = _clip(sr, channels)  # a chirp: aligns unambiguously
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 128 kbps at 8-12 kHz is clamped, with a warning
        y = fma.compress_roundtrip(x, sr, kbps)
    assert y.shape == x.shape and y.dtype == np.float32
    X, Y = np.atleast_2d(x).T, np.atleast_2d(y).T
    assert lag(X, Y, 400) == 0
    # a stationary signal (the chirp ends above LAME's low-pass): the tail is as good as the
    # middle, since every input sample comes back (the public package zeroes the last 529)
    m = _clip(sr, channels, fn=lambda n, r, c: music(n, r, c))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        M = np.atleast_2d(fma.compress_roundtrip(m, sr, kbps)).T
    m = np.atleast_2d(m).T
    mid = slice(len(m) // 4, 3 * len(m) // 4)
    mid_snr, tail_snr = _snr(m[mid, 0], M[mid, 0]), _snr(m[-2048:, 0], M[-2048:, 0])
    assert tail_snr > mid_snr - 3
    assert np.count_nonzero(M[-529:, 0]) > 500


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("channels", [1, 2])
def test_preserve_delay_is_the_raw_stream(sr, channels):
    x = _clip(sr, channels)
    frames, frame = x.shape[-1], 1152 if sr >= 32000 else 576
    pad = frame - (576 + frames) % frame
    pad += frame if pad < 576 else 0
    # LAME writes its Info frame only where a CBR frame holds side info + the 156-byte tag:
    # at 64 kbps everywhere; at 32 kbps only at 8-12 kHz (MPEG-2.5 frames are longer)
    for kbps, info in ((64, frame), (32, frame if sr <= 12000 else 0)):
        y = fma.compress_roundtrip(x, sr, kbps, preserve_delay=True)
        assert y.shape[-1] == info + 576 + frames + pad
        assert y.shape[-1] == lib.fma_raw_frames(frames, sr, info > 0)
        Y = np.atleast_2d(y).T
        start = info + 576 + 529  # Info frame + encoder delay + decoder delay
        aligned = np.atleast_2d(fma.compress_roundtrip(x, sr, kbps)).T
        np.testing.assert_allclose(Y[start : start + frames], aligned, atol=1e-6)


def test_music_correlation_at_128k():
    x = music(44100 * 3, 44100, 2).T.copy()
    y = fma.compress_roundtrip(x, 44100, 128)
    for c in range(2):
        assert np.corrcoef(x[c], y[c])[0, 1] > 0.95


def test_quality_extremes_and_speed_order():
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 44100 * 2).astype(np.float32)
    outs = {q: fma.compress_roundtrip(x, 44100, 64, quality=q) for q in (0, 9)}
    for y in outs.values():
        assert y.shape == x.shape and np.isfinite(y).all()


def test_peak_above_one_is_restored():
    x = 3.0 * _clip(44100, 1, fn=lambda n, sr, c: music(n, sr, c))
    y = fma.compress_roundtrip(x, 44100, 128)
    assert np.max(np.abs(y)) > 1.5  # gain restored after decoding
    assert np.corrcoef(x, y)[0, 1] > 0.95


def test_mlx_in_mlx_out():
    import mlx.core as mx

    x = _clip(16000, 2)
    y = fma.compress_roundtrip(mx.array(x), 16000, 64)
    assert isinstance(y, mx.array) and y.shape == x.shape
    np.testing.assert_array_equal(np.asarray(y), fma.compress_roundtrip(x, 16000, 64))


def test_one_d_views_are_accepted_and_2d_keeps_ndim():
    x = _clip(16000, 1, seconds=2.5)
    assert fma.compress_roundtrip(x[::2], 16000, 64).shape == x[::2].shape
    assert fma.compress_roundtrip(x[None, :], 16000, 64).shape == (1, x.size)


def test_deterministic_and_pipelined_equals_sequential():
    x = _clip(48000, 2)
    a = fma.compress_roundtrip(x, 48000, 96)
    b = fma.compress_roundtrip(x, 48000, 96, _pipelined=False)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "args,exc,message",
    [
        (
            (1337, 64, 7),
            fma.UnsupportedSampleRate,
            "Expected sample_rate to be one of [8000, 11025",
        ),
        ((16000, 42, 7), fma.UnsupportedBitrate, "Expected bitrate_kbps to be one of [8, 16"),
        ((16000, 64, 42), fma.UnsupportedQuality, "Expected quality to be one of [0, 1, 2"),
    ],
)
def test_parameter_errors(args, exc, message):
    with pytest.raises(exc, match=message.replace("[", r"\[")) as e:
        fma.compress_roundtrip(_clip(16000, 1), *args[:2], quality=args[2])
    assert isinstance(e.value, ValueError) and "but received" in str(e.value)


def test_shape_errors():
    x = _clip(16000, 2)
    with pytest.raises(fma.WrongMultichannelAudioShape, match="channels first"):
        fma.compress_roundtrip(np.ascontiguousarray(x.T), 16000, 64)
    with pytest.raises(fma.UnsupportedNumberOfChannels, match="received 3 channels"):
        fma.compress_roundtrip(np.zeros((3, 48000), np.float32), 16000, 64)
    with pytest.raises(fma.NonContiguousAudio, match="C-contiguous"):
        fma.compress_roundtrip(np.asfortranarray(x), 16000, 64)
    with pytest.raises(fma.TooShortAudio, match="1599 samples is too short"):
        fma.compress_roundtrip(np.zeros(1599, np.float32), 16000, 64)
    with pytest.raises(TypeError, match="float audio"):
        fma.compress_roundtrip(np.zeros(16000, np.int16), 16000, 64)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises_instead_of_aborting(bad):
    x = _clip(16000, 2)
    x[1, 777] = bad
    with pytest.raises(fma.NonFiniteAudio, match=r"at index \(1, 777\)"):
        fma.compress_roundtrip(x, 16000, 64)
    assert isinstance(fma.NonFiniteAudio("x"), ValueError)


def test_clamped_bitrate_warns_once():
    x = _clip(44100, 1)
    fma._core._warned.clear()
    with pytest.warns(UserWarning, match="8 kbps cannot be coded as MP3 at 44100 Hz; using 32"):
        fma.compress_roundtrip(x, 44100, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fma.compress_roundtrip(x, 44100, 8)  # the same combination again: silent


def test_batch_equals_single_calls():
    clips = [_clip(44100, 2, seconds=1.0 + 0.1 * i) for i in range(6)] + [_clip(44100, 1)]
    batch = fma.compress_roundtrip_batch(clips, 44100, 64, num_workers=2)
    assert len(batch) == len(clips)
    for x, y in zip(clips, batch, strict=True):
        np.testing.assert_array_equal(y, fma.compress_roundtrip(x, 44100, 64))
    assert fma.compress_roundtrip_batch([], 44100, 64) == []
    with pytest.raises(ValueError, match="num_workers"):
        fma.compress_roundtrip_batch(clips, 44100, 64, num_workers=0)


def test_gil_is_released():
    """A pure-Python thread keeps running while the native round trip works."""
    x = _clip(44100, 2, seconds=20.0)
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=spin)
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        t.start()
        time.sleep(0.01)
        fma.compress_roundtrip(x, 44100, 64)
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    gaps = np.diff(np.array(ticks))
    assert gaps.max() < 0.1  # held GIL: one gap as long as the whole call (~0.3 s here)


def test_audiomentations_backend_uses_this_package():
    from audiomentations import Mp3Compression

    x = _clip(44100, 2)
    aug = Mp3Compression(min_bitrate=32, max_bitrate=64, backend="fast-mp3-augment", p=1.0)
    y = aug(samples=x, sample_rate=44100)
    assert y.shape == x.shape and lag(x.T, y.T, 400) == 0
    mono = aug(samples=x[0].copy(), sample_rate=44100)
    assert mono.shape == x[0].shape
