"""SAM-Audio's T5 text encoder and tokenizer: a tiny sentencepiece model trained here, a tiny
T5 against a float64 NumPy re-implementation, padding masks, and loading from a folder, a
PyTorch file and the loopback Hub. The comparison with transformers is tools/parity/t5.py."""

from __future__ import annotations

import io
import json
import math
import pickle
import shutil
import zipfile
from pathlib import Path

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)

import mlx.core as mx
import numpy as np
import pytest
import sentencepiece as spm
from mlx.utils import tree_flatten
from mlx_audio_sts.models.sam_audio.t5 import (
    T5Config,
    T5Encoder,
    T5Tokenizer,
    load_t5,
    relative_buckets,
)

SENTENCES = [
    "man speaking", "a dog barking loudly", "woman singing a song", "rain falling on a roof",
    "a car engine starting", "birds chirping in the morning", "a baby crying", "a door closing",
    "people talking in a cafe", "thunder rumbling far away", "footsteps on a wooden floor",
    "the wind blowing", "a guitar playing softly", "water running from a tap", "a cat meowing",
    "children laughing", "an airplane flying overhead", "a phone ringing", "a clock ticking",
]  # fmt: skip
TINY = {"vocab_size": 192, "d_model": 16, "num_layers": 2, "num_heads": 2, "d_kv": 8, "d_ff": 32}


@pytest.fixture(scope="module")
def spiece(tmp_path_factory) -> Path:
    """A 64-piece unigram model with T5's special ids (pad 0, eos 1, unk 2, no bos)."""
    path = tmp_path_factory.mktemp("spm") / "spiece.model"
    with open(path, "wb") as f:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(SENTENCES * 3), model_writer=f, vocab_size=64,
            model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
        )  # fmt: skip
    return path


def tiny_model(seed: int = 0, **overrides) -> T5Encoder:
    """A tiny T5 with seeded weights at scales where every part matters (norm weights off 1, a
    position bias as large as the scores)."""
    model = T5Encoder(T5Config.from_dict({**TINY, **overrides}))
    rng = np.random.default_rng(seed)
    weights = []
    for name, p in tree_flatten(model.parameters()):
        w = rng.standard_normal(p.shape)
        if name.endswith("layer_norm.weight"):
            w = 1 + 0.3 * w
        elif ("Self" in name or "Dense" in name) and "relative" not in name:  # projections
            w = w / math.sqrt(p.shape[1])
        weights.append((name, mx.array(w.astype(np.float32))))
    model.load_weights(weights, strict=True)
    return model


def np_buckets(length, num_buckets=32, max_distance=128):
    """The bucket rule written from the T5 paper's description, in float64."""
    out = np.zeros((length, length), np.int64)
    half, exact = num_buckets // 2, num_buckets // 4
    for i in range(length):
        for j in range(length):
            rel = j - i
            b, n = (half if rel > 0 else 0), abs(rel)
            if n < exact:
                out[i, j] = b + n
            else:
                large = exact + int(math.log(n / exact) / math.log(max_distance / exact)
                                    * (half - exact))  # fmt: skip
                out[i, j] = b + min(large, half - 1)
    return out


