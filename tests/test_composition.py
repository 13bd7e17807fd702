"""Classes with one job (issue #12): the DMMD family composes its training step, sampler statistics, sampler and
diagnostics; the generator methods share :class:`gflowzoo.generator.GeneratorMethod`; each contract test base has a
module of its own; every MMD method computes its losses and witnesses through its ``divergence`` component."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest
import torch

from gflowzoo import api
from gflowzoo.config import dumps_toml
from gflowzoo.errors import ConfigError
from gflowzoo.registry import Entry, Registry
from gflowzoo.session import build_method, resolve
from gflowzoo.testing import method_builder, plugins_loaded

ROOT = Path(__file__).resolve().parents[1]

#: the generator methods and the checkpoint keys they have always written
GENERATOR_METHODS = {
    ("gmmn", "gmmn", ("hidden=[8]", "batch_size=8")): ["generator", "opt"],
    ("gmmn", "gmmn-ae", ("hidden=[8]", "batch_size=8", "ae_hidden=[8]", "code_dim=4")):
        ["generator", "opt", "encoder", "decoder", "opt_ae"],
    ("mmdgan", "mmdgan", ("batch_size=8", "mlp_hidden=[8]")): None,
    ("mmdgan", "mmdgan-gp", ("batch_size=8", "mlp_hidden=[8]")): None,
}


@pytest.mark.parametrize(("plugin", "method", "sets"), list(GENERATOR_METHODS))
def test_generator_methods_share_the_base(plugin, method, sets):
    with plugins_loaded(plugin) as state:
        build = method_builder(state.registry)
        m = build(method, "toy-8gaussians", *sets)
        assert isinstance(m, api.GeneratorMethod)
        keys = GENERATOR_METHODS[(plugin, method, sets)]
        if keys is not None:
            assert list(m.state_dict()) == keys
        assert list(m.state_dict()) == list(m.stateful())
        a = m.sample(5, torch.Generator().manual_seed(3))
        b = m.sample(5, torch.Generator().manual_seed(3))
        assert a.shape == (5, 2) and torch.equal(a, b)
        assert all(mod.training for mod in m.sampling_modules())  # sampling gave every network its mode back
        again = build(method, "toy-8gaussians", *sets)
        again.load_state_dict(m.state_dict())
        assert torch.equal(again.sample(5, torch.Generator().manual_seed(3)), a)


def test_dmmd_composes_its_pieces():
    from gflowzoo_dmmd.diagnostics import CriticDiagnostics
    from gflowzoo_dmmd.sampler import ParticleSampler
    from gflowzoo_dmmd.statistics import SamplerStatistics
    from gflowzoo_dmmd.training import CriticTraining

    with plugins_loaded("dmmd") as state:
        m = method_builder(state.registry)("dmmd", "toy-8gaussians", "backbone.width=8", "backbone.depth=1",
                                           "groups=2", "n_clean=4", "n_noisy=4", "stats_samples=16",
                                           "sampler.levels=3", "sampler.particles=8")
        assert isinstance(m.training, CriticTraining) and isinstance(m.statistics, SamplerStatistics)
        assert isinstance(m.sampler, ParticleSampler) and isinstance(m.diagnostics, CriticDiagnostics)
        assert m.opt is m.training.opt and m.diag_acc is m.diagnostics.acc
        m.train_step(0, torch.Generator().manual_seed(0))
        assert m.step_count == 1
        assert set(m.state_dict()) == {"backbone", "extra", "ema_backbone", "ema_extra", "opt", "step", "diag",
                                       "stats"}
        assert m.state_dict()["stats"] == {}
        m.finalize(torch.Generator().manual_seed(0))
        assert m.stats_final and m.state_dict()["stats"]["step"] == 1
        m.stats = {}
        assert m.statistics.stats == {}


def test_dmmd_modules_are_small():
    """Each piece of the noise-conditional base reads in one sitting."""
    folder = ROOT / "plugins" / "gflowzoo-dmmd" / "gflowzoo_dmmd"
    for name in ("base", "training", "statistics", "sampler", "diagnostics", "state"):
        lines = len((folder / f"{name}.py").read_text(encoding="utf-8").splitlines())
        assert lines <= 300, f"{name}.py has {lines} lines"


def test_one_contract_per_module():
    from gflowzoo import testing

    for module_name in testing._CONTRACT_MODULES:
        if module_name in ("base", "contracts"):
            continue
        module = importlib.import_module(f"gflowzoo.testing.{module_name}")
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        contracts = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Contract")]
        assert len(contracts) == 1, f"{module_name}: {contracts}"
    from gflowzoo.testing import contracts

    for name in contracts.__all__:
        assert getattr(contracts, name) is getattr(testing, name)


class ScaledMMD(api.Divergence):
    """A third-party divergence: ``scale`` times the biased MMD^2 and its witness; counts its calls."""

    calls = {"estimate": 0, "witness": 0}

    def __init__(self, kernel="rbf", scale: float = 2.0) -> None:
        super().__init__(kernel)
        self.scale = float(scale)

    def estimate(self, fx, fy):
        type(self).calls["estimate"] += 1
        return self.scale * api.mmd2(fx, fy, self.kernel, "biased")

    def witness(self, fz, fx, fy):
        type(self).calls["witness"] += 1
        return self.scale * api.witness(fz, fx, fy, self.kernel)


@pytest.fixture(scope="module")
def scaled_registry():
    """The MMD methods' plugins plus the divergence ``gfz-scaled-mmd``, in a registry of its own."""
    with plugins_loaded("gmmn", "mmdgan", "dmmd") as state:
        reg = Registry()
        for e in state.registry.entries():
            reg.add(Entry(e.kind, e.name, e.target, e.summary, e.plugin, e.version))
        reg.add(Entry("divergence", "gfz-scaled-mmd", ScaledMMD, "scaled biased MMD^2 (test plugin)", "test-div"))
        yield reg


