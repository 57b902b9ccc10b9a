"""Ring buffer, context and metrics (SDR checked against mir_eval's BSS-eval)."""

import threading

import mlx_audio_streaming as ms
import numpy as np
import pytest


def test_ring_buffer_wraps_and_reports_space():
    rb = ms.AudioRingBuffer(capacity=10, channels=2)
    assert (rb.available, rb.free) == (0, 10)
    a = np.arange(14, dtype=np.float32).reshape(2, 7)
    assert rb.write(a) == 7
    np.testing.assert_array_equal(np.asarray(rb.read(5)), a[:, :5])
    assert rb.write(a) == 7  # wraps around the end
    assert (rb.available, rb.free) == (9, 1)
    np.testing.assert_array_equal(np.asarray(rb.read(100)), np.concatenate([a[:, 5:], a], 1))
    assert rb.write(np.zeros((2, 30), np.float32)) == 10  # full: the rest is dropped
    with pytest.raises(ValueError, match="expected 2 channels"):
        rb.write(np.zeros((3, 4), np.float32))


def test_ring_buffer_one_writer_one_reader():
    rb = ms.AudioRingBuffer(capacity=4096, channels=1)
    data = np.arange(200_000, dtype=np.float32)
    got = []

    def writer():
        i = 0
        while i < data.size:
            i += rb.write(data[None, i : i + 1000])

    t = threading.Thread(target=writer)
    t.start()
    while sum(len(g) for g in got) < data.size:
        got.append(np.asarray(rb.read(777))[0])
    t.join()
    np.testing.assert_array_equal(np.concatenate(got), data)


def test_context():
    ctx = ms.StreamingContext(sample_rate=48000, channels=2, chunk_size=480)
    assert ctx.chunk_duration_ms == pytest.approx(10.0)


def test_metrics_against_definitions_and_mir_eval():
    from mir_eval.separation import bss_eval_sources

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 8000))
    smeared = np.stack([np.convolve(r, [0.8, 0.3, -0.1])[:8000] for r in ref])
    est = smeared + 0.1 * rng.standard_normal(ref.shape)
    want = np.mean(
        [bss_eval_sources(r[None], e[None])[0][0] for r, e in zip(ref, est, strict=True)]
    )
    assert ms.sdr(est, ref) == pytest.approx(want, abs=0.01)
    assert ms.snr(ref * 1.0, ref) == float("inf")
    noisy = ref + 0.1 * ref.std() * rng.standard_normal(ref.shape)
    assert ms.snr(noisy, ref) == pytest.approx(20, abs=0.5)
    assert ms.si_sdr(3 * noisy, ref) == pytest.approx(ms.si_sdr(noisy, ref))  # scale-invariant
    assert ms.correlation(ref, ref) == pytest.approx(1.0)
    result = ms.SeparationMetrics().compute(est, ref)
    assert set(result) == {"si_sdr", "sdr", "snr", "correlation"}
    with pytest.raises(ValueError, match="shapes differ"):
        ms.sdr(est[:, :10], ref)


@pytest.mark.parametrize("bad", [-5, -1, 2.5, True, "3", None])
def test_ring_buffer_read_takes_only_a_count(bad):
    rb = ms.AudioRingBuffer(capacity=100, channels=2)
    rb.write(np.ones((2, 10), np.float32))
    with pytest.raises(ValueError, match=f"num_frames must be an int >= 0, got {bad!r}"):
        rb.read(bad)
    assert (rb.available, rb.free) == (10, 90)  # untouched
    assert rb.read(0).shape == (2, 0) and rb.read(np.int64(4)).shape == (2, 4)
    assert rb.available == 6


@pytest.mark.parametrize(
    "capacity, channels, name",
    [(0, 1, "capacity"), (-3, 1, "capacity"), (10.5, 1, "capacity"), (True, 1, "capacity"),
     ("8", 1, "capacity"), (10, 0, "channels"), (10, None, "channels"), (10, 2.0, "channels")],
)  # fmt: skip
def test_ring_buffer_needs_whole_sizes(capacity, channels, name):
    with pytest.raises(ValueError, match=f"{name} must be an int >= 1"):
        ms.AudioRingBuffer(capacity, channels)


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros((3, 4), np.float32), r"expected 2 channels, got shape \(3, 4\)"),
        (np.zeros(4, np.float32), r"expected 2 channels, got shape \(1, 4\)"),
        (np.zeros((2, 2, 2), np.float32), r"got shape \(2, 2, 2\)"),
        (np.float32(1.0), r"got shape \(\)"),
        (np.zeros((2, 3), np.complex64), "real-valued"),
        ("abc", "real-valued"),
        ([[1.0, "a"], [2.0, 3.0]], "real-valued"),
    ],
)
def test_ring_buffer_write_rejects_what_is_not_its_audio(audio, message):
    rb = ms.AudioRingBuffer(capacity=10, channels=2)
    with pytest.raises(ValueError, match=message):
        rb.write(audio)
    assert rb.available == 0


def test_context_needs_positive_ints():
    with pytest.raises(ValueError, match="sample_rate must be an int >= 1, got 0"):
        ms.StreamingContext(sample_rate=0)
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1, got 10.5"):
        ms.StreamingContext(chunk_size=10.5)
