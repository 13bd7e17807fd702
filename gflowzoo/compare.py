"""``gflowzoo compare``: train several methods on the same data with the same budget and seeds, evaluate them all
with one protocol, and summarise.

Every run goes through the same code as ``gflowzoo train`` (the run service, :func:`gflowzoo.runner.train_run`) and
lives in ``OUT/runs/<method>-seed<k>/``.
During training a cheap evaluation (:class:`gflowzoo.evaluate.TrainingEval`: few samples, a flow method's cheap
sampler) is logged every ``budget / eval_points`` seconds of training (or every ``steps / eval_points`` steps) for
the metric-versus-wall-clock curves; after training every run gets the full evaluation (``eval-<protocol key>.json``
in its folder), whose duration is estimated and printed before it starts. A finished run carries ``compare.json``;
running the same command again reuses finished runs and resumes unfinished ones with what is left of their budget,
so an interrupted comparison can be completed later.

The time budget bounds each run's wall clock, in-training evaluations included (``train(...,
budget_includes_eval=True)``): an in-training evaluation that would not end within the budget is skipped (and
logged as skipped), the last one is made when just enough budget is left for it, and the final evaluation comes on
top. Fairness notes: the in-training evaluations' time is subtracted in the reported training time and on the
curves' time axis; every method uses the preset for the data set and device unless ``--set`` changes it.

The work is split by responsibility: :mod:`gflowzoo.compare_plan` (which runs, their configurations, labels and
budget), :mod:`gflowzoo.compare_exec` (training and evaluating them) and :mod:`gflowzoo.compare_results` (records,
summary table, ``compare.json`` and the report); :class:`Comparison` ties them together. Only the standard library is
imported at module level (the CLI imports this module at start-up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .compare_exec import _work  # noqa: F401  (the sampling-work model of the estimates; its tests import it here)
from .compare_exec import INTERACTION_EXPONENT, CompareExecutor, training_facts
from .compare_plan import (
    DEFAULT_BUDGET,
    DEFAULT_EVAL_POINTS,
    DEFAULT_SEEDS,
    ComparePlan,
    PlannedRun,
    config_label,
    parse_budget,
    spec_hash,
)
from .compare_results import (
    CompareReport,
    CompareResult,
    RunRecord,
    metric_keys,
    summarize,
)

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_EVAL_POINTS",
    "DEFAULT_SEEDS",
    "INTERACTION_EXPONENT",
    "CompareExecutor",
    "ComparePlan",
    "CompareReport",
    "CompareResult",
    "Comparison",
    "PlannedRun",
    "RunRecord",
    "config_label",
    "metric_keys",
    "parse_budget",
    "spec_hash",
    "summarize",
    "training_facts",
]

Say = Callable[[str], None]


class Comparison:
    """Plans, trains and evaluates the runs of one comparison (see the module docstring).

    Args:
        methods: method names to train (validated before anything runs).
        dataset: data set name (default: the given runs' data set, else ``digits``).
        budget_minutes / steps: the per-run budget (one of them; ``steps`` wins when both are given): wall-clock
            minutes of the training loop, in-training evaluations included, or training steps.
        seeds: seeds ``0 .. seeds-1`` per method.
        runs: existing run directories to include (evaluated, not retrained).
        out: the output folder.
        sets: ``--set`` overrides for the trained runs (``METHOD:key=value`` for one method only).
        metrics, n, extractor, extractor_weights, fit_extractor: the final evaluation protocol (defaults by data).
        eval_points: in-training evaluations per run (0: none).
        device, data_root, preset: as for ``gflowzoo train``.
        reporter: where progress lines and notes go (a :class:`gflowzoo.runner.Reporter`; default: nowhere);
            progress bars draw on its ``console``.
        progress: draw progress bars.
    """

    def __init__(self, methods: Sequence[str], *, dataset: str | None = None, budget_minutes: float | None = None,
                 steps: int | None = None, seeds: int = DEFAULT_SEEDS, runs: Sequence[str | Path] = (),
                 out: str | Path | None = None, sets: Sequence[str] = (), metrics: Sequence[str] | None = None,
                 n: int | None = None, extractor: str | None = None, extractor_weights: str | None = None,
                 fit_extractor: bool = False, eval_points: int = DEFAULT_EVAL_POINTS, device: str = "auto",
                 data_root: str | None = None, preset: str | None = None, registry: Any = None,
                 reporter: Any = None, progress: bool = True) -> None:
        self.plan = ComparePlan(methods, dataset=dataset, budget_minutes=budget_minutes, steps=steps, seeds=seeds,
                                runs=runs, out=out, sets=sets, eval_points=eval_points, device=device,
                                data_root=data_root, preset=preset, registry=registry)
        self.report = CompareReport()
        self.executor = CompareExecutor(self.plan, metrics=list(metrics) if metrics else None, n=n,
                                        extractor=extractor, extractor_weights=extractor_weights,
                                        fit_extractor=fit_extractor, reporter=reporter, progress=progress,
                                        report=self.report)

    @property
    def out(self) -> Path:
        """The output folder."""
        return self.plan.out

    @property
    def given(self) -> list[Any]:
        """The given run directories (:class:`gflowzoo.runs.RunDir`)."""
        return self.plan.given

    @property
    def records(self) -> list[RunRecord]:
        """The records of the runs done so far."""
        return self.executor.records

    def options(self) -> dict[str, Any]:
        return self.plan.options()

    def run(self) -> CompareResult:
        """Train and evaluate everything, then write the report; Ctrl-C stops after the current step and keeps what
        is finished (the report is then partial)."""
        planned = self.plan.planned_runs()
        self.executor.prepare_evaluation()
        self.out.mkdir(parents=True, exist_ok=True)
        interrupted = self.executor.run_all(planned)
        final, training = self.executor.protocols()
        result = CompareResult(self.out, self.records, final, training, self.plan.options(), interrupted)
        result.report = self.report.write(result, self.executor.final_eval)
        return result
