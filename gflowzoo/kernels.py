"""Reference kernels on feature vectors: linear, Gaussian (RBF) mixture, rational quadratic, energy, polynomial.

Every kernel takes features ``x`` ``[N, D]`` and ``y`` ``[M, D]`` and returns the Gram matrix ``[N, M]`` in the
input's dtype and on its device, with a closed-form :meth:`~gflowzoo.interfaces.Kernel.diag`.

Speed: the distance-based kernels get all pairwise squared distances from **one** ``addmm``,
``|x|^2 - 2<x, y>`` (a scale such as ``-1/(2 s^2)`` folded in), plus a row add of ``|y|^2``, clamp them at ``>= 0``
and then apply the kernel's profile element-wise, in place where autograd allows. A one-width RBF Gram matrix thus
costs one matmul plus three passes over ``[N, M]`` (add, clamp, exp); each further width or alpha adds about three.
Without autograd, mixtures are summed block of rows by block of rows in cache-sized scratch (no ``[N, M]``
temporaries), and on a CPU exponents are clamped at :func:`exp_floor` where they reach it (a subnormal ``exp`` is
13-40x slower). :func:`gflowzoo.divergences.mmd2` evaluates large Gram blocks in row tiles. ``gram(x, x)`` with
the *same* tensor object takes a fast path: the norms are computed once and the self-distances on the diagonal are
set to exactly zero.

Numerics: ``|x|^2 + |y|^2 - 2<x, y>`` loses precision for nearby points (an absolute error of about
``eps_dtype * |x|^2``); 16-bit features (from bf16 autocast) are therefore computed in float32, outside autocast
(:func:`as_float32`, :func:`float32_region`). Gradients are finite everywhere, including at identical points (the
energy kernel uses a clamped square root).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor

from .errors import ConfigError
from .interfaces import Kernel, WidthAwareKernel

__all__ = [
    "EnergyKernel",
    "LinearKernel",
    "PolyKernel",
    "RBFKernel",
    "RQKernel",
    "WidthRBF",
    "as_float32",
    "exp_floor",
    "float32_region",
    "sq_dists",
]


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"kernels take features of shape [N, D]; got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} and {y.shape[1]}")


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


_HALF = (torch.float16, torch.bfloat16)


def as_float32(*tensors: Tensor) -> list[Tensor]:
    """The tensors, with 16-bit ones (features from a ``run.amp = "bf16"`` autocast region) converted to float32;
    a tensor given twice stays one object (so ``gram(x, x)`` keeps its same-tensor fast path)."""
    done: dict[int, Tensor] = {}
    out = []
    for t in tensors:
        if t.dtype in _HALF:
            t = done.setdefault(id(t), t.float())
        out.append(t)
    return out


@contextlib.contextmanager
def float32_region(device: torch.device) -> Iterator[None]:
    """Leave autocast (if on for ``device``'s type) so that kernel arithmetic runs in the inputs' precision: squared
    distances by ``|x|^2 + |y|^2 - 2<x, y>`` in bfloat16 would have errors of about 1 % of ``|x|^2``."""
    if torch.is_autocast_enabled(device.type):
        with torch.autocast(device_type=device.type, enabled=False):
            yield
    else:
        yield


def sq_dists(x: Tensor, y: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """Pairwise squared Euclidean distances times ``scale``, ``scale * |x_i - y_j|^2`` (``[N, M]``), clamped to
    the sign of ``scale`` (``>= 0`` for the default ``scale=1``).

    One ``addmm`` (``scale |x_i|^2 - 2 scale <x_i, y_j>``, the scale folded in, which saves a pass over ``[N, M]``)
    and one in-place row add of ``scale |y_j|^2``; ``y=None`` or ``y is x`` reuses the norms and sets the diagonal to
    exactly zero. The result is a fresh tensor the caller may modify in place. 16-bit inputs (from bf16 autocast)
    are computed in float32, outside autocast, and give a float32 result.
    """
    return _clamped_sq_dists(x, y, scale, for_exp=False)


def exp_floor(dtype: torch.dtype) -> float:
    """The most negative exponent kernels pass to ``exp``: ``log(e * tiny)``, ``tiny`` the smallest normal number of
    ``dtype`` (-86.3 for float32, -707.4 for float64).

    Below it ``exp`` would give a subnormal number or 0, and a CPU's vectorised ``exp`` takes a slow path there (13
    to 40 times slower, measured on AVX2): far-apart points under a narrow Gaussian hit it all the time. Clamping the
    exponent changes a kernel value by less than ``e * tiny`` (3e-38 in float32) and its gradient there to 0."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


