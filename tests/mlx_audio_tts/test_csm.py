"""CSM-1B's language models on tools/parity/csm.py's tiny fixture (transformers'
CsmForConditionalGeneration, saved with save_pretrained: 4 codebooks of 2051, GQA, llama3
RoPE), a character tokenizer built with `tokenizers`, and a fake Mimi codec."""

import json
import re
import shutil
from pathlib import Path

import mlx_audio_io  # noqa: F401

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_audio_tts.models import csm
from mlx_audio_tts.models.csm import convert

FIX = Path(__file__).parent.parent / "fixtures" / "csm"
SAMPLES_PER_FRAME = 1920  # 80 ms at 24 kHz


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    return float(np.abs(a - b).max() / np.abs(b).max())


def _tokenizer(path: Path) -> Path:
    """A character-level tokenizer.json with Llama-3's BOS/EOS names at small ids (the tiny
    model has 300 text tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 :,.!?[]'"))
    vocab = {c: i + 10 for i, c in enumerate(chars)}
    vocab.update({"<unk>": 0, "<|begin_of_text|>": 1, "<|end_of_text|>": 2})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.save(str(path))
    return path


class FakeCodec:
    """Mimi's interface: ``encode(audio [samples, 1]) -> codes [K, T]`` (one frame per 1920
    samples, codes from the audio's values), ``decode(codes) -> [T * 1920, 1]``."""

    sample_rate = 24000

    def __init__(self, k: int = 4):
        self.k, self.encoded, self.decoded = k, [], []

    def encode(self, audio):
        audio = np.asarray(audio)
        self.encoded.append(audio.shape)
        n = audio.shape[0] // SAMPLES_PER_FRAME
        base = (np.arange(n) % 2000 + 1)[None] + np.arange(self.k)[:, None]
        return mx.array(base.astype(np.int32))

    def decode(self, codes):
        self.decoded.append(np.asarray(codes))
        return mx.repeat(codes[0].astype(mx.float32)[:, None], SAMPLES_PER_FRAME, axis=0)


@pytest.fixture(scope="module")
def model():
    return csm.load_csm_weights(FIX, dtype="float32")[0]


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory):
    return _tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture()
def gen(model, tok_file):
    return csm.CSM(model, csm.TextTokenizer(tok_file), FakeCodec(model.args.audio_num_codebooks))


def _scripted(frames, record=None):
    """A sampler answering with these frames' codes in order (the models still run)."""
    codes = iter(np.asarray(frames).reshape(-1).tolist())

    def sample(logits):
        if record is not None:
            record.append(np.asarray(logits[0]))
        return mx.array([next(codes)], dtype=mx.int32)

    return sample


def test_logits_and_greedy_frames_match_transformers(model):
    ref = np.load(FIX / "reference.npz")
    tokens, mask, frames = ref["tokens"], ref["mask"], ref["frames"]
    hidden = model.backbone_hidden(mx.array(tokens)[None], mx.array(mask)[None],
                                   csm.make_cache(model.backbone))  # fmt: skip
    logits = model.codebook0_head(hidden)[0]
    assert rel(logits[-4:], ref["prompt_logits"]) <= 1e-4
    record = []
    gen = csm.CSM(model, tokenizer=None)
    fed = list(gen.frames_from_prompt(tokens, mask, 4, _scripted(frames[:4], record)))
    record = np.stack(record).reshape(4, 4, -1)
    assert rel(record[:, 0], ref["c0_logits"]) <= 1e-4
    assert rel(record[:2, 1:], ref["depth_logits"]) <= 1e-4
    assert np.array_equal(np.stack(fed), frames[:4])
    greedy = gen.frames_from_prompt(tokens, mask, 16, lambda x: mx.argmax(x, axis=-1))
    assert np.array_equal(np.stack([np.asarray(f) for f in greedy]), frames)


