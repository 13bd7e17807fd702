"""``sliced-mmdflow``: the generative sliced MMD flow with the Riesz kernel (Hertrich, Wald, Altekrueger & Hagemann,
ICLR 2024), as a particle method of the zoo. See docs/sliced-mmdflow.md.

``N`` particles start from noise and move towards ``M`` fixed data samples along the negative gradient of
``MMD^2 / 2`` for ``K(a, b) = -||a - b||``, estimated from ``P`` fresh random directions per step by sorting
(:mod:`.slicing`), with heavy-ball momentum::

    v <- grad_x (MMD^2 / 2) + m_k v,        x <- x - tau * N * v

(the factor ``N`` makes the per-particle gradient, which is ``O(1/N)``, a velocity of order one, as in the paper).
**Training is the flow**: one trainer step is one flow step of the whole particle system; checkpoints hold the
particles, the momentum buffer and the indices of the data samples, so ``--resume`` continues bit for bit.

Images may follow a **pyramid** (``down_factors``): the flow runs on ``avg_pool``-downsampled data first; at each
change of stage the particles are upsampled (nearest neighbour) and get a little Gaussian noise
(``upsample_noise``). At the last stage the directions may be **local** (``patch_size`` > 0): each step projects
``C x p x p`` patches at ``patch_locations`` random positions (periodic boundary) instead of whole images.

**Sampling** returns the trained particles (a random subset of ``n``, at full resolution). For ``n`` larger than
``particles`` it runs fresh particle systems of ``particles`` each, from new noise, for as many steps as were
trained (so the extra samples cost a whole training run per chunk). The paper's networks that learn stretches of
the flow (so that new samples need no particle system) are not implemented.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from gflowzoo.api import ConfigError, DataError, Method, UserError

from .slicing import random_directions, sliced_mmd_grad

__all__ = ["SlicedMMDFlow", "SlicedMMDFlowConfig", "sliced_preset"]


@dataclass
class SlicedMMDFlowConfig:
    """Options of ``sliced-mmdflow`` (docs/sliced-mmdflow.md has the table and which values are reconstructions)."""

    #: N: particles moved by training (and the chunk size of fresh flows when more samples are asked for).
    particles: int = 2000
    #: M: fixed data samples (drawn once with ``data_seed``; capped at the training split's size).
    n_data: int = 2000
    data_seed: int = 0
    #: P: random directions per step (fresh every step).
    projections: int = 128
    #: directions projected at once (memory ``~ chunk x (N + M)``); 0: all.
    projection_chunk: int = 64
    #: directions (of the P) whose 1-D MMD values give the logged ``loss``; 0: all (costs about one more gradient).
    loss_projections: int = 16
    #: tau: the step is ``x <- x - tau * N * v``.
    step_size: float = 1.0
    #: heavy-ball momentum m, reached linearly over ``momentum_warmup`` steps (0: from the start).
    momentum: float = 0.0
    momentum_warmup: int = 0
    #: initial particles: ``uniform`` on ``[-init_scale, init_scale]`` or ``normal`` with std ``init_scale``.
    init: Literal["uniform", "normal"] = "normal"
    init_scale: float = 1.0
    #: image pyramid: downsampling factor of each stage (decreasing, each a multiple of the next, the last 1).
    down_factors: list[int] = field(default_factory=lambda: [1])
    #: flow steps of every stage but the last (``len(down_factors) - 1`` values); the last stage runs to the end.
    stage_steps: list[int] = field(default_factory=list)
    #: std of the Gaussian noise added to the particles when they are upsampled to the next stage.
    upsample_noise: float = 0.1
    #: side of the local patches projected at the last stage (images only); 0: whole-image directions.
    patch_size: int = 0
    #: patch positions per step (the directions are split evenly between them).
    patch_locations: int = 4
    #: clamp image samples to [-1, 1].
    clamp_output: bool = True

    def validate(self) -> None:
        """Checks of values no type expresses."""
        if (self.particles < 2 or self.n_data < 2 or self.projections < 1 or self.projection_chunk < 0
                or self.loss_projections < 0):
            raise ConfigError("sliced-mmdflow: particles and n_data must be >= 2, projections >= 1, "
                              "projection_chunk and loss_projections >= 0.")
        if not self.step_size > 0 or not 0 <= self.momentum < 1 or self.momentum_warmup < 0:
            raise ConfigError("sliced-mmdflow: step_size must be > 0, momentum in [0, 1), momentum_warmup >= 0.")
        if not self.init_scale > 0 or self.upsample_noise < 0 or self.patch_size < 0 or self.patch_locations < 1:
            raise ConfigError("sliced-mmdflow: init_scale must be > 0, upsample_noise >= 0, patch_size >= 0, "
                              "patch_locations >= 1.")
        f = list(self.down_factors)
        if not f or f[-1] != 1 or any(a < 1 for a in f) or any(a <= b or a % b for a, b in zip(f, f[1:])):
            raise ConfigError(f"sliced-mmdflow: down_factors must decrease to 1, each a multiple of the next "
                              f"(e.g. [4, 2, 1]); got {f}.")
        if len(self.stage_steps) != len(f) - 1 or any(s < 0 for s in self.stage_steps):
            raise ConfigError(f"sliced-mmdflow: stage_steps needs {len(f) - 1} values >= 0 (the steps of every "
                              f"stage of down_factors={f} but the last); got {list(self.stage_steps)}.")


#: cpu-quick presets: (particles = n_data, projections, steps, step_size, down_factors, stage_steps).
_IMAGE_PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"particles": 2000, "n_data": 2000, "projections": 256, "down_factors": [2, 1], "stage_steps": [200],
               "init": "uniform", "run": {"steps": 1000}},
    "mnist": {"particles": 20000, "n_data": 20000, "projections": 128, "down_factors": [4, 2, 1],
              "stage_steps": [100, 200], "init": "uniform", "run": {"steps": 600}},
    "cifar10": {"particles": 10000, "n_data": 10000, "projections": 256, "down_factors": [8, 4, 2, 1],
                "stage_steps": [150, 150, 200], "init": "uniform", "patch_size": 7, "run": {"steps": 1000}},
}
_IMAGE_PRESETS["fashion-mnist"] = _IMAGE_PRESETS["mnist"]


def sliced_preset(dataset: str, variant: str) -> dict[str, Any]:
    """Config overrides per data set (``paper``: the paper's particle and direction counts, for a GPU)."""
    if variant not in ("paper", "cpu-quick"):
        return {}
    paper = variant == "paper"
    common = {"run": {"log_every": 50, "checkpoint_every": 500}}
    if dataset.startswith("toy-") or dataset.startswith("latent:"):
        out = {"particles": 5000, "n_data": 5000, "projections": 64, "step_size": 1.0,
               "run": {"steps": 300 if not dataset.startswith("latent:") else 600}}
        if dataset.startswith("latent:"):
            out["projections"] = 256
        return _merge(common, out)
    if dataset not in _IMAGE_PRESETS:
        return {}
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _IMAGE_PRESETS[dataset].items()}
    out.update({"momentum": 0.8, "momentum_warmup": 100})
    if dataset == "digits" and not paper:
        # 2,000 particles on 1,500 training digits: with momentum the flow reaches the data's atoms within the
        # preset's 1,000 steps (KID 0.039 but 10.2 % near-copies, nn_ratio 0.93); without, 0.107 and 0.9 % (real
        # test digits: 1 %). A preset must not copy: momentum 0 (docs/sliced-mmdflow.md)
        out.update({"momentum": 0.0, "momentum_warmup": 0})
    if paper:
        out.update({"particles": 30000, "n_data": 30000, "projections": 1000, "momentum": 0.8,
                    "momentum_warmup": 2000})
        out["run"] = {"steps": 20000}
    return _merge(common, out)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class _Flow:
    """One particle system: positions ``x`` ``[N, *S_stage]`` at the current stage's resolution, momentum ``v``
    (same shape), the stage index and the steps taken."""

    x: Tensor
    v: Tensor
    stage: int = 0
    step: int = 0