def np_encoder(model: T5Encoder, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """transformers' T5 encoder, re-implemented in float64 NumPy."""
    cfg = model.config
    p = {k: np.asarray(v, np.float64) for k, v in tree_flatten(model.parameters())}

    def rms(x, w):
        return w * x / np.sqrt((x**2).mean(-1, keepdims=True) + cfg.layer_norm_epsilon)

    def act(x):
        if cfg.dense_act_fn == "relu":
            return np.maximum(x, 0)
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    b, length = ids.shape
    table = p["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    bias = table[np_buckets(length)].transpose(2, 0, 1)[None]
    bias = bias + np.where(mask[:, None, None, :], 0.0, -1e300)
    x = p["shared.weight"][ids]
    for i in range(cfg.num_layers):
        pre = f"encoder.block.{i}.layer."
        h = rms(x, p[pre + "0.layer_norm.weight"])
        q, k, v = ((h @ p[f"{pre}0.SelfAttention.{n}.weight"].T)
                   .reshape(b, length, cfg.num_heads, cfg.d_kv).transpose(0, 2, 1, 3)
                   for n in "qkv")  # fmt: skip
        s = q @ k.transpose(0, 1, 3, 2) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        x = (
            x
            + a.transpose(0, 2, 1, 3).reshape(b, length, -1) @ p[pre + "0.SelfAttention.o.weight"].T
        )
        h = rms(x, p[pre + "1.layer_norm.weight"])
        ff = pre + "1.DenseReluDense."
        if cfg.is_gated_act:
            h = act(h @ p[ff + "wi_0.weight"].T) * (h @ p[ff + "wi_1.weight"].T)
        else:
            h = act(h @ p[ff + "wi.weight"].T)
        x = x + h @ p[ff + "wo.weight"].T
    return rms(x, p["encoder.final_layer_norm.weight"])


def rel_err(ours, ref) -> float:
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


def save_folder(folder: Path, model: T5Encoder, spiece: Path, weights=None, **config) -> Path:
    """A HF-style model folder: config.json, model.safetensors, spiece.model."""
    folder.mkdir(parents=True)
    cfg = {"architectures": ["T5EncoderModel"], "model_type": "t5", "dropout_rate": 0.1,
           "feed_forward_proj": model.config.feed_forward_proj, **TINY, **config}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(cfg))
    weights = dict(tree_flatten(model.parameters())) if weights is None else weights
    mx.save_safetensors(str(folder / "model.safetensors"), weights)
    shutil.copy(spiece, folder / "spiece.model")
    return folder


# --- tokenizer


def test_tokenizer_is_pieces_then_eos(spiece):
    tok, sp = T5Tokenizer(spiece), spm.SentencePieceProcessor(model_file=str(spiece))
    for text in ["man speaking", "A dog barking loudly.", "  a  dog\tbarks\n", "zzz ß 日本"]:
        assert tok.encode(text) == [*sp.encode(text), 1]
    assert tok.encode("") == [1]
    assert tok.encode("a</s>dog <extra_id_0>") == [*sp.encode("a"), 1, *sp.encode("dog "), 163, 1]


def test_tokenizer_pads_and_masks(spiece):
    tok = T5Tokenizer(spiece)
    ids, mask = tok(["man speaking", "", "a dog barking loudly"])
    assert ids.dtype == mx.int32 and mask.dtype == mx.bool_
    rows = [tok.encode(t) for t in ["man speaking", "", "a dog barking loudly"]]
    assert ids.shape == (3, max(map(len, rows)))
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(np.asarray(ids[i, : len(row)]), row)
        assert not np.asarray(ids[i, len(row) :]).any()
        np.testing.assert_array_equal(np.asarray(mask[i]), np.arange(ids.shape[1]) < len(row))


def test_tokenizer_truncates_keeping_eos(spiece):
    tok = T5Tokenizer(spiece)
    full = tok.encode("birds chirping in the morning")
    ids, mask = tok(["birds chirping in the morning", "a"], max_length=4)
    np.testing.assert_array_equal(np.asarray(ids[0]), [*full[:3], 1])
    assert np.asarray(mask[0]).all()
    ids, _ = tok(["birds"], max_length=1)
    np.testing.assert_array_equal(np.asarray(ids), [[1]])
    ids, _ = tok(["birds chirping"], max_length=len(tok.encode("birds chirping")))
    np.testing.assert_array_equal(np.asarray(ids[0]), tok.encode("birds chirping"))


def test_tokenizer_errors(spiece, tmp_path):
    tok = T5Tokenizer(spiece)
    with pytest.raises(ValueError, match="non-empty list of strings, got \\[\\]"):
        tok([])
    with pytest.raises(ValueError, match="wrap one text in a list"):
        tok("man speaking")
    with pytest.raises(ValueError, match="texts must be strings, got 3"):
        tok(["a", 3])
    with pytest.raises(ValueError, match="max_length must be an int"):
        tok(["a"], max_length=0)
    with pytest.raises(FileNotFoundError, match="nope.model"):
        T5Tokenizer(tmp_path / "nope.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.model'.*not a sentencepiece model"):
        T5Tokenizer(tmp_path / "bad.model")


# --- config and network


def test_config_reads_hf_keys():
    cfg = T5Config.from_dict({"d_model": 768, "n_positions": 512, "task_specific_params": {}})
    assert cfg.d_model == 768 and cfg.dense_act_fn == "relu" and not cfg.is_gated_act
    cfg = T5Config.from_dict({"feed_forward_proj": "gated-gelu"})
    assert cfg.dense_act_fn == "gelu_new" and cfg.is_gated_act
    cfg = T5Config.from_dict({"feed_forward_proj": "gated-silu"})
    assert cfg.dense_act_fn == "silu" and cfg.is_gated_act
    cfg = T5Config.from_dict({"feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu"})
    assert cfg.dense_act_fn == "gelu"
    with pytest.raises(ValueError, match="feed_forward_proj must be"):
        T5Config(feed_forward_proj="gelu-gated")
    with pytest.raises(ValueError, match="dense_act_fn must be one of"):
        T5Config(feed_forward_proj="tanhshrink")
    with pytest.raises(ValueError, match="d_model must be an int"):
        T5Config(d_model=0)


def test_buckets_match_the_rule():
    np.testing.assert_array_equal(relative_buckets(300, 32, 128), np_buckets(300))
    b = relative_buckets(300, 32, 128)
    assert (b[0, 1], b[1, 0], b[0, 8], b[0, 299], b[299, 0]) == (17, 1, 24, 31, 15)


@pytest.mark.parametrize("ffn", ["relu", "gated-gelu"])
def test_matches_float64_reference(ffn):
    model = tiny_model(feed_forward_proj=ffn)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, TINY["vocab_size"], (2, 150))
    mask = np.arange(150)[None, :] < np.array([[150], [97]])
    out = model(mx.array(ids), mx.array(mask))
    assert out.dtype == mx.float32 and out.shape == (2, 150, 16)
    ref = np_encoder(model, ids, mask)
    assert rel_err(out[0], ref[0]) < 1e-5
    assert rel_err(out[1, :97], ref[1, :97]) < 1e-5


