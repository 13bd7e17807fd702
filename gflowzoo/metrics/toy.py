"""Metrics for 2-D toy data, computed in float64 against held-out reference samples (the test split).

* ``mmd``: unbiased MMD² with a fixed Gaussian-mixture kernel, in model units (each coordinate of the data has
  about unit variance, so one set of widths suits every toy).
* ``energy``: the energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (unbiased; the MMD² of the distance
  kernel).
* ``swd``: sliced Wasserstein-2 distance ``sqrt(mean_theta W2^2(<theta, X>, <theta, Y>))`` over random directions,
  with the exact 1-D W2 between empirical distributions (sample sizes may differ), in model units.
* ``modes`` / ``hq``: for Gaussian mixtures (``info()`` has ``centres`` and ``mode_std``, raw units): a sample is
  *high quality* when it lies within 3 standard deviations of its nearest centre; a mode is *covered* when at least
  20 high-quality samples per 2,500 (scaled with the sample count) are assigned to it (the VEEGAN/PacGAN protocol).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from .base import EvalContext, Metric


def _f64(x: Tensor) -> Tensor:
    return x.detach().cpu().double().reshape(len(x), -1)


class MMD(Metric):
    """Unbiased MMD² between samples and the reference with a fixed RBF mixture kernel
    ``k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))`` (model units; lower is better, 0 for equal distributions, may be
    slightly negative).

    Args:
        sigmas: the kernel widths, in model units.
    """

    data_kinds = ("points",)
    lower_is_better = {"mmd": True}

    def __init__(self, sigmas: list[float] = [0.05, 0.1, 0.2, 0.5, 1.0]) -> None:  # noqa: B006
        self.sigmas = [float(s) for s in sigmas]

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        from ..divergences import mmd2
        from ..kernels import RBFKernel

        val = mmd2(_f64(ctx.reference_samples()), _f64(ctx.samples), RBFKernel(sigmas=self.sigmas), "unbiased")
        return {"mmd": float(val)}


class EnergyDistance(Metric):
    """Energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between samples and the reference (unbiased, model
    units; lower is better)."""

    data_kinds = ("points",)
    lower_is_better = {"energy": True}

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        from ..divergences import mmd2
        from ..kernels import EnergyKernel

        val = mmd2(_f64(ctx.reference_samples()), _f64(ctx.samples), EnergyKernel(), "unbiased")
        return {"energy": float(val)}


def w2_squared_1d(a: Tensor, b: Tensor) -> Tensor:
    """Exact squared 2-Wasserstein distances between 1-D empirical distributions, row by row.

    ``a`` ``[P, n]`` and ``b`` ``[P, m]`` (any order; uniform weights). ``W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du``
    with both quantile functions piecewise constant; the integral is summed exactly over the merged breakpoints
    ``{i/n} U {j/m}``. Returns ``[P]``.
    """
    a = a.sort(dim=1).values
    b = b.sort(dim=1).values
    n, m = a.shape[1], b.shape[1]
    if n == m:
        return (a - b).square().mean(1)
    u = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n, torch.arange(1, m + 1, dtype=torch.float64) / m])
    u = u.sort().values
    widths = torch.diff(u, prepend=torch.zeros(1, dtype=torch.float64))
    mid = u - widths / 2
    ia = (mid * n).floor().long().clamp_(0, n - 1)
    ib = (mid * m).floor().long().clamp_(0, m - 1)
    return ((a[:, ia] - b[:, ib]).square() * widths.to(a.dtype)).sum(1)


def sliced_wasserstein(x: Tensor, y: Tensor, directions: Tensor) -> float:
    """Sliced W2 ``sqrt(mean_p W2^2(<d_p, x>, <d_p, y>))`` for ``x`` ``[N, D]``, ``y`` ``[M, D]`` and unit
    ``directions`` ``[P, D]``."""
    px = (_f64(directions) @ _f64(x).T)  # [P, N]
    py = (_f64(directions) @ _f64(y).T)
    return float(w2_squared_1d(px, py).mean().sqrt())


class SlicedWasserstein(Metric):
    """Sliced Wasserstein-2 distance between samples and the reference (model units; lower is better).

    Args:
        projections: number of random directions (drawn from the evaluation seed).
    """

    data_kinds = ("points",)
    lower_is_better = {"swd": True}

    def __init__(self, projections: int = 256) -> None:
        if projections < 1:
            raise UserError("swd projections must be >= 1.")
        self.projections = int(projections)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        d = int(ctx.samples[0].numel())
        dirs = torch.randn(self.projections, d, generator=ctx.generator(17), dtype=torch.float64)
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        return {"swd": sliced_wasserstein(ctx.samples, ctx.reference_samples(), dirs)}


def mode_statistics(x_raw: Tensor, centres: Tensor, mode_std: float, per_2500: float = 20.0,
                    radius: float = 3.0) -> dict[str, Any]:
    """Mode coverage of samples ``x_raw`` ``[N, 2]`` (raw units) for a mixture with ``centres`` ``[K, 2]``.

    Returns ``{"covered": int, "hq_fraction": float, "counts": [K] list, "threshold": float}``: a sample is high
    quality when its distance to the nearest centre is at most ``radius * mode_std``; a mode is covered when its
    count of high-quality samples is at least ``threshold = per_2500 * N / 2500``.
    """
    x, c = _f64(x_raw), _f64(centres)
    d = torch.cdist(x, c)  # [N, K]
    dmin, which = d.min(dim=1)
    hq = dmin <= radius * float(mode_std)
    counts = torch.bincount(which[hq], minlength=len(c))
    threshold = per_2500 * len(x) / 2500.0
    return {
        "covered": int((counts.double() >= threshold).sum()),
        "hq_fraction": float(hq.double().mean()) if len(x) else 0.0,
        "counts": counts.tolist(),
        "threshold": threshold,
    }


class _MixtureMetric(Metric):
    data_kinds = ("points",)

    def __init__(self, per_2500: float = 20.0, radius: float = 3.0) -> None:
        self.per_2500, self.radius = float(per_2500), float(radius)

    def check(self, kind: str, info: dict[str, Any]) -> None:
        super().check(kind, info)
        if "centres" not in info or "mode_std" not in info:
            raise UserError("Mode metrics (modes, hq) apply to Gaussian-mixture data (e.g. toy-8gaussians, "
                            "toy-25gaussians) only; this data set has no mode centres.")

    def stats(self, ctx: EvalContext) -> dict[str, Any]:
        info = ctx.info()
        centres = torch.as_tensor(info["centres"], dtype=torch.float64)
        return mode_statistics(ctx.to_raw(ctx.samples), centres, float(info["mode_std"]), self.per_2500, self.radius)


class ModesCovered(_MixtureMetric):
    """Number of mixture modes covered (higher is better; the maximum is the number of modes).

    Args:
        per_2500: high-quality samples a mode needs, per 2,500 samples.
        radius: the high-quality radius in mode standard deviations.
    """

    lower_is_better = {"modes": False}

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        s = self.stats(ctx)
        return {"modes": float(s["covered"]), "modes_total": float(len(s["counts"]))}


class HighQualityFraction(_MixtureMetric):
    """Fraction of samples within ``radius`` standard deviations of a mode centre (higher is better).

    Args:
        radius: the high-quality radius in mode standard deviations.
    """

    lower_is_better = {"hq": False}

    def __init__(self, radius: float = 3.0) -> None:
        super().__init__(20.0, radius)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        return {"hq": self.stats(ctx)["hq_fraction"]}
