"""Fixtures the io tests share."""

from mlx_audio_io import nn as aio_nn

import pytest


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the C kernels' calls (by name), so that a silent fallback to MLX fails the
    test."""
    calls = []
    native = aio_nn._native

    def spy(name, *args):
        calls.append(name)
        return native(name, *args)

    monkeypatch.setattr(aio_nn, "_native", spy)
    return calls
