"""Entry module of the ``gmmn`` gflowzoo plugin. Imports nothing heavy: components are registered by import path
and built lazily."""

from __future__ import annotations

from gflowzoo.api import hookimpl

_PKG = "gflowzoo_gmmn"


@hookimpl
def gflowzoo_register(register):
    """Register ``gmmn`` and ``gmmn-ae``."""
    register(
        "method", "gmmn", f"{_PKG}.gmmn:GMMN",
        "GMMN (Li et al. 2015): a generator trained by a fixed Gaussian-mixture-kernel MMD to the data",
    )
    register(
        "method", "gmmn-ae", f"{_PKG}.gmmn_ae:GMMNAE",
        "GMMN+AE (Li et al. 2015): auto-encoder first, then a GMMN on its codes, decoded to samples",
    )
