"""gflowzoo-mmdgan: MMD GAN (Li et al. 2017, method ``mmdgan``) and MMD GAN with a witness gradient penalty
(Binkowski et al. 2018, method ``mmdgan-gp``), plus the critic backbones ``dcgan`` and ``mlp-critic``.

Importing this package is cheap: torch is imported only when a component is built (see :mod:`.plugin`).
"""

__version__ = "0.1.0"
