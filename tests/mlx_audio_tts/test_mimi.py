"""Mimi against transformers' MimiModel, through fixtures written by tools/parity/mimi.py (a
reduced config: every code path, small widths, a 12-step attention window), plus streaming,
loading in every layout (transformers', moshi's, ours) from a folder, a file and the Hub, and
errors. No torch here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_audio_tts.codecs.mimi import (
    Mimi,
    ModelArgs,
    StreamingDecoder,
    build_model,
    convert,
    load_model,
    save_model,
)

FIX = Path(__file__).parent.parent / "fixtures" / "mimi"
TOL = 1e-4
MOSHI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"


def rel_error(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIX / "mimi_reduced_io.npz"))


@pytest.fixture(scope="module")
def model():
    return load_model(FIX)  # transformers' save_pretrained folder


def _params(m) -> dict:
    return {k: np.array(v) for k, v in tree_flatten(m.parameters())}


def _same_params(a, b) -> bool:
    pa, pb = _params(a), _params(b)
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_encode_matches_transformers(model, ref):
    latent = model.encoder_latents(mx.array(ref["audio_in"])[None, :, None])[0]
    assert rel_error(latent, ref["latent"]) <= TOL
    codes = model.encode(ref["audio_in"])  # numpy in, 1-D
    assert codes.dtype == mx.int32 and codes.shape == ref["codes"].shape == (5, 40)
    np.testing.assert_array_equal(np.array(codes), ref["codes"])
    batched = model.encode(np.stack([ref["audio_in"], ref["audio_in"]])[:, :, None])
    assert batched.shape == (2, 5, 40)
    np.testing.assert_array_equal(np.array(batched[1]), ref["codes"])


def test_decode_matches_transformers(model, ref):
    audio = model.decode(ref["codes"])
    assert audio.shape == (ref["audio_out"].size, 1) == (40 * model.samples_per_frame, 1)
    assert rel_error(audio[:, 0], ref["audio_out"]) <= TOL
    batched = model.decode(mx.array(ref["codes"])[None])
    assert batched.shape == (1, ref["audio_out"].size, 1)
    assert rel_error(batched[0, :, 0], ref["audio_out"]) <= TOL


def test_fewer_codebooks_decode_coarser(model, ref):
    coarse = np.array(model.decode(ref["codes"][:2]))
    assert coarse.shape == (ref["audio_out"].size, 1) and np.isfinite(coarse).all()
    assert not np.allclose(coarse[:, 0], ref["audio_out"], atol=1e-3)


@pytest.mark.parametrize("frames_per_chunk", [1, 2, 3, 5, 7, 40])
def test_streaming_decode_equals_one_shot(model, ref, frames_per_chunk):
    codes = mx.array(ref["codes"])
    whole = np.array(model.decode(codes))
    chunks = [codes[:, i : i + frames_per_chunk] for i in range(0, 40, frames_per_chunk)]
    parts = [np.array(p) for p in model.decode_stream(chunks)]
    assert [p.shape[0] for p in parts] == [c.shape[1] * model.samples_per_frame for c in chunks]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5 * np.abs(whole).max())


def test_decode_step_batched_and_reset(model, ref):
    codes = mx.array(ref["codes"])[None]  # [1, 5, 40]
    whole = np.array(model.decode(codes))
    stream = StreamingDecoder(model)
    out = [stream.decode_step(codes[:, :, i]) for i in range(40)]
    assert all(o.shape == (1, model.samples_per_frame, 1) for o in out)
    np.testing.assert_allclose(np.concatenate(out, axis=1), whole, atol=1e-5 * np.abs(whole).max())
    assert stream.frames == 40
    stream.reset()  # a new stream starts from silence again
    first = np.array(stream.push(codes[:, :, :3]))
    np.testing.assert_allclose(
        first, whole[:, : 3 * model.samples_per_frame], atol=1e-5 * np.abs(whole).max()
    )


def test_state_matters(model, ref):
    """Decoding frames on their own (no carried state) is not what the stream gives."""
    codes = mx.array(ref["codes"])
    whole = np.array(model.decode(codes))
    alone = np.concatenate([np.array(model.decode(codes[:, i : i + 1])) for i in range(40)])
    assert not np.allclose(alone, whole, atol=1e-4 * np.abs(whole).max())


_PREFIXES = [  # transformers -> moshi, at the start of a name
    ("encoder_transformer.", "encoder_transformer.transformer."),
    ("decoder_transformer.", "decoder_transformer.transformer."),
    ("encoder.layers.", "encoder.model."),
    ("decoder.layers.", "decoder.model."),
    ("quantizer.semantic_residual_vector_quantizer.layers", "quantizer.rvq_first.vq.layers"),
    ("quantizer.acoustic_residual_vector_quantizer.layers", "quantizer.rvq_rest.vq.layers"),
    ("quantizer.semantic_residual_vector_quantizer", "quantizer.rvq_first"),
    ("quantizer.acoustic_residual_vector_quantizer", "quantizer.rvq_rest"),
]
_PARTS = [  # transformers -> moshi, anywhere in a name
    ("mlp.fc1", "linear1"),
    ("mlp.fc2", "linear2"),
    ("self_attn.o_proj", "self_attn.out_proj"),
    ("input_layernorm", "norm1"),
    ("post_attention_layernorm", "norm2"),
    ("self_attn_layer_scale", "layer_scale_1"),
    ("mlp_layer_scale", "layer_scale_2"),
    (".codebook.initialized", "._codebook._initialized"),
    (".codebook.", "._codebook."),
    ("embed_sum", "embedding_sum"),
]


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """transformers' half-split RoPE rows -> moshi's interleaved ones."""
    rows, cols = w.shape
    return w.reshape(heads, 2, rows // heads // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def _to_moshi(weights: dict, args: ModelArgs) -> dict:
    """transformers' names -> moshi's (tokenizer-e351c8d8's): the inverse of the converter."""
    transposed = Mimi.transposed_conv_names_for(args)
    out = {}
    for k, v in weights.items():
        m = k
        for pre, rep in _PREFIXES:
            if m.startswith(pre):
                m = rep + m[len(pre) :]
        for old, new in _PARTS:
            m = m.replace(old, new)
        if k in ("downsample.conv.weight", "upsample.conv.weight"):
            kind = "conv" if k.startswith("down") else "convtr"
            m = m.replace(".conv.", f".{kind}.{kind}.{kind}.")
        elif ".conv." in k:
            kind = "convtr" if k in transposed else "conv"
            m = m.replace(".conv.", f".{kind}.{kind}.", 1)
        if k.endswith("self_attn.q_proj.weight"):
            base = k[: -len("q_proj.weight")]
            q = _unpermute(weights[base + "q_proj.weight"], args.num_attention_heads)
            kw = _unpermute(weights[base + "k_proj.weight"], args.num_key_value_heads)
            fused = np.concatenate([q, kw, weights[base + "v_proj.weight"]])
            out[m.replace("q_proj.weight", "in_proj_weight")] = fused
        elif not k.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight")):
            out[m] = v
    return out


def _hf_weights() -> dict:
    return {k: np.array(v) for k, v in mx.load(str(FIX / "model.safetensors")).items()}


def test_moshi_layout_loads_alike(model, tmp_path):
    args = model.config
    moshi = _to_moshi(_hf_weights(), args)
    assert "encoder.model.0.conv.conv.weight" in moshi
    assert "quantizer.rvq_first.vq.layers.0._codebook.embedding_sum" in moshi
    assert "decoder_transformer.transformer.layers.1.self_attn.in_proj_weight" in moshi
    assert "upsample.convtr.convtr.convtr.weight" in moshi
    assert _same_params(build_model(args, moshi, torch_layout=True), model)
    # a file beside a config.json of another model (moshi's LM repo) gets the official config,
    # so here the reduced config goes next to it
    folder = tmp_path / "moshi"
    folder.mkdir()
    mx.save_safetensors(str(folder / MOSHI_FILE), {k: mx.array(v) for k, v in moshi.items()})
    shutil.copy(FIX / "config.json", folder / "config.json")
    assert _same_params(load_model(folder / MOSHI_FILE), model)
    assert _same_params(load_model(folder), model)  # the folder's one tokenizer-*.safetensors
    # bfloat16 (moshiko-pytorch-bf16) loads as float32
    bf16 = {k: mx.array(v).astype(mx.bfloat16) for k, v in moshi.items()}
    loaded = build_model(args, bf16, torch_layout=True)
    assert all(v.dtype == mx.float32 for _, v in tree_flatten(loaded.parameters()))


def test_converter_is_idempotent_and_ours_round_trips(model, tmp_path):
    once = convert(_hf_weights(), model.config, torch_layout=True)
    twice = convert(once, model.config, torch_layout=False)
    assert once.keys() == twice.keys()
    assert all(np.array_equal(np.array(once[k]), np.array(twice[k])) for k in once)
    folder = save_model(model, tmp_path / "ours")
    assert _same_params(load_model(folder), model)
    saved = mx.load(str(folder / "model.safetensors"))
    assert saved["decoder.layers.2.conv.weight"].shape == (16, 8, 32)  # [out, kernel, in]
    assert saved["upsample.conv.weight"].shape == (32, 4, 1)  # depthwise [ch, kernel, 1]
    assert saved["encoder.layers.0.conv.weight"].shape == (4, 7, 1)


def test_loads_by_repo_id_through_the_hub(model, hub_server, hub_env, tmp_path):
    repo = tmp_path / "kyutai"
    repo.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(FIX / name, repo / name)
    (repo / "README.md").write_text("not fetched")
    hub_server.add_repo("kyutai/mimi", repo)
    moshi_repo = tmp_path / "moshiko"
    moshi_repo.mkdir()
    moshi = {k: mx.array(v) for k, v in _to_moshi(_hf_weights(), model.config).items()}
    mx.save_safetensors(str(moshi_repo / MOSHI_FILE), moshi)
    shutil.copy(FIX / "config.json", moshi_repo / "config.json")
    hub_server.add_repo("kyutai/moshiko-pytorch-bf16", moshi_repo)
    assert _same_params(load_model("kyutai/mimi"), model)
    assert _same_params(load_model("kyutai/moshiko-pytorch-bf16", filename=MOSHI_FILE), model)


def test_official_config_builds_with_its_parameter_count():
    m = Mimi(ModelArgs())
    params = dict(tree_flatten(m.parameters()))
    codebooks = sum(v.size for k, v in params.items() if "codebook" in k)
    # transformers' and moshi's 79,308,609 parameters, plus the codebooks (buffers there)
    assert sum(v.size for v in params.values()) - codebooks == 79_308_609
    assert (m.sample_rate, m.samples_per_frame, m.num_codebooks) == (24000, 1920, 32)
    names = {n + ".conv.weight" for n, mod in m.named_modules() if type(mod).__name__ ==
             "CausalConvTranspose1d"}  # fmt: skip
    assert names == Mimi.transposed_conv_names_for(m.config)


def test_bad_codes_are_explained(model, ref):
    codes = mx.array(ref["codes"])
    with pytest.raises(ValueError, match=r"codes must be in \[0, 32\), got values in \[0, 32\]"):
        model.decode(mx.concatenate([codes[:, :-1], mx.full((5, 1), 32, mx.int32)], axis=1))
    with pytest.raises(ValueError, match=r"codes must be in \[0, 32\)"):
        model.decode(codes - 1)
    with pytest.raises(ValueError, match="codes must have 1 to 5 codebooks"):
        model.decode(mx.concatenate([codes, codes[:1]]))
    with pytest.raises(ValueError, match=r"\[codebooks, frames\] or \[batch, codebooks, frames\]"):
        model.decode(codes[0])
    with pytest.raises(ValueError, match="integers"):
        model.decode(codes.astype(mx.float32))
    with pytest.raises(ValueError, match="must not be empty"):
        model.decode(codes[:, :0])
    stream = StreamingDecoder(model)
    stream.push(codes[:, :2])
    with pytest.raises(ValueError, match="same batching, batch size and codebooks"):
        stream.push(codes[None, :, 2:4])
    with pytest.raises(ValueError, match="same batching, batch size and codebooks"):
        stream.push(codes[:3, 2:4])
    with pytest.raises(ValueError, match="decode_step takes one frame"):
        stream.decode_step(codes[None])


def test_bad_audio_is_explained(model):
    with pytest.raises(ValueError, match="audio must be mono"):
        model.encode(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="audio must be mono"):
        model.encode(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="finite"):
        model.encode(np.full(100, np.nan, np.float32))
    with pytest.raises(ValueError, match="floating point"):
        model.encode(np.zeros(100, np.int16))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"upsampling_ratios": "8,6"}, "upsampling_ratios must be a list"),
        ({"codebook_size": 0}, r"codebook_size must be an int in \[2, 65536\]"),
        ({"num_semantic_quantizers": 5}, "must be less than num_quantizers"),
        ({"codebook_dim": 8}, "must equal vector_quantization_hidden_dimension"),
        ({"pad_mode": "reflect"}, "pad_mode must be 'constant' or 'replicate'"),
        ({"use_causal_conv": False}, "use_causal_conv must be true"),
        ({"upsample_groups": 1}, "upsample_groups must equal hidden_size"),
        ({"num_key_value_heads": 3}, "must be a multiple of num_key_value_heads"),
        ({"rope_parameters": {"rope_type": "llama3"}}, "rope_type must be 'default'"),
        ({"frame_rate": 25.0}, "frame_rate must be"),
        ({"hidden_act": "relu"}, "hidden_act must be"),
    ],
)
def test_bad_configs_name_the_file_and_field(tmp_path, change, message):
    folder = tmp_path / "m"
    folder.mkdir()
    cfg = {**json.loads((FIX / "config.json").read_text()), **change}
    (folder / "config.json").write_text(json.dumps(cfg))
    shutil.copy(FIX / "model.safetensors", folder)
    with pytest.raises(ValueError, match=message) as info:
        load_model(folder)
    assert "config.json" in str(info.value)


