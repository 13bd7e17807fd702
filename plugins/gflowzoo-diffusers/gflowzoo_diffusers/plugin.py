"""Entry module of the ``diffusers`` gflowzoo plugin.

Imports nothing heavy: every component is registered by an import path and built lazily. ``HF_HUB_OFFLINE=1`` is
set here (unless the user set it) because it must be in the environment before ``huggingface_hub`` is imported;
set later it is ignored and a hub id costs ~20 s of network retries.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gflowzoo.api import hookimpl  # noqa: E402

_PKG = "gflowzoo_diffusers"


@hookimpl
def gflowzoo_register(register):
    """Register the U-Net backbone, the diffusers schedules and the ``ddpm`` method."""
    register(
        "backbone", "unet", f"{_PKG}.backbone:Unet",
        "diffusers UNet2DModel, noise-conditional; mid-block and/or output features (tiny/small/ddpm/ddpm64)",
    )
    register(
        "schedule", "diffusers", f"{_PKG}.schedules:DiffusersSchedule",
        "any diffusers scheduler's alphas_cumprod on continuous t (choose scheduler and beta_schedule)",
    )
    register(
        "schedule", "diffusers-linear", f"{_PKG}.schedules:DiffusersLinear",
        "diffusers DDPM linear betas (Ho et al. 2020: 1e-4 -> 0.02, T = 1000)",
    )
    register(
        "schedule", "diffusers-scaled-linear", f"{_PKG}.schedules:DiffusersScaledLinear",
        "diffusers scaled_linear betas (linear in sqrt(beta); Stable Diffusion's 0.00085 -> 0.012)",
    )
    register(
        "schedule", "diffusers-cosine", f"{_PKG}.schedules:DiffusersCosine",
        "diffusers squaredcos_cap_v2 betas (Nichol & Dhariwal cosine, beta capped at 0.999)",
    )
    register(
        "schedule", "diffusers-sigmoid", f"{_PKG}.schedules:DiffusersSigmoid",
        "diffusers sigmoid betas (GeoDiff), between beta_start and beta_end",
    )
    register(
        "autoencoder", "diffusers-kl", f"{_PKG}.autoencoder:DiffusersKL",
        "diffusers AutoencoderKL architecture, trained from scratch; flattened codes (latent spaces: docs/latent.md)",
    )
    register(
        "method", "ddpm", f"{_PKG}.method:DDPM",
        "reference denoising diffusion model: eps-prediction, EMA, DDPM/DDIM samplers at a chosen NFE",
    )