class SlicedMMDFlow(Method):
    """Sliced Riesz-kernel MMD particle flow (Hertrich et al., ICLR 2024); gradients by sorting, no Gram matrix.

    Training IS the flow: each step moves all ``particles`` particles (checkpointed). Sampling needs the particle
    system, since no network is trained to reproduce the flow: ``sample --n`` up to ``particles`` returns trained
    particles; beyond that, fresh particle systems of ``particles`` each run for the trained number of steps (each
    chunk costs as much as the training run). See docs/sliced-mmdflow.md.
    """

    Config = SlicedMMDFlowConfig
    trainable = True
    #: each sort needs every particle and every data point: several processes would have to gather them all each
    #: step, so multi-process training is refused (see ``__init__``).
    supports_distributed = False

    def __init__(self, config: SlicedMMDFlowConfig, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device)
        config.validate()
        from gflowzoo.api import distributed

        if distributed.world() > 1:
            raise UserError(
                "sliced-mmdflow cannot run in several processes: every step sorts the projections of all particles "
                "and data together. Run it in one process (without torchrun); one GPU handles N = M = 60,000."
            )
        self.shape = tuple(int(s) for s in data.shape)
        self.is_image = data.kind == "image" and len(self.shape) == 3
        if not self.is_image and (len(config.down_factors) > 1 or config.patch_size > 0):
            raise ConfigError("sliced-mmdflow: down_factors and patch_size apply to images only; use "
                              "down_factors=[1] and patch_size=0 for points.")
        if self.is_image:
            h, w = self.shape[1:]
            f0 = config.down_factors[0]
            if h % f0 or w % f0:
                raise ConfigError(f"sliced-mmdflow: the image side {h}x{w} is not divisible by the largest down "
                                  f"factor {f0}; choose down_factors that divide it.")
            if config.patch_size > min(h, w):
                raise ConfigError(f"sliced-mmdflow: patch_size {config.patch_size} exceeds the image side {h}x{w}.")
        self.bounds = [int(b) for b in itertools.accumulate(config.stage_steps)]  # stage k ends at bounds[k]
        self.flow: _Flow | None = None
        self.idx = torch.empty(0, dtype=torch.long)  # indices of the M data samples in the training split
        self._ref: Tensor | None = None
        self._ref_stage: dict[int, Tensor] = {}

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """Particle, direction and step budgets per data set (docs/sliced-mmdflow.md)."""
        return sliced_preset(dataset, variant)

    # -- data ------------------------------------------------------------------------------------------------------

    def _reference(self) -> Tensor:
        """The M fixed data samples ``[M, *S]`` (picked once by ``data_seed``; their indices are checkpointed)."""
        if self._ref is not None:
            return self._ref
        c = self.config
        try:
            ds = self.data.train
        except UserError as exc:
            raise DataError(f"sliced-mmdflow needs its {c.n_data} data samples to move particles: {exc}") from None
        if self.idx.numel() == 0:
            g = torch.Generator().manual_seed(c.data_seed)
            self.idx = torch.randperm(len(ds), generator=g)[: min(c.n_data, len(ds))]
        self._ref = ds.get(self.idx).float().to(self.device)
        return self._ref

    def _data_at(self, stage: int) -> Tensor:
        """Data flattened at the resolution of ``stage``: ``[M, d_stage]``."""
        if stage not in self._ref_stage:
            y = self._reference()
            f = self.config.down_factors[stage]
            if self.is_image and f > 1:
                y = F.avg_pool2d(y, f)
            self._ref_stage = {stage: y.reshape(y.shape[0], -1).contiguous()}
        return self._ref_stage[stage]

    def _stage_shape(self, stage: int) -> tuple[int, ...]:
        if not self.is_image:
            return self.shape
        f = self.config.down_factors[stage]
        return (self.shape[0], self.shape[1] // f, self.shape[2] // f)

    def _stage_of(self, step: int) -> int:
        for k, b in enumerate(self.bounds):
            if step < b:
                return k
        return len(self.bounds)

    # -- the flow --------------------------------------------------------------------------------------------------

    def _new_flow(self, n: int, generator: torch.Generator) -> _Flow:
        c = self.config
        shape = (n, *self._stage_shape(0))
        if c.init == "uniform":
            x = (torch.rand(shape, generator=generator) * 2 - 1) * c.init_scale
        else:
            x = torch.randn(shape, generator=generator) * c.init_scale
        x = x.to(self.device)
        return _Flow(x=x, v=torch.zeros_like(x))

    def _upsample(self, x: Tensor, ratio: int, generator: torch.Generator) -> Tensor:
        x = x.repeat_interleave(ratio, dim=2).repeat_interleave(ratio, dim=3)
        if self.config.upsample_noise > 0:
            x = x + self.config.upsample_noise * torch.randn(x.shape, generator=generator).to(x.device)
        return x

    def _patch_indices(self, stage_shape: tuple[int, ...], generator: torch.Generator) -> list[Tensor]:
        """Flat pixel indices ``[C p^2]`` of ``patch_locations`` random patches (periodic boundary)."""
        ch, h, w = stage_shape
        p = self.config.patch_size
        out = []
        for _ in range(self.config.patch_locations):
            i0, j0 = (int(v) for v in torch.randint(0, max(h, w), (2,), generator=generator))
            rows = (i0 % h + torch.arange(p)) % h
            cols = (j0 % w + torch.arange(p)) % w
            flat = torch.arange(ch)[:, None, None] * (h * w) + rows[None, :, None] * w + cols[None, None, :]
            out.append(flat.reshape(-1).to(self.device))
        return out

    def _gradient(self, x: Tensor, y: Tensor, stage: int, generator: torch.Generator) -> tuple[Tensor, float]:
        """Sliced ``grad_x (MMD^2 / 2)`` ``[N, d_stage]`` and the ``MMD^2`` estimate at ``stage``."""
        c = self.config
        last = stage == len(c.down_factors) - 1
        if not (self.is_image and c.patch_size > 0 and last):
            xi = random_directions(c.projections, x.shape[1], generator, x.dtype, x.device)
            return sliced_mmd_grad(x, y, xi, c.projection_chunk, value_projections=c.loss_projections)
        grad = torch.zeros_like(x)
        values = []
        locs = self._patch_indices(self._stage_shape(stage), generator)
        per = max(1, c.projections // len(locs))
        for idx in locs:
            xi = random_directions(per, idx.numel(), generator, x.dtype, x.device)
            g, v = sliced_mmd_grad(x[:, idx], y[:, idx], xi, c.projection_chunk,
                                  value_projections=c.loss_projections)
            grad.index_add_(1, idx, g)
            values.append(v)
        return grad, sum(values) / len(values)

    def _advance(self, flow: _Flow, generator: torch.Generator) -> dict[str, float]:
        """One flow step of ``flow`` (in place)."""
        c = self.config
        stage = self._stage_of(flow.step)
        while flow.stage < stage:  # entering the next stage: upsample
            ratio = c.down_factors[flow.stage] // c.down_factors[flow.stage + 1]
            flow.x = self._upsample(flow.x, ratio, generator)
            flow.v = torch.zeros_like(flow.x)
            flow.stage += 1
        n = flow.x.shape[0]
        x = flow.x.reshape(n, -1)
        grad, mmd2 = self._gradient(x, self._data_at(stage), stage, generator)
        m = c.momentum if c.momentum_warmup <= 0 else c.momentum * min(1.0, flow.step / c.momentum_warmup)
        v = grad + m * flow.v.reshape(n, -1)
        move = c.step_size * n * v
        flow.x = (x - move).reshape(flow.x.shape)
        flow.v = v.reshape(flow.x.shape)
        flow.step += 1
        return {"loss": float(mmd2), "stage": float(stage), "momentum": float(m),
                "move": float(move.norm(dim=1).mean())}

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """One flow step of the particle system (the particles are drawn from ``generator`` at step 0). ``loss`` is
        the sliced estimate of the Riesz ``MMD^2`` (energy distance) between particles and data before the step."""
        if self.flow is None:
            self.flow = self._new_flow(self.config.particles, generator)
        return self._advance(self.flow, generator)

    def _full_resolution(self, flow: _Flow) -> Tensor:
        x = flow.x
        if self.is_image:
            ratio = self.config.down_factors[flow.stage]
            if ratio > 1:
                x = x.repeat_interleave(ratio, dim=2).repeat_interleave(ratio, dim=3)
        return x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` samples ``[n, *S]`` on the CPU: a random subset of the trained particles; beyond ``particles``,
        fresh particle systems of ``particles`` each run for the trained number of steps."""
        c = self.config
        parts = []
        steps = 0 if self.flow is None else self.flow.step
        if self.flow is not None:
            have = self.flow.x.shape[0]
            pick = torch.randperm(have, generator=generator)[: min(n, have)]
            parts.append(self._full_resolution(self.flow)[pick.to(self.device)].cpu())
        remaining = n - sum(p.shape[0] for p in parts)
        while remaining > 0:
            flow = self._new_flow(c.particles, generator)
            for _ in range(steps):
                self._advance(flow, generator)
            parts.append(self._full_resolution(flow)[:remaining].cpu())
            remaining -= parts[-1].shape[0]
        x = torch.cat(parts)[:n].float()
        if c.clamp_output and self.data.kind == "image":
            x = x.clamp(-1.0, 1.0)
        return x

    def sampling_info(self) -> dict[str, Any]:
        """``particles``, ``n_data``, ``steps`` (flow steps a sample has taken), ``projections``."""
        c = self.config
        return {"particles": c.particles, "n_data": c.n_data, "projections": c.projections,
                "steps": 0 if self.flow is None else self.flow.step,
                "new_samples": "fresh particle systems (n > particles)"}

    def state_dict(self) -> dict[str, Any]:
        """Particles, momentum, stage and step of the flow, and the indices of the data samples."""
        out: dict[str, Any] = {"idx": self.idx.clone()}
        if self.flow is not None:
            f = self.flow
            out["flow"] = {"x": f.x.detach().cpu().clone(), "v": f.v.detach().cpu().clone(),
                           "stage": int(f.stage), "step": int(f.step)}
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.idx = state["idx"].clone().long()
        self._ref, self._ref_stage = None, {}
        f = state.get("flow")
        self.flow = None if f is None else _Flow(
            x=f["x"].to(self.device), v=f["v"].to(self.device), stage=int(f["stage"]), step=int(f["step"]))

