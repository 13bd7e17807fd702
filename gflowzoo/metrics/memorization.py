"""Do the samples copy the training set? Distances to the nearest training item, against real held-out data's.

A sampler that moves particles towards the data (an MMD flow, a nearest-neighbour-like critic) can score excellent
KID/FID by reproducing training images. The check: for every generated sample, the distance (in the data's own
space: pixels in model units, or 2-D coordinates) to its nearest training item; the same for real items the model
never saw (the evaluation's reference, a held-out split). A model that generalises sits near the real items'
distances (ratio about 1); a copying model sits far below (ratio towards 0, many samples closer to a training item
than almost any real held-out item is); a noisy or blurred model sits above.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from .base import EvalContext, Metric

__all__ = ["NearestTraining", "nearest_distances", "memorization_summary"]


def nearest_distances(x: Tensor, train: Any, block: int = 8192) -> Tensor:
    """Euclidean distance from every row of ``x`` ``[N, *S]`` to its nearest row of ``train`` (a tensor
    ``[M, *S]``, or an iterable of such tensors, e.g. a data set's batches), ``[N]`` float64.

    The squared distances come from ``|a|^2 + |b|^2 - 2 <a, b>`` in float64 block by block, so memory holds one
    ``[N, block]`` matrix whatever ``M`` is."""
    a = x.detach().reshape(len(x), -1).double()
    a2 = (a * a).sum(1, keepdim=True)
    best = torch.full((len(a),), float("inf"), dtype=torch.float64)
    parts = [train] if isinstance(train, Tensor) else train
    for part in parts:
        b_all = part.detach().reshape(len(part), -1).double()
        if b_all.shape[1] != a.shape[1]:
            raise ValueError(f"samples have {a.shape[1]} values each, training items {b_all.shape[1]}")
        for start in range(0, len(b_all), block):
            b = b_all[start : start + block]
            d2 = a2 + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
            best = torch.minimum(best, d2.min(1).values)
    return best.clamp_min(0.0).sqrt()


def memorization_summary(generated: Tensor, real: Tensor, copy_quantile: float = 0.01) -> dict[str, float]:
    """Summary of the nearest-training distances of ``generated`` and of real held-out items ``real`` (both
    ``[N]``): medians, their ratio, and the share of generated samples closer to a training item than the
    ``copy_quantile`` quantile of the real items' distances (about ``copy_quantile`` for a model that generalises,
    towards 1 for one that copies)."""
    gen_med = float(generated.median())
    real_med = float(real.median())
    threshold = float(torch.quantile(real.double(), copy_quantile))
    return {
        "nn_train": gen_med,
        "nn_real": real_med,
        "nn_ratio": gen_med / real_med if real_med > 0 else float("inf"),
        "nn_copies": float((generated < threshold).double().mean()),
    }


class NearestTraining(Metric):
    """Memorisation check: median distance from each sample to its nearest training item (``nn_train``), the same
    for real held-out items (``nn_real``: items of the test split, which the model never saw), their ratio
    ``nn_ratio`` (about 1: like unseen real data; towards 0: copies of the training set; above 1: farther from the
    data than real items, e.g. noisy or blurred samples), and ``nn_copies``, the share of samples closer to a
    training item than all but ``copy_quantile`` of the real items. Distances are Euclidean in the data's own space
    (pixels in model units ``[-1, 1]``, or the points' coordinates in model units).

    Args:
        n: generated samples measured (the first ``n``; at most the evaluation's count).
        train_n: training items searched, the first of the split (0: all of it). A subset raises every distance a
            little, samples' and real items' alike, so the ratio stays comparable.
        real_n: real held-out items measured (at most the test split's size).
        copy_quantile: the quantile of the real items' distances below which a sample counts as a copy.
    """

    data_kinds = ("image", "points")
    lower_is_better: dict[str, bool] = {}  # informational: neither direction is "better" (see the class docs)

    def __init__(self, n: int = 1000, train_n: int = 0, real_n: int = 1000, copy_quantile: float = 0.01) -> None:
        if n < 1 or train_n < 0 or real_n < 2:
            raise UserError("nn: n must be >= 1, train_n >= 0 and real_n >= 2.")
        if not 0.0 < copy_quantile < 0.5:
            raise UserError(f"nn: copy_quantile must be in (0, 0.5); got {copy_quantile}.")
        self.max_samples, self.train_n, self.real_n = int(n), int(train_n), int(real_n)
        self.copy_quantile = float(copy_quantile)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        samples = ctx.samples[: self.max_samples]
        real = ctx.split_items("test", self.real_n)
        # one pass over the training split for samples and real items together
        d = nearest_distances(torch.cat([samples.reshape(len(samples), -1), real.reshape(len(real), -1)]),
                              ctx.split_batches("train", self.train_n or None))
        return memorization_summary(d[: len(samples)], d[len(samples):], self.copy_quantile)
