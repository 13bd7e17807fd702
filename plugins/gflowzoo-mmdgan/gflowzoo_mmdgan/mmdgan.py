"""MMD GAN (Li, Chang, Cheng, Yang & Poczos, NeurIPS 2017): method ``mmdgan``.

The generator ``g`` minimises, and the critic (an encoder ``f`` with a decoder ``dec``) maximises,

    L_D = D(f(x), f(g(z))) + lambda_rg * OS(mean f(x) - mean f(g(z)))
          - lambda_ae * ( mse(dec(f(x)), x) + mse(dec(f(y)), y) ),          y = g(z) detached
    L_G = D(f(x), f(g(z))) + lambda_rg * OS(mean f(x) - mean f(g(z))),

with ``D = MMD^2`` under a Gaussian mixture kernel on the critic features (``sqrt(MMD^2)`` with ``sqrt_loss``; the
estimate is the ``divergence`` component's on the ``kernel`` component, so any registered divergence can stand in),
``OS(v) = -mean(relu(-v))`` the code's one-sided hinge, the encoder weights clipped to ``[-clip, clip]`` before each
critic step and RMSprop for both players.

Defaults follow the **paper** where the official code (``OctoberChang/MMD-GAN``) departs from it; each code
behaviour is one option away (``docs/baselines.md`` lists them):

============================  ======================  ==========================================
what                          paper (default)         official code (option)
============================  ======================  ==========================================
loss on the MMD               MMD^2                   ``sqrt_loss = true`` (sqrt(relu(MMD^2)))
MMD^2 estimator               ``unbiased``            ``divergence.estimator = "biased"``
one-sided hinge               off (``lambda_rg = 0``)  ``lambda_rg = 16``
============================  ======================  ==========================================

Shared by both: sigma in {1, 2, 4, 8, 16} (std convention), lambda_ae = 8 for real and 8 for generated samples,
clip 0.01 on the encoder only (BatchNorm parameters included, decoder not clipped), RMSprop lr 5e-5, the critic
schedule of the code (100 critic steps for the first 25 generator iterations and every 500th, else 5).

One ``train_step`` is one generator iteration together with its critic iterations; the number of critic
iterations is a function of ``step`` alone (:meth:`MMDGAN.critic_steps_at`), so ``run.steps`` counts generator
iterations and resuming is exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from gflowzoo.api import MLP, MMD, ConfigError, DCGANDecoder, component

from .common import GANBase, GeneratorConfig, as_float, check_positive, family, one_sided, safe_sqrt, set_requires_grad

__all__ = ["MMDGAN", "MMDGANConfig"]


@dataclasses.dataclass
class MMDGANConfig(GeneratorConfig):
    """Options of ``mmdgan`` (defaults: the paper's choices with the official code's hyper-parameters)."""

    #: Critic encoder f: any registered backbone (``dcgan`` for images, ``mlp-critic`` for 2-D toys).
    critic: Any = component("backbone", "dcgan")
    #: Size k of the critic code; 0 means ``nz`` (the official code ties the two).
    feature_dim: int = 0
    #: Kernel on critic features: a Gaussian mixture, sigma in {1,2,4,8,16}, std convention exp(-d^2 / (2 s^2)).
    kernel: Any = component("kernel", {"name": "rbf", "sigmas": [1.0, 2.0, 4.0, 8.0, 16.0], "convention": "std"})
    #: The divergence of the losses, on ``kernel`` (its own ``kernel`` option is unused): ``mmd`` with the
    #: ``unbiased`` (paper) or ``biased`` (the official code's V-statistic) MMD^2 estimator, or any registered one.
    divergence: Any = component("divergence", {"name": "mmd", "estimator": "unbiased"})
    #: The older spelling of ``divergence.estimator`` (configs written before ``divergence``): when set, it wins.
    estimator: Literal["unbiased", "biased", "u-statistic"] | None = None
    #: Use sqrt(relu(MMD^2)) (official code) instead of MMD^2 (paper); the square root is clamped (finite gradient).
    sqrt_loss: bool = False
    #: Weight of the one-sided hinge term of the code (16 there); 0 = off, as in the paper's objective.
    lambda_rg: float = 0.0
    #: Weight of each auto-encoder term (real and generated); 0 removes the decoder.
    lambda_ae: float = 8.0
    #: Width of the DCGAN decoder of the auto-encoder term (images).
    decoder_ngf: int = 64
    #: Weight clipping of the encoder f (all its parameters, BatchNorm included), before every critic step.
    clip: float = 0.01
    #: RMSprop learning rate of both players, and RMSprop's smoothing constant.
    lr: float = 5e-5
    rmsprop_alpha: float = 0.99
    #: Critic steps per generator step, and the warm-up schedule of the code: ``critic_steps_warmup`` critic steps
    #: for the first ``warmup_generator_steps`` generator steps and every ``warmup_every``-th one (0 = never).
    critic_steps: int = 5
    critic_steps_warmup: int = 100
    warmup_generator_steps: int = 25
    warmup_every: int = 500

    def __post_init__(self) -> None:
        self.divergence = MMD.fold_estimator(self.divergence, self.estimator)

    def validate(self) -> None:
        """Checks of values no type expresses (called by :func:`gflowzoo.config.build`, so a bad ``--set`` fails
        when the configuration is resolved, and by the method)."""
        super().validate()
        check_positive(self, "lr", "critic_steps")
        if (self.clip < 0 or self.lambda_ae < 0 or self.lambda_rg < 0 or self.critic_steps_warmup < 0
                or self.warmup_every < 0):
            raise ConfigError("clip, lambda_ae, lambda_rg, critic_steps_warmup and warmup_every must be >= 0.")


#: Official per-data-set settings (``run_exp.sh``): the latent size nz equals the code size k.
_PAPER_NZ = {"mnist": 10, "digits": 10, "cifar10": 128, "celeba64": 64, "lsun-church64": 128}


class MMDGAN(GANBase):
    """MMD GAN (Li et al. 2017): a generator against an auto-encoding critic whose encoder weights are clipped.

    Loss: MMD^2 of a Gaussian mixture (sigma 1..16) on critic codes; the critic also minimises 8 * reconstruction
    error of real and generated samples. RMSprop 5e-5; 100 critic steps for the first 25 generator steps and every
    500th, else 5. Paper defaults; the official code's sqrt, biased estimator and hinge are options
    (``sqrt_loss``, ``divergence.estimator``, ``lambda_rg``). Details: docs/baselines.md."""

    Config = MMDGANConfig

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """Per-data-set settings: ``paper`` = the official hyper-parameters (nz = 10/128/64/128 for MNIST/CIFAR-10/
        CelebA/LSUN, widths 64, the full warm-up schedule); ``cpu-quick`` = narrower networks and a short warm-up
        (25 critic steps for the first 10 generator steps), on digits lr 2e-4; toys use MLPs for both players."""
        fam = family(dataset)
        if fam is None:
            return {}
        if fam == "toy":
            out: dict[str, Any] = {
                "critic": {"name": "mlp-critic", "width": 128, "depth": 3},
                "nz": 4, "feature_dim": 16, "mlp_hidden": [128, 128, 128], "batch_size": 64,
                "clip": 0.05, "lr": 5e-4,
            }
            if variant == "cpu-quick":
                out.update(critic_steps_warmup=20, warmup_generator_steps=10, warmup_every=0)
            return out
        out = {"nz": _PAPER_NZ[fam]}
        if variant == "cpu-quick":
            width = 16 if fam == "digits" else 32
            out.update(ngf=width, decoder_ngf=width, critic={"name": "dcgan", "ndf": width})
            out.update(critic_steps_warmup=25, warmup_generator_steps=10)
            if fam == "digits":
                # lr 2e-4 instead of 5e-5: in-training KID lower at every point of a 5-minute run, e.g. 0.68 vs
                # 1.31 after 2,000 generator steps (1e-3 and 2e-3 oscillate); docs/baselines.md, "Measured".
                out["lr"] = 2e-4
        return out

    def __init__(self, config: MMDGANConfig, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device, components=components)
        c = config
        self.k = c.feature_dim or c.nz
        self.critic = self.to_device(self.components["critic"](in_shape=self.shape, feature_dim=self.k))
        self.kernel = self.components["kernel"]
        #: the losses' divergence (``divergence``) on the kernel (``kernel``)
        self.divergence = self.components["divergence"].with_kernel(self.kernel)
        self.decoder = None
        if c.lambda_ae > 0:
            if self.kind == "image":
                self.decoder = DCGANDecoder(self.k, self.shape, ngf=c.decoder_ngf, out_activation="tanh")
            else:
                import math

                self.decoder = MLP(self.k, math.prod(self.shape), c.mlp_hidden, "relu", "none", out_shape=self.shape)
            self.decoder = self.to_device(self.decoder)
        d_params = list(self.critic.parameters()) + (list(self.decoder.parameters()) if self.decoder else [])
        self.opt_g = torch.optim.RMSprop(self.G.parameters(), lr=c.lr, alpha=c.rmsprop_alpha)
        self.opt_d = torch.optim.RMSprop(d_params, lr=c.lr, alpha=c.rmsprop_alpha)

    # -- the schedule ----------------------------------------------------------------------------------------------
    def critic_steps_at(self, step: int) -> int:
        """Critic iterations before generator iteration ``step`` (0-based): ``critic_steps_warmup`` while
        ``step < warmup_generator_steps`` or when ``step`` is a multiple of ``warmup_every``; else
        ``critic_steps``."""
        c = self.config
        if step < c.warmup_generator_steps or (c.warmup_every > 0 and step % c.warmup_every == 0):
            return max(c.critic_steps_warmup, 1)
        return c.critic_steps

    # -- losses ----------------------------------------------------------------------------------------------------
    def _distance(self, fx: Tensor, fy: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss term, MMD^2)`` for features of real ``fx`` and generated ``fy`` (``[B, k]``; ``MMD^2``: the
        divergence's estimate)."""
        m2 = self.divergence.estimate(fx, fy)
        return (safe_sqrt(m2) if self.config.sqrt_loss else m2), m2

    def critic_step(self, generator: torch.Generator) -> dict[str, Tensor]:
        """One critic (encoder + decoder) ascent step on ``L_D``; returns detached scalars."""
        c = self.config
        if c.clip > 0:
            with torch.no_grad():
                for p in self.critic.parameters():
                    p.clamp_(-c.clip, c.clip)
        x = self.real_batch(generator)
        z = self.latent(generator)
        with torch.no_grad():
            y = self.G(z)
        fx, fy = self.critic(x), self.critic(y)
        dist, m2 = self._distance(fx, fy)
        objective = dist
        if c.lambda_rg > 0:
            objective = objective + c.lambda_rg * one_sided(fx.mean(0) - fy.mean(0))
        ae = torch.zeros((), device=self.device)
        if self.decoder is not None:
            ae = F.mse_loss(self.decoder(fx), x) + F.mse_loss(self.decoder(fy), y)
            objective = objective - c.lambda_ae * ae
        self.opt_d.zero_grad(set_to_none=True)
        objective.neg().backward()
        self.opt_d.step()
        return {"loss_d": objective.detach(), "mmd2_d": m2.detach(), "ae": ae.detach()}

    def generator_step(self, generator: torch.Generator) -> dict[str, Tensor]:
        """One generator descent step on ``L_G`` with a fresh real batch; returns detached scalars."""
        c = self.config
        x = self.real_batch(generator)
        z = self.latent(generator)
        set_requires_grad(self.critic, False)
        try:
            with torch.no_grad():
                fx = self.critic(x)
            fy = self.critic(self.G(z))
            dist, m2 = self._distance(fx, fy)
            loss = dist
            if c.lambda_rg > 0:
                loss = loss + c.lambda_rg * one_sided(fx.mean(0) - fy.mean(0))
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:
            set_requires_grad(self.critic, True)
        return {"loss": loss.detach(), "mmd2": m2.detach()}

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """``critic_steps_at(step)`` critic steps, then one generator step. Logs ``loss`` (generator loss),
        ``loss_d`` (the critic's objective, maximised), ``mmd2`` and ``ae`` (last critic step), ``critic_steps``."""
        n_critic = self.critic_steps_at(step)
        for _ in range(n_critic):
            d_logs = self.critic_step(generator)
        g_logs = self.generator_step(generator)
        logs = {k: as_float(v) for k, v in {**g_logs, **d_logs}.items()}
        logs["critic_steps"] = float(n_critic)
        return logs

    # -- state -----------------------------------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """Networks (the decoder when the auto-encoder term is on) and both RMSprop states."""
        parts: dict[str, Any] = {"generator": self.G, "critic": self.critic}
        if self.decoder is not None:
            parts["decoder"] = self.decoder
        return {**parts, "opt_g": self.opt_g, "opt_d": self.opt_d}
