"""The T5 text encoder SAM-Audio conditions on (``t5-base``), and its sentencepiece tokenizer.

T5 (Raffel et al. 2020, arXiv:1910.10683) is a pre-norm Transformer with an RMS-style LayerNorm
(no mean, no bias), unscaled dot-product attention, and one learned relative-position bias
(log-spaced buckets, computed in block 0 and added in every block). Parameter names are those
of ``transformers.T5EncoderModel.state_dict()``, so HF checkpoints load with a tiny
:meth:`T5Encoder.sanitize`. ``feed_forward_proj`` picks the ReLU MLP (T5) or the gated one
(``"gated-gelu"``: T5 v1.1, flan-t5), as transformers reads it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from pathlib import Path

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io import nn as aio_nn
from mlx_audio_io.hub import check_number, read_config, resolve_model_path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

_GELU_TANH = functools.partial(aio_nn.gelu, approximate="tanh")
_ACTIVATIONS = {"relu": nn.relu, "gelu": aio_nn.gelu, "gelu_new": _GELU_TANH,
                "gelu_pytorch_tanh": _GELU_TANH, "silu": nn.silu, "swish": nn.silu}  # fmt: skip
_HUB_FILES = ["config.json", "spiece.model", "model.safetensors"]
_LEGACY_NAMES = {"t5-small", "t5-base", "t5-large", "t5-3b", "t5-11b"}  # now google-t5/<name>


@dataclasses.dataclass
class T5Config:
    """A HF T5 ``config.json``'s architecture fields (defaults: transformers' ``T5Config``).

    ``dense_act_fn`` and ``is_gated_act`` follow ``feed_forward_proj`` (``"relu"``,
    ``"gated-gelu"`` → gated ``gelu_new``) unless the config names them, as in transformers.
    """

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"
    dense_act_fn: str | None = None
    is_gated_act: bool | None = None

    @classmethod
    def from_dict(cls, d: dict) -> T5Config:
        """Reads a config.json dict, ignoring keys that are not fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads"):
            check_number(name, getattr(self, name), 1, 1 << 20)
        check_number("num_layers", self.num_layers, 1, 1024)
        check_number("relative_attention_num_buckets", self.relative_attention_num_buckets, 4, 4096)
        check_number("relative_attention_max_distance", self.relative_attention_max_distance,
                     self.relative_attention_num_buckets // 4 + 1, 1 << 20)  # fmt: skip
        check_number("layer_norm_epsilon", self.layer_norm_epsilon, 0.0, 1.0, integer=False)
        parts = str(self.feed_forward_proj).split("-")
        if (len(parts) > 1 and parts[0] != "gated") or len(parts) > 2:
            raise ValueError("feed_forward_proj must be 'gated-{ACT}' or '{ACT}' (e.g. "
                             f"'gated-gelu', 'relu'), got {self.feed_forward_proj!r}")  # fmt: skip
        if self.dense_act_fn is None:
            gelu = self.feed_forward_proj == "gated-gelu"
            self.dense_act_fn = "gelu_new" if gelu else parts[-1]
        if self.is_gated_act is None:
            self.is_gated_act = parts[0] == "gated"
        if self.dense_act_fn not in _ACTIVATIONS:
            raise ValueError(f"dense_act_fn must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {self.dense_act_fn!r}")  # fmt: skip


@functools.lru_cache(maxsize=64)
def relative_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """Bidirectional bucket of every (query, key) pair, ``[length, length]`` int32, computed in
    float32 as transformers' ``T5Attention._relative_position_bucket`` does."""
    rel = np.arange(length)[None, :] - np.arange(length)[:, None]  # key - query
    half = num_buckets // 2
    out = (rel > 0).astype(np.int64) * half
    dist, exact = np.abs(rel), half // 2
    scale = np.float32(math.log(max_distance / exact))
    log = np.log(np.maximum(dist, 1).astype(np.float32) / np.float32(exact)) / scale
    large = np.minimum(exact + (log * np.float32(half - exact)).astype(np.int64), half - 1)
    return (out + np.where(dist < exact, dist, large)).astype(np.int32)


class T5Attention(nn.Module):
    """Multi-head self-attention without 1/sqrt(d) scaling; block 0 owns the bucket table."""

    def __init__(self, cfg: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.num_heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(
                cfg.relative_attention_num_buckets, cfg.num_heads
            )

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        b, length, _ = x.shape

        def heads(w):
            y = aio_nn.linear(x, w).reshape(b, length, self.num_heads, self.d_kv)
            return y.transpose(0, 2, 1, 3)

        q, k, v = heads(self.q.weight), heads(self.k.weight), heads(self.v.weight)
        scores = (q @ k.transpose(0, 1, 3, 2)) + bias
        out = mx.softmax(scores, axis=-1, precise=True) @ v
        return aio_nn.linear(out.transpose(0, 2, 1, 3).reshape(b, length, -1), self.o.weight)


class T5DenseActDense(nn.Module):
    """``wo(act(wi(x)))``, or gated: ``wo(act(wi_0(x)) * wi_1(x))``."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        if cfg.is_gated_act:
            self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
            self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        else:
            self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.gated, self.act = cfg.is_gated_act, _ACTIVATIONS[cfg.dense_act_fn]

    def __call__(self, x: mx.array) -> mx.array:
        if self.gated:
            h = self.act(aio_nn.linear(x, self.wi_0.weight)) * aio_nn.linear(x, self.wi_1.weight)
        else:
            h = self.act(aio_nn.linear(x, self.wi.weight))
        return aio_nn.linear(h, self.wo.weight)


class _Named(nn.Module):
    """A container that only gives its children HF's names (``encoder``, ``layer.0/1``)."""

    def __init__(self, **children):
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


class T5Block(nn.Module):
    """One pre-norm encoder block: ``layer.0`` self-attention, ``layer.1`` feed-forward."""

    def __init__(self, cfg: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        # T5LayerNorm is an RMS norm: no mean subtracted, no bias
        norm = functools.partial(nn.RMSNorm, cfg.d_model, cfg.layer_norm_epsilon)
        attn = T5Attention(cfg, has_relative_attention_bias)
        self.layer = [_Named(SelfAttention=attn, layer_norm=norm()),
                      _Named(DenseReluDense=T5DenseActDense(cfg), layer_norm=norm())]  # fmt: skip

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        attn, ff = self.layer
        x = x + attn.SelfAttention(attn.layer_norm(x), bias)
        return x + ff.DenseReluDense(ff.layer_norm(x))


class T5Encoder(nn.Module):
    """T5's encoder stack, as ``transformers.T5EncoderModel`` (inference, no dropout).

    Args:
        config: The architecture.
    """

    def __init__(self, config: T5Config):
        super().__init__()
        self.config = config
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        blocks = [T5Block(config, i == 0) for i in range(config.num_layers)]
        final_norm = nn.RMSNorm(config.d_model, config.layer_norm_epsilon)
        self.encoder = _Named(block=blocks, final_layer_norm=final_norm)

    def position_bias(self, length: int) -> mx.array:
        """Block 0's relative-position bias for ``length`` tokens, ``[1, heads, L, L]``."""
        cfg = self.config
        buckets = relative_buckets(length, cfg.relative_attention_num_buckets,
                                   cfg.relative_attention_max_distance)  # fmt: skip
        table = self.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        return table[mx.array(buckets)].transpose(2, 0, 1)[None]

    def __call__(self, input_ids, attention_mask=None) -> mx.array:
        """Encodes token ids.

        Args:
            input_ids: ``[batch, length]`` integer token ids (mx or numpy array).
            attention_mask: ``[batch, length]`` bool or 0/1: False marks padding, which no
                position attends to (as transformers: a large negative added to the scores).
                None attends to every position.

        Returns:
            ``last_hidden_state``: ``[batch, length, d_model]`` float32.

        Raises:
            ValueError: Wrong shapes or dtypes, or ids outside the vocabulary.
        """
        ids = mx.array(input_ids)
        if ids.ndim != 2 or ids.shape[1] == 0 or not mx.issubdtype(ids.dtype, mx.integer):
            raise ValueError(f"input_ids must be a non-empty integer [batch, length] array, got "
                             f"shape {tuple(ids.shape)} of {ids.dtype}")  # fmt: skip
        low, high = mx.min(ids).item(), mx.max(ids).item()
        if low < 0 or high >= self.config.vocab_size:
            raise ValueError(f"input_ids must be in [0, {self.config.vocab_size}), got values "
                             f"from {low} to {high}")  # fmt: skip
        bias = self.position_bias(ids.shape[1])
        if attention_mask is not None:
            mask = mx.array(attention_mask)
            if tuple(mask.shape) != tuple(ids.shape):
                raise ValueError(f"attention_mask must have input_ids' shape {tuple(ids.shape)}, "
                                 f"got {tuple(mask.shape)}")  # fmt: skip
            floor = mx.array(np.finfo(np.float32).min, mx.float32)
            bias = bias + mx.where(mask.astype(mx.bool_), 0.0, floor)[:, None, None, :]
        x = self.shared.weight[ids].astype(mx.float32)
        for block in self.encoder.block:
            x = block(x, bias)
        return self.encoder.final_layer_norm(x)

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """A HF T5 state dict (encoder-only or whole T5) to this module's names, as float32 mx
        arrays: drops ``decoder.*`` and ``lm_head.*``, and ``encoder.embed_tokens.weight`` (the
        tied copy of ``shared.weight``; renamed to it when ``shared.weight`` is absent).

        Raises:
            ValueError: ``encoder.embed_tokens.weight`` differs from ``shared.weight``.
        """
        out = {}
        for name, value in weights.items():
            if name.startswith(("decoder.", "lm_head.")):
                continue
            value = mx.array(value)
            out[name] = (
                value.astype(mx.float32) if mx.issubdtype(value.dtype, mx.floating) else value
            )
        tied = out.pop("encoder.embed_tokens.weight", None)
        if tied is not None and "shared.weight" not in out:
            out["shared.weight"] = tied
        elif tied is not None:
            shared = out["shared.weight"]
            if tied.shape != shared.shape or not mx.array_equal(tied, shared).item():
                raise ValueError("encoder.embed_tokens.weight must equal shared.weight (T5 ties "
                                 f"them), got a different {tuple(tied.shape)} array")  # fmt: skip
        return out


class T5Tokenizer:
    """T5's tokenizer over its ``spiece.model``: what ``AutoTokenizer.from_pretrained("t5-base")
    (texts, truncation=True, max_length=..., padding="longest")`` returns.

    Each text is split on T5's special tokens (``</s>``, ``<pad>``, ``<unk>``,
    ``<extra_id_N>``, which become their ids), the pieces between are sentencepiece-encoded,
    and ``</s>`` is appended.

    Args:
        path: The ``spiece.model`` file.
        extra_ids: T5's sentinel count: ``<extra_id_N>`` is id ``pieces + extra_ids - 1 - N``
            (or the model's own piece of that name).
    """

    def __init__(self, path: str | os.PathLike, extra_ids: int = 100):
        import sentencepiece as spm

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"loading failed for '{self.path}': file not found")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=os.fspath(self.path))
        except (RuntimeError, OSError) as e:
            raise ValueError(f"loading failed for '{self.path}': not a sentencepiece model "
                             f"({e})") from e  # fmt: skip
        self.pad_id, self.eos_id, self.unk_id = self.sp.pad_id(), self.sp.eos_id(), self.sp.unk_id()
        if min(self.pad_id, self.eos_id) < 0:
            raise ValueError(f"loading failed for '{self.path}': the model has no pad or eos "
                             "piece (T5's are <pad> = 0, </s> = 1)")  # fmt: skip
        n = self.sp.get_piece_size()
        self.special = {"</s>": self.eos_id, "<pad>": self.pad_id, "<unk>": self.unk_id}
        for i in range(extra_ids):  # HF appends the sentinels in reverse, unless spm has them
            piece = self.sp.piece_to_id(f"<extra_id_{i}>")
            self.special[f"<extra_id_{i}>"] = (
                n + extra_ids - 1 - i if piece == self.unk_id else piece
            )
        self._split = re.compile("(" + "|".join(map(re.escape, self.special)) + ")")

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, ending in ``</s>``, untruncated."""
        if not isinstance(text, str):
            raise ValueError(f"texts must be strings, got {text!r}")
        ids = []
        for i, part in enumerate(self._split.split(text)):
            if i % 2:
                ids.append(self.special[part])
            elif part:
                ids += self.sp.encode(part)
        return [*ids, self.eos_id]

    def __call__(self, texts: list[str], max_length: int = 512) -> tuple[mx.array, mx.array]:
        """Tokenizes a batch, truncated to ``max_length`` (keeping ``</s>`` last) and padded
        with ``<pad>`` on the right to the longest.

        Args:
            texts: The texts (a list or tuple of str).
            max_length: Most tokens per text, ``</s>`` included.

        Returns:
            ``(input_ids, attention_mask)``: ``[batch, length]`` int32 and bool.

        Raises:
            ValueError: ``texts`` is a bare string, empty, or holds a non-string.
        """
        if isinstance(texts, str) or not isinstance(texts, list | tuple) or not texts:
            hint = " (wrap one text in a list)" if isinstance(texts, str) else ""
            raise ValueError(f"texts must be a non-empty list of strings, got {texts!r}{hint}")
        check_number("max_length", max_length, 1, 1 << 31)
        rows = [self.encode(t) for t in texts]
        rows = [r if len(r) <= max_length else [*r[: max_length - 1], self.eos_id] for r in rows]
        length = max(map(len, rows))
        ids = np.full((len(rows), length), self.pad_id, np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        mask = np.arange(length)[None, :] < np.array([len(r) for r in rows])[:, None]
        return mx.array(ids), mx.array(mask)


def _read_weights(folder: Path) -> dict:
    """``model.safetensors``, else ``pytorch_model.bin`` through the restricted unpickler."""
    path = folder / "model.safetensors"
    if path.is_file():
        try:
            return mx.load(os.fspath(path))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"loading failed for '{path}': {e}") from e
    path = folder / "pytorch_model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"loading failed for '{folder}': no model.safetensors "
                                "(or pytorch_model.bin)")  # fmt: skip
    from mlx_audio_io.torchfile import load_torch_file

    state = load_torch_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError(f"loading failed for '{path}': not a state dict (names to tensors)")
    return state


def _resolve(path_or_repo: str | os.PathLike, revision: str | None) -> Path:
    """A local folder, or the Hub snapshot with the files T5 needs (``t5-base`` and the other
    legacy names mean ``google-t5/<name>``)."""
    if not Path(path_or_repo).expanduser().exists() and path_or_repo in _LEGACY_NAMES:
        path_or_repo = f"google-t5/{path_or_repo}"
    path = Path(path_or_repo).expanduser()
    if path.exists():
        return path
    folder = resolve_model_path(path_or_repo, revision=revision, allow_patterns=_HUB_FILES)
    if not (folder / "model.safetensors").is_file():
        patterns = [*_HUB_FILES[:2], "pytorch_model.bin"]
        folder = resolve_model_path(path_or_repo, revision=revision, allow_patterns=patterns)
    return folder


def load_t5(path_or_repo: str | os.PathLike = "t5-base", *, revision: str | None = None):
    """Loads T5's encoder and tokenizer from a folder or Hub repo holding ``config.json``,
    ``spiece.model`` and ``model.safetensors`` (or ``pytorch_model.bin``, read with no code run).

    Args:
        path_or_repo: A local folder, a Hub repo id, or ``"t5-base"`` (``google-t5/t5-base``).
        revision: The Hub revision; None is ``"main"``.

    Returns:
        ``(T5Encoder, T5Tokenizer)``, float32 weights, evaluated.

    Raises:
        FileNotFoundError: The folder, repo or one of its files is missing (named).
        ValueError: A file is corrupt, or the weights do not match the config.
    """
    folder = _resolve(path_or_repo, revision)
    if not folder.is_dir():
        raise FileNotFoundError(f"loading failed for '{folder}': expected a model folder")
    raw = read_config(folder / "config.json")
    if raw.get("model_type", "t5") not in ("t5", "mt5"):  # umt5 has a bias per block
        raise ValueError(f"loading failed for '{folder / 'config.json'}': model_type must be "
                         f"'t5', got {raw['model_type']!r}")  # fmt: skip
    try:
        config = T5Config.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"loading failed for '{folder / 'config.json'}': {e}") from e
    tokenizer = T5Tokenizer(folder / "spiece.model")
    model = T5Encoder(config)
    weights = _read_weights(folder)
    try:
        model.load_weights(list(T5Encoder.sanitize(weights).items()), strict=True)
    except ValueError as e:
        raise ValueError(f"loading failed for '{folder}': weights do not match config.json "
                         f"({e})") from e  # fmt: skip
    mx.eval(model.parameters())
    return model, tokenizer
