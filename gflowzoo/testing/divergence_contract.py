"""Contract test base for ``divergence`` components (:class:`gflowzoo.interfaces.Divergence`):
:class:`DivergenceContract`.

Subclass it in a ``test_*.py`` file (a class name starting with ``Test``) and fill the class attributes; the
shared plumbing (the ``registry`` fixture, ``plugins``/``plugin_object``) is :class:`gflowzoo.testing.base.PluginContractBase`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..interfaces import Divergence
from .base import PluginContractBase, _gen, _spec

__all__ = ["DivergenceContract"]


class DivergenceContract(PluginContractBase):
    """Contract of a ``divergence``: a finite scalar estimate, about zero for two samples of one distribution and
    clearly positive for shifted samples; a witness of shape ``[K]`` that is higher near the target P than near the
    source Q (the sign convention); gradients that reach both feature sets; a small step up the witness lowers the
    estimate."""

    divergence_name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    #: The kernel spec handed to the divergence.
    kernel: ClassVar[str | dict[str, Any]] = "rbf"
    dim: ClassVar[int] = 2
    #: Sample size for the two-sample checks.
    n_large: ClassVar[int] = 400

    def make_divergence(self, registry: Any) -> Divergence:
        """Build the divergence under test (with :attr:`kernel`) through the registry."""
        k = registry.create("kernel", self.kernel)
        return registry.create("divergence", _spec(self.divergence_name, dict(self.options)), kernel=k)

    def _samples(self, shift: float, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        n = n or self.n_large
        fx = torch.randn(n, self.dim, generator=_gen(seed), dtype=torch.float64)
        fy = torch.randn(n, self.dim, generator=_gen(seed + 1), dtype=torch.float64)
        fy[:, 0] += shift
        return fx, fy

    def test_builds_through_registry(self, registry: Any) -> None:
        assert registry.get("divergence", self.divergence_name).summary
        assert isinstance(self.make_divergence(registry), Divergence)

    def test_estimate_is_finite_scalar(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        fx, fy = self._samples(1.0, n=64)
        est = d.estimate(fx, fy)
        assert isinstance(est, torch.Tensor) and est.ndim == 0
        assert torch.isfinite(est)

    def test_same_distribution_small_shifted_positive(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        same = float(d.estimate(*self._samples(0.0)))
        shifted = float(d.estimate(*self._samples(2.0)))
        assert shifted > 0, f"estimate for shifted samples is {shifted:.4g}"
        assert abs(same) < 0.1 * shifted, f"same-distribution estimate {same:.4g} vs shifted {shifted:.4g}"

    def test_witness_shape_and_sign(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        fx, fy = self._samples(0.0, n=200)
        fx = 0.5 * fx + torch.tensor([2.0] + [0.0] * (self.dim - 1), dtype=fx.dtype)  # target P around +2 e1
        fy = 0.5 * fy - torch.tensor([2.0] + [0.0] * (self.dim - 1), dtype=fy.dtype)  # source Q around -2 e1
        fz = torch.zeros(5, self.dim, dtype=fx.dtype)
        fz[:, 0] = torch.tensor([2.0, 1.5, 0.0, -1.5, -2.0])
        w = d.witness(fz, fx, fy)
        assert tuple(w.shape) == (5,)
        assert torch.isfinite(w).all()
        assert float(w[0]) > float(w[-1]), "the witness must be higher near the target P than near the source Q"
        assert float(w[1]) > float(w[3])

    def test_gradients_reach_both_feature_sets(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        fx, fy = self._samples(1.0, n=64)
        fx.requires_grad_(True)
        fy.requires_grad_(True)
        d.estimate(fx, fy).backward()
        for name, t in (("fx", fx), ("fy", fy)):
            assert t.grad is not None, f"no gradient reaches {name}"
            assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0, f"bad gradient w.r.t. {name}"

    def test_step_up_the_witness_lowers_the_estimate(self, registry: Any) -> None:
        d = self.make_divergence(registry)
        fx, fy = self._samples(1.5, n=128)
        z = fy.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(d.witness(z, fx, fy.detach()).sum(), z)
        assert torch.isfinite(grad).all()
        moved = fy + 0.2 * grad / grad.norm(dim=1, keepdim=True).mean().clamp_min(1e-12)
        before, after = float(d.estimate(fx, fy)), float(d.estimate(fx, moved))
        assert after < before, f"moving Q up the witness raised the estimate ({before:.4g} -> {after:.4g})"
