"""Components are injected: the session builds every component a method's config names with the registry it was
given, and hands them to the method (``components=``); config checks run when a configuration is resolved; DMMD's
base kernel is any registered kernel; DMMD and DKALE get their divergence injected."""

from __future__ import annotations

import re

import pytest
import torch

from gflowzoo.divergences import KALE, MMD
from gflowzoo.errors import ConfigError
from gflowzoo.hookspecs import hookimpl
from gflowzoo.interfaces import Kernel, WidthAwareKernel
from gflowzoo.kernels import RBFKernel, exp_floor, sq_dists
from gflowzoo.plugins import get_registry, temporary_plugin
from gflowzoo.registry import ComponentFactory, Components, Entry, Registry
from gflowzoo.session import build_components, build_method, resolve
from gflowzoo.testing import method_builder, plugins_loaded

#: a tiny linear-kernel toy DMMD (the sampler mechanics configuration of the dmmd plugin's tests)
TOY = ['width_prior="none"', "learn_width=true", "width_init=0.0", "backbone.input_skip=0.0",
       'sampler.step_schedule="auto"', "sampler.step_size=0.0", "sampler.n_ref=16", "lambda_flow=0.0",
       "backbone.width=16", "backbone.depth=1", "feature_dim=8", "stats_samples=64", "sampler.levels=3",
       "sampler.steps_per_level=1", "sampler.particles=8", "groups=2", "n_clean=8", "n_noisy=8"]


class PrivateRBF(RBFKernel):
    """A Gaussian kernel only a private registry knows; counts its width settings."""

    widths_set = 0

    def at_width(self, h):
        type(self).widths_set += 1
        return super().at_width(h)


class WidthLaplace(Kernel, WidthAwareKernel):
    """A third-party Laplace kernel ``exp(-|a - b| / (sigma h))`` that takes DMMD's width ``h``."""

    calls = 0

    def __init__(self, sigma: float = 1.0, h=None) -> None:
        self.sigma, self.h = float(sigma), h

    def gram(self, x, y):
        scale = self.sigma if self.h is None else self.sigma * self.h.to(x.dtype)
        return torch.exp(-torch.cdist(x, y) / scale)

    def at_width(self, h):
        type(self).calls += 1
        return WidthLaplace(self.sigma, h)


class FixedLaplace(Kernel):
    """A Laplace kernel without a width to set: DMMD uses it with its own ``sigma``."""

    def __init__(self, sigma: float = 2.0) -> None:
        self.sigma = float(sigma)

    def gram(self, x, y):
        return torch.exp(-torch.cdist(x, y) / self.sigma)


class ThirdParty:
    @hookimpl
    def gflowzoo_register(self, register):
        register("kernel", "gfz-wlaplace", WidthLaplace, "a width-aware Laplace kernel (test plugin)")
        register("kernel", "gfz-flaplace", FixedLaplace, "a fixed Laplace kernel (test plugin)")


@pytest.fixture(scope="module")
def registry():
    with plugins_loaded("dmmd", "gmmn") as state:
        yield state.registry


def _private(registry: Registry) -> Registry:
    """A registry of its own: every entry of ``registry`` plus the kernel ``private-rbf``."""
    reg = Registry()
    for e in registry.entries():
        reg.add(Entry(e.kind, e.name, e.target, e.summary, e.plugin, e.version))
    reg.add(Entry("kernel", "private-rbf", PrivateRBF, "a private kernel", "test-private"))
    return reg


