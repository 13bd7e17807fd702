"""The particle sampler of the noise-conditional critics: the level plan of the configured sampler, its cost
(``sampling_info``), the cheaper in-training sampler, and :meth:`ParticleSampler.sample`, which moves batches of
particles from ``N(0, I)`` through the plan with :class:`gflowzoo_dmmd.flow.ParticleFlow`.

The witness the particles follow is the method's (:meth:`~gflowzoo_dmmd.base.NoiseConditionalMethod.make_witness`);
the statistics it reads come from :class:`gflowzoo_dmmd.statistics.SamplerStatistics`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from gflowzoo.api import ConfigError, report_progress
from torch import Tensor

from .flow import Level, ParticleFlow, bounded_repulsion, plan_levels, resolve_step_rule

__all__ = ["CHEAP_LEVELS", "ParticleSampler"]

#: Noise levels of the cheap in-training sampler at most (:meth:`ParticleSampler.cheap_sampler`).
CHEAP_LEVELS = 20


def _level_done(batch: int, batches: int, levels: int, level: int) -> None:
    """Report the sampling progress after ``level`` of ``batch`` (of ``batches`` particle batches)."""
    report_progress((batch + (level + 1) / levels) / batches)


class ParticleSampler:
    """The sampler of ``method`` (a :class:`~gflowzoo_dmmd.base.NoiseConditionalMethod`), configured by its
    ``config.sampler``."""

    def __init__(self, method: Any) -> None:
        self.method = method

    def step_rule(self) -> tuple[float, str]:
        """The resolved ``(step_size, step_schedule)`` of the configured sampler."""
        s = self.method.config.sampler
        return resolve_step_rule(s.step_size, s.step_schedule, s.variant, self.method.has_width())

    def plan(self, stats: dict[str, Any] | None = None) -> list[Level]:
        """The level plan of the configured sampler (``stats``: the sampler statistics, which hold the measured step
        scales of the ``calibrated`` schedule; without them that schedule is planned with unit scales)."""
        m = self.method
        s = m.config.sampler
        grid = m.schedule.grid(s.levels)
        eta0, sched = m.step_rule()
        width = m.widths(grid) if sched == "width2" else None
        calibration = None
        if sched == "calibrated" and stats is not None:
            calibration = stats.get("flow_scale")
            if calibration is None:
                raise ConfigError(f"sampler.step_schedule='calibrated' is not supported by {type(m).__name__}.")
        return plan_levels(
            grid, m.schedule.sigma(grid), width, variant=s.variant, switch_t=s.switch_t,
            steps_per_level=s.steps_per_level, exact_steps_per_level=s.exact_steps_per_level, eta0=eta0, schedule=sched,
            calibration=calibration,
        )

    def sampling_info(self) -> dict[str, Any]:
        """``variant``, ``nfe`` (witness-gradient evaluations per particle, ``sum_k steps_k``), ``particles`` (N, the
        interaction batch), ``levels``, ``steps_per_level``, the resolved step rule, ``chunk``."""
        m = self.method
        s = m.config.sampler
        plan = m.plan()
        eta0, sched = m.step_rule()
        return {
            "variant": s.variant, "nfe": sum(lv.steps for lv in plan), "particles": s.particles,
            "levels": s.levels, "steps_per_level": s.steps_per_level, "step_size": eta0, "step_schedule": sched,
            "chunk": s.chunk or s.particles,
        } | ({"bounded_repulsion": True} if self._bounded() else {})

    def _bounded(self) -> bool:
        """Whether this sampling uses ``sampler.bounded_repulsion``: the flag set and a critic where it applies
        (:meth:`gflowzoo_dmmd.dmmd.DMMD.bounded_repulsion_applies`: not with a linear base kernel)."""
        m = self.method
        if not m.config.sampler.bounded_repulsion:
            return False
        applies = getattr(m, "bounded_repulsion_applies", None)
        if applies is None:
            raise ConfigError(f"sampler.bounded_repulsion needs an MMD critic (dmmd); {type(m).__name__} has none.")
        return bool(applies())

    @contextlib.contextmanager
    def cheap_sampler(self, n: int) -> Iterator[dict[str, Any]]:
        """A cheaper sampler for in-training evaluations of ``n`` samples, as a context (gflowzoo's evaluation hook
        enters it around its sampling): at most :data:`CHEAP_LEVELS` noise levels and at most ``n`` particles (a
        sampling costs particles x NFE, and on interacting levels the kernel terms grow like particles^2), every
        other setting as configured. Inside, the method's ``sample`` and ``sampling_info`` use it; it yields the
        changed settings (e.g. ``{"levels": 20, "particles": 500}``).

        On exit the configured sampler comes back, and so do its statistics when the grid changed: an evaluation
        after ``finalize`` leaves the final statistics in place; those of the cheap grid are kept aside for the
        next cheap sampling (reused while the training step is the same)."""
        m = self.method
        c = m.config
        s = c.sampler
        cheap = {"levels": min(s.levels, CHEAP_LEVELS), "particles": min(s.particles, max(int(n), 1))}
        regrid = cheap["levels"] != s.levels
        statistics = m.statistics
        full_stats = statistics.stats
        m.config = dataclasses.replace(c, sampler=dataclasses.replace(s, **cheap))
        if regrid:
            statistics.stats = statistics.cheap
        try:
            yield {k: v for k, v in cheap.items() if v != getattr(s, k)}
        finally:
            if regrid:
                statistics.cheap, statistics.stats = statistics.stats, full_stats
            m.config = c

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """Draw ``n`` samples (``[n, *S]``, CPU): ``ceil(n / particles)`` independent batches of ``particles``
        particles from ``N(0, I)`` moved through the level plan; the first ``n`` are returned."""
        m = self.method
        s = m.config.sampler
        stats = m.statistics.ensure(m.schedule.grid(s.levels))
        plan = m.plan(stats)
        witness, particle_source, fixed_source = m.make_witness(plan)
        if self._bounded():
            witness = bounded_repulsion(m.witness_terms(plan))
        box = s.box * float(stats.get("data_range", 1.0))
        flow = ParticleFlow(witness, particle_source, fixed_source, m.integrator, chunk=s.chunk, box=box,
                            max_move=s.max_move)
        m.ema_backbone.eval()
        m.backbone.eval()
        out = []
        batches = math.ceil(n / s.particles)
        for b in range(batches):
            z = torch.randn((s.particles, *m.shape), generator=generator).to(m.device)
            # progress displays (gflowzoo.progress) see every level of every batch
            done = partial(_level_done, b, batches, len(plan))
            out.append(flow.run(z, plan, generator, on_level=done).cpu())
        x = torch.cat(out)[:n]
        if s.clamp_output and m.data.kind == "image":
            x = x.clamp(-1.0, 1.0)
        return x.detach()

    def chunks(self, z: Tensor) -> list[Tensor]:
        """``z`` split into the sampler's chunks (``sampler.chunk`` particles; 0: one chunk)."""
        size = self.method.config.sampler.chunk or z.shape[0]
        return list(z.split(size))
