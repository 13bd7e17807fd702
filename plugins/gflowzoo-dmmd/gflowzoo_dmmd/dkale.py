"""``dkale``: the noise-conditional training of DMMD with the KALE objective (notes/dmmd.md section 6).

Critic: a scalar head on the noise-conditional features, ``h(x, t) = <w, phi(x, t)> + b`` (the t-dependence lives in
``phi``). Per group (one t) it maximises ``1 + E_{P_t} h - E_P exp(h)`` (KALE with source Q = noisy data P_t and
target P = clean data, the convention of :class:`gflowzoo.divergences.KALE`), so ``h(., t) ~ log dP_t/dP``: large
where noisy data has more mass than clean data. Loss per group: ``-w(t) kale + lambda_gp GP(h) + lambda_l2 mean h^2``.

Sampling moves particles *down* the critic, ``z <- z - eta grad_z h(z, t_k)`` (the KALE flow's ``-(1 + lam) grad h``
with the factor absorbed in eta), over the same decreasing grid. There is no closed-form particle interaction, so the
sampler is always non-interacting (``sampler.variant = "approx"``) and needs no data statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gflowzoo.api import ConfigError, CriticObjective

from .base import NoiseConditionalMethod
from .config import DKALEConfig
from .critic import kale_group_losses
from .flow import Level
from .presets import dkale_preset

__all__ = ["DKALE"]


class DKALE(NoiseConditionalMethod):
    """Noise-conditional KALE critic (KL approximate lower bound, Glaser et al. 2021) trained without a generator
    between clean and forward-noised data; samples ``[n, *S]`` by descending ``h(., t)`` over a noise grid."""

    Config = DKALEConfig
    objective = "kale"
    needs_stats = False

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """Per data set settings (the DMMD presets, without the exact-sampler values)."""
        return dkale_preset(dataset, variant)

    def accept_components(self, components: dict[str, Any]) -> None:
        """The divergence whose critic objective the head maximises (``"kale"``)."""
        divergence = components["divergence"]
        if not isinstance(divergence, CriticObjective):
            raise ConfigError(
                "dkale trains a critic on a divergence's variational objective, so divergence must have one "
                f"(gflowzoo.interfaces.CriticObjective, such as 'kale'); got {type(divergence).__name__}."
            )
        self.divergence = divergence

    def build_extra(self, feature_dim: int) -> dict[str, nn.Module]:
        head = nn.Linear(feature_dim, 1)
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
        return {"head": head}

    def _critic(self, z: Tensor, t: Tensor, ema: bool) -> Tensor:
        net, extra = self._net(ema)
        return extra["head"](net(z, t))[:, 0]

    def group_terms(self, fx: Tensor, fy: Tensor, fh: Tensor, xh: Tensor, t: Tensor, step: int) -> dict[str, Tensor]:
        head = self.extra["head"]
        hx, hy, hh = head(fx)[..., 0], head(fy)[..., 0], head(fh)[..., 0]
        return kale_group_losses(hx, hy, hh, xh, self.divergence)

    def make_witness(self, plan: list[Level]) -> tuple[Any, Any, Any]:
        ema = self.config.sampler.use_ema

        def witness_fn(z: Tensor, level: Level, source: Any) -> Tensor:
            t = torch.full((z.shape[0],), level.t, device=z.device, dtype=z.dtype)
            return -self._critic(z, t, ema)  # particles move up -h, i.e. down the critic

        def no_source(z_all: Tensor, level: Level) -> Tensor:  # pragma: no cover - never interacting
            raise ConfigError("dkale's sampler never interacts.")

        return witness_fn, no_source, lambda level: None

    def diagnose_level(self, x: Tensor, y: Tensor, t: float, ema: bool) -> tuple[float, float]:
        with torch.enable_grad():
            z = torch.cat([x, y]).requires_grad_(True)
            h = self._critic(z, torch.full((z.shape[0],), t, device=z.device), ema)
            (grad,) = torch.autograd.grad(h.sum(), z)
        hx, hy = h[: len(x)].detach(), h[len(x) :].detach()
        value = float(self.divergence.critic_objective(hx, hy))
        return value, float(grad.flatten(1).norm(dim=1).mean())
