"""SAM-Audio: the reference's outputs (tools/parity/sam_audio.py --fixtures: official codec,
tiny DiT and T5, weights regenerated here from their seed), the converter on the official
checkpoint's names, the processor's anchors, the ODE options, chunked and streaming
separation on the real mixture, loading from a folder and the loopback Hub, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)

import mlx.core as mx
import numpy as np
import pytest
import sentencepiece as spm
from mlx_audio_sts import SAMAudio, SAMAudioConfig, SAMAudioProcessor, save_audio
from mlx_audio_sts.models.sam_audio.load import from_pretrained, load_model, sanitize, save_model
from mlx_audio_sts.models.sam_audio.model import ode_grid
from mlx_audio_sts.models.sam_audio.random_weights import randomize
from mlx_audio_sts.models.sam_audio.separate import chunk_starts
from mlx_audio_sts.models.sam_audio.t5 import T5Config, T5Encoder, T5Tokenizer
from parity_io import rel_error

FIXTURE = Path(__file__).parents[1] / "fixtures" / "parity" / "sam_audio_tiny"
MIXTURE = (Path(__file__).parents[1] / "fixtures" / "sam_audio"
           / "702459_6464538-hq_690345_1453392-hq_snr-3.0.wav")  # fmt: skip
# a codec small enough for whole-file tests: the official strides, narrow layers
SMALL = {
    "audio_codec": {"encoder_dim": 4, "latent_dim": 32, "decoder_dim": 96, "codebook_dim": 16},
    "in_channels": 96,
    "transformer": {"dim": 32, "n_heads": 2, "n_layers": 1, "context_dim": 32, "out_channels": 32},
    "text_encoder": {"dim": 16},
}
T5_SMALL = {"vocab_size": 64, "d_model": 16, "num_layers": 1, "num_heads": 2, "d_kv": 8,
            "d_ff": 32}  # fmt: skip
SENTENCES = ["man speaking", "a dog barking", "music playing", "rain on a roof"] * 8


@pytest.fixture(scope="module")
def reference():
    data = dict(np.load(FIXTURE.with_suffix(".npz")))
    meta = json.loads(FIXTURE.with_suffix(".json").read_text())
    stages = {name: data[key] for key, name in meta["stages"].items()}
    model = randomize(SAMAudio(SAMAudioConfig.from_dict(meta["config"])), seed=0)
    t5 = T5Encoder(T5Config.from_dict(meta["t5_config"]))
    t5w = {k[3:]: mx.array(v) for k, v in data.items() if k.startswith("t5.")}
    t5.load_weights(list(T5Encoder.sanitize(t5w).items()), strict=True)
    ids, mask = mx.array(data["ids"]), mx.array(data["ids_mask"])
    return model, t5(ids, mask), mask, data, stages, meta


def test_codec_matches_reference(reference):
    model, _, _, data, stages, _ = reference
    wavs = [data["wav0"], data["wav1"]]
    batch = model.processor()(["a", "b"], wavs)
    features = model.audio_codec.encode(batch.audios)
    assert rel_error(np.asarray(features), stages["encode"]) < 1e-4
    message = mx.broadcast_to(mx.array(data["message"]), (2, 16))
    audio = model.audio_codec.decode(mx.array(stages["encode"]), message)
    assert rel_error(np.asarray(audio)[..., 0], stages["decode"]) < 1e-4
    # chunked decoding: the main path in pieces, the watermark over the whole signal
    chunked = model.audio_codec.decode(mx.array(stages["encode"]), message,
                                       chunk_size=3)  # fmt: skip
    assert rel_error(np.asarray(chunked)[..., 0], stages["decode"]) < 1e-4


ANCHORS = [[("+", 0.1, 0.2)], [("-", 0.05, 0.15)]]


@pytest.mark.parametrize("stage, anchors", [("velocity", None), ("velocity_anchors", ANCHORS)])
def test_velocity_matches_reference(reference, stage, anchors):
    model, text, mask, data, stages, _ = reference
    batch = model.processor()(["man speaking", "a dog barks twice"], [data["wav0"], data["wav1"]],
                              anchors)  # fmt: skip
    cond = model.conditioning(batch, text, mask)
    x = _noise(3, (2, batch.audio_pad_mask.shape[1], 256))
    v = model.velocity(cond, 0.37, mx.array(x))
    assert rel_error(np.asarray(v), stages[stage]) < 1e-4


def _noise(seed, shape):
    """The state the parity script fed both sides (its ``state_noise``)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_separate_matches_reference(reference):
    model, text, mask, data, stages, _ = reference
    noise = _noise(4, (1, stages["target"].size // 1920, 256))
    message = mx.broadcast_to(mx.array(data["message"]), (2, 16))
    out = model.separate([data["wav0"]], ["man speaking"], noise=mx.array(noise),
                         text_features=text[:1, : int(mask[0].sum())],
                         text_mask=mask[:1, : int(mask[0].sum())], message=message,
                         ode_opt={"method": "midpoint", "step_size": 0.5})  # fmt: skip
    assert rel_error(np.asarray(out.target[0])[:, 0], stages["target"]) < 1e-4
    assert rel_error(np.asarray(out.residual[0])[:, 0], stages["residual"]) < 1e-4
    assert out.peak_memory > 0


def test_converter_maps_official_names(reference):
    """Random arrays under every official checkpoint name and shape load strictly."""
    model, *_, meta = reference
    rng = np.random.default_rng(0)
    official = {k: mx.array(rng.standard_normal(s).astype(np.float32))
                for k, s in meta["official_keys"].items()}  # fmt: skip
    official["text_encoder.model.shared.weight"] = mx.zeros((4, 4))  # dropped, as T5 loads apart
    fresh = SAMAudio(model.config)
    fresh.load_weights(list(sanitize(official).items()), strict=True)


def test_processor_anchors_and_padding():
    proc = SAMAudioProcessor()
    batch = proc(["a", "b"], [np.zeros(96_000, np.float32), np.zeros(62_400, np.float32)],
                 anchors=[[("+", 0.5, 1.0), ("-", 1.2, 1.6)], []])  # fmt: skip
    assert batch.sizes == [50, 33] and batch.wav_sizes == [96_000, 62_400]
    assert batch.audios.shape == (2, 96_000, 1)
    assert np.asarray(batch.audio_pad_mask).sum(1).tolist() == [50, 33]
    assert np.asarray(batch.anchor_ids).tolist() == [[0, 3, 1, 2], [0, 3, 3, 3]]
    align = np.asarray(batch.anchor_alignment)
    # frames ceil(t * 48000 / 1920) in [start, end) point at the anchor's entry
    assert align[0, 13:25].tolist() == [2] * 12 and align[0, 30:40].tolist() == [3] * 10
    assert align[0, 12] == 0 and align[0, 25] == 0 and (align[1, 33:] == 1).all()
    none = proc(["a"], [np.zeros(1000, np.float32)])
    assert np.asarray(none.anchor_ids).tolist() == [[0, 3]]


@pytest.mark.parametrize("kwargs, match", [
    ({"descriptions": ["a", "b"]}, "one text per audio"),
    ({"descriptions": "speech"}, "one text per audio"),
    ({"anchors": [[("*", 0.0, 1.0)]]}, "token must be"),
    ({"anchors": [[("+", 1.0, 0.5)]]}, "start < end"),
    ({"anchors": [[("+", 5.0, 6.0)]]}, "starts after"),
    ({"anchors": [[("+", 0.0)]]}, "entries must be"),
    ({"audios": [np.full(10, np.nan, np.float32)]}, "NaN"),
    ({"audios": [np.zeros(0, np.float32)]}, "empty"),
    ({"audios": [np.zeros((2, 2, 2), np.float32)]}, "must be a path"),
])  # fmt: skip
def test_processor_errors(kwargs, match):
    args = {"descriptions": ["speech"], "audios": [np.zeros(48_000, np.float32)], **kwargs}
    with pytest.raises(ValueError, match=match):
        SAMAudioProcessor()(**args)


def test_processor_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        SAMAudioProcessor()(["speech"], [str(tmp_path / "nope.wav")])


def test_ode_grid():
    assert ode_grid(None)[0] == "midpoint" and len(ode_grid(None)[1]) == 17
    method, grid = ode_grid({"method": "euler", "step_size": 2 / 64})
    assert method == "euler" and len(grid) == 33 and grid[-1] == 1.0
    _, grid = ode_grid({"method": "midpoint", "step_size": 0.3})  # torchdiffeq: last step short
    assert np.allclose(grid, [0, 0.3, 0.6, 0.9, 1.0])
    _, grid = ode_grid({"method": "midpoint", "options": {"step_size": 0.25}})
    assert len(grid) == 5
    for bad in (0, 1, 1.5, -0.1, "0.1", True):
        with pytest.raises(ValueError, match="between 0 and 1"):
            ode_grid({"method": "euler", "step_size": bad})
    with pytest.raises(ValueError, match="'midpoint' or 'euler'"):
        ode_grid({"method": "rk4", "step_size": 0.1})


def test_chunk_starts():
    assert chunk_starts(100, 100, 30) == [0]
    assert chunk_starts(101, 100, 30) == [0, 70]
    assert chunk_starts(480_000, 192_000, 48_000) == [0, 144_000, 288_000]


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    """A saved small model with a T5 folder (spiece.model trained here) beside it."""
    root = tmp_path_factory.mktemp("sam")
    mx.random.seed(0)
    model = randomize(SAMAudio(SAMAudioConfig.from_dict(SMALL)), seed=1)
    save_model(model, root / "model")
    t5_dir = root / "model" / "text_encoder"
    t5_dir.mkdir()
    with open(t5_dir / "spiece.model", "wb") as f:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(SENTENCES), model_writer=f, vocab_size=40, model_type="unigram",
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2,
        )  # fmt: skip
    t5 = T5Encoder(T5Config.from_dict(T5_SMALL))
    mx.eval(t5.parameters())
    from mlx.utils import tree_flatten

    mx.save_safetensors(str(t5_dir / "model.safetensors"), dict(tree_flatten(t5.parameters())))
    (t5_dir / "config.json").write_text(json.dumps({**T5_SMALL, "model_type": "t5"}))
    return root / "model"


@pytest.fixture(scope="module")
def small_model(small_folder):
    return from_pretrained(small_folder)


def test_folder_round_trip(small_folder, small_model):
    again = SAMAudio(small_model.config)
    weights = mx.load(str(small_folder / "model.safetensors"))
    again.load_weights(list(sanitize(weights).items()), strict=True)
    assert isinstance(small_model._text[1], T5Tokenizer)


def test_hub_loading(small_folder, hub_server, hub_env):
    hub_server.add_repo("facebook/sam-audio-tiny", small_folder)
    model = SAMAudio.from_pretrained("facebook/sam-audio-tiny")
    assert model.config.transformer.dim == 32
    proc = SAMAudioProcessor.from_pretrained("facebook/sam-audio-tiny")
    assert (proc.sample_rate, proc.hop_length) == (48_000, 1920)


def test_separate_long_and_streaming_on_real_mixture(small_model):
    audio, sr = mlx_audio_io.load(str(MIXTURE), sr=48_000, mono=True)
    n = audio.shape[0]
    ode = {"method": "euler", "step_size": 0.5}
    long = small_model.separate_long([str(MIXTURE)], ["man speaking"], chunk_seconds=4.0,
                                     overlap_seconds=1.0, ode_opt=ode, verbose=False)  # fmt: skip
    assert long.target[0].shape == (n, 1) and long.residual[0].shape == (n, 1)
    target = np.asarray(long.target[0])[:, 0]
    assert np.isfinite(target).all() and np.abs(target).max() > 0
    # crossfade continuity: no jump at the chunk joins beyond the signal's own steps
    steps = np.abs(np.diff(target))
    for start in chunk_starts(n, 192_000, 48_000)[1:]:
        assert steps[start - 2 : start + 48_002].max() <= 4 * steps.max() + 1e-6
    chunks = list(small_model.separate_streaming([str(MIXTURE)], ["man speaking"],
                                                 chunk_seconds=4.0, overlap_seconds=1.0,
                                                 ode_opt=ode))  # fmt: skip
    assert [c.chunk_idx for c in chunks] == [0, 1, 2] and chunks[-1].is_last
    assert chunks[-1].noise is not None and chunks[-1].peak_memory > 0
    joined = np.concatenate([np.asarray(c.target)[:, 0] for c in chunks])
    np.testing.assert_array_equal(joined, target)
    got = []
    count = small_model.separate_streaming([str(MIXTURE)], ["man speaking"], chunk_seconds=4.0,
                                           overlap_seconds=1.0, ode_opt=ode,
                                           target_callback=lambda c, *_: got.append(c))  # fmt: skip
    assert count == n and sum(c.shape[0] for c in got) == n


def test_seed_reproducible_and_anchor_errors(small_model):
    wav = np.random.default_rng(0).standard_normal(48_000).astype(np.float32) * 0.1
    ode = {"method": "euler", "step_size": 0.5}
    a = small_model.separate_long([wav], ["speech"], ode_opt=ode, seed=7, verbose=False)
    b = small_model.separate_long([wav], ["speech"], ode_opt=ode, seed=7, verbose=False)
    np.testing.assert_array_equal(np.asarray(a.target[0]), np.asarray(b.target[0]))
    with pytest.raises(ValueError, match="separate\\(\\) only"):
        small_model.separate_long([wav], ["speech"], anchors=[[("+", 0.0, 0.5)]])
    with pytest.raises(ValueError, match="separate\\(\\) only"):
        small_model.separate_streaming([wav], ["speech"], anchors=[[("+", 0.0, 0.5)]])
    with pytest.raises(ValueError, match="between 0 and 1"):
        small_model.separate([wav], ["speech"], ode_opt={"method": "euler", "step_size": 1})
    with pytest.raises(ValueError, match="overlap_seconds"):
        small_model.separate_long([wav], ["speech"], chunk_seconds=2.0, overlap_seconds=2.0)
    out = small_model.separate([wav], ["speech"], anchors=[[("+", 0.2, 0.6)]], ode_opt=ode)
    assert out.target[0].shape == (48_000, 1)  # 25 whole frames


def test_save_audio(tmp_path):
    path = tmp_path / "t.wav"
    save_audio(mx.zeros((4800, 1)), path, sample_rate=48_000)
    audio, sr = mlx_audio_io.load(str(path))
    assert sr == 48_000 and audio.shape == (4800, 1)
    with pytest.raises(ValueError, match="samples"):
        save_audio(np.zeros((2, 3, 4)), tmp_path / "bad.wav")


def test_cli(small_folder, tmp_path):
    cmd = [sys.executable, "-m", "mlx_audio_sts.cli", "sam", "--audio", str(MIXTURE),
           "--description", "man speaking", "--anchor", "+,1.0,2.0", "--method", "euler",
           "--steps", "2", "-m", str(small_folder), "-o", str(tmp_path), "-q"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    outs = run.stdout.split()
    assert [Path(p).name for p in outs] == [
        f"{MIXTURE.stem}_target.wav",
        f"{MIXTURE.stem}_residual.wav",
    ]
    loud = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=300)  # not quiet
    assert loud.returncode == 0 and "ODE step 2/2" in loud.stderr and "peak memory" in loud.stderr
    bad = subprocess.run(cmd + ["--steps", "1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "--steps" in bad.stderr
    bad = subprocess.run(cmd + ["--long"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "--anchor" in bad.stderr


def test_mlx_audio_layout_loads(reference, tmp_path):
    """mlx-audio's names and layouts (mlx-community's conversions) load, with a warning for
    the align_masked_video weights they lack; the same values land in the same places as
    through the official names (tools/parity/sam_audio.py checks the numbers)."""
    *_, meta = reference
    keys = json.loads((FIXTURE.parent / "sam_audio_mlx_audio_keys.json").read_text())
    rng = np.random.default_rng(0)
    weights = {k: mx.array(rng.standard_normal(s).astype(np.float32)) for k, s in keys.items()}
    mx.save_safetensors(str(tmp_path / "model.safetensors"), weights)
    (tmp_path / "config.json").write_text(json.dumps(meta["config"]))
    with pytest.warns(UserWarning, match="align_masked_video"):
        model = load_model(tmp_path)
    lstm = "audio_codec.decoder.wm_model.encoder_block.post_0.lstm.layers.1."
    ours = model.audio_codec.decoder.wm_model.encoder_block.post.layers[0].lstm
    np.testing.assert_array_equal(
        np.asarray(ours["weight_hh_l1"]), np.asarray(weights[lstm + "Wh"])
    )
    np.testing.assert_array_equal(np.asarray(ours["bias_ih_l1"] + ours["bias_hh_l1"]),
                                  np.asarray(weights[lstm + "bias"]))  # fmt: skip
    conv = model.audio_codec.encoder.block.layers[1].block.layers[0].block.layers[1]
    mine = np.asarray(conv.weight_v)  # [out, k, in], as mlx-audio stores it
    np.testing.assert_array_equal(
        mine, np.asarray(weights["audio_codec.encoder.blocks.0.res1.conv1.weight_v"])
    )
    assert float(model.align_masked_video.gate[0]) == 0.0
