"""gflowzoo: kernel-discrepancy generative models (MMD gradient flows, MMD GANs) behind one plugin system.

The top-level package is deliberately light: importing it does not import torch. The public API lives in
submodules (``gflowzoo.interfaces``, ``gflowzoo.registry``, ``gflowzoo.kernels`` ...).
"""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  (re-exported for plugin authors)

__all__ = ["__version__", "hookimpl"]
