"""Reusable contract test bases for gflowzoo components (in the spirit of diffusers' ``SchedulerCommonTest``).

Each base is a plain pytest class: subclass it in a ``test_*.py`` file under a name starting with ``Test``, fill the
class attributes, and pytest runs every inherited ``test_*`` method against your component::

    from gflowzoo.testing import KernelContract

    class TestLaplaceKernel(KernelContract):
        kernel_name = "laplace"
        kernel_options = {"sigma": 2.0}
        plugins = ("example",)          # installed entry-point plugins to load (by entry-point or distribution name)

For a plugin that is not installed, hand the plugin object (a module or object with ``@hookimpl`` functions) instead::

        plugin_object = my_package.plugin

Every test receives the registry through the ``registry`` fixture, with ``plugins`` loaded (through
:func:`gflowzoo.testing.plugins_loaded`) and ``plugin_object`` registered (through
:func:`gflowzoo.plugins.temporary_plugin`) for the duration of the test.

Tests are CPU-sized (well under a second each, except :class:`MethodContract`, which trains a few steps).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from ..interfaces import Divergence, FeatureBackbone, FlowIntegrator, Kernel, NoiseSchedule
from ..plugins import PluginState, get_state, temporary_plugin

__all__ = [
    "BackboneContract",
    "DatasetContract",
    "DivergenceContract",
    "IntegratorContract",
    "KernelContract",
    "MethodContract",
    "PluginContractBase",
    "ScheduleContract",
    "assert_states_equal",
    "contract_plugins",
    "devices",
]


def devices() -> list[str]:
    """The devices the contracts run on: the CPU, plus ``cuda`` where it is available."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@contextlib.contextmanager
def contract_plugins(
    plugins: tuple[str, ...] = (), plugin_object: Any = None, plugin_name: str | None = None
) -> Iterator[PluginState]:
    """Load the installed plugins ``plugins`` and register ``plugin_object`` for a ``with`` block; yields the
    plugin state (``state.registry`` is the registry)."""
    from . import plugins_loaded

    with contextlib.ExitStack() as stack:
        state = stack.enter_context(plugins_loaded(*plugins)) if plugins else get_state()
        if plugin_object is not None:
            state = stack.enter_context(temporary_plugin(plugin_object, plugin_name))
        yield state


def _spec(name: str, options: dict[str, Any]) -> str | dict[str, Any]:
    return {"name": name, **options} if options else name


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class PluginContractBase:
    """Shared plumbing: which plugins to load, and the ``registry`` fixture."""

    #: Installed plugins (entry-point or distribution names) to load for these tests.
    plugins: ClassVar[tuple[str, ...]] = ()
    #: An in-process plugin object (module or object with ``@hookimpl`` functions) to register, or None.
    plugin_object: ClassVar[Any] = None
    #: The name ``plugin_object`` is registered under (default: its ``__name__`` or class name).
    plugin_name: ClassVar[str | None] = None

    @pytest.fixture
    def registry(self) -> Iterator[Any]:
        """The registry with this class's plugins loaded."""
        with contract_plugins(tuple(self.plugins), self.plugin_object, self.plugin_name) as state:
            yield state.registry


# ---------------------------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------------------------


