"""Euler and noise-injected Euler steps against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from gflowzoo.errors import ConfigError
from gflowzoo.integrators import Euler, EulerNoisy
from gflowzoo.plugins import get_registry
from gflowzoo.testing.contracts import IntegratorContract


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_euler_on_a_quadratic_potential_matches_the_closed_form():
    # velocity = -grad U for U(z) = 1/2 sum_k a_k z_k^2: Euler gives z_k <- (1 - eta a_k)^n z_0
    a = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    z0 = torch.randn(10, 3, generator=_gen(0), dtype=torch.float64)
    eta, n = 0.1, 25
    out = Euler().run(z0, lambda z: -a * z, n, eta)
    torch.testing.assert_close(out, z0 * (1 - eta * a) ** n, rtol=1e-12, atol=1e-14)


def test_per_particle_step_sizes_on_images():
    z0 = torch.randn(4, 1, 3, 3, generator=_gen(1), dtype=torch.float64)
    eta = torch.tensor([0.0, 0.1, 0.2, 0.5], dtype=torch.float64)
    out = Euler().step(z0, lambda z: -z, eta)
    torch.testing.assert_close(out, z0 * (1 - eta)[:, None, None, None])
    with pytest.raises(ValueError):
        Euler().step(z0, lambda z: -z, torch.ones(3))


def test_noisy_with_beta_zero_equals_euler():
    z0 = torch.randn(6, 2, generator=_gen(2))

    def velocity(z):
        return torch.sin(z) - z**3

    a = EulerNoisy(beta=0.0).run(z0, velocity, 4, 0.05, scale=0.7, generator=_gen(3))
    b = Euler().run(z0, velocity, 4, 0.05, scale=0.7)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_noisy_evaluates_the_velocity_at_the_perturbed_point():
    z0 = torch.randn(5, 3, generator=_gen(4))
    beta, scale, eta = 0.5, 0.3, 0.2

    def velocity(z):
        return -z**2

    out = EulerNoisy(beta=beta).step(z0, velocity, eta, scale=scale, generator=_gen(5))
    u = torch.randn(z0.shape, generator=_gen(5))  # the same draws, made independently
    torch.testing.assert_close(out, z0 + eta * velocity(z0 + beta * scale * u))
    # reproducible under a seeded generator, different under another seed
    again = EulerNoisy(beta=beta).step(z0, velocity, eta, scale=scale, generator=_gen(5))
    torch.testing.assert_close(out, again, rtol=0, atol=0)
    other = EulerNoisy(beta=beta).step(z0, velocity, eta, scale=scale, generator=_gen(6))
    assert not torch.equal(out, other)


def test_noisy_per_particle_scale():
    z0 = torch.zeros(3, 2, dtype=torch.float64)
    scale = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    out = EulerNoisy(beta=1.0).step(z0, lambda z: z, 1.0, scale=scale, generator=_gen(7))
    u = torch.randn(3, 2, generator=_gen(7), dtype=torch.float64)
    torch.testing.assert_close(out, scale[:, None] * u)


def test_max_step_caps_displacement():
    z0 = torch.zeros(4, 2, 2, dtype=torch.float64)  # d = 4 per particle
    v = torch.zeros(4, 2, 2, dtype=torch.float64)
    v[:, 0, 0] = torch.tensor([0.1, 1.0, 10.0, -100.0], dtype=torch.float64)
    integ = Euler(max_step=0.5)
    out = integ.step(z0, lambda z: v, 1.0, scale=0.2)
    cap = 0.5 * 0.2 * math.sqrt(4)  # = 0.2
    moved = out.flatten(1).norm(dim=1)
    torch.testing.assert_close(moved, torch.tensor([0.1, cap, cap, cap], dtype=torch.float64))
    assert out[3, 0, 0] < 0  # the direction is kept
    # no cap when max_step = 0
    torch.testing.assert_close(Euler().step(z0, lambda z: v, 1.0, scale=0.2), v)
    # EulerNoisy shares the cap
    noisy = EulerNoisy(beta=0.1, max_step=0.5).step(z0, lambda z: v, 1.0, scale=0.2, generator=_gen(8))
    assert (noisy.flatten(1).norm(dim=1) <= cap + 1e-12).all()


def test_max_step_with_per_particle_scale_and_zero_velocity():
    z0 = torch.ones(3, 4)
    v = torch.full((3, 4), 5.0)
    v[0] = 0.0
    out = Euler(max_step=1.0).step(z0, lambda z: v, 1.0, scale=torch.tensor([1.0, 0.1, 0.01]))
    moved = (out - z0).norm(dim=1)
    torch.testing.assert_close(moved, torch.tensor([0.0, 0.2, 0.02]))
    assert torch.isfinite(out).all()


def test_registry_and_bad_options():
    reg = get_registry()
    e = reg.create("integrator", {"name": "euler-noisy", "beta": 0.25, "max_step": 2})
    assert isinstance(e, EulerNoisy) and e.beta == 0.25 and e.max_step == 2.0
    with pytest.raises(ConfigError):
        reg.create("integrator", {"name": "euler", "max_step": -1.0})
    with pytest.raises(ConfigError):
        reg.create("integrator", {"name": "euler-noisy", "beta": -0.1})


class TestEulerContract(IntegratorContract):
    integrator_name = "euler"


class TestEulerCappedContract(IntegratorContract):
    integrator_name = "euler"
    options = {"max_step": 10.0}


class TestEulerNoisyContract(IntegratorContract):
    integrator_name = "euler-noisy"
