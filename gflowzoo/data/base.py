"""Data-set implementations, data-root resolution and the lazy :class:`DataHandle` handed to methods.

The :class:`~gflowzoo.interfaces.Dataset` interface lives in :mod:`gflowzoo.interfaces` (importable from here too).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..interfaces import Dataset  # the interface; also importable from here


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where data sets live: ``--data-root``, else ``$GFLOWZOO_DATA``, else a per-user cache folder."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("GFLOWZOO_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gflowzoo" / "data"


def images_to_unit(x: Tensor) -> Tensor:
    """Images in model units ``[-1, 1]`` to display units ``[0, 1]`` (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


class ArrayImages(Dataset):
    """Images held as a ``uint8`` array ``[N, C, H, W]`` (in memory or memory-mapped)."""

    kind = "image"

    def __init__(self, array: np.ndarray, name: str, split: str = "train", labels: np.ndarray | None = None):
        if array.ndim != 4 or array.dtype != np.uint8:
            raise DataError(f"{name}: expected a uint8 array [N, C, H, W], got {array.dtype} {array.shape}.")
        if len(array) == 0:
            raise DataError(f"{name} ({split}) holds no images.")
        self.array, self.name, self.split, self.labels = array, name, split, labels

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    def __len__(self) -> int:
        return len(self.array)

    def get(self, index: Tensor) -> Tensor:
        idx = index.cpu().numpy()
        order = np.argsort(idx, kind="stable")  # sorted reads are much faster on memory maps
        chunk = np.asarray(self.array[idx[order]])
        out = np.empty_like(chunk)
        out[order] = chunk
        return torch.from_numpy(out).float().div_(127.5).sub_(1.0)

    def to_unit(self, x: Tensor) -> Tensor:
        return images_to_unit(x)


class Points(Dataset):
    """2-D points held in raw units, served divided by ``scale`` (so each coordinate has about unit variance)."""

    kind = "points"

    def __init__(self, raw: Tensor, name: str, split: str, scale: float, info: dict[str, Any] | None = None):
        self.raw, self.name, self.split, self.scale = raw.float(), name, split, float(scale)
        self._info = info or {}

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw.shape[1:])

    def __len__(self) -> int:
        return len(self.raw)

    def get(self, index: Tensor) -> Tensor:
        return self.raw[index.cpu()] / self.scale

    def to_unit(self, x: Tensor) -> Tensor:
        return x * self.scale

    def info(self) -> dict[str, Any]:
        return dict(self._info, scale=self.scale)


def open_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, registry: Any = None) -> Dataset:
    """Open a registered data set by name (``"digits"``, ``"imagefolder:/path"``) and split."""
    if registry is None:
        from ..plugins import get_registry

        registry = get_registry()
    entry = registry.get("dataset", name)
    factory = entry.load()
    arg = name.split(":", 1)[1] if ":" in name else None
    if entry.name.endswith(":") and not arg:
        raise DataError(f"Data set {entry.name!r} needs a value after the colon, e.g. {entry.name}/path/to/images.")
    kwargs: dict[str, Any] = {"root": data_root(root), "split": split}
    if entry.name.endswith(":"):
        kwargs["arg"] = arg
    ds = factory(**kwargs)
    if not isinstance(ds, Dataset):
        raise DataError(f"Data set {name!r} factory returned {type(ds).__name__}, not a gflowzoo Dataset.")
    ds.name = ds.name or name
    return ds


class DataHandle:
    """What a method sees of its data: the shape and kind at once, the splits loaded on first use.

    ``shape``/``kind`` may be given up front (from a checkpoint) so that sampling works where the data is absent;
    methods then fail with a clear :class:`DataError` only when they really need data.
    """

    def __init__(
        self,
        name: str,
        root: str | os.PathLike | None = None,
        shape: tuple[int, ...] | None = None,
        kind: str | None = None,
        registry: Any = None,
    ) -> None:
        self.name, self.root, self._registry = name, root, registry
        self._shape, self._kind = (tuple(shape) if shape else None), kind
        self._splits: dict[str, Dataset] = {}

    def split(self, split: str) -> Dataset:
        if split not in self._splits:
            self._splits[split] = open_dataset(self.name, split, self.root, self._registry)
        return self._splits[split]

    @property
    def train(self) -> Dataset:
        return self.split("train")

    @property
    def test(self) -> Dataset:
        return self.split("test")

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape if self._shape is not None else self.train.shape

    @property
    def kind(self) -> str:
        return self._kind if self._kind is not None else self.train.kind

    def to_unit(self, x: Tensor) -> Tensor:
        """Model units to display units without needing the data when the scale is the image convention."""
        if self.kind == "image":
            return images_to_unit(x)
        return self.train.to_unit(x)
