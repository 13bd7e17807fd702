"""Network building blocks shared by the baseline plugins (MMD GAN, MMD GAN-GP, GMMN): DCGAN generator/decoder,
DCGAN encoder (a :class:`~gflowzoo.interfaces.FeatureBackbone`), MLPs for 2-D toys, DCGAN weight init and latent
sampling.

Image sizes. The DCGAN layout of Li et al. (2017) starts (or ends) at a 4x4 map and doubles (halves) the spatial
size per layer, so it works for square images whose side is a power of two >= 8 (8, 16, 32, 64, 128 ...). Other
sides are handled by **padding to the next power of two**: the encoder pads its input (``replicate`` padding, so a
28x28 MNIST digit with a black border gets a black border again) to 32x32, and the decoder generates 32x32 and
returns the centre 28x28 crop. This equals the official code's choice for MNIST (it resizes digits to 32 px) up to
the two border pixels on each side, and it keeps images at their native size everywhere else in gflowzoo.

Everything here is device-agnostic; random numbers come from a CPU ``torch.Generator`` and are then moved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import ConfigError
from .interfaces import FeatureBackbone

__all__ = [
    "DCGANDecoder",
    "DCGANEncoder",
    "MLP",
    "MLPCritic",
    "dcgan_init_",
    "image_side",
    "make_activation",
    "padded_side",
    "sample_latent",
    "ACTIVATIONS",
]

#: Activation names accepted by :func:`make_activation` (``"none"`` is the identity).
ACTIVATIONS = ("relu", "leaky_relu", "elu", "tanh", "sigmoid", "silu", "gelu", "softplus", "none")


def make_activation(name: str) -> nn.Module:
    """An activation module by name (one of :data:`ACTIVATIONS`); ``leaky_relu`` has slope 0.2 as in DCGAN."""
    table = {
        "relu": lambda: nn.ReLU(),
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "elu": lambda: nn.ELU(),
        "tanh": lambda: nn.Tanh(),
        "sigmoid": lambda: nn.Sigmoid(),
        "silu": lambda: nn.SiLU(),
        "gelu": lambda: nn.GELU(),
        "softplus": lambda: nn.Softplus(),
        "none": lambda: nn.Identity(),
    }
    if name not in table:
        raise ConfigError(f"Unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}.")
    return table[name]()


def dcgan_init_(module: nn.Module, std: float = 0.02, linear: bool = False) -> nn.Module:
    """DCGAN initialisation, in place: conv and transposed-conv weights ~ N(0, ``std``); BatchNorm weights
    ~ N(1, ``std``), biases 0; conv biases 0. With ``linear=True`` also ``nn.Linear`` weights ~ N(0, ``std``).

    Draws from the global torch RNG (the core seeds it from the run's seed before building a method).
    Returns ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)) or (linear and isinstance(m, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if m.weight is not None:
                nn.init.normal_(m.weight, 1.0, std)
                nn.init.zeros_(m.bias)
    return module


def image_side(shape: Sequence[int], what: str = "DCGAN network") -> tuple[int, int]:
    """``(channels, side)`` of an image shape ``[C, H, W]`` with ``H == W``; a clear error otherwise."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ConfigError(
            f"The {what} needs image data [C, H, W]; got data of shape {list(shape)}. "
            "For 2-D toy data use the MLP variants (generator = \"mlp\", critic = \"mlp-critic\")."
        )
    c, h, w = shape
    if h != w:
        raise ConfigError(f"The {what} needs square images; got {h}x{w}.")
    if h < 4:
        raise ConfigError(f"The {what} needs images of at least 4x4 pixels; got {h}x{w}.")
    return c, h


def padded_side(side: int) -> int:
    """The side the DCGAN layout works at: the next power of two that is >= ``side`` and >= 8."""
    return max(8, 1 << math.ceil(math.log2(side)))


class DCGANDecoder(nn.Module):
    """DCGAN generator / decoder (Li et al. 2017 layout): ``[N, nz]`` codes -> ``[N, C, H, W]`` images.

    ``ConvT(nz -> c0, 4, s1, p0) -> BN -> ReLU`` gives 4x4; each further ``ConvT(c -> c/2, 4, s2, p1) -> BN -> ReLU``
    doubles the side; a last ``ConvT(-> C, 4, s2, p1)`` and the output activation (``tanh`` for data in ``[-1, 1]``)
    end at the padded side (:func:`padded_side`), then the centre ``H x W`` crop is returned. ``c0 = ngf * S / 8``
    for padded side ``S`` (256 at 32 px and 512 at 64 px with ``ngf = 64``, as in the official code).

    Args:
        nz: input code size.
        out_shape: ``(C, H, W)`` of the output, ``H == W``.
        ngf: width multiplier (64 in the paper).
        out_activation: one of :data:`ACTIVATIONS` (``"tanh"`` for images in ``[-1, 1]``, ``"sigmoid"`` for ``[0, 1]``).
        batchnorm: use BatchNorm after each hidden layer (DCGAN: yes).
    """

    def __init__(
        self,
        nz: int,
        out_shape: Sequence[int],
        ngf: int = 64,
        out_activation: str = "tanh",
        batchnorm: bool = True,
    ) -> None:
        super().__init__()
        nc, side = image_side(out_shape, "DCGAN decoder")
        self.nz, self.out_shape, self.side = int(nz), (nc, side, side), padded_side(side)
        n_up = int(math.log2(self.side)) - 2  # 4 -> side
        ch = max(1, ngf // 2) * 2**n_up
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=not batchnorm)]
        layers += [nn.BatchNorm2d(ch)] if batchnorm else []
        layers += [nn.ReLU(True)]
        size = 4
        while size < self.side // 2:
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=not batchnorm)]
            layers += [nn.BatchNorm2d(ch // 2)] if batchnorm else []
            layers += [nn.ReLU(True)]
            ch, size = ch // 2, size * 2
        layers += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=not batchnorm), make_activation(out_activation)]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``[N, nz]`` (or ``[N, nz, 1, 1]``) -> ``[N, C, H, W]``."""
        x = self.net(z.reshape(z.shape[0], self.nz, 1, 1))
        _, side, _ = self.out_shape
        if side != self.side:
            off = (self.side - side) // 2
            x = x[:, :, off : off + side, off : off + side]
        return x


class DCGANEncoder(FeatureBackbone):
    """DCGAN encoder / critic body (Li et al. 2017 layout): ``[N, C, H, W]`` -> ``[N, feature_dim]``.

    ``Conv(C -> ndf, 4, s2, p1) -> LReLU(0.2)`` (no BN on the first layer), then ``Conv(c -> 2c, 4, s2, p1) -> BN ->
    LReLU(0.2)`` while the map is larger than 4x4, then ``Conv(c -> feature_dim, 4, s1, p0)`` to ``1x1``. At 32 px
    with ``ndf = 64``: 64 -> 128 -> 256 -> feature_dim; at 64 px: 64 -> 128 -> 256 -> 512 -> feature_dim. Inputs
    whose side is not a power of two are replicate-padded to the next one (28 -> 32).

    Args:
        in_shape: ``(C, H, W)``.
        feature_dim: output size (the code size ``k``; ``nz`` in the MMD GAN code, 16 in MMD GAN-GP).
        ndf: width multiplier (64 in the paper).
        batchnorm: BatchNorm in the hidden layers. Turn it off for gradient-penalty critics (MMD GAN-GP): the
            penalty needs per-sample gradients. Convolutions carry a bias exactly when BatchNorm is off.
        activation: hidden activation (``leaky_relu`` = slope 0.2).

    The noise level ``t`` of :meth:`forward` is accepted and ignored (an unconditional critic).
    """

    channels_last_ok = True

    def __init__(
        self,
        in_shape: tuple[int, ...],
        feature_dim: int,
        ndf: int = 64,
        batchnorm: bool = True,
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__(in_shape, feature_dim)
        nc, side = image_side(in_shape, "DCGAN encoder (backbone 'dcgan')")
        if ndf < 1 or feature_dim < 1:
            raise ConfigError(f"DCGAN encoder: ndf and feature_dim must be >= 1; got {ndf}, {feature_dim}.")
        self.side, self.padded = side, padded_side(side)
        bias = not batchnorm
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=bias), make_activation(activation)]
        ch, size = ndf, self.padded // 2
        while size > 4:
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=bias)]
            layers += [nn.BatchNorm2d(ch * 2)] if batchnorm else []
            layers += [make_activation(activation)]
            ch, size = ch * 2, size // 2
        layers += [nn.Conv2d(ch, feature_dim, 4, 1, 0, bias=bias)]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """``x`` ``[N, C, H, W]`` -> features ``[N, feature_dim]``."""
        if self.padded != self.side:
            extra = self.padded - self.side
            lo = extra // 2
            x = F.pad(x, (lo, extra - lo, lo, extra - lo), mode="replicate")
        return self.net(x).reshape(x.shape[0], self.feature_dim)


