"""The metric interface (defined in :mod:`gflowzoo.interfaces`, re-exported here) and the context a metric
computes from.

A metric is a registered component of kind ``metric``: a class whose keyword arguments (with defaults) are its
options, and whose :meth:`Metric.compute` returns named scalars (``{"kid": ..., "kid_std": ...}``). It reads the
generated samples, the reference data and, for image metrics, features from an :class:`EvalContext`; features are
computed once per context and shared by every metric that asks for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..interfaces import Metric  # noqa: F401  (the interface; also importable from here)


class EvalContext:
    """Everything a metric may read for one evaluation.

    Args:
        samples: generated samples ``[N, *S]`` in model units (images in ``[-1, 1]``, points in unit scale), CPU.
        reference: a :class:`gflowzoo.metrics.reference.Reference` (the real data compared against).
        seed: the evaluation seed; metrics draw their own randomness (KID subsets, projections) from it.
        warn: called with a message when a metric changes a setting (e.g. a KID subset size lowered).
        features: the features of all generated samples when computed beforehand (piece by piece, so that ``n``
            images need not be held); ``samples`` may then be only the first few (image metrics read features).
        data: the data set's :class:`gflowzoo.data.DataHandle`, for metrics that read a whole split (the
            memorisation check searches the training split); ``None`` when the evaluation has none.
    """

    def __init__(self, samples: Tensor, reference: Any, seed: int = 0, warn: Callable[[str], None] | None = None,
                 features: dict[str, Tensor] | None = None, data: Any = None):
        self.samples = samples.detach().cpu()
        self.reference = reference
        self.data = data
        self.seed = int(seed)
        self.warnings: list[str] = []
        self._warn = warn
        self._features: dict[str, Tensor] | None = features

    @property
    def n(self) -> int:
        """Number of generated samples (those the features were computed from, when given)."""
        if self._features:
            return int(next(iter(self._features.values())).shape[0])
        return int(self.samples.shape[0])

    def warn(self, message: str) -> None:
        """Record (and pass on) a warning that belongs in the evaluation protocol."""
        if message not in self.warnings:
            self.warnings.append(message)
            if self._warn is not None:
                self._warn(message)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU generator seeded from the evaluation seed (``offset`` separates independent uses)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    # -- points ----------------------------------------------------------------------------------------------
    def reference_samples(self) -> Tensor:
        """Reference (real) samples ``[M, *S]`` in model units."""
        return self.reference.samples()

    def to_raw(self, x: Tensor) -> Tensor:
        """Model units -> the data set's raw units (:meth:`gflowzoo.data.Dataset.to_unit`)."""
        return self.reference.to_unit(x)

    def info(self) -> dict[str, Any]:
        """The data set's :meth:`~gflowzoo.data.Dataset.info`."""
        return self.reference.info()

    def _split(self, split: str) -> Any:
        if self.data is None:
            raise UserError(f"This metric reads the {split} split of the data set, and the evaluation has none.")
        return self.data.split(split)

    def split_batches(self, split: str, limit: int | None = None, batch: int = 5000) -> Iterator[Tensor]:
        """The first ``limit`` items (all when ``None``) of a split in order, ``batch`` at a time, in model units
        (memory holds one batch)."""
        return self._split(split).batches(batch, limit)

    def split_items(self, split: str, n: int) -> Tensor:
        """``n`` items of a split (the first ``n`` of a permutation seeded with the evaluation seed; all of the
        split when it is smaller), in model units."""
        ds = self._split(split)
        if n >= len(ds):
            return ds.get(torch.arange(len(ds)))
        return ds.get(torch.randperm(len(ds), generator=self.generator(7))[:n].sort().values)

    # -- images ----------------------------------------------------------------------------------------------
    def features(self) -> dict[str, Tensor]:
        """Features of the generated samples by layer name (``float64 [N, D]``), extracted once."""
        if self._features is None:
            self._features = self.reference.extract(self.samples)
        return self._features

    def reference_features(self) -> dict[str, Tensor]:
        """Features of the reference samples by layer name (``float64 [M, D]``), cached on disk."""
        return self.reference.features()

    @property
    def feature_layer(self) -> str:
        """The layer FID, KID and precision/recall use."""
        return self.reference.runtime.extractor.feature_layer

    @property
    def logits_layer(self) -> str:
        """The layer the Inception Score uses (class logits)."""
        layer = self.reference.runtime.extractor.logits_layer
        if layer is None:
            raise UserError(f"Feature extractor {self.reference.runtime.extractor.name!r} has no class logits.")
        return layer
