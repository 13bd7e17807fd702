"""The plugin manager: built-in plugins, entry-point plugins, ``GFLOWZOO_LOAD_PLUGINS``, per-plugin errors.

* Built-in components are registered by :mod:`gflowzoo.builtin`, a plugin like any other.
* Installed plugins are found through the entry-point group ``gflowzoo``. ``GFLOWZOO_LOAD_PLUGINS`` (a comma list of
  entry-point or distribution names; empty means none) limits which load; a name in it that matches no installed
  plugin is reported like a plugin error.
* Under the project's own tests (``sys._called_from_test``) installed plugins are not loaded unless
  ``GFLOWZOO_LOAD_PLUGINS`` names them.
* A plugin that fails to import or to register is reported (``gflowzoo plugins``, ``gflowzoo list``) but never
  breaks the command line: its partial registrations are dropped.
* Names are first come, first served (:mod:`gflowzoo.registry`): built-ins register first, then installed plugins in
  the order they load (sorted by entry-point name). A plugin's registration of a taken name is refused and reported
  in its status; its other components load.
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
from .registry import Refusal, Registrar, Registry

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
    #: registrations refused because another plugin registered the kind and name first
    refused: list[Refusal] = field(default_factory=list)

    @property
    def status(self) -> str:
        """The status column of ``gflowzoo plugins``: the error, the refused names, or ok."""
        if self.error:
            return self.error
        if self.refused:
            return f"clashes: {'; '.join(map(str, self.refused))}; its other components loaded"
        return "built-in" if self.builtin else "ok"

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("name", "version", "distribution", "module", "builtin", "hooks", "error")}
        out["refused"] = [{"kind": r.kind, "name": r.name, "owner": r.owner} for r in self.refused]
        out["status"] = self.status
        return out


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
            found = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
            for ep in found:
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
            if only is not None:
                self._report_unmatched(only, found)
        self.collect()

    def _report_unmatched(self, only: set[str], found: list[md.EntryPoint]) -> None:
        """A :class:`PluginInfo` with an error for each name of ``GFLOWZOO_LOAD_PLUGINS`` that matches no installed
        plugin (by entry-point or distribution name)."""
        known = {ep.name for ep in found} | {ep.dist.name for ep in found if ep.dist is not None} | set(self.infos)
        installed = ", ".join(sorted({ep.name for ep in found})) or "none"
        for name in sorted(only - known):
            info = PluginInfo(name, None, None, None, False)
            info.error = (f"GFLOWZOO_LOAD_PLUGINS names {name!r}, which matches no installed plugin "
                          f"(installed: {installed})")
            self.infos[name] = info

    def collect(self) -> None:
        """(Re)build the registry by calling every plugin's ``gflowzoo_register`` hook, one plugin at a time, in the
        order the plugins were registered (built-ins first): the first registration of a name keeps it, and a later
        one is refused and reported in that plugin's :attr:`PluginInfo.refused`."""
        self.registry = Registry()
        order = {name: i for i, (name, _) in enumerate(self.pm.list_name_plugin())}
        # pluggy's own order also depends on tryfirst/trylast marks: registration order decides who keeps a name
        impls = sorted(self.pm.hook.gflowzoo_register.get_hookimpls(), key=lambda i: order.get(i.plugin_name, 0))
        for info in self.infos.values():
            info.refused = []
        for impl in impls:
            info = self.infos.get(impl.plugin_name)
            version = info.version if info else None
            registrar = Registrar(self.registry, impl.plugin_name, version)
            try:
                impl.function(register=registrar)
                if info is not None:  # reported; the plugin's other components stay usable
                    info.refused = registrar.refused
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