def _clamped_sq_dists(x: Tensor, y: Tensor | None, scale: float, for_exp: bool) -> Tensor:
    """:func:`sq_dists`; with ``for_exp`` (``scale < 0``) also clamped below at :func:`exp_floor`, in the same
    pass, ready for ``exp``."""
    if scale == 0.0:
        raise ValueError("scale must be non-zero")
    with float32_region(x.device):
        if x.dtype in _HALF or (y is not None and y.dtype in _HALF):
            x, y = as_float32(x, x if y is None else y)
        d = _raw_sq_dists(x, y, scale)
        if scale > 0:
            return d.clamp_min_(0.0)
        return d.clamp_(exp_floor(d.dtype), 0.0) if for_exp else d.clamp_max_(0.0)


def _raw_sq_dists(x: Tensor, y: Tensor | None, scale: float = 1.0) -> Tensor:
    """:func:`sq_dists` before the clamp (entries may be slightly negative through rounding)."""
    same = y is None or y is x
    y = x if y is None else y
    _check_pair(x, y)
    xn = x.square().sum(1)
    yn = xn if same else y.square().sum(1)
    if scale != 1.0:
        xn = xn * scale
        yn = xn if same else yn * scale
    # measured on a CPU, with and without autograd, from 64 x 64 to 4096 x 4096 Gram matrices: as fast as or faster
    # than one product of augmented features [x, |x|^2, 1] @ [-2y, 1, |y|^2]^T, whose assembly costs more than the
    # extra pass for small matrices and under autograd
    d = torch.addmm(xn[:, None], x, y.T, alpha=-2.0 * scale)
    d.add_(yn[None, :])
    if same:
        d.diagonal().zero_()
    return d


#: Entries per block of rows in :func:`_rowwise_in_place` (two float32 scratch blocks of 256 KiB stay in cache).
_BLOCK_ENTRIES = 1 << 16


