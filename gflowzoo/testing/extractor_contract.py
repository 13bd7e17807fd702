"""Contract test base for ``feature-extractor`` components (:class:`gflowzoo.interfaces.FeatureExtractor`).

Subclass :class:`FeatureExtractorContract` in a ``test_*.py`` file (a class name starting with ``Test``)::

    from gflowzoo.testing import FeatureExtractorContract

    class TestMyExtractor(FeatureExtractorContract):
        extractor_name = "my-net"
        in_shape = (3, 32, 32)
        plugins = ("my-plugin",)

        def prepare(self, tmp_path):
            return {"weights": str(write_small_weights(tmp_path))}   # options that point at a weights file

The features are computed through the real torch-fidelity glue (:class:`gflowzoo.metrics.fidelity.FeatureRuntime`),
on the CPU, with ``$GFLOWZOO_CACHE`` pointing into the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor

from ..interfaces import FeatureExtractor
from .base import PluginContractBase

__all__ = ["FeatureExtractorContract"]


class FeatureExtractorContract(PluginContractBase):
    """Contract of a ``feature-extractor``: it builds through the registry with a one-line summary under its own
    ``name``; names its layers; ``check_shape`` accepts ``in_shape`` and refuses other shapes with a
    :class:`~gflowzoo.errors.UserError`; ``resolve_weights`` returns an existing file; and images of ``in_shape``
    (model units, ``[N, C, H, W]`` in ``[-1, 1]``) map to finite ``float64`` ``[N, D]`` features (``[N, K]`` logits
    when it has a logits layer) that are deterministic, independent of the batch size, and depend on the image."""

    extractor_name: ClassVar[str] = ""
    #: The extractor's options (constructor keyword arguments); :meth:`prepare` may add more.
    options: ClassVar[dict[str, Any]] = {}
    #: The image shape ``[C, H, W]`` the extractor takes.
    in_shape: ClassVar[tuple[int, ...]] = (3, 32, 32)
    #: Images per test batch.
    n: ClassVar[int] = 6
    #: Tolerance between features computed in different batch sizes (float32 networks).
    atol: ClassVar[float] = 1e-5

    def prepare(self, tmp_path: Path) -> dict[str, Any]:
        """Options to add for the test, e.g. ``{"weights": path}`` after writing a small weights file under
        ``tmp_path``. Default: none (``resolve_weights`` must then find the weights itself)."""
        return {}

    def images(self, n: int, seed: int = 0) -> Tensor:
        """``n`` images of :attr:`in_shape` in model units ``[-1, 1]``: smooth random blobs plus a little noise."""
        g = torch.Generator().manual_seed(seed)
        c, h, w = self.in_shape
        low = torch.rand(n, c, max(h // 4, 1), max(w // 4, 1), generator=g)
        up = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        return (up * 2 - 1 + 0.1 * torch.randn(n, c, h, w, generator=g)).clamp(-1, 1)

    # -- fixtures ------------------------------------------------------------------------------------------------
    @pytest.fixture
    def extractor(self, registry: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FeatureExtractor:
        """The extractor under test, built through the registry (cache folders inside ``tmp_path``)."""
        monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "cache"))
        options = {**self.options, **self.prepare(tmp_path)}
        spec: Any = {"name": self.extractor_name, **options} if options else self.extractor_name
        return registry.create("feature-extractor", spec)

    @pytest.fixture
    def weights(self, extractor: FeatureExtractor) -> Path:
        return extractor.resolve_weights()

    def runtime(self, extractor: FeatureExtractor, weights: Path, batch_size: int | None = None) -> Any:
        """A :class:`~gflowzoo.metrics.fidelity.FeatureRuntime` of ``extractor`` on the CPU."""
        from ..metrics.fidelity import FeatureRuntime

        return FeatureRuntime(extractor, weights, "cpu", batch_size=batch_size)

    def layers(self, extractor: FeatureExtractor) -> list[str]:
        return [extractor.feature_layer] + ([extractor.logits_layer] if extractor.logits_layer else [])

    # -- the contract --------------------------------------------------------------------------------------------
    def test_builds_through_registry(self, registry: Any, extractor: FeatureExtractor) -> None:
        entry = registry.get("feature-extractor", self.extractor_name)
        assert entry.summary, "register the extractor with a one-line summary"
        assert isinstance(extractor, FeatureExtractor)
        assert extractor.name == self.extractor_name, "name is the registry name (evaluation protocols show it)"
        assert extractor.fidelity_name and extractor.feature_layer, "set fidelity_name and feature_layer"
        assert extractor.logits_layer != extractor.feature_layer

    def test_check_shape(self, extractor: FeatureExtractor) -> None:
        from ..errors import UserError

        extractor.check_shape(tuple(self.in_shape))
        c, h, w = self.in_shape
        for bad in ((5, h, w), (h, w), (c, h + 3, w + 5, 1)):
            with pytest.raises(UserError):
                extractor.check_shape(bad)

    def test_resolve_weights_names_a_file(self, weights: Path) -> None:
        assert isinstance(weights, Path) and weights.is_file(), weights

    def test_features_shape_dtype_finite(self, extractor: FeatureExtractor, weights: Path) -> None:
        feats = self.runtime(extractor, weights).extract(self.images(self.n))
        assert set(self.layers(extractor)) <= set(feats), sorted(feats)
        for layer in self.layers(extractor):
            f = feats[layer]
            assert f.ndim == 2 and f.shape[0] == self.n and f.shape[1] >= 1, (layer, tuple(f.shape))
            assert f.dtype == torch.float64 and f.device.type == "cpu", (layer, f.dtype, f.device)
            assert torch.isfinite(f).all(), layer

    def test_deterministic_and_batch_size_independent(self, extractor: FeatureExtractor, weights: Path) -> None:
        x = self.images(self.n)
        whole = self.runtime(extractor, weights, batch_size=self.n).extract(x)
        again = self.runtime(extractor, weights, batch_size=self.n).extract(x)
        pieces = self.runtime(extractor, weights, batch_size=2).extract(x)
        head = self.runtime(extractor, weights, batch_size=self.n).extract(x[:3])
        for layer in self.layers(extractor):
            torch.testing.assert_close(again[layer], whole[layer], rtol=0, atol=0)
            torch.testing.assert_close(pieces[layer], whole[layer], rtol=1e-5, atol=self.atol)
            torch.testing.assert_close(head[layer], whole[layer][:3], rtol=1e-5, atol=self.atol)

    def test_features_depend_on_the_image(self, extractor: FeatureExtractor, weights: Path) -> None:
        f = self.runtime(extractor, weights).extract(self.images(self.n))[extractor.feature_layer]
        assert (f - f[:1]).abs().amax(dim=1)[1:].min() > 0, "different images give identical features"
