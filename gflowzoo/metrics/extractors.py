"""Image feature extractors by name (registry kind ``feature-extractor``).

An extractor names a network that torch-fidelity runs on ``uint8`` images, the layer FID/KID/precision-recall read
(``feature_layer``) and the layer the Inception Score reads (``logits_layer``), and knows where its weights file is.
The weights file's SHA-256 goes into every evaluation protocol.

* ``inception-v3-compat``: torch-fidelity's port of the TF 2015-12-05 Inception graph (the standard for published
  FID/KID numbers). Its weights are never downloaded by gflowzoo; see :class:`InceptionV3Compat`.
* ``net-digits``, ``lenet-mnist``, ``lenet-fashion-mnist``, ``net-cifar10``: small classifiers gflowzoo trains on
  the data set's training split (``gflowzoo extractor fit``) and caches under
  ``$GFLOWZOO_CACHE/extractors/`` (default ``~/.cache/gflowzoo/extractors/``) as ``<name>-<recipe hash>.pt``.

A plugin adds an extractor by subclassing :class:`~gflowzoo.interfaces.FeatureExtractor` (importable from here and
from :mod:`gflowzoo.api`) and registering it under kind ``feature-extractor``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, UserError
from ..paths import cache_root, file_sha256  # re-exported: callers import them from here too
from ..interfaces import FeatureExtractor  # the interface; also importable from here

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
INCEPTION_ENV = "GFLOWZOO_INCEPTION_WEIGHTS"


def extractor_dir() -> Path:
    """Where trained extractor networks are cached."""
    return cache_root() / "extractors"


Say = Callable[[str], None]


class InceptionV3Compat(FeatureExtractor):
    """torch-fidelity's ``inception-v3-compat`` (pool3 ``"2048"`` features, ``"logits_unbiased"`` for IS).

    The weights file (``weights-inception-2015-12-05-6726825d.pth``, about 95 MB) is looked for, in order, at:

    1. ``weights`` (the option; the CLI's ``--inception-weights`` / ``--extractor-weights``),
    2. ``$GFLOWZOO_INCEPTION_WEIGHTS``,
    3. torch's hub cache ``$TORCH_HOME/hub/checkpoints/`` (where torch-fidelity itself would cache it).

    gflowzoo never downloads it: without a file the evaluation stops at once with instructions. The file is opened
    with ``weights_only=True`` first, so a truncated file or one holding code is refused with a clear message.
    """

    name = "inception-v3-compat"
    fidelity_name = "inception-v3-compat"
    feature_layer = "2048"
    logits_layer = "logits_unbiased"

    def __init__(self, weights: str = "") -> None:
        self.weights = weights

    @staticmethod
    def hub_path() -> Path:
        """``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``."""
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE

    def candidates(self) -> list[tuple[str, Path]]:
        """``(where, path)`` in the order they are tried."""
        out = []
        if self.weights:
            out.append(("the weights option", Path(self.weights).expanduser()))
        env = os.environ.get(INCEPTION_ENV)
        if env:
            out.append((f"${INCEPTION_ENV}", Path(env).expanduser()))
        out.append(("the torch hub cache", self.hub_path()))
        return out

    def resolve_weights(self, *, fit_missing: bool = False, data_root: str | None = None, device: str = "cpu",
                        say: Say | None = None) -> Path:
        """See the class docstring. An explicitly given path that does not exist is an error (no fallback)."""
        cands = self.candidates()
        for where, path in cands:
            if path.is_file():
                self._validate(path)
                return path
            if where != "the torch hub cache":
                raise UserError(f"Inception-v3 weights file given by {where} does not exist: {path}")
        raise UserError(
            "The Inception-v3 weights for FID/KID/IS are not on this machine, and gflowzoo does not download them. "
            f"Download {INCEPTION_URL} on a machine with internet access and put it at {self.hub_path()} "
            f"(or anywhere, then pass --inception-weights PATH or set {INCEPTION_ENV}=PATH). "
            "For small data sets, a gflowzoo-trained extractor (--extractor net-digits, lenet-mnist) needs none."
        )

    @staticmethod
    def _validate(path: Path) -> None:
        import torch

        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"Inception-v3 weights file {path} cannot be read safely ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}); it may be truncated. "
                "Download it again."
            ) from None
        if not isinstance(sd, dict) or "fc.weight" not in sd:
            raise CheckpointError(f"{path} is not an Inception-v3 state dict (no 'fc.weight').")


class ClassifierExtractor(FeatureExtractor):
    """A small classifier trained by gflowzoo on a data set's training split (see
    :mod:`gflowzoo.metrics.classifier`): penultimate-layer features for FID/KID/PRC, logits for IS.

    Weights are looked for at ``weights`` (the option) or in the extractor cache: the file of the default recipe,
    else the newest ``<name>-*.pt``. ``auto_fit`` extractors (the tiny ``net-digits``) are trained on the spot when
    missing; the others stop with the command that trains them.
    """

    feature_layer = "penultimate"
    logits_layer = "logits"

    def __init__(self, name: str, weights: str = "", auto_fit: bool = False) -> None:
        from .classifier import SPECS

        self.spec = SPECS[name]
        self.name = name  # type: ignore[misc]
        self.fidelity_name = f"gflowzoo-{name}"
        self.weights = weights
        self.auto_fit = auto_fit

    def check_shape(self, shape: tuple[int, ...]) -> None:
        want = tuple(int(v) for v in self.spec.arch["in_shape"])
        if tuple(shape) != want:
            raise UserError(
                f"Feature extractor {self.name} takes images of shape {list(want)}; this data has {list(shape)}. "
                "Choose another with --extractor (see `gflowzoo list feature-extractor`)."
            )

    def default_path(self) -> Path:
        """``<cache>/extractors/<name>-<recipe hash>.pt`` for the default recipe."""
        return extractor_dir() / f"{self.name}-{self.spec.recipe_hash()}.pt"

    def find_cached(self) -> Path | None:
        """The default recipe's file if present, else the newest ``<name>-*.pt`` in the cache, else ``None``."""
        if self.default_path().is_file():
            return self.default_path()
        folder = extractor_dir()
        found = sorted(folder.glob(f"{self.name}-*.pt"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
        found = [p for p in found if p.stem[len(self.name) + 1 :].isalnum()]
        return found[-1] if found else None

    def fit_command(self, data_root: str | None = None) -> str:
        """The command line that trains this extractor."""
        root = f" --data-root {data_root}" if data_root else ""
        return f"gflowzoo extractor fit --dataset {self.spec.dataset}{root}"

    def resolve_weights(self, *, fit_missing: bool = False, data_root: str | None = None, device: str = "cpu",
                        say: Say | None = None) -> Path:
        """See the class docstring."""
        if self.weights:
            path = Path(self.weights).expanduser()
            if not path.is_file():
                raise UserError(f"Feature extractor weights not found: {path}")
            return path
        cached = self.find_cached()
        if cached is not None:
            return cached
        if fit_missing or self.auto_fit:
            if say:
                say(f"feature extractor {self.name} is not trained yet: training it on {self.spec.dataset} now "
                    f"(once; cached in {extractor_dir()})")
            res = fit_extractor(self.name, data_root=data_root, device=device, say=say)
            return res.path
        raise UserError(
            f"Feature extractor {self.name} has not been trained on this machine (looked in {extractor_dir()}). "
            f"Train it once with:  {self.fit_command(data_root)}   (a few minutes on a CPU), "
            "or pass --fit-extractor to train it now, or --extractor-weights PATH."
        )

    def fidelity_class(self) -> type | None:
        from .fidelity import ClassifierFeatures

        return ClassifierFeatures


def net_digits(weights: str = "") -> ClassifierExtractor:
    """Small conv net trained on the 8x8 ``digits`` (trained automatically when missing: seconds)."""
    return ClassifierExtractor("net-digits", weights, auto_fit=True)


def lenet_mnist(weights: str = "") -> ClassifierExtractor:
    """LeNet-style conv net trained on MNIST 1x28x28 (``gflowzoo extractor fit --dataset mnist``)."""
    return ClassifierExtractor("lenet-mnist", weights)


def lenet_fashion_mnist(weights: str = "") -> ClassifierExtractor:
    """LeNet-style conv net trained on Fashion-MNIST 1x28x28."""
    return ClassifierExtractor("lenet-fashion-mnist", weights)


def net_cifar10(weights: str = "") -> ClassifierExtractor:
    """VGG-style conv net trained on CIFAR-10 3x32x32 (a GPU job; minutes there)."""
    return ClassifierExtractor("net-cifar10", weights)


def extractor_for_dataset(dataset: str) -> str:
    """The gflowzoo-trained extractor whose training data is ``dataset``; a :class:`UserError` when none is."""
    from .classifier import SPECS

    for name, spec in SPECS.items():
        if spec.dataset == dataset:
            return name
    valid = ", ".join(sorted(s.dataset for s in SPECS.values()))
    raise UserError(f"No gflowzoo-trained feature extractor for data set {dataset!r}; there is one for: {valid}.")


def fit_extractor(
    name: str,
    *,
    data_root: str | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    device: str = "cpu",
    registry: Any = None,
    say: Say | None = None,
) -> Any:
    """Train the gflowzoo extractor ``name`` on its data set and cache it. Returns a
    :class:`gflowzoo.metrics.classifier.FitResult` (path, test accuracy, seconds)."""
    from ..data import open_dataset
    from .classifier import SPECS, fit_classifier

    spec = SPECS[name].with_recipe(epochs=epochs, seed=seed)
    train = open_dataset(spec.dataset, "train", data_root, registry)
    test = open_dataset(spec.dataset, "test", data_root, registry)
    path = extractor_dir() / f"{name}-{spec.recipe_hash()}.pt"

    def progress(epoch: int, total: int, loss: float) -> None:
        if say:
            say(f"  {name}: epoch {epoch}/{total}, training loss {loss:.4f}")

    return fit_classifier(spec, train, test, path, device=device, progress=progress)
