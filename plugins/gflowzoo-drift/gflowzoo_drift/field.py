"""The drifting field of Deng et al. (2026), reconstructed from its public description (docs/drift.md).

For query points ``x`` (generated samples, in some feature space), positives ``pos`` (data) and negatives ``neg``
(generated samples, usually ``x`` itself), the field at each query is a kernel-weighted pull towards the positives
minus a kernel-weighted push away from the negatives::

    V(x) = sum_j W+_ij y+_j - sum_k W-_ik y-_k,   W+_ij = A+_ij * sum_k A-_ik,   W-_ik = A-_ik * sum_j A+_ij

with ``A`` built from the logits ``-||x_i - y|| / T`` over the concatenated ``[pos, neg]`` columns, either
normalised over both axes (``sqrt(softmax over y * softmax over x)``, ``coupling = "two-sided"``) or over ``y``
alone (``"row"``). Both sets of weights of a row have the same total, so the ``x`` terms of a mean shift cancel,
and swapping ``pos`` and ``neg`` flips the sign: the field is anti-symmetric and vanishes when the two sets are the
same. Several temperatures are summed, each field scaled to unit root-mean-square first (``normalize``).

Everything here runs without gradients: the field is a stop-gradient target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = ["drift_field", "feature_scale", "temperature_unit"]

Coupling = Literal["two-sided", "row"]
TemperatureScale = Literal["dim", "sqrt-dim", "none"]


def temperature_unit(dim: int, scale: str) -> float:
    """The factor that multiplies every temperature in a ``dim``-dimensional feature space: ``dim``, ``sqrt(dim)``
    or 1."""
    if scale == "dim":
        return float(dim)
    if scale == "sqrt-dim":
        return math.sqrt(dim)
    if scale == "none":
        return 1.0
    raise ValueError(f"unknown temperature scale {scale!r}")


def _self_mask(n: int, m: int, device: torch.device) -> Tensor:
    """``[n, m]`` boolean, true at ``(i, i)`` for ``i < min(n, m)``: the query's own column among the negatives."""
    eye = torch.zeros(n, m, dtype=torch.bool, device=device)
    k = min(n, m)
    idx = torch.arange(k, device=device)
    eye[idx, idx] = True
    return eye


@torch.no_grad()
def feature_scale(x: Tensor, pos: Tensor, neg: Tensor, *, mask_self: bool = True, eps: float = 1e-8) -> Tensor:
    """The scalar ``S`` that makes the mean query-to-sample distance ``sqrt(C)`` after division (``C`` = feature
    dimension): the mean of ``||x - pos||`` and ``||x - neg||`` over all pairs (a query's own column among the
    negatives left out with ``mask_self``), divided by ``sqrt(C)``."""
    dp = torch.cdist(x, pos)
    dn = torch.cdist(x, neg)
    total = dp.sum() + dn.sum()
    count = dp.numel() + dn.numel()
    if mask_self:
        mask = _self_mask(*dn.shape, dn.device)
        total = total - dn[mask].sum()
        count -= int(mask.sum())
    mean = total / max(count, 1)
    return (mean / math.sqrt(x.shape[1])).clamp_min(eps)


@torch.no_grad()
def drift_field(
    x: Tensor,
    pos: Tensor,
    neg: Tensor,
    temperatures: Sequence[float],
    *,
    mask_self: bool = False,
    coupling: Coupling = "two-sided",
    temperature_scale: TemperatureScale = "sqrt-dim",
    normalize: bool = True,
    eps: float = 1e-3,
) -> tuple[Tensor, list[float]]:
    """The summed field ``[N, C]`` at queries ``x`` ``[N, C]`` from ``pos`` ``[P, C]`` and ``neg`` ``[M, C]``, and the
    root-mean-square of each temperature's field before its normalisation (for logging).

    ``mask_self``: the first ``N`` negatives are the queries themselves; a query ignores its own column.
    ``temperature_scale``: every temperature is multiplied by ``C``, ``sqrt(C)`` or 1 (see :func:`temperature_unit`).
    ``normalize``: each temperature's field is divided by its root-mean-square over queries and coordinates
    with a floor ``eps`` (in feature units; features normalised by :func:`feature_scale` spread about 1 per
    coordinate; the Monte-Carlo field of two samples of one distribution is about ``1 / sqrt(N)``, far above it), so
    a field that is zero up to float rounding (about 1e-7) stays below 1e-3 instead of being blown up to unit size."""
    n, dim = x.shape
    n_pos = pos.shape[0]
    dist = torch.cat([torch.cdist(x, pos), torch.cdist(x, neg)], dim=1)  # [N, P + M]
    if mask_self:
        mask = torch.zeros_like(dist, dtype=torch.bool)
        mask[:, n_pos:] = _self_mask(n, neg.shape[0], dist.device)
    unit = temperature_unit(dim, temperature_scale)
    total = torch.zeros_like(x)
    rms: list[float] = []
    for tau in temperatures:
        logits = dist / -(float(tau) * unit)
        if mask_self:
            logits = logits.masked_fill(mask, float("-inf"))
        log_a = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        if coupling == "two-sided":
            log_a = 0.5 * (log_a + logits - torch.logsumexp(logits, dim=0, keepdim=True))
        elif coupling != "row":
            raise ValueError(f"unknown coupling {coupling!r}")
        a = log_a.exp()
        a_pos, a_neg = a[:, :n_pos], a[:, n_pos:]
        # two products, not one over [pos, neg]: for equal sets both are computed alike and cancel exactly
        v = (a_pos * a_neg.sum(1, keepdim=True)) @ pos - (a_neg * a_pos.sum(1, keepdim=True)) @ neg
        r = v.square().mean().sqrt()
        rms.append(float(r))
        total += v / r.clamp_min(eps) if normalize else v
    return total, rms
