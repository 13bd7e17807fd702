"""Fixtures shared by the core's tests."""

from __future__ import annotations

import helpers_method
import pytest

from gflowzoo.plugins import temporary_plugin


@pytest.fixture
def fit_registry():
    """The registry with the test-only method ``fit-gaussian`` (see ``helpers_method.py``) registered."""
    with temporary_plugin(helpers_method, helpers_method.PLUGIN_NAME) as state:
        yield state.registry
