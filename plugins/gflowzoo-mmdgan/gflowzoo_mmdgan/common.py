"""Pieces shared by ``mmdgan`` and ``mmdgan-gp``: the generator options, a base class holding the generator (on
:class:`gflowzoo.api.GeneratorMethod`: the latent draw, the data stream, sampling and the checkpoint table),
numerically safe helpers and the data-set families the presets know."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gflowzoo.api import MLP, ConfigError, DCGANDecoder, GeneratorMethod

#: Data sets with tuned presets; any ``toy-*`` name counts as ``toy``.
FAMILIES = ("toy", "digits", "mnist", "cifar10", "celeba64", "lsun-church64")


def family(dataset: str) -> str | None:
    """The preset family of a data-set name (``"toy"`` for every ``toy-*``), or None when no preset is tuned."""
    if dataset.startswith("toy-"):
        return "toy"
    return dataset if dataset in FAMILIES else None


def safe_sqrt(v: Tensor, eps: float = 1e-10) -> Tensor:
    """``sqrt(relu(v))`` with a finite gradient everywhere: ``sqrt(max(v, eps))``.

    The value is off by at most ``sqrt(eps)`` (1e-5) where ``v < eps`` and the gradient there is 0 (as ReLU's is
    for ``v < 0``); the largest gradient is ``1 / (2 sqrt(eps))`` = 5e4 instead of infinity at 0. The official
    MMD GAN code uses ``sqrt(relu(v))``, whose gradient is infinite at ``v = 0`` (a NaN source)."""
    return v.clamp_min(eps).sqrt()


def one_sided(v: Tensor) -> Tensor:
    """The one-sided hinge of the MMD GAN code, ``-mean(relu(-v))`` (always ``<= 0``), for ``v`` ``[D]`` = the
    difference of the mean critic features of real and generated samples."""
    return -torch.relu(-v).mean()


@dataclasses.dataclass
class GeneratorConfig:
    """Generator options shared by the GAN methods (the fields are part of each method's ``Config``)."""

    #: Latent size (MMD GAN: also the critic's code size k unless ``feature_dim`` is set).
    nz: int = 10
    #: Latent distribution: ``normal`` N(0, I) or ``uniform`` U[-1, 1].
    latent: Literal["normal", "uniform"] = "normal"
    #: ``auto`` = ``dcgan`` for images, ``mlp`` for 2-D points.
    generator: Literal["auto", "dcgan", "mlp"] = "auto"
    #: DCGAN generator width (64 in the papers).
    ngf: int = 64
    #: Hidden widths of MLP generators (and of MLP decoders).
    mlp_hidden: list[int] = dataclasses.field(default_factory=lambda: [128, 128, 128])
    #: Minibatch size (real and generated).
    batch_size: int = 64
    #: Samples generated per forward pass in :meth:`sample`.
    sample_chunk: int = 1000
    #: Images only: keep networks and batches in the channels-last memory format (10-20 % faster steps on CPU,
    #: ``benchmarks/bench_mmdgan_step.py``). ``auto``: on for CPU runs whose generator is the built-in DCGAN and
    #: whose critic backbone declares ``channels_last_ok``; off on GPUs (not measured there). ``true`` forces it
    #: (the critic backbone must then accept channels-last input).
    channels_last: bool | Literal["auto"] = "auto"

    def validate(self) -> None:
        """Checks of values no type expresses (called by :func:`gflowzoo.config.build`, so a bad ``--set`` fails
        when the configuration is resolved, and by the method)."""
        check_positive(self, "nz", "batch_size", "sample_chunk")


def build_generator(cfg: Any, shape: tuple[int, ...], kind: str) -> nn.Module:
    """The generator ``[N, nz] -> [N, *shape]`` (tanh output for images in ``[-1, 1]``, linear for points)."""
    choice = cfg.generator if cfg.generator != "auto" else ("dcgan" if kind == "image" else "mlp")
    out_act = "tanh" if kind == "image" else "none"
    if choice == "dcgan":
        return DCGANDecoder(cfg.nz, shape, ngf=cfg.ngf, out_activation=out_act)
    return MLP(cfg.nz, math.prod(shape), cfg.mlp_hidden, "relu", out_act, out_shape=shape)


def check_positive(cfg: Any, *names: str) -> None:
    """A :class:`ConfigError` naming the first of ``names`` whose value is not > 0."""
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise ConfigError(f"{name} must be > 0; got {value!r}.")


class GANBase(GeneratorMethod):
    """A generator plus the data stream, in the channels-last memory format where that is faster. Subclasses add
    the critic, the losses and the optimisers (and list them in :meth:`~gflowzoo.api.GeneratorMethod.stateful`).

    All randomness of a training step comes from the step's CPU ``generator``: real minibatches are drawn with
    replacement (``Dataset.sample``), latents with :func:`gflowzoo.nets.sample_latent`."""

    def __init__(self, config: Any, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device, components=components)
        self.channels_last = self._use_channels_last()
        self.G = self.to_device(build_generator(config, self.shape, self.kind))

    # -- data ------------------------------------------------------------------------------------------------------
    def _use_channels_last(self) -> bool:
        """Resolve ``config.channels_last`` (``auto``: see :class:`GeneratorConfig`) for this run."""
        c = self.config
        if self.kind != "image":
            return False
        if c.channels_last != "auto":
            return bool(c.channels_last)
        if self.device.type != "cpu" or c.generator not in ("auto", "dcgan"):
            return False
        critic = self.components.get("critic")
        if critic is None:
            return False
        return bool(getattr(critic.target, "channels_last_ok", False))

    @property
    def memory_format(self) -> torch.memory_format:
        """``channels_last`` when :attr:`channels_last` resolved to on, else contiguous."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def to_device(self, module: nn.Module) -> nn.Module:
        """Move ``module`` to the method's device (and memory format)."""
        module = module.to(self.device)
        return module.to(memory_format=self.memory_format) if self.memory_format != torch.contiguous_format else module

    def sampling_modules(self) -> list[nn.Module]:
        """Sampling runs the generator alone (the critic keeps its mode)."""
        return [self.G]

    def real_batch(self, generator: torch.Generator, n: int | None = None) -> Tensor:
        """``n`` (default ``batch_size``) training samples ``[n, *S]`` on the method's device (images in the
        method's memory format)."""
        x = super().real_batch(generator, n)
        return x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Turn gradient tracking of every parameter of ``module`` on or off."""
    for p in module.parameters():
        p.requires_grad_(flag)


def as_float(x: Tensor | float) -> float:
    """A Python float of a scalar tensor (logs must be floats so the trainer can spot NaN/inf)."""
    return float(x.detach()) if isinstance(x, Tensor) else float(x)
