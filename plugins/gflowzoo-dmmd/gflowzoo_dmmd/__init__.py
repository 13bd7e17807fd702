"""gflowzoo-dmmd: the Diffusion-MMD gradient flow (DMMD) and its relatives as a gflowzoo plugin.

Importing this package is light; the methods live in :mod:`gflowzoo_dmmd.dmmd`, :mod:`gflowzoo_dmmd.dkale` and
:mod:`gflowzoo_dmmd.mmdflow`, the backbones in :mod:`gflowzoo_dmmd.backbones`.
"""

__version__ = "0.1.0"
