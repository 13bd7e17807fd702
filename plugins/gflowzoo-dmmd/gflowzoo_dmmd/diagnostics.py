"""Diagnostics of the noise-conditional critics: per-noise-level (t-bin) means of the objective and of the witness
gradient norm logged during training, and :meth:`CriticDiagnostics.diagnose`, the same quantities measured on the
data at a grid of noise levels (``gflowzoo dmmd diagnose``)."""

from __future__ import annotations

from typing import Any

import torch
from gflowzoo.api import DataError, UserError
from torch import Tensor

__all__ = ["CriticDiagnostics"]


class CriticDiagnostics:
    """The diagnostics of ``method`` (a :class:`~gflowzoo_dmmd.base.NoiseConditionalMethod`): the t-bin
    accumulators ``acc`` (``[diag_bins, 3]``: objective sum, gradient-norm sum, count; kept in checkpoints)."""

    def __init__(self, method: Any) -> None:
        self.method = method
        self.acc = torch.zeros(max(1, method.config.diag_bins), 3, dtype=torch.float64)

    def record(self, t: Tensor, terms: dict[str, Tensor], step: int) -> dict[str, float]:
        """Add one step's groups (noise levels ``t`` ``[G]``, their ``terms``) to the t-bins; every ``diag_every``
        steps return the per-bin means ``<objective>_t<lo>-<hi>`` and ``grad_norm_t<lo>-<hi>`` and start over."""
        m = self.method
        c = m.config
        bins = self.acc.shape[0]
        idx = (t.detach().cpu() * bins).long().clamp(0, bins - 1)
        obj = terms[m.objective].detach().cpu().double()
        gn = terms["grad_norm"].detach().cpu().double()
        for i, b in enumerate(idx.tolist()):
            self.acc[b] += torch.tensor([obj[i], gn[i], 1.0], dtype=torch.float64)
        if not c.diag_every or (step + 1) % c.diag_every:
            return {}
        out = {}
        for b in range(bins):
            s_obj, s_gn, cnt = self.acc[b].tolist()
            if cnt == 0:
                continue  # never log NaN: the trainer treats it as divergence
            tag = f"t{b / bins:.2f}-{(b + 1) / bins:.2f}"
            out[f"{m.objective}_{tag}"] = s_obj / cnt
            out[f"grad_norm_{tag}"] = s_gn / cnt
        self.acc.zero_()
        return out

    def diagnose(self, levels: int = 20, n: int = 256, seed: int = 0, ema: bool = True) -> dict[str, list[float]]:
        """Critic diagnostics on data: for ``levels`` noise levels from ``t_min`` to 1, the objective between clean
        P and noisy P_t (``n`` samples each, from different images), the mean witness-gradient norm at those
        ``2n`` points and, where the critic has one, the kernel width. Returns lists keyed ``t``, the objective name,
        ``grad_norm`` and (optionally) ``width``."""
        m = self.method
        try:
            ds = m.data.train
        except UserError as exc:
            raise DataError(f"diagnose needs the training data: {exc}") from None
        g = torch.Generator().manual_seed(seed)
        ts = torch.linspace(m.schedule.t_min, 1.0, levels)
        out: dict[str, list[float]] = {"t": [], m.objective: [], "grad_norm": []}
        for t in ts.tolist():
            x = ds.sample(n, g).to(m.device)
            x2 = ds.sample(n, g)
            eps = torch.randn(x2.shape, generator=g)
            tt = torch.full((n,), t, device=m.device)
            y = m.schedule.add_noise(x2.to(m.device), tt, eps.to(m.device))
            obj, gn = m.diagnose_level(x, y, t, ema)
            out["t"].append(t)
            out[m.objective].append(obj)
            out["grad_norm"].append(gn)
        if m.has_width():
            out["width"] = m.widths(ts).tolist()
        return out
