"""Parity of Orpheus end to end (text -> tokens -> SNAC codes -> audio) with the official
stack: transformers' LlamaForCausalLM generating greedily with repetition penalty 1.3 over
the whole sequence (as vLLM and transformers' RepetitionPenaltyLogitsProcessor apply it),
canopyai's token protocol (orpheus_tts/decoder.py), and snac 1.2.1's decode.

The checkpoint is a transformers folder (save_pretrained: config.json with rope_parameters,
model.safetensors, generation_config.json) with a tokenizer.json built here, plus a SNAC
folder (config.json + pytorch_model.bin, tools/parity/snac.py's perturbed random weights at
the official config). The Llama keeps every feature of the official config (GQA, llama3 rope
scaling, tied embeddings, rms eps 1e-5, theta 5e5, Orpheus' 156940-token vocabulary) at a
reduced size. Random weights alone would rarely speak, so the tied embedding and the last
MLP are given a structure (:func:`speaking_weights`): every audio token of slot ``s`` carries
a direction ``d_s`` on top of its random row, the MLP maps ``d_s`` to ``d_{s+1}`` (and start
of speech to ``d_0``), so the greedy model emits audio tokens in the right slots, the code
chosen by the random part of the rows. Only 8 slot-0 codes are strong, and end of speech sits
between a fresh strong code and a penalised one: the model says end of speech once all 8 have
been used, which it does only if the penalty reaches back over the whole sequence (a 20-token
window forgets them and the speech never ends).

Ours runs through the public API: ``load_model(folder, codec_path=snac_folder)``,
``generate_tokens(text, voice, temperature=0.0, repetition_penalty=1.3)``, the protocol's
``FrameAssembler``, and the codec's decode fed the noise the reference's ``NoiseBlock``s drew.

    python tools/parity/orpheus.py    # markdown table; exit 1 when a stage is off
"""

# ruff: noqa: E402  (the official snac package is imported after a sys.path fix, below)
from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx
from parity_common import main, rel_error

# keep this folder off the path so that "import snac" finds the official package, not
# tools/parity/snac.py (loaded below under another name for its reference builder)
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
import numpy as np
import snac  # noqa: F401  (the official package, before tools/parity/snac.py needs it)
import torch

TOL = 1e-4
LLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
    "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32,
    "intermediate_size": 512, "vocab_size": 156940, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True,
    "bos_token_id": 128000, "eos_token_id": 128009, "pad_token_id": 128004,
    "torch_dtype": "float32",
}  # fmt: skip
TEXT, VOICE = "Hello there, nice to meet you! <laugh>", "tara"
PENALTY = 1.3
MAX_TOKENS = 140  # 20 frames: the structured model ends after 8
STRONG_SLOT0 = 8  # slot-0 codes that win until penalised; end of speech follows them
# canopyai's ids (orpheus_tts/engine_class.py, decoder.py), written out independently of ours
SOH, EOT, EOH, SOA, SOS, EOS = 128259, 128009, 128260, 128261, 128257, 128258
CUSTOM_BASE = 128256  # <custom_token_N> is token 128256 + N


