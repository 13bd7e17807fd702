"""Large-sample MMD^2: the row-tiled, upper-triangle Gram sums of :func:`gflowzoo.divergences.mmd2` against a numpy
computation on whole matrices, bounded tile sizes, and the linear kernel's matrix-free path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import gflowzoo.divergences as dv
from gflowzoo.divergences import mmd2
from gflowzoo.interfaces import Kernel
from gflowzoo.kernels import EnergyKernel, LinearKernel, RBFKernel, RQKernel

ESTIMATORS = ["unbiased", "biased", "u-statistic"]


def _np_gram(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = cdist(a, b, "sqeuclidean")
    if name == "rbf":  # sigmas [0.7, 2.5], std convention
        return sum(np.exp(-d2 / (2 * s * s)) for s in (0.7, 2.5))
    if name == "rq":  # alphas [0.2, 0.5, 1, 3], linear weight 0.5
        return sum((1 + d2 / (2 * al)) ** -al for al in (0.2, 0.5, 1.0, 3.0)) + 0.5 * a @ b.T
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return na[:, None] + nb[None, :] - np.sqrt(d2)


KERNELS = {"rbf": RBFKernel([0.7, 2.5]), "rq": RQKernel([0.2, 0.5, 1.0, 3.0], linear_weight=0.5),
           "energy": EnergyKernel()}


def _np_mmd2(name: str, x: np.ndarray, y: np.ndarray, estimator: str) -> float:
    kxx, kyy, kxy = _np_gram(name, x, x), _np_gram(name, y, y), _np_gram(name, x, y)
    n, m = len(x), len(y)
    if estimator == "biased":
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    xy = kxy.mean() if estimator == "unbiased" else (kxy.sum() - np.trace(kxy)) / (n * (n - 1))
    return xx + yy - 2 * xy


def _data(n: int, m: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, generator=g, dtype=torch.float64),
            torch.randn(m, 3, generator=g, dtype=torch.float64) * 1.3 + 0.4)


class _Recording(Kernel):
    """Wraps a kernel and records the shape of every Gram matrix asked for."""

    def __init__(self, inner: Kernel) -> None:
        self.inner, self.shapes = inner, []

    def gram(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.shapes.append((x.shape[0], y.shape[0]))
        return self.inner.gram(x, y)

    def diag(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.diag(x)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_tiled_sums_match_whole_matrices(monkeypatch, name, estimator):
    n, m = (41, 41) if estimator == "u-statistic" else (41, 29)
    x, y = _data(n, m)
    expected = _np_mmd2(name, x.numpy(), y.numpy(), estimator)
    untiled = float(mmd2(x, y, KERNELS[name], estimator))
    monkeypatch.setattr(dv, "TILE_ENTRIES", 100)  # tiles of 2-3 rows
    rec = _Recording(KERNELS[name])
    tiled = float(mmd2(x, y, rec, estimator))
    assert max(r for r, _ in rec.shapes) <= 3  # it did tile
    np.testing.assert_allclose(untiled, expected, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(tiled, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_tiled_gradients_match(monkeypatch, estimator):
    n = 23
    x, y = _data(n, n, seed=1)
    kernel = RBFKernel([0.9, 3.0])

    def grads() -> tuple[torch.Tensor, torch.Tensor]:
        xx, yy = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        mmd2(xx, yy, kernel, estimator).backward()
        return xx.grad, yy.grad

    gx, gy = grads()
    monkeypatch.setattr(dv, "TILE_ENTRIES", 50)
    tx, ty = grads()
    # the gradient of MMD^2 in x_i by hand: d/dx k(x, z) = -(x - z) / s^2 * exp(-|x - z|^2 / (2 s^2))
    xn, yn = x.numpy(), y.numpy()

    def dk(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [len(a), len(b), D]: d k(a_i, b_j) / d a_i
        diff = a[:, None, :] - b[None, :, :]
        d2 = (diff**2).sum(-1)
        return sum(-diff / s**2 * np.exp(-d2 / (2 * s * s))[..., None] for s in (0.9, 3.0))

    wxx = np.ones((n, n)) - (0 if estimator == "biased" else np.eye(n))
    wxy = np.ones((n, n)) - (np.eye(n) if estimator == "u-statistic" else 0)
    cxx = n * n if estimator == "biased" else n * (n - 1)
    cxy = n * (n - 1) if estimator == "u-statistic" else n * n
    ex = 2 * (dk(xn, xn) * wxx[..., None]).sum(1) / cxx - 2 * (dk(xn, yn) * wxy[..., None]).sum(1) / cxy
    np.testing.assert_allclose(tx.numpy(), gx.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(tx.numpy(), ex, rtol=1e-9, atol=1e-12)
    assert torch.allclose(ty, gy, rtol=1e-10, atol=1e-13)


def test_tiles_bound_memory_and_use_the_upper_triangle(monkeypatch):
    monkeypatch.setattr(dv, "TILE_ENTRIES", 1000)
    n = 200
    x, y = _data(n, n, seed=2)
    rec = _Recording(RBFKernel([1.0]))
    mmd2(x, y, rec, "unbiased")
    assert all(r * c <= 1000 for r, c in rec.shapes)  # never more than a tile of entries at once
    entries = sum(r * c for r, c in rec.shapes)
    # Kxx and Kyy: the upper triangle with the diagonal tiles (n (n + rows) / 2 each); Kxy whole (n^2)
    rows = 1000 // n
    assert entries == 2 * (n * (n + rows) // 2) + n * n


class _NoGram(LinearKernel):
    """A linear kernel that refuses to build a Gram matrix."""

    def gram(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise AssertionError(f"a {x.shape[0]} x {y.shape[0]} Gram matrix was asked for")


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_linear_mmd2_builds_no_gram_matrix(estimator):
    x, y = _data(50, 50, seed=3)
    got = float(mmd2(x, y, _NoGram(), estimator))
    k = lambda a, b: a @ b.T  # noqa: E731
    xn, yn = x.numpy(), y.numpy()
    n = len(xn)
    if estimator == "biased":
        expected = k(xn, xn).mean() + k(yn, yn).mean() - 2 * k(xn, yn).mean()
    else:
        kxx, kyy, kxy = k(xn, xn), k(yn, yn), k(xn, yn)
        xy = kxy.mean() if estimator == "unbiased" else (kxy.sum() - np.trace(kxy)) / (n * (n - 1))
        expected = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * xy
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_linear_mmd2_at_a_size_no_gram_matrix_fits():
    # n = m = 400,000: one n x m float32 matrix would take 640 GB
    n, d = 400_000, 4
    g = torch.Generator().manual_seed(4)
    x = torch.randn(n, d, generator=g)
    y = torch.randn(n, d, generator=g) + torch.tensor([0.1, 0.0, -0.2, 0.0])
    got = float(mmd2(x, y, LinearKernel(), "unbiased"))
    # closed form in float64 from sums: (|S_x|^2 - Q_x)/(n(n-1)) + (|S_y|^2 - Q_y)/(n(n-1)) - 2 <S_x, S_y>/n^2
    xd, yd = x.double(), y.double()
    sx, sy = xd.sum(0), yd.sum(0)
    expected = ((sx @ sx - (xd**2).sum()) + (sy @ sy - (yd**2).sum())) / (n * (n - 1)) - 2 * (sx @ sy) / n**2
    np.testing.assert_allclose(got, float(expected), rtol=1e-3, atol=1e-5)
    assert abs(float(expected) - 0.05) < 0.01  # |mean shift|^2 = 0.01 + 0.04


@pytest.mark.parametrize("name", ["rbf", "rq"])
@pytest.mark.parametrize("block", [10, 50, 1 << 16])
def test_mixture_grams_by_row_blocks_match_numpy(monkeypatch, name, block):
    import gflowzoo.kernels as km

    monkeypatch.setattr(km, "_BLOCK_ENTRIES", block)  # 1 row, 2 rows (uneven last block), or all rows at once
    x, y = _data(37, 23, seed=5)
    got = KERNELS[name].gram(x, y)
    np.testing.assert_allclose(got.numpy(), _np_gram(name, x.numpy(), y.numpy()), rtol=1e-12, atol=1e-14)
    same = KERNELS[name].gram(x, x)
    np.testing.assert_allclose(same.numpy(), _np_gram(name, x.numpy(), x.numpy()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grad", [False, True])
def test_far_points_keep_the_wide_terms_exact(dtype, grad):
    # squared distances up to ~1e6: the narrow terms underflow (their exponents are clamped at exp_floor), the wide
    # ones must stay exact
    import gflowzoo.kernels as km

    g = torch.Generator().manual_seed(6)
    x = (torch.randn(30, 4, generator=g, dtype=torch.float64) * 300).to(dtype).requires_grad_(grad)
    y = (torch.randn(20, 4, generator=g, dtype=torch.float64) * 300).to(dtype)
    d2 = cdist(x.detach().double().numpy(), y.double().numpy(), "sqeuclidean")
    rbf = RBFKernel([0.3, 50.0, 400.0])
    expected = sum(np.exp(-d2 / (2 * s * s)) for s in (0.3, 50.0, 400.0))
    np.testing.assert_allclose(rbf.gram(x, y).detach().double().numpy(), expected, rtol=2e-5, atol=1e-30)
    rq = RQKernel([0.2, 5.0, 30.0])
    expected = sum((1 + d2 / (2 * al)) ** -al for al in (0.2, 5.0, 30.0))
    np.testing.assert_allclose(rq.gram(x, y).detach().double().numpy(), expected, rtol=2e-5, atol=1e-30)
    assert km.exp_floor(dtype) == pytest.approx(np.log(np.finfo(np.float32 if dtype == torch.float32 else
                                                                   np.float64).tiny) + 1)
