"""gflowzoo-gmmn: generative moment matching networks (Li, Swersky & Zemel 2015): ``gmmn`` (MMD to data in data
space) and ``gmmn-ae`` (an auto-encoder first, then a GMMN on its codes).

Importing this package is cheap: torch is imported only when a component is built (see :mod:`.plugin`).
"""

__version__ = "0.1.0"
