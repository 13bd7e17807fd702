"""Test helpers and reusable contract test bases for gflowzoo components and plugins.

Plugin authors subclass the contract classes in their own test suites (in the spirit of diffusers'
``SchedulerCommonTest``)::

    from gflowzoo.testing import KernelContract

    class TestMyKernel(KernelContract):
        kernel_name = "my-kernel"
        plugins = ("my-plugin",)      # entry-point names to load for these tests

and load their plugin for a test with :func:`plugins_loaded`. The contract classes (``KernelContract``,
``DivergenceContract``, ``ScheduleContract``, ``IntegratorContract``, ``BackboneContract``, ``DatasetContract``,
``MethodContract``) live in :mod:`gflowzoo.testing.contracts`; they are imported on first use so that
``import gflowzoo.testing`` stays light (no torch, no pytest).
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


#: The names of :mod:`gflowzoo.testing.contracts` re-exported here, loaded on first use: exactly its ``__all__``
#: (written out so that ``import gflowzoo.testing`` does not import torch; ``tests/test_contracts_core.py`` checks
#: that the two lists agree).
_CONTRACTS = (
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
)


def __getattr__(name: str):
    if name in _CONTRACTS:
        from . import contracts

        return getattr(contracts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["method_builder", "plugins_loaded", "temporary_plugin", *_CONTRACTS]
