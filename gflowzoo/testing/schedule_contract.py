"""Contract test base for ``schedule`` components (:class:`gflowzoo.interfaces.NoiseSchedule`):
:class:`ScheduleContract`.

Subclass it in a ``test_*.py`` file (a class name starting with ``Test``) and fill the class attributes; the
shared plumbing (the ``registry`` fixture, ``plugins``/``plugin_object``) is :class:`gflowzoo.testing.base.PluginContractBase`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch

from ..interfaces import NoiseSchedule
from .base import PluginContractBase, _gen, _spec

__all__ = ["ScheduleContract"]


class ScheduleContract(PluginContractBase):
    """Contract of a ``schedule``: ``alpha``/``sigma`` in ``[0, 1]``, alpha decreasing and sigma increasing in t,
    ``alpha(t_min)`` near 1, ``sigma(1)`` near 1 (variance-preserving), ``add_noise`` statistics, ``grid``."""

    schedule_name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    #: True for variance-preserving schedules (alpha^2 + sigma^2 = 1, sigma(1) ~ 1).
    variance_preserving: ClassVar[bool] = True

    def make_schedule(self, registry: Any) -> NoiseSchedule:
        return registry.create("schedule", _spec(self.schedule_name, dict(self.options)))

    def test_builds_through_registry(self, registry: Any) -> None:
        assert registry.get("schedule", self.schedule_name).summary
        s = self.make_schedule(registry)
        assert isinstance(s, NoiseSchedule)
        assert 0.0 <= s.t_min < 0.5

    def test_ranges_and_monotonicity(self, registry: Any) -> None:
        s = self.make_schedule(registry)
        t = torch.linspace(s.t_min, 1.0, 201, dtype=torch.float64)
        a, sg = s.alpha(t), s.sigma(t)
        assert a.shape == t.shape and sg.shape == t.shape
        assert torch.isfinite(a).all() and torch.isfinite(sg).all()
        assert (a >= -1e-7).all() and (a <= 1 + 1e-7).all(), "alpha leaves [0, 1]"
        assert (sg >= -1e-7).all() and (sg <= 1 + 1e-7).all(), "sigma leaves [0, 1]"
        assert (a[1:] <= a[:-1] + 1e-9).all() and a[-1] < a[0], "alpha must decrease in t"
        assert (sg[1:] >= sg[:-1] - 1e-9).all() and sg[-1] > sg[0], "sigma must increase in t"

    def test_shape_preserved(self, registry: Any) -> None:
        s = self.make_schedule(registry)
        t = torch.rand(3, 4, generator=_gen(0))
        assert s.alpha(t).shape == (3, 4) and s.sigma(t).shape == (3, 4)

    def test_endpoints(self, registry: Any) -> None:
        s = self.make_schedule(registry)
        a0 = float(s.alpha(torch.tensor([s.t_min], dtype=torch.float64))[0])
        assert a0 >= 0.9, f"alpha(t_min) = {a0:.4g}; the path should start near clean data"
        if self.variance_preserving:
            t = torch.linspace(s.t_min, 1.0, 11, dtype=torch.float64)
            torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones_like(t), rtol=0, atol=1e-5)
            s1 = float(s.sigma(torch.tensor([1.0], dtype=torch.float64))[0])
            assert s1 >= 0.99, f"sigma(1) = {s1:.4g}; a VP path should end in (almost) pure noise"

    def test_add_noise_statistics(self, registry: Any) -> None:
        s = self.make_schedule(registry)
        n = 20000
        x0 = torch.tensor([0.5, -1.0], dtype=torch.float64).expand(n, 2).contiguous()
        t = torch.full((n,), 0.5, dtype=torch.float64)
        xt = s.add_noise(x0, t, generator=_gen(1))
        assert xt.shape == x0.shape and xt.dtype == x0.dtype
        a = float(s.alpha(torch.tensor(0.5, dtype=torch.float64)))
        sg = float(s.sigma(torch.tensor(0.5, dtype=torch.float64)))
        mean, var = xt.mean(0), xt.var(0)
        tol_mean = 5 * sg / math.sqrt(n) + 1e-9
        torch.testing.assert_close(mean, a * x0[0], rtol=0, atol=tol_mean)
        torch.testing.assert_close(var, torch.full_like(var, sg**2), rtol=5 * math.sqrt(2 / n), atol=1e-9)

    def test_add_noise_exact_with_given_noise_and_scalar_t(self, registry: Any) -> None:
        s = self.make_schedule(registry)
        x0 = torch.randn(4, 1, 3, 3, generator=_gen(2))
        noise = torch.randn(4, 1, 3, 3, generator=_gen(3))
        t = torch.tensor(0.3)
        out = s.add_noise(x0, t, noise=noise)
        torch.testing.assert_close(out, s.alpha(t) * x0 + s.sigma(t) * noise)
        a = s.add_noise(x0, torch.full((4,), 0.3), generator=_gen(4))
        b = s.add_noise(x0, torch.full((4,), 0.3), generator=_gen(4))
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    def test_grid(self, registry: Any) -> None:
        s = self.make_schedule(registry)
        for n_levels in (2, 10):
            g = s.grid(n_levels)
            assert tuple(g.shape) == (n_levels,)
            assert math.isclose(float(g[0]), 1.0, abs_tol=1e-6)
            assert math.isclose(float(g[-1]), s.t_min, rel_tol=1e-5, abs_tol=1e-7)
            assert (g[1:] < g[:-1]).all(), "grid must be strictly decreasing"
