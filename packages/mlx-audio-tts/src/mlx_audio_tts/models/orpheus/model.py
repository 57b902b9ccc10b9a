"""Orpheus-3B: its Llama through mlx-lm, its audio through SNAC 24 kHz.

The language model, KV cache, samplers and quantized layers are mlx-lm's (``mlx_lm.models.
llama``, ``generate_step``, ``sample_utils``); this module adds what is Orpheus' own: the
prompt, the token protocol (:mod:`.protocol`), the codec and the checks.
"""

from __future__ import annotations

import importlib
import math
import numbers
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
from mlx_audio_io.hub import read_config, resolve_model_path

import mlx.core as mx

from ...codecs import snac
from . import protocol

DEFAULT_MODEL = "mlx-community/orpheus-3b-0.1-ft-4bit"
DEFAULT_CODEC = "mlx-community/snac_24khz"
SAMPLE_RATE = 24000
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
_MLX_LM_MODULES = ("generate", "sample_utils", "utils")


def _mlx_lm() -> SimpleNamespace:
    """mlx-lm's modules (``mlx_lm.generate`` the module: the package's attribute of that name
    is the function)."""
    try:
        modules = {n: importlib.import_module(f"mlx_lm.{n}") for n in _MLX_LM_MODULES}
    except ImportError as e:
        raise RuntimeError(
            f"Orpheus needs mlx-lm: pip install 'mlx-audio-tts[orpheus]' ({e})"
        ) from e
    return SimpleNamespace(**modules)


def check_sampling(temperature, top_p, repetition_penalty, max_tokens) -> None:
    """Raises ValueError naming the first sampling argument out of range."""
    for name, value, ok, expected in (
        ("temperature", temperature, lambda v: v >= 0, "a number >= 0"),
        ("top_p", top_p, lambda v: 0 < v <= 1, "a number in (0, 1]"),
        ("repetition_penalty", repetition_penalty, lambda v: v > 0, "a number > 0"),
    ):
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and ok(value)):
            raise ValueError(f"{name} must be {expected}, got {value!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral):
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if max_tokens < protocol.FRAME_TOKENS:
        raise ValueError(f"max_tokens must be at least 7 (one SNAC frame), got {max_tokens!r}")


class OrpheusModel:
    """Orpheus text-to-speech: ``generate(text, voice)`` gives 24 kHz audio.

    Attributes:
        lm: The Llama (an ``mlx_lm.models.llama.Model``, quantized or not).
        tokenizer: mlx-lm's wrapper of the checkpoint's fast tokenizer.
        codec: The :class:`~mlx_audio_tts.codecs.snac.SNAC` 24 kHz codec.
        sample_rate: 24000.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, lm, tokenizer, codec, path: Path | None = None):
        self.lm, self.tokenizer, self.codec, self.path = lm, tokenizer, codec, path

    def prompt(self, text: str, voice: str = "tara") -> list[int]:
        """The prompt's token ids (see :func:`.protocol.prompt_ids`)."""
        return protocol.prompt_ids(self.tokenizer.encode, text, voice)

    def generate_tokens(
        self,
        text: str,
        voice: str = "tara",
        *,
        temperature: float = 0.6,
        top_p: float = 0.8,
        repetition_penalty: float = 1.3,
        max_tokens: int = 1200,
        sampler: Callable | None = None,
        logits_processors: list | None = None,
    ) -> Iterator[int]:
        """Yields the generated token ids until the end of speech or ``max_tokens`` (then a
        warning says the speech was cut). ``sampler`` and ``logits_processors`` replace
        mlx-lm's (as in ``mlx_lm.generate_step``)."""
        check_sampling(temperature, top_p, repetition_penalty, max_tokens)
        lm = _mlx_lm()
        prompt = mx.array(self.prompt(text, voice))
        if sampler is None:
            sampler = lm.sample_utils.make_sampler(temp=temperature, top_p=top_p)
        if logits_processors is None:
            logits_processors = lm.sample_utils.make_logits_processors(
                repetition_penalty=repetition_penalty
            )
        steps = lm.generate.generate_step(
            prompt, self.lm, max_tokens=max_tokens, sampler=sampler,
            logits_processors=logits_processors,
        )  # fmt: skip
        n = 0
        for token, _ in steps:
            token = int(token)
            n += 1
            yield token
            if token in (protocol.END_OF_SPEECH, protocol.END_OF_AI):
                return
        warnings.warn(
            f"Orpheus stopped at max_tokens={max_tokens} ({n} tokens, about "
            f"{n / protocol.FRAME_TOKENS * protocol.SAMPLES_PER_FRAME / SAMPLE_RATE:.1f} s of "
            "audio) before the end of speech: the speech is cut; raise max_tokens or split the "
            "text",
            UserWarning,
            stacklevel=2,
        )

    def decode(self, frames) -> mx.array:
        """SNAC frames (from :mod:`.protocol`) as audio ``[samples, 1]`` at 24 kHz."""
        if not frames:
            return mx.zeros((0, 1))
        codes = [mx.array(level, dtype=mx.int32) for level in protocol.level_codes(frames)]
        return self.codec.decode(codes)

    def generate(self, text: str, voice: str = "tara", **sampling) -> mx.array:
        """Speech for ``text`` as ``[samples, 1]`` float32 at 24 kHz (keyword arguments as for
        :meth:`generate_tokens`)."""
        asm = protocol.FrameAssembler()
        for token in self.generate_tokens(text, voice, **sampling):
            asm.push(token)
        return self.decode(asm.frames)


def _codec_for(folder: Path, codec_path) -> snac.SNAC:
    """The folder's own ``snac/`` if it has one, else ``codec_path`` (folder or Hub id)."""
    where = folder / "snac" if (folder / "snac" / "config.json").is_file() else codec_path
    try:
        return snac.load_model(where)
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"loading failed for '{folder}': Orpheus needs the SNAC 24 kHz codec, and "
            f"'{where}' could not be loaded ({e}); pass codec_path= a SNAC folder or repo id"
        ) from e


