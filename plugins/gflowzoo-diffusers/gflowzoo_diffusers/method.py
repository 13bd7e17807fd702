"""The ``ddpm`` method: a reference denoising diffusion model to compare gflowzoo's methods against at equal NFE.

Training (Ho et al. 2020, "simple" loss): draw ``x_0`` from the data, a step ``k ~ U{0 .. T-1}`` and
``eps ~ N(0, I)``; minimise ``|| eps_theta(sqrt(abar_k) x_0 + sqrt(1 - abar_k) eps, k) - eps ||^2`` (mean over
elements) with Adam, linear learning-rate warm-up, gradient clipping and an exponential moving average (EMA) of the
weights. Sampling uses the EMA weights with diffusers' DDPM (ancestral) or DDIM scheduler for ``sampler.steps``
steps: one network evaluation per step, so NFE = ``sampler.steps``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gflowzoo.api import ConfigError, Method, component

from . import presets
from .hub import diffusers_object, local_pretrained_folder
from .sampling import make_scheduler, reverse_diffusion


@dataclasses.dataclass
class NetConfig:
    """The noise predictor ``eps_theta``.

    ``kind``: ``"unet"`` (diffusers ``UNet2DModel``, images), ``"mlp"`` (:class:`~gflowzoo_diffusers.mlp.TimeMLP`
    on flattened samples) or ``"auto"`` (U-Net for images, MLP for points). ``size``, ``dropout`` and
    ``pretrained`` (a local ``save_pretrained`` folder) configure the U-Net; ``width`` and ``depth`` the MLP.
    """

    kind: Literal["auto", "unet", "mlp"] = "auto"
    size: Literal["tiny", "small", "ddpm", "ddpm64"] = "tiny"
    dropout: float = 0.0
    pretrained: str = ""
    width: int = 256
    depth: int = 3


@dataclasses.dataclass
class SamplerConfig:
    """The reverse process. ``kind``: ``"ddim"`` (deterministic when ``eta = 0``) or ``"ddpm"`` (ancestral);
    ``steps``: number of reverse steps = NFE; ``spacing``: diffusers' ``timestep_spacing``; ``clip``: clamp the
    predicted ``x_0`` to ``[-1, 1]`` (images only; never applied to points); ``batch``: samples per network call."""

    kind: Literal["ddim", "ddpm"] = "ddim"
    steps: int = 50
    eta: float = 0.0
    spacing: Literal["leading", "trailing", "linspace"] = "leading"
    clip: bool = True
    batch: int = 256


@dataclasses.dataclass
class DDPMConfig:
    """Options of the ``ddpm`` method.

    ``schedule`` is any registered variance-preserving schedule: a ``diffusers-*`` schedule is used exactly (its
    own ``T`` and betas); any other one is discretised at ``t_k = (k + 1) / timesteps``.
    """

    schedule: Any = component("schedule", "diffusers-linear")
    timesteps: int = 1000
    net: NetConfig = dataclasses.field(default_factory=NetConfig)
    lr: float = 2e-4
    batch_size: int = 128
    warmup: int = 0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)

    def validate(self) -> None:
        """Checks of values no type expresses (called by :func:`gflowzoo.config.build`, so a bad ``--set`` fails
        when the configuration is resolved, and by the method)."""
        for name, value, low in (("batch_size", self.batch_size, 1), ("sampler.steps", self.sampler.steps, 1),
                                 ("sampler.batch", self.sampler.batch, 1), ("warmup", self.warmup, 0)):
            if value < low:
                raise ConfigError(f"{name} must be >= {low}; got {value}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1); got {self.ema_decay}.")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0; got {self.lr}.")
        if self.sampler.eta < 0:
            raise ConfigError(f"sampler.eta must be >= 0; got {self.sampler.eta}.")


class _Flat(nn.Module):
    """Runs a vector model on ``[N, *S]`` samples by flattening them."""

    def __init__(self, inner: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.inner, self.shape = inner, tuple(shape)

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        return self.inner(x.flatten(1), timesteps).view(x.shape[0], *self.shape)


def _discrete_betas(schedule: Any, timesteps: int) -> dict[str, Any]:
    """diffusers scheduler arguments reproducing ``schedule``'s discrete chain."""
    kwargs = getattr(schedule, "scheduler_kwargs", None)
    if callable(kwargs):
        return kwargs()
    if timesteps < 2:
        raise ConfigError(f"timesteps must be >= 2; got {timesteps}.")
    t = (torch.arange(timesteps, dtype=torch.float64) + 1) / timesteps
    alpha, sigma = schedule.alpha(t).double(), schedule.sigma(t).double()
    if not torch.allclose(alpha**2 + sigma**2, torch.ones_like(t), atol=1e-4):
        raise ConfigError(
            "ddpm needs a variance-preserving schedule (alpha^2 + sigma^2 = 1); use diffusers-linear, "
            "diffusers-cosine, vp-linear or vp-cosine."
        )
    abar = (alpha**2).clamp(1e-12, 1.0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    betas = (1 - abar / prev).clamp(1e-8, 0.999)
    return {"num_train_timesteps": timesteps, "trained_betas": betas.tolist()}


class DDPM(Method):
    """Denoising diffusion probabilistic model (Ho et al. 2020) with DDPM and DDIM (Song et al. 2021) samplers.

    Data: images ``[N, C, H, W]`` in ``[-1, 1]`` (U-Net) or points ``[N, d]`` (MLP). ``sample(n)`` returns
    ``[n, *S]`` on the CPU, drawn with the EMA weights; ``sampling_info()`` reports ``nfe = sampler.steps``.
    """

    Config = DDPMConfig

    def __init__(self, config: DDPMConfig, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device)
        cfg = config
        self.shape = tuple(int(s) for s in data.shape)
        self.kind = data.kind
        cfg.validate()

        if cfg.net.kind != "mlp":
            local_pretrained_folder(cfg.net.pretrained, "net")  # a hub id fails here, before diffusers is imported

        from gflowzoo.api import given_components

        components = given_components(cfg, components)
        self.schedule = components["schedule"]
        self.betas = _discrete_betas(self.schedule, cfg.timesteps)
        DDPMScheduler = diffusers_object("diffusers.schedulers.scheduling_ddpm", "DDPMScheduler")
        reference = DDPMScheduler(**self.betas)
        self.T = int(reference.config.num_train_timesteps)
        if cfg.sampler.steps > self.T:
            raise ConfigError(f"sampler.steps ({cfg.sampler.steps}) cannot exceed the schedule's {self.T} timesteps.")
        #: ``[T]`` float32 on the device: abar_k used for training (the sampler's own table, by construction).
        self.abar = reference.alphas_cumprod.to(torch.float32).to(self.device)

        self.net = self._build_net().to(self.device)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)

    # -- construction ------------------------------------------------------------------------------------------
    def _build_net(self) -> nn.Module:
        net = self.config.net
        kind = net.kind
        if kind == "auto":
            kind = "unet" if self.kind == "image" else "mlp"
        if kind == "unet":
            from .unets import ImageUNet

            if self.kind != "image" or len(self.shape) != 3:
                raise ConfigError(f"net.kind = 'unet' needs image data; {self.data.name!r} has samples {self.shape}.")
            return ImageUNet(self.shape, size=net.size, dropout=net.dropout, pretrained=net.pretrained)
        from .mlp import TimeMLP

        if net.pretrained:
            raise ConfigError("net.pretrained applies to the U-Net only; clear it or use net.kind = 'unet'.")
        return _Flat(TimeMLP(math.prod(self.shape), width=net.width, depth=net.depth), self.shape)

    # -- training ----------------------------------------------------------------------------------------------
    def _lr(self, step: int) -> float:
        cfg = self.config
        return cfg.lr * min(1.0, (step + 1) / cfg.warmup) if cfg.warmup > 0 else cfg.lr

    def _ema_decay(self, step: int) -> float:
        cfg = self.config
        return min(cfg.ema_decay, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema_decay

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """One Adam step on the epsilon-prediction loss. Randomness (in order): the batch, the steps ``k`` and the
        noise, all from ``generator``; dropout (if any) uses torch's global generator, which checkpoints save."""
        cfg = self.config
        x0 = self.data.train.sample(cfg.batch_size, generator).to(self.device)
        k = torch.randint(self.T, (cfg.batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        abar = self.abar[k.to(self.device)].view(-1, *([1] * (x0.ndim - 1)))
        xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        self.net.train()
        loss = F.mse_loss(self.net(xt, k.to(self.device, torch.float32)), noise)
        lr = self._lr(step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        logs = {"loss": float(loss.detach()), "lr": lr}
        if cfg.grad_clip > 0:
            logs["grad_norm"] = float(nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip))
        self.opt.step()
        self._update_ema(self._ema_decay(step))
        return logs

    @torch.no_grad()
    def _update_ema(self, decay: float) -> None:
        for e, p in zip(self.ema.parameters(), self.net.parameters()):
            e.lerp_(p, 1.0 - decay)
        for e, b in zip(self.ema.buffers(), self.net.buffers()):
            e.copy_(b)

    # -- sampling ----------------------------------------------------------------------------------------------
    def _scheduler(self) -> Any:
        s = self.config.sampler
        clip = s.clip and self.kind == "image"
        return make_scheduler(s.kind, self.betas, clip, s.spacing)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` samples ``[n, *S]`` (CPU, model units) from the EMA network, ``sampler.batch`` at a time."""
        s = self.config.sampler
        scheduler = self._scheduler()
        self.ema.eval()
        out = []
        for start in range(0, n, s.batch):
            m = min(s.batch, n - start)
            x = reverse_diffusion(self.ema, scheduler, s.kind, s.steps, self.shape, m, generator, self.device, s.eta)
            out.append(x.float().cpu())
        return torch.cat(out) if out else torch.zeros(0, *self.shape)

    def sampling_info(self) -> dict[str, Any]:
        """``nfe`` (network evaluations per sample), sampler kind, steps, eta and timestep spacing."""
        s = self.config.sampler
        info: dict[str, Any] = {"nfe": s.steps, "sampler": s.kind, "steps": s.steps, "spacing": s.spacing}
        if s.kind == "ddim":
            info["eta"] = s.eta
        return info

    # -- presets and state -------------------------------------------------------------------------------------
    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """See :mod:`gflowzoo_diffusers.presets`."""
        return presets.preset(dataset, variant)

    def state_dict(self) -> dict[str, Any]:
        """Network, EMA network and optimiser state (tensors and plain data)."""
        return {"net": self.net.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        if "opt" in state:
            self.opt.load_state_dict(state["opt"])
