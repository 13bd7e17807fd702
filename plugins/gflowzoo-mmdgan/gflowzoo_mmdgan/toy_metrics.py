"""Mode metrics of 2-D Gaussian-mixture toys (VEEGAN / PacGAN style), used by ``benchmarks/bench_baselines_toy.py``.

A sample is *high quality* if it lies within ``n_std`` standard deviations (Euclidean distance, raw units) of its
nearest mode centre; a mode is *covered* if at least ``min_count`` high-quality samples have it as nearest centre.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["mode_metrics"]


def mode_metrics(
    samples: Tensor, centres: Any, mode_std: float, n_std: float = 3.0, min_count: int = 1
) -> dict[str, float]:
    """Mode coverage of ``samples`` ``[N, 2]`` (raw units, i.e. after ``Dataset.to_unit``) for mixture
    ``centres`` ``[K, 2]`` with per-mode std ``mode_std``.

    Returns ``modes`` (number of covered modes, of K), ``high_quality`` (fraction of samples within
    ``n_std * mode_std`` of their nearest centre) and ``n_modes`` (K)."""
    x = torch.as_tensor(samples, dtype=torch.float64).reshape(-1, 2)
    c = torch.as_tensor(centres, dtype=torch.float64).reshape(-1, 2)
    dist = torch.cdist(x, c)
    nearest_d, nearest = dist.min(1)
    good = nearest_d <= n_std * float(mode_std)
    counts = torch.bincount(nearest[good], minlength=len(c))
    return {
        "modes": float(int((counts >= min_count).sum())),
        "high_quality": float(good.double().mean()) if len(x) else 0.0,
        "n_modes": float(len(c)),
    }
