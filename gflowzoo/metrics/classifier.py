"""Small classifier networks that gflowzoo trains itself, to serve as feature extractors for FID/KID on small data.

The features for FID, KID and precision/recall are the penultimate layer (after its ReLU); the Inception Score
uses the logits. A trained network is saved as a plain-data file (tensors, dicts, numbers, strings) that loads with
``torch.load(weights_only=True)``::

    {"format": "gflowzoo-extractor", "format_version": 1, "name": "lenet-mnist", "dataset": "mnist",
     "arch": {...}, "recipe": {...}, "state": <state_dict>, "test_accuracy": 0.992, "train_seconds": 95.1, ...}

Every network is rebuilt from its ``arch`` table alone, so a file is self-describing.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, DataError

FORMAT = "gflowzoo-extractor"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ClassifierSpec:
    """What to build and how to train it.

    ``arch``: ``in_shape`` ``[C, H, W]``, ``convs`` (a list of ``[channels, pool_after]``: 3x3 conv + BatchNorm +
    ReLU, then 2x2 max-pooling when ``pool_after``), ``hidden`` (size of the penultimate feature layer),
    ``num_classes``. ``recipe``: ``epochs``, ``batch_size``, ``lr`` (AdamW with a cosine decay), ``weight_decay``,
    ``augment`` (``"none"``, ``"shift"``: random shifts by up to 1 pixel, ``"crop-flip"``: 4-pixel padded random
    crops and horizontal flips), ``seed``.
    """

    name: str
    dataset: str
    arch: dict[str, Any]
    recipe: dict[str, Any] = field(default_factory=dict)

    def with_recipe(self, **changes: Any) -> ClassifierSpec:
        """A copy with some recipe entries changed (``None`` values are ignored)."""
        recipe = dict(self.recipe)
        recipe.update({k: v for k, v in changes.items() if v is not None})
        return ClassifierSpec(self.name, self.dataset, self.arch, recipe)

    def recipe_hash(self) -> str:
        """8 hex digits identifying the architecture, training recipe and data set (part of the file name)."""
        blob = json.dumps({"dataset": self.dataset, "arch": self.arch, "recipe": self.recipe}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


_BASE_RECIPE = {"epochs": 4, "batch_size": 128, "lr": 2e-3, "weight_decay": 5e-4, "augment": "none", "seed": 0}
_LENET = {"in_shape": [1, 28, 28], "convs": [[32, True], [64, True]], "hidden": 128, "num_classes": 10}

SPECS: dict[str, ClassifierSpec] = {
    "net-digits": ClassifierSpec(
        "net-digits", "digits",
        {"in_shape": [1, 8, 8], "convs": [[16, False], [32, True]], "hidden": 128, "num_classes": 10},
        {**_BASE_RECIPE, "epochs": 20, "batch_size": 64, "augment": "shift"},
    ),
    "lenet-mnist": ClassifierSpec("lenet-mnist", "mnist", _LENET, dict(_BASE_RECIPE)),
    "lenet-fashion-mnist": ClassifierSpec(
        "lenet-fashion-mnist", "fashion-mnist", _LENET, {**_BASE_RECIPE, "epochs": 10}
    ),
    "net-cifar10": ClassifierSpec(
        "net-cifar10", "cifar10",
        {"in_shape": [3, 32, 32], "convs": [[64, False], [64, True], [128, False], [128, True], [256, True]],
         "hidden": 256, "num_classes": 10},
        {**_BASE_RECIPE, "epochs": 30, "augment": "crop-flip"},
    ),
}


class SmallConvNet(nn.Module):
    """A plain conv net: ``[3x3 conv, BatchNorm, ReLU, (2x2 max-pool)] * k``, then ``Linear -> ReLU`` (the
    features) and ``Linear`` (the logits).

    The returned features are multiplied by ``feature_scale``, a constant fixed after training so that their mean
    square is 1 on the training split: KID's kernel ``(<a, b>/D + 1)^3`` then sees inputs of order one, as with
    Inception's pool features, instead of values that depend on the arbitrary scale a network happened to learn.

    ``forward(x)`` takes ``[N, C, H, W]`` floats in ``[-1, 1]`` and returns ``(features [N, hidden],
    logits [N, num_classes])``.
    """

    def __init__(self, in_shape: list[int], convs: list[list[Any]], hidden: int, num_classes: int) -> None:
        super().__init__()
        c, h, w = (int(v) for v in in_shape)
        layers: list[nn.Module] = []
        for channels, pool in convs:
            layers += [nn.Conv2d(c, int(channels), 3, padding=1), nn.BatchNorm2d(int(channels)), nn.ReLU(inplace=True)]
            c = int(channels)
            if pool:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.body = nn.Sequential(*layers)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, int(hidden)), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.25)
        self.head = nn.Linear(int(hidden), int(num_classes))
        self.in_shape = (int(in_shape[0]), int(in_shape[1]), int(in_shape[2]))
        # a constant set after training so that the mean squared feature is 1 on the training split
        self.register_buffer("feature_scale", torch.ones(()))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.features(self.body(x))
        return f * self.feature_scale, self.head(self.dropout(f))


def build_net(arch: dict[str, Any]) -> SmallConvNet:
    """A :class:`SmallConvNet` from an ``arch`` table (see :class:`ClassifierSpec`)."""
    return SmallConvNet(arch["in_shape"], arch["convs"], arch["hidden"], arch["num_classes"])


def load_classifier(path: str | Path) -> tuple[SmallConvNet, dict[str, Any]]:
    """Load a saved classifier (``weights_only=True``); returns the network in eval mode and the file's payload."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Feature extractor weights not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise CheckpointError(
            f"{path} is not a readable gflowzoo extractor file ({type(exc).__name__}: {exc})."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gflowzoo extractor file (format {FORMAT!r}).")
    net = build_net(payload["arch"])
    net.load_state_dict(payload["state"])
    return net.eval(), payload


