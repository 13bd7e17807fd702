"""The noise-conditional critic's loss over several processes (``torchrun``; docs/distributed.md).

Layout. Every rank draws the *global* batch of a step from the shared generator (``G`` groups, ``W*n`` clean,
``W*m`` noisy points and ``W*k`` interpolates per group, ``W`` the world size, ``n``/``m``/``k`` the per-rank counts
of the config) and keeps every ``W``-th point of each group from the ``r``-th on (:func:`take_share`). Only the share
goes through the network. Rank ``r``'s local point ``i`` is global point ``i*W + r`` of its group, so the first ``k``
local points of every rank are exactly the first ``W*k`` global ones (interpolates and flow-term points match the
one-process batch).

Loss. Each rank's loss is ``1/W`` times the global per-group loss in which the terms that average over points
(MMD^2, L2, the flow misfit) are computed from all ranks' features (gathered with an autograd all-gather, or, for the
linear kernel, all-reduced sums: mean embeddings and centred second moments) and the gradient penalty averages the
rank's own interpolates. The sum over ranks of the per-rank losses is the one-process loss of the global batch, and
so is the sum of the parameter gradients (the collectives' backward passes route every rank's share back,
:mod:`gflowzoo.distributed`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gflowzoo.api import distributed as dist

from .critic import _gp_and_norm, flow_alignment

__all__ = ["flow_alignment_sharded", "gather_groups", "global_logs", "linear_mmd_terms", "take_share"]


def take_share(x: Tensor, world: int, rank: int) -> Tensor:
    """Rank ``rank``'s share of a global group tensor ``[G, W*n, ...]``: ``[G, n, ...]`` (points ``r, r+W, ...``)."""
    return x if world == 1 else x[:, rank::world]


def gather_groups(f: Tensor) -> Tensor:
    """All ranks' group features in global order: ``[G, n, D]`` per rank -> ``[G, W*n, D]`` with local point ``i``
    of rank ``r`` at ``i*W + r`` (differentiable)."""
    w = dist.world()
    if w == 1:
        return f
    g, n, d = f.shape
    stacked = dist.gather_cat(f.unsqueeze(0), 0)  # [W, G, n, D], rank order
    return stacked.permute(1, 2, 0, 3).reshape(g, n * w, d)


def linear_mmd_terms(fx: Tensor, fy: Tensor, fh: Tensor, xh: Tensor) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
    """The DMMD terms of every group for the linear kernel from all-reduced statistics instead of gathered
    features: ``mmd2`` (unbiased, ``|m_x - m_y|^2 - V_x/(N(N-1)) - V_y/(M(M-1))`` with global means ``m`` and centred
    sums of squares ``V``), ``l2`` (mean squared witness ``<f, m_x - m_y>^2`` over all ranks' clean and noisy
    points), ``gp`` and ``grad_norm`` over this rank's interpolates; each ``[G]``.

    ``fx`` ``[G, n, D]``, ``fy`` ``[G, m, D]``, ``fh`` ``[G, k, D]`` (this rank's features), ``xh`` ``[G*k, *S]``.
    Also returns the global means ``([G, 1, D], [G, 1, D])`` (the reference sets of the linear witness).
    Communication per step: one all-reduce of ``[G, 2D]`` and one of ``[G, 3]`` (and as much in the backward)."""
    w = dist.world()
    g, n, d = fx.shape
    m = fy.shape[1]
    big_n, big_m = w * n, w * m
    sums = dist.all_reduce_sum(torch.cat([fx.sum(1), fy.sum(1)], dim=1))  # [G, 2D]
    mx, my = sums[:, :d] / big_n, sums[:, d:] / big_m
    diff = mx - my  # the witness direction: f(z) = <z, m_x - m_y>
    local = torch.stack([
        (fx - mx[:, None]).square().sum((1, 2)),
        (fy - my[:, None]).square().sum((1, 2)),
        (fx * diff[:, None]).sum(-1).square().sum(1) + (fy * diff[:, None]).sum(-1).square().sum(1),
    ], dim=1)
    vx, vy, wsq = dist.all_reduce_sum(local).unbind(1)
    mmd = diff.square().sum(1) - vx / (big_n * (big_n - 1)) - vy / (big_m * (big_m - 1))
    wh = (fh * diff[:, None]).sum(-1)  # [G, k]
    gp, norm = _gp_and_norm(wh.reshape(-1), xh, g)
    terms = {"mmd2": mmd, "gp": gp, "l2": wsq / (big_n + big_m), "grad_norm": norm}
    return terms, (mx[:, None], my[:, None])


def flow_alignment_sharded(values: Tensor, y: Tensor, direction: Tensor, groups: int, k: int) -> dict[str, Tensor]:
    """:func:`gflowzoo_dmmd.critic.flow_alignment` over all ranks: the fit of every group (``[G]`` each) from the
    sums over the first ``k`` noisy points of **every** rank (an all-reduce of ``[G, 3]``). Arguments as in
    ``flow_alignment``."""
    return flow_alignment(values, y, direction, groups, k, reduce_sums=dist.all_reduce_sum)


def global_logs(loss: Tensor, terms: dict[str, Tensor]) -> tuple[float, dict[str, Tensor]]:
    """The logged values of a step over all ranks: the loss summed (the per-rank losses add up to the global loss)
    and the per-rank terms (``gp``, ``grad_norm``: means over this rank's interpolates) averaged; the other terms
    are global already. One all-reduce; nothing here is differentiated."""
    w = dist.world()
    keys = [k for k in ("gp", "grad_norm") if k in terms]
    flat = torch.cat([loss.detach().reshape(1).double()] + [terms[k].detach().double() for k in keys])
    tot = dist.all_reduce_sum(flat)
    out: dict[str, Any] = dict(terms)
    g = terms[keys[0]].shape[0] if keys else 0
    for i, key in enumerate(keys):
        out[key] = (tot[1 + i * g : 1 + (i + 1) * g] / w).to(terms[key].dtype)
    return float(tot[0]), out