def test_padding_does_not_change_valid_positions(spiece):
    model, tok = tiny_model(), T5Tokenizer(spiece)
    texts = ["man speaking", "a dog barking loudly in the morning"]
    ids, mask = tok(texts)
    batch = np.asarray(model(ids, mask))
    for i, text in enumerate(texts):
        alone_ids, alone_mask = tok([text])
        alone = np.asarray(model(alone_ids, alone_mask))[0]
        np.testing.assert_allclose(batch[i, : alone.shape[0]], alone, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(
        np.asarray(model(ids)), np.asarray(model(ids, mx.ones(ids.shape)))
    )


def test_input_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="integer \\[batch, length\\]"):
        model(mx.zeros((3,), mx.int32))
    with pytest.raises(ValueError, match="integer \\[batch, length\\]"):
        model(mx.zeros((1, 3)))
    with pytest.raises(ValueError, match="in \\[0, 192\\), got values from 0 to 192"):
        model(mx.array([[0, 192]]))
    with pytest.raises(ValueError, match="attention_mask must have input_ids' shape"):
        model(mx.array([[0, 1]]), mx.array([[True]]))


# --- weights and loading


def test_sanitize_takes_a_whole_t5_checkpoint():
    model = tiny_model()
    w = dict(tree_flatten(model.parameters()))
    full = {k: v.astype(mx.bfloat16) for k, v in w.items()}
    full["encoder.embed_tokens.weight"] = full["shared.weight"]
    full["decoder.block.0.layer.0.SelfAttention.q.weight"] = mx.zeros((4, 4))
    full["lm_head.weight"] = full["shared.weight"]
    out = T5Encoder.sanitize(full)
    assert sorted(out) == sorted(w) and all(v.dtype == mx.float32 for v in out.values())
    renamed = T5Encoder.sanitize({("encoder.embed_tokens.weight" if k == "shared.weight" else k): v
                                  for k, v in w.items()})  # fmt: skip
    assert sorted(renamed) == sorted(w)
    w["encoder.embed_tokens.weight"] = w["shared.weight"] + 1
    with pytest.raises(ValueError, match="must equal shared.weight"):
        T5Encoder.sanitize(w)


