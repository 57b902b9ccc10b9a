"""Parity of mlx_audio_sts' HTDemucs with the official demucs 4.1.0 (PyTorch).

Builds ``demucs.htdemucs.HTDemucs`` with the official htdemucs configuration and seeded random
weights (every parameter perturbed, so that zero and one initialisations cannot hide layout
bugs, then rounded to float16 as the released checkpoints are), saves it as a demucs ``.th``
package, converts that file with our converter, and compares on stereo 44.1 kHz noise: the
spectrogram, the transformer's two outputs, the frequency and time branches, the model output,
and ``apply_model`` with overlap, with shifts, and for a bag of models.

    python tools/parity/htdemucs.py                 # official config, markdown table
    python tools/parity/htdemucs.py --fixtures DIR  # reduced config -> test fixtures

Runs in the torch venv of ``make parity``; exits 1 when a stage is off by more than 1e-4 of
its output's scale.
"""

from __future__ import annotations

import random
import tempfile
import time
from fractions import Fraction
from pathlib import Path

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
import numpy as np
import torch
from demucs.apply import BagOfModels as RefBag
from demucs.apply import apply_model as ref_apply
from demucs.htdemucs import HTDemucs as RefHTDemucs
from mlx_audio_sts.models.htdemucs import BagOfModels, apply_model, convert
from parity_common import main, rel_error, write_stage_fixtures

TOL = 1e-4

# demucs' htdemucs (signature 955717e8) as stored in its checkpoint
OFFICIAL = dict(
    sources=["drums", "bass", "other", "vocals"], audio_channels=2, samplerate=44100,
    segment=Fraction(39, 5), channels=48, channels_time=None, growth=2, nfft=4096,
    wiener_iters=0, end_iters=0, wiener_residual=False, cac=True, depth=4, rewrite=True,
    multi_freqs=[], multi_freqs_depth=3, freq_emb=0.2, emb_scale=10, emb_smooth=True,
    kernel_size=8, stride=4, time_stride=2, context=1, context_enc=0, norm_starts=4,
    norm_groups=4, dconv_mode=3, dconv_depth=2, dconv_comp=8, dconv_init=1e-3,
    bottom_channels=512, t_layers=5, t_hidden_scale=4.0, t_heads=8, t_dropout=0.02,
    t_layer_scale=True, t_gelu=True, t_emb="sin", t_max_positions=10000, t_max_period=10000.0,
    t_weight_pos_embed=1.0, t_cape_mean_normalize=True, t_cape_augment=True,
    t_cape_glob_loc_scale=[5000.0, 1.0, 1.4], t_sin_random_shift=0, t_norm_in=True,
    t_norm_in_group=False, t_group_norm=False, t_norm_first=True, t_norm_out=True,
    t_weight_decay=0.0, t_lr=None, t_sparse_self_attn=False, t_sparse_cross_attn=False,
    t_mask_type="diag", t_mask_random_seed=42, t_sparse_attn_window=400, t_global_window=100,
    t_sparsity=0.95, t_auto_sparsity=False, t_cross_first=False, rescale=0.1,
)  # fmt: skip

# a small model with every code path of the official one (all four layers over frequency, the
# time branch injected at the last one, bottom channels, self and cross attention)
REDUCED = dict(
    OFFICIAL, channels=8, nfft=256, depth=3, bottom_channels=16, t_layers=3, t_heads=2,
    t_hidden_scale=2.0, segment=Fraction(1, 2), samplerate=8000,
)  # fmt: skip


def build_reference(kwargs: dict, seed: int) -> RefHTDemucs:
    """The official model with every parameter perturbed, then rounded to float16."""
    torch.manual_seed(seed)
    model = RefHTDemucs(**kwargs)
    with torch.no_grad():
        for p in model.parameters():
            scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.05
            p.add_(torch.randn_like(p) * max(scale, 0.02) * 0.5)
            p.copy_(p.half().float())  # what a released .th holds
    return model.eval()


def save_th(model: RefHTDemucs, kwargs: dict, path: Path) -> None:
    """A demucs package as ``demucs.states.serialize_model(half=True)`` writes it."""
    state = {k: v.half() for k, v in model.state_dict().items()}
    package = {"klass": RefHTDemucs, "args": [], "kwargs": kwargs, "state": state}
    torch.save(package, path)


