"""A small time-conditional MLP noise predictor for low-dimensional data (the 2-D toys), where a U-Net does not
apply."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(timesteps: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style embedding of float ``timesteps`` ``[N]`` -> ``[N, dim]`` (``dim`` even): ``cos`` and ``sin``
    of ``timesteps * max_period ** (-i / (dim / 2))`` for ``i = 0 .. dim/2 - 1``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device, dtype=torch.float32) / half)
    arg = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


class TimeMLP(nn.Module):
    """``eps(x, k)``: an MLP with a sinusoidal timestep embedding added to every hidden layer.

    Args:
        dim: data dimension ``d`` (``x`` is ``[N, d]``).
        width: hidden width.
        depth: number of hidden layers (>= 1).
        embed_dim: size of the sinusoidal timestep embedding.

    ``forward(x, timesteps)`` takes ``x`` ``[N, d]`` and float diffusion timesteps ``[N]`` (``0 .. T - 1``) and
    returns the predicted noise ``[N, d]``.
    """

    def __init__(self, dim: int, width: int = 256, depth: int = 3, embed_dim: int = 64) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError("TimeMLP needs depth >= 1 and width >= 1")
        self.embed_dim = embed_dim
        self.time = nn.Sequential(nn.Linear(embed_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Linear(dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, dim)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        """Predicted noise ``[N, d]`` for ``x`` ``[N, d]`` at float timesteps ``[N]``."""
        temb = self.time(sinusoidal_embedding(timesteps.to(x.device), self.embed_dim).to(x.dtype))
        h = self.inp(x)
        for layer in self.hidden:
            h = layer(self.act(h + temb))
        return self.out(self.act(h))
