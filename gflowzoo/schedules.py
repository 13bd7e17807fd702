"""Variance-preserving noise schedules on continuous time ``t in [0, 1]``:
``x_t = alpha_t x_0 + sigma_t eps`` with ``alpha_t = sqrt(abar(t))`` and ``sigma_t = sqrt(1 - abar(t))``.

* :class:`VPLinear`: the continuous-time limit of DDPM's linear betas (Ho et al. 2020; Song et al. 2021).
* :class:`VPCosine`: the cosine schedule of Nichol & Dhariwal (2021).

Values are computed in the dtype of ``t`` (pass float64 for reference computations).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import ConfigError
from .interfaces import NoiseSchedule

__all__ = ["VPCosine", "VPLinear"]


def _as_float_tensor(t: Tensor | float) -> Tensor:
    t = torch.as_tensor(t)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _check_t_min(t_min: float) -> float:
    if not 0.0 <= t_min < 1.0:
        raise ConfigError(f"schedule t_min must be in [0, 1); got {t_min!r}.")
    return float(t_min)


class _VPSchedule(NoiseSchedule):
    """A variance-preserving schedule given by ``abar(t)``; subclasses implement :meth:`alpha_bar` and
    :meth:`one_minus_alpha_bar` (the latter accurately where ``abar`` is close to 1)."""

    def alpha_bar(self, t: Tensor | float) -> Tensor:  # pragma: no cover - abstract
        """``abar(t) = alpha_t^2`` for ``t`` of any shape."""
        raise NotImplementedError

    def one_minus_alpha_bar(self, t: Tensor | float) -> Tensor:  # pragma: no cover - abstract
        """``1 - abar(t) = sigma_t^2`` for ``t`` of any shape."""
        raise NotImplementedError

    def alpha(self, t: Tensor | float) -> Tensor:
        """``alpha_t = sqrt(abar(t))`` (same shape as ``t``)."""
        return self.alpha_bar(t).clamp_min(0.0).sqrt()

    def sigma(self, t: Tensor | float) -> Tensor:
        """``sigma_t = sqrt(1 - abar(t))`` (same shape as ``t``)."""
        return self.one_minus_alpha_bar(t).clamp_min(0.0).sqrt()


class VPLinear(_VPSchedule):
    """Continuous-time DDPM linear schedule: ``beta(t) = beta_min + t (beta_max - beta_min)`` and
    ``abar(t) = exp(-beta_min t - (beta_max - beta_min) t^2 / 2)``.

    ``beta_min=0.1, beta_max=20`` is the continuous limit of DDPM's ``beta_i`` from 1e-4 to 0.02 over 1000 steps
    (``prod_{i <= 1000 t} (1 - beta_i)`` matches ``abar(t)`` to about 1e-3). ``abar(1) = exp(-10.05)``, about 4e-5.

    Args:
        beta_min, beta_max: the rate at t = 0 and t = 1 (``0 <= beta_min <= beta_max``, ``beta_max > 0``).
        t_min: the smallest noise level used for training and sampling.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> None:
        if not (0.0 <= beta_min <= beta_max and beta_max > 0.0):
            raise ConfigError(f"vp-linear needs 0 <= beta_min <= beta_max, beta_max > 0; got {beta_min}, {beta_max}.")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.t_min = _check_t_min(t_min)

    def log_alpha_bar(self, t: Tensor | float) -> Tensor:
        """``log abar(t) = -beta_min t - (beta_max - beta_min) t^2 / 2``."""
        t = _as_float_tensor(t)
        return -t * (self.beta_min + 0.5 * (self.beta_max - self.beta_min) * t)

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        """``abar(t)`` (same shape as ``t``)."""
        return self.log_alpha_bar(t).exp()

    def one_minus_alpha_bar(self, t: Tensor | float) -> Tensor:
        """``1 - abar(t)`` via ``expm1`` (accurate at small t)."""
        return -torch.expm1(self.log_alpha_bar(t))

    def __repr__(self) -> str:
        return f"VPLinear(beta_min={self.beta_min}, beta_max={self.beta_max}, t_min={self.t_min})"


class VPCosine(_VPSchedule):
    """Cosine schedule of Nichol & Dhariwal (2021) in continuous time:
    ``abar_cos(t) = cos^2(((t + s)/(1 + s)) pi/2) / cos^2((s/(1 + s)) pi/2)``.

    ``abar_cos(1) = 0`` would make ``alpha_1 = 0`` (the paper clips the discrete betas at 0.999 for the same
    reason). Here the schedule is instead squeezed affinely into ``[min_alpha_bar, 1]``:
    ``abar(t) = min_alpha_bar + (1 - min_alpha_bar) abar_cos(t)``, which keeps it smooth and strictly
    decreasing, with ``abar(0) = 1`` and ``abar(1) = min_alpha_bar`` (default 1e-5, so ``alpha_1`` is about 3e-3 and
    ``sigma_1`` about 0.999995). The change elsewhere is below ``min_alpha_bar`` in absolute terms.

    Args:
        s: the small offset that keeps ``beta`` finite near ``t = 0`` (0.008 in the paper).
        t_min: the smallest noise level used for training and sampling.
        min_alpha_bar: the floor of ``abar`` at ``t = 1``, in ``(0, 1)``.
    """

    def __init__(self, s: float = 0.008, t_min: float = 1e-3, min_alpha_bar: float = 1e-5) -> None:
        if not s >= 0.0:
            raise ConfigError(f"vp-cosine s must be >= 0; got {s!r}.")
        if not 0.0 < min_alpha_bar < 1.0:
            raise ConfigError(f"vp-cosine min_alpha_bar must be in (0, 1); got {min_alpha_bar!r}.")
        self.s = float(s)
        self.t_min = _check_t_min(t_min)
        self.min_alpha_bar = float(min_alpha_bar)
        self._angle0 = self.s / (1.0 + self.s) * math.pi / 2
        self._f0 = math.cos(self._angle0) ** 2

    def _angle(self, t: Tensor | float) -> Tensor:
        return (_as_float_tensor(t) + self.s) / (1.0 + self.s) * (math.pi / 2)

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        """``abar(t) = m + (1 - m) cos^2(a_t) / cos^2(a_0)`` with ``m = min_alpha_bar`` and
        ``a_t = ((t + s)/(1 + s)) pi/2`` (same shape as ``t``)."""
        abar_cos = (torch.cos(self._angle(t)).square() / self._f0).clamp(0.0, 1.0)
        return self.min_alpha_bar + (1.0 - self.min_alpha_bar) * abar_cos

    def one_minus_alpha_bar(self, t: Tensor | float) -> Tensor:
        """``1 - abar(t) = (1 - m) sin(a_t + a_0) sin(a_t - a_0) / cos^2(a_0)`` (from
        ``cos^2 A - cos^2 B = sin(B + A) sin(B - A)``; no cancellation at small t)."""
        a = self._angle(t)
        diff = (torch.sin(a + self._angle0) * torch.sin(a - self._angle0) / self._f0).clamp(0.0, 1.0)
        return (1.0 - self.min_alpha_bar) * diff

    def __repr__(self) -> str:
        return f"VPCosine(s={self.s}, t_min={self.t_min}, min_alpha_bar={self.min_alpha_bar})"
