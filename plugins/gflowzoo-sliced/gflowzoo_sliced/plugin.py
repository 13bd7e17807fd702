"""Entry module of the ``sliced`` gflowzoo plugin. Imports nothing heavy (no torch): the method is registered by
import path and built lazily."""

from __future__ import annotations

from gflowzoo.api import hookimpl


@hookimpl
def gflowzoo_register(register):
    """Register ``sliced-mmdflow``."""
    register(
        "method", "sliced-mmdflow", "gflowzoo_sliced.method:SlicedMMDFlow",
        "sliced Riesz-kernel MMD particle flow (sorted 1-D projections, no Gram matrix); no network: samples are "
        "the flowed particles, sample --n > particles runs fresh particle systems",
    )
