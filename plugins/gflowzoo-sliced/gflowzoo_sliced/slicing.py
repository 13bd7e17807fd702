"""The sliced Riesz-kernel MMD and its gradient, computed by sorting 1-D projections (never a pairwise matrix).

Notation: particles ``x`` ``[N, d]`` (the source Q), data ``y`` ``[M, d]`` (the target P), empirical measures with
equal weights, and the Riesz kernel ``K(a, b) = -||a - b||`` (exponent 1). The squared MMD (a V-statistic) is::

    MMD^2 = 2/(NM) sum_ij |x_i - y_j| - 1/N^2 sum_ik |x_i - x_k| - 1/M^2 sum_jl |y_j - y_l|

(the energy distance). Two facts make it cheap:

* **Slicing.** For ``z`` in R^d and ``xi`` uniform on the unit sphere, ``E |<xi, z>| = ||z|| / c_d`` with
  ``c_d = sqrt(pi) Gamma((d + 1) / 2) / Gamma(d / 2)`` (:func:`sliced_factor`; ``c_1 = 1``, ``c_2 = pi / 2``, about
  ``sqrt(pi d / 2)`` for large d). Hence ``MMD^2 = c_d E_xi[MMD_1D^2(<xi, x>, <xi, y>)]`` and the same holds for the
  gradient in the particles: ``grad_x MMD^2 = c_d E_xi[xi * d/dt MMD_1D^2]``. With ``P`` random directions per step
  the expectation becomes a Monte-Carlo mean (unbiased).
* **Sorting.** In 1-D, ``d/dx_i (MMD_1D^2 / 2) = (2 #{j: y_j < x_i} - M) / (NM) - (2 rank_i - N + 1) / N^2`` with
  ``rank_i`` the 0-based rank of ``x_i`` among the particles (no ties). Both counts come from one sort of the
  ``N + M`` projected values and two running counts, ``O((N + M) log(N + M))`` per direction.

All functions keep the input's dtype and device; in float64 the 1-D gradient equals autograd on the dense formula
to rounding (the tests check it).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["argsort_rows", "mmd1d_grad", "random_directions", "riesz_mmd2_dense", "sliced_factor", "sliced_mmd_grad"]


def sliced_factor(d: int) -> float:
    """``c_d = sqrt(pi) Gamma((d + 1) / 2) / Gamma(d / 2)``: ``||z|| = c_d E|<xi, z>|`` for ``xi`` uniform on the
    sphere of R^d (``d >= 1``)."""
    if d < 1:
        raise ValueError(f"dimension must be >= 1; got {d}")
    return math.exp(0.5 * math.log(math.pi) + math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def random_directions(p: int, d: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu") -> Tensor:
    """``p`` directions uniform on the unit sphere of R^d, ``[p, d]``, drawn on the CPU from ``generator``."""
    xi = torch.randn((p, d), generator=generator, dtype=dtype)
    xi = xi / xi.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return xi.to(device)


def argsort_rows(z: Tensor) -> Tensor:
    """The permutation sorting each row of ``z`` ``[P, L]`` (int64 ``[P, L]``).

    On the CPU, float32 rows are sorted as 64-bit integer keys with numpy: the float's bits made order-preserving in
    the high half, the column index in the low half; numpy's vectorised integer sort is several times faster than
    ``torch.sort`` with indices on one thread. Ties are broken by column (particles before data). Elsewhere (GPU,
    float64): ``torch.sort``.
    """
    if z.device.type != "cpu" or z.dtype != torch.float32 or z.shape[1] >= 2**31:
        return torch.sort(z, dim=1, stable=True).indices
    import numpy as np

    bits = z.contiguous().view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip the magnitude bits -> signed-int order
    keys = (bits.long() << 32) | torch.arange(z.shape[1], dtype=torch.long)
    arr = keys.numpy()
    arr.sort(axis=1)  # in place
    return keys.bitwise_and_(0xFFFFFFFF)


def mmd1d_grad(xp: Tensor, yp: Tensor, with_value: bool = True,
               value_rows: int | None = None) -> tuple[Tensor, Tensor | None]:
    """Per-direction 1-D Riesz MMD: gradient and value, from one sort.

    Args:
        xp: projected particles ``[P, N]``.
        yp: projected data ``[P, M]``.
        with_value: also return ``MMD_1D^2`` per direction (computed in float64 from the same sort).
        value_rows: compute the value for the first ``value_rows`` directions only (None: all).

    Returns:
        ``(grad [P, N], value [value_rows] or None)`` where ``grad[p, i] = d/dx_i (MMD_1D^2 / 2)`` of direction ``p``.
    """
    p, n = xp.shape
    m = yp.shape[1]
    z = torch.cat([xp, yp], dim=1)  # [P, N + M]
    order = argsort_rows(z)
    is_y = order >= n
    cy = torch.cumsum(is_y, dim=1)  # data points at or before each position
    pos = torch.arange(1, n + m + 1, device=z.device).expand(p, -1)
    cx = pos - cy  # particles at or before each position
    # at a particle's position: cy = data points below it, cx - 1 = its rank among the particles
    g_sorted = (2 * cy - m).to(z.dtype) / (n * m) - (2 * (cx - 1) - (n - 1)).to(z.dtype) / (n * n)
    grad = torch.empty_like(z).scatter_(1, order, g_sorted)[:, :n]
    if not with_value or value_rows == 0:
        return grad, None
    r = p if value_rows is None else min(value_rows, p)
    v = torch.gather(z[:r], 1, order[:r]).double()
    is_y, cx, cy = is_y[:r], cx[:r], cy[:r]
    is_x = ~is_y
    # sum_{i,k} |x_i - x_k| = 2 sum_r x_(r) (2r - N + 1), r the 0-based rank; the same for the data
    xx = 2.0 * torch.where(is_x, v * (2 * (cx - 1) - (n - 1)), 0.0).sum(1)
    yy = 2.0 * torch.where(is_y, v * (2 * (cy - 1) - (m - 1)), 0.0).sum(1)
    # sum_{i,j} |x_i - y_j| = sum_i [x_i (2 #below - M) - 2 S_below + S_total], S = sums of data values
    sy = torch.cumsum(torch.where(is_y, v, 0.0), dim=1)
    sy_total = sy[:, -1:]
    xy = torch.where(is_x, v * (2 * cy - m) - 2 * sy + sy_total, 0.0).sum(1)
    value = 2.0 * xy / (n * m) - xx / (n * n) - yy / (m * m)
    return grad, value


def sliced_mmd_grad(x: Tensor, y: Tensor, directions: Tensor, chunk: int = 0,
                    with_value: bool = True, value_projections: int = 0) -> tuple[Tensor, float]:
    """Sliced estimate of ``grad_x (MMD^2 / 2)`` for the Riesz kernel in R^d.

    Args:
        x: particles ``[N, d]``.
        y: data ``[M, d]``.
        directions: unit directions ``[P, d]``.
        chunk: directions handled at once (bounds the ``[chunk, N + M]`` work arrays); 0: all.
        with_value: also estimate ``MMD^2`` (``c_d`` times the mean 1-D value); else NaN is returned.
        value_projections: estimate ``MMD^2`` from the first ``value_projections`` directions only (0: all); the
            value costs about as much as the gradient, and a log needs less precision.

    Returns:
        ``(grad [N, d], mmd2)``: ``c_d / P sum_p xi_p (d/dt MMD_1D^2 / 2)(<xi_p, x>)`` and the matching estimate of
        the full-dimensional ``MMD^2``. Memory is ``O((N + M) (d + chunk))``: no ``N x M`` or ``N x N`` array.
    """
    p_total, d = directions.shape
    size = p_total if chunk <= 0 else min(chunk, p_total)
    grad = torch.zeros_like(x)
    value, counted = 0.0, 0
    limit = p_total if value_projections <= 0 else min(value_projections, p_total)
    xt, yt = x.t(), y.t()
    for s in range(0, p_total, size):
        xi = directions[s : s + size]
        g1, v1 = mmd1d_grad(xi @ xt, xi @ yt, with_value, value_rows=max(0, limit - s))  # [p, N]
        grad.addmm_(g1.t(), xi)  # += g1^T xi  -> [N, d]
        if v1 is not None:
            value += float(v1.sum())
            counted += v1.shape[0]
    factor = sliced_factor(d)
    grad.mul_(factor / p_total)
    return grad, (factor * value / counted if with_value and counted else math.nan)


def riesz_mmd2_dense(x: Tensor, y: Tensor) -> Tensor:
    """The dense V-statistic ``MMD^2`` of the Riesz kernel (``[N, M]`` distance matrices: tests and small sets
    only). Differentiable; distances are clamped away from 0 so that the gradient at ``x_i = x_i`` is 0."""

    def dist(a: Tensor, b: Tensor) -> Tensor:
        diff = a[:, None, :] - b[None, :, :]
        sq = diff.square().sum(-1)
        return torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), torch.zeros_like(sq))

    n, m = x.shape[0], y.shape[0]
    return 2 * dist(x, y).sum() / (n * m) - dist(x, x).sum() / (n * n) - dist(y, y).sum() / (m * m)
