"""Parity of mlx_audio_sts' SAM-Audio with the official facebookresearch/sam-audio (PyTorch).

The reference is built offline by ``sam_audio_ref`` (fetch its sources first:
``tools/parity/get_sam_audio_ref.sh``) with seeded, perturbed random weights (every gate,
norm and table moved off its initial value) and a fixed watermark message. Its state dict is
saved as ``checkpoint.pt`` + ``config.json`` and loaded by our loader (restricted
unpickler, converter); its T5 by our T5 loader's converter. Stages:

- DAC-VAE at the official config: encode (the VAE mean) and decode (watermark included).
- T5 at the t5-base config against ``transformers.T5EncoderModel``.
- A reduced DiT (dim 256, 4 heads, 2 layers) with every feature of the official one:
  the velocity for a batch of two audios of different lengths, with and without anchors.
- One DiT block at the official large width (2816, 22 heads).
- One full ``separate()`` (official ODE, midpoint 2/32) with the reference's noise.

    python tools/parity/sam_audio.py                 # the stages above, exit 1 on a failure
    python tools/parity/sam_audio.py --fixtures DIR  # tiny DiT/T5 + official codec fixtures
"""

# ruff: noqa: E402  (the reference is importable only after sam_audio_ref.setup())
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx
import numpy as np
import sam_audio_ref as ref
import torch
from parity_common import main, rel_error

import t5 as t5_parity
from mlx_audio_sts.models.sam_audio import SAMAudio, SAMAudioConfig
from mlx_audio_sts.models.sam_audio.load import _CONV_TRANSPOSE, load_model, sanitize
from mlx_audio_sts.models.sam_audio.random_weights import random_weights
from mlx_audio_sts.models.sam_audio.t5 import T5Config, T5Encoder

ref.setup()
TOL = 1e-4
REDUCED = dict(dim=256, n_heads=4, n_layers=2)
TINY = dict(dim=64, n_heads=4, n_layers=2)
LARGE_BLOCK = dict(dim=2816, n_heads=22, n_layers=1)
DESCRIPTIONS = ["man speaking", "a dog barks twice"]
ANCHORS = [[("+", 0.5, 1.0), ("-", 1.2, 1.6)], [("+", 0.1, 0.9)]]


def signals(lengths, seed=1) -> list[np.ndarray]:
    """Speech-like test audio: a few gliding partials under noise, one array per length."""
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        t = np.arange(n) / 48_000
        f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
        x = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 48_000) / k for k in (1, 2, 3, 5))
        out.append((0.2 * x + 0.02 * rng.standard_normal(n)).astype(np.float32))
    return out


def state_noise(seed: int, shape) -> np.ndarray:
    """The ODE state / noise both sides get (NumPy's, so the tests can remake it)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def ours_from_reference(model) -> tuple[SAMAudio, T5Encoder]:
    """The reference's weights through our loader: checkpoint.pt + config.json in a folder."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({k: torch.from_numpy(v) for k, v in ref.state_dict_numpy(model).items()},
                   Path(tmp) / "checkpoint.pt")  # fmt: skip
        (Path(tmp) / "config.json").write_text(json.dumps(model.ref_config))
        ours = load_model(Path(tmp))
    t5 = T5Encoder(T5Config.from_dict(model.ref_t5_config))
    weights = T5Encoder.sanitize(
        {k: mx.array(v) for k, v in ref.t5_state_dict_numpy(model).items()}
    )
    t5.load_weights(list(weights.items()), strict=True)
    return ours, t5


def text_inputs(model, t5: T5Encoder, descriptions):
    """The reference's token ids, encoded by our T5: (features, mask) as mx arrays."""
    enc = model.text_encoder.tokenizer(descriptions, truncation=True, max_length=512)
    ids = mx.array(enc["input_ids"].numpy().astype(np.int32))
    mask = mx.array(enc["attention_mask"].numpy().astype(bool))
    return t5(ids, mask), mask


def _ref_batch(model, wavs, anchors):
    return ref.processor(model)(descriptions=DESCRIPTIONS[: len(wavs)],
                                audios=[torch.from_numpy(w)[None] for w in wavs],
                                anchors=anchors)  # fmt: skip


