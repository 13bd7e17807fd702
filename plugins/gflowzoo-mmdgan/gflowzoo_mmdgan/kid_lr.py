"""The KID-driven adaptive learning rate of Binkowski et al. (2018, Sec. 5 / the ``MMD_lr_scheduler`` of their code),
re-implemented for gflowzoo.

Every ``every`` generator steps the current generator is compared with the one ``lookback`` evaluations earlier
by a relative-similarity (3-sample) test on the Kernel Inception Distance; when the newer model is not
significantly closer to the data ``patience`` times in a row, the learning rate is multiplied by ``decay``
(floor ``min_lr``).

Features. The official code uses Inception pool-3 features. gflowzoo cannot download weights at run time and the
schedule must also work on 2-D toys, so the features come from a **fixed random network** (a DCGAN encoder without
BatchNorm for images, an MLP for points; PyTorch's default initialisation from a fixed seed, outputs standardised
by the mean and std of the reference features). Not the current critic: the critic moves during training, so
the KID of an old evaluation and of the current one would be measured in different feature spaces, and it is
trained adversarially against the *current* generator, which biases the comparison towards "no improvement".
A fixed net makes every evaluation comparable, like Inception does, and lets us store only numbers.

Test. The reference features (``n`` training samples fixed by a seed) are split into ``blocks`` disjoint blocks;
each evaluation stores the unbiased KID (cubic polynomial kernel ``(<a, b>/D + 1)^3``, :class:`gflowzoo.kernels.
PolyKernel` with :func:`gflowzoo.divergences.mmd2`) of each block against a block of ``n / blocks`` generated
samples. The new and the old evaluation share the reference blocks, so the per-block differences
``d_b = KID_b(new) - KID_b(old)`` are paired; ``t = mean(d) / (std(d) / sqrt(blocks))`` and ``p = Phi(t)``. As in
the code, ``p > p_threshold`` (0.1) counts as a failure to improve. This replaces the official U-statistic variance
of the 3-sample test with a block (jackknife-style) variance estimate; it needs only ``blocks`` numbers per
evaluation, so the memory costs nothing in checkpoints.

Memory (our reading of the code): each evaluation is appended; with fewer than ``lookback + 1`` entries nothing
is tested; after a decay only the last 3 entries (at most ``lookback``) are kept and the failure count restarts; otherwise the oldest
entry is dropped so the comparison is always with the evaluation ``lookback`` steps back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gflowzoo.api import MLP, DCGANEncoder, PolyKernel, mmd2

__all__ = ["KIDLearningRate", "block_kids", "kid_unbiased", "paired_p_value"]

_FEATURE_SEED = 20180101  # fixed: the feature net and reference set never change between runs or evaluations
_REFERENCE_SEED = 1801


def kid_unbiased(real: Tensor, fake: Tensor) -> Tensor:
    """Unbiased KID (squared MMD with the cubic kernel ``(<a, b>/D + 1)^3``, diagonals of the within-set Gram
    matrices dropped, full cross term) between features ``real`` ``[n, D]`` and ``fake`` ``[m, D]``; a scalar."""
    return mmd2(real, fake, PolyKernel(degree=3, gamma=None, coef0=1.0), "unbiased")


def block_kids(real: Tensor, fake: Tensor, blocks: int) -> Tensor:
    """Unbiased KID of each of ``blocks`` disjoint, aligned blocks of ``real`` and ``fake`` (``[n, D]`` each, block
    size ``n // blocks``); returns ``[blocks]`` (float64)."""
    size = min(len(real), len(fake)) // blocks
    if size < 2:
        raise ValueError(f"need at least 2 samples per block; got {min(len(real), len(fake))} for {blocks} blocks")
    r, f = real.double(), fake.double()
    return torch.stack([kid_unbiased(r[b * size : (b + 1) * size], f[b * size : (b + 1) * size]) for b in range(blocks)])


def paired_p_value(new: Tensor, old: Tensor) -> float:
    """``Phi(t)`` of the paired t statistic of ``new - old`` (``[B]`` each): near 1 when ``new`` is clearly
    larger (worse), near 0 when clearly smaller (better), 0.5 when they are equal."""
    d = (new - old).double()
    sd = float(d.std(unbiased=True)) if len(d) > 1 else 0.0
    mean = float(d.mean())
    if sd == 0.0:
        return 0.5 if mean == 0.0 else (1.0 if mean > 0 else 0.0)
    t = mean / (sd / math.sqrt(len(d)))
    return 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))


