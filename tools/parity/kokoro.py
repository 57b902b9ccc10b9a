"""Parity of mlx_audio_tts' Kokoro with the official kokoro 0.9.4 (PyTorch).

Builds ``kokoro.KModel`` with the official configuration and seeded random weights (every
parameter perturbed, so that default initialisations of 0 and 1 cannot hide layout bugs;
the F0 head biased to voiced pitch so the harmonic source is exercised), saves the state dict
as hexgrad's ``.pth`` (``{bert, bert_encoder, predictor, text_encoder, decoder}``), converts
that file with our loader and compares stage by stage on fixed tokens and a fixed style:
ALBERT, the prosody encoder, durations, F0 and energy, the text encoder, the decoder's input
to the generator, the harmonic source, the generator's output and the final audio. The random
sources of ``SineGen`` (initial phases, noise) are fed identically to both sides. A second,
long utterance (about 5 s, durations predicted by the model) compares the F0 curve and the
harmonic source against kokoro in float32 and in float64, to tell our error from float32's.

    python tools/parity/kokoro.py                 # official config, markdown table
    python tools/parity/kokoro.py --fixtures DIR  # reduced config -> test fixtures

Runs in the torch venv of ``make parity``; exits 1 when a stage is off by more than 1e-4 of
its output's scale.
"""

# ruff: noqa: E402  (the official package is imported after a sys.path fix, below)
from __future__ import annotations

import contextlib
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx
from parity_common import main, rel_error, write_stage_fixtures

# this file is named after the model it checks: keep its folder off the path so that
# "import kokoro" finds the official package, not this script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

# isort: on
import kokoro.istftnet as kist
import numpy as np
import torch
from kokoro import KModel
from mlx_audio_tts.models.kokoro import load_model

TOL = 1e-4

VOCAB = {s: i for i, s in enumerate(";:,.!?abcdefhijklmnopqrstuvwxyzɑɐɒæβɔəɚɛɜɪʊʌˈˌː ", 1)}

OFFICIAL = {
    "istftnet": {
        "upsample_kernel_sizes": [20, 12], "upsample_rates": [10, 6], "gen_istft_hop_size": 5,
        "gen_istft_n_fft": 20, "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7, 11], "upsample_initial_channel": 512,
    },
    "dim_in": 64, "dropout": 0.2, "hidden_dim": 512, "max_conv_dim": 512, "max_dur": 50,
    "multispeaker": True, "n_layer": 3, "n_mels": 80, "n_token": 178, "style_dim": 128,
    "text_encoder_kernel_size": 5,
    "plbert": {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 2048,
               "max_position_embeddings": 512, "num_hidden_layers": 12, "dropout": 0.1},
    "vocab": VOCAB,
}  # fmt: skip

# every code path of the official model at a fraction of its size; the decoder's widths
# (constants in kokoro's code) shrunk through our config's decoder_width/decoder_residual
REDUCED = {
    **OFFICIAL,
    "istftnet": {**OFFICIAL["istftnet"], "upsample_initial_channel": 32,
                 "resblock_kernel_sizes": [3, 7], "resblock_dilation_sizes": [[1, 3, 5]] * 2},
    "hidden_dim": 48, "n_layer": 2,
    "plbert": {"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128,
               "max_position_embeddings": 64, "num_hidden_layers": 2, "dropout": 0.1,
               "embedding_size": 32},
    "decoder_width": 64, "decoder_residual": 16,
}  # fmt: skip

TOKENS = [0, 50, 157, 43, 135, 16, 156, 102, 16, 53, 156, 46, 0]  # official-vocab-like ids
DURATIONS = [3, 2, 4, 1, 2, 3, 2, 1, 3, 2, 2, 3, 2]  # frames per token (30: 0.75 s)
# the long utterance: 70 tokens, durations predicted by the model with its duration head set
# to about 3.5 frames a token (build_reference's mean_frames; it predicts 216 frames, 5.4 s)
LONG_TOKENS = [0, *np.random.default_rng(7).integers(1, 178, 70).tolist(), 0]
LONG_MEAN_FRAMES = 3.5


