"""fast_mp3_augment on what fuzzing sends: scalar arguments of every type, dtypes, views,
empty and non-finite arrays, and stereo at every rate x bitrate (issue 15)."""

import json
import math
import subprocess
import sys
import warnings

import fast_mp3_augment as fma
import mlx.core as mx
import numpy as np
import pytest
from signals import chirp

RATES = sorted(fma.SUPPORTED_SAMPLE_RATES)
BITRATES = sorted(fma.SUPPORTED_BITRATES)


def _stereo(sr=16000, seconds=0.5):
    return chirp(int(seconds * sr), sr, 2).T.copy() * np.array([[1.0], [0.5]], np.float32)


# --- scalar arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sample_rate,bitrate,quality",
    [
        (16000.0, 64.0, 7.0),
        (np.int64(16000), np.int32(64), np.int8(7)),
        (np.float32(16000), np.float64(64), np.uint8(7)),
        (16000, 64, True),  # the public package takes True == 1
    ],
)
def test_whole_numbers_of_any_type_are_accepted(sample_rate, bitrate, quality):
    x = _stereo()
    want = fma.compress_roundtrip(x, 16000, 64, quality=int(quality))
    got = fma.compress_roundtrip(x, sample_rate, bitrate, quality=quality)
    np.testing.assert_array_equal(got, want)
    batch = fma.compress_roundtrip_batch([x], sample_rate, bitrate, quality=quality)
    np.testing.assert_array_equal(batch[0], want)


BAD_NUMBERS = [
    128.5, math.nan, math.inf, -math.inf, -1, 10, 2**31, 2**63, 2**80, 1e300, -0.5,
    np.float32(7.5), None, "16000", b"64", [16000], 1 + 0j, object(),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_NUMBERS, ids=repr)
@pytest.mark.parametrize(
    "param,error",
    [
        ("sample_rate", fma.UnsupportedSampleRate),
        ("bitrate_kbps", fma.UnsupportedBitrate),
        ("quality", fma.UnsupportedQuality),
    ],
)
def test_bad_numbers_raise_a_value_error_naming_the_parameter(param, error, bad):
    args = {"sample_rate": 16000, "bitrate_kbps": 64, "quality": 7, param: bad}
    with pytest.raises(error, match=f"Expected {param} to be one of") as e:
        fma.compress_roundtrip(_stereo(), **args)
    assert isinstance(e.value, ValueError) and "but received" in str(e.value)
    if isinstance(bad, float) and math.isfinite(bad) and not bad.is_integer():
        assert "whole number" in str(e.value)
    with pytest.raises(error):  # the batch checks them once, even with no clips
        fma.compress_roundtrip_batch([], **args)


@pytest.mark.parametrize("bad", ["no", None, 2, 0.5, -1, [True]], ids=repr)
def test_preserve_delay_must_be_a_bool(bad):
    with pytest.raises(fma.Mp3AugmentError, match="preserve_delay must be True or False"):
        fma.compress_roundtrip(_stereo(), 16000, 64, preserve_delay=bad)


@pytest.mark.parametrize("ok", [True, np.bool_(True), 1, 1.0])
def test_preserve_delay_accepts_bool_likes(ok):
    x = _stereo()
    want = fma.compress_roundtrip(x, 16000, 64, preserve_delay=True)
    np.testing.assert_array_equal(fma.compress_roundtrip(x, 16000, 64, preserve_delay=ok), want)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "2", math.nan, math.inf], ids=repr)
def test_num_workers_errors(bad):
    with pytest.raises(ValueError, match="num_workers must be a positive integer"):
        fma.compress_roundtrip_batch([_stereo()], 16000, 64, num_workers=bad)


def test_num_workers_of_any_whole_type_and_huge():
    clips = [_stereo(), _stereo()[:, ::-1].copy()]
    want = [fma.compress_roundtrip(c, 16000, 64) for c in clips]
    for workers in (np.int64(2), 2.0, 2**70):
        got = fma.compress_roundtrip_batch(clips, 16000, 64, num_workers=workers)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="samples_list must be an iterable of clips"):
        fma.compress_roundtrip_batch(None, 16000, 64)


