"""Fixtures of the dmmd plugin's tests: a registry with the plugin loaded and a tiny method builder."""

from __future__ import annotations

import pytest
import torch

from gflowzoo.testing import plugins_loaded


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The networks here are tiny: one intra-op thread is faster, and far faster on a shared, loaded CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def registry():
    """The registry with the ``dmmd`` plugin loaded (held for the whole test module)."""
    with plugins_loaded("dmmd") as state:
        yield state.registry


@pytest.fixture
def build(registry):
    """``build(method, dataset, *sets, data=None)`` -> a method on the CPU, configured like
    ``gflowzoo train --preset cpu-quick --set ...``."""
    from gflowzoo.session import build_method, resolve

    def _build(method: str, dataset: str, *sets: str, data=None):
        spec = resolve(registry, method, dataset, sets=list(sets), overrides={"device": "cpu"}, preset="cpu-quick")
        return build_method(registry, spec, "cpu", data)

    return _build
