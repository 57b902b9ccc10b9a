"""mlx.nn's linear and embedding layers on the fast CPU kernels of :mod:`mlx_audio_io.nn`.

mlx-lm builds its models from ``nn.Linear`` and ``nn.Embedding`` (float32, float16,
bfloat16) or, quantized, ``nn.QuantizedLinear`` and ``nn.QuantizedEmbedding``; an embedding's
``as_linear`` is the LM head of tied-embedding Llamas. On Linux, MLX's CPU kernels are the
bottleneck of a decode step: float32 products with one row go through OpenBLAS's full sgemm
(under half the memory bandwidth here) and quantized ones are unpacked element by
element. :func:`use_fast_layers` turns all four kinds of layers of a loaded model into the
subclasses below; :func:`use_fast_quantized` only the quantized ones. The subclasses keep the
parameters (checkpoints load and save unchanged) and compute:

- ``Linear``, ``Embedding.as_linear``: :func:`mlx_audio_io.nn.linear` (a C kernel streaming
  each float32 weight row once for up to 8 rows of x on the CPU, MLX's matmul otherwise);
- ``QuantizedLinear``, ``QuantizedEmbedding.as_linear``:
  :func:`mlx_audio_io.nn.quantized_matmul` (a C kernel for 4- and 8-bit affine weights on the
  CPU, MLX's kernel otherwise).

Embedding lookups are MLX's. Outputs equal MLX's within float rounding; on Metal and CUDA the
layers call MLX's kernels.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .nn import linear, quantized_matmul


def _product(layer: nn.Module, x: mx.array) -> mx.array:
    return quantized_matmul(x, layer["weight"], layer["scales"], layer.get("biases"),
                            transpose=True, group_size=layer.group_size, bits=layer.bits,
                            mode=getattr(layer, "mode", "affine"))  # fmt: skip


class Linear(nn.Linear):
    """``mlx.nn.Linear`` whose product is :func:`mlx_audio_io.nn.linear`."""

    def __call__(self, x: mx.array) -> mx.array:
        return linear(x, self["weight"], self["bias"] if "bias" in self else None)


class Embedding(nn.Embedding):
    """``mlx.nn.Embedding`` whose ``as_linear`` (a tied LM head) is
    :func:`mlx_audio_io.nn.linear`; lookups are MLX's."""

    def as_linear(self, x: mx.array) -> mx.array:
        return linear(x, self["weight"])


class QuantizedLinear(nn.QuantizedLinear):
    """``mlx.nn.QuantizedLinear`` whose product is :func:`mlx_audio_io.nn.quantized_matmul`."""

    def __call__(self, x: mx.array) -> mx.array:
        y = _product(self, x)
        return y + self["bias"] if "bias" in self else y


class QuantizedEmbedding(nn.QuantizedEmbedding):
    """``mlx.nn.QuantizedEmbedding`` whose ``as_linear`` (a tied LM head) is
    :func:`mlx_audio_io.nn.quantized_matmul`; lookups are MLX's."""

    def as_linear(self, x: mx.array) -> mx.array:
        return _product(self, x)


_QUANTIZED = {nn.QuantizedLinear: QuantizedLinear, nn.QuantizedEmbedding: QuantizedEmbedding}
_ALL = {nn.Linear: Linear, nn.Embedding: Embedding, **_QUANTIZED}


def _switch(model: nn.Module, classes: dict) -> int:
    count = 0
    for _, module in model.named_modules():
        fast = classes.get(type(module))
        if fast is not None:
            module.__class__ = fast
            count += 1
    return count


def use_fast_layers(model: nn.Module) -> int:
    """Makes every ``nn.Linear``, ``nn.Embedding``, ``nn.QuantizedLinear`` and
    ``nn.QuantizedEmbedding`` in ``model`` (exactly those classes, not subclasses of them) use
    the fast kernels, in place.

    The layers keep their parameters and attributes; only their class changes, so weights
    load, save and update as before (``nn.quantize`` still finds the float layers) and
    outputs equal MLX's within float rounding. Call it after building or loading the model
    (mlx-lm's ``load_model``), e.g. on a float32 or 4-bit Llama before decoding.

    Args:
        model: Any ``mlx.nn.Module`` tree.

    Returns:
        The number of layers switched.
    """
    return _switch(model, _ALL)


def use_fast_quantized(model: nn.Module) -> int:
    """Makes every ``nn.QuantizedLinear`` and ``nn.QuantizedEmbedding`` in ``model`` (exactly
    those classes, not subclasses of them) use the fast kernel, in place; float layers stay
    MLX's (:func:`use_fast_layers` switches those too).

    The layers keep their parameters and attributes; only their class changes, so weights
    load, save and update as before and outputs equal MLX's within float rounding. Call it
    after ``nn.quantize`` or after loading a quantized model (mlx-lm's ``load_model``).

    Args:
        model: Any ``mlx.nn.Module`` tree.

    Returns:
        The number of layers switched.
    """
    return _switch(model, _QUANTIZED)
