"""The sorting gradient against autograd on the dense Riesz-kernel MMD, the dimension constant, and a guard that no
pairwise (``N x M`` or ``N x N``) array is ever formed by a flow step."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gflowzoo_sliced.slicing import (
    mmd1d_grad,
    random_directions,
    riesz_mmd2_dense,
    sliced_factor,
    sliced_mmd_grad,
)


def _dense_grad(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    xx = x.detach().clone().requires_grad_(True)
    value = riesz_mmd2_dense(xx, y)
    (g,) = torch.autograd.grad(value / 2, xx)
    return g, float(value.detach())


def test_sliced_factor_values():
    assert sliced_factor(1) == pytest.approx(1.0)
    assert sliced_factor(2) == pytest.approx(math.pi / 2)
    assert sliced_factor(3) == pytest.approx(2.0)
    # the defining identity ||z|| = c_d E|<xi, z>| by Monte Carlo in d = 10
    g = torch.Generator().manual_seed(0)
    xi = random_directions(200_000, 10, g, torch.float64)
    z = torch.randn(10, generator=g, dtype=torch.float64)
    assert float(sliced_factor(10) * (xi @ z).abs().mean()) == pytest.approx(float(z.norm()), rel=1e-2)
    assert sliced_factor(784) == pytest.approx(math.sqrt(math.pi * 784 / 2), rel=1e-3)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (7, 13), (60, 45)])
def test_1d_gradient_and_value_equal_autograd_in_float64(n, m):
    g = torch.Generator().manual_seed(n + m)
    x = torch.randn(n, 1, generator=g, dtype=torch.float64)
    y = torch.randn(m, 1, generator=g, dtype=torch.float64) * 2 + 0.3
    dense_g, dense_v = _dense_grad(x, y)
    grad, value = mmd1d_grad(x.t(), y.t())
    torch.testing.assert_close(grad.t(), dense_g, rtol=0, atol=1e-13)
    assert float(value[0]) == pytest.approx(dense_v, rel=1e-12, abs=1e-14)
    # through the sliced routine with the only 1-D directions (+1 and -1): the same numbers
    xi = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    sgrad, svalue = sliced_mmd_grad(x, y, xi)
    torch.testing.assert_close(sgrad, dense_g, rtol=0, atol=1e-13)
    assert svalue == pytest.approx(dense_v, rel=1e-12, abs=1e-14)


def test_1d_gradient_batched_directions_are_independent():
    g = torch.Generator().manual_seed(3)
    xp = torch.randn(5, 20, generator=g, dtype=torch.float64)
    yp = torch.randn(5, 30, generator=g, dtype=torch.float64)
    grad, value = mmd1d_grad(xp, yp)
    for p in range(5):
        dg, dv = _dense_grad(xp[p][:, None], yp[p][:, None])
        torch.testing.assert_close(grad[p], dg[:, 0], rtol=0, atol=1e-13)
        assert float(value[p]) == pytest.approx(dv, rel=1e-12)


@pytest.mark.parametrize("d", [2, 5])
def test_sliced_gradient_matches_dense_within_monte_carlo_error(d):
    """In d > 1 the sliced gradient is an unbiased Monte-Carlo estimate: its error over P directions shrinks like
    1/sqrt(P), and it is within a few standard errors of the dense gradient (estimated from independent batches)."""
    g = torch.Generator().manual_seed(d)
    x = torch.randn(30, d, generator=g, dtype=torch.float64)
    y = torch.randn(40, d, generator=g, dtype=torch.float64) + 0.5
    dense_g, dense_v = _dense_grad(x, y)
    batches = [sliced_mmd_grad(x, y, random_directions(2000, d, g, torch.float64), chunk=500) for _ in range(8)]
    grads = torch.stack([b[0] for b in batches])
    mean = grads.mean(0)
    stderr = grads.std(0) / math.sqrt(len(batches))  # standard error of the mean, per coordinate
    # the squared error summed over coordinates is about the summed variance of the mean (ratio ~ 1 if unbiased)
    ratio = float((mean - dense_g).square().sum() / stderr.square().sum())
    assert ratio < 3.0
    rel = float((mean - dense_g).norm() / dense_g.norm())
    assert rel < 0.05
    values = torch.tensor([b[1] for b in batches])
    assert float(values.mean()) == pytest.approx(dense_v, abs=5 * float(values.std()) / math.sqrt(8) + 1e-12)
    # more directions, smaller error (1/sqrt(P)): 16 directions vs 16,000 (the mean above)
    small = sliced_mmd_grad(x, y, random_directions(16, d, g, torch.float64))[0]
    assert float((small - dense_g).norm()) > 3 * float((mean - dense_g).norm())


class _NoPairwise(TorchDispatchMode):
    """Raises when any torch operation produces a tensor of ``limit`` elements or more."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
                if t.numel() >= self.limit:
                    raise AssertionError(f"{func} built a tensor of shape {tuple(t.shape)}: a pairwise matrix?")
        return out


