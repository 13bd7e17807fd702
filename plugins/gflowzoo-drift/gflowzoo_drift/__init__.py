"""gflowzoo-drift: drifting models (Deng, Li, Li, Du & He 2026, arXiv 2602.04770): method ``drift``, a one-step
generator trained by regressing its outputs onto their own positions moved along a kernel drifting field.

Importing this package is cheap: torch is imported only when a component is built (see :mod:`.plugin`).
"""

__version__ = "0.1.0"
