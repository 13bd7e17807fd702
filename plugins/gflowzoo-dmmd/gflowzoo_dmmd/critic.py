"""Pieces of the noise-conditional critic: the learned kernel width ``h(t)``, noise-level sampling, and the per-group
training losses (through the MMD and KALE divergences of :mod:`gflowzoo.divergences`) with the gradient penalty.

Group layout (one entry per noise level ``t_g``, all groups computed in one go): clean features ``fx`` ``[G, n, D]``,
noisy features ``fy`` ``[G, m, D]``, interpolate features ``fh`` ``[G, k, D]`` of inputs ``xh`` ``[G*k, *S]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gflowzoo.api import KALE, MMD, ConfigError, CriticObjective, Kernel, LinearKernel, RBFKernel, WidthRBF

__all__ = [
    "NoiseWidth", "SkipSumKernel", "WidthRBF", "field_fit", "field_sums", "fit_from_sums", "flow_alignment", "group_kernel", "kale_group_losses", "mmd_group_losses",
    "sample_levels",
]

LOG_WIDTH_RANGE = (-9.0, 9.0)


class NoiseWidth(nn.Module):
    """A learned, positive, noise-dependent kernel width ``h(t) = exp(s(t))`` (feature units).

    ``mode="mlp"``: ``s(t) = s0 + MLP(t)`` (1 -> 32 -> 32 -> 1, SiLU, last layer zero-initialised, so ``h = exp(s0)``
    at the start). ``mode="table"``: ``s`` is a table of ``levels`` log-widths at ``t = linspace(0, 1, levels)``,
    linearly interpolated in t. ``s`` is clamped to :data:`LOG_WIDTH_RANGE`. ``t`` ``[N]`` -> ``[N]``.
    """

    def __init__(self, mode: str = "mlp", levels: int = 16, init: float = 1.0) -> None:
        super().__init__()
        if mode not in ("mlp", "table"):
            raise ConfigError(f"width_model must be 'mlp' or 'table'; got {mode!r}.")
        if levels < 2:
            raise ConfigError(f"width_levels must be >= 2; got {levels}.")
        self.mode = mode
        self.log_h0 = nn.Parameter(torch.tensor(math.log(init if init > 0 else 1.0)))
        if mode == "mlp":
            self.net = nn.Sequential(nn.Linear(1, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, 1))
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)
        else:
            self.table = nn.Parameter(torch.zeros(int(levels)))

    @torch.no_grad()
    def set_base(self, h: float) -> None:
        """Set the base width ``exp(s0)`` (used by the median-heuristic initialisation)."""
        self.log_h0.fill_(math.log(max(h, 1e-6)))

    def log_width(self, t: Tensor) -> Tensor:
        """``s(t)`` for ``t`` ``[N]``."""
        t = t.to(self.log_h0.dtype)
        if self.mode == "mlp":
            s = self.net(t[:, None])[:, 0]
        else:
            pos = t.clamp(0, 1) * (self.table.numel() - 1)
            lo = pos.floor().long().clamp(max=self.table.numel() - 2)
            frac = pos - lo.to(pos.dtype)
            s = self.table[lo] * (1 - frac) + self.table[lo + 1] * frac
        return (self.log_h0 + s).clamp(*LOG_WIDTH_RANGE)

    def forward(self, t: Tensor) -> Tensor:
        """``h(t)`` ``[N]`` for ``t`` ``[N]``."""
        return self.log_width(t).exp()


_LINEAR = LinearKernel()
_RBF = RBFKernel()


class SkipSumKernel(Kernel):
    """``k(a, b) = base(a[:d], b[:d]) + weight * learned(a[d:], b[d:])``: the kernel of ``feature_kernel = "sum"``
    on the features ``[x, phi(x, t)]`` of a backbone with an input skip (``d`` input coordinates first).

    The joint kernel ``K([x, phi], [x', phi'])`` of an RBF is the *product* of an RBF on the input and one on the
    learned features, a factor at most 1: the learned part can only make the kernel sharper, so it can take the
    field away from a particle but never give a particle a field the input kernel does not reach (measured: trained
    features broke the flow on every data set). In the sum, the input kernel's field is always there and the
    learned kernel (``linear`` by default: unbounded reach) adds its own."""

    def __init__(self, base: Kernel, d: int, learned: Kernel, weight: float) -> None:
        self.base, self.d, self.learned, self.weight = base, int(d), learned, float(weight)

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """``[N, d + D]``, ``[M, d + D]`` -> ``[N, M]``."""
        d = self.d
        out = self.base.gram(x[:, :d], y[:, :d])
        if self.weight:
            out = out + self.weight * self.learned.gram(x[:, d:], y[:, d:])
        return out

    def diag(self, x: Tensor) -> Tensor:
        """``base.diag + weight * learned.diag`` (``[N]``)."""
        d = self.d
        return self.base.diag(x[:, :d]) + self.weight * self.learned.diag(x[:, d:])

    def __repr__(self) -> str:
        return f"SkipSumKernel({self.base!r} on {self.d} inputs + {self.weight} x {self.learned!r})"


def group_kernel(kind: str, h: Tensor | None = None) -> Kernel:
    """The base kernel of one group: the linear kernel, or a Gaussian of width ``h`` (a scalar tensor;
    :meth:`gflowzoo.kernels.RBFKernel.at_width`, a :class:`gflowzoo.kernels.WidthRBF`). The methods use their
    configured kernel; this is the shorthand of the two built-in cases."""
    if kind == "linear":
        return _LINEAR
    assert h is not None
    return _RBF.at_width(h)


def sample_levels(g: int, t_min: float, dist: str, power: float, generator: torch.Generator) -> Tensor:
    """``g`` noise levels in ``[t_min, 1]`` (CPU ``[g]``): ``"uniform"``: ``t_min + (1 - t_min) u``; ``"power"``:
    ``t_min + (1 - t_min) u^power`` (more weight on small t for ``power > 1``), ``u ~ U(0, 1)``."""
    u = torch.rand(g, generator=generator)
    if dist == "power":
        if not power > 0:
            raise ConfigError(f"t_power must be positive; got {power}.")
        u = u**power
    elif dist != "uniform":
        raise ConfigError(f"t_dist must be 'uniform' or 'power'; got {dist!r}.")
    return t_min + (1.0 - t_min) * u


def _gp_and_norm(out: Tensor, xh: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Per-group gradient penalty ``mean (|grad_x f(xh)| - 1)^2`` and mean gradient norm (``[G]`` each), from
    ``out`` (``[G*k]``, the critic at the interpolates ``xh`` ``[G*k, *S]``; one autograd call, kept in the graph)."""
    (grad,) = torch.autograd.grad(out.sum(), xh, create_graph=True)
    norm = grad.flatten(1).norm(dim=1).view(groups, -1)
    return (norm - 1).square().mean(1), norm.detach().mean(1)


