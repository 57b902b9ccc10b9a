"""xformers.ops stand-in: ``AttentionBias`` for type hints and an ``fmha`` that raises."""

from _sam_stubs import unavailable


class AttentionBias:
    """Named in perception_models' signatures; never instantiated on the parity path."""


class _Fmha:
    """``fmha.<anything>`` raises: the reference's attention here is torch's SDPA."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return unavailable(f"xformers.ops.fmha.{name}")


fmha = _Fmha()
