"""The shared machinery of the noise-conditional critics (DMMD and DKALE): batch construction over G noise levels,
the batched backbone forward, penalties, Adam + EMA + clipping, per-t-bin logging, checkpoint state, and the
particle sampler built on :class:`gflowzoo_dmmd.flow.ParticleFlow`.

Subclasses implement :meth:`NoiseConditionalMethod.group_terms` (the loss terms per group),
:meth:`~NoiseConditionalMethod.make_witness` (the witness used by the flow) and the statistics they need.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from gflowzoo.api import ConfigError, DataError, Method, UserError, report_progress
from gflowzoo.api import distributed as dist

from .backbones import backbone_default_dim
from .critic import flow_alignment, sample_levels
from .flow import Level, ParticleFlow, plan_levels, resolve_step_rule
from .sharded import flow_alignment_sharded, gather_groups, global_logs, linear_mmd_terms, take_share

__all__ = ["CHEAP_LEVELS", "NoiseConditionalMethod"]

#: Noise levels of the cheap in-training sampler at most (:meth:`NoiseConditionalMethod.cheap_sampler`).
CHEAP_LEVELS = 20


def _level_done(batch: int, batches: int, levels: int, level: int) -> None:
    """Report the sampling progress after ``level`` of ``batch`` (of ``batches`` particle batches)."""
    report_progress((batch + (level + 1) / levels) / batches)


class NoiseConditionalMethod(Method):
    """Base class: trains a noise-conditional critic on (clean P, noisy P_t) pairs of distributions and samples
    with a particle flow over a decreasing noise grid. See docs/dmmd.md for every option."""

    #: name of the main (maximised) objective in logs: "mmd2" or "kale".
    objective: str = "mmd2"
    #: whether sampling needs statistics of the data (DMMD: mean/reference features; DKALE: none).
    needs_stats: bool = True
    #: multi-process training (torchrun): the batch counts of the config are per rank, every MMD/KALE term uses all
    #: ranks' features (gflowzoo_dmmd/sharded.py, docs/distributed.md).
    supports_distributed: bool = True
    #: the flow term's points get a forward of their own even when they are all the noisy points (tests compare the
    #: two paths; ``flow_samples < n_noisy`` always takes the separate one)
    _separate_flow_forward: bool = False

    def __init__(self, config: Any, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device)
        self._check_config()
        if components is None:  # built without the session: resolve the config's components the session's way
            from gflowzoo.session import build_components

            components = build_components(None, config)
        #: the built components of the config (:func:`gflowzoo.session.build_components`), by field path
        self.components = components
        self.shape = tuple(int(s) for s in data.shape)
        self.schedule = components["schedule"]
        self.integrator = components["sampler.integrator"]
        self.accept_components(components)
        make_backbone = components["backbone"]  # a ComponentFactory: in_shape and feature_dim are ours to give
        dim = int(config.feature_dim) or backbone_default_dim(make_backbone.target)
        self.backbone: nn.Module = make_backbone(in_shape=self.shape, feature_dim=dim)
        self.backbone.to(self.device)
        self.feature_dim = int(getattr(self.backbone, "feature_dim", dim))
        self.extra = nn.ModuleDict(self.build_extra(self.feature_dim)).to(self.device)
        self.ema_backbone = copy.deepcopy(self.backbone).eval().requires_grad_(False)
        self.ema_extra = copy.deepcopy(self.extra).eval().requires_grad_(False)
        params = [p for p in list(self.backbone.parameters()) + list(self.extra.parameters()) if p.requires_grad]
        self.params = params
        self.opt = torch.optim.Adam(params, lr=config.lr, betas=(config.beta1, config.beta2)) if params else None
        self.step_count = 0
        self.stats: dict[str, Any] = {}
        #: whether :meth:`state_dict` stores ``stats``: only from :meth:`finalize` (the final checkpoint) until the
        #: next training step, so that intermediate checkpoints stay small (see :meth:`state_dict`).
        self.stats_final = False
        self.diag_acc = torch.zeros(max(1, config.diag_bins), 3, dtype=torch.float64)

    # ------------------------------------------------------------------------------------------------------------
    # hooks for subclasses
    # ------------------------------------------------------------------------------------------------------------
    def accept_components(self, components: dict[str, Any]) -> None:
        """Take the subclass's own components (a kernel, a divergence) from ``components`` and check that they fit;
        called before :meth:`build_extra`."""

    def build_extra(self, feature_dim: int) -> dict[str, nn.Module]:
        """Extra trainable modules next to the backbone (a learned width, a critic head)."""
        return {}

    def group_terms(self, fx: Tensor, fy: Tensor, fh: Tensor, xh: Tensor, t: Tensor, step: int) -> dict[str, Tensor]:
        """The loss terms of every group (each ``[G]``): the objective (``self.objective``, maximised), ``gp``,
        ``l2`` and ``grad_norm``."""
        raise NotImplementedError

    def make_witness(self, plan: list[Level]) -> tuple[Any, Any, Any]:
        """``(witness, particle_source, fixed_source)`` for :class:`~gflowzoo_dmmd.flow.ParticleFlow`."""
        raise NotImplementedError

    def has_width(self) -> bool:
        """Whether the critic has an input-space/learned kernel width for the ``width2`` step schedule."""
        return callable(getattr(self.backbone, "width", None))

    def widths(self, t: Tensor) -> Tensor:
        """The kernel width ``h_t`` at ``t`` ``[T]`` (``width2`` schedule)."""
        return self.backbone.width(t.to(self.device)).float().cpu()

    def _check_config(self) -> None:
        """The config's own checks (:meth:`gflowzoo_dmmd.config.CriticTrainConfig.validate`), again for a config
        built by hand rather than by :func:`gflowzoo.config.build`."""
        self.config.validate()

    # ------------------------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------------------------
    def _net(self, ema: bool) -> tuple[nn.Module, nn.ModuleDict]:
        return (self.ema_backbone, self.ema_extra) if ema else (self.backbone, self.extra)

    def _batch(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Draw one step's data: ``t`` ``[G]``, clean ``x`` ``[G, n, *S]``, noisy ``y`` ``[G, m, *S]`` (from other
        clean images), interpolates ``xh`` ``[G*k, *S]``, ``t`` per interpolate, and the clean images ``x_src``
        ``[G, m, *S]`` the noisy ones were made from; all on the device.

        Under ``W`` processes the generator draws the global batch (``W*n``, ``W*m``, ``W*k`` per group) on every
        rank and this rank keeps its share (:func:`gflowzoo_dmmd.sharded.take_share`); one process: all of it."""
        c = self.config
        w, r = dist.world(), dist.rank()
        g, n, m = c.groups, c.n_clean, c.n_noisy
        k = min(c.gp_samples or n, n, m)  # interpolates per group (per rank)
        big_n, big_m = w * n, w * m
        t = sample_levels(g, self.schedule.t_min, c.t_dist, c.t_power, generator)
        try:
            ds = self.data.train
        except UserError as exc:
            raise DataError(f"Training needs the training data: {exc}") from None
        x, x_src = self._draw(ds, g, big_n, big_m, generator, w, r)  # [G, n, *S], [G, m, *S]
        eps = take_share(torch.randn((g * big_m, *self.shape), generator=generator).view(g, big_m, *self.shape), w, r)
        u = take_share(torch.rand(g * w * k, generator=generator).view(g, w * k), w, r)
        dev = self.device
        x = x.to(dev)
        x_src = x_src.reshape(g * m, *self.shape).to(dev)
        t_dev = t.to(dev)
        y = self.schedule.add_noise(x_src, t_dev.repeat_interleave(m), noise=eps.reshape(g * m, *self.shape).to(dev))
        y = y.view(g, m, *self.shape)
        view = (g, k) + (1,) * len(self.shape)
        uu = u.to(dev).reshape(view)
        xh = (uu * x[:, :k] + (1 - uu) * y[:, :k]).reshape(g * k, *self.shape)
        return t_dev, x, y, xh, t_dev.repeat_interleave(k), x_src.view(g, m, *self.shape)

    def _draw(self, ds: Any, g: int, big_n: int, big_m: int, generator: torch.Generator, w: int,
              r: int) -> tuple[Tensor, Tensor]:
        """This rank's clean points ``[G, n, *S]`` and noise sources ``[G, m, *S]`` of the global draw of
        ``G*(N+M)`` data points (CPU). With the base class's sampler (uniform indices) only the share is loaded."""
        from gflowzoo.api import Dataset

        total = g * (big_n + big_m)
        if w == 1 or type(ds).sample is not Dataset.sample:
            x_all = ds.sample(total, generator)
            x = take_share(x_all[: g * big_n].view(g, big_n, *self.shape), w, r)
            return x, take_share(x_all[g * big_n :].view(g, big_m, *self.shape), w, r)
        idx = torch.randint(len(ds), (total,), generator=generator)  # exactly what Dataset.sample draws
        ix = take_share(idx[: g * big_n].view(g, big_n), w, r)
        iy = take_share(idx[g * big_n :].view(g, big_m), w, r)
        both = ds.get(torch.cat([ix.reshape(-1), iy.reshape(-1)]))
        return both[: ix.numel()].view(*ix.shape, *self.shape), both[ix.numel() :].view(*iy.shape, *self.shape)

    def _weights(self, t: Tensor) -> Tensor:
        c = self.config
        if c.weight == "none":
            return torch.ones_like(t)
        if c.weight == "inv-sigma":
            return 1.0 / self.schedule.sigma(t).clamp_min(c.weight_min_sigma)
        raise ConfigError(f"weight must be 'none' or 'inv-sigma'; got {c.weight!r}.")

    def losses(self, generator: torch.Generator, step: int = 0) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """One batch through the training network: ``(loss, terms per group, t)``."""
        c = self.config
        t, x, y, xh, th, x_src = self._batch(generator)
        g, n, m = x.shape[0], x.shape[1], y.shape[1]
        xh = xh.requires_grad_(True)
        y_in = y.reshape(g * m, *self.shape)
        k_flow = min(c.flow_samples or m, m) if c.lambda_flow > 0 else 0
        fused_flow = 0 < k_flow == m and not self._separate_flow_forward
        if fused_flow:  # the flow term differentiates through the main forward
            y_in = y_in.detach().requires_grad_(True)
        inp = torch.cat([x.reshape(g * n, *self.shape), y_in])
        tt = torch.cat([t.repeat_interleave(n), t.repeat_interleave(m)])
        if c.gp_forward == "joint":  # literally one forward for everything
            feats = self.backbone(torch.cat([inp, xh]), torch.cat([tt, th]))
            fh = feats[g * (n + m) :].view(g, -1, feats.shape[1])
        else:  # one forward for every group's clean and noisy points, one for the interpolates
            feats = self.backbone(inp, tt)
            fh = self.backbone(xh, th).view(g, -1, feats.shape[1])
        fx, fy = feats[: g * n].view(g, n, -1), feats[g * n : g * (n + m)].view(g, m, -1)
        w = dist.world()
        if w == 1:
            terms, refs = self.group_terms(fx, fy, fh, xh, t, step), (fx, fy)
        else:
            terms, refs = self.sharded_group_terms(fx, fy, fh, xh, t, step)
        per_group = -self._weights(t) * terms[self.objective] + c.lambda_gp * terms["gp"] + c.lambda_l2 * terms["l2"]
        if k_flow:
            k = k_flow
            if fused_flow:
                fz, y_flow = fy, y_in
            else:
                # a forward of its own for the k flow points, so that the double backward of the flow term runs
                # over G*k inputs, not the whole batch (on the MNIST paper preset it was half of the step's time)
                y_flow = y[:, :k].reshape(g * k, *self.shape).detach().requires_grad_(True)
                fz = self.backbone(y_flow, t.repeat_interleave(k)).view(g, k, -1)
            values = self.point_witness(fz[:, :k], refs[0].detach(), refs[1].detach(), t)
            align = flow_alignment if w == 1 else flow_alignment_sharded
            terms.update(align(values, y_flow, (x_src - y)[:, :k], g, k))
            per_group = per_group + c.lambda_flow * terms["flow"]
        # under W processes the per-rank losses add up to the loss of the global batch (sharded.py)
        return per_group.mean() / w, terms, t

    def sharded_group_terms(self, fx: Tensor, fy: Tensor, fh: Tensor, xh: Tensor, t: Tensor,
                            step: int) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
        """:meth:`group_terms` under several processes, from this rank's features (``fx`` ``[G, n, D]``, ``fy``
        ``[G, m, D]``, ``fh`` ``[G, k, D]``): the objective and ``l2`` over all ranks' points, ``gp`` and
        ``grad_norm`` over this rank's interpolates. Returns the terms and the (global) reference feature sets of
        the witness. The linear-kernel MMD uses all-reduced mean embeddings; everything else gathers features."""
        if self.objective == "mmd2" and self.linear_unbiased_mmd():
            return linear_mmd_terms(fx, fy, fh, xh)
        fx_all, fy_all = gather_groups(fx), gather_groups(fy)
        return self.group_terms(fx_all, fy_all, fh, xh, t, step), (fx_all, fy_all)

    def linear_unbiased_mmd(self) -> bool:
        """Whether the objective is the unbiased MMD^2 under the linear kernel (several processes then all-reduce
        mean embeddings instead of gathering features)."""
        return False

    def point_witness(self, fz: Tensor, fx: Tensor, fy: Tensor, t: Tensor) -> Tensor:
        """The critic's witness ``[G, k]`` at evaluation features ``fz`` ``[G, k, D]`` of group ``g`` against the
        (detached) clean and noisy feature sets ``fx`` ``[G, n, D]``, ``fy`` ``[G, m, D]`` (the flow term)."""
        raise ConfigError(f"lambda_flow is not supported by {type(self).__name__}.")

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """One optimisation step of the critic over ``groups`` noise levels. Logs ``loss``, the objective
        (``mmd2`` or ``kale``, group mean), ``gp``, ``l2``, ``grad_norm`` (mean |grad_x f| at the interpolates), and
        every ``diag_every`` steps per-t-bin means ``<objective>_t<lo>-<hi>`` and ``grad_norm_t<lo>-<hi>``."""
        c = self.config
        self.backbone.train()
        self.extra.train()
        self.stats_final = False  # the weights change: statistics are the final checkpoint's again only after finalize
        loss, terms, t = self.losses(generator, step)
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.sum_gradients(self.params)  # several processes: the gradient of the global batch on every rank
            if c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
            self.opt.step()
            self._update_ema(step)
        self.step_count = step + 1
        if dist.world() > 1:
            total, terms = global_logs(loss, terms)
            logs = {"loss": total}
        else:
            logs = {"loss": float(loss.detach())}
        for key in (self.objective, "gp", "l2", "grad_norm", "flow"):
            if key in terms:
                logs[key] = float(terms[key].detach().mean())
        logs.update(self._diagnostics(t, terms, step))
        return logs

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        decay = min(self.config.ema, (1.0 + step) / (10.0 + step))
        for live, ema in ((self.backbone, self.ema_backbone), (self.extra, self.ema_extra)):
            for p, q in zip(live.parameters(), ema.parameters()):
                q.lerp_(p.detach(), 1.0 - decay)
            for b, bq in zip(live.buffers(), ema.buffers()):
                bq.copy_(b)

    def _diagnostics(self, t: Tensor, terms: dict[str, Tensor], step: int) -> dict[str, float]:
        c = self.config
        bins = self.diag_acc.shape[0]
        idx = (t.detach().cpu() * bins).long().clamp(0, bins - 1)
        obj = terms[self.objective].detach().cpu().double()
        gn = terms["grad_norm"].detach().cpu().double()
        for i, b in enumerate(idx.tolist()):
            self.diag_acc[b] += torch.tensor([obj[i], gn[i], 1.0], dtype=torch.float64)
        if not c.diag_every or (step + 1) % c.diag_every:
            return {}
        out = {}
        for b in range(bins):
            s_obj, s_gn, cnt = self.diag_acc[b].tolist()
            if cnt == 0:
                continue  # never log NaN: the trainer treats it as divergence
            tag = f"t{b / bins:.2f}-{(b + 1) / bins:.2f}"
            out[f"{self.objective}_{tag}"] = s_obj / cnt
            out[f"grad_norm_{tag}"] = s_gn / cnt
        self.diag_acc.zero_()
        return out

    # ------------------------------------------------------------------------------------------------------------
    # statistics for sampling
    # ------------------------------------------------------------------------------------------------------------
    def finalize(self, generator: torch.Generator) -> None:
        """Precompute the sampler's statistics on the configured grid (fixed seed ``stats_seed``) so that they
        are stored in the final checkpoint (sampling from it needs no pass over the data)."""
        self._ensure_stats(self.schedule.grid(self.config.sampler.levels))
        self.stats_final = True

    def _stats_valid(self, grid: Tensor) -> bool:
        s = self.stats
        if not s or s.get("step") != self.step_count or s.get("use_ema") != bool(self.config.sampler.use_ema):
            return False
        if list(s.get("key", [])) != self._stats_key():
            return False
        stored = s.get("grid")
        return stored is not None and stored.shape == grid.shape and torch.allclose(stored, grid.to(stored.dtype))

    def _ensure_stats(self, grid: Tensor) -> dict[str, Any]:
        if self._stats_valid(grid):
            self.stats = self.restored_stats(self.stats)
            return self.stats
        try:
            ds = self.data.train
        except UserError as exc:
            if not self.needs_stats and (self.data.kind == "image" or self.config.sampler.box == 0):
                self.stats = {"grid": grid.detach().float().cpu(), "step": self.step_count,
                              "use_ema": bool(self.config.sampler.use_ema), "key": self._stats_key(),
                              "data_range": 1.0}
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
        stats = {"grid": grid.detach().float().cpu(), "step": self.step_count, "key": self._stats_key(),
                 "use_ema": bool(self.config.sampler.use_ema), "data_range": self._data_range(ds)}
        stats.update(self.compute_stats_from(ds, grid))
        self.stats = stats
        return stats

    def compute_stats_from(self, ds: Any, grid: Tensor) -> dict[str, Any]:
        """Statistics of the data set ``ds`` that the sampler needs on ``grid`` (computed with the sampling
        network); none by default."""
        return {}

    def stored_stats(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The part of the statistics a checkpoint stores (all of them by default; a subclass may leave out what
        :meth:`restored_stats` can recompute without the data)."""
        return stats

    def restored_stats(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The statistics with whatever :meth:`stored_stats` left out recomputed (nothing by default)."""
        return stats

    def _stats_key(self) -> list[int]:
        """What the statistics depend on besides the grid, the weights and ``use_ema``."""
        c = self.config
        return [int(c.stats_samples), int(c.stats_seed), int(c.sampler.n_ref)]

    def _data_range(self, ds: Any) -> float:
        if self.data.kind == "image":
            return 1.0
        n = len(ds) if self.config.stats_samples == 0 else min(len(ds), self.config.stats_samples)
        return float(ds.get(torch.arange(n)).abs().max())

    def _stats_indices(self, ds: Any) -> Tensor:
        """The data indices used for statistics: a fixed (``stats_seed``) random subset of ``stats_samples``."""
        n = len(ds) if self.config.stats_samples == 0 else min(len(ds), self.config.stats_samples)
        g = torch.Generator().manual_seed(self.config.stats_seed)
        return torch.randperm(len(ds), generator=g)[:n]

    # ------------------------------------------------------------------------------------------------------------
    # sampling
    # ------------------------------------------------------------------------------------------------------------
    def step_rule(self) -> tuple[float, str]:
        s = self.config.sampler
        return resolve_step_rule(s.step_size, s.step_schedule, s.variant, self.has_width())

    def plan(self, stats: dict[str, Any] | None = None) -> list[Level]:
        """The level plan of the configured sampler (``stats``: the sampler statistics, which hold the measured step
        scales of the ``calibrated`` schedule; without them that schedule is planned with unit scales)."""
        s = self.config.sampler
        grid = self.schedule.grid(s.levels)
        eta0, sched = self.step_rule()
        width = self.widths(grid) if sched == "width2" else None
        calibration = None
        if sched == "calibrated" and stats is not None:
            calibration = stats.get("flow_scale")
            if calibration is None:
                raise ConfigError(f"sampler.step_schedule='calibrated' is not supported by {type(self).__name__}.")
        return plan_levels(
            grid, self.schedule.sigma(grid), width, variant=s.variant, switch_t=s.switch_t,
            steps_per_level=s.steps_per_level, exact_steps_per_level=s.exact_steps_per_level, eta0=eta0, schedule=sched,
            calibration=calibration,
        )

    def sampling_info(self) -> dict[str, Any]:
        """``variant``, ``nfe`` (witness-gradient evaluations per particle, ``sum_k steps_k``), ``particles`` (N, the
        interaction batch), ``levels``, ``steps_per_level``, the resolved step rule, ``chunk``."""
        s = self.config.sampler
        plan = self.plan()
        eta0, sched = self.step_rule()
        return {
            "variant": s.variant, "nfe": sum(lv.steps for lv in plan), "particles": s.particles,
            "levels": s.levels, "steps_per_level": s.steps_per_level, "step_size": eta0, "step_schedule": sched,
            "chunk": s.chunk or s.particles,
        }

    @contextlib.contextmanager
    def cheap_sampler(self, n: int) -> Iterator[dict[str, Any]]:
        """A cheaper sampler for in-training evaluations of ``n`` samples, as a context (gflowzoo's evaluation hook
        enters it around its sampling): at most :data:`CHEAP_LEVELS` noise levels and at most ``n`` particles (a
        sampling costs particles x NFE, and on interacting levels the kernel terms grow like particles^2), every
        other setting as configured. Inside, :meth:`sample` and :meth:`sampling_info` use it; it yields the changed
        settings (e.g. ``{"levels": 20, "particles": 500}``).

        On exit the configured sampler comes back, and so do its statistics when the grid changed: an evaluation
        after :meth:`finalize` leaves the final statistics in place; those of the cheap grid are kept aside for the
        next cheap sampling (reused while the training step is the same)."""
        c = self.config
        s = c.sampler
        cheap = {"levels": min(s.levels, CHEAP_LEVELS), "particles": min(s.particles, max(int(n), 1))}
        regrid = cheap["levels"] != s.levels
        full_stats = self.stats
        self.config = dataclasses.replace(c, sampler=dataclasses.replace(s, **cheap))
        if regrid:
            self.stats = getattr(self, "_cheap_stats", {})
        try:
            yield {k: v for k, v in cheap.items() if v != getattr(s, k)}
        finally:
            if regrid:
                self._cheap_stats, self.stats = self.stats, full_stats
            self.config = c

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """Draw ``n`` samples (``[n, *S]``, CPU): ``ceil(n / particles)`` independent batches of ``particles``
        particles from ``N(0, I)`` moved through the level plan; the first ``n`` are returned."""
        s = self.config.sampler
        stats = self._ensure_stats(self.schedule.grid(s.levels))
        plan = self.plan(stats)
        witness, particle_source, fixed_source = self.make_witness(plan)
        box = s.box * float(stats.get("data_range", 1.0))
        flow = ParticleFlow(witness, particle_source, fixed_source, self.integrator, chunk=s.chunk, box=box,
                            max_move=s.max_move)
        self.ema_backbone.eval()
        self.backbone.eval()
        out = []
        batches = math.ceil(n / s.particles)
        for b in range(batches):
            z = torch.randn((s.particles, *self.shape), generator=generator).to(self.device)
            # progress displays (gflowzoo.progress) see every level of every batch
            done = partial(_level_done, b, batches, len(plan))
            out.append(flow.run(z, plan, generator, on_level=done).cpu())
        x = torch.cat(out)[:n]
        if s.clamp_output and self.data.kind == "image":
            x = x.clamp(-1.0, 1.0)
        return x.detach()

    def _chunks(self, z: Tensor) -> list[Tensor]:
        size = self.config.sampler.chunk or z.shape[0]
        return list(z.split(size))

    # ------------------------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Networks (live and EMA), optimiser, step, per-bin log accumulators and, after :meth:`finalize` (the final
        checkpoint of a run), the sampler statistics. Intermediate checkpoints leave them out (``stats`` is ``{}``):
        they can be tens of MB (rbf: ``ref_clean``/``ref_noisy`` ``[levels, n_ref, D]``) and are recomputed,
        deterministically (seed ``stats_seed``), from the data at the end of training or at the first sampling."""
        stats = self.stored_stats(self.stats) if self.stats_final else {}
        return {
            "backbone": self.backbone.state_dict(),
            "extra": self.extra.state_dict(),
            "ema_backbone": self.ema_backbone.state_dict(),
            "ema_extra": self.ema_extra.state_dict(),
            "opt": self.opt.state_dict() if self.opt is not None else {},
            "step": self.step_count,
            "diag": self.diag_acc.clone(),
            "stats": {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in stats.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.backbone.load_state_dict(state["backbone"])
        self.extra.load_state_dict(state["extra"])
        self.ema_backbone.load_state_dict(state["ema_backbone"])
        self.ema_extra.load_state_dict(state["ema_extra"])
        if self.opt is not None and state.get("opt"):
            self.opt.load_state_dict(state["opt"])
        self.step_count = int(state["step"])
        self.diag_acc = state["diag"].clone().to(torch.float64)
        self.stats = {k: (v.to("cpu") if isinstance(v, Tensor) else v) for k, v in state.get("stats", {}).items()}
        self.stats_final = bool(self.stats)  # a final checkpoint: saving again keeps its statistics

    # ------------------------------------------------------------------------------------------------------------
    # diagnostics
    # ------------------------------------------------------------------------------------------------------------
    def diagnose(self, levels: int = 20, n: int = 256, seed: int = 0, ema: bool = True) -> dict[str, list[float]]:
        """Critic diagnostics on data: for ``levels`` noise levels from ``t_min`` to 1, the objective between clean
        P and noisy P_t (``n`` samples each, from different images), the mean witness-gradient norm at those
        ``2n`` points and, where the critic has one, the kernel width. Returns lists keyed ``t``, the objective name,
        ``grad_norm`` and (optionally) ``width``."""
        try:
            ds = self.data.train
        except UserError as exc:
            raise DataError(f"diagnose needs the training data: {exc}") from None
        g = torch.Generator().manual_seed(seed)
        ts = torch.linspace(self.schedule.t_min, 1.0, levels)
        out: dict[str, list[float]] = {"t": [], self.objective: [], "grad_norm": []}
        for t in ts.tolist():
            x = ds.sample(n, g).to(self.device)
            x2 = ds.sample(n, g)
            eps = torch.randn(x2.shape, generator=g)
            tt = torch.full((n,), t, device=self.device)
            y = self.schedule.add_noise(x2.to(self.device), tt, eps.to(self.device))
            obj, gn = self.diagnose_level(x, y, t, ema)
            out["t"].append(t)
            out[self.objective].append(obj)
            out["grad_norm"].append(gn)
        if self.has_width():
            out["width"] = self.widths(ts).tolist()
        return out

    def diagnose_level(self, x: Tensor, y: Tensor, t: float, ema: bool) -> tuple[float, float]:
        """``(objective, mean |grad witness|)`` at one level for clean ``x`` and noisy ``y`` (``[n, *S]``)."""
        raise NotImplementedError
