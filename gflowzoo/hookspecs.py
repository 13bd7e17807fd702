"""Hook specifications of gflowzoo (pluggy project name ``"gflowzoo"``).

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose names match the specs below.
Plugins are found through the entry-point group ``gflowzoo``::

    [project.entry-points.gflowzoo]
    myplugin = "my_package.plugin"

Rules for plugin entry modules: import nothing heavy (torch, diffusers, torch_fidelity) at module top level; register
components by an import path string ``"package.module:Object"`` so that the object is imported only when it is
built. This keeps ``gflowzoo --help`` and ``gflowzoo list`` instant.

Every hook is documented in ``docs/plugin-hooks.md``; a test fails when a hook is added without documentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Registrar

hookspec = pluggy.HookspecMarker("gflowzoo")
hookimpl = pluggy.HookimplMarker("gflowzoo")


@hookspec
def gflowzoo_register(register: "Registrar") -> None:
    """Register components.

    Call ``register(kind, name, target, summary=...)`` once for each component this plugin provides, where

    * ``kind`` is one of ``method``, ``backbone``, ``kernel``, ``divergence``, ``schedule``, ``integrator``,
      ``dataset``, ``metric``, ``feature-extractor``, ``autoencoder`` (see :data:`gflowzoo.registry.KINDS`);
    * ``name`` is the public name users type (lower case, ``-`` separated);
    * ``target`` is either an import path ``"package.module:Object"`` (preferred: imported lazily) or the object
      itself; the object is a class or factory whose keyword arguments are the component's configuration;
    * ``summary`` is one line shown by ``gflowzoo list``.

    Registering a ``kind``/``name`` pair that another plugin registered already is an error naming both plugins.
    """


@hookspec
def gflowzoo_register_commands(app: Any) -> None:
    """Add sub-commands to the command line.

    ``app`` is the root ``typer.Typer`` application. Add commands with ``@app.command()`` or a sub-application with
    ``app.add_typer(sub, name="myplugin")``. Import heavy libraries inside the command functions only.
    """
