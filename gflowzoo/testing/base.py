"""The shared plumbing of the contract test bases for gflowzoo components (in the spirit of diffusers' ``SchedulerCommonTest``).

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
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch

from ..plugins import PluginState, get_state, temporary_plugin

__all__ = ["PluginContractBase", "contract_plugins", "devices"]


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
