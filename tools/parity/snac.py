"""Parity of mlx_audio_tts' SNAC codec with the official snac 1.2.1 (PyTorch).

Builds ``snac.SNAC`` with hubertsiuzdak/snac_24khz's configuration and seeded random weights
(every parameter perturbed; every weight-norm magnitude ``g`` set away from ``||v||`` so
that a wrong norm axis shows), saves its state dict as ``pytorch_model.bin`` next to the
``config.json``, loads that folder with our loader, and compares on fixed noise-like audio:
the encoder's latent, the codes of every level (must be identical), the decoded audio (the
reference's ``NoiseBlock`` noise recorded and fed to ours) and our streaming decode against
our one-shot decode.

    python tools/parity/snac.py                 # official config, markdown table
    python tools/parity/snac.py --fixtures DIR  # reduced config -> test fixtures

Runs in the torch venv of ``make parity``; exits 1 when a stage is off by more than 1e-4 of
its output's scale or a code differs.
"""

# ruff: noqa: E402  (the official package is imported after a sys.path fix, below)
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx
from parity_common import main, rel_error

# this file is named after the model it checks: keep its folder off the path so that
# "import snac" finds the official package, not this script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
import numpy as np
import snac
import torch
from mlx_audio_tts.codecs.snac import load_model

TOL = 1e-4
OFFICIAL = {
    "sampling_rate": 24000, "encoder_dim": 48, "encoder_rates": [2, 4, 8, 8],
    "decoder_dim": 1024, "decoder_rates": [8, 8, 4, 2], "attn_window_size": None,
    "codebook_size": 4096, "codebook_dim": 8, "vq_strides": [4, 2, 1], "noise": True,
    "depthwise": True,
}  # fmt: skip
REDUCED = {
    **OFFICIAL, "encoder_dim": 4, "encoder_rates": [2, 4], "decoder_dim": 32,
    "decoder_rates": [4, 2], "codebook_size": 64, "codebook_dim": 4,
}  # fmt: skip
OFFICIAL_FRAMES = 24  # code frames of audio compared (24 x 2048 samples = 2.05 s)
REDUCED_FRAMES = 24


