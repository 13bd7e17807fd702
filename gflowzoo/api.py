"""The public API for plugins: everything a plugin may import from gflowzoo, in one namespace.

A plugin package imports from ``gflowzoo.api`` only (its tests may also use :mod:`gflowzoo.testing`)::

    from gflowzoo.api import ConfigError, Method, component, hookimpl, mmd2

Everything else in gflowzoo is private and may change without notice. ``__all__`` below is the list of public
names; ``docs/plugin-authoring.md`` (section "The public API") documents each, and ``tests/test_api.py`` checks
that every name resolves, is documented, and that plugin packages import nothing else from gflowzoo.

Importing this module is light: every name is loaded from its home module on first use (PEP 562 ``__getattr__``),
so a plugin's entry module can ``from gflowzoo.api import hookimpl`` without importing torch (``gflowzoo list`` and
``gflowzoo --help`` import every installed plugin's entry module and must stay instant).
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each public name and where it lives: ``"module:attribute"``, or ``"module"`` for a module itself. This table is
#: the one source of the export list (``__all__`` is its keys).
_EXPORTS: dict[str, str] = {
    # -- plugin hooks and configs ----------------------------------------------------------------------------------
    "hookimpl": "gflowzoo.hookspecs:hookimpl",
    "component": "gflowzoo.config:component",
    # -- errors ------------------------------------------------------------------------------------------------------
    "GflowzooError": "gflowzoo.errors:GflowzooError",
    "UserError": "gflowzoo.errors:UserError",
    "ConfigError": "gflowzoo.errors:ConfigError",
    "DataError": "gflowzoo.errors:DataError",
    "CheckpointError": "gflowzoo.errors:CheckpointError",
    "PluginError": "gflowzoo.errors:PluginError",
    "TrainingDiverged": "gflowzoo.errors:TrainingDiverged",
    # -- interfaces --------------------------------------------------------------------------------------------------
    "Dataset": "gflowzoo.interfaces:Dataset",
    "Divergence": "gflowzoo.interfaces:Divergence",
    "FeatureBackbone": "gflowzoo.interfaces:FeatureBackbone",
    "FeatureExtractor": "gflowzoo.interfaces:FeatureExtractor",
    "FlowIntegrator": "gflowzoo.interfaces:FlowIntegrator",
    "Kernel": "gflowzoo.interfaces:Kernel",
    "Method": "gflowzoo.interfaces:Method",
    "Metric": "gflowzoo.interfaces:Metric",
    "NoiseSchedule": "gflowzoo.interfaces:NoiseSchedule",
    "Velocity": "gflowzoo.interfaces:Velocity",
    "WidthAwareKernel": "gflowzoo.interfaces:WidthAwareKernel",
    "CriticObjective": "gflowzoo.interfaces:CriticObjective",
    "Autoencoder": "gflowzoo.interfaces:Autoencoder",
    # -- data sets and evaluation ------------------------------------------------------------------------------------
    "ArrayImages": "gflowzoo.data.base:ArrayImages",
    "Points": "gflowzoo.data.base:Points",
    "EvalContext": "gflowzoo.metrics.base:EvalContext",
    # -- divergences -------------------------------------------------------------------------------------------------
    "mmd2": "gflowzoo.divergences:mmd2",
    "witness": "gflowzoo.divergences:witness",
    "MMD": "gflowzoo.divergences:MMD",
    "KALE": "gflowzoo.divergences:KALE",
    # -- kernels and their helpers -----------------------------------------------------------------------------------
    "LinearKernel": "gflowzoo.kernels:LinearKernel",
    "RBFKernel": "gflowzoo.kernels:RBFKernel",
    "RQKernel": "gflowzoo.kernels:RQKernel",
    "EnergyKernel": "gflowzoo.kernels:EnergyKernel",
    "PolyKernel": "gflowzoo.kernels:PolyKernel",
    "WidthRBF": "gflowzoo.kernels:WidthRBF",
    "sq_dists": "gflowzoo.kernels:sq_dists",
    "exp_floor": "gflowzoo.kernels:exp_floor",
    # -- components a method builds itself (a constructor called without ``components=``) ------------------------
    "build_components": "gflowzoo.session:build_components",
    "given_components": "gflowzoo.session:given_components",
    "build_component": "gflowzoo.session:build_component",
    "Components": "gflowzoo.registry:Components",
    "ComponentFactory": "gflowzoo.registry:ComponentFactory",
    # -- reusable networks -------------------------------------------------------------------------------------------
    "MLP": "gflowzoo.nets:MLP",
    "MLPCritic": "gflowzoo.nets:MLPCritic",
    "DCGANDecoder": "gflowzoo.nets:DCGANDecoder",
    "DCGANEncoder": "gflowzoo.nets:DCGANEncoder",
    "make_activation": "gflowzoo.nets:make_activation",
    "sample_latent": "gflowzoo.nets:sample_latent",
    "GeneratorMethod": "gflowzoo.generator:GeneratorMethod",
    # -- several processes, progress ---------------------------------------------------------------------------------
    "distributed": "gflowzoo.distributed",
    "report_progress": "gflowzoo.progress:report",
    # -- the run service (gflowzoo.runner's ``__all__``) and plugin commands -------------------------------------------
    "load_run": "gflowzoo.runner:load_run",
    "evaluate_run": "gflowzoo.runner:evaluate_run",
    "prepare_run": "gflowzoo.runner:prepare_run",
    "resume_payload": "gflowzoo.runner:resume_payload",
    "train_run": "gflowzoo.runner:train_run",
    "TrainOutcome": "gflowzoo.runner:TrainOutcome",
    "Reporter": "gflowzoo.runner:Reporter",
    "PrintReporter": "gflowzoo.runner:PrintReporter",
    "RunDir": "gflowzoo.runs:RunDir",
    "reporting": "gflowzoo.runner:reporting",
    # the CLI's error presentation, for the commands a plugin adds (gflowzoo_register_commands); loaded on use only
    "handle_errors": "gflowzoo.cli:handle_errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    value = importlib.import_module(module_name)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
