"""Orpheus end to end on a tiny model: a Llama built with mlx-lm at a reduced config but the
real vocabulary size, a character tokenizer built with `tokenizers`, and the SNAC fixture."""

import json
import shutil
from pathlib import Path

import mlx_audio_io  # noqa: F401

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_audio_tts.codecs.snac import PositionalNoise
from mlx_audio_tts.models.orpheus import model as orpheus
from mlx_audio_tts.models.orpheus import protocol as p

SNAC_FIX = Path(__file__).parent.parent / "fixtures" / "snac"
VOCAB = 156940  # Orpheus' own: 128266 + 7 * 4096 audio tokens, padded
LLAMA = {
    "model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64,
    "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
    "vocab_size": VOCAB, "rope_theta": 500000.0, "tie_word_embeddings": True,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "max_position_embeddings": 131072,
}  # fmt: skip


def _tokenizer(folder: Path) -> None:
    """A character-level tokenizer.json with Llama-3's BOS (128000) prepended."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 :,.!?<>'"))
    vocab = {c: i + 10 for i, c in enumerate(chars)}
    vocab.update({"<unk>": 0, "<|begin_of_text|>": 128000, "<|eot_id|>": 128009})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 128000)]
    )
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>", "unk_token": "<unk>",
    }))  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A model folder as mlx-lm writes one, with the codec in snac/."""
    from mlx_lm.models import llama

    d = tmp_path_factory.mktemp("orpheus")
    mx.random.seed(3)
    lm = llama.Model(llama.ModelArgs.from_dict(LLAMA))
    mx.save_safetensors(str(d / "model.safetensors"), dict(tree_flatten(lm.parameters())))
    (d / "config.json").write_text(json.dumps(LLAMA))
    _tokenizer(d)
    shutil.copytree(SNAC_FIX, d / "snac", ignore=shutil.ignore_patterns("*.npz"))
    return d


def _scripted(tokens):
    """A sampler that answers with these tokens, one per step (the LM still runs)."""
    it = iter(tokens)

    def sample(logprobs):
        return mx.array([next(it)], dtype=mx.uint32)

    return sample


def _frames(n, seed=0, size=64):  # the fixture codec has 64 codes per level
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(0, size)), tuple(int(c) for c in rng.integers(0, size, 2)),
             tuple(int(c) for c in rng.integers(0, size, 4))) for _ in range(n)]  # fmt: skip


def test_load_and_prompt(folder):
    m = orpheus.load_model(folder)
    assert m.sample_rate == 24000 and m.codec.config.codebook_size == 64
    ids = m.prompt("Hi <laugh>", "tara")
    assert ids[:2] == [p.START_OF_HUMAN, 128000] and ids[-4:] == [128009, 128260, 128261, 128257]
    assert len(ids) == 2 + len("tara: Hi <laugh>") + 4


def test_generated_tokens_become_the_codec_decode(folder):
    m = orpheus.load_model(folder)
    frames = _frames(5)
    script = [t for f in frames for t in p.frame_tokens(*f)] + [p.END_OF_SPEECH, 1, 2, 3]
    tokens = list(m.generate_tokens("Hello there.", sampler=_scripted(script), max_tokens=100))
    assert tokens == script[:36]  # stopped at the end of speech
    audio = m.generate("Hello there.", sampler=_scripted(script), max_tokens=100, seed=4)
    codes = [mx.array(c, dtype=mx.int32) for c in p.level_codes(frames)]
    noise = PositionalNoise(4)  # the seed fixes the decoder's noise too
    np.testing.assert_array_equal(np.asarray(audio), np.asarray(m.codec.decode(codes, noise=noise)))
    assert audio.shape[1] == 1 and audio.shape[0] > 0


def test_max_tokens_bounds_a_model_that_never_stops(folder):
    m = orpheus.load_model(folder)
    frames = _frames(40, seed=1)
    script = [t for f in frames for t in p.frame_tokens(*f)]
    with pytest.warns(UserWarning, match="stopped at max_tokens=21 .* the speech is cut"):
        tokens = list(m.generate_tokens("Hi", sampler=_scripted(script), max_tokens=21))
    assert len(tokens) == 21


