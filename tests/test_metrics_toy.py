"""Toy 2-D metrics against independent numpy/scipy computations on data the tests make."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment, linprog
from scipy.spatial.distance import cdist

from gflowzoo.data import DataHandle
from gflowzoo.errors import UserError
from gflowzoo.evaluate import Evaluator
from gflowzoo.metrics.base import EvalContext
from gflowzoo.metrics.toy import (
    MMD,
    EnergyDistance,
    HighQualityFraction,
    ModesCovered,
    SlicedWasserstein,
    mode_statistics,
    sliced_wasserstein,
    w2_squared_1d,
)


class PointsReference:
    """A stand-in for :class:`gflowzoo.metrics.reference.Reference` holding fixed points."""

    def __init__(self, points, scale=1.0, info=None):
        self.points, self.scale, self._info = torch.as_tensor(points), scale, info or {}

    def samples(self):
        return self.points

    def to_unit(self, x):
        return x * self.scale

    def info(self):
        return self._info


def _rng_points(seed, n, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2)) * scale + shift


def test_mmd_matches_numpy_unbiased_rbf_mixture():
    x, y = _rng_points(0, 120), _rng_points(1, 90, shift=0.4, scale=1.3)
    sigmas = [0.3, 1.0, 2.5]

    def k(a, b):
        d2 = cdist(a, b, "sqeuclidean")
        return sum(np.exp(-d2 / (2 * s * s)) for s in sigmas)

    kxx, kyy, kxy = k(y, y), k(x, x), k(y, x)  # y: reference (target), x: samples
    n, m = len(y), len(x)
    want = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())
    got = MMD(sigmas=sigmas).compute(EvalContext(torch.tensor(x), PointsReference(y)))["mmd"]
    assert got == pytest.approx(want, rel=1e-10)


def test_energy_distance_matches_scipy():
    x, y = _rng_points(2, 80), _rng_points(3, 100, shift=[0.5, -0.2])
    dxy, dxx, dyy = cdist(x, y), cdist(x, x), cdist(y, y)
    n, m = len(x), len(y)
    want = 2 * dxy.mean() - dxx.sum() / (n * (n - 1)) - dyy.sum() / (m * (m - 1))
    got = EnergyDistance().compute(EvalContext(torch.tensor(x), PointsReference(y)))["energy"]
    assert got == pytest.approx(want, rel=1e-9)


def test_w2_1d_equal_sizes_matches_optimal_assignment():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(40), rng.standard_normal(40) * 2 + 1
    rows, cols = linear_sum_assignment((a[:, None] - b[None, :]) ** 2)
    want = ((a[rows] - b[cols]) ** 2).mean()
    got = float(w2_squared_1d(torch.tensor(a)[None], torch.tensor(b)[None])[0])
    assert got == pytest.approx(want, rel=1e-10)


def test_w2_1d_unequal_sizes_matches_linear_programme():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(7), rng.standard_normal(5) + 0.5
    n, m = len(a), len(b)
    cost = ((a[:, None] - b[None, :]) ** 2).ravel()
    a_eq = np.zeros((n + m, n * m))
    for i in range(n):
        a_eq[i, i * m:(i + 1) * m] = 1
    for j in range(m):
        a_eq[n + j, j::m] = 1
    lp = linprog(cost, A_eq=a_eq, b_eq=np.r_[np.full(n, 1 / n), np.full(m, 1 / m)], bounds=(0, None))
    got = float(w2_squared_1d(torch.tensor(a)[None], torch.tensor(b)[None])[0])
    assert got == pytest.approx(lp.fun, rel=1e-7)


def test_sliced_wasserstein_is_mean_over_directions():
    x, y = _rng_points(6, 50), _rng_points(7, 50, shift=1.0)
    dirs = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    per = []
    for d in dirs:
        px, py = np.sort(x @ d), np.sort(y @ d)
        per.append(((px - py) ** 2).mean())
    want = np.sqrt(np.mean(per))
    assert sliced_wasserstein(torch.tensor(x), torch.tensor(y), torch.tensor(dirs)) == pytest.approx(want, rel=1e-10)
    # the metric draws its own directions from the seed: deterministic, and larger for a shifted cloud
    m = SlicedWasserstein(projections=64)
    near = m.compute(EvalContext(torch.tensor(_rng_points(8, 400)), PointsReference(_rng_points(9, 400)), seed=3))
    again = m.compute(EvalContext(torch.tensor(_rng_points(8, 400)), PointsReference(_rng_points(9, 400)), seed=3))
    far = m.compute(EvalContext(torch.tensor(_rng_points(8, 400, shift=1.0)), PointsReference(_rng_points(9, 400)),
                                seed=3))
    assert near == again and far["swd"] > 5 * near["swd"]


def test_mode_statistics_count_by_hand():
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    std = 0.1
    pts = np.concatenate([
        np.tile(centres[0], (30, 1)) + 0.25,  # distance 0.354 > 0.3: not high quality
        np.tile(centres[1], (25, 1)) + 0.05,  # distance 0.07: high quality
        np.tile(centres[2], (5, 1)),          # high quality, but only 5 samples
    ])
    s = mode_statistics(torch.tensor(pts), torch.tensor(centres), std, per_2500=20 * 2500 / 60 / 4)  # threshold 5
    d = cdist(pts, centres)
    hq = d.min(1) <= 3 * std
    assert s["hq_fraction"] == pytest.approx(hq.mean())
    counts = np.bincount(d.argmin(1)[hq], minlength=3)
    assert s["counts"] == counts.tolist() == [0, 25, 5]
    assert s["covered"] == int((counts >= s["threshold"]).sum()) == 2


def test_mode_metrics_use_raw_units_and_need_a_mixture():
    centres = [[2.0, 0.0], [-2.0, 0.0]]
    raw = torch.tensor([[2.0, 0.0]] * 30 + [[-2.0, 0.01]] * 30 + [[0.0, 0.0]] * 40)
    ref = PointsReference(raw[:2], scale=2.0, info={"centres": centres, "mode_std": 0.05})
    ctx = EvalContext(raw / 2.0, ref)  # model units = raw / scale
    assert ModesCovered().compute(ctx) == {"modes": 2.0, "modes_total": 2.0}  # threshold 20 * 100 / 2500 = 0.8
    assert HighQualityFraction().compute(ctx)["hq"] == pytest.approx(0.6)
    with pytest.raises(UserError, match="Gaussian-mixture"):
        ModesCovered().check("points", {})
    with pytest.raises(UserError, match="points"):
        MMD().check("image", {})


def test_evaluator_on_toy_data_separates_good_and_bad_samples():
    data = DataHandle("toy-8gaussians")
    ev = Evaluator(data, n=800, seed=1)
    good = data.train.sample(800, torch.Generator().manual_seed(0))
    bad = good * 0.5
    rg, rb = ev.evaluate_samples(good), ev.evaluate_samples(bad)
    assert set(rg.values) >= {"mmd", "energy", "swd", "modes", "hq"}
    assert rg.protocol["reference"]["split"] == "test" and rg.protocol["reference"]["n"] == 800
    assert abs(rg.values["mmd"]) < 0.01 < rb.values["mmd"]
    assert rg.values["swd"] < rb.values["swd"] and rg.values["energy"] < rb.values["energy"]
    assert rg.values["modes"] == 8 and rb.values["modes"] == 0
    assert rg.values["hq"] > 0.95 and rb.values["hq"] == 0.0
    with pytest.raises(UserError, match="Gaussian-mixture"):
        Evaluator(DataHandle("toy-swissroll"), ["modes"]).prepare()
