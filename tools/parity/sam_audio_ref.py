"""The official PyTorch SAM-Audio (facebookresearch/sam-audio), built offline with random weights.

Fetch the sources once with ``tools/parity/get_sam_audio_ref.sh`` (sam-audio, dacvae and
perception_models at pinned commits in ``build/sam-audio-ref``, plus the PyPI packages they
import). Then, from a parity script::

    import sam_audio_ref as ref
    model = ref.build_reference(dict(dim=256, n_heads=4, n_layers=2), t5=ref.SMALL_T5)
    ref.fixed_watermark(model)                   # decode becomes deterministic
    batch = ref.processor(model)(descriptions=["man speaking"], audios=[wav])  # wav (1, N)
    out = model.separate(batch, noise=noise)     # noise (B, T, 256)
    weights = ref.state_dict_numpy(model)        # official checkpoint names, no T5 / vision
    t5_weights = ref.t5_state_dict_numpy(model)  # transformers' T5EncoderModel names

What is official and what is not: ``SAMAudio``, its DiT, DAC-VAE codec (official config),
processor, ``Batch``, ``separate`` and ``T5TextEncoder.forward`` run unchanged. Replaced:
the text encoder's weights (a random ``T5EncoderModel``, t5-base shape by default) and its
tokenizer (``TokenIds``: any callable returning ``input_ids`` and ``attention_mask`` can be set
with ``set_tokenizer``; our side must use the same ids); the 671 M PE-Core vision encoder (a
``NoVideoEncoder`` with only ``.dim``: without video the official model reads nothing else, it
feeds zeros (B, dim, T) to ``align_masked_video``); the span predictor and rankers (None).
Stand-ins for torchaudio, torchcodec, torchvision, timm and xformers live in
``tools/parity/sam_stubs`` (appended to ``sys.path``; real installs win).

The random codec is first rescaled so that its output depends on its input
(``condition_codec_``). Then every parameter is perturbed (seeded): ``p += 0.02 * randn *
(1 + |p|)``, and the two zero-initialised scalar gates (``align_masked_video.gate``,
``embed_anchors.gate``) are set to ``0.5 + 0.1 * randn``, so that no zero or one
initialisation can hide a missing term.

The codec decoder's watermark (dacvae ``Decoder.watermark``; the official decode draws a fresh
``torch.randint`` 16-bit message per call, ``fixed_watermark`` pins it). Shapes for the
official codec; x = output of the last DecoderBlock, (B, 96, N), N = 1920 * T; keys under
``audio_codec.decoder.``, W = ``wm_model.``, Dk = ``model.k.block.`` (DecoderBlock k)::

    a = tanh(conv_wn(96->1, k7, pad 3)(snake(x)))     W encoder_block.pre.{0,1}    (B, 1, N)
    h = conv(1->32, k7, causal)(a)                    W encoder_block.pre.3       (B, 32, N)
    for k = 4, 3, 2, 1 (wm stride s = 2, 4, 5, 8; c = 32, 64, 128, 256):
        h = h + conv(c/2->c, k1)(elu(conv(c->c/2, k3, causal)(elu(h))))    Dk 7.block.{1,3}
        h = conv(c->2c, k=2s, stride s, causal)(elu(h))                    Dk 11
    h = lstm(h) + h             (2 layers, 512->512, over time)  W encoder_block.post.0.lstm
    h = conv(512->128, k7, causal)(elu(h))            W encoder_block.post.2  (B, 128, N/320)
    h = h + sum_i E[2i + bit_i]  (E: 32 x 128, broadcast over time)  W msg_processor.msg_processor
    h = conv(128->512, k7, causal)(h)                 W decoder_block.pre.0
    h = lstm(h) + h                                   W decoder_block.pre.1.lstm  (B, 512, N/320)
    for k = 1, 2, 3, 4 (s = 8, 5, 4, 2; c = 512, 256, 128, 64):
        h = convT(c->c/2, k=2s, stride s)(elu(h))[..., :-s]                Dk 3
        h = h + conv(c/4->c/2, k1)(elu(conv(c/2->c/4, k3, causal)(elu(h))))   Dk 6.block.{1,3}
    h = conv(32->1, k7, causal)(elu(h))               W decoder_block.post.1      (B, 1, N)
    out = a + 0.25 * h          (alpha = wm_channels / d_wm_out = 32 / 128)

snake(x) = x + sin(alpha x)^2 / (alpha + 1e-9); conv_wn = weight_g * weight_v / ||weight_v||
(norm over all but dim 0) plus bias; plain convs and the LSTMs (torch gate order i, f, g, o;
bias_ih + bias_hh) have biases. "causal": left pad (k - 1) * dilation + 1 - stride, right pad
to a whole number of strides. ``no_watermark`` gives ``a`` alone (mlx-audio's decode).

    python tools/parity/sam_audio_ref.py    # smoke test: reduced DiT + official codec
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import transformers

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REF_DIR = REPO_ROOT / "build" / "sam-audio-ref"
STUBS_DIR = Path(__file__).resolve().parent / "sam_stubs"
# (folder under the reference dir, the package it must hold)
SOURCE_TREES = (("sam-audio", "sam_audio"), ("dacvae", "dacvae"), ("perception_models", "core"))

# HF t5-base's config.json, as T5TextEncoder loads it
T5_BASE = dict(
    vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.1,
    layer_norm_epsilon=1e-6, feed_forward_proj="relu", pad_token_id=0, eos_token_id=1,
)  # fmt: skip
# a T5 with every code path of t5-base and about 90 thousand weights
SMALL_T5 = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=384)
DEFAULT_MESSAGE_BITS = (1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 1)  # 0xB275
PERTURB_SCALE = 0.02
CODEC_WN_GAIN = 1.3
_ref_dir: Path | None = None  # where setup() imported sam_audio from


class SamAudioRefError(RuntimeError):
    """The reference sources or their dependencies are missing, or were imported from elsewhere."""


def setup(ref_dir: str | os.PathLike | None = None) -> Path:
    """Put the reference sources and the stubs on ``sys.path`` and import ``sam_audio``.

    Args:
        ref_dir: the folder get_sam_audio_ref.sh filled; default ``$SAM_AUDIO_REF`` or
            ``build/sam-audio-ref`` (relative paths are taken from the repository root).

    Returns:
        The reference folder, absolute.

    Raises:
        SamAudioRefError: a source tree is missing, an import fails, or ``sam_audio`` was
            already imported from somewhere else.
    """
    global _ref_dir
    if ref_dir is None and _ref_dir is not None:
        return _ref_dir
    ref = Path(ref_dir or os.environ.get("SAM_AUDIO_REF") or DEFAULT_REF_DIR)
    ref = ref if ref.is_absolute() else REPO_ROOT / ref
    hint = f"run tools/parity/get_sam_audio_ref.sh {ref}"
    missing = [tree for tree, package in SOURCE_TREES if not (ref / tree / package).is_dir()]
    if missing:
        raise SamAudioRefError(f"SAM-Audio reference sources missing in '{ref}': {missing}; {hint}")
    for tree, _ in reversed(SOURCE_TREES):
        if str(ref / tree) not in sys.path:
            sys.path.insert(0, str(ref / tree))
    if str(STUBS_DIR) not in sys.path:
        sys.path.append(str(STUBS_DIR))
    try:
        sam_audio = importlib.import_module("sam_audio")
    except ImportError as e:
        raise SamAudioRefError(f"importing the SAM-Audio reference failed: {e}; {hint}") from e
    if not Path(sam_audio.__file__).resolve().is_relative_to(ref.resolve()):
        raise SamAudioRefError(
            f"sam_audio was imported from '{sam_audio.__file__}', not from '{ref}'; "
            "call setup() before anything imports sam_audio"
        )
    _ref_dir = ref
    return ref


def official(name: str):
    """An official module by dotted name under ``sam_audio`` (``"model.model"``, ``"processor"``).

    ``import sam_audio.model.x`` does not work: ``sam_audio/__init__``'s star imports rebind
    ``sam_audio.model`` to the ``sam_audio.model.model`` module, so this goes via importlib.
    """
    setup()
    return importlib.import_module(f"sam_audio.{name}")


class TokenIds:
    """The tokenizer hook given to the official ``T5TextEncoder`` (its ``forward`` calls
    ``tokenizer(texts, truncation=, max_length=, padding="longest", return_tensors="pt")``).

    A description is either a string, encoded byte by byte as ``3 + byte % (vocab_size - 3)``
    followed by ``</s>`` = 1 (ByT5's layout; the real t5-base spiece model is not available
    offline), or a sequence of token ids used as given. Rows are right-padded with 0 to the
    longest; ``attention_mask`` is 1 on tokens. Our side calls the same object to get the ids.
    """

    def __init__(self, vocab_size: int):
        if vocab_size < 4:
            raise ValueError(f"vocab_size must be at least 4, got {vocab_size!r}")
        self.vocab_size = vocab_size

    def encode(self, description: str | Sequence[int], max_length: int | None = None):
        """Token ids (list of int) of one description, cut to ``max_length`` keeping ``</s>``."""
        if isinstance(description, str):
            ids = [3 + b % (self.vocab_size - 3) for b in description.encode("utf-8")]
            return (ids if max_length is None else ids[: max_length - 1]) + [1]
        ids = [int(i) for i in description]
        return ids if max_length is None else ids[:max_length]

    def __call__(self, texts, *, truncation=True, max_length=None, **kwargs) -> dict:
        """``{"input_ids": (B, L) int64, "attention_mask": (B, L) int64}``."""
        rows = [self.encode(t, max_length if truncation else None) for t in texts]
        length = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class NoVideoEncoder(torch.nn.Module):
    """Stands for PerceptionEncoder (PE-Core-L14-336) when there is no video: SAMAudio reads
    only its ``.dim`` (zeros of shape (B, dim, T) go to ``align_masked_video``)."""

    def __init__(self, cfg):
        super().__init__()
        self.dim = cfg.dim

    def forward(self, videos):
        raise NotImplementedError("the parity SAM-Audio has no vision encoder (video prompts)")


def t5_config(overrides: dict | None = None) -> transformers.T5Config:
    """t5-base's ``T5Config`` with ``overrides`` (d_model, num_layers, num_heads, d_ff, ...)."""
    return transformers.T5Config(**{**T5_BASE, **(overrides or {})})