class MLP(nn.Module):
    """A plain multilayer perceptron ``[N, in_dim] -> [N, out_dim]`` (inputs of any trailing shape are flattened).

    ``hidden`` lists the hidden widths (GMMN's MNIST generator: ``(64, 256, 256, 1024)``). Each hidden layer is
    ``Linear -> activation`` (``-> Dropout`` if ``dropout > 0``); the last layer is ``Linear -> out_activation``.
    Weights keep PyTorch's default initialisation. ``out_shape`` reshapes the output (e.g. to ``[C, H, W]``).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (128, 128, 128),
        activation: str = "relu",
        out_activation: str = "none",
        out_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        dims = [int(in_dim), *[int(h) for h in hidden]]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), make_activation(activation)]
        layers += [nn.Linear(dims[-1], int(out_dim)), make_activation(out_activation)]
        self.net = nn.Sequential(*layers)
        self.out_shape = tuple(out_shape) if out_shape is not None else (int(out_dim),)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[N, ...]`` (flattened to ``[N, in_dim]``) -> ``[N, *out_shape]``."""
        return self.net(x.reshape(x.shape[0], -1)).reshape(x.shape[0], *self.out_shape)


class MLPCritic(FeatureBackbone):
    """An MLP critic body for low-dimensional data (2-D toys): ``[N, *S]`` (flattened) -> ``[N, feature_dim]``.

    ``depth`` hidden layers of ``width`` units with ``activation``; linear output. No normalisation layers, so it
    suits both weight clipping (MMD GAN) and gradient penalties (MMD GAN-GP).
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        feature_dim: int,
        width: int = 128,
        depth: int = 3,
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__(in_shape, feature_dim)
        if width < 1 or depth < 0:
            raise ConfigError(f"mlp-critic: width must be >= 1 and depth >= 0; got {width}, {depth}.")
        in_dim = int(math.prod(self.in_shape))
        self.net = MLP(in_dim, feature_dim, [width] * depth, activation, "none")

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """``x`` ``[N, *S]`` -> ``[N, feature_dim]``."""
        return self.net(x)


def sample_latent(
    n: int, nz: int, generator: torch.Generator, device: torch.device | str = "cpu", kind: str = "normal"
) -> Tensor:
    """Latent codes ``[n, nz]`` drawn on the CPU from ``generator`` and moved to ``device``.

    ``kind`` is ``"normal"`` (N(0, I), MMD GAN) or ``"uniform"`` (U[-1, 1], MMD GAN-GP and GMMN)."""
    if kind == "normal":
        z = torch.randn(n, nz, generator=generator)
    elif kind == "uniform":
        z = torch.rand(n, nz, generator=generator).mul_(2).sub_(1)
    else:
        raise ConfigError(f"Unknown latent distribution {kind!r}; use 'normal' or 'uniform'.")
    return z.to(device)
