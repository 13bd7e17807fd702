"""diffusers' ``AutoencoderKL`` architecture as a gflowzoo autoencoder (registry kind ``autoencoder``, name
``diffusers-kl``), trained from scratch by ``gflowzoo autoencoder fit`` (no pretrained weights are used: none are
reachable offline, and Stable Diffusion's VAE is made for 256 px and more).

The encoder halves the image ``len(block_out_channels) - 1`` times; its ``latent_channels`` feature maps are
flattened, so codes are vectors ``[latent_channels * H' * W']`` (MNIST with the defaults: ``2 x 7 x 7 = 98``), which
every method takes as points. The loss is the mean squared error plus ``kl`` times the KL divergence of the diagonal
Gaussian posterior to N(0, I) per code unit; :meth:`encode` is the posterior mean.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gflowzoo.api import Autoencoder, ConfigError, UserError

__all__ = ["DiffusersKL"]


class DiffusersKL(Autoencoder):
    """``diffusers.AutoencoderKL`` (down/up encoder-decoder blocks, GroupNorm, SiLU, a mid-block with attention),
    from scratch, on images ``[C, H, W]`` whose sides the downsampling divides."""

    def __init__(self, in_shape: tuple[int, ...], block_out_channels: list[int] = (32, 64, 64),  # type: ignore[assignment]
                 latent_channels: int = 2, layers_per_block: int = 1, norm_num_groups: int = 16,
                 kl: float = 1e-4) -> None:
        super().__init__(in_shape)
        from diffusers import AutoencoderKL

        blocks = [int(c) for c in block_out_channels]
        factor = 2 ** (len(blocks) - 1)
        if len(self.in_shape) != 3 or any(s % factor for s in self.in_shape[1:]):
            raise UserError(f"diffusers-kl with {len(blocks)} blocks halves images {len(blocks) - 1} times, so their "
                            f"sides must be multiples of {factor}; this data has shape {list(self.in_shape)}.")
        if any(c % int(norm_num_groups) for c in blocks) or latent_channels < 1 or kl < 0:
            raise ConfigError("diffusers-kl: norm_num_groups must divide every block_out_channels value, "
                              "latent_channels must be >= 1 and kl >= 0.")
        c, h, w = self.in_shape
        self.kl = float(kl)
        self._grid = (int(latent_channels), h // factor, w // factor)
        self.vae = AutoencoderKL(
            in_channels=c, out_channels=c, down_block_types=("DownEncoderBlock2D",) * len(blocks),
            up_block_types=("UpDecoderBlock2D",) * len(blocks), block_out_channels=tuple(blocks),
            layers_per_block=int(layers_per_block), latent_channels=int(latent_channels),
            norm_num_groups=int(norm_num_groups), sample_size=h,
        )

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (math.prod(self._grid),)

    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.vae.encode(x).latent_dist
        return dist.mean.flatten(1), dist.logvar.flatten(1)

    def encode(self, x: Tensor) -> Tensor:
        return self._posterior(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z.reshape(len(z), *self._grid)).sample

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        mean, logvar = self._posterior(x)
        eps = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)
        z = mean + eps * (0.5 * logvar).exp()
        mse = torch.nn.functional.mse_loss(self.decode(z), x)
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()
        return mse + self.kl * kl, {"mse": float(mse.detach()), "kl": float(kl.detach())}