def _text_encoder_class(config: transformers.T5Config, tokenizer: Callable):
    """A subclass of the official T5TextEncoder whose __init__ builds a random T5 instead of
    downloading t5-base; forward is the official one."""
    base = official("model.text_encoder").T5TextEncoder

    class RandomT5TextEncoder(base):
        def __init__(self, cfg):
            torch.nn.Module.__init__(self)
            self.model = transformers.T5EncoderModel(config)
            self.tokenizer = tokenizer
            self.pad_mode = cfg.pad_mode
            self.max_length = cfg.max_length

    return RandomT5TextEncoder


@contextlib.contextmanager
def _replaced(module, **names):
    """Temporarily rebind module-level names (the classes SAMAudio.__init__ instantiates)."""
    saved = {name: getattr(module, name) for name in names}
    try:
        for name, value in names.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def build_reference(
    transformer: dict,
    *,
    t5: dict | None = None,
    seed: int = 0,
    vision_dim: int = 1024,
    codec: dict | None = None,
    tokenizer: Callable | None = None,
    condition_codec: bool = True,
) -> torch.nn.Module:
    """The official ``SAMAudio`` with seeded random, perturbed weights (eval, float32).

    Args:
        transformer: ``TransformerConfig`` overrides for the DiT, e.g. ``dict(dim=256,
            n_heads=4, n_layers=2)``; ``context_dim`` defaults to ``dim`` (the memory is
            ``memory_proj(text) + sinusoid(t)``, already ``dim`` wide).
        t5: ``T5Config`` overrides of t5-base (``SMALL_T5`` for tests); None = t5-base.
        seed: seeds the init and the perturbation (the caller's RNG state is left alone).
        vision_dim: the vision feature width ``align_masked_video`` expects (1024 official).
        codec: ``DACVAEConfig`` overrides; None = the official DAC-VAE.
        tokenizer: the text encoder's tokenizer hook; default ``TokenIds(vocab_size)``.
        condition_codec: rescale the codec's init first (``condition_codec_``), so that its
            output depends on its input.

    Returns:
        ``SAMAudio``; ``model.ref_config`` holds the SAMAudioConfig dict it was built from
        (config.json's layout) and ``model.ref_t5_config`` the T5Config dict.
    """
    model_mod = official("model.model")
    transformer = {**transformer}
    transformer.setdefault("context_dim", transformer.get("dim", 2048))
    t5cfg = t5_config(t5)
    config = dict(
        audio_codec=codec, text_encoder={"dim": t5cfg.d_model},
        vision_encoder={"dim": vision_dim}, transformer=transformer,
        span_predictor=None, visual_ranker=None, text_ranker=None,
    )  # fmt: skip
    cfg = official("model.config").SAMAudioConfig(**config)
    text_encoder = _text_encoder_class(t5cfg, tokenizer or TokenIds(t5cfg.vocab_size))
    replaced = _replaced(model_mod, T5TextEncoder=text_encoder, PerceptionEncoder=NoVideoEncoder)
    with torch.random.fork_rng(devices=[]), replaced, warnings.catch_warnings():
        # dacvae uses the old torch.nn.utils.weight_norm (its checkpoints' weight_g/weight_v)
        warnings.filterwarnings("ignore", "`torch.nn.utils.weight_norm` is deprecated")
        torch.manual_seed(seed)
        model = model_mod.SAMAudio(cfg)
    model = model.float().eval()
    if condition_codec:
        condition_codec_(model.audio_codec)
    perturb_(model, seed)
    model.ref_config = {**config, "audio_codec": vars(cfg.audio_codec)}
    model.ref_t5_config = t5cfg.to_dict()
    return model