def mmd_group_losses(
    fx: Tensor, fy: Tensor, fh: Tensor, xh: Tensor, kernels: list[Kernel], divergence: MMD | None = None
) -> dict[str, Tensor]:
    """The DMMD terms of every group: ``mmd2`` (MMD^2 between clean P and noisy P_t, the estimate of
    ``divergence``, by default the unbiased :class:`gflowzoo.divergences.MMD`, on the group's kernel), ``gp``
    (two-sided penalty on the witness gradient at the interpolates), ``l2`` (mean squared witness over the group's
    clean and noisy points) and ``grad_norm``; each ``[G]``.

    The witness ``f_t(z) = mean_i k(z, x_i) - mean_j k(z, y_j)`` (the divergence's) uses the group's features
    without a stop-gradient."""
    g = fx.shape[0]
    base = divergence if divergence is not None else MMD(_LINEAR, "unbiased")
    mmd, l2, wh = [], [], []
    for i in range(g):
        d = base.with_kernel(kernels[i])
        mmd.append(d.estimate(fx[i], fy[i]))
        l2.append(d.witness(torch.cat([fx[i], fy[i]]), fx[i], fy[i]).square().mean())
        wh.append(d.witness(fh[i], fx[i], fy[i]))
    gp, norm = _gp_and_norm(torch.cat(wh), xh, g)
    return {"mmd2": torch.stack(mmd), "gp": gp, "l2": torch.stack(l2), "grad_norm": norm}