# ---------------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------------


def _as_uint8(ds: Any, batch: int = 4096) -> tuple[Tensor, Tensor]:
    """All images of a data set as ``uint8 [N, C, H, W]`` and its labels ``int64 [N]``."""
    labels = getattr(ds, "labels", None)
    if labels is None:
        raise DataError(f"Data set {ds.name!r} ({ds.split}) has no labels; a classifier cannot be trained on it.")
    array = getattr(ds, "array", None)
    if array is not None:
        import numpy as np

        x = torch.from_numpy(np.array(array, dtype=np.uint8, copy=True))  # a writable copy of a memory map
    else:
        parts = []
        for start in range(0, len(ds), batch):
            xb = ds.get(torch.arange(start, min(start + batch, len(ds))))
            parts.append(((xb + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
        x = torch.cat(parts)
    return x, torch.as_tensor(labels, dtype=torch.long)


def _augment(x: Tensor, mode: str, gen: torch.Generator) -> Tensor:
    """Random shifts / crops / flips of a float batch ``[B, C, H, W]`` (same shape out)."""
    if mode == "none":
        return x
    b, _, h, w = x.shape
    pad = 1 if mode == "shift" else 4
    xp = nn.functional.pad(x, (pad, pad, pad, pad), value=-1.0)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # [B, H]
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # [B, W]
    out = xp[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2)
    if mode == "crop-flip":
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


def accuracy(net: SmallConvNet, x: Tensor, y: Tensor, device: str | torch.device, batch: int = 1000) -> float:
    """Top-1 accuracy of ``net`` on ``uint8`` images ``x`` ``[N, C, H, W]`` with labels ``y`` ``[N]``."""
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = x[start : start + batch].to(device).float().div_(127.5).sub_(1.0)
            correct += int((net(xb)[1].argmax(1).cpu() == y[start : start + batch]).sum())
    return correct / max(len(x), 1)


def _mean_square_features(net: SmallConvNet, x: Tensor, device: str | torch.device, batch: int = 1000) -> float:
    """Mean of the squared (unscaled) features over uint8 images ``x`` ``[N, C, H, W]``."""
    net.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = x[start : start + batch].to(device).float().div_(127.5).sub_(1.0)
            f = net.features(net.body(xb)).double()
            total += float(f.square().sum())
            count += f.numel()
    return total / max(count, 1)


@dataclass
class FitResult:
    """The outcome of :func:`fit_classifier`."""

    path: Path
    test_accuracy: float
    seconds: float
    epochs: int


def fit_classifier(
    spec: ClassifierSpec,
    train: Any,
    test: Any,
    path: str | Path,
    device: str | torch.device = "cpu",
    progress: Any = None,
) -> FitResult:
    """Train ``spec``'s network on the data set split ``train`` (a labelled :class:`gflowzoo.data.Dataset`), measure
    top-1 accuracy on ``test``, and save the file at ``path`` (atomically).

    ``progress(epoch, epochs, loss)`` is called after every epoch when given. Deterministic for a given seed on the
    CPU.
    """
    arch, recipe = spec.arch, spec.recipe
    x_train, y_train = _as_uint8(train)
    x_test, y_test = _as_uint8(test)
    want = tuple(int(v) for v in arch["in_shape"])
    if tuple(x_train.shape[1:]) != want:
        have = list(x_train.shape[1:])
        raise DataError(f"{spec.name} expects images of shape {list(want)}; {spec.dataset} has {have}.")
    t0 = time.perf_counter()
    torch.manual_seed(int(recipe["seed"]))
    gen = torch.Generator().manual_seed(int(recipe["seed"]))
    net = build_net(arch).to(device)
    epochs, bs = int(recipe["epochs"]), int(recipe["batch_size"])
    opt = torch.optim.AdamW(net.parameters(), lr=float(recipe["lr"]), weight_decay=float(recipe["weight_decay"]))
    steps_per_epoch = math.ceil(len(x_train) / bs)
    total = max(epochs * steps_per_epoch, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x_train), generator=gen)
        run_loss, seen = 0.0, 0
        for start in range(0, len(perm), bs):
            idx = perm[start : start + bs]
            xb = x_train[idx].to(device).float().div_(127.5).sub_(1.0)
            xb = _augment(xb, str(recipe["augment"]), gen)
            yb = y_train[idx].to(device)
            loss = loss_fn(net(xb)[1], yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
        if progress is not None:
            progress(epoch + 1, epochs, run_loss / max(seen, 1))
    net.feature_scale.fill_(1.0 / math.sqrt(max(_mean_square_features(net, x_train, device), 1e-12)))
    acc = accuracy(net, x_test, y_test, device)
    seconds = time.perf_counter() - t0
    save_classifier(net, spec, path, test_accuracy=float(acc), train_size=int(len(x_train)),
                    test_size=int(len(x_test)), train_seconds=float(seconds))
    return FitResult(Path(path), float(acc), float(seconds), epochs)


def save_classifier(net: SmallConvNet, spec: ClassifierSpec, path: str | Path, **facts: Any) -> Path:
    """Write ``net`` (built from ``spec.arch``) as an extractor file at ``path`` (atomically); ``facts`` (plain
    numbers and strings such as ``test_accuracy``) are stored alongside."""
    import io

    from .. import __version__
    from ..runs import atomic_write_bytes

    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "dataset": spec.dataset,
        "arch": spec.arch,
        "recipe": spec.recipe,
        "state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "gflowzoo_version": __version__,
        **facts,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
