"""Image metrics computed by torch-fidelity from the features of the evaluation's feature extractor.

Features of the generated samples are extracted once per evaluation and shared by every metric; the reference
features come from the reference cache. Input 1 is always the generated set and input 2 the real one (torch-fidelity's
convention, which matters for precision/recall).
"""

from __future__ import annotations

from .base import EvalContext, Metric


class FID(Metric):
    """Fréchet distance between Gaussians fitted to generated and reference features (lower is better)."""

    data_kinds = ("image",)
    needs_features = True
    lower_is_better = {"fid": True}

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        from .fidelity import fid

        layer = ctx.feature_layer
        return {"fid": fid(ctx.features()[layer], ctx.reference_features()[layer])}


class KID(Metric):
    """Kernel Inception Distance: unbiased MMD² with the cubic polynomial kernel ``(<a, b>/D + 1)^3``, mean and
    standard deviation over random subsets (lower is better; may be slightly negative).

    Args:
        subsets: number of subsets.
        subset_size: samples per subset (lowered, with a warning, to the smaller sample count).
    """

    data_kinds = ("image",)
    needs_features = True
    lower_is_better = {"kid": True}

    def __init__(self, subsets: int = 100, subset_size: int = 1000) -> None:
        self.subsets, self.subset_size = int(subsets), int(subset_size)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        from .fidelity import kid

        layer = ctx.feature_layer
        mean, std = kid(ctx.features()[layer], ctx.reference_features()[layer], self.subsets, self.subset_size,
                        ctx.seed, ctx.warn)
        return {"kid": mean, "kid_std": std}


class InceptionScore(Metric):
    """Inception Score ``exp(E KL(p(y|x) || p(y)))`` from the extractor's logits, mean and standard deviation over
    splits (higher is better). With a gflowzoo-trained classifier it is the same formula on that classifier's
    classes (10 for digits, MNIST, CIFAR-10).

    Args:
        splits: number of splits.
    """

    data_kinds = ("image",)
    needs_features = True
    needs_logits = True
    lower_is_better = {"is": False}

    def __init__(self, splits: int = 10) -> None:
        self.splits = int(splits)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        from .fidelity import inception_score

        mean, std = inception_score(ctx.features()[ctx.logits_layer], self.splits, ctx.seed, ctx.warn)
        return {"is": mean, "is_std": std}


class PrecisionRecall(Metric):
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-nearest-neighbour balls in the extractor's
    feature space (higher is better). torch-fidelity uses VGG-16 features by default; gflowzoo uses the evaluation's
    extractor, so all image metrics of one evaluation share one feature space.

    Args:
        neighborhood: ``k`` of the k-NN balls.
    """

    data_kinds = ("image",)
    needs_features = True
    lower_is_better = {"precision": False, "recall": False, "f_score": False}

    def __init__(self, neighborhood: int = 3) -> None:
        self.neighborhood = int(neighborhood)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        from .fidelity import precision_recall

        layer = ctx.feature_layer
        return precision_recall(ctx.features()[layer], ctx.reference_features()[layer], self.neighborhood)
