"""``moment-mlp``: an MLP generator trained to minimise the MMD to the data with a *fixed* kernel (GMMN-style).

Every random number of a training step comes from the trainer's ``generator``; the initial weights come from the
global torch seed, which the core sets from the run's seed. So training is reproducible and resumable bit for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from gflowzoo.api import MMD, Method, component, given_components


@dataclasses.dataclass
class MomentMLPConfig:
    """Options of ``moment-mlp`` (every field can be set with ``--set name=value``)."""

    latent_dim: int = 8
    hidden: int = 128
    lr: float = 1e-3
    batch_size: int = 256
    #: a registered kernel: a name, or a table with ``name`` and the kernel's options
    kernel: Any = component("kernel", {"name": "laplace", "sigma": 1.0})


class MomentMLP(Method):
    """A generator ``G(z)``, ``z ~ N(0, I)`` ``[N, latent_dim]`` -> samples ``[N, *S]``, trained on
    ``MMD^2(data, G(z))`` (unbiased estimator) with the configured kernel on raw (flattened) samples."""

    Config = MomentMLPConfig

    def __init__(self, config: MomentMLPConfig, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device)
        components = given_components(config, components)  # built without the session: resolved its way
        self.shape = tuple(data.shape)
        dim = 1
        for s in self.shape:
            dim *= s
        self.net = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, dim),
        ).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.mmd = MMD(components["kernel"], estimator="unbiased")  # the kernel the session built

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """Smaller batches for a quick CPU run."""
        return {"batch_size": 128, "hidden": 64} if variant == "cpu-quick" else {}

    def _generate(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        return self.net(z)

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """One Adam step on ``MMD^2(x, G(z))``."""
        x = self.data.train.sample(self.config.batch_size, generator).to(self.device).flatten(1)
        loss = self.mmd.estimate(x, self._generate(self.config.batch_size, generator))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``[n, *S]`` samples on the CPU."""
        return self._generate(n, generator).reshape(n, *self.shape).cpu()

    def sampling_info(self) -> dict[str, Any]:
        return {"nfe": 1}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
