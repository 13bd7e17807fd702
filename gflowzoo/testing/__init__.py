"""Test helpers and reusable contract test bases for gflowzoo components and plugins.

Plugin authors subclass the contract classes in their own test suites (in the spirit of diffusers'
``SchedulerCommonTest``)::

    from gflowzoo.testing import KernelContract

    class TestMyKernel(KernelContract):
        kernel_name = "my-kernel"
        plugins = ("my-plugin",)      # entry-point names to load for these tests

and load their plugin for a test with :func:`plugins_loaded`. Each contract class lives in a module of its own
(``gflowzoo.testing.kernel_contract``, ``divergence_contract``, ``schedule_contract``, ``integrator_contract``,
``backbone_contract``, ``dataset_contract``, ``method_contract``, ``metric_contract``, ``extractor_contract``), with
their shared plumbing in :mod:`gflowzoo.testing.base`; :mod:`gflowzoo.testing.contracts` gathers the first seven
under the import path of earlier versions. This package re-exports each module's ``__all__`` (the one list of its
public names) and imports a module on first use, so that ``import gflowzoo.testing`` stays light (no torch, no
pytest).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..plugins import PluginState, get_state, reset, temporary_plugin


@contextlib.contextmanager
def plugins_loaded(*names: str) -> Iterator[PluginState]:
    """Load exactly the installed plugins ``names`` (entry-point or distribution names) for a ``with`` block.

    Under tests, installed plugins are not loaded by default; this switches ``GFLOWZOO_LOAD_PLUGINS`` for the block
    and restores the previous state afterwards.
    """
    old = os.environ.get("GFLOWZOO_LOAD_PLUGINS")
    os.environ["GFLOWZOO_LOAD_PLUGINS"] = ",".join(names)
    reset()
    try:
        yield get_state()
    finally:
        if old is None:
            os.environ.pop("GFLOWZOO_LOAD_PLUGINS", None)
        else:
            os.environ["GFLOWZOO_LOAD_PLUGINS"] = old
        reset()


def method_builder(registry, *, preset: str = "cpu-quick", seed: int = 0):
    """A ``build(method, dataset, *sets, data=None)`` helper for plugin tests: resolves the config exactly like
    ``gflowzoo train --preset PRESET --set ...`` and returns the method on the CPU, with the global seed set."""

    def build(method: str, dataset: str, *sets: str, data=None):
        import torch

        from ..session import build_method, resolve

        spec = resolve(registry, method, dataset, sets=list(sets), overrides={"device": "cpu"}, preset=preset)
        torch.manual_seed(seed)
        return build_method(registry, spec, "cpu", data)

    return build


def plugin_fixtures(*names: str, preset: str = "cpu-quick"):
    """The two fixtures of a plugin's test suite, for its ``conftest.py``::

        from gflowzoo.testing import plugin_fixtures

        registry, build = plugin_fixtures("my-plugin")

    ``registry`` (module scope): the registry with exactly the plugins ``names`` loaded (:func:`plugins_loaded`);
    ``build``: ``build(method, dataset, *sets, data=None)`` (:func:`method_builder` on that registry)."""
    import pytest

    @pytest.fixture(scope="module")
    def registry():
        with plugins_loaded(*names) as state:
            yield state.registry

    @pytest.fixture
    def build(registry):
        return method_builder(registry, preset=preset)

    return registry, build


#: The contract modules whose ``__all__`` is re-exported here, loaded on first use.
_CONTRACT_MODULES = (
    "base",
    "kernel_contract",
    "divergence_contract",
    "schedule_contract",
    "integrator_contract",
    "backbone_contract",
    "dataset_contract",
    "method_contract",
    "metric_contract",
    "extractor_contract",
    "contracts",  # the gathering module: every name of its list is already taken from its home module above
)


def _exports_of(module: str) -> tuple[str, ...]:
    """The ``__all__`` of the contract module ``module``, read from its source: the module's own list is the one
    source of these names, and reading it does not import torch or pytest. A literal list, or a sum of sibling
    modules' lists (``base.__all__ + kernel_contract.__all__ + ...``, as :mod:`gflowzoo.testing.contracts` has)."""
    import ast
    from pathlib import Path

    def names(value: ast.expr) -> tuple[str, ...]:
        if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
            return names(value.left) + names(value.right)
        if isinstance(value, ast.Attribute) and value.attr == "__all__" and isinstance(value.value, ast.Name):
            return _exports_of(value.value.id)
        return tuple(ast.literal_eval(value))

    tree = ast.parse((Path(__file__).parent / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return names(node.value)
    raise ImportError(f"gflowzoo.testing.{module} has no __all__")


#: Each re-exported name and the contract module it comes from.
_EXPORTS: dict[str, str] = {}
for _module in _CONTRACT_MODULES:
    for _name in _exports_of(_module):
        _EXPORTS.setdefault(_name, _module)
del _module, _name

#: The names of :mod:`gflowzoo.testing.contracts` re-exported here (exactly its ``__all__``).
_CONTRACTS = _exports_of("contracts")


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["method_builder", "plugin_fixtures", "plugins_loaded", "temporary_plugin"]
__all__ += list(_EXPORTS)