def velocity_pair(model, ours, t5, wavs, anchors, seed=3):
    """(reference, ours) velocity at t = 0.37 for a batch of ``wavs``."""
    batch = _ref_batch(model, wavs, anchors)
    frames = int(batch.sizes.max())
    x = torch.from_numpy(state_noise(seed, (len(wavs), frames, 256)))
    with torch.inference_mode():
        args = model._get_forward_args(batch)
        v_ref = model.forward(noisy_audio=x, time=torch.full((len(wavs),), 0.37), **args)
    tf, tm = text_inputs(model, t5, DESCRIPTIONS[: len(wavs)])
    our_batch = ours.processor()(DESCRIPTIONS[: len(wavs)], wavs, anchors)
    cond = ours.conditioning(our_batch, tf, tm)
    v = ours.velocity(cond, 0.37, mx.array(x.numpy()))
    return v_ref.numpy(), np.asarray(v)


def codec_pair(model, ours, wavs):
    """(reference, ours) for encode and for decode of the reference's features."""
    batch = _ref_batch(model, wavs, None)
    message = ref.message_tensor()
    with torch.inference_mode():
        f_ref = model.audio_codec(batch.audios).transpose(1, 2)
        a_ref = model.audio_codec.decode(f_ref.transpose(1, 2))
    f = ours.audio_codec.encode(mx.array(batch.audios.numpy().transpose(0, 2, 1)))
    msg = mx.array(message.expand(len(wavs), -1).numpy().astype(np.int32))
    a = ours.audio_codec.decode(mx.array(f_ref.numpy()), msg)
    return (f_ref.numpy(), np.asarray(f)), (a_ref.numpy()[:, 0], np.asarray(a)[..., 0])


def separate_pair(model, ours, t5, wavs, ode_opt=None, chunk=None):
    batch = _ref_batch(model, wavs, None)
    frames = int(batch.sizes.max())
    noise = torch.from_numpy(state_noise(4, (len(wavs), frames, 256)))
    kw = (
        {}
        if ode_opt is None
        else {
            "ode_opt": {"method": ode_opt["method"], "options": {"step_size": ode_opt["step_size"]}}
        }
    )
    out = model.separate(batch, noise=noise, **kw)
    tf, tm = text_inputs(model, t5, DESCRIPTIONS[: len(wavs)])
    msg = mx.array(ref.message_tensor().expand(2 * len(wavs), -1).numpy().astype(np.int32))
    mine = ours.separate(wavs, DESCRIPTIONS[: len(wavs)], noise=mx.array(noise.numpy()),
                         text_features=tf, text_mask=tm, message=msg, ode_opt=ode_opt,
                         ode_decode_chunk_size=chunk)  # fmt: skip
    pairs = {}
    for name in ("target", "residual"):
        r = np.concatenate([w.numpy().reshape(-1) for w in getattr(out, name)])
        o = np.concatenate([np.asarray(w).reshape(-1) for w in getattr(mine, name)])
        pairs[name] = (r, o)
    return pairs


def mlx_audio_folder(model, folder: Path) -> None:
    """The reference's weights as mlx-audio 0.6.2 holds them (its own loader, its parameter
    names and layouts: what mlx-community's conversions are), saved to ``folder``."""
    from mlx.utils import tree_flatten
    from mlx_audio.sts.models.sam_audio import SAMAudio as TheirModel
    from mlx_audio.sts.models.sam_audio import SAMAudioConfig as TheirConfig
    from mlx_audio.sts.models.sam_audio.model import _load_weights

    theirs = TheirModel(TheirConfig.from_dict(model.ref_config))
    _load_weights(theirs, {k: mx.array(v) for k, v in ref.state_dict_numpy(model).items()})
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(theirs.parameters())))
    (folder / "config.json").write_text(json.dumps(model.ref_config))