def _counted(fn):
    before = dict(ScaledMMD.calls)
    fn()
    return {k: ScaledMMD.calls[k] - before[k] for k in before}


SCALED = 'divergence={name="gfz-scaled-mmd", scale=3.0}'


def test_a_registered_divergence_drives_the_mmd_methods(scaled_registry):
    """gmmn, gmmn-ae, mmdgan, mmdgan-gp and mmdflow compute every loss and witness through their ``divergence``
    component, on their own ``kernel``: a plugin's divergence replaces the MMD."""
    build = method_builder(scaled_registry)
    fx, fy = torch.randn(8, 2), torch.randn(8, 2) + 1.0
    g = torch.Generator().manual_seed(0)
    for method, sets in (("gmmn", ["hidden=[8]", "batch_size=8"]),
                         ("gmmn-ae", ["hidden=[8]", "batch_size=8", "ae_hidden=[8]", "code_dim=2", "ae_steps=0"])):
        m = build(method, "toy-8gaussians", *sets, SCALED)
        assert isinstance(m.divergence, ScaledMMD) and m.divergence.kernel is m.kernel and m.divergence.scale == 3.0
        loss, est = m.loss(fx, fy)
        torch.testing.assert_close(est, 3.0 * api.mmd2(fx, fy, m.kernel, "biased"))
        torch.testing.assert_close(loss, est.sqrt())
        assert _counted(lambda m=m: m.train_step(0, g)) == {"estimate": 1, "witness": 0}

    m = build("mmdgan", "toy-8gaussians", "batch_size=8", "mlp_hidden=[8]", "critic.width=8",
              "critic_steps_warmup=2", SCALED)
    assert isinstance(m.divergence, ScaledMMD) and m.divergence.kernel is m.kernel
    dist, est = m._distance(fx, fy)
    torch.testing.assert_close(est, 3.0 * api.mmd2(fx, fy, m.kernel, "biased"))
    assert dist is est
    assert _counted(lambda: m.train_step(0, g)) == {"estimate": 3, "witness": 0}  # 2 critic steps + the generator

    m = build("mmdgan-gp", "toy-8gaussians", "batch_size=8", "mlp_hidden=[8]", "critic.width=8",
              "critic_steps=2", SCALED)
    assert isinstance(m.divergence, ScaledMMD) and m.divergence.kernel is m.kernel
    torch.testing.assert_close(m._mmd2(fx, fy), 3.0 * api.mmd2(fx, fy, m.kernel, "biased"))
    assert _counted(lambda: m.train_step(0, g)) == {"estimate": 3, "witness": 2}
    with pytest.raises(ConfigError, match="rq_diagonal_quirk"):
        build("mmdgan-gp", "toy-8gaussians", "rq_diagonal_quirk=true", SCALED)

    m = build("mmdflow", "toy-8gaussians", "n_data=16", "particles=4", "steps=3", SCALED)
    assert isinstance(m.divergence, ScaledMMD) and m.divergence.kernel is m.kernel
    x = m.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 2) and torch.isfinite(x).all()
    assert ScaledMMD.calls["witness"] >= 3


def test_configs_without_a_divergence_field_keep_their_estimator(scaled_registry):
    """A config written before the ``divergence`` field (``kernel`` and ``estimator`` options, no ``divergence``)
    resolves to the ``mmd`` divergence with that estimator and gives the loss ``mmd2`` gave; resolved configs
    survive their TOML round trip; the older ``estimator`` cannot be folded into another divergence."""
    reg = scaled_registry
    fx, fy = torch.randn(8, 2), torch.randn(8, 2) + 1.0
    for method, default, sets in (("gmmn", "biased", ["hidden=[8]", "batch_size=8"]),
                                  ("mmdgan", "unbiased", ["batch_size=8", "mlp_hidden=[8]", "critic.width=8"])):
        new = resolve(reg, method, "toy-8gaussians", sets=sets, overrides={"device": "cpu"}, preset="cpu-quick")
        assert new.model.divergence == {"name": "mmd", "estimator": default} and new.model.estimator is None
        old = new.to_data()
        del old["divergence"]
        for est in ("biased", "unbiased", "u-statistic"):
            spec = resolve(reg, method, base={**old, "estimator": est}, overrides={"device": "cpu"})
            assert spec.model.divergence == {"name": "mmd", "estimator": est} and spec.model.estimator == est
            again = resolve(reg, method, base=tomllib.loads(dumps_toml(spec.to_data())), overrides={"device": "cpu"})
            assert again.model == spec.model
            m = build_method(reg, spec, "cpu")
            value = m.loss(fx, fy)[1] if method == "gmmn" else m._distance(fx, fy)[1]
            assert torch.equal(value, api.mmd2(fx, fy, m.kernel, est))
        with pytest.raises(ConfigError, match="older spelling of divergence.estimator"):
            resolve(reg, method, base={**old, "estimator": "biased"}, sets=[SCALED], overrides={"device": "cpu"})
