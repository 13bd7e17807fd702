"""MMD and KALE against explicit numpy loops and scipy.optimize."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.spatial.distance import cdist

from gflowzoo.divergences import KALE, MMD, mmd2, witness
from gflowzoo.errors import ConfigError, UserError
from gflowzoo.interfaces import Kernel
from gflowzoo.kernels import EnergyKernel, LinearKernel, RBFKernel, RQKernel
from gflowzoo.plugins import get_registry
from gflowzoo.testing.contracts import DivergenceContract


def _data(n: int, m: int, d: int, seed: int = 0, shift: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    fx = torch.randn(n, d, generator=g, dtype=torch.float64)
    fy = torch.randn(m, d, generator=g, dtype=torch.float64) + shift
    return fx, fy


def np_rbf(a, b, s=1.0):
    return np.exp(-cdist(a, b, "sqeuclidean") / (2 * s * s))


def np_mmd2_loops(x, y, k, estimator):
    """MMD^2 by explicit double loops over pairs, with scalar kernel evaluations ``k(a, b)``."""
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if estimator == "biased" or i != j)
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if estimator == "biased" or i != j)
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m) if estimator != "u-statistic" or i != j)
    if estimator == "biased":
        return kxx / n**2 + kyy / m**2 - 2 * kxy / (n * m)
    cross = kxy / (n * m) if estimator == "unbiased" else kxy / (n * (n - 1))
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * cross


SCALAR_KERNELS = [
    (RBFKernel([0.8, 2.0]), lambda a, b: np.exp(-np.sum((a - b) ** 2) / 1.28) + np.exp(-np.sum((a - b) ** 2) / 8)),
    (RQKernel([0.5, 2.0], linear_weight=1.0),
     lambda a, b: sum((1 + np.sum((a - b) ** 2) / (2 * al)) ** -al for al in (0.5, 2.0)) + a @ b),
    (EnergyKernel(), lambda a, b: np.linalg.norm(a) + np.linalg.norm(b) - np.linalg.norm(a - b)),
    (LinearKernel(), lambda a, b: a @ b),
]


@pytest.mark.parametrize("estimator", ["unbiased", "biased", "u-statistic"])
@pytest.mark.parametrize("kernel,k", SCALAR_KERNELS, ids=[repr(k) for k, _ in SCALAR_KERNELS])
def test_mmd2_matches_double_loops(kernel, k, estimator):
    n, m = (8, 8) if estimator == "u-statistic" else (7, 9)
    fx, fy = _data(n, m, 3, seed=1)
    expected = np_mmd2_loops(fx.numpy(), fy.numpy(), k, estimator)
    got = mmd2(fx, fy, kernel, estimator)
    assert got.ndim == 0
    np.testing.assert_allclose(float(got), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(MMD(kernel, estimator).estimate(fx, fy)), expected, rtol=1e-9, atol=1e-12)


class _GramDot(Kernel):
    """<a, b> through a Gram matrix (not flagged linear): the slow path the fast one must agree with."""

    def gram(self, x, y):
        return x @ y.T


class _NoGramLinear(LinearKernel):
    def gram(self, x, y):  # pragma: no cover - must not be called
        raise AssertionError("the linear fast path built a Gram matrix")


@pytest.mark.parametrize("estimator", ["unbiased", "biased", "u-statistic"])
def test_linear_fast_path_matches_gram_path(estimator):
    n, m = (12, 12) if estimator == "u-statistic" else (12, 17)
    fx, fy = _data(n, m, 5, seed=2)
    fx = fx + 30.0  # large means: the centred formula must not cancel badly
    fy = fy + 30.0
    fast = mmd2(fx, fy, _NoGramLinear(), estimator)
    slow = mmd2(fx, fy, _GramDot(), estimator)
    np.testing.assert_allclose(float(fast), float(slow), rtol=1e-7, atol=1e-9)
    # the formula with sums S and sums of squared norms Q, as documented
    sx, sy = fx.sum(0), fy.sum(0)
    qx, qy = fx.square().sum(), fy.square().sum()
    if estimator == "unbiased":
        ref = (sx @ sx - qx) / (n * (n - 1)) + (sy @ sy - qy) / (m * (m - 1)) - 2 * (sx @ sy) / (n * m)
        np.testing.assert_allclose(float(fast), float(ref), rtol=1e-6, atol=1e-8)
    z = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(witness(z, fx, fy, _NoGramLinear()), witness(z, fx, fy, _GramDot()))


def test_linear_fast_path_gradients_match_gram_path():
    fx, fy = _data(6, 7, 3, seed=3)
    grads = []
    for kernel in (LinearKernel(), _GramDot()):
        a, b = fx.clone().requires_grad_(True), fy.clone().requires_grad_(True)
        mmd2(a, b, kernel).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


@pytest.mark.parametrize("kernel,k", SCALAR_KERNELS, ids=[repr(k) for k, _ in SCALAR_KERNELS])
def test_witness_matches_definition(kernel, k):
    fx, fy = _data(6, 5, 2, seed=4)
    fz = torch.randn(4, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x, y, z = fx.numpy(), fy.numpy(), fz.numpy()
    expected = [np.mean([k(zi, xi) for xi in x]) - np.mean([k(zi, yj) for yj in y]) for zi in z]
    np.testing.assert_allclose(witness(fz, fx, fy, kernel).numpy(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(MMD(kernel).witness(fz, fx, fy).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_witness_gradient_is_the_mmd_flow_direction():
    # d/dy_j of MMD^2_b = -(2/m) grad f(y_j): ascending the witness decreases MMD^2
    fx, fy = _data(5, 4, 2, seed=6)
    kernel = RBFKernel([1.3])
    y = fy.clone().requires_grad_(True)
    mmd2(fx, y, kernel, "biased").backward()
    z = fy.clone().requires_grad_(True)
    (gw,) = torch.autograd.grad(witness(z, fx, fy, kernel).sum(), z)
    # the witness here holds Q fixed, so only the interaction through the evaluation point counts
    torch.testing.assert_close(y.grad, -(2.0 / 4) * gw)


@pytest.mark.parametrize("kernel", [RBFKernel([1.0, 2.0]), RQKernel(linear_weight=1.0), EnergyKernel()], ids=repr)
def test_gradients_finite_with_identical_samples(kernel):
    fx, _ = _data(6, 1, 3, seed=7)
    for estimator in ("unbiased", "biased", "u-statistic"):
        a, b = fx.clone().requires_grad_(True), fx.clone().requires_grad_(True)
        val = mmd2(a, b, kernel, estimator)
        val.backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
        if estimator == "biased":
            assert abs(val.item()) < 1e-10


def test_biased_is_nonnegative_and_unbiased_can_be_negative():
    k = RBFKernel()
    vals = []
    for seed in range(12):
        fx, fy = _data(10, 10, 2, seed=seed, shift=0.0)
        assert float(mmd2(fx, fy, k, "biased")) >= 0
        vals.append(float(mmd2(fx, fy, k, "unbiased")))
    assert min(vals) < 0 < max(vals)


def test_estimator_errors():
    fx, fy = _data(4, 5, 2)
    with pytest.raises(ValueError):
        mmd2(fx, fy, RBFKernel(), "u-statistic")
    with pytest.raises(ValueError):
        mmd2(fx[:1], fy, RBFKernel(), "unbiased")
    with pytest.raises(ConfigError):
        MMD(RBFKernel(), estimator="vstat")
    with pytest.raises(ValueError):
        mmd2(fx, fy[:, :1], RBFKernel())


def test_mmd_through_the_registry_with_a_kernel_spec():
    reg = get_registry()
    d = reg.create("divergence", {"name": "mmd", "kernel": {"name": "rbf", "sigmas": [1.0, 2.0]},
                                  "estimator": "biased"})
    fx, fy = _data(6, 7, 2, seed=8)
    expected = np_mmd2_loops(fx.numpy(), fy.numpy(),
                             lambda a, b: np.exp(-np.sum((a - b) ** 2) / 2) + np.exp(-np.sum((a - b) ** 2) / 8),
                             "biased")
    np.testing.assert_allclose(float(d.estimate(fx, fy)), expected, rtol=1e-10)
    assert isinstance(d.kernel, RBFKernel) and d.kernel.sigmas == [1.0, 2.0]
    # a spec by name, resolved lazily; and a Kernel handed in as context
    assert isinstance(MMD("linear").kernel, LinearKernel)
    k = RQKernel()
    assert reg.create("divergence", "mmd", kernel=k).kernel is k
    with pytest.raises(UserError, match="no-such-kernel"):
        reg.create("divergence", {"name": "mmd", "kernel": "no-such-kernel"}).kernel


# -- KALE ----------------------------------------------------------------------------------------------------------
def _scipy_kale_gram(x, y, kmat, lam):
    """Maximise J(alpha) = 1 + mean_Q K alpha - mean_P exp(K alpha) - lam/2 alpha^T K alpha with scipy
    (trust-region with the exact Hessian). Returns (J*, alpha*, gradient of J at alpha*)."""
    n, m = len(x), len(y)

    def parts(alpha):
        h = kmat @ alpha
        e = np.exp(h[:n]) / n
        val = 1 + h[n:].mean() - e.sum() - 0.5 * lam * alpha @ h
        grad = kmat @ (np.concatenate([-e, np.full(m, 1.0 / m)]) - lam * alpha)
        return val, grad, e

    def hess(alpha):
        _, _, e = parts(alpha)
        return (kmat[:, :n] * e) @ kmat[:n, :] + lam * kmat

    res = minimize(lambda a: tuple(-v for v in parts(a)[:2]), np.zeros(n + m), jac=True, hess=hess,
                   method="trust-exact", options={"gtol": 1e-12})
    return -res.fun, res.x, lambda a: parts(a)[1]


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_kale_matches_scipy_gram(lam):
    fx, fy = _data(7, 6, 2, seed=9, shift=1.0)
    z = np.concatenate([fx.numpy(), fy.numpy()])
    kmat = np_rbf(z, z, 1.0)
    best, alpha, grad_fn = _scipy_kale_gram(fx.numpy(), fy.numpy(), kmat, lam)
    d = KALE(RBFKernel(), lam=lam)
    sol = d.solve(fx, fy)
    assert sol.converged and sol.iterations < 20
    # first-order optimality of our coefficients, checked with the numpy gradient
    assert np.abs(grad_fn(sol.coef.numpy())).max() < 1e-9
    np.testing.assert_allclose(sol.objective, best, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(d.estimate(fx, fy)), (1 + lam) * best, rtol=1e-9, atol=1e-12)
    # the witness is -(1 + lam) h*(z), h* = sum_i alpha_i k(., z_i)
    fz = torch.randn(5, 2, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    expected = -(1 + lam) * np_rbf(fz.numpy(), z, 1.0) @ alpha
    np.testing.assert_allclose(d.witness(fz, fx, fy).numpy(), expected, rtol=1e-6, atol=1e-9)


def test_kale_matches_scipy_linear_primal():
    fx, fy = _data(30, 20, 3, seed=11, shift=0.7)
    x, y, lam = fx.numpy(), fy.numpy(), 0.5

    def neg(w):
        e = np.exp(x @ w)
        val = 1 + w @ y.mean(0) - e.mean() - 0.5 * lam * w @ w
        return -val, -(y.mean(0) - x.T @ e / len(x) - lam * w)

    def hess(w):
        e = np.exp(x @ w) / len(x)
        return (x.T * e) @ x + lam * np.eye(3)

    res = minimize(neg, np.zeros(3), jac=True, hess=hess, method="trust-exact", options={"gtol": 1e-12})
    d = KALE(LinearKernel(), lam=lam)
    sol = d.solve(fx, fy)
    assert sol.centres is None and sol.coef.shape == (3,)
    assert np.abs(neg(sol.coef.numpy())[1]).max() < 1e-10
    np.testing.assert_allclose(float(d.estimate(fx, fy)), -(1 + lam) * res.fun, rtol=1e-10)
    fz = torch.randn(4, 3, dtype=torch.float64)
    np.testing.assert_allclose(d.witness(fz, fx, fy).numpy(), -(1 + lam) * fz.numpy() @ res.x, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kernel", [RBFKernel(), LinearKernel(), RQKernel()], ids=repr)
def test_kale_nonnegative_and_zero_for_identical_samples(kernel):
    fx, fy = _data(20, 20, 2, seed=12, shift=0.0)
    d = KALE(kernel)
    assert float(d.estimate(fx, fx.clone())) == pytest.approx(0.0, abs=1e-12)
    for seed in range(3):
        a, b = _data(15, 12, 2, seed=seed, shift=0.0)
        assert float(d.estimate(a, b)) >= -1e-12
    near = float(d.estimate(fx, fy))
    far = float(d.estimate(fx, fy + 2.0))
    assert 0 <= near < far


def test_kale_envelope_gradient_matches_finite_differences():
    fx, fy = _data(6, 5, 2, seed=13, shift=0.8)
    d = KALE(RBFKernel([1.5]), lam=0.5, tol=1e-14)
    a, b = fx.clone().requires_grad_(True), fy.clone().requires_grad_(True)
    d.estimate(a, b).backward()
    eps = 1e-6
    for t, grad in ((fx, a.grad), (fy, b.grad)):
        fd = torch.zeros_like(t)
        for idx in np.ndindex(*t.shape):
            plus, minus = t.clone(), t.clone()
            plus[idx] += eps
            minus[idx] -= eps
            args_p = (plus, fy) if t is fx else (fx, plus)
            args_m = (minus, fy) if t is fx else (fx, minus)
            fd[idx] = (d.estimate(*args_p) - d.estimate(*args_m)) / (2 * eps)
        torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-7)


def test_kale_below_kl_for_gaussians():
    # KL(N(mu, 1) || N(0, 1)) = mu^2 / 2 = 0.5 in 1-D; KALE is a lower bound (a loose one for lam = 1). With small
    # lam the *sample* estimate can overshoot the population KL, so the check uses lam = 1.
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        fx = torch.randn(150, 1, generator=g, dtype=torch.float64)
        fy = torch.randn(150, 1, generator=g, dtype=torch.float64) + 1.0
        val = float(KALE(RBFKernel([1.0]), lam=1.0).estimate(fx, fy))
        assert 0.05 < val < 0.5


def test_kale_solution_is_cached_per_pair():
    fx, fy = _data(8, 8, 2, seed=15)
    d = KALE(RBFKernel())
    s1 = d.solve(fx, fy)
    assert d.solve(fx, fy) is s1
    fy.add_(0.1)  # modified in place: solved again
    assert d.solve(fx, fy) is not s1


def test_kale_warns_when_not_converged():
    fx, fy = _data(10, 10, 2, seed=16, shift=2.0)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        sol = KALE(RBFKernel(), lam=0.1, max_iter=1).solve(fx, fy)
    assert not sol.converged and sol.iterations == 1
    sol = KALE(RBFKernel(), lam=0.1, tol=0.0).solve(fx, fy)  # tol = 0 stops at float64 resolution
    assert sol.converged and sol.iterations < 20


def test_kale_options_validated():
    with pytest.raises(ConfigError):
        KALE(RBFKernel(), lam=0.0)
    with pytest.raises(ConfigError):
        get_registry().create("divergence", {"name": "kale", "max_iter": 0})
    d = get_registry().create("divergence", {"name": "kale", "lam": 0.5, "kernel": "linear"})
    assert d.lam == 0.5 and d.kernel.is_linear


# -- the shared contracts ------------------------------------------------------------------------------------------
class TestMMDContract(DivergenceContract):
    divergence_name = "mmd"


class TestMMDLinearContract(DivergenceContract):
    divergence_name = "mmd"
    kernel = "linear"


class TestMMDBiasedRQContract(DivergenceContract):
    divergence_name = "mmd"
    options = {"estimator": "biased"}
    kernel = {"name": "rq", "linear_weight": 1.0}


class TestKALEContract(DivergenceContract):
    divergence_name = "kale"
    n_large = 200


class TestKALELinearContract(DivergenceContract):
    divergence_name = "kale"
    kernel = "linear"
