"""Parity of mlx_audio_io's model layers with PyTorch: STFT/iSTFT, transposed and dilated 1-D
convolutions and weight norm, on random inputs. Runs in the torch venv of `make parity`; prints
a markdown table and exits 1 when a layer is off by more than 1e-4 of its output's scale."""

from __future__ import annotations

import sys

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
from mlx_audio_io import dsp, nn

import numpy as np
import torch

TOL = 1e-4


def _rel(ours, ref) -> float:
    ours, ref = np.asarray(ours), ref.detach().numpy()
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


def stft_cases():
    g = torch.Generator().manual_seed(0)
    for n_fft, hop, win, norm in [
        (4096, 1024, 4096, True),
        (20, 5, 20, False),
        (512, 128, 400, False),
    ]:
        x = torch.randn(2, 44100, generator=g)
        window = torch.hann_window(win)
        ref = torch.stft(
            x,
            n_fft,
            hop,
            win,
            window,
            center=True,
            pad_mode="reflect",
            normalized=norm,
            return_complex=True,
        )
        ours = dsp.stft(mx.array(x.numpy()), n_fft, hop, win, normalized=norm)
        yield f"stft n_fft={n_fft} hop={hop} win={win} normalized={norm}", _rel(ours, ref)
        back = torch.istft(ref, n_fft, hop, win, window, normalized=norm, length=44100)
        ours_back = dsp.istft(mx.array(ref.numpy()), n_fft, hop, win, normalized=norm, length=44100)
        yield f"istft n_fft={n_fft} hop={hop} win={win} normalized={norm}", _rel(ours_back, back)


def conv_cases():
    g = torch.Generator().manual_seed(1)
    for c_in, c_out, k, stride, pad in [
        (256, 128, 12, 6, 3),
        (512, 256, 16, 8, 4),
        (64, 32, 4, 2, 1),
    ]:
        conv = torch.nn.ConvTranspose1d(c_in, c_out, k, stride, pad)
        with torch.no_grad():
            for p in conv.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        x = torch.randn(1, c_in, 300, generator=g)
        ref = conv(x)
        w = mx.array(conv.weight.detach().numpy().transpose(1, 2, 0))  # -> [out, k, in]
        ours = nn.conv_transpose1d(mx.array(x.numpy().transpose(0, 2, 1)), w, stride, pad)
        ours = ours + mx.array(conv.bias.detach().numpy())
        yield (
            f"conv_transpose1d {c_in}->{c_out} k={k} s={stride} p={pad}",
            _rel(ours.transpose(0, 2, 1), ref),
        )
    for dil in (1, 3, 9):
        conv = torch.nn.Conv1d(128, 128, 3, padding=dil, dilation=dil, bias=False)
        x = torch.randn(1, 128, 2000, generator=g)
        w = mx.array(conv.weight.detach().numpy().transpose(0, 2, 1))
        ours = nn.conv1d(mx.array(x.numpy().transpose(0, 2, 1)), w, padding=dil, dilation=dil)
        yield f"conv1d 128->128 k=3 dilation={dil}", _rel(ours.transpose(0, 2, 1), conv(x))


def weight_norm_cases():
    torch.manual_seed(2)
    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(16, 8, 5))
    wn = conv.parametrizations.weight
    with torch.no_grad():  # at initialisation g = |v|, so weight = v: a no-op would pass
        wn.original0.copy_(torch.rand(wn.original0.shape) * 2 + 0.25)
    g, v = wn.original0.detach().numpy(), wn.original1.detach().numpy()
    ours = nn.weight_norm(mx.array(v), mx.array(g))
    # the row must be able to fail: v itself (the norm not applied) has to be far off
    off = _rel(mx.array(v), conv.weight)
    name = f"weight_norm (torch parametrization, dim 0, random g; v alone is off by {off:.1e})"
    yield name, _rel(ours, conv.weight) if off > 1e-2 else float("inf")


def main() -> int:
    rows = [*stft_cases(), *conv_cases(), *weight_norm_cases()]
    print(f"torch {torch.__version__}, mlx {mx.__version__}; max |ours - torch| / max |torch|\n")
    print("| layer | relative error | within 1e-4 |\n|---|---:|---|")
    for name, err in rows:
        print(f"| {name} | {err:.1e} | {'yes' if err <= TOL else '**no**'} |")
    return 0 if all(err <= TOL for _, err in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
