"""``drift-mlp``: a plain MLP feature backbone, the default generator body and feature network of ``drift``.

Registered by this plugin so that ``drift``'s backbone options have a default that exists whatever other plugins
are installed; any registered backbone can replace it (``--set generator_backbone.name=dcgan``)."""

from __future__ import annotations

import math

from torch import Tensor

from gflowzoo.api import MLP, FeatureBackbone

__all__ = ["DriftMLP"]


class DriftMLP(FeatureBackbone):
    """MLP ``[N, *in_shape]`` (flattened) ``-> hidden... -> feature_dim``; ignores ``t``.

    Args:
        width: width of each hidden layer.
        depth: number of hidden layers.
        activation: hidden activation (``gflowzoo.api.make_activation`` names).
        out_activation: output activation (``tanh`` for a generator of images in ``[-1, 1]``).
    """

    channels_last_ok = False

    def __init__(self, in_shape: tuple[int, ...], feature_dim: int, width: int = 256, depth: int = 3,
                 activation: str = "silu", out_activation: str = "none") -> None:
        super().__init__(in_shape, feature_dim)
        self.net = MLP(math.prod(self.in_shape), self.feature_dim, [int(width)] * int(depth), activation,
                       out_activation)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """``[N, *in_shape]`` -> ``[N, feature_dim]``."""
        return self.net(x.reshape(len(x), -1))
