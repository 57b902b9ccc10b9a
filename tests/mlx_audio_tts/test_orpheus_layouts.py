"""Orpheus' real checkpoint layouts, built at test time from one tiny Llama (Orpheus'
vocabulary, hidden 64 so that every layer quantizes with group size 64):

* ``mlx-community/orpheus-3b-0.1-ft-4bit``: mlx-lm's quantized folder (``quantization`` and
  ``quantization_config`` in config.json, ``.scales``/``.biases`` next to each quantized
  weight, the tied embedding quantized too), no codec inside;
* ``canopylabs/orpheus-3b-0.1-ft``: transformers' names in bfloat16, sharded with
  ``model.safetensors.index.json``, config.json as transformers 5 writes it
  (``rope_parameters``) and as transformers 4 wrote it (``rope_theta`` + ``rope_scaling``),
  generation_config.json and the tokenizer files, no ``snac/``.

Each loads by folder and through the loopback Hub, with the codec from ``codec_path``."""

import json
import shutil
from pathlib import Path

import mlx_audio_io  # noqa: F401
from mlx_audio_io import quant

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_audio_tts.models.orpheus import model as orpheus
from test_orpheus import LLAMA, SNAC_FIX, _tokenizer

CONFIG = {**LLAMA, "hidden_size": 64, "intermediate_size": 128, "head_dim": 16}
IDS = [128259, 128000, 30, 40, 50, 128009, 128260, 128261, 128257, 128266, 132362 + 7]
ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}  # fmt: skip
# config.json as transformers 4.4x saved canopylabs' checkpoint, and as transformers 5 saves it
HF_COMMON = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128009, "head_dim": 16, "hidden_act": "silu",
    "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128,
    "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
    "pad_token_id": 128004, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "tie_word_embeddings": True, "use_cache": True, "vocab_size": 156940,
}  # fmt: skip
HF_CONFIGS = {
    "transformers4": {**HF_COMMON, "rope_theta": 500000.0, "rope_scaling": ROPE,
                      "torch_dtype": "bfloat16", "transformers_version": "4.47.1"},
    "transformers5": {**HF_COMMON, "rope_parameters": {**ROPE, "rope_theta": 500000.0},
                      "dtype": "bfloat16", "transformers_version": "5.25.0"},
}  # fmt: skip


def _logits(lm) -> np.ndarray:
    return np.asarray(lm(mx.array([IDS]))[0].astype(mx.float32))


def _tokenizer_files(folder: Path) -> None:
    """tokenizer.json and tokenizer_config.json (test_orpheus' character tokenizer), plus
    special_tokens_map.json and generation_config.json as canopylabs' repo has them."""
    _tokenizer(folder)
    specials = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 128000, "eos_token_id": 128009, "do_sample": True, "temperature": 0.6,
        "top_p": 0.9, "transformers_version": "4.47.1"}))  # fmt: skip


def _save_sharded(folder: Path, weights: dict, shards: int) -> None:
    """transformers' sharded layout: ``model-0000i-of-0000n.safetensors`` + the index."""
    names = sorted(weights)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: weights[k] for k in names[i::shards]}
        mx.save_safetensors(str(folder / file), part, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    total = sum(v.nbytes for v in weights.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
        indent=2))  # fmt: skip


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """Folders of one tiny Llama: "mlx4bit", "canopy_transformers4", "canopy_transformers5"
    (sharded, bfloat16) and "unsharded" (one file, transformers 4 config); "quantized" and
    "bf16": the in-memory models they must equal."""
    from mlx_lm.models import llama
    from mlx_lm.utils import quantize_model, save_config, save_model

    root = tmp_path_factory.mktemp("orpheus_layouts")
    args = llama.ModelArgs.from_dict(CONFIG)
    mx.random.seed(11)
    model = llama.Model(args)
    weights = dict(tree_flatten(model.parameters()))
    out = {}

    q = llama.Model(args)
    q.load_weights(list(weights.items()))
    q, q_config = quantize_model(q, dict(CONFIG), group_size=64, bits=4)
    out["mlx4bit"] = root / "mlx4bit"
    save_model(out["mlx4bit"], q)
    save_config(q_config, out["mlx4bit"] / "config.json")
    _tokenizer_files(out["mlx4bit"])
    out["quantized"] = q

    bf16 = {k: v.astype(mx.bfloat16) for k, v in weights.items()}
    for name, config in HF_CONFIGS.items():
        d = out[f"canopy_{name}"] = root / f"canopy_{name}"
        d.mkdir()
        _save_sharded(d, bf16, shards=3)
        (d / "config.json").write_text(json.dumps(config, indent=2))
        _tokenizer_files(d)
    d = out["unsharded"] = root / "unsharded"
    d.mkdir()
    mx.save_safetensors(str(d / "model.safetensors"), bf16, metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps(HF_CONFIGS["transformers4"], indent=2))
    _tokenizer_files(d)
    ref = llama.Model(args)
    ref.load_weights(list(bf16.items()))
    out["bf16"] = ref
    return out