END_TO_END_NOTE = """
The generator feeds the source STFT's raw phases (atan2) into convolutions. Where a bin is
almost real and negative, or almost empty, a last-bit difference between two FFT libraries
(torch's MKL, MLX's pocketfft) moves its angle from +pi to -pi or by more, and that shows in
the audio around those frames. The source itself is computed from a phase of 10^4-10^6
radians (the F0 curve summed, times 300), which turns the F0 curve's 1e-7 into the source's
1e-5. Every stage up to the source matches, the source and its spectrum do, and the
generator given the same source spectrum does; so the end-to-end difference is this
discontinuity of the model, not an implementation error, and it does not fail the check."""


LONG_NOTE = """
The harmonic source's phase is the F0 curve summed over the utterance (times 2 pi and the
300x upsampling): about 2 pi x 140 Hz x 9 harmonics x t, some 5*10^4 radians after 6 s,
which float32 holds only to a few milliradians. So every float32 implementation drifts away
from the exact source as the utterance goes on: the fp32-vs-fp64 column grows from the first
second to the last. Given the same F0 curve, ours follows torch fp32's rounding step by step
(the phase path in NumPy float32 with double sums, as torch's CPU kernels do): it stays
within 1e-6 of torch fp32 over the whole utterance and drifts from float64 exactly as torch
fp32 does. The drift is float32's, the same in both, not an error of ours.
From each side's own F0 curve the sources differ more, and not because of the source: the
phase multiplies a difference in F0 by the time elapsed, and on this utterance torch fp32's
F0 curve is further from float64's than ours is (the F0 row's first two columns). Long
utterances are therefore checked against torch fp32 from the same F0 curve; float64 tells
how far both are from exact."""


def _small_decoder(cfg: dict) -> torch.nn.Module:
    """kokoro's ``Decoder`` with its hard-coded widths (1024, 64) replaced."""
    width, res, style = cfg["decoder_width"], cfg["decoder_residual"], cfg["style_dim"]
    dec = kist.Decoder(cfg["hidden_dim"], style, cfg["n_mels"], **cfg["istftnet"])
    wide = width + 2 + res
    dec.encode = kist.AdainResBlk1d(cfg["hidden_dim"] + 2, width, style)
    dec.decode = torch.nn.ModuleList(
        [kist.AdainResBlk1d(wide, width, style) for _ in range(3)]
        + [kist.AdainResBlk1d(wide, cfg["istftnet"]["upsample_initial_channel"], style,
                              upsample=True)]
    )  # fmt: skip
    dec.asr_res = torch.nn.Sequential(
        torch.nn.utils.weight_norm(torch.nn.Conv1d(cfg["hidden_dim"], res, kernel_size=1))
    )
    return dec


