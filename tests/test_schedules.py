"""Noise schedules against independent numpy computations and the discrete DDPM schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gflowzoo.errors import ConfigError
from gflowzoo.plugins import get_registry
from gflowzoo.schedules import VPCosine, VPLinear
from gflowzoo.testing.contracts import ScheduleContract

T = np.linspace(0.0, 1.0, 101)


def test_vp_linear_matches_numpy():
    s = VPLinear(beta_min=0.3, beta_max=12.0)
    t = torch.tensor(T, dtype=torch.float64)
    abar = np.exp(-0.3 * T - 0.5 * (12.0 - 0.3) * T**2)
    np.testing.assert_allclose(s.alpha(t).numpy(), np.sqrt(abar), rtol=1e-12)
    np.testing.assert_allclose(s.sigma(t).numpy(), np.sqrt(1 - abar), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(s.alpha_bar(t).numpy(), abar, rtol=1e-12)


def test_vp_linear_is_the_limit_of_discrete_ddpm():
    betas = np.linspace(1e-4, 0.02, 1000)
    abar_discrete = np.cumprod(1 - betas)  # abar after step i = 1..1000, at t = i / 1000
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    diff = np.abs(VPLinear().alpha_bar(t).numpy() - abar_discrete)
    assert diff.max() < 1e-2
    assert diff.max() < 2e-3  # in fact much closer


def np_cosine_abar(t, s=0.008):
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
    return f / np.cos(s / (1 + s) * np.pi / 2) ** 2


def test_vp_cosine_matches_numpy():
    sched = VPCosine(s=0.008, min_alpha_bar=1e-5)
    t = torch.tensor(T, dtype=torch.float64)
    abar = 1e-5 + (1 - 1e-5) * np.clip(np_cosine_abar(T), 0, 1)
    np.testing.assert_allclose(sched.alpha(t).numpy(), np.sqrt(abar), rtol=1e-10)
    np.testing.assert_allclose(sched.sigma(t).numpy(), np.sqrt(1 - abar), rtol=1e-8, atol=1e-12)
    # away from t = 1 the floor is invisible: the plain Nichol & Dhariwal formula
    inner = T < 0.99
    np.testing.assert_allclose(sched.alpha_bar(t).numpy()[inner], np_cosine_abar(T[inner]), rtol=1e-4, atol=1e-5)


def test_vp_cosine_alpha_positive_at_one_and_exact_start():
    sched = VPCosine()
    one = torch.tensor([1.0], dtype=torch.float64)
    assert float(sched.alpha(one)) == pytest.approx(math.sqrt(1e-5), rel=1e-9)
    assert float(sched.alpha(one)) > 0 and float(sched.sigma(one)) < 1
    zero = torch.tensor([0.0], dtype=torch.float64)
    assert float(sched.alpha(zero)) == pytest.approx(1.0, abs=1e-15)
    assert float(sched.sigma(zero)) == pytest.approx(0.0, abs=1e-15)
    snr = sched.snr(torch.linspace(0.01, 1.0, 200, dtype=torch.float64))
    assert (snr[1:] < snr[:-1]).all(), "the signal-to-noise ratio must strictly decrease"


@pytest.mark.parametrize("sched", [VPLinear(), VPCosine()], ids=repr)
def test_float32_sigma_accurate_at_small_t(sched):
    t = torch.tensor([1e-4, 1e-3, 1e-2], dtype=torch.float32)
    s32 = sched.sigma(t).double()
    s64 = sched.sigma(t.double())
    np.testing.assert_allclose(s32.numpy(), s64.numpy(), rtol=1e-5)
    assert sched.sigma(t).dtype == torch.float32 and sched.alpha(t).dtype == torch.float32


def test_registry_options_and_errors():
    reg = get_registry()
    s = reg.create("schedule", {"name": "vp-linear", "beta_max": 10, "t_min": 0.01})
    assert isinstance(s, VPLinear) and s.beta_max == 10.0 and s.t_min == 0.01
    c = reg.create("schedule", {"name": "vp-cosine", "min_alpha_bar": 1e-4})
    assert float(c.alpha_bar(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(1e-4)
    for bad in ({"name": "vp-linear", "beta_min": 5.0, "beta_max": 1.0}, {"name": "vp-cosine", "t_min": 1.0},
                {"name": "vp-cosine", "min_alpha_bar": 0.0}):
        with pytest.raises(ConfigError):
            reg.create("schedule", bad)


def test_python_float_and_int_inputs():
    s = VPLinear()
    assert float(s.alpha(0.5)) == pytest.approx(math.exp(-0.5 * (0.1 * 0.5 + 0.5 * 19.9 * 0.25)))
    assert float(s.sigma(torch.tensor(0))) == 0.0


class TestVPLinearContract(ScheduleContract):
    schedule_name = "vp-linear"


class TestVPCosineContract(ScheduleContract):
    schedule_name = "vp-cosine"
