"""Kokoro's text side: the PL-BERT ALBERT, the bidirectional LSTMs, the text encoder and the
prosody predictor (``kokoro.modules`` and ``transformers.AlbertModel``), channels-last.

Parameter names follow the official state dict (LSTM weights keep torch's names and layout:
they are used as torch uses them), so conversion is mostly renaming-free.
"""

from __future__ import annotations

import math

from mlx_audio_io import nn as fnn

import mlx.core as mx
import mlx.nn as nn

from .istftnet import AdainResBlk1d


def _matmul(x: mx.array, linear: nn.Module) -> mx.array:
    """``x @ W.T`` of a Linear without its bias (added by a fused kernel), quantized or not."""
    if isinstance(linear, nn.QuantizedLinear):  # mlx_audio_io's kernel on the CPU
        return fnn.quantized_matmul(x, linear.weight, linear.scales, linear.biases,
                                    transpose=True, group_size=linear.group_size,
                                    bits=linear.bits)  # fmt: skip
    return x @ linear.weight.T


class AlbertLayer(nn.Module):
    """One ALBERT layer (post-norm attention and feed-forward, ``gelu_new``)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float, act: str):
        super().__init__()
        self.heads, self.act = heads, act
        self.attention = {
            "query": nn.Linear(hidden, hidden),
            "key": nn.Linear(hidden, hidden),
            "value": nn.Linear(hidden, hidden),
            "dense": nn.Linear(hidden, hidden),
            "LayerNorm": nn.LayerNorm(hidden, eps=eps),
        }
        self.ffn = nn.Linear(hidden, intermediate)
        self.ffn_output = nn.Linear(intermediate, hidden)
        self.full_layer_layer_norm = nn.LayerNorm(hidden, eps=eps)

    def __call__(self, x: mx.array, mask: mx.array | None) -> mx.array:
        att = self.attention
        b, t, c = x.shape
        h, d = self.heads, c // self.heads
        q, k, v = (att[n](x).reshape(b, t, h, d).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))  # fmt: skip
        if mask is None:
            ctx = fnn.attention(q, k, v, 1.0 / math.sqrt(d))
        else:
            ctx = mx.fast.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(d), mask=mask)
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, t, c)
        x = att["LayerNorm"](x + att["dense"](ctx))
        act = "gelu" if self.act == "gelu" else "gelu_tanh"
        y = self.ffn_output(fnn.bias_act(_matmul(x, self.ffn), self.ffn.bias, act))
        return self.full_layer_layer_norm(y + x)


class Albert(nn.Module):
    """``transformers.AlbertModel`` (one shared layer repeated), returning the last hidden
    state ``[batch, tokens, hidden]``."""

    def __init__(self, cfg: dict, vocab_size: int):
        super().__init__()
        e, hidden = cfg["embedding_size"], cfg["hidden_size"]
        eps = cfg["layer_norm_eps"]
        self.num_layers = cfg["num_hidden_layers"]
        self.embeddings = {
            "word_embeddings": nn.Embedding(vocab_size, e),
            "position_embeddings": nn.Embedding(cfg["max_position_embeddings"], e),
            "token_type_embeddings": nn.Embedding(cfg["type_vocab_size"], e),
            "LayerNorm": nn.LayerNorm(e, eps=eps),
        }
        layer = AlbertLayer(hidden, cfg["num_attention_heads"], cfg["intermediate_size"], eps,
                            cfg["hidden_act"])  # fmt: skip
        self.encoder = {
            "embedding_hidden_mapping_in": nn.Linear(e, hidden),
            "albert_layer_groups": [{"albert_layers": [layer]}],
        }

    def __call__(self, input_ids: mx.array, attention_mask: mx.array | None = None) -> mx.array:
        """``attention_mask`` ``[batch, tokens]``, 1 for real tokens (None: all)."""
        emb = self.embeddings
        t = input_ids.shape[1]
        x = (
            emb["word_embeddings"](input_ids)
            + emb["position_embeddings"](mx.arange(t))
            + emb["token_type_embeddings"](mx.zeros((1,), mx.int32))
        )  # works quantized too
        x = self.encoder["embedding_hidden_mapping_in"](emb["LayerNorm"](x))
        mask = None
        if attention_mask is not None and not bool(mx.all(attention_mask)):
            mask = mx.where(attention_mask[:, None, None, :] > 0, 0.0, -mx.inf).astype(x.dtype)
        layer = self.encoder["albert_layer_groups"][0]["albert_layers"][0]
        for _ in range(self.num_layers):
            x = layer(x, mask)
        return x


class LSTM(nn.Module):
    """``torch.nn.LSTM(input, hidden, batch_first=True, bidirectional=True)`` (one layer),
    with torch's parameter names and layouts (gates i, f, g, o)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        scale = 1.0 / math.sqrt(hidden_size)
        for suffix in ("l0", "l0_reverse"):
            setattr(self, f"weight_ih_{suffix}",
                    mx.random.uniform(-scale, scale, (4 * hidden_size, input_size)))  # fmt: skip
            setattr(self, f"weight_hh_{suffix}",
                    mx.random.uniform(-scale, scale, (4 * hidden_size, hidden_size)))  # fmt: skip
            setattr(self, f"bias_ih_{suffix}", mx.zeros((4 * hidden_size,)))
            setattr(self, f"bias_hh_{suffix}", mx.zeros((4 * hidden_size,)))

    def __call__(self, x: mx.array) -> mx.array:
        """``[batch, steps, input]`` -> ``[batch, steps, 2 * hidden]`` (forward, backward).

        Each direction's recurrence is :func:`mlx_audio_io.nn.lstm_recurrence` (a NumPy loop
        on the CPU: a step is too small for graph nodes to pay), one after the other."""
        b, t, _ = x.shape
        n = self.hidden_size
        if t == 0:
            return mx.zeros((b, 0, 2 * n), x.dtype)
        gates = []
        for d in ("l0", "l0_reverse"):  # every step's input gates
            bias = self[f"bias_ih_{d}"] + self[f"bias_hh_{d}"]
            gates.append(mx.addmm(bias, x, self[f"weight_ih_{d}"].T))
        fwd = fnn.lstm_recurrence(gates[0], self.weight_hh_l0)
        bwd = fnn.lstm_recurrence(gates[1], self.weight_hh_l0_reverse, reverse=True)
        return mx.concatenate([fwd, bwd], axis=-1)