def kale_group_losses(hx: Tensor, hy: Tensor, hh: Tensor, xh: Tensor,
                      divergence: CriticObjective | None = None) -> dict[str, Tensor]:
    """The DKALE terms of every group from the critic values ``h`` at clean (``hx`` ``[G, n]``), noisy (``hy``
    ``[G, m]``) and interpolate points (``hh`` ``[G, k]``): ``kale``, the critic objective of ``divergence``
    (default :class:`gflowzoo.divergences.KALE`: ``1 + mean_{P_t} h - mean_P exp(h)``, source Q = P_t, target
    P = clean data; maximised), ``gp`` on ``grad h``, ``l2 = mean h^2`` over clean and noisy points, and
    ``grad_norm``; each ``[G]``."""
    g = hx.shape[0]
    kale = (divergence if divergence is not None else KALE).critic_objective(hx, hy)
    l2 = torch.cat([hx, hy], dim=1).square().mean(1)
    gp, norm = _gp_and_norm(hh.reshape(-1), xh, g)
    return {"kale": kale, "gp": gp, "l2": l2, "grad_norm": norm}


def fit_from_sums(vd: Tensor, vv: Tensor, dd: Tensor) -> tuple[Tensor, Tensor]:
    """``(misfit, scale)`` of :func:`field_fit` from the sums ``<v, d>``, ``|v|^2`` and ``|d|^2`` (any shape, e.g.
    ``[G]``), so that sums accumulated in pieces or over processes give the same numbers."""
    vv, dd = vv.clamp_min(1e-30), dd.clamp_min(1e-30)
    pos = torch.relu(vd)
    return 1.0 - pos.square() / (vv * dd), pos / vv


def field_sums(v: Tensor, d: Tensor) -> Tensor:
    """The sums ``[<v, d>, |v|^2, |d|^2]`` per group, ``[G, 3]``, of fields ``v`` and directions ``d`` ``[G, ...]``."""
    v, d = v.flatten(1), d.flatten(1)
    return torch.stack([(v * d).sum(1), v.square().sum(1), d.square().sum(1)], dim=1)


def field_fit(v: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """How well a field ``v`` matches a target direction ``d`` (both ``[G, k, ...]``) up to one non-negative scale per
    group: ``(misfit, scale)``, each ``[G]``. ``scale = relu(<v, d>) / |v|^2`` is the least-squares scale ``s >= 0``
    of ``s v ~ d``; ``misfit = |s v - d|^2 / |d|^2 = 1 - relu(<v, d>)^2 / (|v|^2 |d|^2)`` is in ``[0, 1]`` (0: ``v``
    points exactly along ``d`` everywhere up to one scale; 1: no positive alignment at all)."""
    return fit_from_sums(*field_sums(v, d).unbind(1))


def flow_alignment(values: Tensor, y: Tensor, direction: Tensor, groups: int, k: int,
                   reduce_sums: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
    """The flow term of the critic loss: the witness field ``v_j = grad_y f_t(y_j)`` at noisy points against the
    denoising direction ``d_j = x_j - y_j`` (``x_j`` the clean image ``y_j`` was made from).

    ``values`` ``[G, k]``: the witness at the first ``k`` noisy points of every group, as a function of ``y``
    ``[G*m, *S]`` (which requires grad; the feature sets the witness compares against must be detached so that the
    gradient is the field at ``y_j`` alone); ``direction`` ``[G, k, *S]``; ``reduce_sums``: applied to the
    ``[G, 3]`` sums of :func:`field_sums` before the fit (several processes: a differentiable all-reduce, so the
    fit covers every process's points). Returns ``flow`` (the misfit of :func:`field_fit`, kept in the graph) and
    ``flow_scale`` (its least-squares step scale, detached), each ``[G]``.
    Minimising ``flow`` makes the witness gradient point where denoising points (its minimiser over fields is the
    posterior-mean direction ``E[x | y] - y``); the scale is what a step of ``eta = scale`` would need to land on
    the denoised point."""
    (v,) = torch.autograd.grad(values.sum(), y, create_graph=True)
    m = y.shape[0] // groups
    sums = field_sums(v.view(groups, m, -1)[:, :k], direction.reshape(groups, k, -1))
    if reduce_sums is not None:
        sums = reduce_sums(sums)
    misfit, scale = fit_from_sums(*sums.unbind(1))
    return {"flow": misfit, "flow_scale": scale.detach()}
