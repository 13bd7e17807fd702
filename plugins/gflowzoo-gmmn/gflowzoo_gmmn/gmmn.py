"""Generative moment matching network (Li, Swersky & Zemel, ICML 2015): method ``gmmn``.

A generator ``g`` maps ``z ~ U[-1, 1]^nz`` to samples and minimises a **fixed-kernel** MMD between a generated
minibatch and a data minibatch; there is no critic. Defaults are those of the official code for MNIST
(``yujiali/gmmn``, ``mnistinput``), re-implemented from its description:

* generator MLP ``nz=10 -> 64 -> 256 -> 256 -> 1024 -> D``, ReLU hidden layers, sigmoid output;
* kernel: an unweighted sum of Gaussians whose parameters are **variances** (``exp(-|a - b|^2 / (2 s))``,
  ``RBFKernel(sigmas=[2, 5, 10, 20, 40, 80], convention="variance")``): the same numbers in the std convention
  would be far wider kernels;
* loss ``sqrt(MMD^2_b)`` with the biased (V-statistic) estimator (``divergence.estimator = "unbiased"`` and
  ``sqrt_loss = false`` select the unbiased ``MMD^2`` of Dziugaite et al. 2015 instead); the square root is
  clamped so its gradient stays finite at 0 (the code divides by ``2 sqrt(L) + 1e-10``). The estimate is the
  ``divergence`` component's (``mmd`` by default, any registered divergence) on the ``kernel`` component;
* minibatches of 1,000 data and 1,000 generated samples; SGD with momentum: lr 2, momentum 0.9, and at step
  10,000 lr 0.2 and momentum 0.99.

Units. The official bandwidths were chosen for pixels in ``[0, 1]``. gflowzoo images are in ``[-1, 1]``, so for
images the kernel is evaluated on ``(x + 1) / 2`` (data) and on the sigmoid output (generated), exactly the
official scale; samples are returned as ``2 * sigmoid - 1``. For 2-D points the kernel sees model units (each
coordinate about unit variance) and the output layer is linear.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gflowzoo.api import MLP, MMD, ConfigError, DCGANDecoder, GeneratorMethod, component

__all__ = ["GMMN", "GMMNConfig", "family", "safe_sqrt"]

_FAMILIES = ("digits", "mnist", "cifar10", "celeba64", "lsun-church64")


def family(dataset: str) -> str | None:
    """The preset family of a data-set name (``"toy"`` for every ``toy-*``), or None."""
    if dataset.startswith("toy-"):
        return "toy"
    return dataset if dataset in _FAMILIES else None


def safe_sqrt(v: Tensor, eps: float = 1e-10) -> Tensor:
    """``sqrt(max(v, eps))``: ``sqrt(relu(v))`` up to ``sqrt(eps)`` = 1e-5, with a finite gradient everywhere
    (0 below ``eps``, at most ``1 / (2 sqrt(eps))`` above)."""
    return v.clamp_min(eps).sqrt()


#: Kernel variances for pixels in [0, 1]: the official MNIST list, and lists scaled with the data dimension for
#: the other image sets (squared distances grow roughly with the number of pixels) [our choice, not official].
_IMAGE_VARIANCES = {
    "digits": [0.2, 0.5, 1.0, 2.0, 4.0, 8.0],
    "mnist": [2.0, 5.0, 10.0, 20.0, 40.0, 80.0],
    "cifar10": [8.0, 20.0, 40.0, 80.0, 160.0, 320.0],
    "celeba64": [32.0, 80.0, 160.0, 320.0, 640.0, 1280.0],
    "lsun-church64": [32.0, 80.0, 160.0, 320.0, 640.0, 1280.0],
}


@dataclasses.dataclass
class GMMNConfig:
    """Options of ``gmmn`` (defaults: the official MNIST settings)."""

    #: Latent size and distribution (official: U[-1, 1]^10).
    nz: int = 10
    latent: Literal["uniform", "normal"] = "uniform"
    #: Generator: an MLP with ``hidden`` widths (official), or a DCGAN decoder of width ``ngf`` (images only).
    generator: Literal["mlp", "dcgan"] = "mlp"
    hidden: list[int] = dataclasses.field(default_factory=lambda: [64, 256, 256, 1024])
    activation: str = "relu"
    ngf: int = 64
    #: The fixed kernel: Gaussian mixture in the *variance* convention (see the module docstring).
    kernel: Any = component(
        "kernel", {"name": "rbf", "sigmas": [2.0, 5.0, 10.0, 20.0, 40.0, 80.0], "convention": "variance"}
    )
    #: The divergence of the loss, on ``kernel`` (its own ``kernel`` option is unused): ``mmd`` with the ``biased``
    #: (official code) or ``unbiased`` (Dziugaite et al.) MMD^2 estimator, or any registered divergence.
    divergence: Any = component("divergence", {"name": "mmd", "estimator": "biased"})
    #: The older spelling of ``divergence.estimator`` (configs written before ``divergence``): when set, it wins.
    estimator: Literal["biased", "unbiased", "u-statistic"] | None = None
    #: Loss sqrt(MMD^2) (official code) or MMD^2.
    sqrt_loss: bool = True
    #: Data and generated samples per step (1,000 each in the official code; GMMNs need large batches).
    batch_size: int = 1000
    #: Optimiser: SGD with momentum (official) or Adam (betas 0.5, 0.999 not used: torch defaults).
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 2.0
    momentum: float = 0.9
    #: At generator step ``lr_drop_step`` (counted within the GMMN phase; 0 = never): lr -> ``lr_after``,
    #: momentum -> ``momentum_after`` (SGD only for the momentum).
    lr_drop_step: int = 10000
    lr_after: float = 0.2
    momentum_after: float = 0.99
    #: Samples generated per forward pass in ``sample``.
    sample_chunk: int = 1000

    def __post_init__(self) -> None:
        self.divergence = MMD.fold_estimator(self.divergence, self.estimator)

    def validate(self) -> None:
        """Checks of values no type expresses (called by :func:`gflowzoo.config.build`, so a bad ``--set`` fails
        when the configuration is resolved, and by the method)."""
        for name in ("nz", "batch_size", "sample_chunk", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)!r}.")


class GMMN(GeneratorMethod):
    """GMMN (Li, Swersky & Zemel 2015): an MLP generator trained by a fixed-kernel MMD to the data.

    Official MNIST defaults: z ~ U[-1, 1]^10, MLP 64-256-256-1024, sigmoid output, Gaussian mixture with
    *variances* 2..80 on [0, 1] pixels, loss sqrt(biased MMD^2), batches of 1,000, SGD lr 2 / momentum 0.9 (0.2 /
    0.99 from step 10,000). Details: docs/baselines.md."""

    Config = GMMNConfig

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """``paper``: the official MNIST settings (40k steps), bandwidths scaled to the data dimension for the other
        image sets; ``cpu-quick``: batch 256 (digits: Adam 1e-3, no lr drop). Toys: an MLP with Adam, bandwidths in
        model units. Codes of a latent space (``latent:<data set>``, docs/latent.md): the toy MLP with ``nz = 16``,
        batches of 512 and a mixture of variances 0.5 to 128 for unit-variance codes of 8 to 32 dimensions."""
        if dataset.startswith("latent:"):
            # measured on MNIST (conv autoencoder, 16-d codes, 3,000 steps): KID 0.095, FID 4.2 (lenet-mnist);
            # the toy preset's variances (0.0003 to 3) gave KID 1.46 there
            return {
                "nz": 16, "hidden": [256, 256, 256], "batch_size": 512, "optimizer": "adam", "lr": 1e-3,
                "lr_drop_step": 0, "run": {"steps": 3000},
                "kernel": {"name": "rbf", "sigmas": [0.5, 2.0, 8.0, 32.0, 128.0], "convention": "variance"},
            }
        fam = family(dataset)
        if fam is None:
            return {}
        if fam == "toy":
            return {
                "nz": 2, "hidden": [128, 128, 128], "batch_size": 256 if variant == "cpu-quick" else 1000,
                "kernel": {"name": "rbf", "sigmas": [0.0003, 0.003, 0.03, 0.3, 3.0], "convention": "variance"},
                "optimizer": "adam", "lr": 3e-3, "lr_drop_step": 0,
            }
        out: dict[str, Any] = {"kernel": {"name": "rbf", "sigmas": _IMAGE_VARIANCES[fam], "convention": "variance"}}
        if variant == "paper":
            out["run"] = {"steps": 40_000}
        else:
            out["batch_size"] = 256
            if fam == "digits":
                # The official SGD (lr 2, momentum 0.9) diverges on 8x8 digits after 12-19k steps at batch 256,
                # with or without the lr drop; Adam 1e-3 stays stable (docs/baselines.md, "Measured").
                out.update(optimizer="adam", lr=1e-3, lr_drop_step=0)
        return out

    def __init__(self, config: GMMNConfig, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device, components=components)
        self.kernel = self.components["kernel"]
        #: the loss's divergence (``divergence``) on the kernel (``kernel``)
        self.divergence = self.components["divergence"].with_kernel(self.kernel)
        self.G = self.build_generator().to(self.device)
        self.opt = self._optimizer(self.G.parameters())

    # -- hooks a subclass (gmmn-ae) overrides -----------------------------------------------------------------------
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one generator output (data shape here, a code in ``gmmn-ae``)."""
        return self.shape

    def build_generator(self) -> nn.Module:
        """``[N, nz] -> [N, *output_shape]``: sigmoid output for images ([0, 1] pixels), linear for points."""
        c, shape = self.config, self.output_shape()
        out_act = "sigmoid" if self.kind == "image" else "none"
        if c.generator == "dcgan":
            return DCGANDecoder(c.nz, shape, ngf=c.ngf, out_activation=out_act)
        return MLP(c.nz, math.prod(shape), c.hidden, c.activation, out_act, out_shape=shape)

    def data_features(self, x: Tensor) -> Tensor:
        """Kernel inputs ``[N, D]`` of data ``x`` (model units): ``[0, 1]`` pixels for images."""
        x = (x + 1) / 2 if self.kind == "image" else x
        return x.reshape(len(x), -1)

    def generated_features(self, out: Tensor) -> Tensor:
        """Kernel inputs ``[N, D]`` of generator outputs."""
        return out.reshape(len(out), -1)

    def to_samples(self, out: Tensor) -> Tensor:
        """Generator outputs -> samples in model units (``2 p - 1`` for images)."""
        return out * 2 - 1 if self.kind == "image" else out

    # -- training ---------------------------------------------------------------------------------------------------
    def _optimizer(self, params: Any) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum)
        return torch.optim.Adam(params, lr=c.lr)

    def _set_schedule(self, gmmn_step: int) -> None:
        """lr and momentum as a function of the step alone (so resuming is exact)."""
        c = self.config
        late = c.lr_drop_step > 0 and gmmn_step >= c.lr_drop_step
        for group in self.opt.param_groups:
            group["lr"] = c.lr_after if late else c.lr
            if "momentum" in group:
                group["momentum"] = c.momentum_after if late else c.momentum

    def loss(self, fx: Tensor, fy: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss, MMD^2)`` for kernel inputs of data ``fx`` and of generated samples ``fy`` (``MMD^2``: the
        divergence's estimate)."""
        m2 = self.divergence.estimate(fx, fy)
        return (safe_sqrt(m2) if self.config.sqrt_loss else m2), m2

    def target_features(self, generator: torch.Generator) -> Tensor:
        """Kernel inputs of one data minibatch (no gradient)."""
        with torch.no_grad():
            return self.data_features(self.real_batch(generator, self.config.batch_size))

    def gmmn_step(self, gmmn_step: int, generator: torch.Generator) -> dict[str, float]:
        """One generator step on the MMD loss; ``gmmn_step`` counts steps of this phase (for the lr drop)."""
        c = self.config
        self._set_schedule(gmmn_step)
        fx = self.target_features(generator)
        fy = self.generated_features(self.G(self.latent(generator, c.batch_size)))
        loss, m2 = self.loss(fx, fy)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), "mmd2": float(m2.detach()), "lr": float(self.opt.param_groups[0]["lr"])}

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """One generator step. Logs ``loss`` (sqrt(MMD^2) or MMD^2), ``mmd2`` and ``lr``."""
        return self.gmmn_step(step, generator)

    # -- sampling ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, out: Tensor) -> Tensor:
        """Generator outputs -> samples ``[N, *S]`` in model units (overridden by ``gmmn-ae``)."""
        return self.to_samples(out)

    def generate(self, z: Tensor) -> Tensor:
        """Samples from latent codes: the generator's outputs through :meth:`decode` (sampling is
        :meth:`gflowzoo.api.GeneratorMethod.sample`: chunked, networks in eval mode)."""
        return self.decode(self.G(z))

    # -- state ------------------------------------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """Generator and optimiser."""
        return {"generator": self.G, "opt": self.opt}