class ChannelLayerNorm(nn.Module):
    """Kokoro's ``LayerNorm`` over the channels, with ``gamma``/``beta``."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.gamma, self.beta, self.eps = mx.ones((channels,)), mx.zeros((channels,)), eps

    def __call__(self, x: mx.array) -> mx.array:
        return mx.fast.layer_norm(x, self.gamma, self.beta, self.eps)


class TextEncoder(nn.Module):
    """Embedding, (conv, LayerNorm, LeakyReLU 0.2) x depth, bidirectional LSTM."""

    def __init__(self, channels: int, kernel_size: int, depth: int, n_symbols: int):
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, channels)
        pad = (kernel_size - 1) // 2
        conv = lambda: fnn.Conv1d(channels, channels, kernel_size, padding=pad)  # noqa: E731
        self.cnn = [[conv(), ChannelLayerNorm(channels)] for _ in range(depth)]
        self.lstm = LSTM(channels, channels // 2)

    def __call__(self, input_ids: mx.array) -> mx.array:
        """``[batch, tokens, channels]``."""
        x = self.embedding(input_ids)
        for conv, norm in self.cnn:
            x = nn.leaky_relu(norm(conv(x)), 0.2)
        return self.lstm(x)


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine, then ``(1 + gamma) * x + beta`` from the style."""

    def __init__(self, style_dim: int, channels: int, eps: float = 1e-5):
        super().__init__()
        self.fc = nn.Linear(style_dim, 2 * channels)
        self.eps = eps

    def __call__(self, x: mx.array, s: mx.array) -> mx.array:
        c = x.shape[-1]
        h = self.fc(s)[:, None]  # [batch, 1, 2C]
        return (1 + h[..., :c]) * mx.fast.layer_norm(x, None, None, self.eps) + h[..., c:]


class DurationEncoder(nn.Module):
    """Alternating bidirectional LSTMs and AdaLayerNorms, the style appended to every
    layer's input. Returns ``[batch, tokens, d_model + style_dim]``."""

    def __init__(self, style_dim: int, d_model: int, nlayers: int):
        super().__init__()
        self.lstms = []
        for _ in range(nlayers):
            self.lstms.append(LSTM(d_model + style_dim, d_model // 2))
            self.lstms.append(AdaLayerNorm(style_dim, d_model))

    def __call__(self, x: mx.array, style: mx.array) -> mx.array:
        s = mx.broadcast_to(style[:, None], (*x.shape[:2], style.shape[-1]))
        x = mx.concatenate([x, s], axis=-1)
        for block in self.lstms:
            if isinstance(block, AdaLayerNorm):
                x = mx.concatenate([block(x, style), s], axis=-1)
            else:
                x = block(x)
        return x


class ProsodyPredictor(nn.Module):
    """Durations (``lstm`` + ``duration_proj``) and the F0 and energy curves (``shared``
    LSTM, then AdaIN residual stacks, the middle one upsampling 2x)."""

    def __init__(self, style_dim: int, d_hid: int, nlayers: int, max_dur: int):
        super().__init__()
        self.text_encoder = DurationEncoder(style_dim, d_hid, nlayers)
        self.lstm = LSTM(d_hid + style_dim, d_hid // 2)
        self.duration_proj = {"linear_layer": nn.Linear(d_hid, max_dur)}
        self.shared = LSTM(d_hid + style_dim, d_hid // 2)
        for name in ("F0", "N"):
            setattr(self, name, [
                AdainResBlk1d(d_hid, d_hid, style_dim),
                AdainResBlk1d(d_hid, d_hid // 2, style_dim, upsample=True),
                AdainResBlk1d(d_hid // 2, d_hid // 2, style_dim),
            ])  # fmt: skip
        self.F0_proj = fnn.Conv1d(d_hid // 2, 1, 1)
        self.N_proj = fnn.Conv1d(d_hid // 2, 1, 1)

    def durations(self, d: mx.array) -> mx.array:
        """Per-token duration logits ``[batch, tokens, max_dur]`` from the encoder output."""
        return self.duration_proj["linear_layer"](self.lstm(d))

    def f0_n(self, en: mx.array, s: mx.array) -> tuple[mx.array, mx.array]:
        """F0 and energy ``[batch, 2 * frames]`` from frame features ``[batch, frames, C]``
        (``F0Ntrain``)."""
        x = self.shared(en)
        f0, n = x, x
        for block in self.F0:
            f0 = block(f0, s)
        for block in self.N:
            n = block(n, s)
        return self.F0_proj(f0)[..., 0], self.N_proj(n)[..., 0]