def _rowwise_in_place(d: Tensor, fn: Callable[[Tensor, Tensor, Tensor], None]) -> Tensor:
    """Overwrite ``d`` (``[N, M]``, contiguous, not needed by autograd) with a mixture computed from it, one block
    of rows at a time: ``fn(rows, acc, tmp)`` writes the mixture of ``rows`` into ``acc`` (``tmp`` is scratch of the
    same shape). No ``[N, M]`` temporary is allocated: on a CPU a fresh large tensor costs page faults (the C
    allocator hands freed large blocks back to the system), about a third of a 5-term mixture's time."""
    n, m = d.shape
    rows = max(1, _BLOCK_ENTRIES // max(m, 1))
    if rows >= n:
        acc, tmp = torch.empty_like(d), torch.empty_like(d)
        fn(d, acc, tmp)
        return acc
    acc = d.new_empty(rows, m)
    tmp = d.new_empty(rows, m)
    for i in range(0, n, rows):
        block = d[i : i + rows]
        b = block.shape[0]
        fn(block, acc[:b], tmp[:b])
        block.copy_(acc[:b])
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


class RBFKernel(Kernel, WidthAwareKernel):
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
        # exp(coef * d) for each width, d the squared distance (the narrowest width first)
        self._coefs = sorted(-0.5 / (s * s if convention == "std" else s) for s in self.sigmas)

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """``[N, D]``, ``[M, D]`` -> ``[N, M]``."""
        coefs = self._coefs
        if len(coefs) == 1:  # clamped to [exp_floor, 0] in the distance pass
            return _clamped_sq_dists(x, y, coefs[0], for_exp=True).exp_()
        e = sq_dists(x, y, scale=coefs[0])  # coefs[0] * |x - y|^2 <= 0
        ratios = [1.0] + [c / coefs[0] for c in coefs[1:]]  # decreasing, in (0, 1]
        # an exponent is clamped at the floor only where it can reach it: on a CPU (a GPU's exp has no slow path),
        # for the terms whose lowest exponent lies below the floor (a prefix of the narrowest widths)
        floor = exp_floor(e.dtype) if e.device.type == "cpu" and e.numel() else None
        lowest = float(e.detach().min()) if floor is not None else 0.0
        floors = [floor if floor is not None and r * lowest < floor else None for r in ratios]
        if _needs_grad(x, y):
            # each exp saves its output for backward, so the sum is built out of place
            out = _exp_term(e, 1.0, floors[0]) + _exp_term(e, ratios[1], floors[1])
            for r, f in zip(ratios[2:], floors[2:]):
                out.add_(_exp_term(e, r, f))
            return out

        def mixture(e_rows: Tensor, acc: Tensor, tmp: Tensor) -> None:
            (torch.exp(e_rows, out=acc) if floors[0] is None else torch.clamp_min(e_rows, floors[0], out=acc).exp_())
            for r, f in zip(ratios[1:], floors[1:]):
                torch.mul(e_rows, r, out=tmp)
                acc.add_((tmp if f is None else tmp.clamp_min_(f)).exp_())

        return _rowwise_in_place(e, mixture)

    def diag(self, x: Tensor) -> Tensor:
        """``len(sigmas)`` for every row (``[N]``)."""
        return x.new_full((x.shape[0],), float(len(self.sigmas)))

    def at_width(self, h: Tensor) -> WidthRBF:
        """The same mixture with every width measured in units of ``h`` (a scalar tensor, see
        :class:`~gflowzoo.interfaces.WidthAwareKernel`): std ``s`` becomes ``s * h`` (variance ``s``:
        ``sqrt(s) * h``). The default ``sigmas=[1.0]`` gives the Gaussian of width ``h``."""
        stds = self.sigmas if self.convention == "std" else [math.sqrt(s) for s in self.sigmas]
        return WidthRBF(h, stds)

    def __repr__(self) -> str:
        return f"RBFKernel(sigmas={self.sigmas}, convention={self.convention!r})"


class WidthRBF(Kernel):
    """``k(a, b) = sum_s exp(-|a - b|^2 / (2 (s h)^2))`` with ``h`` a (differentiable) scalar tensor and ``s`` in
    ``scales`` (default one Gaussian of width ``h``): :meth:`RBFKernel.at_width`. Exponents are floored at
    :func:`exp_floor`."""

    def __init__(self, h: Tensor, scales: list[float] | tuple[float, ...] = (1.0,)) -> None:
        self.h = h
        self.scales = [float(s) for s in scales]

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """``[N, D]``, ``[M, D]`` -> ``[N, M]``."""
        d = sq_dists(x, y)
        h = self.h.to(x.dtype)
        floor = exp_floor(x.dtype)
        out = None
        for s in self.scales:
            hs = h if s == 1.0 else h * s
            term = torch.exp((-d / (2 * hs**2)).clamp_min(floor))
            out = term if out is None else out + term
        return out

    def diag(self, x: Tensor) -> Tensor:
        """``len(scales)`` for every row (``[N]``)."""
        return x.new_full((x.shape[0],), float(len(self.scales)))

    def __repr__(self) -> str:
        return f"WidthRBF(h={self.h!r}, scales={self.scales})"


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
        if grad:  # exp_ saves its output, so accumulate out of place
            terms = (_rq_term(d, a, grad) for a in self.alphas)
            out = next(terms)
            for t in terms:
                out = out + t
            return out if dot is None else out + self.linear_weight * dot
        alphas = self.alphas

        def mixture(d_rows: Tensor, acc: Tensor, tmp: Tensor) -> None:
            for i, a in enumerate(alphas):
                _rq_term(d_rows, a, False, out=acc if i == 0 else tmp)
                if i:
                    acc.add_(tmp)

        out = _rowwise_in_place(d, mixture)
        if dot is not None:
            out.add_(dot, alpha=self.linear_weight)
        return out

    def diag(self, x: Tensor) -> Tensor:
        """``len(alphas) + c |x_i|^2`` (``[N]``)."""
        return len(self.alphas) + self.linear_weight * x.square().sum(1)

    def __repr__(self) -> str:
        return f"RQKernel(alphas={self.alphas}, linear_weight={self.linear_weight})"


def _exp_term(e: Tensor, r: float, floor: float | None) -> Tensor:
    """``exp(max(r * e, floor))`` as a fresh tensor (``floor`` None: no clamp), safe under autograd."""
    t = e if r == 1.0 else torch.mul(e, r)
    if floor is not None:
        t = t.clamp_min(floor) if t is e else t.clamp_min_(floor)
    return t.exp() if t is e else t.exp_()


#: alphas whose power ``base^(-alpha)`` torch computes with a cheap special case (rsqrt, reciprocal, 1/x^2)
_FAST_POWERS = (0.5, 1.0, 2.0)


def _rq_term(d: Tensor, a: float, grad: bool, out: Tensor | None = None) -> Tensor:
    """``(1 + d / (2a))^(-a)`` for squared distances ``d >= 0`` (a fresh tensor, or written into ``out``).

    ``alpha`` in :data:`_FAST_POWERS`: one ``pow``; otherwise ``exp(-a * log(1 + d / (2a)))``. ``log`` of the base
    (not ``log1p`` of ``d / (2a)``) is about 3x cheaper on a CPU; it rounds the base to the dtype first, a relative
    error of about ``alpha * eps / 2`` in the term, below that of ``d`` itself."""
    base = torch.mul(d, 0.5 / a, out=out) if out is not None else torch.mul(d, 0.5 / a)
    base.add_(1.0)
    if a in _FAST_POWERS:
        return base.pow(-a) if grad else base.pow_(-a)
    t = torch.log(base).mul_(-a) if grad else base.log_().mul_(-a)
    if t.device.type == "cpu":  # see exp_floor (a GPU's exp has no slow path)
        t.clamp_min_(exp_floor(t.dtype))
    return t.exp_()


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