def stages(ref: RefHTDemucs, ours, mix: np.ndarray) -> dict:
    """Reference and ours, stage by stage, on one segment; returns name -> (ref, ours)."""
    got = {}
    hooks = [
        ref.crosstransformer.register_forward_hook(lambda m, i, o: got.update(ct=o)),
        ref.decoder[-1].register_forward_hook(lambda m, i, o: got.update(freq=o[0])),
        ref.tdecoder[-1].register_forward_hook(lambda m, i, o: got.update(time=o[0])),
    ]
    x = torch.from_numpy(mix)
    with torch.no_grad():
        spec = ref._magnitude(ref._spec(x)).numpy()
        out = ref(x).numpy()
    for h in hooks:
        h.remove()
    mine = {}
    our_out = ours(mx.array(mix), capture=mine)
    mx.eval(our_out)

    # ours is channels-last: [B, T, F, C] and [B, T, C]; demucs [B, C, F, T] and [B, C, T]
    def cf(a):
        return np.array(a).transpose(0, 3, 2, 1) if a.ndim == 4 else np.array(a).transpose(0, 2, 1)

    return {
        "spectrogram (CaC input)": (spec, cf(mine["spec"])),
        "transformer, frequency tokens": (got["ct"][0].numpy(), cf(mine["transformer"][0])),
        "transformer, time tokens": (got["ct"][1].numpy(), cf(mine["transformer"][1])),
        "frequency branch output": (got["freq"].numpy(), cf(mine["freq"])),
        "time branch output": (got["time"].numpy(), cf(mine["time"])),
        "model output (stems)": (out, np.array(our_out)),
    }


def apply_cases(ref, ours, mix, bag_refs=None, bag_ours=None) -> dict:
    x = torch.from_numpy(mix)
    cases = {}
    with torch.no_grad():
        a = ref_apply(ref, x, shifts=0, split=True, overlap=0.25)
    cases["apply_model split, overlap 0.25"] = (
        a.numpy(),
        np.array(apply_model(ours, mix, shifts=0)),
    )
    random.seed(7)
    with torch.no_grad():
        a = ref_apply(ref, x, shifts=2, split=True, overlap=0.25)
    b = apply_model(ours, mix, shifts=2, seed=7)
    cases["apply_model 2 shifts (seeded)"] = (a.numpy(), np.array(b))
    if bag_refs:
        weights = [[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.5, 1.0], [0.0, 0.0, 1.0, 0.5]]
        weights = weights[: len(bag_refs)]
        with torch.no_grad():
            a = ref_apply(RefBag(bag_refs, weights), x, shifts=0, overlap=0.25)
        b = apply_model(BagOfModels(bag_ours, weights), mix, shifts=0)
        cases[f"bag of {len(bag_refs)} models, per-source weights"] = (a.numpy(), np.array(b))
    return cases  # fmt: skip


def six_sources():
    """htdemucs_6s differs only in its source list: checked on the reduced config."""
    kwargs = dict(REDUCED, sources=["drums", "bass", "other", "vocals", "guitar", "piano"])
    ref = build_reference(kwargs, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        ours = convert_th(ref, kwargs, Path(tmp))
    mix = np.random.default_rng(2).standard_normal((1, 2, 4000)).astype(np.float32) * 0.3
    return stages(ref, ours, mix)["model output (stems)"]


def convert_th(model, kwargs, folder: Path):
    path = folder / "model.th"
    save_th(model, kwargs, path)
    return convert.load_th(path)


def run_official() -> int:
    torch.set_num_threads(2)
    ref = build_reference(OFFICIAL, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        ours = convert_th(ref, OFFICIAL, Path(tmp))
    rng = np.random.default_rng(0)
    seg = rng.standard_normal((1, 2, 343980)).astype(np.float32) * 0.3
    mix = rng.standard_normal((1, 2, 441000)).astype(np.float32) * 0.3  # 10 s
    print("| stage (htdemucs, official config, random weights) | max abs err / scale | ok |")
    print("|---|---|---|")
    bad = 0
    t0 = time.time()
    results = {**stages(ref, ours, seg), **apply_cases(ref, ours, mix)}
    results["htdemucs_6s layout (6 sources, reduced config): stems"] = six_sources()
    for name, (a, b) in results.items():
        err = rel_error(b, a)
        bad += err > TOL
        print(f"| {name} | {err:.1e} | {'yes' if err <= TOL else 'NO'} |")
    print(f"\n{time.time() - t0:.0f} s. Input: 7.8 s (one segment) and 10 s of stereo noise.")
    return 1 if bad else 0


def write_fixtures(folder: Path) -> None:
    """Reduced-config reference files for the default tests (no torch there)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    refs = [build_reference(REDUCED, seed=s) for s in range(3)]
    save_th(refs[0], REDUCED, folder / "htdemucs_reduced.th")
    for i, r in enumerate(refs[1:], 1):
        save_th(r, REDUCED, folder / f"htdemucs_reduced_{i}.th")
    ours = [convert.load_th(folder / "htdemucs_reduced.th")]
    ours += [convert.load_th(folder / f"htdemucs_reduced_{i}.th") for i in range(1, 3)]
    rng = np.random.default_rng(1)
    seg = rng.standard_normal((1, 2, 4000)).astype(np.float32) * 0.3
    mix = rng.standard_normal((1, 2, 9000)).astype(np.float32) * 0.3
    results = {**stages(refs[0], ours[0], seg), **apply_cases(refs[0], ours[0], mix, refs, ours)}
    write_stage_fixtures(folder, "htdemucs_reduced_io", results, {"segment": seg, "mix": mix})


if __name__ == "__main__":
    main(__doc__, run_official, write_fixtures)
