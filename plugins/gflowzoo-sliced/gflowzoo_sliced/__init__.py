"""gflowzoo-sliced: generative sliced MMD flows with the Riesz kernel ``K(x, y) = -||x - y||`` (Hertrich, Wald,
Altekrueger & Hagemann, ICLR 2024), method ``sliced-mmdflow``.

Importing this package is cheap: torch is imported only when a component is built (see :mod:`.plugin`).
"""

__version__ = "0.1.0"
