"""Reference divergences between a target P (features ``fx`` ``[n, D]``) and a source Q (features ``fy`` ``[m, D]``):
the maximum mean discrepancy (:class:`MMD`, plus the plain functions :func:`mmd2` and :func:`witness`) and the KL
approximate lower bound (:class:`KALE`).

Sign convention (as in :mod:`gflowzoo.interfaces`): a witness is large where P has more mass than Q, and particles
of Q move **up** it.

A kernel may be given as a :class:`~gflowzoo.interfaces.Kernel` or as a registry spec (``"rbf"`` or
``{"name": "rbf", "sigmas": [1, 2]}``), resolved through :func:`gflowzoo.plugins.get_registry` on first use.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import torch
from torch import Tensor

from .errors import ConfigError
from .interfaces import CriticObjective, Divergence, Kernel
from .kernels import as_float32, float32_region

__all__ = ["KALE", "MMD", "KaleSolution", "mmd2", "resolve_kernel", "witness"]

Estimator = Literal["unbiased", "biased", "u-statistic"]
_ESTIMATORS = ("unbiased", "biased", "u-statistic")


def resolve_kernel(kernel: Kernel | str | Mapping[str, Any]) -> Kernel:
    """A :class:`Kernel` as is, or one built from a registry spec (a name or a table with ``name``)."""
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, (str, Mapping)):
        from .plugins import get_registry

        return get_registry().create("kernel", kernel)
    raise ConfigError(f"A kernel must be a kernel name, a table with 'name', or a Kernel; got {kernel!r}.")


def _check_features(fx: Tensor, fy: Tensor) -> tuple[int, int]:
    if fx.ndim != 2 or fy.ndim != 2:
        raise ValueError(f"features must be [N, D]; got {tuple(fx.shape)} and {tuple(fy.shape)}")
    if fx.shape[1] != fy.shape[1]:
        raise ValueError(f"feature dimensions differ: {fx.shape[1]} (target) and {fy.shape[1]} (source)")
    return fx.shape[0], fy.shape[0]


def _check_estimator(estimator: str, n: int | None = None, m: int | None = None) -> None:
    if estimator not in _ESTIMATORS:
        raise ConfigError(f"MMD estimator must be one of {', '.join(map(repr, _ESTIMATORS))}; got {estimator!r}.")
    if n is None or m is None:
        return
    if estimator != "biased" and min(n, m) < 2:
        raise ValueError(f"the {estimator} MMD estimate needs at least 2 samples per set; got {n} and {m}")
    if estimator == "u-statistic" and n != m:
        raise ValueError(f"the u-statistic MMD estimate needs paired samples (n == m); got {n} and {m}")
    if estimator == "biased" and min(n, m) < 1:
        raise ValueError("the MMD estimate needs non-empty sample sets")


def mmd2(fx: Tensor, fy: Tensor, kernel: Kernel | str | Mapping[str, Any], estimator: Estimator = "unbiased") -> Tensor:
    """The squared MMD between samples ``fx`` (``[n, D]``, target P) and ``fy`` (``[m, D]``, source Q); a scalar.

    Estimators (all exact for the given samples):

    * ``"unbiased"``: drops the diagonals of ``Kxx`` and ``Kyy`` and keeps the full cross term (the convention of
      Sutherland's / Binkowski's code and of KID); can be negative.
    * ``"biased"``: the V-statistic ``mean Kxx + mean Kyy - 2 mean Kxy``; never negative for a PSD kernel.
    * ``"u-statistic"``: also drops the paired diagonal of ``Kxy`` (needs ``n == m``).

    For a linear kernel no ``[n, m]`` matrix is formed: with sums ``S`` and sums of squared norms ``Q``,
    ``MMD^2_u = (|S_x|^2 - Q_x)/(n(n-1)) + (|S_y|^2 - Q_y)/(m(m-1)) - 2 <S_x, S_y>/(nm)``, evaluated in the
    equivalent, cancellation-free form ``|mean_x - mean_y|^2 - V_x/(n(n-1)) - V_y/(m(m-1))`` with
    ``V = sum_i |f_i - mean|^2`` (cost ``O((n + m) D)``).

    Other kernels: only sums of the Gram blocks are needed. Blocks above :data:`TILE_ENTRIES` entries are summed in
    row tiles (bounded memory), and for ``Kxx`` and ``Kyy`` only the upper triangle is evaluated (they are
    symmetric); the result equals the one-matrix computation up to float rounding, and gradients flow as usual.

    16-bit features (from ``run.amp = "bf16"``) are converted to float32 and the estimate is computed outside
    autocast (as in :func:`witness`).
    """
    kernel = resolve_kernel(kernel)
    n, m = _check_features(fx, fy)
    _check_estimator(estimator, n, m)
    with float32_region(fx.device):
        return _mmd2(*as_float32(fx, fy), kernel, estimator)


def _mmd2(fx: Tensor, fy: Tensor, kernel: Kernel, estimator: str) -> Tensor:
    n, m = fx.shape[0], fy.shape[0]
    if kernel.is_linear:
        return _linear_mmd2(fx, fy, estimator)
    biased = estimator == "biased"
    xx = _self_sum(kernel, fx, with_diag=biased)
    yy = _self_sum(kernel, fy, with_diag=biased)
    xy = _cross_sum(kernel, fx, fy, drop_paired=estimator == "u-statistic")
    if biased:
        return xx / (n * n) + yy / (m * m) - 2.0 * xy / (n * m)
    xy = xy / (n * m) if estimator == "unbiased" else xy / (n * (n - 1))
    return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2.0 * xy


#: Gram blocks of more entries than this are summed in tiles of whole rows of about this many entries (4 MiB in
#: float32): on a CPU the tile and the kernel's temporaries stay in cache and are reused by the allocator (a fresh
#: 64 MiB matrix costs about as much in page faults as a 4096 x 4096 x 128 matrix product), so memory is bounded and
#: large blocks run near the matrix-multiply rate (``benchmarks/bench_kernels.py``).
TILE_ENTRIES = 1 << 20
#: The same on a GPU, where every tile costs kernel launches and memory is plentiful: 64 MiB tiles (float32).
TILE_ENTRIES_CUDA = 1 << 24


def _tile_rows(f: Tensor, cols: int) -> int:
    entries = TILE_ENTRIES if f.device.type == "cpu" else TILE_ENTRIES_CUDA
    return max(1, entries // max(cols, 1))


def _self_sum(kernel: Kernel, f: Tensor, with_diag: bool) -> Tensor:
    """``sum_{i != j} k(f_i, f_j)`` (plus ``sum_i k(f_i, f_i)`` with ``with_diag``) for ``f`` ``[n, D]``; a scalar.

    Small blocks: one Gram matrix. Large ones: row tiles of the upper triangle only (the block is symmetric), so
    the kernel is evaluated on about half the pairs; the diagonal then comes from :meth:`Kernel.diag`."""
    n = f.shape[0]
    rows = _tile_rows(f, n)
    if rows >= n:
        k = kernel.gram(f, f)
        return k.sum() if with_diag else k.sum() - k.diagonal().sum()
    parts = []
    for i in range(0, n, rows):
        k = kernel.gram(f[i : i + rows], f[i:])  # [b, n - i]: a square block on the diagonal, then the upper part
        b = k.shape[0]
        block = k[:, :b]
        parts.append(2.0 * k[:, b:].sum() + (block.sum() - block.diagonal().sum()))
    total = torch.stack(parts).sum()
    return total + kernel.diag(f).sum() if with_diag else total


def _cross_sum(kernel: Kernel, fx: Tensor, fy: Tensor, drop_paired: bool) -> Tensor:
    """``sum_{i, j} k(fx_i, fy_j)``, without the paired terms ``i == j`` when ``drop_paired`` (``n == m``)."""
    n, m = fx.shape[0], fy.shape[0]
    rows = _tile_rows(fx, m)
    if rows >= n:
        k = kernel.gram(fx, fy)
        return k.sum() - k.diagonal().sum() if drop_paired else k.sum()
    parts = []
    for i in range(0, n, rows):
        k = kernel.gram(fx[i : i + rows], fy)
        parts.append(k.sum() - k[:, i : i + rows].diagonal().sum() if drop_paired else k.sum())
    return torch.stack(parts).sum()


def _linear_mmd2(fx: Tensor, fy: Tensor, estimator: str) -> Tensor:
    n, m = fx.shape[0], fy.shape[0]
    mx, my = fx.mean(0), fy.mean(0)
    biased = (mx - my).square().sum()
    if estimator == "biased":
        return biased
    cx, cy = fx - mx, fy - my
    if estimator == "unbiased":
        return biased - cx.square().sum() / (n * (n - 1)) - cy.square().sum() / (m * (m - 1))
    # u-statistic: the paired cross terms <x_i, y_i> are dropped too
    return biased - (cx - cy).square().sum() / (n * (n - 1))


def witness(fz: Tensor, fx: Tensor, fy: Tensor, kernel: Kernel | str | Mapping[str, Any]) -> Tensor:
    """The (unnormalised) MMD witness ``f(z) = mean_i k(z, x_i) - mean_j k(z, y_j)`` at ``fz`` (``[K, D]``),
    with ``fx`` the target P and ``fy`` the source Q; returns ``[K]``. Linear kernel:
    ``<z, mean fx - mean fy>`` without a Gram matrix. Computed in float32 outside autocast (see :func:`mmd2`)."""
    kernel = resolve_kernel(kernel)
    _check_features(fx, fy)
    _check_features(fz, fx)
    with float32_region(fz.device):
        fz, fx, fy = as_float32(fz, fx, fy)
        if kernel.is_linear:
            return fz @ (fx.mean(0) - fy.mean(0))
        return kernel.gram(fz, fx).mean(1) - kernel.gram(fz, fy).mean(1)


class _KernelHolder(Divergence):
    """Holds a kernel or a spec, resolved lazily on first use of :attr:`kernel`."""

    #: the ``kernel`` option is a component: the session builds it with its registry (gflowzoo.registry)
    component_options: ClassVar[dict[str, str]] = {"kernel": "kernel"}
    _kernel: Kernel | None = None
    _kernel_spec: Any = None

    def with_kernel(self, kernel: Kernel) -> Self:
        """A copy of this divergence (same options) on ``kernel`` (see :meth:`Divergence.with_kernel`; DMMD takes one
        per noise level). Caches are not shared with the copy."""
        other = super().with_kernel(kernel)
        if hasattr(other, "_cache"):
            other._cache = None
        return other

    @property
    def kernel(self) -> Kernel:  # type: ignore[override]
        if self._kernel is None:
            self._kernel = resolve_kernel(self._kernel_spec)
        return self._kernel

    @kernel.setter
    def kernel(self, value: Kernel | str | Mapping[str, Any]) -> None:
        if not isinstance(value, (Kernel, str, Mapping)):
            raise ConfigError(f"A kernel must be a kernel name, a table with 'name', or a Kernel; got {value!r}.")
        self._kernel_spec = value
        self._kernel = value if isinstance(value, Kernel) else None


class MMD(_KernelHolder):
    """Squared maximum mean discrepancy with a fixed kernel (see :func:`mmd2` for the estimators).

    Args:
        kernel: a Kernel, or a registry spec (default ``"rbf"``, a unit-width Gaussian).
        estimator: ``"unbiased"`` (default), ``"biased"`` or ``"u-statistic"``.

    :meth:`estimate` is ``MMD^2`` (not its square root; the unbiased estimate can be slightly negative).
    :meth:`witness` is ``mean_i k(z, x_i) - mean_j k(z, y_j)``: particles of Q ascending it follow the MMD flow
    ``dZ = grad f(Z)`` that decreases ``MMD^2 / 2``.
    """

    def __init__(self, kernel: Kernel | str | Mapping[str, Any] = "rbf", estimator: Estimator = "unbiased") -> None:
        _check_estimator(estimator)
        super().__init__(kernel)  # type: ignore[arg-type]
        self.estimator = estimator

    def estimate(self, fx: Tensor, fy: Tensor) -> Tensor:
        """``MMD^2`` between ``fx`` (``[n, D]``, target) and ``fy`` (``[m, D]``, source); a scalar."""
        return mmd2(fx, fy, self.kernel, self.estimator)

    def witness(self, fz: Tensor, fx: Tensor, fy: Tensor) -> Tensor:
        """The witness at ``fz`` (``[K, D]``); returns ``[K]``."""
        return witness(fz, fx, fy, self.kernel)

    @staticmethod
    def fold_estimator(spec: Any, estimator: str | None) -> Any:
        """The ``divergence`` spec ``spec`` of a method config with ``estimator`` set as its ``estimator`` option.

        For methods that had an ``estimator`` option before they had a ``divergence`` field (``gmmn``, ``mmdgan``):
        their saved configs still carry it, so they keep it as an older spelling of ``divergence.estimator`` that
        wins when set. ``None`` (not set) leaves ``spec`` as it is; otherwise ``spec`` must name ``mmd``."""
        if estimator is None or not isinstance(spec, (str, Mapping)):
            return spec
        name = spec if isinstance(spec, str) else spec.get("name")
        if name != "mmd":
            raise ConfigError(
                f"estimator = {estimator!r} (the older spelling of divergence.estimator) applies to the 'mmd' "
                f"divergence only, and divergence is {name!r}: remove estimator."
            )
        _check_estimator(estimator)
        options = {} if isinstance(spec, str) else {k: v for k, v in spec.items() if k != "name"}
        return {"name": "mmd", **options, "estimator": estimator}

    def __repr__(self) -> str:
        return f"MMD(kernel={self._kernel_spec!r}, estimator={self.estimator!r})"


# -- KALE ----------------------------------------------------------------------------------------------------------


def _within_noise(new: float, old: float) -> bool:
    """True when ``new`` is not worse than ``old`` beyond float64 rounding (near the optimum the objective cannot
    resolve the Newton step's gain, so a full step is accepted there)."""
    return new >= old - 1e-13 * (1.0 + abs(old))


def _damped_newton(
    state: Any, value: float, newton: Callable[[Any], tuple[float, Any]], max_iter: int, tol: float
) -> tuple[Any, float, int, bool]:
    """Maximise a concave objective by Newton steps with a backtracking (Armijo) line search.

    ``newton(state)`` returns ``(slope, trial)``: the directional derivative along the Newton direction (the
    squared Newton decrement) and ``trial(t) -> (value, state)`` for a step of length ``t``. Stops after the
    step whose half decrement is below ``tol`` (or below float64 resolution): that last step is taken in full,
    so the result is much more precise than ``tol`` suggests. Returns ``(state, value, iterations, converged)``.
    """
    for it in range(1, max_iter + 1):
        slope, trial = newton(state)
        final = slope / 2 <= max(tol, 1e-15 * (1.0 + abs(value)))
        t = 1.0
        while True:
            new_value, new_state = trial(t)
            if new_value >= value + 0.25 * t * slope or (final and _within_noise(new_value, value)):
                break
            t /= 2
            if t < 1e-12:  # no ascent resolvable in this precision
                return state, value, it, final
        state, value = new_state, new_value
        if final:
            return state, value, it, True
    return state, value, max_iter, False


@dataclass
class KaleSolution:
    """The maximiser of the KALE inner problem.

    ``coef`` is ``[n + m]`` (representer coefficients on ``centres = cat([fx, fy])``) or ``[D]`` (the primal weight
    vector ``w`` of a linear kernel, ``centres`` None); detached, float64. ``objective`` is the inner maximum
    ``J*`` (KALE is ``(1 + lam) * J*``); ``iterations`` the Newton steps taken.
    """

    coef: Tensor
    centres: Tensor | None
    objective: float
    iterations: int
    converged: bool


class KALE(_KernelHolder, CriticObjective):
    """The KL approximate lower bound of Glaser, Arbel & Gretton (2021), with the source Q = ``fy`` (particles)
    and the target P = ``fx`` (data):

    ``KALE(Q || P) = (1 + lam) * max_h J(h)``, ``J(h) = 1 + mean_Q h - mean_P exp(h) - (lam / 2) |h|_H^2``.

    ``J(0) = 0``, so the estimate is ``>= 0``; it is 0 when the two samples coincide, and tends to ``KL(Q || P)``
    as ``lam -> 0`` for a rich kernel. The maximiser ``h*`` approximates ``log dQ/dP``: it is large where Q has
    more mass than P.

    Solver: the concave inner problem is solved by damped Newton (backtracking line search) in float64 on the
    representer coefficients, ``h = sum_i alpha_i k(., z_i)`` over all ``n + m`` points (``O((n + m)^3)`` per
    step); for a linear kernel on the primal weights ``w`` in ``R^D`` (``h = <w, .>``, ``O(n D^2 + D^3)``).
    It stops after the step whose Newton decrement ``grad J . delta / 2`` (an estimate of the gap ``J* - J``)
    falls below ``tol``, or after ``max_iter`` steps; with quadratic convergence the returned coefficients are
    then accurate to far better than ``sqrt(tol)``.

    Signs: :meth:`witness` returns ``-(1 + lam) h*(z)``, large where P has more mass than Q, so that Q-particles
    moving up it follow the KALE flow ``dZ = -(1 + lam) grad h*(Z)`` (the first variation of KALE in Q is
    ``(1 + lam) h*``).

    Gradients: :meth:`estimate` is differentiable in ``fx`` and ``fy`` by the envelope theorem: the optimal
    coefficients are detached and ``J`` is re-evaluated with the features (``dJ*/dalpha = 0`` at the optimum).

    Args:
        kernel: a Kernel or a registry spec (default ``"rbf"``).
        lam: the RKHS regulariser ``lam > 0``.
        max_iter: the most Newton steps.
        tol: the stopping tolerance on the Newton decrement.
    """

    def __init__(
        self,
        kernel: Kernel | str | Mapping[str, Any] = "rbf",
        lam: float = 1.0,
        max_iter: int = 50,
        tol: float = 1e-8,
    ) -> None:
        if not lam > 0:
            raise ConfigError(f"KALE lam must be positive; got {lam!r}.")
        if max_iter < 1:
            raise ConfigError(f"KALE max_iter must be >= 1; got {max_iter!r}.")
        if not tol >= 0:
            raise ConfigError(f"KALE tol must be >= 0; got {tol!r}.")
        super().__init__(kernel)  # type: ignore[arg-type]
        self.lam, self.max_iter, self.tol = float(lam), int(max_iter), float(tol)
        # (weak refs to fx and fy, their versions, the solution): one solve for estimate + witness on one pair
        self._cache: tuple[Any, Any, int, int, KaleSolution] | None = None

    # -- the objective ------------------------------------------------------------------------------------------
    @staticmethod
    def critic_objective(hx: Tensor, hy: Tensor) -> Tensor:
        """``1 + mean_Q h - mean_P exp(h)``: the KALE objective ``J`` without its RKHS penalty, for critic values at
        target points ``hx`` (``[..., n]``) and source points ``hy`` (``[..., m]``), reduced over the last axis.
        :meth:`estimate` is ``(1 + lam)`` times this minus ``(lam / 2) |h|_H^2`` at the solved ``h*``; a method
        that trains its own critic (``dkale``) maximises it directly (its regularisation is its own, ``lam``,
        ``max_iter`` and ``tol`` do not apply there)."""
        return 1.0 + hy.mean(-1) - hx.exp().mean(-1)

    # -- the inner problem ---------------------------------------------------------------------------------------
    def solve(self, fx: Tensor, fy: Tensor) -> KaleSolution:
        """Maximise ``J`` for target ``fx`` (``[n, D]``) and source ``fy`` (``[m, D]``). The last solution is
        cached for the same (unmodified) tensors, so ``estimate`` and ``witness`` on one pair solve once."""
        n, m = _check_features(fx, fy)
        if n < 1 or m < 1:
            raise ValueError("KALE needs non-empty sample sets")
        c = self._cache
        if c is not None and c[0]() is fx and c[1]() is fy and c[2] == fx._version and c[3] == fy._version:
            return c[4]
        with torch.no_grad():
            x = fx.detach().to(torch.float64)
            y = fy.detach().to(torch.float64)
            sol = self._solve_linear(x, y) if self.kernel.is_linear else self._solve_gram(x, y)
        if not sol.converged:
            warnings.warn(
                f"KALE: the inner Newton solve stopped after {sol.iterations} steps without reaching tol={self.tol}; "
                "raise max_iter or lam.", RuntimeWarning, stacklevel=3,
            )
        self._cache = (weakref.ref(fx), weakref.ref(fy), fx._version, fy._version, sol)
        return sol

    def _solve_gram(self, x: Tensor, y: Tensor) -> KaleSolution:
        n, m = x.shape[0], y.shape[0]
        lam = self.lam
        z = torch.cat([x, y])
        k = self.kernel.gram(z, z)
        k = (k + k.T) / 2
        b = torch.cat([z.new_zeros(n), z.new_full((m,), 1.0 / m)])  # the Q-weights
        eye = torch.eye(n + m, dtype=z.dtype, device=z.device)

        def value(ka: Tensor, quad: float) -> float:
            return float(1.0 + ka[n:].mean() - ka[:n].exp().mean() - 0.5 * lam * quad)

        # state: (alpha, K alpha = h at the centres, alpha^T K alpha)
        def newton(state: tuple[Tensor, Tensor, float]) -> tuple[float, Any]:
            alpha, ka, quad = state
            e = torch.cat([ka[:n].exp() / n, z.new_zeros(m)])  # the P-weights times exp(h)
            g = b - e - lam * alpha  # grad J = K g
            # Newton: K (diag(e) K + lam I) delta = K g; solving the bracket alone gives a valid direction
            delta = torch.linalg.solve(e[:, None] * k + lam * eye, g)
            kd = k @ delta
            a_kd, d_kd = float(alpha @ kd), float(delta @ kd)

            def trial(t: float) -> tuple[float, tuple[Tensor, Tensor, float]]:
                new = (alpha + t * delta, ka + t * kd, quad + 2 * t * a_kd + t * t * d_kd)
                return value(new[1], new[2]), new

            return float(g @ kd), trial

        zero = z.new_zeros(n + m)
        state, best, it, ok = _damped_newton((zero, zero, 0.0), value(zero, 0.0), newton, self.max_iter, self.tol)
        return KaleSolution(state[0], z, best, it, ok)

    def _solve_linear(self, x: Tensor, y: Tensor) -> KaleSolution:
        n, d = x.shape
        lam = self.lam
        my = y.mean(0)
        eye = torch.eye(d, dtype=x.dtype, device=x.device)

        def value(w: Tensor) -> float:
            return float(1.0 + w @ my - (x @ w).exp().mean() - 0.5 * lam * (w @ w))

        def newton(w: Tensor) -> tuple[float, Any]:
            e = (x @ w).exp() / n
            grad = my - x.T @ e - lam * w
            delta = torch.linalg.solve((x.T * e) @ x + lam * eye, grad)  # minus the Hessian of J, solved

            def trial(t: float) -> tuple[float, Tensor]:
                new = w + t * delta
                return value(new), new

            return float(grad @ delta), trial

        w0 = x.new_zeros(d)
        w, best, it, ok = _damped_newton(w0, value(w0), newton, self.max_iter, self.tol)
        return KaleSolution(w, None, best, it, ok)

    # -- the Divergence API --------------------------------------------------------------------------------------
    def _h(self, fz: Tensor, sol: KaleSolution, fx: Tensor, fy: Tensor) -> Tensor:
        """``h*`` at ``fz`` (``[K]``), differentiable in ``fz`` and in the centres ``fx``, ``fy``."""
        coef = sol.coef.to(fz.dtype)
        if sol.centres is None:
            return fz @ coef
        return self.kernel.gram(fz, torch.cat([fx, fy]).to(fz.dtype)) @ coef

    def estimate(self, fx: Tensor, fy: Tensor) -> Tensor:
        """``KALE(Q || P)`` for target ``fx`` (``[n, D]``) and source ``fy`` (``[m, D]``); a scalar ``>= 0`` (up to
        rounding), differentiable in both by the envelope theorem."""
        sol = self.solve(fx, fy)
        n = fx.shape[0]
        coef = sol.coef.to(fx.dtype)
        if sol.centres is None:
            hx, hy = fx @ coef, fy @ coef
            norm2 = coef @ coef
        else:
            z = torch.cat([fx, fy])
            kz = self.kernel.gram(z, z)
            h = kz @ coef
            hx, hy = h[:n], h[n:]
            norm2 = coef @ h
        return (1.0 + self.lam) * (self.critic_objective(hx, hy) - 0.5 * self.lam * norm2)

    def witness(self, fz: Tensor, fx: Tensor, fy: Tensor) -> Tensor:
        """``-(1 + lam) h*(z)`` at ``fz`` (``[K, D]``); returns ``[K]``."""
        _check_features(fz, fx)
        sol = self.solve(fx, fy)
        return -(1.0 + self.lam) * self._h(fz, sol, fx, fy)

    def __repr__(self) -> str:
        return f"KALE(kernel={self._kernel_spec!r}, lam={self.lam}, max_iter={self.max_iter}, tol={self.tol})"
