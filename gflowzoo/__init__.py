"""gflowzoo: kernel-discrepancy generative models (MMD gradient flows, MMD GANs) behind one plugin system.

The top-level package is deliberately light: importing it does not import torch. The public API for plugins is
one module, :mod:`gflowzoo.api` (``from gflowzoo.api import Method, component, hookimpl``; plugin tests may also use
:mod:`gflowzoo.testing`); every other submodule is private and may change.
"""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (re-exported for plugin authors)

__all__ = ["__version__", "hookimpl"]
