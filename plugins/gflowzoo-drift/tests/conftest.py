"""Fixtures of the drift plugin's tests: a registry with the plugin loaded and a tiny method builder."""

from __future__ import annotations

import pytest

from gflowzoo.testing import method_builder, plugins_loaded


@pytest.fixture(scope="module")
def registry():
    """The registry with the ``drift`` plugin loaded (held for the whole test module)."""
    with plugins_loaded("drift") as state:
        yield state.registry


@pytest.fixture
def build(registry):
    """``build(method, dataset, *sets)`` -> a method on the CPU, configured like ``gflowzoo train --set ...``."""
    return method_builder(registry)
