"""``mmdflow``: the fixed-kernel MMD gradient flow with noise injection (Arbel, Korba, Salim & Gretton 2019), as the
image-space baseline of notes/baselines.md section 6.4. Nothing is trained.

Particles ``X`` ``[N, *S]`` start from ``N(0, I)`` and move towards ``n_data`` fixed data samples ``Y``::

    X <- X + gamma * grad_z f(X + beta_n U),   f(z) = mean_m k(z, Y_m) - mean_j k(z, X_j)   (X_j kept clean)

with ``k`` a kernel on flattened pixels (default: a Gaussian mixture) and the injected noise level
``beta_n = beta * noise_decay^floor(n / noise_every)`` (the integrator's ``beta`` times the decaying ``scale``).
The witness is the ``divergence`` component's (``mmd``: :func:`gflowzoo.divergences.witness`) on the ``kernel``
component, so any registered divergence gives its own flow; its gradient comes from one autograd call per step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gflowzoo.api import DataError, Method, UserError

from .config import MMDFlowConfig
from .presets import mmdflow_preset

__all__ = ["MMDFlow"]


class MMDFlow(Method):
    """Fixed-kernel MMD flow with noise injection (no training). ``sample(n)`` draws ``ceil(n / particles)``
    independent batches of interacting particles and returns ``[n, *S]`` (CPU)."""

    Config = MMDFlowConfig
    trainable = False

    def __init__(self, config: MMDFlowConfig, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device)
        config.validate()
        from gflowzoo.api import given_components

        components = given_components(config, components)
        self.kernel = components["kernel"]
        #: the flow's divergence (``divergence``) on the kernel (``kernel``): particles ascend its witness
        self.divergence = components["divergence"].with_kernel(self.kernel)
        self.integrator = components["integrator"]
        self.shape = tuple(int(s) for s in data.shape)
        self.ref = torch.empty(0)
        self.ref_seed = -1

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """Kernel widths scaled to the data dimension, particle and data budgets."""
        return mmdflow_preset(dataset, variant)

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """Nothing to train (``trainable = False``); never called by the trainer."""
        return {"loss": 0.0}

    def finalize(self, generator: torch.Generator) -> None:
        """Pick the fixed data samples (seed ``data_seed``) so that they are stored in the checkpoint."""
        self._reference()

    def _reference(self) -> Tensor:
        c = self.config
        if self.ref.shape[0] == c.n_data and self.ref_seed == c.data_seed:
            return self.ref
        try:
            ds = self.data.train
        except UserError as exc:
            raise DataError(
                f"mmdflow needs {c.n_data} data samples (data_seed {c.data_seed}) to sample: {exc}"
            ) from None
        g = torch.Generator().manual_seed(c.data_seed)
        idx = torch.randperm(len(ds), generator=g)[: c.n_data]
        self.ref, self.ref_seed = ds.get(idx).float(), c.data_seed
        return self.ref

    def sampling_info(self) -> dict[str, Any]:
        """``nfe`` (kernel-gradient evaluations per particle = steps), ``particles``, ``n_data``."""
        c = self.config
        return {"nfe": c.steps, "particles": c.particles, "n_data": c.n_data}

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` samples ``[n, *S]`` on the CPU."""
        c = self.config
        y = self._reference().to(self.device).flatten(1)
        out = []
        for _ in range(math.ceil(n / c.particles)):
            z = torch.randn((c.particles, *self.shape), generator=generator).to(self.device)
            for step in range(c.steps):
                scale = c.noise_decay ** (step // c.noise_every)
                current = z.detach().flatten(1)

                def velocity(z_eval: Tensor, current: Tensor = current) -> Tensor:
                    with torch.enable_grad():
                        zz = z_eval.detach().requires_grad_(True)
                        w = self.divergence.witness(zz.flatten(1), y, current)
                        (grad,) = torch.autograd.grad(w.sum(), zz)
                    return grad

                z = self.integrator.step(z, velocity, c.step_size, scale=scale, generator=generator).detach()
            out.append(z.cpu())
        x = torch.cat(out)[:n]
        if c.clamp_output and self.data.kind == "image":
            x = x.clamp(-1.0, 1.0)
        return x

    def state_dict(self) -> dict[str, Any]:
        """The fixed data samples (``[n_data, *S]``, empty before :meth:`finalize`) and their seed."""
        return {"ref": self.ref.clone(), "ref_seed": int(self.ref_seed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.ref = state["ref"].clone().float()
        self.ref_seed = int(state["ref_seed"])
