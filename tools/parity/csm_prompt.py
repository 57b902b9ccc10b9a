"""CSM's prompt frames for the parity tool and the benchmark (``tools/bench/bench_csm.py``):
NumPy only, so that the benchmark's environment (no torch) can import it."""

from __future__ import annotations

import numpy as np


def prompt_frames(cfg: dict, seed: int, audio_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[L, K+1]`` and mask as Sesame's generator builds them: a context segment's
    text (BOS, tokens, EOS), its audio's frames and the all-zero EOS frame, then the text
    to speak. A long reference (``audio_frames``, 80 ms each) reaches the positions where
    llama3 RoPE scaling matters (at 50 positions, leaving it out changes the logits by only
    4e-5 of their scale)."""
    rng = np.random.default_rng(seed)
    k, vocab = cfg["num_codebooks"], cfg["text_vocab_size"]
    rows, masks = [], []
    for kind, n in (("text", 9), ("audio", audio_frames), ("eos", 1), ("text", 7)):
        frame = np.zeros((n, k + 1), np.int32)
        mask = np.zeros((n, k + 1), bool)
        if kind == "text":
            frame[:, -1] = [1, *rng.integers(3, vocab, n - 2), 2]
            mask[:, -1] = True
        else:
            frame[:, :k] = rng.integers(1, 2048, (n, k)) if kind == "audio" else 0
            mask[:, :k] = True
        rows.append(frame)
        masks.append(mask)
    return np.concatenate(rows), np.concatenate(masks)