def build_reference(cfg: dict, seed: int, folder: Path, half: bool = False,
                    mean_frames: float | None = None):  # fmt: skip
    """The official model with every parameter perturbed; saved as hexgrad's ``.pth``
    (float16, and the model rounded to match, with ``half``: smaller test fixtures).
    ``mean_frames`` sets the duration head to about that many frames per token (a speaking
    rate; random weights otherwise saturate at about 25), for benchmarks."""
    torch.manual_seed(seed)
    official = {k: v for k, v in cfg.items() if k not in ("decoder_width", "decoder_residual")}
    empty = folder / "empty.pth"
    torch.save({}, empty)
    model = KModel(repo_id="hexgrad/Kokoro-82M", config=official, model=str(empty))
    if "decoder_width" in cfg:
        model.decoder = _small_decoder(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.05
            p.add_(torch.randn_like(p) * max(scale, 0.02) * 0.5)
            if "alpha" in name:  # Snake's alpha divides: keep it away from 0, as trained ones are
                p.copy_(p.abs() + 0.5)
        f0 = model.predictor.F0_proj
        f0.weight.mul_(0.2)
        f0.bias.fill_(140.0)  # voiced (> 10 Hz) pitch around 140 Hz
        if mean_frames:  # each of max_dur sigmoids at mean_frames / max_dur
            proj = model.predictor.duration_proj.linear_layer
            proj.weight.mul_(0.05)
            proj.bias.fill_(float(torch.logit(torch.tensor(mean_frames / cfg["max_dur"]))))
        if half:
            for p in model.parameters():
                p.copy_(p.half().float())
    model.eval()
    path = folder / "kokoro-test.pth"
    parts = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
    state = {k: getattr(model, k).state_dict() for k in parts}
    if half:
        state = {k: {n: t.half() if t.is_floating_point() else t for n, t in v.items()}
                 for k, v in state.items()}  # fmt: skip
    torch.save(state, path)
    (folder / "config.json").write_text(json.dumps(cfg, ensure_ascii=False))
    return model, path


def _sources(samples: int, seed: int):
    """SineGen's random draws, fixed: initial phases [1, 9] (fundamental 0) and noise."""
    rng = np.random.default_rng(seed)
    phase0 = rng.random((1, 9)).astype(np.float32)
    phase0[:, 0] = 0
    noise = rng.standard_normal((1, samples, 9)).astype(np.float32)
    return phase0, noise


def _prosody(model: KModel, ids, ref_s, durations=None) -> dict:
    """kokoro's ``forward_with_tokens`` up to F0 and energy, in the model's dtype, with the
    given alignment or (``durations`` None) the one it predicts, rounded as kokoro rounds."""
    sd = model.predictor.F0[0].norm1.fc.in_features
    x = torch.tensor([ids])
    s = torch.from_numpy(ref_s).to(next(model.parameters()).dtype)
    mask = torch.zeros_like(x, dtype=torch.bool)
    bert = model.bert(x, attention_mask=(~mask).int())
    d_en = model.bert_encoder(bert).transpose(-1, -2)
    d = model.predictor.text_encoder(d_en, s[:, sd:], torch.tensor([x.shape[1]]), mask)
    lstm, _ = model.predictor.lstm(d)
    duration = torch.sigmoid(model.predictor.duration_proj(lstm)).sum(axis=-1)
    dur = torch.round(duration).clamp(min=1).long()[0] if durations is None else durations
    dur = torch.as_tensor(dur)
    idx = torch.repeat_interleave(torch.arange(x.shape[1]), dur)
    aln = torch.zeros((x.shape[1], idx.shape[0]), dtype=s.dtype)
    aln[idx, torch.arange(idx.shape[0])] = 1
    en = d.transpose(-1, -2) @ aln[None]
    f0, n = model.predictor.F0Ntrain(en, s[:, sd:])
    t_en = model.text_encoder(x, torch.tensor([x.shape[1]]), mask)
    return dict(bert=bert, d=d, duration=duration, pred_dur=dur, aln=aln, F0=f0, N=n,
                t_en=t_en, s=s[:, :sd])  # fmt: skip


@contextlib.contextmanager
def _random_draws(phase0, noise, dtype=torch.float32):
    """SineGen's ``torch.rand`` (initial phases) and ``randn_like`` (noise) patched."""
    rand = lambda *a, **k: torch.from_numpy(phase0).to(dtype)  # noqa: E731
    randn_like = lambda t: torch.from_numpy(noise[..., : t.shape[-1]]).to(t)  # noqa: E731
    with mock.patch.object(kist.torch, "rand", rand):
        with mock.patch.object(kist.torch, "randn_like", randn_like):
            yield


def reference_source(model: KModel, f0: np.ndarray, phase0, noise, dtype) -> np.ndarray:
    """kokoro's harmonic source ``[1, samples]`` from an F0 curve ``[1, frames]``, computed in
    ``dtype`` (a float64 copy of the source module for torch.float64)."""
    gen = model.decoder.generator
    src = copy.deepcopy(gen.m_source).to(dtype)
    with torch.no_grad(), _random_draws(phase0, noise, dtype):
        f0_up = gen.f0_upsamp(torch.from_numpy(f0).to(dtype)[:, None]).transpose(1, 2)
        return src(f0_up)[0].transpose(1, 2).squeeze(1).numpy()


def reference_stages(model: KModel, ids, ref_s, durations, phase0, noise) -> dict:
    """kokoro's ``forward_with_tokens``, step by step, with the given alignment (or, with
    ``durations`` None, the predicted one) and the source's random draws patched in."""
    out = {}
    with torch.no_grad():
        p = _prosody(model, ids, ref_s, durations)
        asr = p["t_en"] @ p["aln"][None]
        feats = {}
        gen = model.decoder.generator
        hook = gen.register_forward_pre_hook(lambda m, a: feats.update(x=a[0]))
        cap = {}
        orig_transform = gen.stft.transform

        def transform(h):
            cap["har_source"] = h
            mag, ph = orig_transform(h)
            cap["har"] = torch.cat([mag, ph], dim=1)
            return mag, ph

        post = gen.conv_post.register_forward_hook(lambda m, a, o: cap.update(post=o))
        with mock.patch.object(gen.stft, "transform", transform), _random_draws(phase0, noise):
            audio = model.decoder(asr, p["F0"], p["N"], p["s"]).squeeze()
        hook.remove()
        post.remove()
    tl = lambda t: t.transpose(-1, -2).numpy()  # noqa: E731  channels-last
    out.update(
        bert=p["bert"].numpy(), d=p["d"].numpy(), duration=p["duration"].numpy(),
        pred_dur=p["pred_dur"].numpy(), F0=p["F0"].numpy(), N=p["N"].numpy(),
        t_en=tl(p["t_en"]), features=tl(feats["x"]), har_source=cap["har_source"].numpy(),
        har=tl(cap["har"]), post=tl(cap["post"]), audio=audio.numpy(),
    )  # fmt: skip
    return out


def our_stages(model, ids, ref_s, durations, phase0, noise, har=None) -> dict:
    cap = {}
    out = model(mx.array([ids]), mx.array(ref_s), pred_dur=durations, phase0=mx.array(phase0),
                noise=mx.array(noise), capture=cap)  # fmt: skip
    gen = model.decoder.generator
    f0 = np.repeat(np.asarray(cap["F0"])[..., None], gen.upsample_scale, axis=1)
    cap["har_source"] = gen.m_source(mx.array(f0), mx.array(phase0), mx.array(noise))
    s = mx.array(ref_s)[:, : model.config.style_dim]
    if har is not None:  # the generator on the reference's source spectrum
        cap["audio_given_har"] = gen(cap["features"], s, har=mx.array(har), capture=cap)[0]
    mx.eval(out.audio, cap)
    return {k: np.asarray(v) for k, v in cap.items()}


def compare(cfg: dict, seed: int, folder: Path, fixtures: bool = False,
            mean_frames: float | None = None, keep: dict | None = None) -> dict:  # fmt: skip
    """The short utterance's stages, reference and ours; ``keep`` receives both models and
    the style for further cases."""
    ref_model, path = build_reference(cfg, seed, folder, half=fixtures, mean_frames=mean_frames)
    ours = load_model(path)
    rng = np.random.default_rng(seed)
    ref_s = (rng.standard_normal((1, 2 * cfg["style_dim"])) * 0.5).astype(np.float32)
    if keep is not None:
        keep.update(ref_model=ref_model, ours=ours, ref_s=ref_s)
    samples = sum(DURATIONS) * 2 * 300
    phase0, noise = _sources(samples, seed)
    ref = reference_stages(ref_model, TOKENS, ref_s, DURATIONS, phase0, noise)
    mine = our_stages(ours, TOKENS, ref_s, DURATIONS, phase0, noise, har=ref["har"])
    rows = {
        "ALBERT (PL-BERT) output": ("bert", "bert"),
        "prosody encoder d": ("d", "d"),
        "durations (sum of sigmoids)": ("duration", "duration"),
        "F0 curve": ("F0", "F0"),
        "energy (N) curve": ("N", "N"),
        "text encoder": ("t_en", "t_en"),
        "decoder features (generator input)": ("features", "features"),
        "harmonic source (SineGen + linear + tanh)": ("har_source", "har_source"),
        "source STFT magnitudes": ("har_mag", "har_mag"),
        "generator conv_post (same source)": ("post", "post"),
        "audio (same source spectrum)": ("audio", "audio_given_har"),
        "audio (end to end)": ("audio", "audio"),
    }
    bins = cfg["istftnet"]["gen_istft_n_fft"] // 2 + 1
    ref["har_mag"], mine["har_mag"] = ref["har"][..., :bins], mine["har"][..., :bins]
    results = {name: (ref[a], mine[b]) for name, (a, b) in rows.items()}
    # a phase is only meaningful with its magnitude (and an angle next to +-pi may land on
    # either side): the source spectrum compared as complex numbers
    results["source STFT (complex: magnitudes with phases)"] = tuple(
        h[..., :bins] * np.exp(1j * h[..., bins:]) for h in (ref["har"], mine["har"])
    )
    if fixtures:
        return {"results": results, "ref_s": ref_s, "path": path, "har": ref["har"]}
    return results


@contextlib.contextmanager
def _default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _our_source(ours, f0: np.ndarray, phase0, noise) -> np.ndarray:
    """Our harmonic source ``[1, samples]`` from an F0 curve ``[1, frames]``."""
    gen = ours.decoder.generator
    f0_up = np.repeat(np.asarray(f0, np.float32)[..., None], gen.upsample_scale, axis=1)
    return np.asarray(gen.m_source(mx.array(f0_up), mx.array(phase0), mx.array(noise)))


def compare_long(ref_model, ours, ref_s, seed: int) -> tuple[list, int]:
    """The long utterance, durations predicted: ours against kokoro in float32 and in float64
    (a float64 copy of the model), to tell our own error from float32 rounding in both.
    Returns rows ``(stage, [ours-fp32, ours-fp64, fp32-fp64], checked)`` and frames."""
    with torch.no_grad():
        t32 = _prosody(ref_model, LONG_TOKENS, ref_s)
        with _default_dtype(torch.float64):
            model64 = copy.deepcopy(ref_model).double()
            t64 = _prosody(model64, LONG_TOKENS, ref_s.astype(np.float64))
    dur = t32["pred_dur"].numpy()
    frames = int(dur.sum())
    phase0, noise = _sources(frames * 600, seed)
    our_dur = np.asarray(ours.predict(mx.array([LONG_TOKENS]), mx.array(ref_s))[2])
    same = np.array_equal(our_dur, dur)
    ref = reference_stages(ref_model, LONG_TOKENS, ref_s, None, phase0, noise)
    mine = {}  # our own prediction when it agrees; else torch's (the row below fails)
    ours(mx.array([LONG_TOKENS]), mx.array(ref_s), pred_dur=None if same else dur,
         phase0=mx.array(phase0), noise=mx.array(noise), capture=mine)  # fmt: skip
    f0 = {"ours": np.asarray(mine["F0"]), "t32": ref["F0"], "t64": t64["F0"].numpy()}
    one_f0 = {  # torch fp32's F0 curve into each source: SineGen's own arithmetic
        "ours": _our_source(ours, ref["F0"], phase0, noise),
        "t32": ref["har_source"],
        "t64": reference_source(ref_model, ref["F0"], phase0, noise, torch.float64),
    }
    own_f0 = {  # each side's own F0: the F0 curve's last bits, amplified by the phase
        "ours": _our_source(ours, f0["ours"], phase0, noise),
        "t32": ref["har_source"],
        "t64": reference_source(model64, f0["t64"], phase0, noise, torch.float64),
    }

    def errs(v, part=slice(None)):
        pairs = (("ours", "t32"), ("ours", "t64"), ("t32", "t64"))
        return [rel_error(v[a][..., part], v[b][..., part]) for a, b in pairs]

    def differ(a, b):
        n = int(np.sum(a != b))
        return f"identical ({int(a.sum())} frames)" if n == 0 else f"{n} of {a.size} differ"

    sec = 24000
    rows = [
        ("durations (predicted, frames per token)",
         [differ(our_dur, dur), "", differ(t64["pred_dur"].numpy(), dur)], same),
        ("F0 curve", errs(f0), True),
        ("harmonic source, fp32 F0 into each: first second", errs(one_f0, slice(0, sec)), True),
        ("harmonic source, fp32 F0 into each: last second", errs(one_f0, slice(-sec, None)),
         True),
        ("harmonic source, fp32 F0 into each: whole", errs(one_f0), True),
        ("harmonic source, each its own F0: last second", errs(own_f0, slice(-sec, None)),
         False),
        ("harmonic source, each its own F0: whole", errs(own_f0), False),
        ("audio (end to end)", [rel_error(mine["audio"], ref["audio"]), "", ""], False),
    ]  # fmt: skip
    return rows, frames


def print_long(rows, frames: int) -> int:
    """The long utterance's table; returns the number of checked cells over tolerance."""
    print(f"\n### Long utterance: {len(LONG_TOKENS)} tokens, durations predicted, {frames} "
          f"frames ({frames * 600 / 24000:.1f} s)\n")  # fmt: skip
    print("| stage | ours vs torch fp32 | ours vs torch fp64 | torch fp32 vs torch fp64 | ok |")
    print("|---|---|---|---|---|")
    bad = 0
    for name, cells, checked in rows:
        first = cells[0]
        if isinstance(first, str):  # durations: checked is whether they agree
            ok, bad = ("yes" if checked else "NO"), bad + (not checked)
        elif checked:
            ok = "yes" if first <= TOL else "NO"
            bad += first > TOL
        else:
            ok = "note"
        text = [c if isinstance(c, str) else f"{c:.1e}" for c in cells]
        print(f"| {name} | {' | '.join(t or '-' for t in text)} | {ok} |")
    return bad


def run_official() -> int:
    torch.set_num_threads(2)
    print("| stage (Kokoro-82M, official config, random weights) | max abs err / scale | ok |")
    print("|---|---|---|")
    t0 = time.time()
    bad = 0
    keep = {}
    with tempfile.TemporaryDirectory() as tmp:
        results = compare(OFFICIAL, 0, Path(tmp), mean_frames=LONG_MEAN_FRAMES, keep=keep)
    for name, (a, b) in results.items():
        err = rel_error(b, a)
        if name == "audio (end to end)":  # see the note printed below
            near = np.mean(np.abs(b - a) <= TOL * np.abs(a).max())
            print(f"| {name} | {err:.1e} ({near:.1%} of samples within 1e-4) | note |")
            continue
        bad += err > TOL
        print(f"| {name} | {err:.1e} | {'yes' if err <= TOL else 'NO'} |")
    frames = sum(DURATIONS)
    print(f"\n{time.time() - t0:.0f} s. {len(TOKENS)} tokens, {frames} frames ({frames * 600} "
          "samples), SineGen's phases and noise fed to both sides.")  # fmt: skip
    print(END_TO_END_NOTE)
    t0 = time.time()
    rows, frames = compare_long(keep["ref_model"], keep["ours"], keep["ref_s"], 0)
    bad += print_long(rows, frames)
    print(f"\n{time.time() - t0:.0f} s. Checked: our durations equal torch's, and ours against "
          "torch fp32 where both compute from the same inputs.")  # fmt: skip
    print(LONG_NOTE)
    return 1 if bad else 0


def write_fixtures(folder: Path) -> None:
    """Reduced-config reference files for the default tests (no torch there)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        got = compare(REDUCED, 1, Path(tmp), fixtures=True)
        Path(got["path"]).replace(folder / "kokoro_reduced.pth")
        (folder / "kokoro_reduced_config.json").write_text((Path(tmp) / "config.json").read_text())
    arrays = {
        "ref_s": got["ref_s"],
        "har": got["har"],
        "tokens": np.array(TOKENS),
        "durations": np.array(DURATIONS),
    }
    write_stage_fixtures(folder, "kokoro_reduced_io", got["results"], arrays)


if __name__ == "__main__":
    main(__doc__, run_official, write_fixtures)
