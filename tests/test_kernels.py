"""The reference kernels against independent numpy/scipy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from gflowzoo.errors import ConfigError
from gflowzoo.kernels import EnergyKernel, LinearKernel, PolyKernel, RBFKernel, RQKernel, sq_dists
from gflowzoo.plugins import get_registry
from gflowzoo.testing.contracts import KernelContract


def _data(n: int, m: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(m, d, generator=g, dtype=torch.float64)


# -- numpy references ----------------------------------------------------------------------------------------------
def np_rbf(a, b, sigmas, convention):
    d2 = cdist(a, b, "sqeuclidean")
    widths = [s**2 if convention == "std" else s for s in sigmas]
    return sum(np.exp(-d2 / (2 * w)) for w in widths)


def np_rq(a, b, alphas, c):
    d2 = cdist(a, b, "sqeuclidean")
    return sum((1 + d2 / (2 * al)) ** (-al) for al in alphas) + c * a @ b.T


def np_energy(a, b):
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return na[:, None] + nb[None, :] - cdist(a, b, "euclidean")


def np_poly(a, b, degree, gamma, coef0):
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    return (gamma * a @ b.T + coef0) ** degree


CASES = [
    (LinearKernel(), lambda a, b: a @ b.T),
    (RBFKernel(), lambda a, b: np_rbf(a, b, [1.0], "std")),
    (RBFKernel([0.5, 2.0, 4.0]), lambda a, b: np_rbf(a, b, [0.5, 2.0, 4.0], "std")),
    (RBFKernel([2.0, 5.0], convention="variance"), lambda a, b: np_rbf(a, b, [2.0, 5.0], "variance")),
    (RQKernel(), lambda a, b: np_rq(a, b, [0.2, 0.5, 1.0, 2.0, 5.0], 0.0)),
    (RQKernel([0.1, 1.0, 10.0], linear_weight=1.0), lambda a, b: np_rq(a, b, [0.1, 1.0, 10.0], 1.0)),
    (RQKernel([0.7], linear_weight=0.5), lambda a, b: np_rq(a, b, [0.7], 0.5)),
    (EnergyKernel(), np_energy),
    (PolyKernel(), lambda a, b: np_poly(a, b, 3, None, 1.0)),
    (PolyKernel(degree=2, gamma=0.3, coef0=0.5), lambda a, b: np_poly(a, b, 2, 0.3, 0.5)),
]
IDS = [repr(k) for k, _ in CASES]


@pytest.mark.parametrize("kernel,ref", CASES, ids=IDS)
def test_gram_matches_numpy(kernel, ref):
    x, y = _data(7, 5, 4)
    expected = ref(x.numpy(), y.numpy())
    np.testing.assert_allclose(kernel.gram(x, y).numpy(), expected, rtol=1e-10, atol=1e-10)
    # the same-tensor fast path
    np.testing.assert_allclose(kernel.gram(x, x).numpy(), ref(x.numpy(), x.numpy()), rtol=1e-10, atol=1e-10)
    # diag in closed form
    np.testing.assert_allclose(kernel.diag(x).numpy(), np.diag(ref(x.numpy(), x.numpy())), rtol=1e-10, atol=1e-10)
    # with autograd on (other code paths: out-of-place accumulation)
    xg = x.clone().requires_grad_(True)
    np.testing.assert_allclose(kernel.gram(xg, y).detach().numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(kernel.gram(xg, xg).detach().numpy(), ref(x.numpy(), x.numpy()), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel,ref", CASES, ids=IDS)
def test_float32_close_to_float64_reference(kernel, ref):
    x, y = _data(16, 9, 8, seed=1)
    got = kernel.gram(x.float(), y.float())
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref(x.numpy(), y.numpy()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel,ref", CASES, ids=IDS)
def test_gradcheck(kernel, ref):
    x, y = _data(4, 3, 3, seed=2)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: kernel.gram(a, b), (x, y))
    assert torch.autograd.gradcheck(lambda a: kernel.gram(a, a), (x,))


@pytest.mark.parametrize("kernel,ref", CASES, ids=IDS)
def test_gradients_finite_at_identical_and_zero_points(kernel, ref):
    base, _ = _data(4, 1, 3, seed=3)
    base[0] = 0.0  # a point at the origin (the energy kernel's |x| is not differentiable there)
    for dtype in (torch.float32, torch.float64):
        x = base.to(dtype).detach().clone().requires_grad_(True)
        y = base.to(dtype).detach().clone().requires_grad_(True)  # the same points, another tensor
        (kernel.gram(x, y).sum() + kernel.gram(x, x).sum() + kernel.diag(x).sum()).backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


def test_rbf_gradient_against_closed_form():
    x, y = _data(5, 6, 3, seed=4)
    x.requires_grad_(True)
    k = RBFKernel([1.5])
    k.gram(x, y).sum().backward()
    a, b = x.detach().numpy(), y.numpy()
    kk = np_rbf(a, b, [1.5], "std")
    # d/da_i sum_j exp(-|a_i - b_j|^2 / (2 s^2)) = sum_j -k_ij (a_i - b_j) / s^2
    expected = -(kk[:, :, None] * (a[:, None, :] - b[None, :, :])).sum(1) / 1.5**2
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_energy_gradient_is_unit_direction_away_from_points():
    # d/da (-|a - b|) = -(a - b)/|a - b|; the |a| term adds a/|a|
    x, y = _data(1, 1, 3, seed=5)
    x.requires_grad_(True)
    EnergyKernel().gram(x, y).sum().backward()
    a, b = x.detach().numpy()[0], y.numpy()[0]
    expected = a / np.linalg.norm(a) - (a - b) / np.linalg.norm(a - b)
    np.testing.assert_allclose(x.grad.numpy()[0], expected, rtol=1e-10)


def test_sq_dists_nonnegative_and_exact_zero_on_diagonal():
    g = torch.Generator().manual_seed(6)
    x = 100.0 + 1e-3 * torch.randn(50, 16, generator=g)  # large norms, tiny distances: cancellation
    d = sq_dists(x)
    assert (d >= 0).all()
    assert (d.diagonal() == 0).all()
    d2 = sq_dists(x, x.clone())
    assert (d2 >= 0).all()
    np.testing.assert_allclose(sq_dists(x.double()).numpy(), cdist(x.double().numpy(), x.double().numpy(), "sqeuclidean"),
                               atol=1e-9)


def test_sq_dists_scale_folded_into_the_product():
    x, y = _data(6, 5, 3, seed=10)
    ref = cdist(x.numpy(), y.numpy(), "sqeuclidean")
    np.testing.assert_allclose(sq_dists(x, y, scale=-0.25).numpy(), -0.25 * ref, rtol=1e-12, atol=1e-14)
    assert (sq_dists(x, x, scale=-3.0) <= 0).all() and (sq_dists(x, x, scale=-3.0).diagonal() == 0).all()
    with pytest.raises(ValueError):
        sq_dists(x, y, scale=0.0)


def test_multi_width_grad_and_nograd_paths_agree():
    x, y = _data(6, 5, 3, seed=7)
    k = RBFKernel([0.5, 1.0, 3.0])
    with torch.no_grad():
        a = k.gram(x, y)
    b = k.gram(x.clone().requires_grad_(True), y)
    torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)


def test_variance_convention_is_std_squared():
    x, y = _data(4, 4, 2, seed=8)
    torch.testing.assert_close(RBFKernel([4.0], convention="variance").gram(x, y), RBFKernel([2.0]).gram(x, y))


def test_shape_errors():
    with pytest.raises(ValueError):
        RBFKernel().gram(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError):
        LinearKernel().gram(torch.zeros(3), torch.zeros(3, 4))


def test_registry_builds_configured_kernels():
    reg = get_registry()
    k = reg.create("kernel", {"name": "rbf", "sigmas": [1.0, 2.0]})
    assert isinstance(k, RBFKernel) and k.sigmas == [1.0, 2.0]
    x, y = _data(5, 4, 3, seed=9)
    np.testing.assert_allclose(k.gram(x, y).numpy(), np_rbf(x.numpy(), y.numpy(), [1.0, 2.0], "std"), rtol=1e-10)
    rq = reg.create("kernel", {"name": "rq", "alphas": [0.1, 1, 10], "linear_weight": 1})
    np.testing.assert_allclose(rq.gram(x, y).numpy(), np_rq(x.numpy(), y.numpy(), [0.1, 1, 10], 1.0), rtol=1e-10)
    assert reg.create("kernel", {"name": "poly", "degree": 2}).degree == 2
    assert reg.create("kernel", "linear").is_linear


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "rbf", "sigmas": [1.0, -2.0]},
        {"name": "rbf", "sigmas": []},
        {"name": "rbf", "convention": "width"},
        {"name": "rq", "linear_weight": -1.0},
        {"name": "poly", "degree": 0},
        {"name": "rbf", "sigma": 1.0},
    ],
)
def test_bad_options_are_config_errors(spec):
    with pytest.raises(ConfigError):
        get_registry().create("kernel", spec)


# -- the shared contracts ------------------------------------------------------------------------------------------
class TestLinearContract(KernelContract):
    kernel_name = "linear"


class TestRBFContract(KernelContract):
    kernel_name = "rbf"
    kernel_options = {"sigmas": [0.5, 1.0, 2.0]}


class TestRQContract(KernelContract):
    kernel_name = "rq"
    kernel_options = {"linear_weight": 1.0}


class TestEnergyContract(KernelContract):
    kernel_name = "energy"


class TestPolyContract(KernelContract):
    kernel_name = "poly"
