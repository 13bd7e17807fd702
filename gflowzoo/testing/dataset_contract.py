"""Contract test base for ``dataset`` components (:class:`gflowzoo.interfaces.Dataset`): :class:`DatasetContract`.

Subclass it in a ``test_*.py`` file (a class name starting with ``Test``) and fill the class attributes; the
shared plumbing (the ``registry`` fixture, ``plugins``/``plugin_object``) is :class:`gflowzoo.testing.base.PluginContractBase`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from .base import PluginContractBase, _gen

__all__ = ["DatasetContract"]


class DatasetContract(PluginContractBase):
    """Contract of a ``dataset``: shapes and dtype, value range (images in ``[-1, 1]``, points of unit-ish
    scale), determinism of ``sample`` under a seeded generator, ``to_unit`` sanity, ``batches``, ``DataHandle``.

    Override :meth:`make_root` to write tiny data files into ``tmp_path`` and return the data root."""

    dataset_name: ClassVar[str] = ""
    #: Expected per-sample shape, or None to accept any.
    expected_shape: ClassVar[tuple[int, ...] | None] = None
    #: Splits that must open.
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def make_root(self, tmp_path: Path) -> Path | None:
        """Create tiny data files under ``tmp_path`` and return the data root (None: the data needs no files)."""
        return None

    @pytest.fixture
    def dataset(self, registry: Any, tmp_path: Path) -> Any:
        """The train split, opened through the registry."""
        from ..data import open_dataset

        self._root = self.make_root(tmp_path)
        return open_dataset(self.dataset_name, "train", self._root, registry)

    def test_shapes_and_dtype(self, dataset: Any) -> None:
        from ..data import Dataset

        assert isinstance(dataset, Dataset)
        assert dataset.kind in ("image", "points")
        assert len(dataset) > 0
        if self.expected_shape is not None:
            assert tuple(dataset.shape) == tuple(self.expected_shape)
        if dataset.kind == "image":
            assert len(dataset.shape) == 3
        x = dataset.get(torch.arange(min(5, len(dataset))))
        assert tuple(x.shape) == (min(5, len(dataset)), *dataset.shape)
        assert x.dtype == torch.float32

    def test_value_range(self, dataset: Any) -> None:
        x = dataset.sample(256, _gen(0))
        assert torch.isfinite(x).all()
        if dataset.kind == "image":
            assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0, "images must be in [-1, 1]"
            assert float(x.max() - x.min()) > 0.5, "images look constant"
        else:
            std = x.std(0)
            assert ((std > 0.2) & (std < 5.0)).all(), f"points should have unit-ish scale, got std {std.tolist()}"

    def test_sample_deterministic(self, dataset: Any) -> None:
        a = dataset.sample(32, _gen(1))
        b = dataset.sample(32, _gen(1))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        c = dataset.sample(32, _gen(2))
        assert not torch.equal(a, c)

    def test_to_unit(self, dataset: Any) -> None:
        x = dataset.sample(64, _gen(3))
        u = dataset.to_unit(x)
        assert u.shape == x.shape and torch.isfinite(u).all()
        if dataset.kind == "image":
            torch.testing.assert_close(u, ((x + 1) / 2).clamp(0, 1))
        else:
            # an affine map: to_unit(2x) - to_unit(0) = 2 (to_unit(x) - to_unit(0))
            zero = dataset.to_unit(torch.zeros_like(x))
            torch.testing.assert_close(dataset.to_unit(2 * x) - zero, 2 * (u - zero), rtol=1e-5, atol=1e-5)
            info = dataset.info()
            if "centres" in info and "mode_std" in info:
                centres = torch.tensor(info["centres"], dtype=u.dtype)
                dist = torch.cdist(u, centres).min(1).values
                assert float((dist < 5 * info["mode_std"]).float().mean()) > 0.95, "samples are far from centres"

    def test_batches_cover_the_data(self, dataset: Any) -> None:
        limit = min(len(dataset), 100)
        sizes = [len(b) for b in dataset.batches(32, limit=limit)]
        assert sum(sizes) == limit and all(s <= 32 for s in sizes)

    def test_splits_and_handle(self, registry: Any, dataset: Any) -> None:
        from ..data import DataHandle, open_dataset

        for split in self.splits:
            ds = open_dataset(self.dataset_name, split, self._root, registry)
            assert tuple(ds.shape) == tuple(dataset.shape) and len(ds) > 0
        handle = DataHandle(self.dataset_name, self._root, registry=registry)
        assert tuple(handle.shape) == tuple(dataset.shape) and handle.kind == dataset.kind
