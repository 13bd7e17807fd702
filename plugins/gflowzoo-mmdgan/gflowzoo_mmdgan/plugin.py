"""Entry module of the ``mmdgan`` gflowzoo plugin. Imports nothing heavy: components are registered by import path
and built lazily."""

from __future__ import annotations

from gflowzoo.api import hookimpl

_PKG = "gflowzoo_mmdgan"


@hookimpl
def gflowzoo_register(register):
    """Register the two MMD GAN methods and the critic backbones they default to."""
    register(
        "method", "mmdgan", f"{_PKG}.mmdgan:MMDGAN",
        "MMD GAN (Li et al. 2017): Gaussian-mixture MMD on a clipped, auto-encoding critic; RMSprop",
    )
    register(
        "method", "mmdgan-gp", f"{_PKG}.mmdgan_gp:MMDGANGP",
        "MMD GAN-GP (Binkowski et al. 2018): RQ-mixture MMD, witness gradient penalty, optional KID-adaptive lr",
    )
    register(
        "backbone", "dcgan", "gflowzoo.nets:DCGANEncoder",
        "DCGAN encoder/critic (Li et al. 2017 layout), 4x4 convs, BatchNorm optional; images 8-128 px",
    )
    register(
        "backbone", "mlp-critic", "gflowzoo.nets:MLPCritic",
        "plain MLP critic for 2-D toys (no normalisation layers; ignores t)",
    )