def test_loads_a_folder(spiece, tmp_path):
    model = tiny_model(feed_forward_proj="gated-gelu")
    weights = {k: v.astype(mx.float16) for k, v in tree_flatten(model.parameters())}
    weights["encoder.embed_tokens.weight"] = weights["shared.weight"]
    folder = save_folder(tmp_path / "t5", model, spiece, weights, feed_forward_proj="gated-gelu")
    loaded, tok = load_t5(folder)
    assert loaded.config.is_gated_act and isinstance(tok, T5Tokenizer)
    ids, mask = tok(["man speaking", "a cat"])
    want = np_encoder(loaded, np.asarray(ids), np.asarray(mask))
    assert rel_err(loaded(ids, mask)[0], want[0]) < 1e-5
    f16 = np.asarray(loaded.shared.weight)
    np.testing.assert_array_equal(f16, np.asarray(model.shared.weight.astype(mx.float16)))


def torch_zip(state: dict[str, np.ndarray]) -> bytes:
    """A ``torch.save`` file of float32 tensors, written opcode by opcode (no torch here)."""

    def val(x):
        return pickle.dumps(x, protocol=2)[2:-1]

    body, storages = b"}(", {}
    for i, (name, a) in enumerate(state.items()):
        key, stride = str(i), tuple(int(s) for s in np.cumprod((1, *a.shape[::-1]))[-2::-1])
        pid = b"(" + val("storage") + b"ctorch\nFloatStorage\n" + val(key) + val("cpu")
        pid += val(a.size) + b"tQ"
        args = pid + val(0) + val(tuple(a.shape)) + val(stride) + val(False) + b"}"
        body += val(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + args + b"tR"
        storages[key] = np.ascontiguousarray(a, "<f4").tobytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02" + body + b"u.")
        zf.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)
    return buf.getvalue()


def test_loads_pytorch_model_bin(spiece, tmp_path):
    model = tiny_model()
    folder = save_folder(tmp_path / "t5", model, spiece)
    (folder / "model.safetensors").unlink()
    state = {k: np.asarray(v) for k, v in tree_flatten(model.parameters())}
    (folder / "pytorch_model.bin").write_bytes(torch_zip(state))
    loaded, _ = load_t5(folder)
    ids = mx.array([[5, 9, 1]])
    np.testing.assert_array_equal(np.asarray(loaded(ids)), np.asarray(model(ids)))


def test_load_errors(spiece, tmp_path):
    model = tiny_model()
    folder = save_folder(tmp_path / "t5", model, spiece)
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a Hub repo id"):
        load_t5(tmp_path / "nowhere")
    (folder / "spiece.model").rename(folder / "x.model")
    with pytest.raises(FileNotFoundError, match="spiece.model'"):
        load_t5(folder)
    (folder / "x.model").rename(folder / "spiece.model")
    (folder / "model.safetensors").rename(folder / "x.safetensors")
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_t5(folder)
    (folder / "x.safetensors").rename(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({**TINY, "d_ff": 48}))
    with pytest.raises(ValueError, match="weights do not match config.json"):
        load_t5(folder)
    (folder / "config.json").write_text(json.dumps({**TINY, "num_layers": 3}))
    with pytest.raises(ValueError, match="weights do not match config.json"):
        load_t5(folder)
    (folder / "config.json").write_text(json.dumps({**TINY, "model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type must be 't5', got 'bert'"):
        load_t5(folder)
    (folder / "config.json").write_text(json.dumps({**TINY, "feed_forward_proj": "a-b-c"}))
    with pytest.raises(ValueError, match="config.json'.*feed_forward_proj must be"):
        load_t5(folder)
    (folder / "model.safetensors").write_bytes(b"junk")
    (folder / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(ValueError, match="model.safetensors'"):
        load_t5(folder)


def test_loads_through_the_hub(spiece, hub_server, hub_env, tmp_path):
    model = tiny_model()
    folder = save_folder(tmp_path / "repo", model, spiece)
    (folder / "tokenizer.json").write_text("{}")  # in the repo, not needed: not fetched
    (folder / "pytorch_model.bin").write_bytes(b"unused")
    hub_server.add_repo("google-t5/t5-base", folder)  # what load_t5()'s "t5-base" means
    loaded, tok = load_t5()
    ids, mask = tok(["man speaking"])
    np.testing.assert_array_equal(np.asarray(loaded(ids, mask)), np.asarray(model(ids, mask)))
    fetched = {p.rsplit("/", 1)[-1] for m, p in hub_server.requests if "/resolve/" in p}
    assert fetched == {"config.json", "spiece.model", "model.safetensors"}
    with pytest.raises(FileNotFoundError, match="no revision 'v9'"):
        load_t5("google-t5/t5-base", revision="v9")
