"""Parity of SAM-Audio's T5 text encoder and tokenizer with transformers' (PyTorch).

Builds ``T5EncoderModel(T5Config(...))`` at t5-base's configuration (and the gated-gelu
variant of T5 v1.1 / flan-t5) with seeded random weights, every one perturbed
(``p += 0.02 * randn``, so norms are off 1), loads its state dict into ours through
``T5Encoder.sanitize`` and ``load_weights(strict=True)``, and compares ``last_hidden_state``
on a padded batch of two id sequences (every position, padding included). Then trains a tiny
sentencepiece model and checks that our ``T5Tokenizer`` gives transformers' ``T5Tokenizer``
ids and masks for a set of prompts. Last, times one encode of a 13-token prompt, both on 2
threads.

    python tools/parity/t5.py

Runs in the torch venv of ``make parity``; exits 1 when an error is over 1e-4 of the output's
scale or a token id differs.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")  # before the BLAS preload: the timed setting

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
import numpy as np
import sentencepiece as spm
import torch
from mlx_audio_sts.models.sam_audio.t5 import T5Config, T5Encoder, T5Tokenizer
from parity_common import rel_error
from transformers import T5Config as HFT5Config
from transformers import T5EncoderModel
from transformers import T5Tokenizer as HFT5Tokenizer

TOL = 1e-4
T5_BASE = {
    "vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12,
    "num_heads": 12, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6, "feed_forward_proj": "relu", "dropout_rate": 0.1,
}  # fmt: skip
LENGTHS = (200, 37)  # past max_distance 128: every bucket, the far ones included
PROMPTS = [
    "man speaking", "A dog barking loudly.", "", "  a  dog\tbarks\n", "a</s>dog <extra_id_0>",
    "zzz ß 日本", "ﬁne Ａ ＡＢ café", "<unk> <pad>", "rain, rain; go away!", "x" * 40,
]  # fmt: skip
SENTENCES = [
    "man speaking", "a dog barking loudly", "woman singing a song", "rain falling on a roof",
    "a car engine starting", "birds chirping in the morning", "a baby crying", "a door closing",
    "people talking in a cafe", "thunder rumbling far away", "footsteps on a wooden floor",
]  # fmt: skip


def build_reference(hidden_config: dict | None, seed: int) -> T5EncoderModel:
    """transformers' T5 encoder at t5-base's config (updated by ``hidden_config``), perturbed."""
    torch.manual_seed(seed)
    model = T5EncoderModel(HFT5Config(**{**T5_BASE, **(hidden_config or {})})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p += 0.02 * torch.randn_like(p)
    return model


def to_ours(ref: T5EncoderModel) -> T5Encoder:
    """Our encoder with the reference's weights (its state dict, tied copy included)."""
    model = T5Encoder(T5Config.from_dict(ref.config.to_dict()))
    state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    model.load_weights(list(T5Encoder.sanitize(state).items()), strict=True)
    mx.eval(model.parameters())
    return model


def inputs(vocab_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two id sequences of LENGTHS, the shorter padded with 0 and masked."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab_size, (2, max(LENGTHS)))
    mask = np.arange(max(LENGTHS))[None, :] < np.array(LENGTHS)[:, None]
    return np.where(mask, ids, 0), mask


def compare(hidden_config: dict | None = None, seed: int = 0) -> float:
    """Max abs error of our ``last_hidden_state`` against transformers', over the reference's
    max abs, for t5-base's config updated by ``hidden_config`` (e.g. a smaller one, or
    ``{"feed_forward_proj": "gated-gelu"}``)."""
    ref = build_reference(hidden_config, seed)
    ours = to_ours(ref)
    ids, mask = inputs(ref.config.vocab_size, seed)
    with torch.no_grad():
        want = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    got = ours(mx.array(ids), mx.array(mask))
    return rel_error(np.asarray(got), want.last_hidden_state.numpy())


def check_tokenizer() -> list[str]:
    """Differences between our tokenizer and transformers' over a tiny trained spiece.model."""
    with tempfile.TemporaryDirectory() as tmp:
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(SENTENCES * 3), model_writer=buf, vocab_size=64,
            model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            character_coverage=1.0, hard_vocab_limit=False, minloglevel=2,
        )  # fmt: skip
        (Path(tmp) / "spiece.model").write_bytes(buf.getvalue())
        theirs, ours = HFT5Tokenizer.from_pretrained(tmp), T5Tokenizer(Path(tmp) / "spiece.model")
        diffs = []
        for text in PROMPTS:
            want, got = theirs(text)["input_ids"], ours.encode(text)
            if want != got:
                diffs.append(f"{text!r}: transformers {want}, ours {got}")
        for max_length in (512, 5, 1):
            want = theirs(PROMPTS, truncation=True, max_length=max_length, padding="longest")
            ids, mask = ours(PROMPTS, max_length=max_length)
            if want["input_ids"] != np.asarray(ids).tolist() or (
                want["attention_mask"] != np.asarray(mask).astype(int).tolist()
            ):
                diffs.append(f"batch at max_length={max_length} differs")
    return diffs


def timing(repeats: int = 20) -> tuple[float, float]:
    """Median seconds of one encode of a 13-token prompt: (ours, transformers), 2 threads."""
    torch.set_num_threads(2)
    ref = build_reference(None, 0)
    ours = to_ours(ref)
    ids = np.random.default_rng(0).integers(3, 32000, (1, 13))
    ids[0, -1] = 1
    mask = np.ones_like(ids, bool)
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
    m_ids, m_mask = mx.array(ids), mx.array(mask)

    def run_ours():
        mx.eval(ours(m_ids, m_mask))

    def run_ref():
        with torch.inference_mode():
            ref(input_ids=t_ids, attention_mask=t_mask)

    times = {}
    for name, fn in (("ours", run_ours), ("transformers", run_ref)):
        for _ in range(3):
            fn()
        spans = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            spans.append(time.perf_counter() - start)
        times[name] = float(np.median(spans))
    return times["ours"], times["transformers"]


def main() -> int:
    failed = False
    variants = {"t5-base (relu)": None, "gated-gelu (T5 v1.1)": {"feed_forward_proj": "gated-gelu"}}
    for label, cfg in variants.items():
        err = compare(cfg)
        failed |= not err <= TOL
        print(f"| {label} | last_hidden_state | {err:.1e} |")
    diffs = check_tokenizer()
    print(f"tokenizer: {len(PROMPTS)} prompts and 3 padded batches, {len(diffs)} differences")
    for d in diffs:
        print(f"  {d}")
    ours, theirs = timing()
    print(f"13-token encode, 2 threads: ours {ours * 1e3:.1f} ms, transformers "
          f"{theirs * 1e3:.1f} ms")  # fmt: skip
    return 1 if failed or diffs else 0


if __name__ == "__main__":
    sys.exit(main())
