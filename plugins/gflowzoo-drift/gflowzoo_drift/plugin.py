"""Entry module of the ``drift`` gflowzoo plugin. Imports nothing heavy: the method is registered by import path
and built lazily."""

from __future__ import annotations

from gflowzoo.api import hookimpl

_PKG = "gflowzoo_drift"


@hookimpl
def gflowzoo_register(register):
    """Register ``drift`` and its default backbone ``drift-mlp``."""
    register(
        "method", "drift", f"{_PKG}.drift:Drift",
        "Drifting model (Deng et al. 2026): one-step generator regressed onto its outputs moved along a "
        "kernel attraction-repulsion field",
    )
    register(
        "backbone", "drift-mlp", f"{_PKG}.backbones:DriftMLP",
        "plain MLP (flattened input, ignores t): drift's default generator body and feature network",
    )
