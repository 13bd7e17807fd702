"""Evaluation metrics and image feature extractors (registry kinds ``metric`` and ``feature-extractor``).

* :mod:`gflowzoo.metrics.base`: the :class:`~gflowzoo.metrics.base.Metric` interface and the
  :class:`~gflowzoo.metrics.base.EvalContext` a metric reads its samples, reference data and features from.
* :mod:`gflowzoo.metrics.toy`: 2-D metrics (unbiased MMD², energy distance, sliced Wasserstein-2, modes covered,
  fraction of high-quality samples).
* :mod:`gflowzoo.metrics.image`: FID, KID, Inception Score and precision/recall, computed by torch-fidelity from
  features of a named extractor.
* :mod:`gflowzoo.metrics.extractors`: the extractor interface, Inception-v3 (offline weight resolution) and the
  small classifiers gflowzoo trains itself (:mod:`gflowzoo.metrics.classifier`).
* :mod:`gflowzoo.metrics.fidelity`: the only module that talks to torch-fidelity.
* :mod:`gflowzoo.metrics.reference`: reference samples and cached reference features of the real data.

Importing this package is light; the submodules import torch (and torch-fidelity) when they are used.
"""
