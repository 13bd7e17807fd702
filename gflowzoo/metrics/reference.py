"""The real data an evaluation compares against, and the cache of its features.

The reference is ``n`` items of one split of a data set: the first ``n`` of a permutation drawn with a fixed seed
(0), so every evaluation with the same ``(data set, split, n)`` sees the same items, whatever the evaluation seed.
Features of the reference are cached per (data set, split, extractor, SHA-256 of its weights, ``n``) in
``<cache>/reference/`` as plain tensors (read with ``weights_only=True``) and reused by every later evaluation.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..paths import cache_root

REFERENCE_SEED = 0
FORMAT = "gflowzoo-reference-features"


class Reference:
    """``n`` items of a data set split (all of it when ``n`` is ``None`` or larger).

    Args:
        dataset: a :class:`gflowzoo.data.Dataset` (one split).
        dataset_name: its registry name (part of the cache key).
        split: ``"train"`` or ``"test"``.
        n: how many items to use.
        runtime: a :class:`gflowzoo.metrics.fidelity.FeatureRuntime` for image metrics (``None`` for points).
        cache: whether to read and write the reference-feature cache.
    """

    def __init__(self, dataset: Any, dataset_name: str, split: str, n: int | None = None, runtime: Any = None,
                 cache: bool = True) -> None:
        self.dataset, self.dataset_name, self.split = dataset, dataset_name, split
        size = len(dataset)
        self.n = size if n is None else min(int(n), size)
        if self.n < 1:
            raise UserError(f"The reference ({dataset_name}, {split}) holds no items.")
        self.size = size
        self.runtime = runtime
        self.cache = cache
        self._samples: Tensor | None = None
        self._features: dict[str, Tensor] | None = None
        self.cache_hit: bool | None = None

    @property
    def kind(self) -> str:
        return self.dataset.kind

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.shape)

    def info(self) -> dict[str, Any]:
        return self.dataset.info()

    def to_unit(self, x: Tensor) -> Tensor:
        return self.dataset.to_unit(x)

    def indices(self) -> Tensor:
        """The items used: the first ``n`` of a seeded permutation of the split, in increasing order (``[n]``)."""
        if self.n >= self.size:
            return torch.arange(self.size)
        perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(REFERENCE_SEED))
        return perm[: self.n].sort().values

    def samples(self) -> Tensor:
        """The reference items ``[n, *S]`` in model units (loaded once)."""
        if self._samples is None:
            self._samples = self.dataset.get(self.indices())
        return self._samples

    # -- features --------------------------------------------------------------------------------------------
    def extract(self, x: Tensor) -> dict[str, Tensor]:
        """Features of model-unit images ``x`` with this reference's extractor (``{layer: float64 [N, D]}``)."""
        if self.runtime is None:
            raise UserError("This metric needs an image feature extractor, and none was set up.")
        return self.runtime.extract(x)

    def cache_path(self) -> Path:
        """``<cache>/reference/<data set>-<split>-<extractor>-<sha256[:16]>-n<n>.pt``."""
        rt = self.runtime
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.dataset_name)[:40]
        if safe != self.dataset_name:
            safe += "-" + hashlib.sha256(self.dataset_name.encode()).hexdigest()[:8]
        return cache_root() / "reference" / (
            f"{safe}-{self.split}-{rt.extractor.name}-{rt.sha256[:16]}-n{self.n}.pt"
        )

    def _key(self) -> dict[str, Any]:
        return {"dataset": self.dataset_name, "split": self.split, "n": self.n, "size": self.size,
                "extractor": self.runtime.extractor.name, "sha256": self.runtime.sha256,
                "layers": list(self.runtime.layers)}

    def features(self) -> dict[str, Tensor]:
        """Features of the reference items (``{layer: float64 [n, D]}``), from the cache when it holds them."""
        if self._features is not None:
            return self._features
        if self.runtime is None:
            raise UserError("This metric needs an image feature extractor, and none was set up.")
        path = self.cache_path()
        if self.cache and path.is_file():
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True)
                if payload.get("format") == FORMAT and payload.get("key") == self._key():
                    self._features = {k: v.double() for k, v in payload["features"].items()}
                    self.cache_hit = True
                    return self._features
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                pass
        self.cache_hit = False
        idx = self.indices()
        parts: dict[str, list[Tensor]] = {}
        for start in range(0, len(idx), 5000):
            feats = self.runtime.extract(self.dataset.get(idx[start : start + 5000]))
            for k, v in feats.items():
                parts.setdefault(k, []).append(v)
        self._features = {k: torch.cat(v) for k, v in parts.items()}
        if self.cache:
            from ..runs import atomic_write_bytes

            buf = io.BytesIO()
            torch.save({"format": FORMAT, "key": self._key(), "features": self._features}, buf)
            atomic_write_bytes(path, buf.getvalue())
        return self._features

    def describe(self) -> dict[str, Any]:
        """The reference's part of an evaluation protocol."""
        out = {"dataset": self.dataset_name, "split": self.split, "n": self.n, "split_size": self.size,
               "selection": f"first n of randperm(seed={REFERENCE_SEED})" if self.n < self.size else "all"}
        if self.runtime is not None:
            out["features_cache"] = str(self.cache_path()) if self.cache else None
        return out
