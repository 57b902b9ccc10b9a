"""mlx.nn's quantized layers on the fast CPU kernel of :func:`mlx_audio_io.nn.quantized_matmul`.

mlx-lm builds its 4- and 8-bit models from ``nn.QuantizedLinear`` and ``nn.QuantizedEmbedding``
(whose ``as_linear`` is the LM head of tied-embedding Llamas). :func:`use_fast_quantized` turns
those layers of a loaded model into the subclasses below: same parameters (checkpoints load and
save unchanged), products through ``quantized_matmul`` (a memory-bound C kernel for decode
batches on the CPU, MLX's kernel elsewhere).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .nn import quantized_matmul


def _product(layer: nn.Module, x: mx.array) -> mx.array:
    return quantized_matmul(x, layer["weight"], layer["scales"], layer.get("biases"),
                            transpose=True, group_size=layer.group_size, bits=layer.bits,
                            mode=getattr(layer, "mode", "affine"))  # fmt: skip


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


_FAST = {nn.QuantizedLinear: QuantizedLinear, nn.QuantizedEmbedding: QuantizedEmbedding}


def use_fast_quantized(model: nn.Module) -> int:
    """Makes every ``nn.QuantizedLinear`` and ``nn.QuantizedEmbedding`` in ``model`` (exactly
    those classes, not subclasses of them) use the fast kernel, in place.

    The layers keep their parameters and attributes; only their class changes, so weights
    load, save and update as before and outputs equal MLX's within float rounding. Call it
    after ``nn.quantize`` or after loading a quantized model (mlx-lm's ``load_model``).

    Args:
        model: Any ``mlx.nn.Module`` tree.

    Returns:
        The number of layers switched.
    """
    count = 0
    for _, module in model.named_modules():
        fast = _FAST.get(type(module))
        if fast is not None:
            module.__class__ = fast
            count += 1
    return count