@torch.no_grad()
def condition_codec_(codec: torch.nn.Module) -> None:
    """Rescale a freshly initialised DAC-VAE so that every path carries its input (in place).

    At dacvae's init, decoding two different latents gives nearly the same waveform (biases and
    Snake offsets dominate), and the watermark residual does not depend on the audio at all:
    its plain convs are trunc-normal(0.02), which shrinks the signal about 5x per layer, and the
    message embedding (N(0, 1), 16 rows summed) saturates the LSTMs. So: weight-normed convs'
    ``weight_g`` times ``CODEC_WN_GAIN``; plain convs' weights scaled to std 1/sqrt(fan_in);
    the message embedding times 0.1. Decoded noise latents then reach about 0.7 peak, 0.18 rms.
    """
    for module in codec.modules():
        if not isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            continue
        if hasattr(module, "weight_g"):
            module.weight_g.mul_(CODEC_WN_GAIN)
            continue
        w = module.weight
        fan_in = w.shape[1] * w.shape[2]
        if isinstance(module, torch.nn.ConvTranspose1d):
            fan_in = w.shape[0] * w.shape[2] / module.stride[0]
        w.mul_(1 / (math.sqrt(fan_in) * w.std()))
    codec.decoder.wm_model.msg_processor.msg_processor.weight.mul_(0.1)


