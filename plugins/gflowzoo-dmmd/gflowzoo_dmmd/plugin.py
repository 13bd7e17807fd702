"""Entry module of the ``dmmd`` gflowzoo plugin. Imports nothing heavy (no torch): components are registered by
import path and built lazily; the ``gflowzoo dmmd ...`` commands import torch inside their functions."""

from __future__ import annotations

from gflowzoo.api import hookimpl

_PKG = "gflowzoo_dmmd"


@hookimpl
def gflowzoo_register(register):
    """Register the DMMD methods and the noise-conditional backbones."""
    register(
        "method", "dmmd", f"{_PKG}.dmmd:DMMD",
        "Diffusion-MMD gradient flow: noise-conditional MMD critic, exact interacting particle flow",
    )
    register(
        "method", "a-dmmd", f"{_PKG}.dmmd:ADMMD",
        "DMMD with the approximate (non-interacting) sampler: noisy-data mean features replace the particle mean",
    )
    register(
        "method", "a-dmmd-e", f"{_PKG}.dmmd:ADMMDE",
        "DMMD with a hybrid sampler: approximate steps at high noise, exact interacting steps for t <= switch_t",
    )
    register(
        "method", "dkale", f"{_PKG}.dkale:DKALE",
        "noise-conditional KALE critic (KL lower bound) trained like DMMD; particles descend the critic",
    )
    register(
        "method", "mmdflow", f"{_PKG}.mmdflow:MMDFlow",
        "fixed-kernel MMD gradient flow with noise injection (Arbel et al. 2019); nothing to train",
    )
    register(
        "backbone", "mlp", f"{_PKG}.backbones:MLPBackbone",
        "noise-conditional MLP (sinusoidal time embedding, optional Fourier input) for 2-D toys",
    )
    register(
        "backbone", "conv", f"{_PKG}.backbones:ConvBackbone",
        "noise-conditional residual conv net (GroupNorm, SiLU, FiLM time embedding, multi-scale pooled features)",
    )
    register(
        "backbone", "rff-oracle", f"{_PKG}.backbones:RFFOracle",
        "hand-set noise-adaptive RBF kernel as random Fourier features (width max(sigma_t, h_min)); no parameters",
    )


@hookimpl
def gflowzoo_register_commands(app):
    """Add ``gflowzoo dmmd gaussian-demo`` and ``gflowzoo dmmd diagnose``."""
    from .commands import build_app

    app.add_typer(build_app(), name="dmmd")