def test_llama3_rope_scaling_is_what_matches(model):
    """The fixture's prompt (1017 positions) is long enough that leaving the llama3 scaling
    out, or running torchtune's q/k rows through half-split RoPE, fails the tolerance."""
    ref = np.load(FIX / "reference.npz")
    cfg = json.loads((FIX / "config.json").read_text())
    plain = {"rope_type": "default", "rope_theta": 500000.0}
    cfg = {
        **cfg,
        "rope_parameters": plain,
        "depth_decoder_config": {**cfg["depth_decoder_config"], "rope_parameters": plain},
    }
    for variant in ("no scaling", "half-split"):
        other = csm.Model(model.args if variant == "half-split" else csm.ModelArgs.from_dict(cfg))
        other.load_weights(tree_flatten(model.parameters()), strict=True)
        if variant == "half-split":
            for layer in other.backbone.layers:
                layer.self_attn.rope.traditional = False
        hidden = other.backbone_hidden(mx.array(ref["tokens"])[None], mx.array(ref["mask"])[None],
                                       csm.make_cache(other.backbone))  # fmt: skip
        assert rel(other.codebook0_head(hidden)[0][-4:], ref["prompt_logits"]) > 1e-4, variant


def _params(m) -> dict:
    return {k: np.asarray(v) for k, v in tree_flatten(m.parameters())}


TORCHTUNE = [  # ours -> the original's names (q/k rows are already torchtune's)
    (r"\.self_attn\.o_proj\.", ".attn.output_proj."), (r"\.self_attn\.", ".attn."),
    (r"\.mlp\.gate_proj\.", ".mlp.w1."), (r"\.mlp\.down_proj\.", ".mlp.w2."),
    (r"\.mlp\.up_proj\.", ".mlp.w3."), (r"\.input_layernorm\.weight$", ".sa_norm.scale"),
    (r"\.post_attention_layernorm\.weight$", ".mlp_norm.scale"),
    (r"^(backbone|decoder)\.norm\.weight$", r"\1.norm.scale"),
]  # fmt: skip


def _renamed(weights: dict, table, prefix: str = "") -> dict:
    out = {}
    for name, value in weights.items():
        for pattern, replacement in table:
            name = re.sub(pattern, replacement, name)
        out[prefix + name] = value
    return out


def test_three_layouts_convert_to_identical_weights(model):
    args = model.args
    hf = dict(mx.load(str(FIX / "model.safetensors")))
    assert "depth_decoder.model.embed_tokens.weight" in hf  # save_pretrained kept the tied copy
    ours = convert.convert_weights(hf, args)
    assert set(ours) == set(_params(model))
    torchtune = _renamed(ours, TORCHTUNE)
    assert "backbone.layers.0.attn.output_proj.weight" in torchtune
    mlx_audio = {"model." + k: v for k, v in ours.items()}  # mlx-audio's sanitized names
    both_embeds = {**hf, "backbone_model.embed_tokens.embed_audio_tokens.weight":
                   hf["depth_decoder.model.embed_tokens.weight"], "codec_model.x.weight":
                   mx.zeros(3)}  # fmt: skip
    for layout in (torchtune, mlx_audio, ours, both_embeds,
                   convert.to_transformers(ours, args)):  # fmt: skip
        got = convert.convert_weights(layout, args)
        assert set(got) == set(ours)
        for k in ours:
            assert mx.array_equal(got[k], ours[k]).item(), k
    qk = "backbone.layers.0.self_attn.q_proj.weight"  # transformers' rows were permuted back
    hf_q = hf["backbone_model.layers.0.self_attn.q_proj.weight"]
    assert not mx.array_equal(ours[qk], hf_q).item()
    assert mx.array_equal(convert.permute_for_rope(ours[qk], 6), hf_q).item()
    with pytest.raises(ValueError, match="both map to"):
        convert.convert_weights({**ours, **torchtune}, args)


def test_torchtune_ckpt_through_the_restricted_unpickler(model):
    """torchtune_layers.pt: the fixture's layers as the original ckpt.pt holds them
    (torchtune names, interleaved q/k rows, ``{"model": state_dict}``, torch.save)."""
    from mlx_audio_tts.models.csm.load import read_weights

    state = read_weights(FIX / "torchtune_layers.pt")
    assert "backbone.layers.0.attn.output_proj.weight" in state
    assert "decoder.norm.scale" in state
    got = convert.convert_weights(state, model.args)
    ours = _params(model)
    assert got and set(got) <= set(ours)
    for k, v in got.items():
        np.testing.assert_array_equal(np.asarray(v.astype(mx.float32)), ours[k], err_msg=k)


