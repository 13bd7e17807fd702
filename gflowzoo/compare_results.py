"""The results of a ``gflowzoo compare``: one :class:`RunRecord` per run, the :class:`CompareResult` with its summary
table (mean and standard deviation over seeds), and :class:`CompareReport`, which writes them: ``compare.json`` into
each finished run (through :class:`gflowzoo.runs.RunDir`) and the report folder (:func:`gflowzoo.report.write_report`).

Only the standard library is imported at module level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__


@dataclass
class RunRecord:
    """One training run of a comparison and its evaluation."""

    label: str
    method: str
    seed: int
    path: str
    status: str = "pending"  # done | interrupted | failed | pending
    steps: int = 0
    train_seconds: float = 0.0
    eval_seconds_in_training: float = 0.0
    values: dict[str, float] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)
    #: the in-training evaluations (from the run's log, :func:`gflowzoo.compare_exec.training_facts`):
    #: ``evaluations``, ``skipped`` and the last one's ``seconds``, ``n``, ``nfe`` (and ``levels``, ``particles``
    #: where the cheap sampler changed them)
    training_eval: dict[str, Any] = field(default_factory=dict)
    #: the final evaluation's estimated seconds, printed before it started (None: nothing to estimate from)
    final_eval_estimate_s: float | None = None
    eval_file: str | None = None
    samples_image: str | None = None
    error: str | None = None

    @property
    def nfe(self) -> Any:
        return self.sampler.get("nfe")

    @property
    def final_eval_seconds(self) -> float | None:
        """The final evaluation's measured duration (sampling and metrics)."""
        return self.timing.get("total_s")


@dataclass
class CompareResult:
    """What :meth:`gflowzoo.compare.Comparison.run` produced."""

    out: Path
    records: list[RunRecord]
    protocol: dict[str, Any] | None
    training_protocol: dict[str, Any] | None
    options: dict[str, Any]
    interrupted: bool = False
    report: dict[str, str] = field(default_factory=dict)

    def summary(self) -> list[dict[str, Any]]:
        """One row per label: run count, mean training time/steps/samples per second, NFE, and each metric's mean
        and standard deviation over seeds (sample std, ``None`` for a single run)."""
        return summarize(self.records)

    def to_json(self) -> dict[str, Any]:
        return {
            "gflowzoo": __version__,
            "options": self.options,
            "protocol": self.protocol,
            "training_protocol": self.training_protocol,
            "interrupted": self.interrupted,
            "runs": [asdict(r) for r in self.records],
            "summary": self.summary(),
        }


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def metric_keys(records: Sequence[RunRecord]) -> list[str]:
    """Metric keys to tabulate (standard deviations over subsets and constants such as ``modes_total`` left out)."""
    keys: list[str] = []
    for r in records:
        for k in r.values:
            if k.endswith("_std") or k == "modes_total" or k in keys:
                continue
            keys.append(k)
    return keys


def summarize(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """See :meth:`CompareResult.summary`."""
    done = [r for r in records if r.status == "done"]
    rows = []
    for label in dict.fromkeys(r.label for r in done):
        group = [r for r in done if r.label == label]
        row: dict[str, Any] = {"label": label, "method": group[0].method, "runs": len(group),
                               "seeds": [r.seed for r in group]}
        for key, get in (("train_seconds", lambda r: r.train_seconds), ("steps", lambda r: r.steps),
                         ("samples_per_s", lambda r: r.timing.get("samples_per_s")),
                         ("eval_seconds", lambda r: r.final_eval_seconds)):
            row[key], row[key + "_std"] = _mean_std([get(r) for r in group])
        row["nfe"] = group[0].nfe
        row["metrics"] = {}
        for k in metric_keys(group):
            mean, std = _mean_std([r.values.get(k) for r in group])
            row["metrics"][k] = {"mean": mean, "std": std}
        rows.append(row)
    return rows


class CompareReport:
    """Writes what a comparison found: the ``compare.json`` record of each finished run (which a later run of the
    same comparison reuses) and, at the end, the report folder (``report.md``, ``report.html``, ``results.json``,
    ``report-files/``)."""

    @staticmethod
    def record_finished(run: Any, rec: RunRecord) -> Path:
        """Write ``rec`` as the run's ``compare.json`` (atomically, :meth:`gflowzoo.runs.RunDir.write_compare_record`)."""
        return run.write_compare_record(asdict(rec))

    @staticmethod
    def finished_record(run: Any) -> RunRecord | None:
        """The record of an earlier comparison that finished this run (its ``compare.json``), or ``None``."""
        saved = run.read_compare_record()
        if saved is None:
            return None
        return RunRecord(**{k: v for k, v in saved.items() if k in RunRecord.__dataclass_fields__})

    @staticmethod
    def write(result: CompareResult, evaluator: Any = None) -> dict[str, str]:
        """Write the report folder into ``result.out``; returns the paths (``markdown``, ``html``, ``json``)."""
        from .report import write_report

        return write_report(result, evaluator)