def mlx_audio_stages(model, t5, wavs, stage) -> None:
    """Our loader on mlx-audio's layout against the reference without the term mlx-audio
    drops (``align_masked_video``'s gate set to 0 on the reference)."""
    import warnings

    with tempfile.TemporaryDirectory() as tmp:
        mlx_audio_folder(model, Path(tmp))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours = load_model(Path(tmp))
    assert any("align_masked_video" in str(w.message) for w in caught), "no warning"
    with torch.no_grad():
        gate = model.align_masked_video.gate.clone()
        model.align_masked_video.gate.zero_()
    try:
        t0 = time.perf_counter()
        (_, _), (ae, ao) = codec_pair(model, ours, wavs[:1])
        stage("mlx-audio 0.6.2 layout: codec decode with watermark", ae, ao, t0)
        stage("mlx-audio 0.6.2 layout: DiT velocity, anchors (reference without "
              "align_masked_video, which that layout drops)",
              *velocity_pair(model, ours, t5, wavs, ANCHORS), t0)  # fmt: skip
    finally:
        with torch.no_grad():
            model.align_masked_video.gate.copy_(gate)


def run_official() -> int:
    rows, failed = [], False

    def stage(name, ref_out, ours_out, t0, err=None):
        nonlocal failed
        err = rel_error(ours_out, ref_out) if err is None else err
        failed |= not err <= TOL
        rows.append(f"| {name} | {err:.1e} | {'ok' if err <= TOL else 'FAIL'} | "
                    f"{time.perf_counter() - t0:.0f} s |")  # fmt: skip
        print(rows[-1], file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    model = ref.build_reference(REDUCED, t5=ref.SMALL_T5, seed=0)
    ref.fixed_watermark(model)
    ours, t5 = ours_from_reference(model)
    wavs = signals([96_000, 70_000])
    (fe, fo), (ae, ao) = codec_pair(model, ours, wavs)
    stage("DAC-VAE encode (official config, 2 audios)", fe, fo, t0)
    stage("DAC-VAE decode with watermark (official config)", ae, ao, t0)
    t0 = time.perf_counter()
    stage("T5 encoder (t5-base config)", None, None, t0, err=t5_parity.compare(None, seed=0))
    t0 = time.perf_counter()
    stage("DiT velocity, reduced, no anchors", *velocity_pair(model, ours, t5, wavs, None), t0)
    t0 = time.perf_counter()
    stage("DiT velocity, reduced, anchors", *velocity_pair(model, ours, t5, wavs, ANCHORS), t0)
    t0 = time.perf_counter()
    pairs = separate_pair(model, ours, t5, wavs[:1])
    for name, (r, o) in pairs.items():
        stage(f"separate() {name} (midpoint 2/32)", r, o, t0)
    t0 = time.perf_counter()
    pairs = separate_pair(model, ours, t5, wavs[:1], chunk=25)
    for name, (r, o) in pairs.items():
        stage(f"separate() {name}, decoded in 25-frame chunks", r, o, t0)
    mlx_audio_stages(model, t5, wavs, stage)
    del model, ours
    t0 = time.perf_counter()
    big = ref.build_reference(LARGE_BLOCK, t5=ref.SMALL_T5, seed=5)
    ours_big, t5_big = ours_from_reference(big)
    short = signals([48_000, 30_000])
    stage("DiT velocity, one block at the large width, anchors",
          *velocity_pair(big, ours_big, t5_big, short, [[("+", 0.2, 0.6)], []]), t0)  # fmt: skip
    print("| stage (random, perturbed weights; fixed watermark message) | max abs err / scale | ok "
          "| time |\n|---|---|---|---|")  # fmt: skip
    print("\n".join(rows))
    print("\nReference: official SAMAudio with the official DAC-VAE, a random T5 of t5-base's "
          "shape (4x smaller where only T5 is not the stage), DiT dim 256 / 4 heads / 2 layers "
          "(the large-width row: 2816 / 22 heads / 1 layer); two audios of 2 s and 1.46 s; "
          "loaded by our loader from its checkpoint.pt + config.json.")  # fmt: skip
    return 1 if failed else 0


def to_official(weights: dict) -> dict:
    """Our layout -> the official checkpoint's (the inverse of ``load.sanitize``)."""
    out = {}
    for key, value in weights.items():
        v = np.asarray(value)
        if key.startswith("audio_codec."):
            conv_t = _CONV_TRANSPOSE.match(key) is not None
            key = key.replace(".layers.", ".")
            if conv_t:
                v = v.transpose(2, 0, 1)
            elif v.ndim == 3 and (key.endswith(".weight") or key.endswith(".weight_v")):
                v = v.transpose(0, 2, 1)
        elif v.ndim == 3 and key.endswith(".weight"):
            v = v.transpose(0, 2, 1)
        out[key] = v
    return out


def write_mlx_audio_keys(folder: Path) -> None:
    """``sam_audio_mlx_audio_keys.json``: mlx-audio 0.6.2's parameter names and shapes for the
    tiny config (the layout of mlx-community's conversions), for the loader's test."""
    from mlx.utils import tree_flatten
    from mlx_audio.sts.models.sam_audio import SAMAudio as TheirModel
    from mlx_audio.sts.models.sam_audio import SAMAudioConfig as TheirConfig

    config = json.loads((folder / "sam_audio_tiny.json").read_text())["config"]
    theirs = TheirModel(TheirConfig.from_dict(config))
    keys = {k: list(v.shape) for k, v in tree_flatten(theirs.parameters())}
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in keys.items())
    (folder / "sam_audio_mlx_audio_keys.json").write_text("{\n" + lines + "\n}\n")


