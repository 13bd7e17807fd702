"""The checkpoint state of the noise-conditional critics: the networks (live and EMA), the optimiser, the training
step, the t-bin accumulators of the diagnostics and, in the final checkpoint only, the sampler statistics. The keys
are those of every checkpoint written so far; :func:`critic_state` and :func:`load_critic_state` are the method's
``state_dict`` and ``load_state_dict``."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["critic_state", "load_critic_state"]


def critic_state(method: Any) -> dict[str, Any]:
    """The state of ``method`` (a :class:`~gflowzoo_dmmd.base.NoiseConditionalMethod`): ``backbone``, ``extra``,
    ``ema_backbone``, ``ema_extra``, ``opt``, ``step``, ``diag`` and ``stats`` (``{}`` before ``finalize``, see
    :meth:`gflowzoo_dmmd.statistics.SamplerStatistics.for_checkpoint`)."""
    opt = method.training.opt
    return {
        "backbone": method.backbone.state_dict(),
        "extra": method.extra.state_dict(),
        "ema_backbone": method.ema_backbone.state_dict(),
        "ema_extra": method.ema_extra.state_dict(),
        "opt": opt.state_dict() if opt is not None else {},
        "step": method.step_count,
        "diag": method.diagnostics.acc.clone(),
        "stats": method.statistics.for_checkpoint(),
    }


def load_critic_state(method: Any, state: dict[str, Any]) -> None:
    """Restore ``method`` from :func:`critic_state`."""
    method.backbone.load_state_dict(state["backbone"])
    method.extra.load_state_dict(state["extra"])
    method.ema_backbone.load_state_dict(state["ema_backbone"])
    method.ema_extra.load_state_dict(state["ema_extra"])
    opt = method.training.opt
    if opt is not None and state.get("opt"):
        opt.load_state_dict(state["opt"])
    method.step_count = int(state["step"])
    method.diagnostics.acc = state["diag"].clone().to(torch.float64)
    method.statistics.load(state.get("stats", {}))
