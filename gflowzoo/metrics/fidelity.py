"""The glue to torch-fidelity: the one module of gflowzoo that imports it.

torch-fidelity does the work: it runs the feature extractor over ``torch.utils.data.Dataset`` objects of bare
``uint8`` ``[3, H, W]`` tensors (``get_featuresdict_from_dataset``) and computes FID, KID, IS and precision/recall
from features (``fid_statistics_to_metric``, ``kid_features_to_metric``, ``isc_features_to_metric``,
``prc_features_to_metric``). gflowzoo adds what it needs around that:

* samples in model units ``[-1, 1]`` become ``uint8`` with grey images replicated to 3 channels (:func:`to_uint8`);
* features are extracted once per input and shared by all metrics, and cast to ``float64`` before any metric
  arithmetic (the cubic KID kernel sums about 10^6 terms per subset);
* ``cuda`` follows the evaluation device (torch-fidelity defaults to CUDA);
* KID's subset size is lowered, with a warning, when there are fewer samples (torch-fidelity raises instead);
* gflowzoo's own extractors are registered with ``register_feature_extractor`` as classes, once per name.

The torch-fidelity API used here is that of 0.4 (``torch_fidelity.utils``, ``torch_fidelity.metric_*``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from torch import Tensor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from ..errors import PluginError, UserError
from ..interfaces import FeatureExtractor
from ..paths import file_sha256

FIDELITY_VERSION = torch_fidelity.__version__


def to_uint8(x: Tensor) -> Tensor:
    """Model-unit images ``[N, C, H, W]`` in ``[-1, 1]`` -> ``uint8 [N, 3, H, W]`` (grey replicated to RGB).

    ``round((x + 1) * 127.5)`` clamped to ``[0, 255]``: exact for data that came from ``uint8`` (the data sets map
    ``v -> v / 127.5 - 1``)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"Image metrics take images [N, 1 or 3, H, W]; got {list(x.shape)}.")
    u = ((x.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return u.expand(-1, 3, -1, -1).contiguous() if u.shape[1] == 1 else u.contiguous()


class Uint8Images(torch.utils.data.Dataset):
    """A ``Dataset`` of bare ``uint8 [3, H, W]`` tensors, the input torch-fidelity expects."""

    def __init__(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Uint8Images needs uint8 [N, 3, H, W]; got {images.dtype} {list(images.shape)}")
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


class ClassifierFeatures(FeatureExtractorBase):
    """torch-fidelity feature extractor for gflowzoo's own classifiers (:mod:`gflowzoo.metrics.classifier`).

    Provides ``"penultimate"`` (FID/KID/PRC) and ``"logits"`` (IS). Input: ``uint8 [B, 3, H, W]``; networks trained
    on grey data read the channel mean (the three channels are equal for grey images)."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name, features_list)
        vassert(feature_extractor_weights_path is not None, f"{name} needs feature_extractor_weights_path")
        from .classifier import load_classifier

        self.net, _ = load_classifier(feature_extractor_weights_path)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("penultimate", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "penultimate"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> None:
        return None

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting a uint8 image batch")
        vassert(x.dim() == 4 and x.shape[1] == 3, f"Input is not Bx3xHxW: {tuple(x.shape)}")
        c, h, w = self.net.in_shape
        vassert(tuple(x.shape[2:]) == (h, w), f"{self.name} takes {h}x{w} images, got {tuple(x.shape[2:])}")
        xf = x.float().div(127.5).sub(1.0)
        if c == 1:
            xf = xf.mean(1, keepdim=True)
        feats, logits = self.net(xf)
        out = {"penultimate": feats, "logits": logits}
        return tuple(out[k] for k in self.features_list)


def ensure_registered(name: str, cls: type) -> None:
    """Register ``cls`` with torch-fidelity under ``name`` once per process (a second call is a no-op; another
    class under the same name is an error)."""
    existing = FEATURE_EXTRACTORS_REGISTRY.get(name)
    if existing is None:
        torch_fidelity.register_feature_extractor(name, cls)
    elif existing is not cls:
        raise PluginError(f"torch-fidelity already has a different feature extractor named {name!r} ({existing}).")


class FeatureRuntime:
    """A loaded feature extractor: turns model-unit images into ``float64`` features by layer.

    Args:
        extractor: the gflowzoo :class:`~gflowzoo.metrics.extractors.FeatureExtractor`.
        weights: its resolved weights file.
        device: ``"cpu"`` or ``"cuda[:N]"`` (passed to torch-fidelity as ``cuda=...``).
        batch_size: images per forward pass.
    """

    def __init__(self, extractor: FeatureExtractor, weights: Path, device: str = "cpu", batch_size: int | None = None):
        self.extractor = extractor
        self.weights = Path(weights)
        self.sha256 = file_sha256(self.weights)
        self.cuda = str(device).startswith("cuda")
        self.device = device
        self.batch_size = batch_size or (64 if extractor.fidelity_class() is None else 500)
        cls = extractor.fidelity_class()
        if cls is not None:
            ensure_registered(extractor.fidelity_name, cls)
        layers = [extractor.feature_layer] + ([extractor.logits_layer] if extractor.logits_layer else [])
        self.layers = layers
        kwargs = dict(extractor.fidelity_kwargs(self.weights), verbose=False)
        if self.cuda and ":" in str(device):
            torch.cuda.set_device(torch.device(device))
        self.module = create_feature_extractor(extractor.fidelity_name, layers, cuda=self.cuda, **kwargs)

    def describe(self) -> dict[str, Any]:
        """The extractor's part of an evaluation protocol."""
        return {
            "name": self.extractor.name,
            "weights": str(self.weights),
            "sha256": self.sha256,
            "feature_layer": self.extractor.feature_layer,
            "logits_layer": self.extractor.logits_layer,
            "torch_fidelity": FIDELITY_VERSION,
        }

    def extract(self, x: Tensor, chunk: int = 5000) -> dict[str, Tensor]:
        """Features of model-unit images ``x`` ``[N, C, H, W]``: ``{layer: float64 [N, D]}`` on the CPU."""
        self.extractor.check_shape(tuple(x.shape[1:]))
        parts: dict[str, list[Tensor]] = {k: [] for k in self.layers}
        for start in range(0, len(x), chunk):
            ds = Uint8Images(to_uint8(x[start : start + chunk]))
            feats = get_featuresdict_from_dataset(ds, self.module, self.batch_size, self.cuda, True, False)
            for k in self.layers:
                parts[k].append(feats[k].double().cpu())
        return {k: torch.cat(v) for k, v in parts.items()}


# ---------------------------------------------------------------------------------------------------------------
# metrics from features (torch-fidelity's functions, float64 in)
# ---------------------------------------------------------------------------------------------------------------

Warn = Callable[[str], None]

#: numpy work on matrices with at most this many rows runs with one BLAS thread (see :func:`blas_threads_for`)
SMALL_BLAS = 512


@contextlib.contextmanager
def blas_threads_for(rows: int) -> Iterator[None]:
    """Run torch-fidelity's numpy metric code on one BLAS thread when the matrices are small (``rows`` <=
    :data:`SMALL_BLAS`): there, a multi-threaded BLAS spends more time waking its threads than computing, and on a
    busy machine it can be 10-20 times slower (measured: KID with 100 subsets of 120, 4 s instead of 0.2 s)."""
    if rows > SMALL_BLAS:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def kid(f_gen: Tensor, f_ref: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
        warn: Warn | None = None) -> tuple[float, float]:
    """Kernel Inception Distance (unbiased MMD² with ``k(a, b) = (<a, b>/D + 1)^3``): ``(mean, std)`` over
    ``subsets`` random subsets.

    ``f_gen`` ``[N, D]`` and ``f_ref`` ``[M, D]`` (cast to float64). Subsets follow torch-fidelity: a
    ``numpy.random.RandomState(seed)`` draws, for each subset in turn, ``choice(N, m, replace=False)`` for the
    generated and then ``choice(M, m, replace=False)`` for the reference features. ``m = subset_size`` is lowered to
    ``min(N, M)`` (with a warning) when there are fewer samples. ``std`` is the population standard deviation of
    the subset estimates.
    """
    m = min(int(subset_size), len(f_gen), len(f_ref))
    if m < 2:
        raise UserError(f"KID needs at least 2 samples on each side; got {len(f_gen)} and {len(f_ref)}.")
    if m < subset_size and warn is not None:
        warn(f"KID subset size lowered from {subset_size} to {m} (only {len(f_gen)} generated and "
             f"{len(f_ref)} reference samples); KID values are comparable only at equal subset sizes.")
    with blas_threads_for(m):
        out = kid_features_to_metric(f_gen.double().cpu(), f_ref.double().cpu(), kid_subsets=int(subsets),
                                     kid_subset_size=m, rng_seed=int(seed), verbose=False)
    return out[torch_fidelity.KEY_METRIC_KID_MEAN], out[torch_fidelity.KEY_METRIC_KID_STD]


def fid_statistics(f: Tensor) -> dict[str, Any]:
    """``{"mu": [D], "sigma": [D, D]}`` (numpy float64) of features ``[N, D]``."""
    if len(f) < 2:
        raise UserError(f"FID needs at least 2 samples; got {len(f)}.")
    return fid_features_to_statistics(f.double().cpu())


def fid(f_gen: Tensor, f_ref: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to ``f_gen`` ``[N, D]`` and ``f_ref`` ``[M, D]``."""
    with blas_threads_for(f_gen.shape[1]):
        out = fid_statistics_to_metric(fid_statistics(f_gen), fid_statistics(f_ref), False)
    return float(out[torch_fidelity.KEY_METRIC_FID])


def inception_score(logits: Tensor, splits: int = 10, seed: int = 0, warn: Warn | None = None) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` from logits ``[N, K]``: ``(mean, std)`` over ``splits``
    chunks of a seeded shuffle (torch-fidelity's ``isc_features_to_metric``)."""
    s = min(int(splits), len(logits))
    if s < 1:
        raise UserError("The Inception Score needs at least one sample.")
    if s < splits and warn is not None:
        warn(f"Inception Score splits lowered from {splits} to {s} (only {len(logits)} samples).")
    out = isc_features_to_metric(logits.double().cpu(), s, True, int(seed))
    return out[torch_fidelity.KEY_METRIC_ISC_MEAN], out[torch_fidelity.KEY_METRIC_ISC_STD]


def precision_recall(f_gen: Tensor, f_ref: Tensor, neighborhood: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with ``k = neighborhood`` nearest-neighbour balls:
    ``{"precision", "recall", "f_score"}``."""
    if min(len(f_gen), len(f_ref)) <= neighborhood:
        raise UserError(f"Precision/recall with k={neighborhood} needs more than {neighborhood} samples per side.")
    out = prc_features_to_metric(f_gen.double().cpu(), f_ref.double().cpu(), prc_neighborhood=int(neighborhood),
                                 prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    return {k: float(out[k]) for k in ("precision", "recall", "f_score")}