def test_bad_weights_name_the_file(model, tmp_path):
    folder = save_model(model, tmp_path / "m")
    weights = dict(mx.load(str(folder / "model.safetensors")))
    weights.pop("decoder.layers.0.conv.bias")
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    with pytest.raises(ValueError, match="model.safetensors"):
        load_model(folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_model(folder)


def test_huge_configs_are_refused_before_building():
    with pytest.raises(ValueError, match="more than the 2,000,000,000 allowed"):
        ModelArgs(
            hidden_size=8192, upsample_groups=8192, intermediate_size=65536, num_hidden_layers=64
        )
    assert 79_000_000 < ModelArgs().approx_parameters() < 100_000_000


def test_fast_paths_are_used(model, ref, monkeypatch):
    """On the CPU no convolution goes to MLX's slow transposed or grouped kernels."""
    calls = []
    conv1d = mx.conv1d

    def no_transpose(*args, **kwargs):
        raise AssertionError("mx.conv_transpose1d called on the CPU")

    def checked_conv1d(x, w, stride=1, padding=0, dilation=1, groups=1, **kwargs):
        calls.append((dilation, groups))
        return conv1d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)

    monkeypatch.setattr(mx, "conv_transpose1d", no_transpose)
    monkeypatch.setattr(mx, "conv1d", checked_conv1d)
    model.decode(ref["codes"])
    model.encode(ref["audio_in"])
    assert all(c == (1, 1) for c in calls), calls
