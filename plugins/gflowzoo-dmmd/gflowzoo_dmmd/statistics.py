"""The sampler statistics of the noise-conditional critics: what the particle sampler needs to know about the data
on its noise grid (DMMD: mean or reference features of clean and noisy data), computed once per grid, training step
and setting, and kept in the final checkpoint.

:class:`SamplerStatistics` owns the cache and its validity rules; *what* the statistics are is the method's
business (:meth:`~gflowzoo_dmmd.base.NoiseConditionalMethod.compute_stats_from`, ``stored_stats``,
``restored_stats``, ``_stats_key``).
"""

from __future__ import annotations

from typing import Any

import torch
from gflowzoo.api import DataError, UserError
from torch import Tensor

__all__ = ["SamplerStatistics"]


class SamplerStatistics:
    """The statistics cache of ``method`` (a :class:`~gflowzoo_dmmd.base.NoiseConditionalMethod`)."""

    def __init__(self, method: Any) -> None:
        self.method = method
        #: the current statistics: ``grid``, ``step``, ``use_ema``, ``key``, ``data_range`` and the method's own
        self.stats: dict[str, Any] = {}
        #: whether a checkpoint stores ``stats``: only from :meth:`finalize` (the final checkpoint) until the next
        #: training step, so that intermediate checkpoints stay small (see ``state_dict``).
        self.final = False
        #: the statistics of the cheap sampler's grid, kept aside between in-training evaluations
        self.cheap: dict[str, Any] = {}

    def finalize(self) -> None:
        """Compute the statistics on the configured grid, to be stored in the final checkpoint."""
        m = self.method
        self.ensure(m.schedule.grid(m.config.sampler.levels))
        self.final = True

    def valid(self, grid: Tensor) -> bool:
        """Whether the cached statistics belong to ``grid``, this training step and these settings."""
        m, s = self.method, self.stats
        if not s or s.get("step") != m.step_count or s.get("use_ema") != bool(m.config.sampler.use_ema):
            return False
        if list(s.get("key", [])) != m._stats_key():
            return False
        stored = s.get("grid")
        return stored is not None and stored.shape == grid.shape and torch.allclose(stored, grid.to(stored.dtype))

    def ensure(self, grid: Tensor) -> dict[str, Any]:
        """The statistics on ``grid``: the cached ones when valid (with what a checkpoint left out recomputed),
        else computed from the training data."""
        m = self.method
        if self.valid(grid):
            self.stats = m.restored_stats(self.stats)
            return self.stats
        head = {"grid": grid.detach().float().cpu(), "step": m.step_count, "key": m._stats_key(),
                "use_ema": bool(m.config.sampler.use_ema)}
        try:
            ds = m.data.train
        except UserError as exc:
            if not m.needs_stats and (m.data.kind == "image" or m.config.sampler.box == 0):
                self.stats = {**head, "data_range": 1.0}
                return self.stats
            stored = self.stats.get("grid")
            have = (f"a grid of {len(stored)} levels" if stored is not None
                    else "no statistics: only the final checkpoint of a training run stores them")
            raise DataError(
                f"Sampling on a grid of {len(grid)} levels needs the training data to recompute the statistics of "
                f"the data on that grid (the checkpoint holds {have}; the grid, sampler.use_ema, sampler.n_ref, "
                f"stats_samples, stats_seed and the training step must match). Make the data available (--data-root or $GFLOWZOO_DATA), or sample with the "
                f"stored settings. Cause: {exc}"
            ) from None
        stats = {**head, "data_range": self.data_range(ds)}
        stats.update(m.compute_stats_from(ds, grid))
        self.stats = stats
        return stats

    def key(self) -> list[int]:
        """What the statistics depend on besides the grid, the weights and ``use_ema``."""
        c = self.method.config
        return [int(c.stats_samples), int(c.stats_seed), int(c.sampler.n_ref)]

    def data_range(self, ds: Any) -> float:
        """The largest absolute data value (points; images: 1), the unit of the sampler's box clamp."""
        m = self.method
        if m.data.kind == "image":
            return 1.0
        n = len(ds) if m.config.stats_samples == 0 else min(len(ds), m.config.stats_samples)
        return float(ds.get(torch.arange(n)).abs().max())

    def indices(self, ds: Any) -> Tensor:
        """The data indices used for statistics: a fixed (``stats_seed``) random subset of ``stats_samples``."""
        c = self.method.config
        n = len(ds) if c.stats_samples == 0 else min(len(ds), c.stats_samples)
        g = torch.Generator().manual_seed(c.stats_seed)
        return torch.randperm(len(ds), generator=g)[:n]

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def for_checkpoint(self) -> dict[str, Any]:
        """What a checkpoint stores: after :meth:`finalize`, the method's ``stored_stats`` (copies); else nothing.
        Intermediate checkpoints leave the statistics out: they can be tens of MB (rbf: ``ref_clean``/``ref_noisy``
        ``[levels, n_ref, D]``) and are recomputed, deterministically (seed ``stats_seed``), from the data at the
        end of training or at the first sampling."""
        stats = self.method.stored_stats(self.stats) if self.final else {}
        return {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in stats.items()}

    def load(self, stats: dict[str, Any]) -> None:
        """Restore from :meth:`for_checkpoint` (tensors to the CPU). A final checkpoint's statistics stay final, so
        saving again keeps them."""
        self.stats = {k: (v.to("cpu") if isinstance(v, Tensor) else v) for k, v in stats.items()}
        self.final = bool(self.stats)
