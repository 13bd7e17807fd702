"""The built-in metrics and feature extractors against the reusable contracts of :mod:`gflowzoo.testing`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from gflowzoo.api import Metric, hookimpl
from gflowzoo.data import open_dataset
from gflowzoo.metrics.extractors import ClassifierExtractor
from gflowzoo.plugins import temporary_plugin
from gflowzoo.testing import FeatureExtractorContract, MetricContract

# -- 2-D metrics -----------------------------------------------------------------------------------------------------


class TestMMDMetric(MetricContract):
    metric_name = "mmd"
    keys = ("mmd",)


class TestEnergyMetric(MetricContract):
    metric_name = "energy"
    keys = ("energy",)


class TestSlicedWassersteinMetric(MetricContract):
    metric_name = "swd"
    options = {"projections": 64}
    keys = ("swd",)


class TestModesCoveredMetric(MetricContract):
    metric_name = "modes"
    keys = ("modes", "modes_total")


class TestHighQualityMetric(MetricContract):
    metric_name = "hq"
    dataset = "toy-25gaussians"
    keys = ("hq",)


class TestNearestTrainingMetricPoints(MetricContract):
    metric_name = "nn"
    options = {"n": 200, "real_n": 200}
    keys = ("nn_train", "nn_real", "nn_ratio", "nn_copies")


class TestNearestTrainingMetricImages(MetricContract):
    metric_name = "nn"
    data_kind = "image"
    options = {"real_n": 300}
    keys = ("nn_train", "nn_real", "nn_ratio", "nn_copies")


# -- image metrics (features of a stand-in extractor) ----------------------------------------------------------------


class TestKIDMetric(MetricContract):
    metric_name = "kid"
    options = {"subsets": 10, "subset_size": 100}
    keys = ("kid", "kid_std")


class TestFIDMetric(MetricContract):
    metric_name = "fid"
    keys = ("fid",)


class TestInceptionScoreMetric(MetricContract):
    metric_name = "is"
    options = {"splits": 4}
    keys = ("is", "is_std")
    orders_samples = False  # the stand-in's logits are random projections: no notion of a good image


class TestPrecisionRecallMetric(MetricContract):
    metric_name = "prc"
    keys = ("precision", "recall", "f_score")


# -- feature extractors trained by gflowzoo (random weights written for the test: no training) ----------------------


class ClassifierExtractorContract(FeatureExtractorContract):
    """The gflowzoo-trained classifiers, with an untrained network of their architecture as the weights file."""

    def prepare(self, tmp_path: Path) -> dict[str, Any]:
        from gflowzoo.metrics.classifier import SPECS, build_net, save_classifier

        spec = SPECS[self.extractor_name]
        torch.manual_seed(0)
        path = save_classifier(build_net(spec.arch), spec, tmp_path / f"{self.extractor_name}.pt")
        return {"weights": str(path)}


class TestNetDigitsExtractor(ClassifierExtractorContract):
    extractor_name = "net-digits"
    in_shape = (1, 8, 8)


class TestLeNetMNISTExtractor(ClassifierExtractorContract):
    extractor_name = "lenet-mnist"
    in_shape = (1, 28, 28)


class TestLeNetFashionMNISTExtractor(ClassifierExtractorContract):
    extractor_name = "lenet-fashion-mnist"
    in_shape = (1, 28, 28)


class TestNetCifar10Extractor(ClassifierExtractorContract):
    extractor_name = "net-cifar10"
    in_shape = (3, 32, 32)


# -- the contracts catch broken components ---------------------------------------------------------------------------


class _TensorMetric(Metric):
    """Returns a tensor instead of a float, and a different value on every call."""

    data_kinds = ("points",)
    lower_is_better = {"bad": True}

    def compute(self, ctx: Any) -> dict[str, float]:
        return {"bad": torch.rand(())}  # type: ignore[dict-item]


class _NamelessExtractor(ClassifierExtractor):
    """Reports another name than the one it is registered under."""

    def __init__(self, weights: str = "") -> None:
        super().__init__("net-digits", weights)


class _BrokenPlugin:
    @hookimpl
    def gflowzoo_register(self, register):
        register("metric", "broken-metric", _TensorMetric, "a metric that returns tensors")
        register("feature-extractor", "broken-extractor", _NamelessExtractor, "an extractor with a wrong name")


def test_contracts_catch_broken_metrics_and_extractors(tmp_path, monkeypatch):
    class Metric_(MetricContract):
        metric_name = "broken-metric"

    class Extractor_(TestNetDigitsExtractor):
        extractor_name = "broken-extractor"

    with temporary_plugin(_BrokenPlugin(), "broken") as state:
        case = Metric_()
        metric = case.make_metric(state.registry)
        splits = tuple(open_dataset("toy-8gaussians", s, None, state.registry) for s in ("train", "test"))
        with pytest.raises(AssertionError, match="not a plain float"):
            case.test_returns_finite_floats_under_declared_keys(metric, splits)
        with pytest.raises(AssertionError):
            case.test_deterministic_for_a_seed(state.registry, splits)
        ext_case = Extractor_()
        monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "cache"))
        weights = TestNetDigitsExtractor().prepare(tmp_path)
        ext = state.registry.create("feature-extractor", {"name": "broken-extractor", **weights})
        with pytest.raises(AssertionError, match="registry name"):
            ext_case.test_builds_through_registry(state.registry, ext)
