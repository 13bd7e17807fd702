"""MMD GAN with a witness gradient penalty ("Demystifying MMD GANs", Binkowski, Sutherland, Arbel & Gretton, ICLR
2018): method ``mmdgan-gp``.

With a critic ``h`` (16-d output, no BatchNorm) and the unbiased MMD^2 under the rational-quadratic mixture plus a
linear term,

    L_G = MMD^2_u(h(x), h(g(z)))
    L_D = -MMD^2_u(h(x), h(g(z))) + lambda_gp * E (||grad_xhat w(xhat)|| - 1)^2 + lambda_l2 * L2(h),

where ``w`` is the MMD witness of the current batch (``mean_i k(h(.), h(x_i)) - mean_j k(h(.), h(g(z_j)))``; the
estimate and the witness are the ``divergence`` component's on the ``kernel`` component),
``xhat = (1 - a) x + a g(z)`` with ``a ~ U[0, 1]`` per sample, ``||.||`` the per-sample norm
``sqrt(sum g^2 + 1e-5)``, and ``L2(h)`` = sum over the critic's activation layers and its output of the mean
squared activation, for the real and the generated batch. Adam(1e-4, betas 0.5/0.9), 5 critic steps per generator
step, z ~ U[-1, 1]^100.

Paper vs official code (``mbinkowski/MMD-GAN``), with the option that selects the code's behaviour:

* kernel: the paper's rq* (alpha in {0.2, 0.5, 1, 2, 5} + linear) by default; the code's ``mix_rq_1dot`` is
  ``kernel = {name = "rq", alphas = [0.1, 1.0, 10.0], linear_weight = 1.0}``.
* gradient-penalty norm: per sample (default) or the code's per-(sample, channel, column) norm, which sums over
  the image height only (``gp_norm = "column"``).
* "unbiased" MMD^2 diagonal: exact by default; ``rq_diagonal_quirk = true`` adds the code's extra
  ``c (sum |h(x_i)|^2 / (n(n-1)) + sum |h(y_j)|^2 / (m(m-1)))`` (it subtracts a constant diagonal although the
  linear term makes the true diagonal ``sum_alpha 1 + c |h|^2``).
* gradient clipping: off by default; ``grad_clip_per_tensor = 1.0`` clips every gradient tensor to norm 1 as the
  code's ``tf.clip_by_norm`` does.
* learning rate: constant (as the shipped scripts run); ``adaptive_lr = true`` enables the KID 3-sample schedule
  (:mod:`.kid_lr`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gflowzoo.api import MMD, ConfigError, component

from .common import GANBase, GeneratorConfig, as_float, check_positive, family, set_requires_grad
from .kid_lr import KIDLearningRate

__all__ = ["MMDGANGP", "MMDGANGPConfig"]

#: Activation modules whose outputs enter the L2 activation penalty.
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Softplus)


@dataclasses.dataclass
class MMDGANGPConfig(GeneratorConfig):
    """Options of ``mmdgan-gp`` (defaults: the paper's choices with the official code's hyper-parameters)."""

    nz: int = 100
    latent: Literal["normal", "uniform"] = "uniform"
    #: Critic: any registered backbone without BatchNorm (the penalty needs per-sample gradients).
    critic: Any = component("backbone", {"name": "dcgan", "batchnorm": False})
    #: Critic output size (16 in the paper and code).
    feature_dim: int = 16
    #: Kernel on critic outputs: the paper's rq* mixture (+ linear term).
    kernel: Any = component("kernel", {"name": "rq", "alphas": [0.2, 0.5, 1.0, 2.0, 5.0], "linear_weight": 1.0})
    #: The divergence of the losses and of the witness, on ``kernel`` (its own ``kernel`` option is unused): the
    #: unbiased MMD^2 (paper and code), or any registered divergence.
    divergence: Any = component("divergence", {"name": "mmd", "estimator": "unbiased"})
    #: Add the official code's diagonal term to the "unbiased" MMD^2 (see the module docstring; needs an ``mmd``
    #: divergence whose estimator drops the diagonals, ``unbiased`` or ``u-statistic``).
    rq_diagonal_quirk: bool = False
    #: Weight of the witness gradient penalty and its norm: per ``sample`` or the code's per-``column`` quirk.
    lambda_gp: float = 1.0
    gp_norm: Literal["sample", "column"] = "sample"
    #: Weight of the L2 penalty on critic activations (real and generated batches).
    lambda_l2: float = 1.0
    #: Adam for both players.
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    #: Clip each gradient tensor to this L2 norm (0 = off; the code uses 1).
    grad_clip_per_tensor: float = 0.0
    #: Critic steps per generator step.
    critic_steps: int = 5
    #: KID-based adaptive learning rate (see :mod:`gflowzoo_mmdgan.kid_lr`).
    adaptive_lr: bool = False
    kid_every: int = 2000
    kid_samples: int = 1000
    kid_blocks: int = 10
    kid_lookback: int = 10
    kid_patience: int = 3
    kid_decay: float = 0.5
    kid_min_lr: float = 1e-6
    kid_p_threshold: float = 0.1

    def validate(self) -> None:
        """Checks of values no type expresses (called by :func:`gflowzoo.config.build`, so a bad ``--set`` fails
        when the configuration is resolved, and by the method)."""
        super().validate()
        check_positive(self, "lr", "critic_steps", "feature_dim")
        if self.lambda_gp < 0 or self.lambda_l2 < 0 or self.grad_clip_per_tensor < 0:
            raise ConfigError("lambda_gp, lambda_l2 and grad_clip_per_tensor must be >= 0.")
        if self.adaptive_lr:
            check_positive(self, "kid_every", "kid_samples", "kid_blocks", "kid_lookback", "kid_patience")


class MMDGANGP(GANBase):
    """MMD GAN-GP (Binkowski et al. 2018): unbiased MMD^2 with a rational-quadratic + linear kernel on a 16-d
    critic without BatchNorm, a gradient penalty on the MMD witness at interpolates and an L2 penalty on critic
    activations; Adam(1e-4, 0.5, 0.9), 5 critic steps per generator step, z ~ U[-1, 1]^100. Options: the official
    code's kernel, GP norm, diagonal and clipping quirks, and the KID-adaptive learning rate (``adaptive_lr``).
    Details: docs/baselines.md."""

    Config = MMDGANGPConfig

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """``paper``: DCGAN generator and critic of width 64, batch 64, z ~ U[-1, 1]^100, 150k generator steps
        (50k for MNIST); ``cpu-quick``: halved widths, nz 32, KID every 200 steps. Toys: MLPs."""
        fam = family(dataset)
        if fam is None:
            return {}
        if fam == "toy":
            out: dict[str, Any] = {
                "critic": {"name": "mlp-critic", "width": 128, "depth": 3},
                "nz": 4, "mlp_hidden": [128, 128, 128], "batch_size": 64, "lr": 1e-3,
                "kid_every": 200, "kid_lookback": 3, "kid_samples": 500,
            }
            return out
        if variant == "paper":
            return {"run": {"steps": 50_000 if fam in ("mnist", "digits") else 150_000}}
        width = 16 if fam == "digits" else 32
        return {"nz": 32, "ngf": width, "critic": {"name": "dcgan", "batchnorm": False, "ndf": width},
                "kid_every": 200, "kid_lookback": 3, "kid_samples": 500}

    def __init__(self, config: MMDGANGPConfig, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device, components=components)
        c = config
        self.critic = self.to_device(self.components["critic"](in_shape=self.shape, feature_dim=c.feature_dim))
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.critic.modules()):
            raise ConfigError(
                "mmdgan-gp: the critic has BatchNorm layers, which mix samples and break the per-sample gradient "
                "penalty. Use a critic without them, e.g. critic = {name = \"dcgan\", batchnorm = false}."
            )
        self.kernel = self.components["kernel"]
        #: the losses' divergence (``divergence``) on the kernel (``kernel``)
        self.divergence = self.components["divergence"].with_kernel(self.kernel)
        if c.rq_diagonal_quirk and not (isinstance(self.divergence, MMD) and self.divergence.estimator != "biased"):
            raise ConfigError(
                "mmdgan-gp: rq_diagonal_quirk corrects the diagonals an MMD estimator drops, so divergence must be "
                f"'mmd' with estimator 'unbiased' or 'u-statistic'; got {self.divergence!r}."
            )
        self._taps: list[Tensor] = []
        self._tapping = False
        for m in self.critic.modules():
            if isinstance(m, _ACTIVATIONS):
                m.register_forward_hook(self._tap)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.kid = None
        if c.adaptive_lr:
            self.kid = KIDLearningRate(
                self.shape, self.kind, every=c.kid_every, n=c.kid_samples, blocks=c.kid_blocks,
                lookback=c.kid_lookback, patience=c.kid_patience, decay=c.kid_decay, min_lr=c.kid_min_lr,
                p_threshold=c.kid_p_threshold,
            )

    def _tap(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        if self._tapping:
            self._taps.append(output)

    # -- losses ----------------------------------------------------------------------------------------------------
    def _mmd2(self, hx: Tensor, hy: Tensor) -> Tensor:
        """The divergence (by default the unbiased MMD^2) between critic outputs of real ``hx`` and generated ``hy``
        (``[B, 16]``), plus the code's diagonal term when ``rq_diagonal_quirk`` is on."""
        m2 = self.divergence.estimate(hx, hy)
        c_lin = float(getattr(self.kernel, "linear_weight", 0.0))
        if self.config.rq_diagonal_quirk and c_lin > 0:
            n, m = len(hx), len(hy)
            m2 = m2 + c_lin * (hx.square().sum() / (n * (n - 1)) + hy.square().sum() / (m * (m - 1)))
        return m2

    def _grad_norm(self, g: Tensor) -> Tensor:
        """Per-sample ``sqrt(sum g^2 + 1e-5)`` (``[B]``), or with ``gp_norm = "column"`` the code's norm over the
        height axis only (``[B, C, W]`` for images)."""
        if self.config.gp_norm == "column" and g.ndim == 4:
            return (g.square().sum(2) + 1e-5).sqrt()
        return (g.reshape(len(g), -1).square().sum(1) + 1e-5).sqrt()

    def _clip_grads(self, params: Any) -> None:
        limit = self.config.grad_clip_per_tensor
        if limit > 0:
            for p in params:
                if p.grad is not None:
                    torch.nn.utils.clip_grad_norm_([p], limit)

    def critic_step(self, generator: torch.Generator) -> dict[str, Tensor]:
        """One critic descent step on ``L_D``; returns detached scalars."""
        c = self.config
        x = self.real_batch(generator)
        z = self.latent(generator)
        a = torch.rand(len(x), generator=generator).to(self.device).reshape(-1, *([1] * (x.ndim - 1)))
        with torch.no_grad():
            y = self.G(z)
        xhat = (x + a * (y - x)).requires_grad_(True)
        b = len(x)
        self._taps, self._tapping = [], c.lambda_l2 > 0
        try:
            h = self.critic(torch.cat([x, y, xhat]))
        finally:
            self._tapping = False
        hx, hy, hh = h[:b], h[b : 2 * b], h[2 * b :]
        m2 = self._mmd2(hx, hy)
        w = self.divergence.witness(hh, hx, hy)
        (grad,) = torch.autograd.grad(w.sum(), xhat, create_graph=True)
        gp = (self._grad_norm(grad) - 1.0).square().mean()
        loss = -m2 + c.lambda_gp * gp
        l2 = torch.zeros((), device=self.device)
        if c.lambda_l2 > 0:
            for act in [*self._taps, h]:
                l2 = l2 + act[:b].square().mean() + act[b : 2 * b].square().mean()
            loss = loss + c.lambda_l2 * l2
        self._taps = []
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_grads(self.critic.parameters())
        self.opt_d.step()
        return {"loss_d": loss.detach(), "mmd2_d": m2.detach(), "gp": gp.detach(), "l2": l2.detach()}

    def generator_step(self, generator: torch.Generator) -> dict[str, Tensor]:
        """One generator descent step on ``L_G``; returns detached scalars."""
        x = self.real_batch(generator)
        z = self.latent(generator)
        set_requires_grad(self.critic, False)
        try:
            with torch.no_grad():
                hx = self.critic(x)
            loss = self._mmd2(hx, self.critic(self.G(z)))
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self._clip_grads(self.G.parameters())
            self.opt_g.step()
        finally:
            set_requires_grad(self.critic, True)
        return {"loss": loss.detach()}

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """``critic_steps`` critic steps, one generator step, then (with ``adaptive_lr``, every ``kid_every``
        steps) a KID evaluation that may halve the learning rate. Logs ``loss`` (= MMD^2 of the generator step),
        ``loss_d``, ``mmd2_d``, ``gp``, ``l2`` (last critic step), ``lr`` and, at evaluations, ``kid``/``kid_p``."""
        for _ in range(self.config.critic_steps):
            d_logs = self.critic_step(generator)
        g_logs = self.generator_step(generator)
        logs = {k: as_float(v) for k, v in {**g_logs, **d_logs}.items()}
        if self.kid is not None and self.kid.due(step):
            logs.update(self.kid.update(lambda n: self.sample(n, generator), self.data.train,
                                        [self.opt_g, self.opt_d], self.device))
        logs["lr"] = float(self.opt_g.param_groups[0]["lr"])
        return logs

    # -- state -----------------------------------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """Networks, both Adam states (with the current learning rate) and the KID schedule's memory."""
        parts: dict[str, Any] = {"generator": self.G, "critic": self.critic, "opt_g": self.opt_g, "opt_d": self.opt_d}
        if self.kid is not None:
            parts["kid"] = self.kid
        return parts