@torch.no_grad()
def perturb_(module: torch.nn.Module, seed: int, scale: float = PERTURB_SCALE) -> None:
    """In place, seeded: ``p += scale * randn * (1 + |p|)`` for every parameter, except that
    scalar gates named ``*.gate`` become ``0.5 + 0.1 * randn`` (tanh(gate) about 0.46)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        if name.endswith(".gate") and p.numel() == 1:
            p.copy_(0.5 + 0.1 * noise)
        else:
            p.add_(scale * noise * (1 + p.abs()))


def set_tokenizer(model: torch.nn.Module, tokenizer: Callable) -> None:
    """Give the text encoder another tokenizer hook (see ``TokenIds`` for the protocol)."""
    model.text_encoder.tokenizer = tokenizer


def message_tensor(message_bits=None) -> torch.Tensor:
    """A watermark message as the decoder takes it: (1, 16) or (B, 16) float32 of 0/1.

    Args:
        message_bits: None (``DEFAULT_MESSAGE_BITS``), an int in [0, 65535] (bit 15 first),
            16 bits, or a (B, 16) array of bits.
    """
    if message_bits is None:
        message_bits = DEFAULT_MESSAGE_BITS
    if isinstance(message_bits, int):
        if not 0 <= message_bits < 1 << 16:
            raise ValueError(f"message_bits must be in [0, 65535], got {message_bits!r}")
        message_bits = [(message_bits >> (15 - i)) & 1 for i in range(16)]
    bits = torch.as_tensor(np.asarray(message_bits), dtype=torch.float32)
    bits = bits[None] if bits.ndim == 1 else bits
    if bits.ndim != 2 or bits.shape[1] != 16 or not torch.all((bits == 0) | (bits == 1)):
        raise ValueError(f"message_bits must be 16 bits of 0/1, got shape {tuple(bits.shape)}")
    return bits


def fixed_watermark(model: torch.nn.Module, message_bits=None) -> torch.Tensor:
    """Make every decode embed the same message (the official path, deterministic).

    Patches this model's ``audio_codec.decoder.watermark`` to call dacvae's own
    ``Decoder.watermark`` with ``message_bits`` (see ``message_tensor``) instead of a random one,
    broadcast over the batch. Returns the (1 or B, 16) message used.
    """
    decoder = model.audio_codec.decoder
    message = message_tensor(message_bits)
    watermark = type(decoder).watermark

    def fixed(x, message_=None):
        given = message if message_ is None else message_
        return watermark(decoder, x, given.expand(x.shape[0], -1) if len(given) == 1 else given)

    decoder.watermark = fixed
    return message


def no_watermark(model: torch.nn.Module) -> None:
    """Decode without the watermark residual: ``tanh(conv(snake(x)))`` only (mlx-audio's way)."""
    decoder = model.audio_codec.decoder
    decoder.watermark = lambda x, message=None: decoder.wm_model.encoder_block.forward_no_conv(x)


def official_watermark(model: torch.nn.Module) -> None:
    """Undo ``fixed_watermark`` / ``no_watermark``: a random message per decode again."""
    model.audio_codec.decoder.__dict__.pop("watermark", None)


def processor(model: torch.nn.Module):
    """The official ``SAMAudioProcessor`` for ``model``'s codec, built without a download."""
    proc = official("processor").SAMAudioProcessor
    return proc(
        audio_hop_length=model.audio_codec.hop_length,
        audio_sampling_rate=model.audio_codec.sample_rate,
    )


def _numpy(state: dict) -> dict[str, np.ndarray]:
    return {k: v.detach().to(torch.float32).cpu().numpy() for k, v in state.items()}


def state_dict_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's state dict as float32 arrays under the official checkpoint names
    (``audio_codec.*`` with weight_g/weight_v, ``transformer.*``, ``proj.*``, ...), without
    ``text_encoder.*`` and ``vision_encoder.*``."""
    skip = ("text_encoder.", "vision_encoder.")
    return _numpy({k: v for k, v in model.state_dict().items() if not k.startswith(skip)})


def t5_state_dict_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The random T5 encoder's weights as float32 arrays, under ``T5EncoderModel``'s names
    (``shared.weight``, ``encoder.block.N.layer.M...``; the tied embedding appears twice)."""
    return _numpy(model.text_encoder.model.state_dict())


def _describe(name: str, wav: torch.Tensor) -> str:
    wav = wav.detach()
    rms = wav.pow(2).mean().sqrt()
    finite = bool(torch.isfinite(wav).all())
    return f"{name} {tuple(wav.shape)} max|x| {wav.abs().max():.4f} rms {rms:.4f} finite {finite}"


def _runs(row: torch.Tensor) -> str:
    """``[0, 0, 2, 2, 2]`` as ``"0x2 2x3"``."""
    values, counts = torch.unique_consecutive(row, return_counts=True)
    return " ".join(f"{v}x{c}" for v, c in zip(values.tolist(), counts.tolist(), strict=True))


def _describe_batch(batch) -> str:
    return (
        f"audios {tuple(batch.audios.shape)} wav_sizes {batch.wav_sizes.tolist()} "
        f"sizes {batch.sizes.tolist()} pad_mask sums {batch.audio_pad_mask.sum(1).tolist()} "
        f"anchor_ids {batch.anchor_ids.tolist()} alignment "
        + " | ".join(_runs(row) for row in batch.anchor_alignment)
    )


def _smoke() -> None:
    """Reduced DiT + official codec + small T5: ``separate`` on 2 s of noise, timed."""
    t = time.perf_counter()
    model = build_reference(dict(dim=256, n_heads=4, n_layers=2), t5=SMALL_T5, seed=0)
    fixed_watermark(model)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"build {time.perf_counter() - t:.1f} s ({torch.get_num_threads()} threads), ", end="")
    print(f"{len(state_dict_numpy(model))} tensors, {params:.1f} M params")
    audio = 0.1 * torch.randn(1, 2 * 48_000, generator=torch.Generator().manual_seed(1))
    proc = processor(model)
    for anchors in (None, [[("+", 0.5, 1.0)]]):
        batch = proc(descriptions=["man speaking"], audios=[audio], anchors=anchors)
        noise = torch.randn(
            1, int(batch.sizes.max()), 256, generator=torch.Generator().manual_seed(2)
        )
        t = time.perf_counter()
        with torch.inference_mode():
            feats = model._get_audio_features(batch.audios)
        encode_s, t = time.perf_counter() - t, time.perf_counter()
        out = model.separate(batch, noise=noise)
        print(f"\nanchors={anchors}: {_describe_batch(batch)}")
        print(f"  features {tuple(feats.shape)} max|x| {feats.abs().max():.3f}; ", end="")
        print(f"encode {encode_s:.1f} s, separate {time.perf_counter() - t:.1f} s")
        print("  " + _describe("target", out.target[0]))
        print("  " + _describe("residual", out.residual[0]))
    with torch.inference_mode():
        args = model._get_forward_args(batch)
        t = time.perf_counter()
        model(noisy_audio=noise, time=torch.tensor([0.5]), **args)
        nfe_s, t = time.perf_counter() - t, time.perf_counter()
        model.audio_codec.decode(noise.transpose(1, 2).reshape(2, 128, -1))
    print(f"one NFE {nfe_s:.2f} s, decode of both streams {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    again = model.separate(batch, noise=noise)
    diff = (again.target[0] - out.target[0]).abs().max()
    print(f"\nrepeat (fixed watermark): max diff {diff:.1e}, {time.perf_counter() - t:.1f} s")
    two = proc(["a", "b"], [audio[:, :62_400], audio], anchors=[[("-", 0.2, 0.6)], []])
    print(f"two audios: {_describe_batch(two)}")


if __name__ == "__main__":
    _smoke()
