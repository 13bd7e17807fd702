"""Contract test base for ``kernel`` components (:class:`gflowzoo.interfaces.Kernel`): :class:`KernelContract`.

Subclass it in a ``test_*.py`` file (a class name starting with ``Test``) and fill the class attributes; the
shared plumbing (the ``registry`` fixture, ``plugins``/``plugin_object``) is :class:`gflowzoo.testing.base.PluginContractBase`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from ..interfaces import Kernel
from .base import PluginContractBase, _gen, _spec, devices

__all__ = ["KernelContract"]


class KernelContract(PluginContractBase):
    """Contract of a ``kernel``: Gram shape, symmetry, positive semi-definiteness, ``diag``, finite gradients
    (also at identical points), dtype and device following the input."""

    kernel_name: ClassVar[str] = ""
    kernel_options: ClassVar[dict[str, Any]] = {}
    #: Feature dimension of the test inputs.
    dim: ClassVar[int] = 3

    def make_kernel(self, registry: Any) -> Kernel:
        """Build the kernel under test through the registry."""
        return registry.create("kernel", _spec(self.kernel_name, dict(self.kernel_options)))

    def test_builds_through_registry(self, registry: Any) -> None:
        entry = registry.get("kernel", self.kernel_name)
        assert entry.summary, "register the kernel with a one-line summary"
        k = self.make_kernel(registry)
        assert isinstance(k, Kernel)

    def test_gram_shape(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        x = torch.randn(5, self.dim, generator=_gen(0))
        y = torch.randn(7, self.dim, generator=_gen(1))
        assert tuple(k.gram(x, y).shape) == (5, 7)
        assert tuple(k(x, y).shape) == (5, 7)

    def test_symmetric(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        x = torch.randn(9, self.dim, generator=_gen(2), dtype=torch.float64)
        g = k.gram(x, x)
        torch.testing.assert_close(g, g.T, rtol=1e-6, atol=1e-8)
        y = torch.randn(4, self.dim, generator=_gen(3), dtype=torch.float64)
        torch.testing.assert_close(k.gram(x, y), k.gram(y, x).T, rtol=1e-6, atol=1e-8)

    def test_positive_semidefinite(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        x = torch.randn(16, self.dim, generator=_gen(4), dtype=torch.float64)
        g = k.gram(x, x)
        g = (g + g.T) / 2
        eig = torch.linalg.eigvalsh(g)
        scale = max(1.0, float(g.abs().max()))
        assert float(eig.min()) >= -1e-5 * scale, f"smallest eigenvalue {float(eig.min()):.3g} (scale {scale:.3g})"

    def test_diag_matches_gram(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        x = torch.randn(6, self.dim, generator=_gen(5), dtype=torch.float64)
        d = k.diag(x)
        assert tuple(d.shape) == (6,)
        torch.testing.assert_close(d, k.gram(x, x).diagonal(), rtol=1e-6, atol=1e-8)

    def test_gradients_finite_at_identical_points(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        base = torch.randn(5, self.dim, generator=_gen(6), dtype=torch.float64)
        x = base.clone().requires_grad_(True)
        y = torch.cat([base[:3], torch.randn(2, self.dim, generator=_gen(7), dtype=torch.float64)]).requires_grad_(True)
        (k.gram(x, y).sum() + k.gram(x, x).sum() + k.diag(x).sum()).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), "non-finite gradient w.r.t. x"
        assert y.grad is not None and torch.isfinite(y.grad).all(), "non-finite gradient w.r.t. y"

    def test_linear_flag(self, registry: Any) -> None:
        k = self.make_kernel(registry)
        if not type(k).is_linear:
            pytest.skip("not a linear kernel")
        x = torch.randn(4, self.dim, generator=_gen(8), dtype=torch.float64)
        y = torch.randn(3, self.dim, generator=_gen(9), dtype=torch.float64)
        torch.testing.assert_close(k.gram(x, y), x @ y.T)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_dtype_and_device_follow_input(self, registry: Any, dtype: torch.dtype) -> None:
        k = self.make_kernel(registry)
        for device in devices():
            x = torch.randn(4, self.dim, generator=_gen(10), dtype=dtype).to(device)
            y = torch.randn(3, self.dim, generator=_gen(11), dtype=dtype).to(device)
            g = k.gram(x, y)
            assert g.dtype == dtype and g.device.type == torch.device(device).type
            d = k.diag(x)
            assert d.dtype == dtype and d.device.type == torch.device(device).type
