"""``diffusers.UNet2DModel`` size presets, and :class:`ImageUNet`, which pads images to a size the U-Net accepts.

A U-Net with ``L`` resolution levels halves the image ``L - 1`` times, so its input side must be a multiple of
``2 ** (L - 1)``. :class:`ImageUNet` pads ``[N, C, H, W]`` inputs (replicating the border pixels, centred) up to the
next such multiple and crops the output back to ``H x W``:

========  ======  =========================  ==========================================================
size      levels  8x8 digits / 28 MNIST / 32  layout
========  ======  =========================  ==========================================================
tiny      2       8 / 28 / 32 (no padding)   (32, 64), attention at 2nd level, 1 res block, GroupNorm 8
small     3       8 / 28 / 32 (no padding)   (64, 128, 128), attention at 2nd level, 2 res blocks
ddpm      4       8 / 32 / 32                Ho et al. (2020) CIFAR-10: (128, 256, 256, 256), attention
                                             at 16x16, 2 res blocks, dropout 0.1 in the paper's preset
ddpm64    6       32 / 32 / 32 (64 stays)    diffusers' unconditional example for 64 px:
                                             (128, 128, 256, 256, 512, 512), attention at the 5th level
========  ======  =========================  ==========================================================

Parameter counts (1 channel / 3 channels): tiny 0.70 M, small 6.47 M, ddpm 35.7 M, ddpm64 113.7 M (3 channels).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gflowzoo.api import ConfigError

from .hub import diffusers_object, local_pretrained_folder

UNetSize = Literal["tiny", "small", "ddpm", "ddpm64"]

#: ``UNet2DModel`` keyword arguments of each size preset (the rest are diffusers' defaults).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "block_out_channels": (32, 64),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "attention_head_dim": 8,
    },
    "small": {
        "block_out_channels": (64, 128, 128),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "attention_head_dim": None,  # one head as wide as the block, as in Ho et al.
    },
    "ddpm": {
        "block_out_channels": (128, 256, 256, 256),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "attention_head_dim": None,
    },
    "ddpm64": {
        "block_out_channels": (128, 128, 256, 256, 512, 512),
        "down_block_types": ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "attention_head_dim": 8,
    },
}


def padded_side(side: int, levels: int) -> int:
    """The smallest multiple of ``2 ** (levels - 1)`` that is ``>= side`` (pixels)."""
    m = 2 ** max(levels - 1, 0)
    return int(math.ceil(side / m) * m)


def unet_config(in_channels: int, side: int, size: str, dropout: float = 0.0) -> dict[str, Any]:
    """The ``UNet2DModel`` configuration of a size preset for ``in_channels`` channels and images of ``side``
    pixels (before padding). Output channels equal input channels."""
    if size not in SIZES:
        raise ConfigError(f"Unknown U-Net size {size!r}; use one of {', '.join(SIZES)}.")
    cfg = dict(SIZES[size])
    levels = len(cfg["block_out_channels"])
    return {
        **cfg,
        "sample_size": padded_side(side, levels),
        "in_channels": in_channels,
        "out_channels": in_channels,
        "dropout": float(dropout),
    }


class ImageUNet(nn.Module):
    """A ``UNet2DModel`` for ``[N, C, H, W]`` images of any side: pads, runs, crops.

    Args:
        in_shape: ``(C, H, W)`` of the images.
        size: a key of :data:`SIZES`; ignored when ``pretrained`` is given.
        dropout: dropout rate inside the residual blocks.
        pretrained: a local folder written by ``UNet2DModel.save_pretrained`` ("" for random initialisation).

    ``forward(x, timesteps)`` takes ``x`` ``[N, C, H, W]`` and diffusion timesteps ``[N]`` (float, in the U-Net's
    own units ``0 .. num_train_timesteps - 1``) and returns the U-Net output ``[N, C, H, W]``.
    """

    def __init__(self, in_shape: tuple[int, ...], size: str = "tiny", dropout: float = 0.0, pretrained: str = "") -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ConfigError(f"The U-Net needs images [C, H, W]; this data has per-sample shape {tuple(in_shape)}.")
        c, h, w = (int(s) for s in in_shape)
        self.in_shape = (c, h, w)
        folder = local_pretrained_folder(pretrained, "U-Net")
        UNet2DModel = diffusers_object("diffusers.models.unets.unet_2d", "UNet2DModel")
        if folder is not None:
            self.unet = UNet2DModel.from_pretrained(str(folder))
            cfg = self.unet.config
            if int(cfg.in_channels) != c or int(cfg.out_channels) != c:
                raise ConfigError(
                    f"The pretrained U-Net in {folder} maps {cfg.in_channels} -> {cfg.out_channels} channels; "
                    f"this data has {c} channels."
                )
        else:
            cfg = unet_config(c, max(h, w), size, dropout)
            for ch in cfg["block_out_channels"]:
                if ch % cfg["norm_num_groups"]:
                    raise ConfigError(f"norm_num_groups {cfg['norm_num_groups']} must divide every channel count.")
            self.unet = UNet2DModel(**cfg)
        levels = len(self.unet.config.block_out_channels)
        self.padded = (padded_side(h, levels), padded_side(w, levels))

    @property
    def num_train_timesteps(self) -> int | None:
        """The number of training timesteps stored in a pretrained U-Net's config (None when unknown)."""
        value = self.unet.config.get("num_train_timesteps")
        return int(value) if value else None

    def pad(self, x: Tensor) -> Tensor:
        """``[N, C, H, W]`` -> ``[N, C, H', W']`` padded (border pixels replicated, centred)."""
        h, w = x.shape[-2:]
        ph, pw = self.padded[0] - h, self.padded[1] - w
        if ph == 0 and pw == 0:
            return x
        return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")

    def crop(self, y: Tensor) -> Tensor:
        """Undo :meth:`pad` on an output ``[N, C, H', W']``."""
        h, w = self.in_shape[1:]
        top, left = (y.shape[-2] - h) // 2, (y.shape[-1] - w) // 2
        return y[..., top : top + h, left : left + w]

    def forward(self, x: Tensor, timesteps: Tensor) -> Tensor:
        """U-Net output ``[N, C, H, W]`` for ``x`` ``[N, C, H, W]`` at float ``timesteps`` ``[N]``."""
        out = self.unet(self.pad(x), timesteps.to(device=x.device, dtype=torch.float32), return_dict=False)[0]
        return self.crop(out)