def test_a_flow_step_never_builds_a_pairwise_matrix(build):
    """N = M = 2000 particles and data in 16-d, 8 directions: the largest legitimate array is ``P x (N + M)`` or
    ``N x d`` (32,000 values); an ``N x M`` matrix has 4,000,000. The guard (a dispatch mode that sees every
    operation) refuses anything of a quarter of that."""
    n = 2000
    points = torch.randn(n, 16, generator=torch.Generator().manual_seed(0))
    method = build("sliced-mmdflow", "toy-8gaussians", f"particles={n}", f"n_data={n}", "projections=8",
                   "projection_chunk=0")
    # 16-d points stand in for the toy's 2-d ones: the method only needs the reference and the particle shape
    method.shape = (16,)
    method._ref = points
    method.idx = torch.arange(n)
    gen = torch.Generator().manual_seed(1)
    method.flow = method._new_flow(n, gen)
    guard = _NoPairwise(limit=n * n // 4)
    with guard:
        logs = method.train_step(0, gen)
    assert math.isfinite(logs["loss"]) and logs["move"] > 0
    assert guard.largest <= 4 * n * 16  # a few (N + M) x P or N x d arrays at most
    # the guard does catch a pairwise matrix
    with pytest.raises(AssertionError, match="pairwise"), _NoPairwise(limit=n * n // 4):
        torch.cdist(points, points)


def test_flow_reduces_the_mmd_on_a_gaussian(build):
    """A few hundred particles from N(0, I) flow to a shifted Gaussian: the dense MMD^2 falls by a large factor."""
    g = torch.Generator().manual_seed(0)
    method = build("sliced-mmdflow", "toy-8gaussians", "particles=300", "n_data=300", "projections=32",
                   "step_size=1.0")
    y = torch.randn(300, 2, generator=g) * 0.5 + torch.tensor([2.0, -1.0])
    method._ref, method.idx = y, torch.arange(300)
    method.flow = method._new_flow(300, g)
    before = float(riesz_mmd2_dense(method.flow.x.double(), y.double()))
    for step in range(200):
        method.train_step(step, g)
    after = float(riesz_mmd2_dense(method.flow.x.double(), y.double()))
    assert after < before / 50


def test_bad_options_are_refused(build):
    from gflowzoo.api import ConfigError

    with pytest.raises(ConfigError, match="down_factors"):
        build("sliced-mmdflow", "digits", "down_factors=[2, 3]", "stage_steps=[1]")
    with pytest.raises(ConfigError, match="stage_steps"):
        build("sliced-mmdflow", "digits", "down_factors=[4, 2, 1]")
    with pytest.raises(ConfigError, match="images only"):
        build("sliced-mmdflow", "toy-8gaussians", "down_factors=[2, 1]", "stage_steps=[1]")
    with pytest.raises(ConfigError, match="divisible"):
        build("sliced-mmdflow", "digits", "down_factors=[3, 1]", "stage_steps=[1]")


def test_entry_module_does_not_import_torch():
    code = "import sys, gflowzoo_sliced.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fast_cpu_argsort_equals_torch_sort():
    """The numpy integer-key sort behind float32 rows on the CPU orders like ``torch.sort`` (ties by column), and
    the float32 gradient equals the float64 one to float32 rounding."""
    from gflowzoo_sliced.slicing import argsort_rows

    g = torch.Generator().manual_seed(5)
    z = torch.randn(6, 500, generator=g)
    z[0, :6] = torch.tensor([-0.0, 0.0, 1.0, -1.0, float("inf"), -float("inf")])
    z[1, 10:20] = 0.25  # ties
    order = argsort_rows(z)
    assert torch.equal(order, torch.sort(z, dim=1, stable=True).indices)
    xp, yp = torch.randn(8, 300, generator=g), torch.randn(8, 200, generator=g) + 0.2
    g32, v32 = mmd1d_grad(xp, yp)
    g64, v64 = mmd1d_grad(xp.double(), yp.double())
    torch.testing.assert_close(g32.double(), g64, rtol=0, atol=1e-6 * float(g64.abs().max()))
    torch.testing.assert_close(v32, v64, rtol=1e-12, atol=0)
