"""Contract test base for ``backbone`` components (:class:`gflowzoo.interfaces.FeatureBackbone`):
:class:`BackboneContract`.

Subclass it in a ``test_*.py`` file (a class name starting with ``Test``) and fill the class attributes; the
shared plumbing (the ``registry`` fixture, ``plugins``/``plugin_object``) is :class:`gflowzoo.testing.base.PluginContractBase`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from ..interfaces import FeatureBackbone
from .base import PluginContractBase, _gen, _spec

__all__ = ["BackboneContract"]


class BackboneContract(PluginContractBase):
    """Contract of a ``backbone``: output ``[N, D]``, depends on ``t`` when :attr:`noise_conditional`, finite
    gradients w.r.t. the input, ``state_dict`` round trip, batch size 1."""

    backbone_name: ClassVar[str] = ""
    in_shape: ClassVar[tuple[int, ...]] = (1, 8, 8)
    feature_dim: ClassVar[int] = 16
    options: ClassVar[dict[str, Any]] = {}
    noise_conditional: ClassVar[bool] = True

    def make_backbone(self, registry: Any, seed: int = 0) -> FeatureBackbone:
        torch.manual_seed(seed)
        return registry.create(
            "backbone", _spec(self.backbone_name, dict(self.options)),
            in_shape=tuple(self.in_shape), feature_dim=self.feature_dim,
        )

    def _x(self, n: int, seed: int = 0) -> torch.Tensor:
        return torch.randn(n, *self.in_shape, generator=_gen(seed)).clamp(-1, 1)

    def test_builds_through_registry(self, registry: Any) -> None:
        assert registry.get("backbone", self.backbone_name).summary
        net = self.make_backbone(registry)
        assert isinstance(net, FeatureBackbone)
        assert tuple(net.in_shape) == tuple(self.in_shape) and net.feature_dim == self.feature_dim

    def test_output_shape(self, registry: Any) -> None:
        net = self.make_backbone(registry)
        out = net(self._x(4), torch.rand(4, generator=_gen(1)))
        assert tuple(out.shape) == (4, self.feature_dim)
        assert torch.isfinite(out).all()

    def test_accepts_no_noise_level(self, registry: Any) -> None:
        net = self.make_backbone(registry)
        out = net(self._x(3), None)
        assert tuple(out.shape) == (3, self.feature_dim)

    def test_depends_on_t(self, registry: Any) -> None:
        if not self.noise_conditional:
            pytest.skip("backbone is not noise-conditional")
        net = self.make_backbone(registry).eval()
        x = self._x(4)
        with torch.no_grad():
            a = net(x, torch.full((4,), 0.1))
            b = net(x, torch.full((4,), 0.9))
        assert not torch.allclose(a, b), "features do not change with the noise level t"

    def test_gradients_wrt_input(self, registry: Any) -> None:
        net = self.make_backbone(registry)
        x = self._x(4).requires_grad_(True)
        net(x, torch.rand(4, generator=_gen(2))).square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    def test_state_dict_round_trip(self, registry: Any) -> None:
        a = self.make_backbone(registry, seed=0).eval()
        b = self.make_backbone(registry, seed=1).eval()
        b.load_state_dict(a.state_dict())
        x, t = self._x(3), torch.rand(3, generator=_gen(3))
        with torch.no_grad():
            torch.testing.assert_close(a(x, t), b(x, t))

    def test_batch_size_one(self, registry: Any) -> None:
        net = self.make_backbone(registry)
        out = net(self._x(1), torch.tensor([0.5]))
        assert tuple(out.shape) == (1, self.feature_dim)
        with torch.no_grad():
            assert tuple(net.eval()(self._x(1), torch.tensor([0.5])).shape) == (1, self.feature_dim)