def test_saved_model_reloads_and_converts_from_files(model, tmp_path):
    folder = convert.save_model(model, tmp_path / "ours")
    again, where = csm.load_csm_weights(folder)
    assert where == folder
    for k, v in _params(model).items():
        np.testing.assert_array_equal(_params(again)[k], v)
    shards = tmp_path / "file"  # a bare file with the config beside it
    shards.mkdir()
    shutil.copy(FIX / "config.json", shards / "config.json")
    shutil.copy(FIX / "model.safetensors", shards / "weights.safetensors")
    from_file, _ = csm.load_csm_weights(shards / "weights.safetensors", dtype="float32")
    np.testing.assert_array_equal(_params(from_file)["audio_head"], _params(model)["audio_head"])
    _tokenizer(tmp_path / "src_tok.json")
    shutil.copy(tmp_path / "src_tok.json", shards / "tokenizer.json")
    assert convert.main([str(shards / "weights.safetensors"), str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["model_type"] == "csm"


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model"):
        csm.load_csm_weights(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(FIX / "model.safetensors", bad / "model.safetensors")
    cfg = json.loads((FIX / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "hidden_size": 32}))
    with pytest.raises(ValueError, match="loading failed for"):
        csm.load_csm_weights(bad)
    with pytest.raises(ValueError, match="dtype must be"):
        csm.load_csm_weights(FIX, dtype="int8")
    sharded = tmp_path / "sharded"  # transformers' sharded save: the index names the files
    sharded.mkdir()
    shutil.copy(FIX / "config.json", sharded / "config.json")
    weights = dict(mx.load(str(FIX / "model.safetensors")))
    names = sorted(weights)
    halves = {"model-00001-of-00002.safetensors": names[:20],
              "model-00002-of-00002.safetensors": names[20:]}  # fmt: skip
    for file, keys in halves.items():
        mx.save_safetensors(str(sharded / file), {k: weights[k] for k in keys})
    index = {"weight_map": {k: f for f, keys in halves.items() for k in keys}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    shutil.copy(FIX / "model.safetensors", sharded / "model-stale.safetensors")  # not listed
    assert csm.load_csm_weights(sharded)[0].args.audio_num_codebooks == 4
    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="shard 'model-00002-of-00002.safetensors'"):
        csm.load_csm_weights(sharded)


def test_config_styles():
    official = csm.ModelArgs()
    assert official.backbone["hidden_size"] == 2048 and official.decoder["head_dim"] == 128
    assert official.backbone["rope_scaling"] == csm.LLAMA3_ROPE and official.max_seq_len == 2048
    flavors = {
        "model_type": "csm",
        "backbone_flavor": "llama-1B",
        "decoder_flavor": "llama-100M",
        "text_vocab_size": 128256,
        "audio_vocab_size": 2051,
        "audio_num_codebooks": 32,
    }
    assert csm.ModelArgs.from_dict(flavors) == official == csm.ModelArgs.from_dict({})
    assert csm.ModelArgs.from_dict(official.to_dict()) == official
    hf4 = {"model_type": "csm", "hidden_size": 2048, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "rope_theta": 500000,
           "rope_scaling": dict(csm.LLAMA3_ROPE), "depth_decoder_config": {
               "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
               "num_key_value_heads": 2, "rope_theta": 500000,
               "rope_scaling": dict(csm.LLAMA3_ROPE)}}  # fmt: skip
    got = csm.ModelArgs.from_dict(hf4)
    assert got.backbone == official.backbone and got.decoder["head_dim"] == 128
    tiny = csm.ModelArgs.from_dict(json.loads((FIX / "config.json").read_text()))
    assert tiny.audio_num_codebooks == 4 and tiny.decoder["rope_scaling"]["rope_type"] == "llama3"
    args = tiny.llama_args("backbone")
    assert args.rope_traditional and args.head_dim == 6
    with pytest.raises(ValueError, match="backbone_flavor must be one of"):
        csm.ModelArgs.from_dict({"backbone_flavor": "llama-8B"})
    with pytest.raises(ValueError, match="num_hidden_layers must be an int"):
        csm.ModelArgs.from_dict({**hf4, "num_hidden_layers": "16"})


def test_tokenizer_template(tok_file, tmp_path):
    tok = csm.TextTokenizer(tok_file)
    ids = tok.encode("[0]Hi")
    assert ids[0] == 1 and ids[-1] == 2 and len(ids) == 2 + len("[0]Hi")
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")).save(str(tmp_path / "t"))
    with pytest.raises(ValueError, match="not a Llama-3 tokenizer"):
        csm.TextTokenizer(tmp_path / "t")


def test_prompt_frames_with_context(gen):
    audio = np.zeros(5 * SAMPLES_PER_FRAME, np.float32)
    context = [csm.Segment(1, "Hello.", audio), csm.Segment(0, "Yes.", None)]
    tokens, mask = gen.prompt("Go", 1, context)
    n1, n2, n3 = len("[1]Hello.") + 2, len("[0]Yes.") + 2, len("[1]Go") + 2
    assert tokens.shape == mask.shape == (n1 + 6 + n2 + n3, 5)
    assert gen.codec.encoded == [(5 * SAMPLES_PER_FRAME, 1)]  # given [samples, 1]
    assert tokens[0, -1] == 1 and tokens[n1 - 1, -1] == 2 and mask[:n1, -1].all()
    assert not mask[:n1, :-1].any() and not tokens[:n1, :-1].any()
    audio_rows = slice(n1, n1 + 6)
    assert mask[audio_rows, :-1].all() and not mask[audio_rows, -1].any()
    np.testing.assert_array_equal(tokens[n1 : n1 + 5, :4].T, np.asarray(gen.encode(audio)))
    assert not tokens[n1 + 5].any()  # the EOS frame
    with pytest.raises(ValueError, match=r"context\[0\] must be a Segment"):
        gen.prompt("Go", 0, [("0", "Hi", None)])
    with pytest.raises(ValueError, match=r"codes must be \[4, frames\]"):
        gen.audio_frames(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"codes must be in \[0, 2051\)"):
        gen.audio_frames(np.full((4, 2), 2051))


def test_stops_on_the_all_zero_frame(gen):
    script = [[5, 6, 7, 8], [9, 10, 11, 12], [0, 0, 0, 0], [1, 1, 1, 1]]
    codes = gen.generate_codes("Hi there", 0, sampler=_scripted(script))
    np.testing.assert_array_equal(np.asarray(codes), np.array(script[:2]).T)
    audio = gen.generate("Hi there", 0, sampler=_scripted(script))
    assert audio.shape == (2 * SAMPLES_PER_FRAME, 1)
    np.testing.assert_array_equal(gen.codec.decoded[-1], np.array(script[:2]).T)
    assert gen.generate("Hi", sampler=_scripted([0] * 4)).shape == (0, 1)
    frames = list(gen.generate_frames("Hi", max_audio_length_ms=240, sampler=_scripted(
        [[3, 3, 3, 3]] * 9)))  # fmt: skip
    assert len(frames) == 3  # 240 ms: three 80 ms frames
    assert csm.CSM(gen.model, gen.tokenizer).generate_codes(
        "Hi", sampler=_scripted([0] * 4)).shape == (4, 0)  # fmt: skip
    with pytest.raises(RuntimeError, match="needs the Mimi codec"):
        csm.CSM(gen.model, gen.tokenizer).generate("Hi")


def test_real_sampling_runs(gen):
    mx.random.seed(0)
    frames = list(gen.generate_frames("Hi", 0, max_audio_length_ms=400))
    assert 0 < len(frames) <= 5 and all(int(f.max()) < 2051 and f.shape == (4,) for f in frames)
    greedy = [np.asarray(f) for f in gen.generate_frames("Hi", 0, max_audio_length_ms=400,
                                                         temperature=0)]  # fmt: skip
    again = [np.asarray(f) for f in gen.generate_frames("Hi", 0, max_audio_length_ms=400,
                                                        temperature=0.0, topk=1)]  # fmt: skip
    assert np.array_equal(greedy, again)
    everything = gen.generate_frames("Hi", 0, max_audio_length_ms=160, topk=5000)  # > 2051
    assert len(list(everything)) <= 2


def test_never_samples_codes_mimi_cannot_decode(gen):
    # ids 2048-2050 (padding and specials) have no Mimi entry: masked before every sampler
    def highest_allowed(logits):  # the largest id whose logit is not -inf
        ids = mx.arange(logits.shape[-1])
        return mx.argmax(mx.where(logits > -mx.inf, ids, -1), axis=-1)

    frames = list(gen.generate_frames("Hi", 0, max_audio_length_ms=160, sampler=highest_allowed))
    assert len(frames) == 2 and all(np.asarray(f).tolist() == [2047] * 4 for f in frames)
    mx.random.seed(1)
    flat = gen.decodable(lambda logits: mx.random.categorical(logits))  # every id equally likely
    draws = np.asarray(flat(mx.zeros((4000, 2051))))
    assert draws.max() < 2048 and draws.max() > 2000


def test_context_past_2048_positions_is_a_clear_error(gen):
    long_audio = np.zeros(1000 * SAMPLES_PER_FRAME, np.float32)
    context = [csm.Segment(0, "a", long_audio)]  # 6 text + 1001 audio frames
    text_len = len("[0]Hi") + 2
    with pytest.raises(
        ValueError,
        match=r"exceed CSM's 2048 positions by 91: shorten the "
        r"context by 91 positions .* or lower max_audio_length_ms to 82720",
    ):
        gen.generate_frames("Hi", 0, context)
    with pytest.raises(ValueError, match="by 2105: shorten the context by 2105"):
        gen.generate_frames("Hi", 0, [csm.Segment(0, "a", long_audio)] * 3)
    # exactly 2048 positions is allowed
    ms = (2048 - 1007 - text_len) * 80
    frames = gen.generate_frames("Hi", 0, context, max_audio_length_ms=ms,
                                 sampler=_scripted([0] * 4))  # fmt: skip
    assert list(frames) == []
    with pytest.raises(ValueError, match="by 1"):
        gen.generate_frames("Hi", 0, context, max_audio_length_ms=ms + 80)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"temperature": -0.1}, "temperature must be a number >= 0"),
        ({"temperature": float("nan")}, "temperature must be"),
        ({"topk": 0}, "topk must be an int >= 1"),
        ({"topk": 2.5}, "topk must be an int >= 1"),
        ({"max_audio_length_ms": 10}, "max_audio_length_ms must be a number >= 80"),
        ({"speaker": "0"}, "speaker must be a non-negative int"),
        ({"speaker": True}, "speaker must be a non-negative int"),
        ({"speaker": -1}, "speaker must be a non-negative int"),
        ({"text": None}, "text must be a string"),
    ],  # fmt: skip
)
def test_bad_arguments(gen, kwargs, message):
    args = {"text": "Hi", "speaker": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        gen.generate_frames(**args)


def test_reference_audio_needs_its_transcript(gen):
    csm.check_reference(None, None)
    csm.check_reference(np.zeros(10), "the words")
    for text in (None, "", "  "):
        with pytest.raises(ValueError, match="pass ref_text="):
            csm.check_reference(np.zeros(10), text)
    with pytest.raises(ValueError, match="Segment.speaker, text, audio"):
        csm.check_reference(np.zeros(10), None)
    with pytest.raises(RuntimeError, match="context audio needs the Mimi codec"):
        csm.CSM(gen.model, gen.tokenizer).prompt("Hi", 0, [csm.Segment(0, "a", np.zeros(9))])


def test_loads_through_the_hub(tok_file, hub_server, hub_env, tmp_path):
    folder = tmp_path / "repo"
    shutil.copytree(FIX, folder, ignore=shutil.ignore_patterns("*.npz", "*.md"))
    shutil.copy(tok_file, folder / "tokenizer.json")
    hub_server.add_repo("test/csm-tiny", folder)
    gen = csm.load_model("test/csm-tiny", codec=FakeCodec(), dtype="float32")
    assert gen.num_codebooks == 4 and gen.sample_rate == 24000
    codes = gen.generate_codes("Hi", 0, sampler=_scripted([[4, 3, 2, 1], [0] * 4]))
    np.testing.assert_array_equal(np.asarray(codes), [[4], [3], [2], [1]])
    bare = tmp_path / "bare"  # no tokenizer.json: tokenizer= names a repo
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("tokenizer.json"))
    hub_server.add_repo("test/csm-bare", bare)
    tok_repo = tmp_path / "tok"
    tok_repo.mkdir()
    shutil.copy(tok_file, tok_repo / "tokenizer.json")
    hub_server.add_repo("test/llama-tok", tok_repo)
    gen = csm.load_model("test/csm-bare", tokenizer="test/llama-tok")
    assert gen.tokenizer.encode("a")[0] == 1
