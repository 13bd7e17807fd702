"""A tiny test-only method, "fit-gaussian", and the plugin that registers it.

``FitGaussian`` learns a per-pixel mean and log standard deviation of the data with Adam (maximum likelihood on
mini-batches) and samples ``N(mean, std^2)``. Every random number comes from the trainer's generator, so a run is
deterministic. ``Config.kernel`` is a component field (unused by the maths) so that tests exercise component specs;
``nan_at`` makes the loss NaN from that step on (1-based), to test divergence handling; ``sleep`` slows each step
down (seconds), to test Ctrl-C.

Used in-process with ``temporary_plugin(helpers_method, "fit-gaussian-plugin")`` and, for subprocess tests, as an
entry-point plugin found through a fake ``*.dist-info`` (see ``conftest``-free helpers in ``test_trainer.py``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from gflowzoo.config import component
from gflowzoo.hookspecs import hookimpl
from gflowzoo.interfaces import Method

PLUGIN_NAME = "fit-gaussian-plugin"


@dataclasses.dataclass
class FitGaussianConfig:
    """Options of ``fit-gaussian``."""

    lr: float = 0.05
    batch_size: int = 64
    init_std: float = 1.0
    kernel: Any = component("kernel", "rbf")
    nan_at: int = 0
    sleep: float = 0.0
    tags: list[str] = dataclasses.field(default_factory=lambda: ["a", "b"])


class FitGaussian(Method):
    """Fit ``N(mean, diag(std^2))`` to the data by maximum likelihood; samples are ``[n, *S]``."""

    Config = FitGaussianConfig

    def __init__(self, config: FitGaussianConfig, data: Any, device: torch.device | str = "cpu") -> None:
        super().__init__(config, data, device)
        shape = tuple(data.shape)
        self.mean = torch.zeros(shape, device=self.device, requires_grad=True)
        self.log_std = torch.full(shape, float(torch.tensor(config.init_std).log()), device=self.device,
                                  requires_grad=True)
        self.opt = torch.optim.Adam([self.mean, self.log_std], lr=config.lr)

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        return {"batch_size": 32} if variant == "cpu-quick" else {}

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        if self.config.sleep:
            time.sleep(self.config.sleep)
        x = self.data.train.sample(self.config.batch_size, generator).to(self.device)
        z = (x - self.mean) / self.log_std.exp()
        loss = (0.5 * z.square() + self.log_std).mean()
        if self.config.nan_at and step + 1 >= self.config.nan_at:
            loss = loss * float("nan")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        eps = torch.randn((n, *self.mean.shape), generator=generator)
        with torch.no_grad():
            return (self.mean.cpu() + self.log_std.exp().cpu() * eps).detach()

    def sampling_info(self) -> dict[str, Any]:
        return {"nfe": 1}

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.detach().clone(), "log_std": self.log_std.detach().clone(),
                "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.mean.copy_(state["mean"])
            self.log_std.copy_(state["log_std"])
        self.opt.load_state_dict(state["opt"])


@hookimpl
def gflowzoo_register(register):
    register("method", "fit-gaussian", FitGaussian, "test-only: fit a diagonal Gaussian by maximum likelihood")
