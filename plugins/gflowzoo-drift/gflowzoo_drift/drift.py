"""Drifting models (Deng, Li, Li, Du & He 2026, arXiv 2602.04770): method ``drift``.

A generator ``G`` maps noise to a sample in one pass. Training moves its outputs along a *drifting field* ``V``:
in a feature space ``phi``, every generated sample is pulled towards nearby data samples and pushed away from nearby
generated samples (:func:`gflowzoo_drift.field.drift_field`); the field is anti-symmetric in the two sample sets,
so it vanishes when the generated distribution equals the data distribution. The loss regresses the features of
``G(z)`` onto their own drifted, stop-gradient position::

    loss = mean || phi(G(z)) / S - sg(phi(G(z)) / S + V) ||^2

with ``S`` the feature normalisation (mean distance ``sqrt(C)`` in ``C`` dimensions) and ``V`` summed over several
temperatures, each normalised to unit root-mean-square. Several feature sets (raw coordinates or pixels, a
backbone's features) each add such a term. Sampling is one generator pass.

Reconstructed from the public description: every choice it leaves open is an option below, with its default and a
line in docs/drift.md ("Reconstruction").
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from gflowzoo.api import MLP, ConfigError, DCGANDecoder, GeneratorMethod, component, distributed, make_activation

from .field import drift_field, feature_scale

__all__ = ["Drift", "DriftConfig", "family"]

_FAMILIES = ("digits", "mnist", "cifar10", "celeba64", "lsun-church64")
_FEATURE_SETS = ("raw", "backbone")

#: Toy preset (every ``toy-*``): the defaults with a ReLU generator and an EMA (0.99) of it for sampling. Measured
#: on toy-25gaussians, 1 min, one thread (docs/drift.md): SiLU (the default): 0 / 25 modes, 3.7 % of samples within
#: 3 std (it fills the grid's hull evenly, although particles moved along the same field gather on the modes);
#: SiLU + 64 Fourier features of z: 21 / 25, 45 %; + EMA 0.99: 25 / 25, 69 %; ReLU + EMA 0.99: 25 / 25, 88 %,
#: MMD 0.0034 (ReLU + Fourier + EMA: 25 / 25, 79 %). At 2 min (load 2): toy-25gaussians 25 / 25, 92.2 %, MMD
#: 0.0031 (gmmn: 25 / 25, 92.3 %, 0.0034); toy-8gaussians 8 / 8, 96.7 %, MMD 0.0012 (gmmn: 8 / 8, 94.1 %, 0.0075).
_TOY: dict[str, Any] = {"activation": "relu", "ema": 0.99}


def family(dataset: str) -> str | None:
    """The preset family of a data-set name (``"toy"`` for every ``toy-*``), or None."""
    if dataset.startswith("toy-"):
        return "toy"
    return dataset if dataset in _FAMILIES else None


@dataclasses.dataclass
class DriftConfig:
    """Options of ``drift`` (defaults: the 2-D toy recipe but for its ReLU and EMA, ``_TOY``; presets adapt them per
    data set)."""

    #: Latent size and distribution of the generator's input (the paper: Gaussian noise).
    nz: int = 2
    latent: Literal["normal", "uniform"] = "normal"
    #: Generator: an MLP (``hidden`` widths, ``activation``), a DCGAN decoder of width ``ngf`` (images), or any
    #: registered backbone (``generator_backbone``) taking the latent vector, or, with
    #: ``generator_input = "image"``, noise of the data's shape (then ``nz`` must be the number of data values).
    generator: Literal["mlp", "dcgan", "backbone"] = "mlp"
    hidden: list[int] = dataclasses.field(default_factory=lambda: [256, 256, 256])
    activation: str = "silu"
    ngf: int = 64
    generator_backbone: Any = component("backbone", "drift-mlp")
    generator_input: Literal["latent", "image"] = "latent"
    #: ``fourier`` > 0: the MLP generator sees ``[sin(W z + b), cos(W z + b)]`` (``fourier`` fixed random
    #: frequencies, ``W ~ N(0, fourier_scale^2)``, ``b ~ U[0, 2 pi)``, drawn from the run's seed) instead of ``z``, so
    #: that a smooth network can cut the noise into many separate modes (0: ``z`` itself).
    fourier: int = 0
    fourier_scale: float = 1.0
    #: Feature sets the field is computed in, each adding one loss term: ``raw`` (coordinates / pixels) and
    #: ``backbone`` (``feature_backbone`` with ``feature_dim`` outputs, frozen: random weights from the run's seed,
    #: or the state dict in ``feature_weights``).
    features: list[str] = dataclasses.field(default_factory=lambda: ["raw"])
    feature_backbone: Any = component("backbone", "drift-mlp")
    feature_dim: int = 128
    feature_weights: str = ""
    #: Kernel temperatures (the paper: 0.02, 0.05, 0.2), each multiplied by ``C``, ``sqrt(C)`` or 1 in ``C``
    #: feature dimensions (``temperature_scale``).
    temperatures: list[float] = dataclasses.field(default_factory=lambda: [0.02, 0.05, 0.2])
    temperature_scale: Literal["dim", "sqrt-dim", "none"] = "sqrt-dim"
    #: Kernel normalisation: over samples and queries (``two-sided``, the paper's Algorithm 2) or samples only.
    coupling: Literal["two-sided", "row"] = "two-sided"
    #: Feature normalisation (mean distance sqrt(C)) and per-temperature drift normalisation (unit RMS).
    feature_norm: bool = True
    drift_norm: bool = True
    #: A generated sample ignores itself among the negatives.
    mask_self: bool = True
    #: Generated samples (negatives and queries) and data samples (positives, 0: ``batch_size``) per step and process.
    batch_size: int = 256
    n_pos: int = 0
    #: Adam; ``grad_clip`` > 0 clips the gradient norm; ``ema`` > 0 keeps an exponential moving average of the
    #: generator that sampling uses.
    lr: float = 3e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    ema: float = 0.0
    #: Samples generated per forward pass in ``sample``.
    sample_chunk: int = 1000

    def validate(self) -> None:
        """Checks of values no type expresses."""
        for name in ("nz", "batch_size", "sample_chunk", "lr", "feature_dim"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)!r}.")
        if self.fourier < 0 or not self.fourier_scale > 0:
            raise ConfigError(f"fourier must be >= 0 and fourier_scale > 0; got {self.fourier!r}, "
                              f"{self.fourier_scale!r}.")
        if self.n_pos < 0:
            raise ConfigError(f"n_pos must be >= 0 (0: batch_size); got {self.n_pos!r}.")
        if not self.temperatures or any(not t > 0 for t in self.temperatures):
            raise ConfigError(f"temperatures must be a non-empty list of positive numbers; got {self.temperatures!r}.")
        if not self.features or any(f not in _FEATURE_SETS for f in self.features):
            raise ConfigError(f"features must list some of {', '.join(_FEATURE_SETS)}; got {self.features!r}.")
        if len(set(self.features)) != len(self.features):
            raise ConfigError(f"features lists a feature set twice: {self.features!r}.")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1); got {self.ema!r}.")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0 (0: off); got {self.grad_clip!r}.")
        if self.mask_self and self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 with mask_self (a sample needs another negative).")


class Drift(GeneratorMethod):
    """Drifting model (Deng et al. 2026): a one-step generator regressed onto its outputs moved along a kernel
    attraction-repulsion field (multi-temperature, normalised features and drift). Details: docs/drift.md."""

    Config = DriftConfig
    #: Several processes: every process draws the global batch's noise and data from the shared generator, keeps
    #: its share through the networks, and computes the field on all processes' features (docs/drift.md).
    supports_distributed = True

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """Toys: the defaults (raw 2-D coordinates) with a ReLU generator and EMA 0.99 (``_TOY``); codes of a latent
        space (``latent:*``): the toy recipe with a wider generator; digits/MNIST: MLP generator with a tanh output
        on raw pixels; CIFAR-10 and the 64-px sets: a DCGAN generator on raw pixels plus frozen random
        DCGAN-encoder features (``paper``: GPU sizes)."""
        if dataset.startswith("latent:"):
            return {"nz": 16, "lr": 1e-3, "hidden": [512, 512, 512], "batch_size": 512, "run": {"steps": 3000}}
        fam = family(dataset)
        if fam == "toy":
            return dict(_TOY)
        if fam is None:
            return {}
        if fam in ("digits", "mnist"):
            out: dict[str, Any] = {"nz": 32, "hidden": [256, 512, 1024], "batch_size": 256, "lr": 1e-3}
            if variant == "paper":
                out.update(batch_size=1024, ema=0.999, run={"steps": 20_000})
            return out
        out = {"generator": "dcgan", "nz": 128, "lr": 2e-4, "beta1": 0.5, "features": ["raw", "backbone"],
               "feature_backbone": {"name": "dcgan", "ndf": 64}, "feature_dim": 256}
        if variant == "paper":
            out.update(ngf=64, batch_size=1024, ema=0.999, run={"steps": 50_000})
        else:
            out.update(ngf=32, batch_size=128, feature_backbone={"name": "dcgan", "ndf": 32})
        return out

    def __init__(self, config: DriftConfig, data: Any, device: torch.device | str = "cpu", *,
                 components: dict[str, Any] | None = None) -> None:
        super().__init__(config, data, device, components=components)
        c = self.config
        self.G = self.build_generator().to(self.device)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False) if c.ema > 0 else None
        self.phi = self.build_features().to(self.device) if "backbone" in c.features else None
        self.opt = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=(c.beta1, c.beta2),
                                    weight_decay=c.weight_decay)

    # -- networks ---------------------------------------------------------------------------------------------------
    def build_generator(self) -> nn.Module:
        """``[N, nz] -> [N, *S]``: tanh output for images (model units are ``[-1, 1]``), linear for points."""
        c, shape = self.config, self.shape
        out_act = "tanh" if self.kind == "image" else "none"
        if c.generator == "dcgan":
            if self.kind != "image":
                raise ConfigError("generator = 'dcgan' needs image data; use 'mlp' for points.")
            return DCGANDecoder(c.nz, shape, ngf=c.ngf, out_activation=out_act)
        if c.generator == "mlp":
            if c.fourier > 0:
                return nn.Sequential(_Fourier(c.nz, c.fourier, c.fourier_scale),
                                     MLP(2 * c.fourier, math.prod(shape), c.hidden, c.activation, out_act,
                                         out_shape=shape))
            return MLP(c.nz, math.prod(shape), c.hidden, c.activation, out_act, out_shape=shape)
        in_shape: tuple[int, ...] = (c.nz,)
        if c.generator_input == "image":
            if c.nz != math.prod(shape):
                raise ConfigError(f"generator_input = 'image' draws noise of the data's shape: set nz = "
                                  f"{math.prod(shape)} (the number of values of {list(shape)}).")
            in_shape = shape
        return _BackboneGenerator(self.components["generator_backbone"](in_shape=in_shape,
                                                                        feature_dim=math.prod(shape)),
                                  in_shape, shape, out_act)

    def build_features(self) -> nn.Module:
        """The frozen feature network of the ``backbone`` feature set (random weights, or ``feature_weights``)."""
        c = self.config
        net = self.components["feature_backbone"](in_shape=self.shape, feature_dim=c.feature_dim)
        if c.feature_weights:
            try:
                state = torch.load(c.feature_weights, map_location="cpu", weights_only=True)
            except (OSError, RuntimeError) as exc:
                raise ConfigError(f"Cannot read feature_weights {c.feature_weights!r}: {exc}") from None
            net.load_state_dict(state)
        return net.eval().requires_grad_(False)

    def feature_sets(self, x: Tensor) -> dict[str, Tensor]:
        """``{name: [N, C]}`` features of samples ``x`` (differentiable in ``x``)."""
        out: dict[str, Tensor] = {}
        for name in self.config.features:
            if name == "raw":
                out[name] = x.reshape(len(x), -1)
            else:
                assert self.phi is not None
                out[name] = self.phi(x, None).reshape(len(x), -1)
        return out

    # -- training ---------------------------------------------------------------------------------------------------
    def drift_loss(self, fx: Tensor, fy: Tensor, gx: Tensor, gy: Tensor, offset: int) -> tuple[Tensor, dict[str, float]]:
        """The loss term of one feature set: local generated features ``fx`` ``[B, C]`` (with gradient), local data
        features ``fy``, and every process's detached generated and data features ``gx``, ``gy`` (``fx`` is
        ``gx[offset:offset + B]``). Returns the term (mean over the *global* batch, this process's share) and logs."""
        c = self.config
        with torch.no_grad():
            s = feature_scale(gx, gy, gx, mask_self=c.mask_self) if c.feature_norm else gx.new_tensor(1.0)
            v, rms = drift_field(gx / s, gy / s, gx / s, c.temperatures, mask_self=c.mask_self,
                                 coupling=c.coupling, temperature_scale=c.temperature_scale,
                                 normalize=c.drift_norm)
            v = v[offset:offset + len(fx)]
        xs = fx / s
        per_sample = (xs - (xs.detach() + v)).square().mean(1)
        term = per_sample.sum() / len(gx)
        logs = {"scale": float(s), **{f"v{i}": r for i, r in enumerate(rms)}}
        return term, logs

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """One generator step. Logs ``loss`` (summed over feature sets; with drift normalisation about the number
        of temperatures until the field becomes noise-dominated), ``drift`` (RMS of the first feature set's field at
        the middle temperature before normalisation, in normalised feature units: it falls as the distributions
        meet) and ``scale`` (the feature normalisation of the first set)."""
        c = self.config
        w, r = distributed.world(), distributed.rank()
        b, p = c.batch_size, c.n_pos or c.batch_size
        z = self.latent(generator, w * b)[r * b:(r + 1) * b]
        y = self.real_batch(generator, w * p)[r * p:(r + 1) * p]
        x = self.G(z)
        with torch.no_grad():
            fys = self.feature_sets(y)
        fxs = self.feature_sets(x)
        loss = x.new_zeros(())
        logs: dict[str, float] = {}
        for i, name in enumerate(c.features):
            fx, fy = fxs[name], fys[name]
            gx = distributed.gather_cat(fx.detach())
            gy = distributed.gather_cat(fy)
            term, part = self.drift_loss(fx, fy, gx, gy, r * b)
            loss = loss + term
            if i == 0:
                logs["scale"] = part["scale"]
                logs["drift"] = part[f"v{len(c.temperatures) // 2}"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        distributed.sum_gradients(self.G.parameters())
        if c.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.G.parameters(), c.grad_clip)
        self.opt.step()
        if self.G_ema is not None:
            with torch.no_grad():
                for pe, pg in zip(self.G_ema.parameters(), self.G.parameters()):
                    pe.lerp_(pg, 1.0 - c.ema)
                for be, bg in zip(self.G_ema.buffers(), self.G.buffers()):
                    be.copy_(bg)
        logs["loss"] = float(distributed.all_reduce_sum(loss.detach()))
        return logs

    # -- sampling ---------------------------------------------------------------------------------------------------
    def sampling_modules(self) -> list[nn.Module]:
        """The generator (and its average) alone; the frozen feature network stays in eval mode."""
        return [m for m in (self.G, self.G_ema) if m is not None]

    def generate(self, z: Tensor) -> Tensor:
        """One pass of the generator (its moving average with ``ema`` > 0)."""
        return (self.G_ema if self.G_ema is not None else self.G)(z)

    def sampling_info(self) -> dict[str, Any]:
        """One generator pass per sample."""
        return {**super().sampling_info(), "ema": self.config.ema}

    # -- state ------------------------------------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        """Generator, its average, the frozen feature network, optimiser."""
        out: dict[str, Any] = {"generator": self.G}
        if self.G_ema is not None:
            out["generator_ema"] = self.G_ema
        if self.phi is not None:
            out["features"] = self.phi
        out["opt"] = self.opt
        return out


class _Fourier(nn.Module):
    """Fixed random Fourier features ``[N, nz] -> [N, 2 n]``: ``[sin(z W + b), cos(z W + b)]`` (buffers, saved with
    the generator)."""

    def __init__(self, nz: int, n: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("w", torch.randn(nz, n) * float(scale))
        self.register_buffer("b", torch.rand(n) * (2 * math.pi))

    def forward(self, z: Tensor) -> Tensor:
        """``[N, nz]`` -> ``[N, 2 n]``."""
        h = z.reshape(len(z), -1) @ self.w + self.b
        return torch.cat([h.sin(), h.cos()], 1)


class _BackboneGenerator(nn.Module):
    """A registered backbone as a generator: latent (or data-shaped noise) in, ``[N, *S]`` out."""

    def __init__(self, net: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...], out_act: str) -> None:
        super().__init__()
        self.net = net
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.act = make_activation(out_act)

    def forward(self, z: Tensor) -> Tensor:
        """``[N, nz]`` -> ``[N, *S]``."""
        h = self.net(z.reshape(len(z), *self.in_shape), None)
        return self.act(h).reshape(len(z), *self.out_shape)
