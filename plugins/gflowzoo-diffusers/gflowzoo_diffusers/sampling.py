"""DDPM (ancestral) and DDIM samplers built on diffusers' schedulers, with every random number drawn from a CPU
``torch.Generator`` handed in by the caller (so sampling is reproducible on any device)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .hub import diffusers_object

#: ``eps(x_t [N, *S], timesteps [N] float) -> [N, *S]``: the noise predictor.
EpsFn = Callable[[Tensor, Tensor], Tensor]


def make_scheduler(kind: str, betas: dict[str, Any], clip: bool, spacing: str) -> Any:
    """A diffusers ``DDPMScheduler`` (``kind="ddpm"``: ancestral sampling, ``fixed_small`` variance, Ho et al.) or
    ``DDIMScheduler`` (``kind="ddim"``, Song et al. 2021; ``set_alpha_to_one``) for epsilon prediction.

    ``betas`` holds either ``num_train_timesteps, beta_start, beta_end, beta_schedule`` or ``num_train_timesteps``
    and ``trained_betas``. ``clip`` clamps the predicted ``x_0`` to ``[-1, 1]`` (images). ``spacing`` is diffusers'
    ``timestep_spacing``: ``"leading"``, ``"trailing"`` or ``"linspace"``.
    """
    common = {**betas, "clip_sample": bool(clip), "prediction_type": "epsilon", "timestep_spacing": spacing,
              "steps_offset": 0}
    if kind == "ddim":
        cls = diffusers_object("diffusers.schedulers.scheduling_ddim", "DDIMScheduler")
        return cls(**common, set_alpha_to_one=True)
    if kind == "ddpm":
        cls = diffusers_object("diffusers.schedulers.scheduling_ddpm", "DDPMScheduler")
        return cls(**common, variance_type="fixed_small")
    raise ValueError(f"unknown sampler kind {kind!r}")


@torch.no_grad()
def reverse_diffusion(
    eps: EpsFn,
    scheduler: Any,
    kind: str,
    steps: int,
    shape: tuple[int, ...],
    n: int,
    generator: torch.Generator,
    device: torch.device,
    eta: float = 0.0,
) -> Tensor:
    """Draw ``n`` samples ``[n, *shape]`` (on ``device``) by running ``steps`` reverse steps from ``x_T ~ N(0, I)``.
    One call of ``eps`` per step: NFE = ``steps``.

    Randomness, in order: ``x_T`` from ``generator``; then, per step, the DDPM posterior noise (drawn by diffusers
    from the same CPU ``generator`` and moved to ``device``) or, for DDIM with ``eta > 0``, noise drawn here and
    passed as ``variance_noise``.
    """
    scheduler.set_timesteps(steps)
    x = torch.randn((n, *shape), generator=generator).to(device)
    for k in scheduler.timesteps.tolist():
        pred = eps(x, torch.full((n,), float(k), device=device))
        if kind == "ddim":
            noise = torch.randn(x.shape, generator=generator).to(device) if eta > 0 else None
            x = scheduler.step(pred, int(k), x, eta=float(eta), variance_noise=noise).prev_sample
        else:
            x = scheduler.step(pred, int(k), x, generator=generator).prev_sample
    return x
