"""2-D toy data sets, generated with a fixed seed per split (train: 50,000 points, test: 10,000)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .base import Points

SPLIT_SIZES = {"train": 50_000, "test": 10_000}
SPLIT_SEEDS = {"train": 0, "test": 1}


def _rng(split: str) -> np.random.Generator:
    if split not in SPLIT_SEEDS:
        from ..errors import DataError

        raise DataError(f"Toy data sets have splits 'train' and 'test', not {split!r}.")
    return np.random.default_rng(1000 + SPLIT_SEEDS[split])


def _mixture(centres: np.ndarray, std: float, n: int, rng: np.random.Generator) -> np.ndarray:
    which = rng.integers(len(centres), size=n)
    return centres[which] + std * rng.standard_normal((n, 2))


def gaussians8(root: Path | None = None, split: str = "train") -> Points:
    """Eight Gaussians (std 0.05) on a circle of radius 2."""
    ang = np.arange(8) * 2 * math.pi / 8
    centres = 2.0 * np.stack([np.cos(ang), np.sin(ang)], 1)
    std = 0.05
    raw = _mixture(centres, std, SPLIT_SIZES[split], _rng(split))
    info = {"centres": centres.tolist(), "mode_std": std}
    return Points(torch.from_numpy(raw), "toy-8gaussians", split, scale=math.sqrt(2.0), info=info)


def gaussians25(root: Path | None = None, split: str = "train") -> Points:
    """25 Gaussians (std 0.05) on the grid {-4, -2, 0, 2, 4}^2 (the VEEGAN/PacGAN benchmark)."""
    g = np.arange(-4.0, 5.0, 2.0)
    centres = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    std = 0.05
    raw = _mixture(centres, std, SPLIT_SIZES[split], _rng(split))
    info = {"centres": centres.tolist(), "mode_std": std}
    return Points(torch.from_numpy(raw), "toy-25gaussians", split, scale=math.sqrt(8.0), info=info)


def swissroll(root: Path | None = None, split: str = "train") -> Points:
    """A 2-D Swiss roll (noise 0.25)."""
    rng = _rng(split)
    n = SPLIT_SIZES[split]
    t = 1.5 * math.pi * (1 + 2 * rng.random(n))
    raw = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5.0 + 0.25 * rng.standard_normal((n, 2)) / 5.0
    return Points(torch.from_numpy(raw), "toy-swissroll", split, scale=1.5)


def checkerboard(root: Path | None = None, split: str = "train") -> Points:
    """Uniform on the dark squares of a 4x4 checkerboard on [-4, 4]^2."""
    rng = _rng(split)
    n = SPLIT_SIZES[split]
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2
    x2 = x2 + (np.floor(x1) % 2)
    raw = np.stack([x1, x2], 1) * 2
    return Points(torch.from_numpy(raw), "toy-checkerboard", split, scale=2.3)


def moons(root: Path | None = None, split: str = "train") -> Points:
    """Two interleaving half circles (noise 0.05)."""
    rng = _rng(split)
    n = SPLIT_SIZES[split]
    which = rng.integers(0, 2, n)
    ang = rng.random(n) * math.pi
    upper = np.stack([np.cos(ang), np.sin(ang)], 1)
    lower = np.stack([1 - np.cos(ang), 0.5 - np.sin(ang)], 1)
    raw = np.where(which[:, None] == 0, upper, lower) + 0.05 * rng.standard_normal((n, 2))
    raw = raw - np.array([0.5, 0.25])
    return Points(torch.from_numpy(raw), "toy-moons", split, scale=0.7)
