"""Explicit particle updates for gradient flows: :class:`Euler` and the noise-injected :class:`EulerNoisy`.

Both take positions ``z`` ``[N, *S]``, a velocity field ``velocity(z) -> [N, *S]`` (for a gradient flow, the
gradient of the witness) and a step size (a float or a per-particle ``[N]`` tensor).

``max_step > 0`` caps each particle's displacement ``|eta v|`` (Euclidean norm over its ``d = prod(S)`` entries)
at ``max_step * scale * sqrt(d)``, that is ``max_step * scale`` per coordinate in root-mean-square terms. This
guards against the blow-ups of un-normalised steps (exploding particles, and an exact-flow step window that narrows
with the dimension); ``scale`` is the noise scale of the path (``sigma_t`` for DMMD), so the cap shrinks with t.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import ConfigError
from .interfaces import FlowIntegrator, Velocity

__all__ = ["Euler", "EulerNoisy"]


def _per_particle(value: float | Tensor, z: Tensor) -> float | Tensor:
    """A float as is; a tensor (scalar or ``[N]``) shaped ``[N, 1, ...]`` to broadcast over ``z`` ``[N, *S]``."""
    if not isinstance(value, Tensor):
        return float(value)
    value = value.to(device=z.device, dtype=z.dtype)
    if value.ndim == 0:
        return value
    if value.shape != (z.shape[0],):
        raise ValueError(f"a per-particle value must have shape [{z.shape[0]}]; got {tuple(value.shape)}")
    return value.view((-1,) + (1,) * (z.ndim - 1))


def _check_max_step(max_step: float) -> float:
    if not max_step >= 0.0:
        raise ConfigError(f"integrator max_step must be >= 0 (0 disables the cap); got {max_step!r}.")
    return float(max_step)


def _displace(z: Tensor, v: Tensor, step_size: float | Tensor, scale: float | Tensor, max_step: float) -> Tensor:
    """``z + eta v`` with the optional per-particle displacement cap."""
    if v.shape != z.shape:
        raise ValueError(f"the velocity has shape {tuple(v.shape)}, the particles {tuple(z.shape)}")
    move = _per_particle(step_size, z) * v
    if max_step > 0.0:
        d = math.prod(z.shape[1:])
        cap = _per_particle(scale, z) * (max_step * math.sqrt(d))
        norm = move.flatten(1).norm(dim=1).view((-1,) + (1,) * (z.ndim - 1))
        move = move * torch.clamp(cap / norm.clamp_min(torch.finfo(norm.dtype).tiny), max=1.0)
    return z + move


class Euler(FlowIntegrator):
    """Explicit Euler: ``z <- z + eta v(z)``.

    Args:
        max_step: cap of the per-particle displacement in units of ``scale * sqrt(d)`` (0: no cap).
    """

    def __init__(self, max_step: float = 0.0) -> None:
        self.max_step = _check_max_step(max_step)

    def step(
        self,
        z: Tensor,
        velocity: Velocity,
        step_size: float | Tensor,
        scale: float | Tensor = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One step from ``z`` (``[N, *S]``); ``generator`` is unused. Returns ``[N, *S]``."""
        return _displace(z, velocity(z), step_size, scale, self.max_step)

    def __repr__(self) -> str:
        return f"Euler(max_step={self.max_step})"


class EulerNoisy(FlowIntegrator):
    """Euler with noise injection (Arbel, Korba, Salim & Gretton 2019):
    ``z <- z + eta v(z + beta * scale * U)`` with ``U ~ N(0, I)``.

    The noise only moves the point where the velocity is *evaluated*; the particles themselves are not noised
    (this is not Langevin dynamics). It helps the MMD flow escape bad stationary points. ``U`` is drawn on the CPU
    from ``generator`` (so runs are reproducible on any device) and moved to ``z``'s device; with ``beta = 0`` no
    noise is drawn and the step equals :class:`Euler`.

    Args:
        beta: the noise level relative to ``scale`` (0.5 sigma_t helped DMMD in the feasibility study).
        max_step: cap of the per-particle displacement, as for :class:`Euler`.
    """

    def __init__(self, beta: float = 0.5, max_step: float = 0.0) -> None:
        if not beta >= 0.0:
            raise ConfigError(f"euler-noisy beta must be >= 0; got {beta!r}.")
        self.beta = float(beta)
        self.max_step = _check_max_step(max_step)

    def step(
        self,
        z: Tensor,
        velocity: Velocity,
        step_size: float | Tensor,
        scale: float | Tensor = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One step from ``z`` (``[N, *S]``) with noise from ``generator`` (CPU). Returns ``[N, *S]``."""
        if self.beta == 0.0:
            return _displace(z, velocity(z), step_size, scale, self.max_step)
        draw = z.dtype if z.dtype in (torch.float32, torch.float64) else torch.float32
        u = torch.randn(z.shape, generator=generator, dtype=draw).to(device=z.device, dtype=z.dtype)
        v = velocity(z + (self.beta * _per_particle(scale, z)) * u)
        return _displace(z, v, step_size, scale, self.max_step)

    def __repr__(self) -> str:
        return f"EulerNoisy(beta={self.beta}, max_step={self.max_step})"