def load_model(
    model_path: str | Path = DEFAULT_MODEL,
    codec_path: str | Path = DEFAULT_CODEC,
    revision: str | None = None,
) -> OrpheusModel:
    """Loads Orpheus from a folder or Hub repo id: mlx-lm's layout (``config.json``,
    ``model*.safetensors``, quantized or not, sharded or not) plus ``tokenizer.json``; SNAC
    from the folder's ``snac/`` or ``codec_path``.

    Raises:
        FileNotFoundError: No such folder or repo.
        ValueError: Not a Llama checkpoint, or no tokenizer.
        RuntimeError: mlx-lm missing, or the codec cannot be loaded.
    """
    lm = _mlx_lm()
    folder = Path(resolve_model_path(model_path, revision=revision))
    config = read_config(folder / "config.json")
    if config.get("model_type") != "llama":
        raise ValueError(
            f"loading failed for '{folder / 'config.json'}': Orpheus is a Llama; model_type "
            f"is {config.get('model_type')!r}"
        )
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise ValueError(
            f"loading failed for '{folder}': no tokenizer (tokenizer.json); Orpheus needs the "
            "checkpoint's tokenizer"
        )
    model = load_lm(folder, config)
    tokenizer = lm.utils.load_tokenizer(folder)
    return OrpheusModel(model, tokenizer, _codec_for(folder, codec_path), folder)


def rope_overrides(config: dict) -> dict:
    """transformers 5 saves RoPE settings as ``rope_parameters`` (``rope_theta`` and the
    scaling together); mlx-lm's Llama reads ``rope_theta`` and ``rope_scaling`` and would
    silently fall back to theta 10000 without llama3 scaling. The equivalent older keys."""
    params = config.get("rope_parameters")
    if not isinstance(params, dict) or "rope_theta" in config:
        return {}
    out = {"rope_theta": params.get("rope_theta", 10000.0)}
    scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    if scaling.get("rope_type", "default") != "default":
        out["rope_scaling"] = scaling
    return out


def load_lm(folder: Path, config: dict | None = None):
    """The Llama in ``folder`` through ``mlx_lm.utils.load_model`` (quantized or not, sharded
    or not), with transformers 5's ``rope_parameters`` read."""
    lm = _mlx_lm()
    config = read_config(folder / "config.json") if config is None else config
    model, _ = lm.utils.load_model(folder, model_config=rope_overrides(config) or None)
    return model