# --- dtypes and memory layouts ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float64, ">f4", ">f8", np.longdouble])
def test_float_dtypes_are_converted_to_float32(dtype):
    x = _stereo().astype(dtype)
    y = fma.compress_roundtrip(x, 16000, 64)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, fma.compress_roundtrip(x.astype(np.float32), 16000, 64))


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_mlx_half_dtypes_are_converted_to_float32(dtype):
    x = mx.array(_stereo()).astype(dtype)
    y = fma.compress_roundtrip(x, 16000, 64)
    assert isinstance(y, mx.array) and y.dtype == mx.float32 and y.shape == x.shape
    want = fma.compress_roundtrip(np.asarray(x.astype(mx.float32)), 16000, 64)
    np.testing.assert_array_equal(np.asarray(y), want)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint8, np.bool_, np.complex64])
def test_non_float_numpy_input_is_a_type_error(dtype):
    with pytest.raises(TypeError, match="samples must be float audio") as e:
        fma.compress_roundtrip(np.zeros((2, 16000), dtype), 16000, 64)
    if np.dtype(dtype).kind in "iu":
        assert "32768" in str(e.value)


@pytest.mark.parametrize("dtype", [mx.int16, mx.int32, mx.bool_, mx.complex64])
def test_non_float_mlx_input_is_a_type_error(dtype):
    with pytest.raises(TypeError, match="samples must be float audio"):
        fma.compress_roundtrip(mx.zeros((2, 16000), dtype=dtype), 16000, 64)


def test_unaligned_memory_is_copied():
    x = _stereo()
    raw = np.zeros(x.nbytes + 1, np.uint8)
    unaligned = np.frombuffer(raw.data, np.float32, x.size, offset=1).reshape(x.shape)
    unaligned.flags.writeable = False
    assert not unaligned.flags.aligned
    np.copyto(np.frombuffer(raw.data, np.uint8, x.nbytes, 1).reshape(-1), x.view(np.uint8).ravel())
    np.testing.assert_array_equal(
        fma.compress_roundtrip(unaligned, 16000, 64), fma.compress_roundtrip(x, 16000, 64)
    )


def test_numpy_views():
    """1-D views of any stride work (the public package copies them); 2-D ones must be
    C-contiguous, as there, with the fix in the message."""
    x = _stereo()
    for view in (x[0, ::-1], x[1, ::3], x.T[:, 0]):
        want = fma.compress_roundtrip(np.ascontiguousarray(view), 16000, 64)
        np.testing.assert_array_equal(fma.compress_roundtrip(view, 16000, 64), want)
    for view in (x[:, ::-1], x[::-1], x[:, ::2], np.asfortranarray(x)):
        with pytest.raises(fma.NonContiguousAudio, match="np.ascontiguousarray"):
            fma.compress_roundtrip(view, 16000, 64)


def test_mlx_views_of_any_layout():
    """An mx.array's memory layout is MLX's business: reversed, strided, transposed and
    channel-swapped views all work like the same values made contiguous."""
    x = _stereo(seconds=0.6)
    a = mx.array(x)
    views = {
        "reversed": (a[:, ::-1], x[:, ::-1]),
        "channels swapped": (a[::-1], x[::-1]),
        "strided": (a[:, ::2], x[:, ::2]),
        "transposed back": (mx.array(x.T.copy()).T, x),
        "1-D reversed": (a[0, ::-1], x[0, ::-1]),
    }
    for name, (view, values) in views.items():
        y = fma.compress_roundtrip(view, 16000, 64)
        want = fma.compress_roundtrip(np.ascontiguousarray(values), 16000, 64)
        np.testing.assert_array_equal(np.asarray(y), want, err_msg=name)


@pytest.mark.parametrize(
    "shape,error",
    [
        ((0,), fma.TooShortAudio),
        ((1, 0), fma.WrongMultichannelAudioShape),
        ((2, 0), fma.WrongMultichannelAudioShape),
        ((10**6, 0), fma.WrongMultichannelAudioShape),
        ((0, 0), fma.UnsupportedNumberOfChannels),
        ((0, 10**6), fma.UnsupportedNumberOfChannels),
        ((), fma.WrongMultichannelAudioShape),
        ((1, 2, 16000), fma.WrongMultichannelAudioShape),
    ],
)
def test_empty_and_odd_shapes(shape, error):
    with pytest.raises(error):
        fma.compress_roundtrip(np.zeros(shape, np.float32), 16000, 64)
    with pytest.raises(error):
        fma.compress_roundtrip(mx.zeros(shape), 16000, 64)


