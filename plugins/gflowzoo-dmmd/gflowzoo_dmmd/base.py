"""The shared base of the noise-conditional critics (DMMD and DKALE): the networks, and four pieces it composes,
each in a module of its own:

- :class:`~gflowzoo_dmmd.training.CriticTraining` (``training.py``): batches over G noise levels, the losses, the
  optimiser step with clipping and EMA;
- :class:`~gflowzoo_dmmd.statistics.SamplerStatistics` (``statistics.py``): the sampler's statistics of the data,
  cached per grid and kept in the final checkpoint;
- :class:`~gflowzoo_dmmd.sampler.ParticleSampler` (``sampler.py``): the level plan, the cheap in-training sampler and
  the particle flow (:class:`gflowzoo_dmmd.flow.ParticleFlow`);
- :class:`~gflowzoo_dmmd.diagnostics.CriticDiagnostics` (``diagnostics.py``): per-t-bin logs and ``diagnose``;

and the checkpoint state (``state.py``). Subclasses implement :meth:`NoiseConditionalMethod.group_terms` (the loss
terms per group), :meth:`~NoiseConditionalMethod.make_witness` (the witness used by the flow) and the statistics they
need (:meth:`~NoiseConditionalMethod.compute_stats_from`).
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager
from typing import Any

import torch
from gflowzoo.api import ConfigError, Method
from torch import Tensor, nn

from .backbones import backbone_default_dim
from .diagnostics import CriticDiagnostics
from .flow import Level
from .sampler import CHEAP_LEVELS, ParticleSampler
from .state import critic_state, load_critic_state
from .statistics import SamplerStatistics
from .training import CriticTraining

__all__ = ["CHEAP_LEVELS", "NoiseConditionalMethod"]


class NoiseConditionalMethod(Method):
    """Base class: trains a noise-conditional critic on (clean P, noisy P_t) pairs of distributions and samples
    with a particle flow over a decreasing noise grid. See docs/dmmd.md for every option.

    The work is done by the pieces ``training``, ``statistics``, ``sampler`` and ``diagnostics`` (see the module
    docstring); this class builds the networks, holds the hooks a subclass fills in, and answers the
    :class:`~gflowzoo.interfaces.Method` interface by handing each call to its piece."""

    #: name of the main (maximised) objective in logs: "mmd2" or "kale".
    objective: str = "mmd2"
    #: whether sampling needs statistics of the data (DMMD: mean/reference features; DKALE: none).
    needs_stats: bool = True
    #: multi-process training (torchrun): the batch counts of the config are per rank, every MMD/KALE term uses all
    #: ranks' features (gflowzoo_dmmd/sharded.py, docs/distributed.md).
    supports_distributed: bool = True
    #: the flow term's points get a forward of their own even when they are all the noisy points (tests compare the
    #: two paths; ``flow_samples < n_noisy`` always takes the separate one)
    _separate_flow_forward: bool = False

    def __init__(self, config: Any, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device)
        self._check_config()
        from gflowzoo.api import given_components

        components = given_components(config, components)
        #: the built components of the config (:func:`gflowzoo.api.build_components`), by field path
        self.components = components
        self.shape = tuple(int(s) for s in data.shape)
        self.schedule = components["schedule"]
        self.integrator = components["sampler.integrator"]
        self.accept_components(components)
        make_backbone = components["backbone"]  # a ComponentFactory: in_shape and feature_dim are ours to give
        dim = int(config.feature_dim) or backbone_default_dim(make_backbone.target)
        self.backbone: nn.Module = make_backbone(in_shape=self.shape, feature_dim=dim)
        self.backbone.to(self.device)
        self.feature_dim = int(getattr(self.backbone, "feature_dim", dim))
        self.extra = nn.ModuleDict(self.build_extra(self.feature_dim)).to(self.device)
        self.ema_backbone = copy.deepcopy(self.backbone).eval().requires_grad_(False)
        self.ema_extra = copy.deepcopy(self.extra).eval().requires_grad_(False)
        self.step_count = 0
        self.training = CriticTraining(self)
        self.statistics = SamplerStatistics(self)
        self.sampler = ParticleSampler(self)
        self.diagnostics = CriticDiagnostics(self)

    # ------------------------------------------------------------------------------------------------------------
    # hooks for subclasses
    # ------------------------------------------------------------------------------------------------------------
    def accept_components(self, components: dict[str, Any]) -> None:
        """Take the subclass's own components (a kernel, a divergence) from ``components`` and check that they fit;
        called before :meth:`build_extra`."""

    def build_extra(self, feature_dim: int) -> dict[str, nn.Module]:
        """Extra trainable modules next to the backbone (a learned width, a critic head)."""
        return {}

    def group_terms(self, fx: Tensor, fy: Tensor, fh: Tensor, xh: Tensor, t: Tensor, step: int) -> dict[str, Tensor]:
        """The loss terms of every group (each ``[G]``): the objective (``self.objective``, maximised), ``gp``,
        ``l2`` and ``grad_norm``."""
        raise NotImplementedError

    def linear_unbiased_mmd(self) -> bool:
        """Whether the objective is the unbiased MMD^2 under the linear kernel (several processes then all-reduce
        mean embeddings instead of gathering features)."""
        return False

    def point_witness(self, fz: Tensor, fx: Tensor, fy: Tensor, t: Tensor) -> Tensor:
        """The critic's witness ``[G, k]`` at evaluation features ``fz`` ``[G, k, D]`` of group ``g`` against the
        (detached) clean and noisy feature sets ``fx`` ``[G, n, D]``, ``fy`` ``[G, m, D]`` (the flow term)."""
        raise ConfigError(f"lambda_flow is not supported by {type(self).__name__}.")

    def make_witness(self, plan: list[Level]) -> tuple[Any, Any, Any]:
        """``(witness, particle_source, fixed_source)`` for :class:`~gflowzoo_dmmd.flow.ParticleFlow`."""
        raise NotImplementedError

    def compute_stats_from(self, ds: Any, grid: Tensor) -> dict[str, Any]:
        """Statistics of the data set ``ds`` that the sampler needs on ``grid`` (computed with the sampling
        network); none by default."""
        return {}

    def stored_stats(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The part of the statistics a checkpoint stores (all of them by default; a subclass may leave out what
        :meth:`restored_stats` can recompute without the data)."""
        return stats

    def restored_stats(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The statistics with whatever :meth:`stored_stats` left out recomputed (nothing by default)."""
        return stats

    def _stats_key(self) -> list[int]:
        """What the statistics depend on besides the grid, the weights and ``use_ema`` (extend with ``super()``)."""
        return self.statistics.key()

    def diagnose_level(self, x: Tensor, y: Tensor, t: float, ema: bool) -> tuple[float, float]:
        """``(objective, mean |grad witness|)`` at one level for clean ``x`` and noisy ``y`` (``[n, *S]``)."""
        raise NotImplementedError

    def has_width(self) -> bool:
        """Whether the critic has an input-space/learned kernel width for the ``width2`` step schedule."""
        return callable(getattr(self.backbone, "width", None))

    def widths(self, t: Tensor) -> Tensor:
        """The kernel width ``h_t`` at ``t`` ``[T]`` (``width2`` schedule)."""
        return self.backbone.width(t.to(self.device)).float().cpu()

    def _check_config(self) -> None:
        """The config's own checks (:meth:`gflowzoo_dmmd.config.CriticTrainConfig.validate`), again for a config
        built by hand rather than by :func:`gflowzoo.config.build`."""
        self.config.validate()

    # ------------------------------------------------------------------------------------------------------------
    # helpers for subclasses
    # ------------------------------------------------------------------------------------------------------------
    def _net(self, ema: bool) -> tuple[nn.Module, nn.ModuleDict]:
        """``(backbone, extra)``: the EMA networks or the live (trained) ones."""
        return (self.ema_backbone, self.ema_extra) if ema else (self.backbone, self.extra)

    def _stats_indices(self, ds: Any) -> Tensor:
        return self.statistics.indices(ds)

    def _chunks(self, z: Tensor) -> list[Tensor]:
        return self.sampler.chunks(z)

    # ------------------------------------------------------------------------------------------------------------
    # training (training.py, diagnostics.py)
    # ------------------------------------------------------------------------------------------------------------
    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """One optimisation step of the critic over ``groups`` noise levels. Logs ``loss``, the objective
        (``mmd2`` or ``kale``, group mean), ``gp``, ``l2``, ``grad_norm`` (mean |grad_x f| at the interpolates), and
        every ``diag_every`` steps per-t-bin means ``<objective>_t<lo>-<hi>`` and ``grad_norm_t<lo>-<hi>``."""
        self.statistics.final = False  # the weights change: the statistics are final again only after finalize
        logs, terms, t = self.training.step(step, generator)
        logs.update(self.diagnostics.record(t, terms, step))
        return logs

    def losses(self, generator: torch.Generator, step: int = 0) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """One batch through the training network: ``(loss, terms per group, t)``."""
        return self.training.losses(generator, step)

    def _batch(self, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One step's data (:meth:`gflowzoo_dmmd.training.CriticTraining.batch`)."""
        return self.training.batch(generator)

    def sharded_group_terms(self, fx: Tensor, fy: Tensor, fh: Tensor, xh: Tensor, t: Tensor,
                            step: int) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
        """:meth:`group_terms` under several processes (:meth:`CriticTraining.sharded_group_terms`)."""
        return self.training.sharded_group_terms(fx, fy, fh, xh, t, step)

    @property
    def opt(self) -> torch.optim.Optimizer | None:
        """The optimiser (``None`` when nothing is trainable)."""
        return self.training.opt

    @property
    def params(self) -> list[nn.Parameter]:
        """The trainable parameters."""
        return self.training.params

    def diagnose(self, levels: int = 20, n: int = 256, seed: int = 0, ema: bool = True) -> dict[str, list[float]]:
        """Critic diagnostics on data (:meth:`gflowzoo_dmmd.diagnostics.CriticDiagnostics.diagnose`)."""
        return self.diagnostics.diagnose(levels, n, seed, ema)

    @property
    def diag_acc(self) -> Tensor:
        """The per-t-bin accumulators of the training logs (``[diag_bins, 3]``)."""
        return self.diagnostics.acc

    # ------------------------------------------------------------------------------------------------------------
    # sampling (statistics.py, sampler.py)
    # ------------------------------------------------------------------------------------------------------------
    def finalize(self, generator: torch.Generator) -> None:
        """Precompute the sampler's statistics on the configured grid (fixed seed ``stats_seed``) so that they
        are stored in the final checkpoint (sampling from it needs no pass over the data)."""
        self.statistics.finalize()

    @property
    def stats(self) -> dict[str, Any]:
        """The sampler statistics (:class:`gflowzoo_dmmd.statistics.SamplerStatistics`)."""
        return self.statistics.stats

    @stats.setter
    def stats(self, value: dict[str, Any]) -> None:
        self.statistics.stats = value

    @property
    def stats_final(self) -> bool:
        """Whether :meth:`state_dict` stores the statistics (from :meth:`finalize` to the next training step)."""
        return self.statistics.final

    def step_rule(self) -> tuple[float, str]:
        """The resolved ``(step_size, step_schedule)`` of the configured sampler."""
        return self.sampler.step_rule()

    def plan(self, stats: dict[str, Any] | None = None) -> list[Level]:
        """The level plan of the configured sampler (:meth:`gflowzoo_dmmd.sampler.ParticleSampler.plan`)."""
        return self.sampler.plan(stats)

    def sampling_info(self) -> dict[str, Any]:
        """``variant``, ``nfe`` (witness-gradient evaluations per particle), ``particles``, ``levels``,
        ``steps_per_level``, the resolved step rule, ``chunk``."""
        return self.sampler.sampling_info()

    def cheap_sampler(self, n: int) -> AbstractContextManager[dict[str, Any]]:
        """A cheaper sampler for in-training evaluations of ``n`` samples, as a context: at most
        :data:`CHEAP_LEVELS` levels and ``n`` particles (:meth:`gflowzoo_dmmd.sampler.ParticleSampler.cheap_sampler`)."""
        return self.sampler.cheap_sampler(n)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """Draw ``n`` samples (``[n, *S]``, CPU): ``ceil(n / particles)`` independent batches of ``particles``
        particles from ``N(0, I)`` moved through the level plan; the first ``n`` are returned."""
        return self.sampler.sample(n, generator)

    # ------------------------------------------------------------------------------------------------------------
    # state (state.py)
    # ------------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Networks (live and EMA), optimiser, step, per-bin log accumulators and, after :meth:`finalize` (the final
        checkpoint of a run), the sampler statistics (:func:`gflowzoo_dmmd.state.critic_state`)."""
        return critic_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        load_critic_state(self, state)