class KernelContract(PluginContractBase):
    """Contract of a ``kernel``: Gram shape, symmetry, positive semi-definiteness, ``diag``, finite gradients
    (also at identical points), dtype and device following the input."""

    kernel_name: ClassVar[str] = ""
    kernel_options: ClassVar[dict[str, Any]] = {}
    #: Feature dimension of the test inputs.
    dim: ClassVar[int] = 3

    def make_kernel(self, registry: Any) -> Kernel:
        """Build the kernel under test through the registry."""
        return registry.create("kernel", _spec(self.kernel_name, dict(self.kernel_options)))

    def test_builds_through_registry(self, registry: Any) -> None:
        entry = registry.get("kernel", self.kernel_name)
        assert entry.summary, "register the kernel with a one-line summary"
        k = self.make_kernel(registry)
        assert isinstance(k, Kernel)

    def test_gram_shape(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        x = torch.randn(5, self.dim, generator=_gen(0))
        y = torch.randn(7, self.dim, generator=_gen(1))
        assert tuple(k.gram(x, y).shape) == (5, 7)
        assert tuple(k(x, y).shape) == (5, 7)

    def test_symmetric(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        x = torch.randn(9, self.dim, generator=_gen(2), dtype=torch.float64)
        g = k.gram(x, x)
        torch.testing.assert_close(g, g.T, rtol=1e-6, atol=1e-8)
        y = torch.randn(4, self.dim, generator=_gen(3), dtype=torch.float64)
        torch.testing.assert_close(k.gram(x, y), k.gram(y, x).T, rtol=1e-6, atol=1e-8)

    def test_positive_semidefinite(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        x = torch.randn(16, self.dim, generator=_gen(4), dtype=torch.float64)
        g = k.gram(x, x)
        g = (g + g.T) / 2
        eig = torch.linalg.eigvalsh(g)
        scale = max(1.0, float(g.abs().max()))
        assert float(eig.min()) >= -1e-5 * scale, f"smallest eigenvalue {float(eig.min()):.3g} (scale {scale:.3g})"

    def test_diag_matches_gram(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        x = torch.randn(6, self.dim, generator=_gen(5), dtype=torch.float64)
        d = k.diag(x)
        assert tuple(d.shape) == (6,)
        torch.testing.assert_close(d, k.gram(x, x).diagonal(), rtol=1e-6, atol=1e-8)

    def test_gradients_finite_at_identical_points(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        base = torch.randn(5, self.dim, generator=_gen(6), dtype=torch.float64)
        x = base.clone().requires_grad_(True)
        y = torch.cat([base[:3], torch.randn(2, self.dim, generator=_gen(7), dtype=torch.float64)]).requires_grad_(True)
        (k.gram(x, y).sum() + k.gram(x, x).sum() + k.diag(x).sum()).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), "non-finite gradient w.r.t. x"
        assert y.grad is not None and torch.isfinite(y.grad).all(), "non-finite gradient w.r.t. y"

    def test_linear_flag(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        if not type(k).is_linear:
            pytest.skip("not a linear kernel")
        x = torch.randn(4, self.dim, generator=_gen(8), dtype=torch.float64)
        y = torch.randn(3, self.dim, generator=_gen(9), dtype=torch.float64)
        torch.testing.assert_close(k.gram(x, y), x @ y.T)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_dtype_and_device_follow_input(self, registry: Any, dtype: torch.dtype) -> None:
        k = self.make_kernel(registry)
        for device in devices():
            x = torch.randn(4, self.dim, generator=_gen(10), dtype=dtype).to(device)
            y = torch.randn(3, self.dim, generator=_gen(11), dtype=dtype).to(device)
            g = k.gram(x, y)
            assert g.dtype == dtype and g.device.type == torch.device(device).type
            d = k.diag(x)
            assert d.dtype == dtype and d.device.type == torch.device(device).type


# ---------------------------------------------------------------------------------------------------------------
# divergences
# ---------------------------------------------------------------------------------------------------------------


class DivergenceContract(PluginContractBase):
    """Contract of a ``divergence``: a finite scalar estimate, about zero for two samples of one distribution and
    clearly positive for shifted samples; a witness of shape ``[K]`` that is higher near the target P than near the
    source Q (the sign convention); gradients that reach both feature sets; a small step up the witness lowers the
    estimate."""

    divergence_name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    #: The kernel spec handed to the divergence.
    kernel: ClassVar[str | dict[str, Any]] = "rbf"
    dim: ClassVar[int] = 2
    #: Sample size for the two-sample checks.
    n_large: ClassVar[int] = 400

    def make_divergence(self, registry: Any) -> Divergence:
        """Build the divergence under test (with :attr:`kernel`) through the registry."""
        k = registry.create("kernel", self.kernel)
        return registry.create("divergence", _spec(self.divergence_name, dict(self.options)), kernel=k)

    def _samples(self, shift: float, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        n = n or self.n_large
        fx = torch.randn(n, self.dim, generator=_gen(seed), dtype=torch.float64)
        fy = torch.randn(n, self.dim, generator=_gen(seed + 1), dtype=torch.float64)
        fy[:, 0] += shift
        return fx, fy

    def test_builds_through_registry(self, registry: Any) -> None:
        assert registry.get("divergence", self.divergence_name).summary
        assert isinstance(self.make_divergence(registry), Divergence)

    def test_estimate_is_finite_scalar(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        fx, fy = self._samples(1.0, n=64)
        est = d.estimate(fx, fy)
        assert isinstance(est, torch.Tensor) and est.ndim == 0
        assert torch.isfinite(est)

    def test_same_distribution_small_shifted_positive(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        same = float(d.estimate(*self._samples(0.0)))
        shifted = float(d.estimate(*self._samples(2.0)))
        assert shifted > 0, f"estimate for shifted samples is {shifted:.4g}"
        assert abs(same) < 0.1 * shifted, f"same-distribution estimate {same:.4g} vs shifted {shifted:.4g}"

    def test_witness_shape_and_sign(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        fx, fy = self._samples(0.0, n=200)
        fx = 0.5 * fx + torch.tensor([2.0] + [0.0] * (self.dim - 1), dtype=fx.dtype)  # target P around +2 e1
        fy = 0.5 * fy - torch.tensor([2.0] + [0.0] * (self.dim - 1), dtype=fy.dtype)  # source Q around -2 e1
        fz = torch.zeros(5, self.dim, dtype=fx.dtype)
        fz[:, 0] = torch.tensor([2.0, 1.5, 0.0, -1.5, -2.0])
        w = d.witness(fz, fx, fy)
        assert tuple(w.shape) == (5,)
        assert torch.isfinite(w).all()
        assert float(w[0]) > float(w[-1]), "the witness must be higher near the target P than near the source Q"
        assert float(w[1]) > float(w[3])

    def test_gradients_reach_both_feature_sets(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        fx, fy = self._samples(1.0, n=64)
        fx.requires_grad_(True)
        fy.requires_grad_(True)
        d.estimate(fx, fy).backward()
        for name, t in (("fx", fx), ("fy", fy)):
            assert t.grad is not None, f"no gradient reaches {name}"
            assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0, f"bad gradient w.r.t. {name}"

    def test_step_up_the_witness_lowers_the_estimate(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        fx, fy = self._samples(1.5, n=128)
        z = fy.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(d.witness(z, fx, fy.detach()).sum(), z)
        assert torch.isfinite(grad).all()
        moved = fy + 0.2 * grad / grad.norm(dim=1, keepdim=True).mean().clamp_min(1e-12)
        before, after = float(d.estimate(fx, fy)), float(d.estimate(fx, moved))
        assert after < before, f"moving Q up the witness raised the estimate ({before:.4g} -> {after:.4g})"


# ---------------------------------------------------------------------------------------------------------------
# noise schedules
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# integrators
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# backbones
# ---------------------------------------------------------------------------------------------------------------


class BackboneContract(PluginContractBase):
    """Contract of a ``backbone``: output ``[N, D]``, depends on ``t`` when :attr:`noise_conditional`, finite
    gradients w.r.t. the input, ``state_dict`` round trip, batch size 1."""

    backbone_name: ClassVar[str] = ""
    in_shape: ClassVar[tuple[int, ...]] = (1, 8, 8)
    feature_dim: ClassVar[int] = 16
    options: ClassVar[dict[str, Any]] = {}
    noise_conditional: ClassVar[bool] = True

    def make_backbone(self, registry: Any, seed: int = 0) -> FeatureBackbone:
        torch.manual_seed(seed)
        return registry.create(
            "backbone", _spec(self.backbone_name, dict(self.options)),
            in_shape=tuple(self.in_shape), feature_dim=self.feature_dim,
        )

    def _x(self, n: int, seed: int = 0) -> torch.Tensor:
        return torch.randn(n, *self.in_shape, generator=_gen(seed)).clamp(-1, 1)

    def test_builds_through_registry(self, registry: Any) -> None:
        assert registry.get("backbone", self.backbone_name).summary
        net = self.make_backbone(registry)
        assert isinstance(net, FeatureBackbone)
        assert tuple(net.in_shape) == tuple(self.in_shape) and net.feature_dim == self.feature_dim

    def test_output_shape(self, registry: Any) -> None:
        net = self.make_backbone(registry)
        out = net(self._x(4), torch.rand(4, generator=_gen(1)))
        assert tuple(out.shape) == (4, self.feature_dim)
        assert torch.isfinite(out).all()

    def test_accepts_no_noise_level(self, registry: Any) -> None:
        net = self.make_backbone(registry)
        out = net(self._x(3), None)
        assert tuple(out.shape) == (3, self.feature_dim)

    def test_depends_on_t(self, registry: Any) -> None:
        if not self.noise_conditional:
            pytest.skip("backbone is not noise-conditional")
        net = self.make_backbone(registry).eval()
        x = self._x(4)
        with torch.no_grad():
            a = net(x, torch.full((4,), 0.1))
            b = net(x, torch.full((4,), 0.9))
        assert not torch.allclose(a, b), "features do not change with the noise level t"

    def test_gradients_wrt_input(self, registry: Any) -> None:
        net = self.make_backbone(registry)
        x = self._x(4).requires_grad_(True)
        net(x, torch.rand(4, generator=_gen(2))).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    def test_state_dict_round_trip(self, registry: Any) -> None:
        a = self.make_backbone(registry, seed=0).eval()
        b = self.make_backbone(registry, seed=1).eval()
        b.load_state_dict(a.state_dict())
        x, t = self._x(3), torch.rand(3, generator=_gen(3))
        with torch.no_grad():
            torch.testing.assert_close(a(x, t), b(x, t))

    def test_batch_size_one(self, registry: Any) -> None:
        net = self.make_backbone(registry)
        out = net(self._x(1), torch.tensor([0.5]))
        assert tuple(out.shape) == (1, self.feature_dim)
        with torch.no_grad():
            assert tuple(net.eval()(self._x(1), torch.tensor([0.5])).shape) == (1, self.feature_dim)


# ---------------------------------------------------------------------------------------------------------------
# data sets
# ---------------------------------------------------------------------------------------------------------------


class DatasetContract(PluginContractBase):
    """Contract of a ``dataset``: shapes and dtype, value range (images in ``[-1, 1]``, points of unit-ish
    scale), determinism of ``sample`` under a seeded generator, ``to_unit`` sanity, ``batches``, ``DataHandle``.

    Override :meth:`make_root` to write tiny data files into ``tmp_path`` and return the data root."""

    dataset_name: ClassVar[str] = ""
    #: Expected per-sample shape, or None to accept any.
    expected_shape: ClassVar[tuple[int, ...] | None] = None
    #: Splits that must open.
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def make_root(self, tmp_path: Path) -> Path | None:
        """Create tiny data files under ``tmp_path`` and return the data root (None: the data needs no files)."""
        return None

    @pytest.fixture
    def dataset(self, registry: Any, tmp_path: Path) -> Any:
        """The train split, opened through the registry."""
        from ..data import open_dataset

        self._root = self.make_root(tmp_path)
        return open_dataset(self.dataset_name, "train", self._root, registry)

    def test_shapes_and_dtype(self, dataset: Any) -> None:
        from ..data import Dataset

        assert isinstance(dataset, Dataset)
        assert dataset.kind in ("image", "points")
        assert len(dataset) > 0
        if self.expected_shape is not None:
            assert tuple(dataset.shape) == tuple(self.expected_shape)
        if dataset.kind == "image":
            assert len(dataset.shape) == 3
        x = dataset.get(torch.arange(min(5, len(dataset))))
        assert tuple(x.shape) == (min(5, len(dataset)), *dataset.shape)
        assert x.dtype == torch.float32

    def test_value_range(self, dataset: Any) -> None:
        x = dataset.sample(256, _gen(0))
        assert torch.isfinite(x).all()
        if dataset.kind == "image":
            assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0, "images must be in [-1, 1]"
            assert float(x.max() - x.min()) > 0.5, "images look constant"
        else:
            std = x.std(0)
            assert ((std > 0.2) & (std < 5.0)).all(), f"points should have unit-ish scale, got std {std.tolist()}"

    def test_sample_deterministic(self, dataset: Any) -> None:
        a = dataset.sample(32, _gen(1))
        b = dataset.sample(32, _gen(1))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        c = dataset.sample(32, _gen(2))
        assert not torch.equal(a, c)

    def test_to_unit(self, dataset: Any) -> None:
        x = dataset.sample(64, _gen(3))
        u = dataset.to_unit(x)
        assert u.shape == x.shape and torch.isfinite(u).all()
        if dataset.kind == "image":
            torch.testing.assert_close(u, ((x + 1) / 2).clamp(0, 1))
        else:
            # an affine map: to_unit(2x) - to_unit(0) = 2 (to_unit(x) - to_unit(0))
            zero = dataset.to_unit(torch.zeros_like(x))
            torch.testing.assert_close(dataset.to_unit(2 * x) - zero, 2 * (u - zero), rtol=1e-5, atol=1e-5)
            info = dataset.info()
            if "centres" in info and "mode_std" in info:
                centres = torch.tensor(info["centres"], dtype=u.dtype)
                dist = torch.cdist(u, centres).min(1).values
                assert float((dist < 5 * info["mode_std"]).float().mean()) > 0.95, "samples are far from centres"

    def test_batches_cover_the_data(self, dataset: Any) -> None:
        limit = min(len(dataset), 100)
        sizes = [len(b) for b in dataset.batches(32, limit=limit)]
        assert sum(sizes) == limit and all(s <= 32 for s in sizes)

    def test_splits_and_handle(self, registry: Any, dataset: Any) -> None:
        from ..data import DataHandle, open_dataset

        for split in self.splits:
            ds = open_dataset(self.dataset_name, split, self._root, registry)
            assert tuple(ds.shape) == tuple(dataset.shape) and len(ds) > 0
        handle = DataHandle(self.dataset_name, self._root, registry=registry)
        assert tuple(handle.shape) == tuple(dataset.shape) and handle.kind == dataset.kind


# ---------------------------------------------------------------------------------------------------------------
# methods
# ---------------------------------------------------------------------------------------------------------------


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): obj}


def assert_states_equal(a: dict[str, Any], b: dict[str, Any], atol: float = 1e-6) -> None:
    """Assert two (nested) state dicts hold the same keys, tensors (allclose ``atol``) and plain values."""
    fa, fb = _flatten(a), _flatten(b)
    assert sorted(fa) == sorted(fb), f"state keys differ: {sorted(set(fa) ^ set(fb))[:10]}"
    for key in fa:
        va, vb = fa[key], fb[key]
        if isinstance(va, torch.Tensor):
            assert isinstance(vb, torch.Tensor), key
            assert va.shape == vb.shape and va.dtype == vb.dtype, key
            if va.is_floating_point():
                torch.testing.assert_close(va, vb, rtol=0, atol=atol, msg=f"{key} differs")
            else:
                assert torch.equal(va, vb), f"{key} differs"
        elif isinstance(va, float) and isinstance(vb, float):
            assert math.isclose(va, vb, rel_tol=0, abs_tol=atol) or (math.isnan(va) and math.isnan(vb)), key
        else:
            assert va == vb, f"{key}: {va!r} != {vb!r}"


class MethodContract(PluginContractBase):
    """Contract of a ``method``, using the real :func:`gflowzoo.session.resolve`, :func:`build_method` and
    :func:`gflowzoo.trainer.train`: a 2-step run writes config.toml, a checkpoint (loadable with
    ``weights_only=True``), metrics.jsonl and a final grid; 2 steps + resume to 4 equal 4 steps straight;
    a method rebuilt from the checkpoint samples like the trained one (and, where training changed the samples, unlike
    an untrained one); ``sample`` has the right shape, is finite and deterministic; the saved config resolves back to
    itself.

    The checks on ``state_dict`` alone (resume equivalence, the weights-only round trip) compare state dicts with
    each other, so a ``state_dict`` that leaves the trained state out (``{}``) passes them: both sides are empty.
    :meth:`test_checkpoint_restores_the_trained_method` compares what the method *does* instead.

    Put whatever makes the method tiny into :attr:`sets` (``["batch_size=16", "backbone.width=8"]``)."""

    method_name: ClassVar[str] = ""
    dataset: ClassVar[str] = "toy-8gaussians"
    #: ``--set`` style overrides that make the method tiny.
    sets: ClassVar[list[str]] = []
    #: Tolerance of the resume equivalence (0: bit for bit).
    resume_atol: ClassVar[float] = 1e-6
    n_samples: ClassVar[int] = 8

    # -- plumbing ----------------------------------------------------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def method_registry(cls) -> Iterator[Any]:
        """The registry with this class's plugins, held for the whole class (training shares one state)."""
        with contract_plugins(tuple(cls.plugins), cls.plugin_object, cls.plugin_name) as state:
            yield state.registry

    @classmethod
    def resolve_spec(cls, registry: Any, steps: int, base: dict[str, Any] | None = None) -> Any:
        """The run spec for a tiny CPU run of ``steps`` total steps."""
        from ..session import resolve

        loop = ["run.log_every=1", "run.grid_size=16", "run.checkpoint_every=0", "run.sample_every=0",
                "run.eval_every=0", "run.minutes=0.0"]
        if base is not None:
            return resolve(registry, cls.method_name, base.get("dataset"), base=base,
                           sets=[f"run.steps={steps}"], overrides={"device": "cpu"})
        return resolve(registry, cls.method_name, cls.dataset, sets=loop + list(cls.sets) + [f"run.steps={steps}"],
                       overrides={"device": "cpu"}, preset="cpu-quick")

    @classmethod
    def train_run(cls, registry: Any, path: Path, steps: int, resume: bool = False) -> tuple[Any, Any, Any]:
        """Train into ``path`` (or resume it) up to ``steps`` through the run service
        (:func:`gflowzoo.runner.train_run`, as ``gflowzoo train`` does); returns ``(spec, method, result)``."""
        from ..runner import train_run
        from ..runs import RunDir

        run = RunDir(path)
        payload = None
        if resume:
            spec = cls.resolve_spec(registry, steps, base=run.read_config())
            _, payload = run.latest_checkpoint(cls.method_name)
        else:
            spec = cls.resolve_spec(registry, steps)
        outcome = train_run(registry, run, spec, payload=payload, progress=False)
        return spec, outcome.method, outcome.result

    @pytest.fixture(scope="class")
    @classmethod
    def trained(cls, method_registry: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
        """One 2-step run shared by the read-only checks."""
        path = tmp_path_factory.mktemp("run") / "run"
        spec, method, result = cls.train_run(method_registry, path, 2)
        return {"path": path, "spec": spec, "method": method, "result": result}

    # -- tests -------------------------------------------------------------------------------------------------
    def test_builds_through_registry(self, method_registry: Any) -> None:
        from ..interfaces import Method

        entry = method_registry.get("method", self.method_name)
        assert entry.summary
        cls = entry.load()
        assert issubclass(cls, Method)
        assert dataclasses.is_dataclass(cls.Config), "a method needs a Config dataclass"
        for variant in ("paper", "cpu-quick"):
            assert isinstance(cls.preset(self.dataset, variant), dict)

    def test_run_directory_written(self, trained: dict[str, Any]) -> None:
        from ..runs import RunDir

        run, result = RunDir(trained["path"]), trained["result"]
        assert run.config_path.is_file()
        ckpts = run.checkpoints()
        assert ckpts and str(ckpts[-1]) == result.checkpoint
        expected = 2 if getattr(trained["method"], "trainable", True) else 0
        assert result.step == expected
        records = run.read_metrics()
        if expected:
            assert records and all("step" in r and "time" in r for r in records)
            assert records[-1]["step"] == expected
        assert result.grid is not None and Path(result.grid).is_file() and Path(result.grid).stat().st_size > 0

    def test_checkpoint_loads_weights_only(self, method_registry: Any, trained: dict[str, Any]) -> None:
        from ..runs import RunDir, load_checkpoint
        from ..session import build_method

        path = RunDir(trained["path"]).checkpoints()[-1]
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert raw["method"] == self.method_name
        payload = load_checkpoint(path, self.method_name)
        fresh = build_method(method_registry, trained["spec"], "cpu")
        fresh.load_state_dict(payload["state"])
        assert_states_equal(fresh.state_dict(), trained["method"].state_dict(), atol=0.0)

    def test_checkpoint_restores_the_trained_method(self, method_registry: Any, trained: dict[str, Any]) -> None:
        """A method rebuilt from the final checkpoint samples exactly like the trained method (same seed); where
        training changed the samples (an untrained method samples differently), it does not sample like an untrained
        one. Catches a ``state_dict``/``load_state_dict`` pair that loses the trained state."""
        from ..runs import RunDir, load_checkpoint
        from ..session import build_method

        spec = trained["spec"]
        payload = load_checkpoint(RunDir(trained["path"]).checkpoints()[-1], self.method_name)
        rebuilt = build_method(method_registry, spec, "cpu")
        rebuilt.load_state_dict(payload["state"])
        untrained = build_method(method_registry, spec, "cpu")
        n = self.n_samples
        x_trained, x_rebuilt, x_untrained = (m.sample(n, _gen(11)) for m in (trained["method"], rebuilt, untrained))
        if not torch.equal(x_trained, x_untrained):  # training changed something: the checkpoint must hold it
            assert not torch.equal(x_rebuilt, x_untrained), (
                "the method rebuilt from the checkpoint samples like an untrained one: state_dict() or "
                "load_state_dict() loses the trained state"
            )
        torch.testing.assert_close(x_rebuilt, x_trained, rtol=0, atol=0,
                                   msg="the method rebuilt from the checkpoint samples unlike the trained one")

    def test_sample(self, trained: dict[str, Any]) -> None:
        method = trained["method"]
        n = self.n_samples
        a = method.sample(n, _gen(5))
        assert tuple(a.shape) == (n, *method.data.shape)
        assert a.device.type == "cpu" and torch.isfinite(a).all()
        b = method.sample(n, _gen(5))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert isinstance(method.sampling_info(), dict)

    def test_saved_config_resolves_to_itself(self, method_registry: Any, trained: dict[str, Any]) -> None:
        from ..config import load_toml

        saved = load_toml(Path(trained["path"]) / "config.toml")
        assert saved == trained["spec"].to_data()
        again = self.resolve_spec(method_registry, saved["run"]["steps"], base=saved)
        assert again.to_data() == saved

    def test_resume_equals_straight_run(self, method_registry: Any, tmp_path: Path) -> None:
        cls = method_registry.load("method", self.method_name)
        if not getattr(cls, "trainable", True):
            pytest.skip("method has nothing to train")
        _, straight, _ = self.train_run(method_registry, tmp_path / "straight", 4)
        self.train_run(method_registry, tmp_path / "resumed", 2)
        _, resumed, result = self.train_run(method_registry, tmp_path / "resumed", 4, resume=True)
        assert result.step == 4
        assert_states_equal(straight.state_dict(), resumed.state_dict(), atol=self.resume_atol)
