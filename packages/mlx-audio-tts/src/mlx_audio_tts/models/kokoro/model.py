"""Kokoro-82M (StyleTTS 2 with an iSTFTNet decoder) in MLX: ``kokoro.KModel``'s forward pass."""

from __future__ import annotations

from dataclasses import dataclass

from mlx_audio_io import nn as fnn

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from .config import ModelConfig
from .istftnet import Decoder
from .modules import Albert, ProsodyPredictor, TextEncoder

# 12x the release's 82 million: a config cannot make the loader allocate tens of GB
MAX_PARAMETERS = 1_000_000_000


@dataclass
class Output:
    """One utterance: ``audio`` ``[samples]`` at ``sample_rate`` and the frames each token
    lasted (``pred_dur`` ``[tokens]``, 600 samples per frame)."""

    audio: mx.array
    pred_dur: mx.array


class KokoroModel(nn.Module):
    """Kokoro: phonemes and a 256-wide style vector (a voice pack's row) to 24 kHz audio.

    Inference only: there is no dropout, so ``eval()`` and ``train()`` give the same output.
    Build one from weights with :meth:`from_pretrained`; ``KokoroModel(ModelConfig())`` has
    random weights (tests, parity tooling). A config asking for more than ``MAX_PARAMETERS``
    (a billion) raises ``ValueError`` before anything is allocated.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.vocab = dict(config.vocab)
        self.folder = None  # the folder it was loaded from, if any (its voices/ are used first)
        plbert = config.plbert
        self.bert = Albert(plbert, config.n_token)
        self.bert_encoder = nn.Linear(plbert["hidden_size"], config.hidden_dim)
        self.context_length = plbert["max_position_embeddings"]
        self.predictor = ProsodyPredictor(
            config.style_dim, config.hidden_dim, config.n_layer, config.max_dur
        )
        self.text_encoder = TextEncoder(
            config.hidden_dim, config.text_encoder_kernel_size, config.n_layer, config.n_token
        )
        self.decoder = Decoder(
            config.hidden_dim, config.style_dim, config.istftnet, config.sample_rate,
            config.decoder_width, config.decoder_residual,
        )  # fmt: skip
        count = sum(v.size for _, v in tree_flatten(self.parameters()))  # lazy: nothing allocated
        if count > MAX_PARAMETERS:
            raise ValueError(
                f"the config asks for {count:,} parameters, more than the {MAX_PARAMETERS:,} "
                "allowed (Kokoro-82M has 82 million)"
            )

    @property
    def sample_rate(self) -> int:
        """Output sample rate (24000)."""
        return self.config.sample_rate

    @classmethod
    def from_pretrained(cls, name_or_path="hexgrad/Kokoro-82M", revision: str | None = None):
        """Loads hexgrad's layout (``config.json`` + ``kokoro-v1_0.pth``), the MLX-community
        safetensors layout or our own folder, from a local path or a Hub repo id. See
        :func:`mlx_audio_tts.models.kokoro.load.load_model`."""
        from .load import load_model

        return load_model(name_or_path, revision=revision)

    def sanitize(self, weights: dict) -> dict:
        """Official (torch-layout) weights -> this model's parameters. See
        :func:`mlx_audio_tts.models.kokoro.convert.sanitize`."""
        from .convert import sanitize

        return sanitize(self, weights)

    def tokenize(self, phonemes: str) -> mx.array:
        """Token ids ``[1, len + 2]`` of a phoneme string (unknown symbols dropped, as
        kokoro does), framed by the pad token 0.

        Raises:
            ValueError: More phonemes than the model's context (510).
        """
        ids = [self.vocab[p] for p in phonemes if p in self.vocab]
        if len(ids) + 2 > self.context_length:
            raise ValueError(
                f"{len(ids)} phoneme tokens do not fit Kokoro's context of "
                f"{self.context_length - 2}; split the text into shorter pieces"
            )
        return mx.array([[0, *ids, 0]], dtype=mx.int32)

    def predict(self, input_ids: mx.array, ref_s: mx.array, speed: float = 1.0,
                capture: dict | None = None) -> tuple[mx.array, mx.array, mx.array]:  # fmt: skip
        """The text side: ``(d, t_en, pred_dur)`` with the prosody encoder's output ``[1,
        tokens, hidden + style]``, the text encoder's ``[1, tokens, hidden]`` and the
        rounded frame count of every token (at least 1)."""
        cap = capture if capture is not None else {}
        s = ref_s[:, self.config.style_dim :]
        bert = self.bert(input_ids)
        d_en = self.bert_encoder(bert)
        d = self.predictor.text_encoder(d_en, s)
        logits = self.predictor.durations(d)
        duration = mx.sum(mx.sigmoid(logits), axis=-1) / speed
        pred_dur = mx.maximum(mx.round(duration), 1).astype(mx.int32)[0]
        t_en = self.text_encoder(input_ids)
        cap.update(bert=bert, d_en=d_en, d=d, duration=duration, t_en=t_en)
        return d, t_en, pred_dur

    def __call__(
        self,
        phonemes,
        ref_s,
        speed: float = 1.0,
        pred_dur=None,
        phase0=None,
        noise=None,
        capture: dict | None = None,
    ) -> Output:
        """Synthesises one utterance.

        Args:
            phonemes: A phoneme string (mapped through ``config.vocab``) or token ids ``[1,
                tokens]`` already framed by 0s.
            ref_s: The style ``[1, 256]``: a voice pack's row ``len(phonemes) - 1``
                (decoder half first, prosody half second).
            speed: Durations are divided by it.
            pred_dur: Frames per token to use instead of the predicted ones (alignment
                from elsewhere; parity checks).
            phase0, noise: The harmonic source's random initial phases ``[1, 9]`` and noise
                ``[1, samples, 9]``, drawn from ``mx.random`` when None.
            capture: Filled with every stage's output when given.
        """
        ids = self.tokenize(phonemes) if isinstance(phonemes, str) else mx.array(phonemes)
        if ids.ndim != 2 or ids.shape[0] != 1:
            raise ValueError(f"input ids must be [1, tokens], got shape {tuple(ids.shape)}")
        ref_s = mx.array(ref_s, dtype=mx.float32).reshape(1, -1)
        if ref_s.shape[1] != 2 * self.config.style_dim:
            raise ValueError(
                f"style vector must have {2 * self.config.style_dim} values, got {ref_s.shape[1]}"
            )
        with fnn.buffer_cache():  # the generator's many same-shaped intermediates
            return self._forward(ids, ref_s, speed, pred_dur, phase0, noise, capture)

    def _forward(self, ids, ref_s, speed, pred_dur, phase0, noise, capture) -> Output:
        cap = capture if capture is not None else {}
        d, t_en, predicted = self.predict(ids, ref_s, speed, cap)
        pred_dur = predicted if pred_dur is None else mx.array(pred_dur, dtype=mx.int32)
        if pred_dur.shape != (ids.shape[1],):
            raise ValueError(
                f"pred_dur must give one duration per token ({ids.shape[1]}), got shape "
                f"{tuple(pred_dur.shape)}"
            )
        indices = mx.array(np.repeat(np.arange(ids.shape[1]), np.asarray(pred_dur)))
        en = d[:, indices]  # the one-hot alignment matmul, as a gather
        asr = t_en[:, indices]
        f0, n = self.predictor.f0_n(en, ref_s[:, self.config.style_dim :])
        s = ref_s[:, : self.config.style_dim]
        x = self.decoder.features(asr, f0, n, s)
        har = self.decoder.generator.source(f0, phase0, noise)
        audio = self.decoder.generator(x, s, har=har)[0]
        mx.eval(audio)  # inside buffer_cache
        cap.update(pred_dur=pred_dur, en=en, asr=asr, F0=f0, N=n, features=x, har=har,
                   audio=audio)  # fmt: skip
        return Output(audio=audio, pred_dur=pred_dur)