class KIDLearningRate:
    """Adaptive learning rate driven by a KID 3-sample test (see the module docstring).

    Args:
        shape: per-sample data shape ``*S``; ``kind``: ``"image"`` or ``"points"``.
        every: evaluate after every ``every`` generator steps.
        n: generated (and reference) samples per evaluation.
        blocks: blocks of the paired test.
        lookback: compare with the evaluation this many evaluations earlier (10 in the code).
        patience: failures in a row before a decay (3).
        decay: learning-rate factor (0.5); ``min_lr``: the floor (1e-6).
        p_threshold: ``p > p_threshold`` is a failure to improve (0.1).
        feature_dim: size of the random features.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        kind: str,
        every: int = 2000,
        n: int = 1000,
        blocks: int = 10,
        lookback: int = 10,
        patience: int = 3,
        decay: float = 0.5,
        min_lr: float = 1e-6,
        p_threshold: float = 0.1,
        feature_dim: int = 128,
    ) -> None:
        self.shape, self.kind = tuple(shape), kind
        self.every, self.n, self.blocks = int(every), int(n), int(blocks)
        self.lookback, self.patience = int(lookback), int(patience)
        self.decay, self.min_lr, self.p_threshold = float(decay), float(min_lr), float(p_threshold)
        self.feature_dim = int(feature_dim)
        self.memory: list[list[float]] = []
        self.failures = 0
        self.decays = 0
        self._net: Any = None
        self._ref: Tensor | None = None
        self._stats: tuple[Tensor, Tensor] | None = None

    # -- fixed features --------------------------------------------------------------------------------------------
    def _feature_net(self, device: torch.device) -> Any:
        if self._net is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_FEATURE_SEED)
                if self.kind == "image":
                    net = DCGANEncoder(self.shape, self.feature_dim, ndf=32, batchnorm=False)
                    for m in net.modules():  # PyTorch's default init: features are far from linear
                        if hasattr(m, "reset_parameters") and m is not net:
                            m.reset_parameters()
                else:
                    net = MLP(math.prod(self.shape), self.feature_dim, (256, 256), "relu", "none")
            self._net = net.eval().requires_grad_(False)
        return self._net.to(device)

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """Standardised random features ``[N, feature_dim]`` (CPU float64) of samples ``x`` ``[N, *S]``."""
        net = self._feature_net(x.device)
        f = torch.cat([net(x[i : i + 500]) for i in range(0, len(x), 500)]).double().cpu()
        if self._stats is not None:
            mean, std = self._stats
            f = (f - mean) / std
        return f

    def reference(self, train_set: Any, device: torch.device) -> Tensor:
        """Features of ``n`` training samples chosen by a fixed seed (computed once, never stored)."""
        if self._ref is None:
            g = torch.Generator().manual_seed(_REFERENCE_SEED)
            x = train_set.sample(self.n, g).to(device)
            self._stats = None
            raw = self.features(x)
            self._stats = (raw.mean(0), raw.std(0).clamp_min(1e-6))
            self._ref = (raw - self._stats[0]) / self._stats[1]
        return self._ref

    # -- the schedule ----------------------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether to evaluate after generator step ``step`` (0-based)."""
        return self.every > 0 and (step + 1) % self.every == 0

    def update(
        self,
        sample: Callable[[int], Tensor],
        train_set: Any,
        optimizers: list[torch.optim.Optimizer],
        device: torch.device,
    ) -> dict[str, float]:
        """Evaluate: ``sample(n)`` draws generated samples ``[n, *S]``; may multiply the learning rate of every
        param group of ``optimizers`` by ``decay``. Returns logs (``kid``, ``kid_p``, ``lr``)."""
        ref = self.reference(train_set, device)
        kids = block_kids(ref, self.features(sample(self.n).to(device)), self.blocks)
        logs = {"kid": float(kids.mean())}
        self.memory.append([float(v) for v in kids])
        if len(self.memory) > self.lookback:
            p = paired_p_value(kids, torch.tensor(self.memory[0], dtype=torch.float64))
            logs["kid_p"] = p
            self.failures = self.failures + 1 if p > self.p_threshold else 0
            if self.failures >= self.patience:
                for opt in optimizers:
                    for group in opt.param_groups:
                        group["lr"] = max(group["lr"] * self.decay, self.min_lr)
                self.memory = self.memory[-min(3, self.lookback) :]
                self.failures = 0
                self.decays += 1
            else:
                self.memory = self.memory[1:]
        logs["lr"] = float(optimizers[0].param_groups[0]["lr"]) if optimizers else float("nan")
        return logs

    def state_dict(self) -> dict[str, Any]:
        """The test memory (numbers only) and the counters."""
        return {"memory": [list(m) for m in self.memory], "failures": self.failures, "decays": self.decays}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.memory = [list(map(float, m)) for m in state["memory"]]
        self.failures = int(state["failures"])
        self.decays = int(state["decays"])