def write_fixtures(folder: Path) -> None:
    """Tiny DiT and T5 with the official codec, weights from ``random_weights`` (seed 0; the
    test regenerates them), and the reference's outputs for them."""
    folder.mkdir(parents=True, exist_ok=True)
    model = ref.build_reference(TINY, t5=ref.SMALL_T5, seed=0)
    ref.fixed_watermark(model)
    cfg = SAMAudioConfig.from_dict(model.ref_config)
    ours = SAMAudio(cfg)
    gen = random_weights(ours, seed=0)
    official = to_official(gen)
    back = sanitize({k: mx.array(v) for k, v in official.items()})
    assert all(np.array_equal(np.asarray(back[k]), np.asarray(gen[k])) for k in gen)
    state = {k: torch.from_numpy(v) for k, v in official.items()}
    state.update({f"text_encoder.model.{k}": torch.from_numpy(v)
                  for k, v in ref.t5_state_dict_numpy(model).items()})  # fmt: skip
    model.load_state_dict(state, strict=True)
    ours.load_weights(list(gen.items()), strict=True)
    t5 = T5Encoder(T5Config.from_dict(model.ref_t5_config))
    t5.load_weights(
        list(
            T5Encoder.sanitize(
                {k: mx.array(v) for k, v in ref.t5_state_dict_numpy(model).items()}
            ).items()
        ),
        strict=True,
    )
    wavs = signals([19_200, 14_000])
    (fe, fo), (ae, ao) = codec_pair(model, ours, wavs)
    v0 = velocity_pair(model, ours, t5, wavs, None)
    v1 = velocity_pair(model, ours, t5, wavs, [[("+", 0.1, 0.2)], [("-", 0.05, 0.15)]])
    ode = {"method": "midpoint", "step_size": 0.5}
    sep = separate_pair(model, ours, t5, wavs[:1], ode_opt=ode)
    enc = model.text_encoder.tokenizer(DESCRIPTIONS, truncation=True, max_length=512)
    arrays = {"wav0": wavs[0], "wav1": wavs[1], "ids": enc["input_ids"].numpy().astype(np.int32),
              "ids_mask": enc["attention_mask"].numpy().astype(bool),
              "message": ref.message_tensor().numpy().astype(np.int32)}  # fmt: skip
    arrays.update({f"t5.{k}": v for k, v in ref.t5_state_dict_numpy(model).items()})
    stages = {"encode": (fe, fo), "decode": (ae, ao), "velocity": v0, "velocity_anchors": v1,
              "target": sep["target"], "residual": sep["residual"]}  # fmt: skip
    names = {}
    for i, (name, (r, o)) in enumerate(stages.items()):
        arrays[f"stage{i}"] = np.asarray(r, np.float32)
        names[f"stage{i}"] = name
        print(f"{name}: {rel_error(o, r):.1e}")
    np.savez_compressed(folder / "sam_audio_tiny.npz", **arrays)
    meta = {"stages": names, "config": model.ref_config, "t5_config": model.ref_t5_config,
            "official_keys": {k: list(v.shape) for k, v in official.items()}}  # fmt: skip
    (folder / "sam_audio_tiny.json").write_text(json.dumps(meta, indent=1) + "\n")
    write_mlx_audio_keys(folder)


if __name__ == "__main__":
    main(__doc__, run_official, write_fixtures)
