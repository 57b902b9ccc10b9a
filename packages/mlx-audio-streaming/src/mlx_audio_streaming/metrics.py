"""Quality metrics for separated or processed audio: SI-SDR, SDR (BSS-eval v3), SNR,
correlation. Inputs are ``[samples]`` or ``[channels, samples]`` (mx or NumPy); several
channels are scored one by one and averaged."""

from __future__ import annotations

import numpy as np


def _pair(estimate, reference) -> tuple[np.ndarray, np.ndarray]:
    est = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    ref = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    if est.shape != ref.shape:
        raise ValueError(f"estimate and reference shapes differ: {est.shape} vs {ref.shape}")
    return est, ref


def _db(num: float, den: float) -> float:
    if den == 0:
        return float("inf")
    if num == 0:
        return float("-inf")
    return float(10 * np.log10(num / den))


def si_sdr(estimate, reference) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., 2019): the reference scaled to best fit the
    estimate, against what is left."""
    est, ref = _pair(estimate, reference)
    out = []
    for e, r in zip(est, ref, strict=True):
        e, r = e - e.mean(), r - r.mean()
        target = (e @ r) / max(r @ r, 1e-30) * r
        out.append(_db(target @ target, (e - target) @ (e - target)))
    return float(np.mean(out))


def snr(estimate, reference) -> float:
    """Signal-to-noise ratio in dB: reference energy over the energy of estimate - reference."""
    est, ref = _pair(estimate, reference)
    return float(np.mean([_db(r @ r, (e - r) @ (e - r)) for e, r in zip(est, ref, strict=True)]))


def correlation(estimate, reference) -> float:
    """Pearson correlation coefficient (mean over channels)."""
    est, ref = _pair(estimate, reference)
    return float(np.mean([np.corrcoef(e, r)[0, 1] for e, r in zip(est, ref, strict=True)]))


def _projection(ref: np.ndarray, est: np.ndarray, taps: int) -> np.ndarray:
    """Least-squares projection of est onto `taps` delayed copies of ref (BSS-eval's
    time-invariant distortion filter); returns len(ref) + taps - 1 samples."""
    n = ref.size
    n_fft = 1 << int(np.ceil(np.log2(n + taps - 1)))
    rf, ef = np.fft.rfft(ref, n_fft), np.fft.rfft(est, n_fft)
    auto = np.fft.irfft(rf * np.conj(rf), n_fft)
    cross = np.fft.irfft(rf * np.conj(ef), n_fft)
    lags = np.arange(taps)
    gram = auto[
        (lags[None, :] - lags[:, None]) % n_fft
    ]  # symmetric Toeplitz of the autocorrelation
    rhs = cross[(-lags) % n_fft]
    try:
        coeffs = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        coeffs = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    return np.fft.irfft(np.fft.rfft(coeffs, n_fft) * rf, n_fft)[: n + taps - 1]


def sdr(estimate, reference, filter_length: int = 512) -> float:
    """Signal-to-distortion ratio in dB as BSS-eval v3 defines it for one source (the value
    mir_eval.separation.bss_eval_sources gives): the part of the estimate a
    ``filter_length``-tap filter of the reference explains, against the rest."""
    est, ref = _pair(estimate, reference)
    out = []
    for e, r in zip(est, ref, strict=True):
        proj = _projection(r, e, filter_length)
        padded = np.concatenate([e, np.zeros(filter_length - 1)])
        out.append(_db(proj @ proj, (padded - proj) @ (padded - proj)))
    return float(np.mean(out))


class SeparationMetrics:
    """Computes every metric at once."""

    def compute(self, estimate, reference) -> dict[str, float]:
        """Returns ``{"si_sdr", "sdr", "snr", "correlation"}`` for the pair."""
        return {
            "si_sdr": si_sdr(estimate, reference),
            "sdr": sdr(estimate, reference),
            "snr": snr(estimate, reference),
            "correlation": correlation(estimate, reference),
        }