def _train_and_sample(m, steps: int = 2, n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        logs = m.train_step(step, g)
        assert torch.isfinite(torch.tensor(logs["loss"]))
    m.finalize(g)
    x = m.sample(n, torch.Generator().manual_seed(1))
    assert x.shape == (n, *m.shape) and torch.isfinite(x).all()
    return x


def test_a_private_registry_reaches_the_method(registry):
    """Methods use the registry the session was given: a kernel the global registry lacks reaches gmmn and dmmd."""
    reg = _private(registry)
    assert "private-rbf" not in get_registry().names("kernel")
    spec = resolve(reg, "gmmn", "toy-8gaussians", sets=["kernel=private-rbf", "batch_size=16"],
                   overrides={"device": "cpu"}, preset="cpu-quick")
    m = build_method(reg, spec, "cpu")
    assert isinstance(m.kernel, PrivateRBF)
    m.train_step(0, torch.Generator().manual_seed(0))

    spec = resolve(reg, "dmmd", "toy-8gaussians", sets=[*TOY, "kernel=private-rbf"], overrides={"device": "cpu"},
                   preset="cpu-quick")
    PrivateRBF.widths_set = 0
    m = build_method(reg, spec, "cpu")
    assert isinstance(m.kernel, PrivateRBF) and m.width_aware
    _train_and_sample(m)
    assert PrivateRBF.widths_set > 0


def test_build_components_by_field_path(registry):
    spec = resolve(registry, "dmmd", "toy-8gaussians", sets=[*TOY, 'kernel="rbf"'], overrides={"device": "cpu"},
                   preset="cpu-quick")
    parts = build_components(registry, spec.model)
    assert isinstance(parts, Components)
    assert set(parts) == {"backbone", "schedule", "kernel", "divergence", "sampler.integrator"}
    assert isinstance(parts["backbone"], ComponentFactory) and parts["backbone"].name == spec.model.backbone["name"]
    assert isinstance(parts["kernel"], RBFKernel) and isinstance(parts["divergence"], MMD)
    net = parts["backbone"](in_shape=(2,), feature_dim=8)
    assert net(torch.zeros(3, 2), torch.full((3,), 0.5)).shape == (3, 8)
    with pytest.raises(KeyError, match="No component 'nope'"):
        parts["nope"]


def test_methods_built_without_components_resolve_them_the_session_way(registry):
    """An older caller (``Method(config, data, device)``) still works: the method resolves its components through
    :func:`gflowzoo.session.build_components` (the global registry)."""
    build = method_builder(registry)
    m = build("dmmd", "toy-8gaussians", *TOY)
    bare = type(m)(m.config, m.data, "cpu")
    assert type(bare.kernel) is type(m.kernel) and type(bare.backbone) is type(m.backbone)


def test_nested_component_options_are_built_and_checked(registry):
    """A divergence's ``kernel`` option is itself a component: checked at resolve time, built by the session."""
    mmd = registry.component("divergence", {"name": "mmd", "kernel": {"name": "rbf", "sigmas": [2.0]}})
    assert isinstance(mmd.kernel, RBFKernel) and mmd.kernel.sigmas == [2.0]
    with pytest.raises(ConfigError, match=r"divergence\.kernel.*Did you mean 'rbf'"):
        resolve(registry, "dmmd", "toy-8gaussians", sets=[*TOY, 'divergence.kernel="rbff"'],
                overrides={"device": "cpu"}, preset="cpu-quick")


@pytest.mark.parametrize("item, message", [
    ("groups=0", "groups must be >= 1 and n_clean, n_noisy >= 2"),
    ("ema=1.0", "ema must be in [0, 1)"),
    ("sampler.levels=0", "sampler.levels and sampler.particles must be >= 1"),
])
def test_config_checks_fail_when_resolving(registry, item, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve(registry, "dmmd", "toy-8gaussians", sets=[item], overrides={"device": "cpu"}, preset="cpu-quick")


def test_config_checks_of_other_methods_fail_when_resolving(registry):
    with pytest.raises(ConfigError, match="sampler.variant must be 'approx'"):
        resolve(registry, "dkale", "toy-8gaussians", sets=['sampler.variant="exact"'], overrides={"device": "cpu"})
    with pytest.raises(ConfigError, match="noise_decay must be in"):
        resolve(registry, "mmdflow", "toy-8gaussians", sets=["noise_decay=0.0"], overrides={"device": "cpu"})
    with pytest.raises(ConfigError, match="batch_size must be > 0"):
        resolve(registry, "gmmn", "toy-8gaussians", sets=["batch_size=0"], overrides={"device": "cpu"})


def test_a_third_party_kernel_reaches_dmmd(registry):
    """``--set kernel=<a plugin's kernel>``: a width-aware one gets the noise-adaptive width h(t); one without the
    protocol is used with its own options. Both train a few steps and sample."""
    with temporary_plugin(ThirdParty(), "gfz-third-party") as state:
        build = method_builder(state.registry)
        WidthLaplace.calls = 0
        m = build("dmmd", "toy-8gaussians", *TOY, "kernel=gfz-wlaplace")
        assert isinstance(m.kernel, WidthLaplace) and m.has_width() and "width" in m.extra
        _train_and_sample(m)
        assert WidthLaplace.calls > 0

        m = build("dmmd", "toy-8gaussians", *TOY, "kernel.name=gfz-flaplace", "kernel.sigma=3.0")
        assert isinstance(m.kernel, FixedLaplace) and m.kernel.sigma == 3.0
        assert not m.has_width() and "width" not in m.extra
        assert all(k is m.kernel for k in m._group_kernels(torch.tensor([0.2, 0.7])))
        _train_and_sample(m)
    assert "gfz-wlaplace" not in get_registry().names("kernel")


def test_saved_rbf_configs_keep_their_kernel(registry):
    """``kernel = "rbf"`` (a saved config of the Literal days) is the registered Gaussian at the learned width:
    exactly ``exp(-|a - b|^2 / (2 h^2))``, as before."""
    build = method_builder(registry)
    m = build("dmmd", "toy-8gaussians", *TOY, 'kernel="rbf"')
    assert m.config.kernel == "rbf" and m.width_aware
    t = torch.tensor([0.1, 0.9])
    h = m._width(t, ema=False)
    x, y = torch.randn(6, 8), torch.randn(5, 8)
    for i, k in enumerate(m._group_kernels(t)):
        old = torch.exp((-sq_dists(x, y) / (2 * h[i] ** 2)).clamp_min(exp_floor(x.dtype)))
        assert torch.equal(k.gram(x, y), old)
    lin = build("dmmd", "toy-8gaussians", *TOY, 'kernel="linear"')
    assert lin.kernel.is_linear and not lin.width_aware and lin.linear_unbiased_mmd()


def test_divergences_are_injected(registry):
    """dmmd's MMD and dkale's KALE come from the ``divergence`` field; a divergence that does not fit is refused."""
    build = method_builder(registry)
    m = build("dmmd", "toy-8gaussians", *TOY, 'divergence={name="mmd", estimator="biased"}')
    assert isinstance(m.divergence, MMD) and m.divergence.estimator == "biased" and not m.linear_unbiased_mmd()
    _train_and_sample(m, steps=1)
    with pytest.raises(ConfigError, match="divergence must be an MMD divergence"):
        build("dmmd", "toy-8gaussians", *TOY, "divergence=kale")

    k = build("dkale", "toy-8gaussians", "backbone.width=16", "backbone.depth=1", "feature_dim=8", "groups=2",
              "n_clean=8", "n_noisy=8", "sampler.levels=3")
    assert isinstance(k.divergence, KALE)
    with pytest.raises(ConfigError, match="divergence must have one"):
        build("dkale", "toy-8gaussians", "divergence=mmd")


def test_one_kale_objective():
    """KALE's estimate is ``(1 + lam)`` times its critic objective (the one dkale maximises) minus the penalty."""
    torch.manual_seed(0)
    fx, fy = torch.randn(20, 3), torch.randn(15, 3) + 0.5
    kale = KALE("linear", lam=0.5)
    sol = kale.solve(fx, fy)
    w = sol.coef.float()
    by_hand = 1.5 * (KALE.critic_objective(fx @ w, fy @ w) - 0.25 * (w @ w))
    torch.testing.assert_close(kale.estimate(fx, fy), by_hand)
    hx, hy = torch.randn(3, 7), torch.randn(3, 4)
    torch.testing.assert_close(KALE.critic_objective(hx, hy), 1.0 + hy.mean(1) - hx.exp().mean(1))


def test_with_kernel_copies():
    mmd = MMD("rbf", "biased")
    lin = get_registry().create("kernel", "linear")
    other = mmd.with_kernel(lin)
    assert other.kernel is lin and other.estimator == "biased" and mmd._kernel_spec == "rbf"