def _snac_parity():
    """tools/parity/snac.py (its perturbed SNAC reference), under a name that is not snac."""
    spec = importlib.util.spec_from_file_location("snac_parity", HERE / "snac.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tokenizer(folder: Path) -> None:
    """A character tokenizer.json with Llama-3's specials and Orpheus' ``<custom_token_N>``
    names for ids 128256 and up (canopyai reads the codes back from those names)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 :,.!?<>'"))
    vocab = {c: i + 10 for i, c in enumerate(chars)}
    vocab.update({"<unk>": 0, "<|begin_of_text|>": 128000, "<|eot_id|>": 128009})
    vocab.update({f"<custom_token_{n}>": CUSTOM_BASE + n
                  for n in range(LLAMA["vocab_size"] - CUSTOM_BASE)})  # fmt: skip
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


def speaking_weights(model, seed: int) -> None:
    """Perturbs every weight (as orpheus_lm.py does), then gives the tied embedding and the
    last layer's MLP the slot structure described in the module docstring."""
    g = torch.Generator().manual_seed(seed)
    hidden = LLAMA["hidden_size"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * (0.2 if "norm" in name else 0.02))
        q, _ = torch.linalg.qr(torch.randn(hidden, 8, generator=g))
        d = q.T  # d[0..6]: the slots' directions, d[7]: start of speech
        emb = model.model.embed_tokens.weight
        audio0 = CUSTOM_BASE + 10
        for s in range(7):  # 3 x d_s: well above the random rows' spread of logits
            rows = slice(audio0 + s * 4096, audio0 + (s + 1) * 4096)
            emb[rows] += 3 * d[s]
        emb[audio0 : audio0 + 4096] -= 2 * d[0]  # slot 0: weak codes but ...
        strong = audio0 + torch.randperm(4096, generator=g)[:STRONG_SLOT0]
        emb[strong] += 2 * d[0]  # ... a few strong ones
        emb[SOS] += 3 * d[7]
        emb[EOS] += 2.7 * d[0]  # between a strong code (3) and a penalised one (3 / 1.3)
        mlp = model.model.layers[-1].mlp
        gain = 0.5  # the normed input holds d_src at ~5-15: gate * up gives 25-225
        for unit, (src, dst) in enumerate([(s, (s + 1) % 7) for s in range(7)] + [(7, 0)]):
            mlp.gate_proj.weight[unit] = d[src]
            mlp.up_proj.weight[unit] = d[src]
            mlp.down_proj.weight[:, unit] = gain * (d[dst] - d[src])


def build_checkpoint(folder: Path, seed: int):
    """The transformers folder (save_pretrained + tokenizer) and its model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**LLAMA)).eval()
    speaking_weights(model, seed)
    model.save_pretrained(folder, safe_serialization=True)
    write_tokenizer(folder)
    return model


def canopy_prompt(tokenizer) -> list[int]:
    """engine_class.py's ``_format_prompt``: start of human, the text, the four end tokens."""
    ids = tokenizer(f"{VOICE}: {TEXT}", return_tensors="pt").input_ids
    return [SOH, *ids[0].tolist(), EOT, EOH, SOA, SOS]


def canopy_codes(tokenizer, generated: list[int]) -> list[int]:
    """decoder.py's ``tokens_decoder``: each step's detokenized text, its last
    ``<custom_token_N>`` read as ``N - 10 - (count % 7) * 4096``, kept when positive."""
    kept = []
    for i in range(1, len(generated) + 1):
        text = tokenizer.decode(generated[:i])
        start = text.rfind("<custom_token_")
        if start == -1 or not text.endswith(">"):
            continue
        code = int(text[start + 14 : -1]) - 10 - (len(kept) % 7) * 4096
        if code > 0:
            kept.append(code)
    return kept


def canopy_levels(codes: list[int]) -> list[torch.Tensor]:
    """decoder.py's ``convert_to_audio`` mapping, over all whole frames at once."""
    n = len(codes) // 7
    f = codes[: n * 7]
    l0 = [f[7 * j] for j in range(n)]
    l1 = [c for j in range(n) for c in (f[7 * j + 1], f[7 * j + 4])]
    l2 = [c for j in range(n) for c in (f[7 * j + 2], f[7 * j + 3], f[7 * j + 5], f[7 * j + 6])]
    return [torch.tensor([x], dtype=torch.int32) for x in (l0, l1, l2)]


def reference(lm, codec, folder: Path) -> dict:
    """transformers' greedy generate with the whole-sequence repetition penalty, canopyai's
    protocol, snac's decode (its noise recorded)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = canopy_prompt(tokenizer)
    with torch.no_grad():
        out = lm.generate(torch.tensor([prompt]), do_sample=False, repetition_penalty=PENALTY,
                          max_new_tokens=MAX_TOKENS, eos_token_id=EOS,
                          pad_token_id=LLAMA["pad_token_id"])  # fmt: skip
    generated = out[0, len(prompt) :].tolist()
    codes = canopy_codes(tokenizer, generated)
    levels = canopy_levels(codes)
    drawn, randn = [], torch.randn

    def recording_randn(*args, **kwargs):
        x = randn(*args, **kwargs)
        drawn.append(x[:, 0].numpy().copy())  # [B, 1, T] -> [B, T]
        return x

    with torch.no_grad(), mock.patch.object(torch, "randn", recording_randn):
        audio = codec.decode(levels)
    return {"prompt": prompt, "tokens": generated, "codes": codes,
            "levels": [x[0].numpy() for x in levels], "audio": audio[0, 0].numpy(),
            "noise": drawn}  # fmt: skip


def ours(folder: Path, codec_folder: Path, ref: dict) -> dict:
    """The public API: load_model, generate_tokens (greedy, penalty 1.3), FrameAssembler,
    the codec's decode fed the reference's noise. And a control: the tokens with mlx-lm's
    default 20-token penalty window, which must differ (else the check could not see one)."""
    from mlx_audio_tts.models.orpheus import load_model, protocol
    from mlx_lm.sample_utils import make_logits_processors

    model = load_model(folder, codec_path=codec_folder)
    args = {"temperature": 0.0, "repetition_penalty": PENALTY, "max_tokens": MAX_TOKENS}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tokens = list(model.generate_tokens(TEXT, VOICE, **args))
        window = make_logits_processors(repetition_penalty=PENALTY)  # mlx-lm's 20 tokens
        control = list(model.generate_tokens(TEXT, VOICE, logits_processors=window, **args))
    cut = [str(w.message) for w in caught if "max_tokens" in str(w.message)]
    asm = protocol.FrameAssembler()
    asm.extend(tokens)
    levels = protocol.level_codes(asm.frames)
    audio = np.zeros(0, np.float32)
    if asm.frames:
        codes = [mx.array(x, dtype=mx.int32) for x in levels]
        noise = [mx.array(n) for n in ref["noise"]]
        same_frames = len(levels[0]) == len(ref["levels"][0])
        audio = np.array(model.codec.decode(codes, noise=noise if same_frames else None)[:, 0])
    return {"prompt": model.prompt(TEXT, VOICE), "tokens": tokens, "control": control,
            "levels": [np.array(x) for x in levels], "audio": audio, "cut": cut}  # fmt: skip


def _same(a, b) -> tuple[str, bool]:
    a, b = list(a), list(b)
    n = sum(x == y for x, y in zip(a, b, strict=False))
    return f"{n}/{len(b)} identical" + ("" if len(a) == len(b) else f" (ours: {len(a)})"), a == b


def rows(ref: dict, got: dict) -> list[tuple[str, str, bool]]:
    out = [("prompt ids (tokenizer + protocol)", *_same(got["prompt"], ref["prompt"]))]
    ended = ref["tokens"][-1:] == [EOS]  # else the window control below would prove nothing
    ends = "ends with end of speech" if ended else "**no end of speech**"
    same, ok = _same(got["tokens"], ref["tokens"])
    out.append((f"greedy tokens, public defaults ({len(ref['tokens'])} generated, {ends})", same,
                ok and ended))  # fmt: skip
    same, _ = _same(got["control"], ref["tokens"])
    out.append(("control: mlx-lm's default 20-token penalty window must differ", same,
                got["control"] != ref["tokens"]))  # fmt: skip
    n_audio = sum(t >= CUSTOM_BASE + 10 for t in ref["tokens"])
    zero = sum(c == 0 for c in ref["codes"])  # canopyai drops code 0, we keep it: none here
    name = f"codes ({n_audio} audio tokens, {len(ref['codes']) // 7} frames, {zero} code 0)"
    out.append((name, *_same(np.concatenate(got["levels"]), np.concatenate(ref["levels"]))))
    err = rel_error(got["audio"], ref["audio"])
    out.append((f"audio ({ref['audio'].size} samples, reference noise fed in)", f"{err:.1e}",
                err <= TOL))  # fmt: skip
    return out


def run_official() -> int:
    torch.set_num_threads(2)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder, codec_folder = Path(tmp) / "orpheus", Path(tmp) / "snac"
        lm = build_checkpoint(folder, 0)
        snac_parity = _snac_parity()
        codec = snac_parity.build_reference(snac_parity.OFFICIAL, 0, codec_folder)
        ref = reference(lm, codec, folder)
        got = ours(folder, codec_folder, ref)
    table = rows(ref, got)
    print("| stage (Orpheus end to end, reduced Llama + official SNAC, random weights) "
          "| error / scale | ok |")  # fmt: skip
    print("|---|---|---|")
    for name, value, ok in table:
        print(f"| {name} | {value} | {'yes' if ok else '**NO**'} |")
    c = LLAMA
    print(f"\n{time.time() - t0:.0f} s. Llama hidden {c['hidden_size']}, "
          f"{c['num_hidden_layers']} layers, {c['num_attention_heads']}/"
          f"{c['num_key_value_heads']} heads, vocab {c['vocab_size']}, llama3 rope scaling, tied "
          "embeddings, weights structured to speak (see the script); text "
          f"{TEXT!r}, voice {VOICE!r}, greedy, repetition penalty {PENALTY}. Reference: "
          "transformers' generate, canopyai's decoder.py protocol, snac 1.2.1's decode; ours: "
          "load_model + generate_tokens + FrameAssembler + the codec's decode.")  # fmt: skip
    if got["cut"]:  # expected from the control only
        print(f"\nOurs warned ({len(got['cut'])}x): {got['cut'][0]}")
    return 0 if all(ok for _, _, ok in table) else 1


def write_fixtures(folder: Path) -> None:
    raise SystemExit("tools/parity/orpheus.py writes no fixtures: the default tests cover the "
                     "pieces (orpheus_lm, snac fixtures)")  # fmt: skip


if __name__ == "__main__":
    main(__doc__, run_official, write_fixtures)