def build_reference(cfg: dict, seed: int, folder: Path, old_names: bool = False):
    """The official model, perturbed, saved as ``folder/{config.json,pytorch_model.bin}``
    (``old_names``: the Hub file's ``weight_g``/``weight_v`` instead of torch's
    parametrization names)."""
    torch.manual_seed(seed)
    model = snac.SNAC(**cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original0"):  # g: per-slice norms of v, scaled by 0.5-1.5
                p.mul_(0.5 + torch.rand_like(p))
            elif name.endswith("alpha"):
                p.copy_(0.5 + torch.rand_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            elif "codebook" in name:
                p.copy_(torch.randn_like(p))
            else:
                p.add_(0.1 * p.std() * torch.randn_like(p))
    state = model.state_dict()
    if old_names:
        state = {k.replace("parametrizations.weight.original0", "weight_g")
                  .replace("parametrizations.weight.original1", "weight_v"): v
                 for k, v in state.items()}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return model


def _audio(samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 24000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(samples)
    return x.astype(np.float32)


def reference(model, audio: np.ndarray) -> dict:
    """Latent, codes, decoded audio and the noise its NoiseBlocks drew."""
    drawn, randn = [], torch.randn

    def recording_randn(*args, **kwargs):
        out = randn(*args, **kwargs)
        drawn.append(out[:, 0].numpy().copy())  # [B, 1, T] -> [B, T]
        return out

    with torch.no_grad():
        x = torch.from_numpy(audio)[None, None]
        z = model.encoder(model.preprocess(x))
        codes = model.encode(x)
        with mock.patch.object(torch, "randn", recording_randn):
            audio_hat = model.decode(codes)
    return {
        "latent": z[0].T.numpy(),
        "codes": [c[0].numpy() for c in codes],
        "audio": audio_hat[0, 0].numpy(),
        "noise": drawn,
    }


def ours(model, audio: np.ndarray, ref: dict, chunk_frames: int) -> dict:
    x = mx.array(audio)[None, :, None]
    pad = -x.shape[1] % (model.config.hop_length * model.config.vq_strides[0])
    z = model.encoder(mx.pad(x, [(0, 0), (0, pad), (0, 0)]))
    t0 = time.time()
    codes = model.encode(audio)
    ref_codes = [mx.array(c) for c in ref["codes"]]
    decoded = model.decode(ref_codes, noise=[mx.array(n) for n in ref["noise"]])
    seconds = time.time() - t0
    quiet = model.decode(ref_codes, add_noise=False)
    per = model.codes_per_frame()
    n = ref_codes[0].shape[0]
    step = chunk_frames
    chunks = [
        [c[i * p * step : (i + 1) * p * step] for c, p in zip(ref_codes, per, strict=True)]
        for i in range(-(-n // step))
    ]
    streamed = mx.concatenate(list(model.decode_stream(chunks, add_noise=False)), axis=0)
    return {
        "latent": np.array(z[0]),
        "codes": [np.array(c) for c in codes],
        "audio": np.array(decoded[:, 0]),
        "quiet": np.array(quiet[:, 0]),
        "streamed": np.array(streamed[:, 0]),
        "seconds": seconds,
    }


def compare(cfg: dict, seed: int, folder: Path, frames: int, old_names: bool = False):
    ref_model = build_reference(cfg, seed, folder, old_names)
    model = load_model(folder)
    samples = frames * model.samples_per_frame - 123  # not a whole frame: exercises the padding
    audio = _audio(samples, seed)
    t0 = time.time()
    ref = reference(ref_model, audio)
    t_ref = time.time() - t0
    got = ours(model, audio, ref, chunk_frames=2)
    return audio, ref, got, (t_ref, got["seconds"])


def rows(ref: dict, got: dict) -> list[tuple[str, str, bool]]:
    out = [("encoder latent", f"{rel_error(got['latent'], ref['latent']):.1e}",
            rel_error(got["latent"], ref["latent"]) <= TOL)]  # fmt: skip
    for i, (a, b) in enumerate(zip(got["codes"], ref["codes"], strict=True)):
        same = a.shape == b.shape and float(np.mean(a == b))
        out.append((f"codes, level {i} ({b.size} codes)", f"{same:.1%} identical", same == 1.0))
    err = rel_error(got["audio"], ref["audio"])
    out.append(("decoded audio (reference noise fed in)", f"{err:.1e}", err <= TOL))
    err = rel_error(got["streamed"], got["quiet"])
    out.append(("streaming decode (2-frame chunks) vs one-shot, ours", f"{err:.1e}", err <= TOL))
    return out


def run_official() -> int:
    torch.set_num_threads(2)
    print("| stage (SNAC 24 kHz, official config, random weights) | max abs err / scale | ok |")
    print("|---|---|---|")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        audio, ref, got, _ = compare(OFFICIAL, 0, Path(tmp), OFFICIAL_FRAMES)
    bad = 0
    for name, value, ok in rows(ref, got):
        bad += not ok
        print(f"| {name} | {value} | {'yes' if ok else 'NO'} |")
    print(f"\n{time.time() - t0:.0f} s. {audio.size} samples ({audio.size / 24000:.2f} s) of a "
          "220 Hz tone plus noise; weights loaded from the reference's pytorch_model.bin by our "
          "loader. Speed: tools/bench/bench_snac.py.")  # fmt: skip
    return 1 if bad else 0


def write_fixtures(folder: Path) -> None:
    """Reduced-config reference files for the default tests (no torch there): the checkpoint
    with the Hub file's ``weight_g``/``weight_v`` names, and its inputs and outputs."""
    torch.set_num_threads(2)
    folder.mkdir(parents=True, exist_ok=True)
    audio, ref, got, _ = compare(REDUCED, 1, folder, REDUCED_FRAMES, old_names=True)
    for name, value, ok in rows(ref, got):
        print(f"{name}: {value} {'ok' if ok else 'FAILED'}")
    arrays = {"audio_in": audio, "latent": ref["latent"], "audio_out": ref["audio"]}
    arrays.update({f"codes{i}": c for i, c in enumerate(ref["codes"])})
    arrays.update({f"noise{i}": n.astype(np.float32) for i, n in enumerate(ref["noise"])})
    np.savez_compressed(folder / "snac_reduced_io.npz", **arrays)


if __name__ == "__main__":
    main(__doc__, run_official, write_fixtures)
