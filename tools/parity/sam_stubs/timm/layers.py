"""timm.layers stand-in with a working DropPath (stochastic depth)."""

import torch


class DropPath(torch.nn.Module):
    """Zeroes whole samples with probability ``drop_prob`` in training, rescaling the rest;
    the identity in eval mode (the only mode the parity reference runs in)."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep if self.scale_by_keep else x * mask
