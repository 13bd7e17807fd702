"""gflowzoo-diffusers: components built on Hugging Face diffusers.

* backbone ``unet``: a noise-conditional feature map on top of ``diffusers.UNet2DModel``;
* schedules ``diffusers``, ``diffusers-linear``, ``diffusers-scaled-linear``, ``diffusers-cosine``,
  ``diffusers-sigmoid``: a diffusers scheduler's ``alphas_cumprod`` as a continuous-time gflowzoo schedule;
* method ``ddpm``: a reference denoising diffusion model (epsilon prediction, EMA, DDPM/DDIM samplers).

Importing this package is cheap: diffusers and torch are imported only when a component is built. Nothing reaches
the Hugging Face hub: ``HF_HUB_OFFLINE=1`` is set (unless already set) before diffusers is imported.
"""

__version__ = "0.1.0"
