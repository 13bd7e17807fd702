"""Evaluation: one protocol (metrics, sample count, seed, reference, feature extractor) applied to a trained method.

Used by ``gflowzoo evaluate`` (one run), by ``gflowzoo compare`` (every run with the same protocol) and during
training (``--eval-every K``: a cheap protocol, logged to ``metrics.jsonl``).

Defaults by data kind:

=============  ============================================  ================================================
data           ``evaluate`` / ``compare``                    during training
=============  ============================================  ================================================
2-D toys       mmd, energy, swd (+ modes, hq for mixtures),  mmd (+ modes for mixtures), n = 500
               n = 2,500 against the test split
digits         kid, fid with ``net-digits`` (trained on the  kid with ``net-digits``, n = 256
               spot when missing: seconds), n = 1,000
mnist          kid, fid with ``lenet-mnist``                 kid with ``lenet-mnist``
cifar10, ...   kid, fid with ``inception-v3-compat``         kid with ``net-cifar10`` (cifar10) or Inception
=============  ============================================  ================================================

Image metrics compare against the training split (up to ``max(n, 10,000)`` items, features cached), toys against
the held-out test split (``n`` items). During training, flow methods also sample with their cheap sampler
(:class:`TrainingEval`: the DMMD family's ``cheap_sampler``, at most 20 levels and ``n`` particles).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .runs import RECORD_FACTS  # noqa: F401  (re-exported: the facts of an in-training evaluation record)
from .errors import UserError
from .registry import check_options, split_spec, user_options

DEFAULT_N = {"image": 1000, "points": 2500}
TRAINING_N = {"image": 256, "points": 500}
IMAGE_REF_MIN = 10_000

Say = Callable[[str], None]


def default_metrics(kind: str, info: dict[str, Any] | None = None, purpose: str = "evaluate") -> list[str]:
    """Metric names used when none are given (``purpose`` is ``"evaluate"`` or ``"training"``)."""
    mixture = bool(info) and "centres" in info
    if kind == "points":
        if purpose == "training":
            return ["mmd"] + (["modes"] if mixture else [])
        return ["mmd", "energy", "swd"] + (["modes", "hq"] if mixture else [])
    return ["kid"] if purpose == "training" else ["kid", "fid", "nn"]


def default_extractor(dataset: str, shape: Sequence[int], purpose: str = "evaluate") -> str:
    """The feature extractor used for image metrics when none is given.

    A gflowzoo-trained classifier for its own data set (``net-digits``, ``lenet-mnist``, ``lenet-fashion-mnist``),
    Inception-v3 otherwise; during training ``net-cifar10`` replaces Inception on CIFAR-10 (Inception is too slow
    to run every few hundred steps on a CPU)."""
    from .metrics.classifier import SPECS

    for name, spec in SPECS.items():
        if spec.dataset == dataset and list(spec.arch["in_shape"]) == list(shape):
            if name == "net-cifar10" and purpose != "training":
                break
            return name
    return "inception-v3-compat"


def protocol_key(protocol: dict[str, Any]) -> str:
    """10 hex digits identifying what makes two evaluations comparable: metrics and their options, sample count,
    seed, reference, extractor (name and weights hash) and sampler settings."""
    core = {k: protocol.get(k) for k in ("dataset", "metrics", "n", "seed", "sampler")}
    ref = protocol.get("reference") or {}
    core["reference"] = {k: ref.get(k) for k in ("dataset", "split", "n")}
    ext = protocol.get("extractor") or {}
    core["extractor"] = {k: ext.get(k) for k in ("name", "sha256")} if ext else None
    blob = json.dumps(core, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


@dataclass
class EvalResult:
    """Metric values with the protocol that produced them.

    ``values``: metric name -> float (``kid``, ``kid_std``, ``fid``, ``mmd``, ...). ``timing``: ``sampling_s``,
    ``metrics_s``, ``total_s`` (wall-clock seconds) and ``samples_per_s``. ``samples``: the evaluated samples
    ``[n, *S]`` (model units, CPU; not saved)."""

    values: dict[str, float]
    protocol: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    samples: Any = None

    @property
    def key(self) -> str:
        return protocol_key(self.protocol)

    def to_json(self) -> dict[str, Any]:
        return {"values": self.values, "protocol": self.protocol, "warnings": self.warnings, "timing": self.timing,
                "protocol_key": self.key}

    def write(self, run_dir: str | Path) -> Path:
        """Write ``RUN_DIR/eval-<protocol key>.json`` (atomically, through :meth:`gflowzoo.runs.RunDir.write_eval`)
        and return its path."""
        from .runs import RunDir

        return RunDir(run_dir).write_eval(self.key, self.to_json())


class Evaluator:
    """Computes a set of metrics for samples of a data set, under one protocol.

    Args:
        data: a :class:`gflowzoo.data.DataHandle` of the data set.
        metrics: metric specs (names or tables ``{"name": "kid", "subset_size": 500}``); ``None``: the defaults.
        n: number of generated samples (default by data kind and ``purpose``).
        seed: sampling and metric seed.
        extractor: feature-extractor spec for image metrics (default: :func:`default_extractor`).
        extractor_weights: a weights file for the extractor (its ``weights`` option).
        ref_split: reference split (default: ``train`` for images, ``test`` for points).
        ref_n: reference items (default: ``max(n, 10,000)`` for images, ``n`` for points; capped by the split).
        device: where feature extraction runs (``cpu``, ``cuda``).
        fit_extractor: train a missing gflowzoo extractor now instead of stopping with instructions.
        purpose: ``"evaluate"`` or ``"training"`` (picks cheaper defaults).
        say: receives one-line messages (warnings, extractor training).
        cache: use the reference-feature cache.
    """

    def __init__(
        self,
        data: Any,
        metrics: Sequence[str | dict[str, Any]] | None = None,
        *,
        n: int | None = None,
        seed: int = 0,
        extractor: str | dict[str, Any] | None = None,
        extractor_weights: str | None = None,
        ref_split: str | None = None,
        ref_n: int | None = None,
        device: str = "cpu",
        registry: Any = None,
        fit_extractor: bool = False,
        purpose: str = "evaluate",
        say: Say | None = None,
        cache: bool = True,
    ) -> None:
        if registry is None:
            from .plugins import get_registry

            registry = get_registry()
        self.data, self.registry, self.seed, self.device = data, registry, int(seed), device
        self.metric_specs = list(metrics) if metrics else None
        self.n_given, self.ref_split_given, self.ref_n_given = n, ref_split, ref_n
        self.extractor_spec, self.extractor_weights = extractor, extractor_weights
        self.fit_extractor, self.purpose, self.cache = fit_extractor, purpose, cache
        self._said: set[str] = set()
        self._say = say
        self.prepared = False
        if n is not None and n < 2:
            raise UserError("--n must be at least 2.")

    def say(self, message: str) -> None:
        """Pass a message on once (repeated evaluations, e.g. during training, repeat their warnings)."""
        if self._say is not None and message not in self._said:
            self._said.add(message)
            self._say(message)

    # -- set-up ----------------------------------------------------------------------------------------------
    def _build_metrics(self, kind: str, info: dict[str, Any]) -> None:
        specs = self.metric_specs or default_metrics(kind, info, self.purpose)
        self.metrics: list[tuple[str, dict[str, Any], Any]] = []
        seen = set()
        for spec in specs:
            name, opts = split_spec(spec)
            if name in seen:
                continue
            seen.add(name)
            cls = self.registry.load("metric", name)
            opts = check_options(cls, opts, f"metric {name!r}")
            full = {k: p.default for k, p in user_options(cls).items()}
            full.update(opts)
            metric = cls(**opts)
            metric.check(kind, info)
            self.metrics.append((name, full, metric))

    def prepare(self) -> Evaluator:
        """Check the metrics against the data, resolve the extractor (training or refusing as configured) and load
        the reference, so that every problem shows before any sampling. Idempotent."""
        if self.prepared:
            return self
        from .metrics.reference import Reference

        kind, shape = self.data.kind, tuple(self.data.shape)
        ref_split = self.ref_split_given or ("train" if kind == "image" else "test")
        ref_ds = self.data.split(ref_split)
        info = ref_ds.info()
        self._build_metrics(kind, info)
        self.n = int(self.n_given or (DEFAULT_N if self.purpose == "evaluate" else TRAINING_N).get(kind, 1000))
        runtime = None
        if any(m.needs_features for _, _, m in self.metrics):
            runtime = self._runtime(shape)
            if any(m.needs_logits for _, _, m in self.metrics) and runtime.extractor.logits_layer is None:
                raise UserError(f"Feature extractor {runtime.extractor.name!r} has no logits for the Inception Score.")
        ref_n = self.ref_n_given or (max(self.n, IMAGE_REF_MIN) if kind == "image" else self.n)
        self.reference = Reference(ref_ds, self.data.name, ref_split, ref_n, runtime, cache=self.cache)
        if runtime is not None:
            self.reference.features()
        self.prepared = True
        return self

    def _runtime(self, shape: tuple[int, ...]) -> Any:
        from .metrics.fidelity import FeatureRuntime

        spec = self.extractor_spec or default_extractor(self.data.name, shape, self.purpose)
        name, opts = split_spec(spec)
        if self.extractor_weights:
            opts["weights"] = str(self.extractor_weights)
        extractor = self.registry.create("feature-extractor", {"name": name, **opts} if opts else name)
        extractor.check_shape(shape)
        root = getattr(self.data, "root", None)
        weights = extractor.resolve_weights(fit_missing=self.fit_extractor, data_root=str(root) if root else None,
                                            device=self.device, say=self.say)
        return FeatureRuntime(extractor, weights, self.device)

    def protocol(self) -> dict[str, Any]:
        """The protocol (without sampler and run facts, which :meth:`evaluate_method` adds)."""
        self.prepare()
        rt = self.reference.runtime
        return {
            "gflowzoo": __version__,
            "dataset": self.data.name,
            "data_kind": self.data.kind,
            "shape": list(self.data.shape),
            "metrics": [{"name": name, **opts} for name, opts, _ in self.metrics],
            "n": self.n,
            "seed": self.seed,
            "reference": self.reference.describe(),
            "extractor": rt.describe() if rt is not None else None,
            "device": str(self.device),
        }

    # -- evaluation ------------------------------------------------------------------------------------------
    def stages(self) -> list[str]:
        """Names of the steps :meth:`evaluate_method` reports through ``on_stage`` (for progress bars)."""
        self.prepare()
        extra = ["features"] if self.reference.runtime is not None else []
        return ["sampling", *extra, *[name for name, _, _ in self.metrics]]

    def evaluate_samples(self, samples: Any, on_stage: Callable[[str], None] | None = None,
                         features: dict[str, Any] | None = None, n: int | None = None) -> EvalResult:
        """Metrics of ``samples`` ``[N, *S]`` (model units). The protocol's ``n`` is the given count.

        ``features`` (``{layer: [n, D]}``): the extractor's features of all ``n`` evaluated samples, computed
        beforehand (piece by piece, see :meth:`evaluate_method`); ``samples`` may then hold only the first few."""
        from .metrics.base import EvalContext

        self.prepare()
        if tuple(samples.shape[1:]) != tuple(self.data.shape):
            raise UserError(f"Samples have shape {list(samples.shape[1:])}; the data set has {list(self.data.shape)}.")
        t0 = time.perf_counter()
        ctx = EvalContext(samples, self.reference, self.seed, warn=self.say, features=features, data=self.data)
        if self.reference.runtime is not None and features is None:
            if on_stage:
                on_stage("features")
            ctx.features()
        values: dict[str, float] = {}
        for name, _, metric in self.metrics:
            if on_stage:
                on_stage(name)
            values.update({k: float(v) for k, v in metric.compute(ctx).items()})
        protocol = self.protocol()
        protocol["n"] = int(samples.shape[0] if n is None else n)
        return EvalResult(values, protocol, list(ctx.warnings), {"metrics_s": time.perf_counter() - t0},
                          samples=samples)

    #: Samples per call of ``method.sample`` in :meth:`evaluate_method`; ``None``: :data:`gflowzoo.sampling.DEFAULT_PIECE`.
    sample_piece: int | None = None
    #: Samples an image evaluation keeps in :attr:`EvalResult.samples` when it streams features.
    keep_images: int = 256

    def streams_features(self) -> bool:
        """Whether :meth:`evaluate_method` extracts features piece by piece and keeps only the first samples
        (:meth:`_kept_when_streaming`): image data whose metrics read extractor features or a bounded number of
        samples (:attr:`~gflowzoo.interfaces.Metric.max_samples`)."""
        self.prepare()
        return (self.data.kind == "image" and self.reference.runtime is not None
                and all(m.needs_features or m.max_samples is not None for _, _, m in self.metrics))

    def _kept_when_streaming(self) -> int:
        """Samples a streaming evaluation keeps: the report's pictures, or what a metric reads
        (:attr:`~gflowzoo.interfaces.Metric.max_samples`), whichever is more."""
        self.prepare()
        wanted = [m.max_samples for _, _, m in self.metrics if not m.needs_features and m.max_samples is not None]
        return min(self.n, max([self.keep_images, *wanted]))

    def evaluate_method(self, method: Any, sampler: dict[str, Any] | None = None,
                        on_stage: Callable[[str], None] | None = None, shard: bool = False,
                        on_progress: Callable[[float], None] | None = None) -> EvalResult:
        """Draw ``n`` samples from ``method`` (a CPU generator seeded with ``seed``) and compute the metrics.
        ``sampler`` adds facts to the protocol's sampler section (e.g. the ``--set`` overrides). ``shard``: every
        rank of a multi-process run is drawing its share (:func:`gflowzoo.distributed.sample_shards`; call this on
        rank 0); the same as without in one process. ``on_progress`` receives the number of samples drawn so far
        as the sampling goes (a progress bar: :func:`gflowzoo.progress.track_pieces`; one process only).

        In one process the samples are drawn :attr:`sample_piece` per call of ``method.sample``
        (:func:`gflowzoo.sampling.sample_pieces`; ``n`` up to one piece is exactly one call), and for image metrics
        that read features only (:meth:`streams_features`), each piece goes through the extractor at once and is
        dropped: memory holds features, not ``n`` images. The result is the same as extracting all at once."""
        import torch

        from . import distributed as dist
        from .sampling import DEFAULT_PIECE, SampleWriter, piece_size, sample_pieces

        self.prepare()
        if on_stage:
            on_stage("sampling")
        t0 = time.perf_counter()
        extra: dict[str, Any] = {}
        if shard and dist.world() > 1:
            x = dist.sample_shards(method, self.n, self.seed)
            sampling_s = time.perf_counter() - t0
            res = self.evaluate_samples(x.detach().cpu(), on_stage)
        else:
            piece = self.sample_piece or DEFAULT_PIECE
            per_call = piece_size(method, piece)
            if self.n > per_call:
                extra["samples_per_call"] = per_call
            pieces = sample_pieces(method, self.n, torch.Generator().manual_seed(self.seed), piece)
            if on_progress is not None:
                from .progress import track_pieces

                pieces = track_pieces(pieces, self.n, per_call, on_progress)
            stream = self.streams_features()
            # streaming keeps only the first images (the report's pictures); otherwise every sample
            keeper = SampleWriter(self.n, tuple(self.data.shape), self.data.kind,
                                  keep=self._kept_when_streaming() if stream else self.n)
            feats: dict[str, list[Any]] = {}
            sampling_s = features_s = 0.0
            while True:
                ts = time.perf_counter()
                x = next(pieces, None)
                sampling_s += time.perf_counter() - ts
                if x is None:
                    break
                keeper.add(x)
                if stream:
                    tf = time.perf_counter()
                    for layer, v in self.reference.extract(x).items():
                        feats.setdefault(layer, []).append(v)
                    features_s += time.perf_counter() - tf
            keeper.close()
            samples = keeper.kept()
            if stream:
                if on_stage:
                    on_stage("features")
                res = self.evaluate_samples(samples, on_stage, {k: torch.cat(v) for k, v in feats.items()}, self.n)
                res.timing["metrics_s"] += features_s
            else:
                res = self.evaluate_samples(samples, on_stage)
        info = dict(getattr(method, "sampling_info", lambda: {})() or {})
        res.protocol["sampler"] = {**info, **(sampler or {}), **extra}
        res.timing.update(sampling_s=sampling_s, total_s=time.perf_counter() - t0,
                          samples_per_s=self.n / max(sampling_s, 1e-9))
        return res


#: A budgeted in-training evaluation is expected to take its predecessor's time times this (the load changes).
ESTIMATE_MARGIN = 1.25
#: Before the first evaluation: the probe's time scaled to ``n`` samples, times this.
PROBE_MARGIN = 1.5
#: The probe draws this fraction of an evaluation's samples (at least 2).
PROBE_FRACTION = 0.1


class TrainingEval:
    """The ``on_eval(step, elapsed)`` hook of the training loop: a cheap evaluation every ``run.eval_every`` steps.

    Cheap: the training protocol's few samples (:data:`TRAINING_N`) and, for methods that offer one, a cheaper
    sampler: the method's ``cheap_sampler(n)`` context (the DMMD family: fewer noise levels, ``n`` particles) is
    entered around the sampling. The returned dict holds the metric values, ``seconds`` (the evaluation's own
    duration), ``n`` and ``nfe`` (the sampler used) and the sampler settings the cheap sampler changed
    (``levels``, ``particles``); the trainer logs them as ``eval/<key>``.

    With ``every_seconds`` set, calls closer than that (in training time, evaluations excluded) to the previous
    evaluation return ``{}`` (nothing logged), so evaluations are spaced by training time (``gflowzoo compare``
    uses this); none is paced after ``until_seconds`` of training.

    With ``deadline`` (seconds on the run's clock, ``elapsed``; ``gflowzoo compare --budget``, whose budget counts
    the evaluations: :func:`gflowzoo.trainer.train` with ``budget_includes_eval``) an evaluation is never started if
    it cannot end before the deadline. Its cost is estimated from the previous evaluation (times
    :data:`ESTIMATE_MARGIN`) or, before the first, from a probe made at the first call: two samplings of
    :data:`PROBE_FRACTION` of the samples with the same sampler, scaled to ``n`` (times :data:`PROBE_MARGIN`); the
    probe's call returns ``probe_s``, ``seconds`` and ``estimate_s``. A paced evaluation is made only if it and a
    closing one fit in the time left; the closing evaluation is made at the last step after which it might no longer
    fit (twice the longest step seen so far is kept in reserve), so the curve ends where training does (if it was
    much quicker than estimated, another closing one follows later). An evaluation that does not fit returns
    ``{"skipped": 1, "estimate_s": ..., "left_s": ...}`` (logged: the curve has a hole, and why).

    ``clock``: the clock that times evaluations (default ``time.perf_counter``, the trainer's; tests pass a fake one).
    """

    def __init__(self, evaluator: Evaluator, method: Any, every_seconds: float | None = None,
                 until_seconds: float | None = None, deadline: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.evaluator, self.method, self.every_seconds = evaluator.prepare(), method, every_seconds
        self.until_seconds, self.deadline = until_seconds, deadline
        self.clock = clock if clock is not None else time.perf_counter
        self.last: float | None = None
        self.last_step: int | None = None
        self.eval_seconds = 0.0
        #: the sampler of the last evaluation: ``n``, ``nfe`` and what the cheap sampler changed
        self.sampler: dict[str, Any] = {}
        self.count = self.skipped = 0
        self.closed = False  # the closing evaluation (with a deadline) was made or skipped
        self._estimate: float | None = None
        self._prev_end: float | None = None  # the run's clock when the previous call returned
        self._step_s = 0.0  # the longest time between two calls (a training step, with its logging or checkpoint)

    def __call__(self, step: int, elapsed: float) -> dict[str, Any]:
        if self.deadline is not None:
            return self._budgeted(step, elapsed)
        if self.every_seconds is not None and not self._due(elapsed):
            return {}
        return self.evaluate(step)

    def _due(self, elapsed: float) -> bool:
        """Whether a paced evaluation is due (and, if so, mark it as made)."""
        train_time = elapsed - self.eval_seconds
        if self.last is not None and train_time - self.last < self.every_seconds:  # type: ignore[operator]
            return False
        if self.last is None and train_time < self.every_seconds:  # type: ignore[operator]
            return False
        if self.until_seconds is not None and train_time > self.until_seconds:
            return False
        self.last = train_time
        return True

    def _sampler(self, n: int) -> Any:
        cheap = getattr(self.method, "cheap_sampler", None)
        return cheap(n) if cheap is not None else contextlib.nullcontext({})

    def evaluate(self, step: int) -> dict[str, Any]:
        """One evaluation now (whatever the pacing), with the cheap sampler."""
        n = int(self.evaluator.n)
        t0 = self.clock()
        with self._sampler(n) as changed:
            res = self.evaluator.evaluate_method(self.method)
        dt = self.clock() - t0
        self.eval_seconds += dt
        self.last_step, self.count, self._estimate = step, self.count + 1, dt * ESTIMATE_MARGIN
        self.sampler = {"n": n, "nfe": res.protocol.get("sampler", {}).get("nfe"), **changed}
        facts = {k: v for k, v in self.sampler.items() if isinstance(v, (int, float))}
        return {**res.values, "seconds": round(dt, 4), **facts}

    def _probe(self) -> float:
        """Time two small samplings (:data:`PROBE_FRACTION` of the samples each, the same sampler), set the estimate
        of an evaluation from them and return their duration. The first also pays one-time costs (a flow method's
        statistics for a new training step), which an evaluation pays once; the second scales with the samples."""
        import torch

        n = int(self.evaluator.n)
        k = max(2, int(n * PROBE_FRACTION))
        g = torch.Generator().manual_seed(0)
        with self._sampler(k):
            t0 = self.clock()
            self.method.sample(k, g)
            t1 = self.clock()
            self.method.sample(k, g)
            t2 = self.clock()
        first, second = t1 - t0, t2 - t1
        self._estimate = (max(first - second, 0.0) + second * n / k) * PROBE_MARGIN
        self.eval_seconds += t2 - t0
        return t2 - t0

    def _budgeted(self, step: int, elapsed: float) -> dict[str, Any]:
        t_call = self.clock()
        if self._prev_end is not None:
            self._step_s = max(self._step_s, elapsed - self._prev_end)
        try:
            if self.closed:
                return {}
            if self._estimate is None:  # the first call probes; decisions from the next call on
                probe = round(self._probe(), 4)
                return {"probe_s": probe, "seconds": probe, "estimate_s": round(self._estimate, 4)}
            est, left = self._estimate, self.deadline - elapsed  # type: ignore[operator]
            if left < est + 2 * self._step_s:  # after one more step too little time could be left: close now
                if est > left:
                    self.closed = True
                    return self._skip(est, left)
                t0 = self.clock()
                rec = self.evaluate(step)
                # closed unless it went so much faster than estimated that another one fits later
                self.closed = left - (self.clock() - t0) < self._estimate + 2 * self._step_s
                return rec
            if self.every_seconds is not None and self._due(elapsed):
                # only if the closing evaluation still fits after this one
                return self.evaluate(step) if 2 * est + 2 * self._step_s <= left else self._skip(est, left)
            return {}
        finally:
            self._prev_end = elapsed + (self.clock() - t_call)

    def _skip(self, estimate: float, left: float) -> dict[str, Any]:
        self.skipped += 1
        return {"skipped": 1, "estimate_s": round(estimate, 4), "left_s": round(max(left, 0.0), 4)}


def training_hook(spec: Any, method: Any, registry: Any = None, say: Say | None = None,
                  every_seconds: float | None = None) -> TrainingEval:
    """The in-training evaluation of ``gflowzoo train --eval-every K`` (cheap defaults; see the module docstring).
    Prepared at once, so a missing extractor or data stops before training starts."""
    from .session import resolve_device

    ev = Evaluator(method.data, None, seed=spec.seed, device=resolve_device(spec.device), registry=registry,
                   purpose="training", say=say)
    return TrainingEval(ev, method, every_seconds)