def test_peak_near_float32_max_comes_back_finite():
    # scaled down by the peak for LAME and back up after: the codec's overshoot must not
    # turn into inf (noise at full scale overshoots by more than FLT_MAX / 3.4e38)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16000)).astype(np.float32)
    y = fma.compress_roundtrip(x * np.float32(3.4e38), 16000, 64)
    assert np.isfinite(y).all() and np.abs(y).max() > 1e38


# --- non-finite input: LAME aborts on it, so these run in a child process -------------------

CHILD = """
import json
import numpy as np, mlx.core as mx, fast_mp3_augment as fma
def bad(value, dtype=np.float32, mlx=False):
    y = np.zeros((2, 16000), dtype)
    y[1, 777] = value
    return mx.array(y) if mlx else y
inputs = {
    "nan": bad(np.nan), "inf": bad(np.inf), "-inf": bad(-np.inf),
    "float64 overflow": bad(1e300, np.float64), "float16 nan": bad(np.nan, np.float16),
    "mlx inf": bad(np.inf, mlx=True), "mlx bfloat16 nan": bad(np.nan, mlx=True).astype(mx.bfloat16),
    "1-D nan": bad(np.nan)[1],
}
out = {}
for name, samples in inputs.items():
    print(name, flush=True)  # the last name printed is the one that aborted
    try:
        fma.compress_roundtrip(samples, 16000, 64)
        out[name] = "no error"
    except fma.NonFiniteAudio as e:
        out[name] = str(e)
print(json.dumps(out))
"""


def test_non_finite_input_raises_and_never_aborts():
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"aborted at: {proc.stdout.splitlines()[-1:]}\n{proc.stderr}"
    got = json.loads(proc.stdout.splitlines()[-1])
    for name, message in got.items():
        where = "at index 777" if name == "1-D nan" else r"at index (1, 777)"
        assert where in message and "np.nan_to_num" in message, (name, message)
    assert "beyond float32's range" in got["float64 overflow"]
    assert "1e+300" in got["float64 overflow"]


# --- stereo at every rate x bitrate ------------------------------------------------------------


def _two_tones(sr, seconds=0.5):
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(0).standard_normal((2, t.size)) * 0.01
    tones = np.stack([0.4 * np.sin(2 * np.pi * 220 * t), 0.4 * np.sin(2 * np.pi * 330 * t + 1)])
    return (tones + noise).astype(np.float32)


@pytest.mark.parametrize("sr", RATES)
def test_stereo_keeps_both_channels_at_every_bitrate(sr):
    """Each output channel correlates with its own input channel, not the other one, over
    the whole rate x bitrate grid (at 22.05-24 kHz 8 kbps the right channel used to come
    back uncorrelated: libmpg123 rejects granules squeezed into those frames)."""
    x = _two_tones(sr)
    for kbps in BITRATES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = fma.compress_roundtrip(x, sr, kbps)
            mono = fma.compress_roundtrip(x[0], sr, kbps)
        for c in (0, 1):
            own, other = (np.corrcoef(y[c], x[k])[0, 1] for k in (c, 1 - c))
            assert own > 0.9 and abs(other) < 0.5, (sr, kbps, c, own, other)
        assert np.corrcoef(mono, x[0])[0, 1] > 0.9, (sr, kbps)


@pytest.mark.parametrize("sr", [22050, 24000])
def test_stereo_8kbps_goes_up_to_16_with_a_warning(sr):
    fma._core._warned.clear()
    x = _two_tones(sr)
    with pytest.warns(UserWarning, match=f"8 kbps cannot be coded as stereo MP3 at {sr} Hz; "
                      "using 16 kbps"):  # fmt: skip
        y = fma.compress_roundtrip(x, sr, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mono at 8 kbps is fine: no warning, no change
        fma.compress_roundtrip(x[0], sr, 8)
    np.testing.assert_array_equal(y, fma.compress_roundtrip(x, sr, 16))
