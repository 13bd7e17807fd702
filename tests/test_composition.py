"""Classes with one job (issue #12): the DMMD family composes its training step, sampler statistics, sampler and
diagnostics; the generator methods share :class:`gflowzoo.generator.GeneratorMethod`; each contract test base has a
module of its own."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import torch

from gflowzoo import api
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
