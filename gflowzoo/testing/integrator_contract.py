"""Contract test base for ``integrator`` components (:class:`gflowzoo.interfaces.FlowIntegrator`):
:class:`IntegratorContract`.

Subclass it in a ``test_*.py`` file (a class name starting with ``Test``) and fill the class attributes; the
shared plumbing (the ``registry`` fixture, ``plugins``/``plugin_object``) is :class:`gflowzoo.testing.base.PluginContractBase`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..interfaces import FlowIntegrator
from .base import PluginContractBase, _gen, _spec

__all__ = ["IntegratorContract"]


class IntegratorContract(PluginContractBase):
    """Contract of an ``integrator``: a step keeps the shape, moves along a constant velocity by ``step_size``
    (exactly, or on average when :attr:`injects_noise`), is reproducible under a seeded generator and accepts
    per-particle step sizes ``[N]``."""

    integrator_name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    #: True when a step adds noise to the *positions* (not only to where the velocity is evaluated).
    injects_noise: ClassVar[bool] = False

    def make_integrator(self, registry: Any) -> FlowIntegrator:
        return registry.create("integrator", _spec(self.integrator_name, dict(self.options)))

    def test_builds_through_registry(self, registry: Any) -> None:
        assert registry.get("integrator", self.integrator_name).summary
        assert isinstance(self.make_integrator(registry), FlowIntegrator)

    def test_step_keeps_shape(self, registry: Any) -> None:
        integ = self.make_integrator(registry)
        z = torch.randn(6, 1, 4, 4, generator=_gen(0))
        out = integ.step(z, lambda u: -u, 0.1, scale=0.5, generator=_gen(1))
        assert out.shape == z.shape and out.dtype == z.dtype and torch.isfinite(out).all()

    def _check_constant_move(self, out: torch.Tensor, z: torch.Tensor, expected: torch.Tensor) -> None:
        if self.injects_noise:
            torch.testing.assert_close((out - z).mean(0), expected.mean(0), rtol=0, atol=0.05)
        else:
            torch.testing.assert_close(out, z + expected, rtol=1e-5, atol=1e-6)

    def test_constant_velocity_moves_by_step_size(self, registry: Any) -> None:
        integ = self.make_integrator(registry)
        n = 4000 if self.injects_noise else 8
        z = torch.randn(n, 2, generator=_gen(2))
        c = torch.tensor([1.0, -2.0])
        out = integ.step(z, lambda u: c.expand_as(u), 0.25, scale=1.0, generator=_gen(3))
        self._check_constant_move(out, z, (0.25 * c).expand_as(z))

    def test_per_particle_step_sizes(self, registry: Any) -> None:
        integ = self.make_integrator(registry)
        n = 4000 if self.injects_noise else 8
        z = torch.randn(n, 2, generator=_gen(4))
        c = torch.tensor([1.0, -2.0])
        eta = torch.rand(n, generator=_gen(5))
        out = integ.step(z, lambda u: c.expand_as(u), eta, scale=1.0, generator=_gen(6))
        self._check_constant_move(out, z, eta[:, None] * c)

    def test_reproducible_under_seed(self, registry: Any) -> None:
        integ = self.make_integrator(registry)
        z = torch.randn(16, 3, generator=_gen(7))

        def velocity(u: torch.Tensor) -> torch.Tensor:
            return -u + torch.sin(3 * u)

        a = integ.run(z, velocity, 3, 0.1, scale=0.5, generator=_gen(8))
        b = integ.run(z, velocity, 3, 0.1, scale=0.5, generator=_gen(8))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert a.shape == z.shape and torch.isfinite(a).all()
