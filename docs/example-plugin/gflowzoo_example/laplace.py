"""The Laplace kernel ``k(a, b) = exp(-||a - b|| / sigma)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gflowzoo.api import Kernel

#: distances are clamped below at this value: sqrt has an infinite slope at 0, and identical points must get a
#: zero (not NaN) gradient
MIN_DIST = 1e-6


class LaplaceKernel(Kernel):
    """``k(a, b) = exp(-||a - b||_2 / sigma)``, positive definite in any dimension.

    Args:
        sigma: the length scale, in feature units (> 0).
    """

    def __init__(self, sigma: float = 1.0) -> None:
        if sigma <= 0:
            from gflowzoo.api import ConfigError

            raise ConfigError(f"laplace kernel: sigma must be > 0; got {sigma}.")
        self.sigma = float(sigma)

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """``[N, M]`` Gram matrix of ``x`` ``[N, D]`` and ``y`` ``[M, D]``."""
        sq = (x[:, None, :] - y[None, :, :]).square().sum(-1)
        dist = sq.clamp_min(MIN_DIST**2).sqrt()
        return torch.exp(-dist / self.sigma)

    def diag(self, x: Tensor) -> Tensor:
        """``k(x_i, x_i)`` for ``x`` ``[N, D]``: 1 up to the distance clamp; ``[N]``."""
        return torch.full((x.shape[0],), math.exp(-MIN_DIST / self.sigma), dtype=x.dtype, device=x.device)
