"""The plugin manager: built-in plugins, entry-point plugins, ``GFLOWZOO_LOAD_PLUGINS``, per-plugin errors.

* Built-in components are registered by :mod:`gflowzoo.builtin`, a plugin like any other.
* Installed plugins are found through the entry-point group ``gflowzoo``. ``GFLOWZOO_LOAD_PLUGINS`` (a comma list of
  entry-point or distribution names; empty means none) limits which load.
* Under the project's own tests (``sys._called_from_test``) installed plugins are not loaded unless
  ``GFLOWZOO_LOAD_PLUGINS`` names them.
* A plugin that fails to import or to register is reported (``gflowzoo plugins``, ``gflowzoo list``) but never
  breaks the command line: its partial registrations are dropped.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as md
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .registry import Registrar, Registry

ENTRY_POINT_GROUP = "gflowzoo"
BUILTIN_PLUGINS = ("gflowzoo.builtin",)


@dataclass
class PluginInfo:
    """What ``gflowzoo plugins`` shows for one plugin."""

    name: str
    version: str | None
    distribution: str | None
    module: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "version", "distribution", "module", "builtin", "hooks", "error")}


class PluginState:
    """The loaded plugin manager together with the registry it filled."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("gflowzoo")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.infos: dict[str, PluginInfo] = {}

    # -- loading -----------------------------------------------------------------------------------------------
    def _register_object(self, obj: Any, info: PluginInfo) -> None:
        self.infos[info.name] = info
        try:
            self.pm.register(obj, name=info.name)
        except Exception as exc:  # pluggy validation errors
            info.error = f"cannot register: {exc}"
            return
        info.hooks = sorted(h.name for h in (self.pm.get_hookcallers(obj) or []))

    def load(self, *, entry_points: bool, only: set[str] | None) -> None:
        for mod_name in BUILTIN_PLUGINS:
            module = importlib.import_module(mod_name)
            from . import __version__

            self._register_object(module, PluginInfo(mod_name, __version__, "gflowzoo", mod_name, True))
        if entry_points:
            for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = ep.dist.name if ep.dist is not None else None
                if only is not None and ep.name not in only and (dist is None or dist not in only):
                    continue
                version = ep.dist.version if ep.dist is not None else None
                info = PluginInfo(ep.name, version, dist, ep.value, False)
                if ep.name in self.infos:
                    info.error = f"entry point name clashes with an already loaded plugin {ep.name!r}"
                    self.infos[f"{ep.name} ({dist})"] = info
                    continue
                try:
                    obj = ep.load()
                except BaseException as exc:  # noqa: BLE001 - a plugin must never break the CLI
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    info.error = f"import failed: {type(exc).__name__}: {exc}"
                    self.infos[info.name] = info
                    continue
                self._register_object(obj, info)
        self.collect()

    def collect(self) -> None:
        """(Re)build the registry by calling every plugin's ``gflowzoo_register`` hook, one plugin at a time."""
        self.registry = Registry()
        impls = self.pm.hook.gflowzoo_register.get_hookimpls()
        # pluggy orders implementations last-registered-last; built-ins were registered first, so they keep their
        # names when a later plugin clashes with them.
        for impl in impls:
            info = self.infos.get(impl.plugin_name)
            version = info.version if info else None
            registrar = Registrar(self.registry, impl.plugin_name, version)
            try:
                impl.function(register=registrar)
                if registrar.clashes and info is not None:  # reported; the plugin's other components stay usable
                    info.error = "registration failed: " + "; ".join(str(c) for c in registrar.clashes)
            except Exception as exc:  # noqa: BLE001
                msg = f"{type(exc).__name__}: {exc}" if not hasattr(exc, "exit_code") else str(exc)
                if info is not None:
                    info.error = f"registration failed: {msg}"
                    self.registry.remove_plugin(impl.plugin_name)

    def errors(self) -> list[tuple[str, str]]:
        return [(name, info.error) for name, info in self.infos.items() if info.error]


_STATE: PluginState | None = None


def _only_from_env() -> set[str] | None:
    raw = os.environ.get("GFLOWZOO_LOAD_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def get_state() -> PluginState:
    """Load the plugins once per process and return the state."""
    global _STATE
    if _STATE is None:
        only = _only_from_env()
        under_test = getattr(sys, "_called_from_test", False)
        state = PluginState()
        state.load(entry_points=not (under_test and only is None), only=only)
        _STATE = state
    return _STATE


def get_registry() -> Registry:
    """The registry of every loaded plugin (built-ins included)."""
    return get_state().registry


def reset() -> None:
    """Forget the loaded plugins; the next :func:`get_state` loads them again (used by tests)."""
    global _STATE
    _STATE = None


@contextlib.contextmanager
def temporary_plugin(plugin: Any, name: str | None = None) -> Iterator[PluginState]:
    """Register ``plugin`` (a module or object with ``@hookimpl`` functions) for the duration of a ``with`` block.

    Plugin authors use this in their tests::

        with temporary_plugin(MyPlugin(), "my-plugin") as state:
            state.registry.create("kernel", "my-kernel")
    """
    state = get_state()
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    info = PluginInfo(name, None, None, None, False)
    state._register_object(plugin, info)
    state.collect()
    try:
        yield state
    finally:
        if state.pm.is_registered(plugin):
            state.pm.unregister(plugin)
        state.infos.pop(name, None)
        state.collect()
