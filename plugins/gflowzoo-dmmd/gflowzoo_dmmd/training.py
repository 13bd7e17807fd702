"""The training step of the noise-conditional critics (:class:`gflowzoo_dmmd.base.NoiseConditionalMethod`): one
batch over G noise levels, the batched backbone forward, the loss of every group (the method's
:meth:`~gflowzoo_dmmd.base.NoiseConditionalMethod.group_terms` plus the weighting, the penalties and the flow term),
and the optimiser step with gradient clipping and the EMA update.

:class:`CriticTraining` holds the optimiser; the networks, the config and the loss terms are the method's, read
through it on every call (the cheap sampler swaps the method's config, ``run.compile`` compiles its networks).
"""

from __future__ import annotations

from typing import Any

import torch
from gflowzoo.api import ConfigError, DataError, Dataset, UserError
from gflowzoo.api import distributed as dist
from torch import Tensor, nn

from .critic import flow_alignment, sample_levels
from .sharded import (
    flow_alignment_sharded,
    gather_groups,
    global_logs,
    linear_mmd_terms,
    take_share,
)

__all__ = ["CriticTraining"]


class CriticTraining:
    """Batches, losses and optimiser steps of the critic of ``method`` (a
    :class:`~gflowzoo_dmmd.base.NoiseConditionalMethod` whose networks are built)."""

    def __init__(self, method: Any) -> None:
        self.method = method
        c = method.config
        #: the trainable parameters of the backbone and the extra modules
        self.params: list[nn.Parameter] = [
            p for p in list(method.backbone.parameters()) + list(method.extra.parameters()) if p.requires_grad
        ]
        self.opt = torch.optim.Adam(self.params, lr=c.lr, betas=(c.beta1, c.beta2)) if self.params else None

    # -- one step's data -----------------------------------------------------------------------------------------
    def batch(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Draw one step's data: ``t`` ``[G]``, clean ``x`` ``[G, n, *S]``, noisy ``y`` ``[G, m, *S]`` (from other
        clean images), interpolates ``xh`` ``[G*k, *S]``, ``t`` per interpolate, and the clean images ``x_src``
        ``[G, m, *S]`` the noisy ones were made from; all on the device.

        Under ``W`` processes the generator draws the global batch (``W*n``, ``W*m``, ``W*k`` per group) on every
        rank and this rank keeps its share (:func:`gflowzoo_dmmd.sharded.take_share`); one process: all of it."""
        m_ = self.method
        c, shape = m_.config, m_.shape
        w, r = dist.world(), dist.rank()
        g, n, m = c.groups, c.n_clean, c.n_noisy
        k = min(c.gp_samples or n, n, m)  # interpolates per group (per rank)
        big_n, big_m = w * n, w * m
        t = sample_levels(g, m_.schedule.t_min, c.t_dist, c.t_power, generator)
        try:
            ds = m_.data.train
        except UserError as exc:
            raise DataError(f"Training needs the training data: {exc}") from None
        x, x_src = self.draw(ds, g, big_n, big_m, generator, w, r)  # [G, n, *S], [G, m, *S]
        eps = take_share(torch.randn((g * big_m, *shape), generator=generator).view(g, big_m, *shape), w, r)
        u = take_share(torch.rand(g * w * k, generator=generator).view(g, w * k), w, r)
        dev = m_.device
        x = x.to(dev)
        x_src = x_src.reshape(g * m, *shape).to(dev)
        t_dev = t.to(dev)
        y = m_.schedule.add_noise(x_src, t_dev.repeat_interleave(m), noise=eps.reshape(g * m, *shape).to(dev))
        y = y.view(g, m, *shape)
        view = (g, k) + (1,) * len(shape)
        uu = u.to(dev).reshape(view)
        xh = (uu * x[:, :k] + (1 - uu) * y[:, :k]).reshape(g * k, *shape)
        return t_dev, x, y, xh, t_dev.repeat_interleave(k), x_src.view(g, m, *shape)

    def draw(self, ds: Any, g: int, big_n: int, big_m: int, generator: torch.Generator, w: int,
             r: int) -> tuple[Tensor, Tensor]:
        """This rank's clean points ``[G, n, *S]`` and noise sources ``[G, m, *S]`` of the global draw of
        ``G*(N+M)`` data points (CPU). With the base class's sampler (uniform indices) only the share is loaded."""
        shape = self.method.shape
        total = g * (big_n + big_m)
        if w == 1 or type(ds).sample is not Dataset.sample:
            x_all = ds.sample(total, generator)
            x = take_share(x_all[: g * big_n].view(g, big_n, *shape), w, r)
            return x, take_share(x_all[g * big_n :].view(g, big_m, *shape), w, r)
        idx = torch.randint(len(ds), (total,), generator=generator)  # exactly what Dataset.sample draws
        ix = take_share(idx[: g * big_n].view(g, big_n), w, r)
        iy = take_share(idx[g * big_n :].view(g, big_m), w, r)
        both = ds.get(torch.cat([ix.reshape(-1), iy.reshape(-1)]))
        return both[: ix.numel()].view(*ix.shape, *shape), both[ix.numel() :].view(*iy.shape, *shape)

    # -- the loss ------------------------------------------------------------------------------------------------
    def weights(self, t: Tensor) -> Tensor:
        """The weight ``w(t)`` of each group's objective (``weight``: ``none`` or ``inv-sigma``)."""
        c = self.method.config
        if c.weight == "none":
            return torch.ones_like(t)
        if c.weight == "inv-sigma":
            return 1.0 / self.method.schedule.sigma(t).clamp_min(c.weight_min_sigma)
        raise ConfigError(f"weight must be 'none' or 'inv-sigma'; got {c.weight!r}.")

    def losses(self, generator: torch.Generator, step: int = 0) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """One batch through the training network: ``(loss, terms per group, t)``."""
        m_ = self.method
        c, shape, backbone = m_.config, m_.shape, m_.backbone
        t, x, y, xh, th, x_src = m_._batch(generator)
        g, n, m = x.shape[0], x.shape[1], y.shape[1]
        xh = xh.requires_grad_(True)
        y_in = y.reshape(g * m, *shape)
        k_flow = min(c.flow_samples or m, m) if c.lambda_flow > 0 else 0
        fused_flow = 0 < k_flow == m and not m_._separate_flow_forward
        if fused_flow:  # the flow term differentiates through the main forward
            y_in = y_in.detach().requires_grad_(True)
        inp = torch.cat([x.reshape(g * n, *shape), y_in])
        tt = torch.cat([t.repeat_interleave(n), t.repeat_interleave(m)])
        if c.gp_forward == "joint":  # literally one forward for everything
            feats = backbone(torch.cat([inp, xh]), torch.cat([tt, th]))
            fh = feats[g * (n + m) :].view(g, -1, feats.shape[1])
        else:  # one forward for every group's clean and noisy points, one for the interpolates
            feats = backbone(inp, tt)
            fh = backbone(xh, th).view(g, -1, feats.shape[1])
        fx, fy = feats[: g * n].view(g, n, -1), feats[g * n : g * (n + m)].view(g, m, -1)
        w = dist.world()
        if w == 1:
            terms, refs = m_.group_terms(fx, fy, fh, xh, t, step), (fx, fy)
        else:
            terms, refs = m_.sharded_group_terms(fx, fy, fh, xh, t, step)
        per_group = -self.weights(t) * terms[m_.objective] + c.lambda_gp * terms["gp"] + c.lambda_l2 * terms["l2"]
        if k_flow:
            k = k_flow
            if fused_flow:
                fz, y_flow = fy, y_in
            else:
                # a forward of its own for the k flow points, so that the double backward of the flow term runs
                # over G*k inputs, not the whole batch (on the MNIST paper preset it was half of the step's time)
                y_flow = y[:, :k].reshape(g * k, *shape).detach().requires_grad_(True)
                fz = backbone(y_flow, t.repeat_interleave(k)).view(g, k, -1)
            values = m_.point_witness(fz[:, :k], refs[0].detach(), refs[1].detach(), t)
            align = flow_alignment if w == 1 else flow_alignment_sharded
            terms.update(align(values, y_flow, (x_src - y)[:, :k], g, k))
            per_group = per_group + c.lambda_flow * terms["flow"]
        # under W processes the per-rank losses add up to the loss of the global batch (sharded.py)
        return per_group.mean() / w, terms, t

    def sharded_group_terms(self, fx: Tensor, fy: Tensor, fh: Tensor, xh: Tensor, t: Tensor,
                            step: int) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
        """The method's ``group_terms`` under several processes, from this rank's features (``fx`` ``[G, n, D]``,
        ``fy`` ``[G, m, D]``, ``fh`` ``[G, k, D]``): the objective and ``l2`` over all ranks' points, ``gp`` and
        ``grad_norm`` over this rank's interpolates. Returns the terms and the (global) reference feature sets of
        the witness. The linear-kernel MMD uses all-reduced mean embeddings; everything else gathers features."""
        m_ = self.method
        if m_.objective == "mmd2" and m_.linear_unbiased_mmd():
            return linear_mmd_terms(fx, fy, fh, xh)
        fx_all, fy_all = gather_groups(fx), gather_groups(fy)
        return m_.group_terms(fx_all, fy_all, fh, xh, t, step), (fx_all, fy_all)

    # -- the optimiser step --------------------------------------------------------------------------------------
    def step(self, step: int, generator: torch.Generator) -> tuple[dict[str, float], dict[str, Tensor], Tensor]:
        """One optimisation step over ``groups`` noise levels: ``(logs, terms per group, t)``. The logs hold
        ``loss`` and the group means of the objective, ``gp``, ``l2``, ``grad_norm`` and ``flow`` (all ranks')."""
        m_ = self.method
        c = m_.config
        m_.backbone.train()
        m_.extra.train()
        loss, terms, t = m_.losses(generator, step)
        if self.opt is not None:
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.sum_gradients(self.params)  # several processes: the gradient of the global batch on every rank
            if c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
            self.opt.step()
            self.update_ema(step)
        m_.step_count = step + 1
        if dist.world() > 1:
            total, terms = global_logs(loss, terms)
            logs = {"loss": total}
        else:
            logs = {"loss": float(loss.detach())}
        for key in (m_.objective, "gp", "l2", "grad_norm", "flow"):
            if key in terms:
                logs[key] = float(terms[key].detach().mean())
        return logs, terms, t

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """Move the EMA networks towards the live ones (decay ``min(ema, (1 + step) / (10 + step))``)."""
        m_ = self.method
        decay = min(m_.config.ema, (1.0 + step) / (10.0 + step))
        for live, ema in ((m_.backbone, m_.ema_backbone), (m_.extra, m_.ema_extra)):
            for p, q in zip(live.parameters(), ema.parameters()):
                q.lerp_(p.detach(), 1.0 - decay)
            for b, bq in zip(live.buffers(), ema.buffers()):
                bq.copy_(b)
