"""Reference kernels on feature vectors: linear, Gaussian (RBF) mixture, rational quadratic, energy, polynomial.

Every kernel takes features ``x`` ``[N, D]`` and ``y`` ``[M, D]`` and returns the Gram matrix ``[N, M]`` in the
input's dtype and on its device, with a closed-form :meth:`~gflowzoo.interfaces.Kernel.diag`.

Speed: the distance-based kernels get all pairwise squared distances from **one** matrix product of augmented
features, ``[x, |x|^2, 1] @ [-2y, 1, |y|^2]^T = |x|^2 + |y|^2 - 2<x, y>`` (a scale such as ``-1/(2 s^2)`` is folded
into the right factor), clamp them at ``>= 0`` and then apply the kernel's profile element-wise, in place where
autograd allows. A one-width RBF Gram matrix thus costs one matmul plus two passes over ``[N, M]`` (clamp, exp);
each further width or alpha adds about three. ``gram(x, x)`` with the *same* tensor object takes a fast path: the
norms are computed once and the self-distances on the diagonal are set to exactly zero.

Numerics: ``|x|^2 + |y|^2 - 2<x, y>`` loses precision for nearby points (an absolute error of about
``eps_dtype * |x|^2``); use float32 or float64 features, not half precision. Gradients are finite everywhere,
including at identical points (the energy kernel uses a clamped square root).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .errors import ConfigError
from .interfaces import Kernel

__all__ = [
    "EnergyKernel",
    "LinearKernel",
    "PolyKernel",
    "RBFKernel",
    "RQKernel",
    "sq_dists",
]


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"kernels take features of shape [N, D]; got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} and {y.shape[1]}")


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _augment(x: Tensor, xn: Tensor, left: bool, scale: float = 1.0) -> Tensor:
    """``[x, |x|^2, 1, 0...]`` (left) or ``scale * [-2x, 1, |x|^2, 0...]`` (right), padded to a multiple of 8
    columns so that ``left(x) @ right(y).T = scale * |x - y|^2``."""
    n, d = x.shape
    width = -(-(d + 2) // 8) * 8
    out = x.new_zeros(n, width)
    if left:
        out[:, :d] = x
        out[:, d] = xn
        out[:, d + 1] = 1.0
    else:
        out[:, :d] = (-2.0 * scale) * x
        out[:, d] = scale
        out[:, d + 1] = scale * xn
    return out


def sq_dists(x: Tensor, y: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """Pairwise squared Euclidean distances times ``scale``, ``scale * |x_i - y_j|^2`` (``[N, M]``), clamped to
    the sign of ``scale`` (``>= 0`` for the default ``scale=1``).

    One matrix product of augmented features (the scale is folded into it, which saves a pass over ``[N, M]``);
    ``y=None`` or ``y is x`` reuses the norms and sets the diagonal to exactly zero. The result is a fresh tensor
    the caller may modify in place.
    """
    if scale == 0.0:
        raise ValueError("scale must be non-zero")
    d = _raw_sq_dists(x, y, scale)
    return d.clamp_min_(0.0) if scale > 0 else d.clamp_max_(0.0)


def _raw_sq_dists(x: Tensor, y: Tensor | None, scale: float = 1.0) -> Tensor:
    """:func:`sq_dists` before the clamp (entries may be slightly negative through rounding)."""
    same = y is None or y is x
    y = x if y is None else y
    _check_pair(x, y)
    xn = x.square().sum(1)
    yn = xn if same else y.square().sum(1)
    d = _augment(x, xn, left=True) @ _augment(y, yn, left=False, scale=scale).T
    if same:
        d.diagonal().zero_()
    return d


def _safe_sqrt(v: Tensor, inplace: bool = False) -> Tensor:
    """``sqrt(v)`` for ``v >= 0`` with a finite gradient at 0 (the smallest normal number of the dtype is used as a
    floor: the value changes by at most ``sqrt(tiny)``, about 1e-19 in float32, and the gradient at 0 is 0).
    ``inplace=True`` overwrites ``v`` (only for a fresh tensor nobody else holds)."""
    tiny = torch.finfo(v.dtype).tiny
    return (v.clamp_min_(tiny) if inplace else v.clamp_min(tiny)).sqrt_()


def _positive_list(values: list[float] | tuple[float, ...] | float, what: str) -> list[float]:
    if isinstance(values, (int, float)):
        values = [values]
    out = [float(v) for v in values]
    if not out:
        raise ConfigError(f"{what} must hold at least one value.")
    if any(not (v > 0.0) for v in out):
        raise ConfigError(f"{what} must all be positive numbers; got {out}.")
    return out


class LinearKernel(Kernel):
    """``k(a, b) = <a, b>``. Divergences use mean embeddings for it and never build a Gram matrix."""

    is_linear = True

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """``x @ y.T``: ``[N, D]``, ``[M, D]`` -> ``[N, M]``."""
        _check_pair(x, y)
        return x @ y.T

    def diag(self, x: Tensor) -> Tensor:
        """``|x_i|^2`` (``[N]``)."""
        return x.square().sum(1)

    def __repr__(self) -> str:
        return "LinearKernel()"


class RBFKernel(Kernel):
    """Gaussian kernel, or an unweighted sum of Gaussians of several widths.

    ``convention="std"`` (default): ``k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))`` with ``s`` a standard deviation
    (bandwidth), as in the MMD-GAN code of Li et al. 2017 (``sigmas=[1, 2, 4, 8, 16]``) and of Binkowski et al. 2018
    (``mix_rbf``, ``sigmas=[2, 5, 10, 20, 40, 80]``).

    ``convention="variance"``: ``k(a, b) = sum_s exp(-|a - b|^2 / (2 s))`` with ``s`` a *variance*, as in the GMMN
    code of Li, Swersky & Zemel 2015 (``[2, 5, 10, 20, 40, 80]`` on MNIST). The same list therefore means very
    different widths under the two conventions: variance ``s`` equals std ``sqrt(s)``.

    Args:
        sigmas: the widths (one value is a single Gaussian), all positive.
        convention: ``"std"`` or ``"variance"`` (see above).

    ``diag`` is ``len(sigmas)``; ``k`` is bounded by it.
    """

    def __init__(self, sigmas: list[float] = [1.0], convention: Literal["std", "variance"] = "std") -> None:  # noqa: B006
        self.sigmas = _positive_list(sigmas, "rbf sigmas")
        if convention not in ("std", "variance"):
            raise ConfigError(f"rbf convention must be 'std' or 'variance'; got {convention!r}.")
        self.convention = convention
        # exp(coef * d) for each width, d the squared distance
        self._coefs = [-0.5 / (s * s if convention == "std" else s) for s in self.sigmas]

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """``[N, D]``, ``[M, D]`` -> ``[N, M]``."""
        coefs = self._coefs
        e = sq_dists(x, y, scale=coefs[0])  # coefs[0] * |x - y|^2 <= 0
        if len(coefs) == 1:
            return e.exp_()
        ratios = [c / coefs[0] for c in coefs[1:]]
        if _needs_grad(x, y):
            # each exp saves its output for backward, so the sum is built out of place
            out = e.exp() + torch.mul(e, ratios[0]).exp_()
            for r in ratios[1:]:
                out.add_(torch.mul(e, r).exp_())
            return out
        out = e.exp()
        tmp = torch.empty_like(e)
        for r in ratios:
            out.add_(torch.mul(e, r, out=tmp).exp_())
        return out

    def diag(self, x: Tensor) -> Tensor:
        """``len(sigmas)`` for every row (``[N]``)."""
        return x.new_full((x.shape[0],), float(len(self.sigmas)))

    def __repr__(self) -> str:
        return f"RBFKernel(sigmas={self.sigmas}, convention={self.convention!r})"


class RQKernel(Kernel):
    """Rational-quadratic mixture plus an optional linear term:
    ``k(a, b) = sum_alpha (1 + |a - b|^2 / (2 alpha))^(-alpha) + c <a, b>``.

    The defaults (``alphas=[0.2, 0.5, 1, 2, 5]``) are the mixture of the "rq*" kernel of Binkowski et al. 2018;
    the paper's rq* adds the linear term with ``linear_weight=1``. The official code's ``mix_rq_1dot`` (used by all
    its launch scripts) is instead ``alphas=[0.1, 1, 10]`` with ``linear_weight=1``. Each term tends to a Gaussian
    ``exp(-|a - b|^2 / 2)`` as ``alpha -> inf``; small alphas give heavy tails.

    Args:
        alphas: shape parameters, all positive.
        linear_weight: ``c >= 0``, the weight of ``<a, b>`` (0 drops the term and its extra matmul).
    """

    def __init__(self, alphas: list[float] = [0.2, 0.5, 1.0, 2.0, 5.0], linear_weight: float = 0.0) -> None:  # noqa: B006
        self.alphas = _positive_list(alphas, "rq alphas")
        if not linear_weight >= 0.0:
            raise ConfigError(f"rq linear_weight must be >= 0 to keep the kernel positive definite; got {linear_weight}.")
        self.linear_weight = float(linear_weight)

    def _dists_and_dot(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.linear_weight == 0.0:
            return sq_dists(x, y), None
        _check_pair(x, y)
        same = y is x
        dot = x @ y.T
        xn = x.square().sum(1)
        yn = xn if same else y.square().sum(1)
        d = torch.add(xn[:, None], dot, alpha=-2.0).add_(yn[None, :])
        if same:
            d.diagonal().zero_()
        return d.clamp_min_(0.0), dot

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """``[N, D]``, ``[M, D]`` -> ``[N, M]``."""
        d, dot = self._dists_and_dot(x, y)
        grad = _needs_grad(x, y)
        # (1 + d / (2a))^(-a) = exp(-a * log1p(d / (2a)))
        terms = (torch.mul(d, 0.5 / a).log1p_().mul_(-a).exp_() for a in self.alphas)
        out = next(terms)
        if grad:  # exp_ saves its output, so accumulate out of place
            for t in terms:
                out = out + t
            return out if dot is None else out + self.linear_weight * dot
        for t in terms:
            out.add_(t)
        if dot is not None:
            out.add_(dot, alpha=self.linear_weight)
        return out

    def diag(self, x: Tensor) -> Tensor:
        """``len(alphas) + c |x_i|^2`` (``[N]``)."""
        return len(self.alphas) + self.linear_weight * x.square().sum(1)

    def __repr__(self) -> str:
        return f"RQKernel(alphas={self.alphas}, linear_weight={self.linear_weight})"


class EnergyKernel(Kernel):
    """Distance kernel ``k(a, b) = |a| + |b| - |a - b|``.

    The MMD^2 under this kernel is the energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Binkowski et al.
    2018 relate it to the Cramer-GAN critic). The square roots are clamped below by the dtype's smallest normal
    number, so values are exact to ~1e-19 (float32) and gradients are finite (zero) at coincident points and at 0.
    """

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """``[N, D]``, ``[M, D]`` -> ``[N, M]``."""
        same = y is x
        dist = _safe_sqrt(_raw_sq_dists(x, y), inplace=True)  # its floor also clamps rounding below 0
        xn = _safe_sqrt(x.square().sum(1))
        yn = xn if same else _safe_sqrt(y.square().sum(1))
        return torch.sub(xn[:, None], dist).add_(yn[None, :])

    def diag(self, x: Tensor) -> Tensor:
        """``2 |x_i|`` (``[N]``)."""
        return 2.0 * _safe_sqrt(x.square().sum(1))

    def __repr__(self) -> str:
        return "EnergyKernel()"


class PolyKernel(Kernel):
    """Polynomial kernel ``k(a, b) = (gamma <a, b> + coef0)^degree``.

    The defaults give the kernel of the Kernel Inception Distance (Binkowski et al. 2018):
    ``(<a, b> / D + 1)^3`` with ``D`` the feature dimension (``gamma=None`` means ``1 / D``, as scikit-learn's
    ``polynomial_kernel``).

    Args:
        degree: a positive integer.
        gamma: the scale of the inner product, or None for ``1 / D``.
        coef0: the additive constant (``>= 0`` keeps the kernel positive definite).
    """

    def __init__(self, degree: int = 3, gamma: float | None = None, coef0: float = 1.0) -> None:
        if int(degree) != degree or degree < 1:
            raise ConfigError(f"poly degree must be a positive integer; got {degree!r}.")
        if gamma is not None and not gamma > 0:
            raise ConfigError(f"poly gamma must be positive (or unset for 1/D); got {gamma!r}.")
        self.degree = int(degree)
        self.gamma = None if gamma is None else float(gamma)
        self.coef0 = float(coef0)

    def _gamma(self, x: Tensor) -> float:
        return self.gamma if self.gamma is not None else 1.0 / x.shape[1]

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """``[N, D]``, ``[M, D]`` -> ``[N, M]``."""
        _check_pair(x, y)
        g = (x * self._gamma(x)) @ y.T
        g.add_(self.coef0)
        if self.degree == 1:
            return g
        return g.pow(self.degree) if _needs_grad(x, y) else g.pow_(self.degree)

    def diag(self, x: Tensor) -> Tensor:
        """``(gamma |x_i|^2 + coef0)^degree`` (``[N]``)."""
        return (self._gamma(x) * x.square().sum(1) + self.coef0).pow(self.degree)

    def __repr__(self) -> str:
        return f"PolyKernel(degree={self.degree}, gamma={self.gamma}, coef0={self.coef0})"
