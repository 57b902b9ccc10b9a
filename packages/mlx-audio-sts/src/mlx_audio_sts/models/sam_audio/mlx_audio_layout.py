"""Reading the conversions made for mlx-audio (``mlx-community/sam-audio-*``): their names back
to the official checkpoint's, and every array into the layout our modules hold, by shape.

mlx-audio (0.6.2) renames the codec's modules (``encoder.blocks.{i}.res{j}.conv1``,
``decoder.blocks.{i}.block_{n}``, ``quantizer_in_proj``, ``wm_model....pre_{n}``, LSTM
``layers.{n}.Wx/Wh/bias`` with the two biases summed), stores convolutions channels-last and
drops ``align_masked_video.*``. Without that module the official model's constant
``tanh(gate) * LayerNorm(conv.bias)`` term cannot be rebuilt: such a checkpoint loads with the
term left out (a warning says so), which is what mlx-audio computes.
"""

from __future__ import annotations

import itertools
import re
import warnings

import mlx.core as mx

_ENCODER_RU = re.compile(
    r"^audio_codec\.encoder\.blocks\.(\d+)\.res(\d)\.(act1|conv1|act2|conv2)\."
)
_ENCODER_BLOCK = re.compile(r"^audio_codec\.encoder\.blocks\.(\d+)\.(snake|conv)\.")
_DECODER_BLOCK = re.compile(r"^audio_codec\.decoder\.blocks\.(\d+)\.block_(\d+)\.")
_UNIT = {"act1": 0, "conv1": 1, "act2": 2, "conv2": 3}
_LSTM = re.compile(r"\.lstm\.layers\.(\d+)\.(Wx|Wh|bias)$")
_RENAMES = (
    ("audio_codec.encoder.conv_in.", "audio_codec.encoder.block.0."),
    ("audio_codec.encoder.snake_out.", "audio_codec.encoder.block.5."),
    ("audio_codec.encoder.conv_out.", "audio_codec.encoder.block.6."),
    ("audio_codec.quantizer_in_proj.", "audio_codec.quantizer.in_proj."),
    ("audio_codec.quantizer_out_proj.", "audio_codec.quantizer.out_proj."),
    ("audio_codec.decoder.conv_in.", "audio_codec.decoder.model.0."),
    ("audio_codec.decoder.snake_out.", "audio_codec.decoder.wm_model.encoder_block.pre.0."),
    ("audio_codec.decoder.conv_out.", "audio_codec.decoder.wm_model.encoder_block.pre.1."),
)


def is_mlx_audio(weights: dict) -> bool:
    """True for a state dict in mlx-audio's names."""
    return any(k.startswith(("audio_codec.encoder.conv_in.", "audio_codec.quantizer_in_proj."))
               for k in weights)  # fmt: skip


def _official_name(key: str) -> str:
    for old, new in _RENAMES:
        if key.startswith(old):
            return new + key[len(old) :]
    if m := _ENCODER_RU.match(key):
        block, unit, part = int(m[1]), int(m[2]), m[3]
        return (
            f"audio_codec.encoder.block.{block + 1}.block.{unit - 1}.block.{_UNIT[part]}."
            + key[m.end() :]
        )
    if m := _ENCODER_BLOCK.match(key):
        index = 3 if m[2] == "snake" else 4
        return f"audio_codec.encoder.block.{int(m[1]) + 1}.block.{index}." + key[m.end() :]
    if m := _DECODER_BLOCK.match(key):
        rest = key[m.end() :]
        for part, index in _UNIT.items():
            if rest.startswith(part + "."):
                rest = f"block.{index}." + rest[len(part) + 1 :]
        return f"audio_codec.decoder.model.{int(m[1]) + 1}.block.{m[2]}." + rest
    return re.sub(r"\.(pre|post)_(\d+)\.", r".\1.\2.", key)


def to_official_names(weights: dict) -> dict:
    """mlx-audio's names -> the official checkpoint's (layouts unchanged; the LSTMs' summed
    bias becomes ``bias_ih`` with a zero ``bias_hh``)."""
    out = {}
    for key, value in weights.items():
        key = _official_name(key)
        if m := _LSTM.search(key):
            layer, part = m[1], m[2]
            base = key[: m.start()] + ".lstm."
            if part == "bias":
                out[f"{base}bias_ih_l{layer}"] = value
                out[f"{base}bias_hh_l{layer}"] = mx.zeros_like(value)
                continue
            key = f"{base}{'weight_ih' if part == 'Wx' else 'weight_hh'}_l{layer}"
        out[key] = value
    return out


def fit_layouts(weights: dict, expected: dict) -> dict:
    """Each 3-D array whose shape differs from ``expected[key]`` transposed to fit (the axis
    order that gives that shape); others as they are."""
    out = {}
    for key, value in weights.items():
        want = expected.get(key)
        if want is not None and value.ndim == 3 and tuple(value.shape) != tuple(want.shape):
            for axes in itertools.permutations(range(3)):
                if tuple(value.shape[a] for a in axes) == tuple(want.shape):
                    value = value.transpose(axes)
                    break
        out[key] = value
    return out


def fill_align(weights: dict, expected: dict, where: str) -> dict:
    """Adds ``align_masked_video.*`` with a zero gate when it is missing (a conversion that
    dropped it), with a warning."""
    missing = [k for k in expected if k.startswith("align_masked_video.") and k not in weights]
    if not missing:
        return weights
    warnings.warn(
        f"'{where}' has no align_masked_video weights (mlx-audio's conversions drop them): "
        "the official model's constant term from that module is left out, as mlx-audio does; "
        "the official facebook/sam-audio-* checkpoints have it",
        stacklevel=3,
    )
    weights = dict(weights)
    for key in missing:
        weights[key] = mx.zeros_like(expected[key])
    weights["align_masked_video.layer_norm.weight"] = mx.ones_like(
        expected["align_masked_video.layer_norm.weight"]
    )
    return weights