def test_real_sampling_runs(folder):
    m = orpheus.load_model(folder)
    with pytest.warns(UserWarning, match="max_tokens=14"):  # random weights never stop
        tokens = list(m.generate_tokens("Hi", temperature=0.0, max_tokens=14))
    assert len(tokens) <= 14 and all(0 <= t < VOCAB for t in tokens)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"temperature": -0.1}, "temperature must be a number >= 0"),
        ({"top_p": 0.0}, r"top_p must be a number in \(0, 1\]"),
        ({"repetition_penalty": float("nan")}, "repetition_penalty must be"),
        ({"max_tokens": 3}, "max_tokens must be at least 7"),
        ({"max_tokens": 7.5}, "max_tokens must be a positive integer"),
    ],  # fmt: skip
)
def test_bad_sampling_arguments(folder, kwargs, message):
    m = orpheus.load_model(folder)
    with pytest.raises(ValueError, match=message):
        list(m.generate_tokens("Hi", **kwargs))
    with pytest.raises(ValueError, match="text must be a non-empty string"):
        m.generate("  ")


def test_folders_without_tokenizer_or_codec(folder, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("tokenizer*", "snac"))
    with pytest.raises(ValueError, match="no tokenizer"):
        orpheus.load_model(bare)
    no_codec = tmp_path / "no_codec"
    shutil.copytree(folder, no_codec, ignore=shutil.ignore_patterns("snac"))
    with pytest.raises(RuntimeError, match="needs the SNAC 24 kHz codec"):
        orpheus.load_model(no_codec, codec_path=tmp_path / "nowhere")
    assert orpheus.load_model(no_codec, codec_path=SNAC_FIX).codec is not None
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2"}))
    with pytest.raises(ValueError, match="Orpheus is a Llama"):
        orpheus.load_model(other)


def test_loads_through_the_hub(folder, hub_server, hub_env):
    hub_server.add_repo("test/orpheus-tiny", folder)
    m = orpheus.load_model("test/orpheus-tiny")
    assert m.prompt("Hi")[-1] == p.START_OF_SPEECH


LM_FIX = Path(__file__).parent.parent / "fixtures" / "orpheus_lm"


def test_lm_matches_transformers():
    """tools/parity/orpheus_lm.py's tiny fixture: transformers' LlamaForCausalLM (GQA, llama3
    rope scaling, tied embeddings) saved with save_pretrained, read by our loader."""
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import make_prompt_cache

    ref = np.load(LM_FIX / "reference.npz")
    model = orpheus.load_lm(LM_FIX)
    prompt, tokens = ref["prompt"].tolist(), ref["tokens"].tolist()
    cache = make_prompt_cache(model)
    logits = [model(mx.array([prompt]), cache=cache)[0]]
    logits += [model(mx.array([[t]]), cache=cache)[0] for t in tokens[:64]]

    def rel(a, b):
        return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())

    assert rel(logits[0], ref["prompt_logits"]) <= 1e-4
    assert rel(np.concatenate([np.asarray(x) for x in logits[1:]]), ref["step_logits"]) <= 1e-4
    greedy = [int(t) for t, _ in generate_step(mx.array(prompt), model, max_tokens=len(tokens),
                                               sampler=lambda x: mx.argmax(x, -1))]  # fmt: skip
    assert greedy == tokens


def test_transformers_5_rope_parameters_are_read():
    """transformers 5 writes rope_parameters; mlx-lm alone would fall back to theta 1e4."""
    cfg = json.loads((LM_FIX / "config.json").read_text())
    assert "rope_parameters" in cfg and "rope_theta" not in cfg
    got = orpheus.rope_overrides(cfg)
    assert got["rope_theta"] == 500000.0 and got["rope_scaling"]["rope_type"] == "llama3"
    assert got["rope_scaling"]["factor"] == 32.0 and "rope_theta" not in got["rope_scaling"]
    assert orpheus.rope_overrides({**cfg, "rope_theta": 1.0}) == {}
    plain = {"rope_parameters": {"rope_type": "default", "rope_theta": 7.0}}
    assert orpheus.rope_overrides(plain) == {"rope_theta": 7.0}