def test_mlx_community_4bit_layout(layouts):
    folder = layouts["mlx4bit"]
    config = json.loads((folder / "config.json").read_text())
    assert config["quantization"]["group_size"] == 64 and config["quantization"]["bits"] == 4
    assert config["quantization_config"] == config["quantization"]
    stored = mx.load(str(folder / "model.safetensors"))
    assert {"model.embed_tokens.scales", "model.embed_tokens.biases"} <= set(stored)
    assert "model.layers.1.mlp.down_proj.scales" in stored and "lm_head.weight" not in stored
    assert stored["model.embed_tokens.weight"].dtype == mx.uint32  # packed 4-bit
    assert not (folder / "snac").exists()

    m = orpheus.load_model(folder, codec_path=SNAC_FIX)
    assert isinstance(m.lm.model.embed_tokens, nn.QuantizedEmbedding)
    assert isinstance(m.lm.model.layers[0].self_attn.q_proj, nn.QuantizedLinear)
    assert m.codec.config.codebook_size == 64  # the codec came from codec_path
    # loading puts the quantized layers on mlx_audio_io's CPU kernel: float rounding apart
    assert isinstance(m.lm.model.layers[0].self_attn.q_proj, quant.QuantizedLinear)
    ours, ref = _logits(m.lm), _logits(layouts["quantized"])
    np.testing.assert_allclose(ours, ref, atol=1e-5 * np.abs(ref).max())
    assert m.prompt("Hi")[-1] == 128257


@pytest.mark.parametrize("version", sorted(HF_CONFIGS))
def test_canopylabs_layout_sharded_bf16(layouts, version):
    folder = layouts[f"canopy_{version}"]
    assert len(list(folder.glob("model-0000?-of-00003.safetensors"))) == 3
    assert not (folder / "snac").exists()
    m = orpheus.load_model(folder, codec_path=SNAC_FIX)
    assert m.lm.model.embed_tokens.weight.dtype == mx.bfloat16
    assert type(m.lm.model.layers[0].self_attn.rope).__name__ == "Llama3RoPE"
    assert m.lm.args.rope_theta == 500000.0
    unsharded = orpheus.load_model(layouts["unsharded"], codec_path=SNAC_FIX)
    got = _logits(m.lm)
    np.testing.assert_array_equal(got, _logits(unsharded.lm))
    np.testing.assert_array_equal(got, _logits(layouts["bf16"]))
    assert m.prompt("Hi") == unsharded.prompt("Hi")


def test_both_layouts_through_the_hub(layouts, hub_server, hub_env):
    hub_server.add_repo("test/snac_24khz", SNAC_FIX)
    for name in ("mlx4bit", "canopy_transformers5"):
        hub_server.add_repo(f"test/orpheus-{name}", layouts[name])
        m = orpheus.load_model(f"test/orpheus-{name}", codec_path="test/snac_24khz")
        local = orpheus.load_model(layouts[name], codec_path=SNAC_FIX)
        np.testing.assert_array_equal(_logits(m.lm), _logits(local.lm))
        assert (m.path / "tokenizer.json").is_file() and m.codec.config.codebook_size == 64
    with pytest.raises(RuntimeError, match="needs the SNAC 24 kHz codec.*test/no-snac"):
        orpheus.load_model("test/orpheus-mlx4bit", codec_path="test/no-snac")


def _copy(src: Path, dst: Path, *ignore: str) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*ignore))
    return dst


def test_layout_errors(layouts, tmp_path):
    canopy = layouts["canopy_transformers5"]
    bare = _copy(canopy, tmp_path / "no_tokenizer", "tokenizer*")
    with pytest.raises(ValueError, match="no tokenizer.*tokenizer.json"):
        orpheus.load_model(bare, codec_path=SNAC_FIX)
    nowhere = tmp_path / "nowhere"
    with pytest.raises(RuntimeError, match=f"needs the SNAC 24 kHz codec.*{nowhere.name}"):
        orpheus.load_model(layouts["mlx4bit"], codec_path=nowhere)
    not_snac = _copy(canopy, tmp_path / "not_snac")  # a folder, but not a codec
    with pytest.raises(RuntimeError, match="needs the SNAC 24 kHz codec"):
        orpheus.load_model(layouts["mlx4bit"], codec_path=not_snac)
    other = _copy(canopy, tmp_path / "mistral")
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "mistral"}))
    with pytest.raises(ValueError, match="Orpheus is a Llama; model_type is 'mistral'"):
        orpheus.load_model(other, codec_path=SNAC_FIX)


def test_missing_shard_is_named(layouts, tmp_path):
    """mlx-lm reads whatever model*.safetensors it finds; the index names what is missing."""
    folder = _copy(layouts["canopy_transformers5"], tmp_path / "partial")
    (folder / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="'model-00002-of-00003.safetensors' listed in"):
        orpheus.load_model(folder, codec_path=SNAC_FIX)


def test_a_weight_file_the_index_does_not_list_is_refused(layouts, tmp_path):
    """A stale model.safetensors beside the shards would be mixed in by mlx-lm's glob."""
    folder = _copy(layouts["canopy_transformers5"], tmp_path / "stale")
    shutil.copy(folder / "model-00001-of-00003.safetensors", folder / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors not listed in model.safetensors"):
        orpheus.load_model(folder, codec_path=SNAC_FIX)
