"""The KID estimator, the paired test and the learning-rate schedule of ``mmdgan-gp``'s ``adaptive_lr``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from gflowzoo.data import Points
from gflowzoo_mmdgan.kid_lr import KIDLearningRate, block_kids, kid_unbiased, paired_p_value


def np_kid(x: np.ndarray, y: np.ndarray) -> float:
    """The widely used reference formula (clean-fid / StyleGAN2-ADA), one subset of equal size."""
    n, m = x.shape[1], len(x)
    a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
    b = (x @ y.T / n + 1) ** 3
    return ((a.sum() - np.diag(a).sum()) / (m - 1) - 2 * b.sum() / m) / m


def test_kid_matches_reference_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    y = torch.randn(50, 6, generator=g, dtype=torch.float64) + 0.3
    assert float(kid_unbiased(x, y)) == pytest.approx(np_kid(x.numpy(), y.numpy()), rel=1e-10)
    blocks = block_kids(x, y, 5)
    assert blocks.shape == (5,)
    assert float(blocks[2]) == pytest.approx(np_kid(x[20:30].numpy(), y[20:30].numpy()), rel=1e-10)


def test_paired_p_value_matches_scipy():
    g = torch.Generator().manual_seed(1)
    new = torch.randn(10, generator=g, dtype=torch.float64)
    old = new - 0.3 + 0.2 * torch.randn(10, generator=g, dtype=torch.float64)
    t = stats.ttest_rel(new.numpy(), old.numpy()).statistic
    assert paired_p_value(new, old) == pytest.approx(stats.norm.cdf(t), rel=1e-10)
    assert paired_p_value(old, old) == 0.5


class _Opt:
    """Stands in for an optimizer: only ``param_groups`` is used."""

    def __init__(self, lr: float) -> None:
        self.param_groups = [{"lr": lr}]


def _schedule(shifts: list[float]) -> tuple[KIDLearningRate, list[float]]:
    data = Points(torch.randn(4000, 2, generator=torch.Generator().manual_seed(0)), "gauss", "train", 1.0)
    kid = KIDLearningRate((2,), "points", every=1, n=400, blocks=8, lookback=2, patience=2)
    opt = _Opt(1.0)
    lrs = []
    for i, shift in enumerate(shifts):
        gen = torch.Generator().manual_seed(100 + i)
        kid.update(lambda n, s=shift, g=gen: torch.randn(n, 2, generator=g) + s, data, [opt], torch.device("cpu"))
        lrs.append(opt.param_groups[0]["lr"])
    return kid, lrs


def test_lr_halves_after_repeated_failures_only():
    # the model gets worse at every evaluation: evaluations 3 and 4 (compared with 1 and 2) fail -> decay
    kid, lrs = _schedule([0.5, 1.0, 1.5, 2.0, 2.5])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5]
    assert kid.decays == 1 and kid.failures == 1  # evaluation 4 is tested against 2 again
    # steady improvement: never decays
    _, lrs = _schedule([3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0])
    assert lrs == [1.0] * 7


def test_state_round_trip():
    kid, _ = _schedule([0.5, 1.0, 1.5])
    other = KIDLearningRate((2,), "points")
    other.load_state_dict(kid.state_dict())
    assert other.state_dict() == kid.state_dict() and other.memory
