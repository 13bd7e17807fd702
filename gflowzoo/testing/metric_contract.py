"""Contract test base for ``metric`` components (:class:`gflowzoo.interfaces.Metric`).

Subclass :class:`MetricContract` in a ``test_*.py`` file (a class name starting with ``Test``)::

    from gflowzoo.testing import MetricContract

    class TestMyMetric(MetricContract):
        metric_name = "my-metric"
        keys = ("my", "my_std")       # the keys compute() returns
        plugins = ("my-plugin",)

The metric is computed through the real :class:`~gflowzoo.metrics.base.EvalContext` and
:class:`~gflowzoo.metrics.reference.Reference` against a registered data set: a 2-D toy for point metrics, the 8x8
``digits`` for image metrics. Image metrics read features of a stand-in extractor (:class:`ProjectionFeatures`, fixed
random projections of the pixels), so the contract needs no weights file and no download.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor

from ..interfaces import Metric
from .base import PluginContractBase

__all__ = ["MetricContract", "ProjectionFeatures"]

#: The data set a contract compares against by default, per data kind.
DEFAULT_DATASETS = {"points": "toy-8gaussians", "image": "digits"}


class ProjectionFeatures:
    """A stand-in feature runtime for image metrics: ``features = tanh(x W)`` (``float64 [N, 32]``) and
    ``logits = x V`` (``float64 [N, 10]``) of the flattened model-unit images ``x``, with ``W`` and ``V`` drawn from a
    fixed seed. It has the interface the evaluation uses (:class:`gflowzoo.metrics.fidelity.FeatureRuntime`):
    ``extractor.feature_layer``, ``extractor.logits_layer``, ``extractor.name``, ``sha256`` (of its settings, in place
    of a weights file's) and ``extract(x)``."""

    class _Extractor:
        name = "projection-features"
        feature_layer = "features"
        logits_layer = "logits"

    def __init__(self, dim: int, feature_dim: int = 32, classes: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(dim, feature_dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
        self.v = torch.randn(dim, classes, generator=g, dtype=torch.float64) * 3 / math.sqrt(dim)
        self.extractor = self._Extractor()
        self.layers = [self.extractor.feature_layer, self.extractor.logits_layer]
        self.sha256 = hashlib.sha256(f"projection {dim} {feature_dim} {classes} {seed}".encode()).hexdigest()

    def extract(self, x: Tensor) -> dict[str, Tensor]:
        """``{"features": [N, 32], "logits": [N, 10]}`` (``float64``, CPU) of images ``x`` ``[N, *S]``."""
        flat = x.detach().cpu().double().reshape(len(x), -1)
        return {"features": torch.tanh(flat @ self.w), "logits": flat @ self.v}


class _Splits:
    """The part of a :class:`~gflowzoo.data.DataHandle` a metric may read: ``split(name)``."""

    def __init__(self, splits: dict[str, Any]) -> None:
        self._splits = splits

    def split(self, name: str) -> Any:
        return self._splits[name]


class MetricContract(PluginContractBase):
    """Contract of a ``metric``: it builds through the registry with a one-line summary; declares valid data kinds
    and directions; :meth:`~gflowzoo.interfaces.Metric.check` accepts its data kind and refuses the others with a
    :class:`~gflowzoo.errors.UserError`; :meth:`~gflowzoo.interfaces.Metric.compute` returns plain finite floats
    under the declared keys (every key of ``lower_is_better`` included); the result is the same for the same
    evaluation seed; and samples of the data score better than samples far from it (``orders_samples``)."""

    metric_name: ClassVar[str] = ""
    #: The metric's options (constructor keyword arguments).
    options: ClassVar[dict[str, Any]] = {}
    #: The exact keys :meth:`compute` returns, or ``()`` to check only those of ``lower_is_better``.
    keys: ClassVar[tuple[str, ...]] = ()
    #: The data kind to test (default: the metric's first ``data_kinds`` entry).
    data_kind: ClassVar[str] = ""
    #: The registered data set to compare against (default: ``toy-8gaussians`` for points, ``digits`` for images).
    dataset: ClassVar[str] = ""
    #: Generated and reference samples per evaluation.
    n: ClassVar[int] = 300
    #: The evaluation seed.
    seed: ClassVar[int] = 0
    #: Whether samples of the data must score better than :meth:`bad_samples` on every key with a direction.
    orders_samples: ClassVar[bool] = True

    # -- building blocks (override to change the data) -----------------------------------------------------------
    def make_metric(self, registry: Any) -> Metric:
        """Build the metric under test through the registry."""
        spec: Any = {"name": self.metric_name, **self.options} if self.options else self.metric_name
        return registry.create("metric", spec)

    def kind_of(self, metric: Metric) -> str:
        """The data kind the contract tests ``metric`` on."""
        return self.data_kind or metric.data_kinds[0]

    def good_samples(self, data: Any, n: int) -> Tensor:
        """Samples distributed like the data: ``n`` items of the train split (the reference is the test split)."""
        return data.sample(n, torch.Generator().manual_seed(1))

    def bad_samples(self, data: Any, n: int) -> Tensor:
        """Samples far from the data: points shifted by 4 units; images turned to uniform noise in ``[-1, 1]``."""
        x = self.good_samples(data, n)
        if data.kind == "image":
            return torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
        return x + 4.0

    def make_context(self, data: Any, reference_data: Any, samples: Tensor) -> Any:
        """An :class:`~gflowzoo.metrics.base.EvalContext` for ``samples`` against ``reference_data``."""
        from ..metrics.base import EvalContext
        from ..metrics.reference import Reference

        runtime = ProjectionFeatures(int(samples[0].numel())) if data.kind == "image" else None
        name = self.dataset or DEFAULT_DATASETS.get(data.kind, "")
        reference = Reference(reference_data, name, reference_data.split, self.n, runtime, cache=False)
        splits = {data.split: data, reference_data.split: reference_data}
        return EvalContext(samples, reference, seed=self.seed, data=_Splits(splits))

    # -- fixtures ------------------------------------------------------------------------------------------------
    @pytest.fixture
    def metric(self, registry: Any) -> Metric:
        return self.make_metric(registry)

    @pytest.fixture
    def splits(self, registry: Any, metric: Metric) -> tuple[Any, Any]:
        """``(train, test)`` splits of the data set the metric is tested on."""
        from ..data import open_dataset

        kind = self.kind_of(metric)
        name = self.dataset or DEFAULT_DATASETS.get(kind)
        if not name:
            pytest.fail(f"set `dataset` on {type(self).__name__}: no default data set for {kind!r} data")
        train, test = (open_dataset(name, split, None, registry) for split in ("train", "test"))
        assert train.kind == kind, f"data set {name!r} holds {train.kind} data, the metric is tested on {kind}"
        return train, test

    def compute(self, metric: Metric, splits: tuple[Any, Any], samples: Tensor) -> dict[str, float]:
        train, test = splits
        ctx = self.make_context(train, test, samples)
        metric.check(train.kind, test.info())
        return metric.compute(ctx)

    # -- the contract --------------------------------------------------------------------------------------------
    def test_builds_through_registry(self, registry: Any, metric: Metric) -> None:
        entry = registry.get("metric", self.metric_name)
        assert entry.summary, "register the metric with a one-line summary"
        assert isinstance(metric, Metric)
        assert metric.data_kinds and set(metric.data_kinds) <= {"image", "points"}, metric.data_kinds
        assert all(isinstance(v, bool) for v in metric.lower_is_better.values()), metric.lower_is_better
        if self.keys:
            assert set(metric.lower_is_better) <= set(self.keys), "lower_is_better names a key compute never returns"
        assert not metric.needs_logits or metric.needs_features, "a metric reading logits needs features"

    def test_check_accepts_its_kind_and_refuses_others(self, metric: Metric, splits: tuple[Any, Any]) -> None:
        from ..errors import UserError

        metric.check(self.kind_of(metric), splits[1].info())
        for other in {"image", "points"} - set(metric.data_kinds):
            with pytest.raises(UserError):
                metric.check(other, {})

    def test_returns_finite_floats_under_declared_keys(self, metric: Metric, splits: tuple[Any, Any]) -> None:
        out = self.compute(metric, splits, self.good_samples(splits[0], self.n))
        assert isinstance(out, dict) and out, "compute returns a non-empty dict"
        for key, value in out.items():
            assert isinstance(key, str)
            assert type(value) is float, f"{key}: {type(value).__name__}, not a plain float"
            assert math.isfinite(value), f"{key} = {value}"
        if self.keys:
            assert set(out) == set(self.keys), sorted(out)
        assert set(metric.lower_is_better) <= set(out), "every key of lower_is_better is returned"

    def test_deterministic_for_a_seed(self, registry: Any, splits: tuple[Any, Any]) -> None:
        samples = self.good_samples(splits[0], self.n)
        first = self.compute(self.make_metric(registry), splits, samples)
        second = self.compute(self.make_metric(registry), splits, samples.clone())
        assert first == second

    def test_scores_data_better_than_far_samples(self, metric: Metric, splits: tuple[Any, Any]) -> None:
        if not self.orders_samples or not metric.lower_is_better:
            pytest.skip("the metric does not order samples by closeness to the data")
        good = self.compute(metric, splits, self.good_samples(splits[0], self.n))
        bad = self.compute(metric, splits, self.bad_samples(splits[0], self.n))
        for key, lower in metric.lower_is_better.items():
            better = good[key] < bad[key] if lower else good[key] > bad[key]
            assert better, f"{key}: data samples {good[key]:.4g}, far samples {bad[key]:.4g}"
