"""The plan of a ``gflowzoo compare``: which runs (methods x seeds, plus given run directories), their resolved
configurations, their row labels, their budget and where each lives.

Nothing here trains or evaluates (:mod:`gflowzoo.compare_exec` does) or writes (:mod:`gflowzoo.compare_results`
does). Only the standard library is imported at module level.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

DEFAULT_BUDGET = "1m"
DEFAULT_SEEDS = 2
#: in-training evaluations per run by default (each one samples: DMMD on digits takes about 35 s per sampling)
DEFAULT_EVAL_POINTS = 3


def parse_budget(text: str) -> float:
    """A wall-clock budget in minutes from ``"90s"``, ``"10m"``, ``"1.5h"`` or a bare number of minutes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h|hr)?\s*", str(text).lower())
    if not m:
        raise UserError(f"--budget must look like 90s, 10m or 1.5h; got {text!r}.")
    value = float(m.group(1))
    unit = (m.group(2) or "m")[0]
    minutes = value / 60.0 if unit == "s" else value * 60.0 if unit == "h" else value
    if minutes <= 0:
        raise UserError("--budget must be positive.")
    return minutes


def config_label(method: str, data: dict[str, Any]) -> str:
    """Hash of a run's configuration apart from seed, run loop, device and paths (runs with equal hashes pool)."""
    core = {k: v for k, v in data.items() if k not in ("seed", "run", "device", "data_root", "preset")}
    if isinstance(core.get("latent_space"), dict):  # which autoencoder file a run used is a record, not an option
        from .config import LATENT_RECORD_KEYS

        core["latent_space"] = {k: v for k, v in core["latent_space"].items() if k not in LATENT_RECORD_KEYS}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:6]


def spec_hash(spec: Any) -> str:
    """:func:`config_label` of a resolved :class:`gflowzoo.session.RunSpec`."""
    return config_label(spec.method, spec.to_data())


def slug(text: str) -> str:
    """``text`` safe as a file name (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


@dataclass
class PlannedRun:
    """A run the comparison trains: ``method`` with ``seed`` under the resolved ``spec``, shown in the row ``label``,
    living in ``path`` (``OUT/runs/<method>-seed<k>``)."""

    method: str
    seed: int
    spec: Any
    label: str
    path: Path


class ComparePlan:
    """The runs of one comparison and the options they share; every argument is checked here, before anything runs
    (the arguments are those of :class:`gflowzoo.compare.Comparison`)."""

    def __init__(self, methods: Sequence[str], *, dataset: str | None = None, budget_minutes: float | None = None,
                 steps: int | None = None, seeds: int = DEFAULT_SEEDS, runs: Sequence[str | Path] = (),
                 out: str | Path | None = None, sets: Sequence[str] = (), eval_points: int = DEFAULT_EVAL_POINTS,
                 device: str = "auto", data_root: str | None = None, preset: str | None = None,
                 registry: Any = None) -> None:
        from .plugins import get_registry
        from .runs import RunDir

        self.registry = registry or get_registry()
        if not methods and not runs:
            raise UserError("Name at least one method (e.g. `gflowzoo compare dmmd mmdgan`) or give --runs.")
        for m in methods:
            self.registry.get("method", m)  # unknown name -> UserError (exit 2) before anything runs
        if seeds < 1:
            raise UserError("--seeds must be at least 1.")
        if eval_points < 0:
            raise UserError("--eval-points must be >= 0.")
        self.methods, self.seeds, self.sets = list(dict.fromkeys(methods)), int(seeds), list(sets)
        self.given = [RunDir(p).require() for p in runs]
        given_data = {g.read_config().get("dataset") for g in self.given}
        if len(given_data) > 1:
            raise UserError(f"The given runs were trained on different data sets: {sorted(map(str, given_data))}.")
        if dataset and given_data and dataset not in given_data:
            raise UserError(f"--dataset {dataset} differs from the given runs' data set {given_data.pop()}.")
        self.dataset = dataset or (next(iter(given_data)) if given_data else "digits")
        self.registry.get("dataset", self.dataset)
        if steps is not None:
            if steps < 1:
                raise UserError("--steps must be at least 1.")
            self.steps, self.budget_minutes = int(steps), None
        else:
            self.steps, self.budget_minutes = None, budget_minutes or parse_budget(DEFAULT_BUDGET)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out = Path(out) if out else Path("runs") / f"compare-{slug(self.dataset)}-{stamp}"
        self.eval_points = eval_points
        self.device, self.data_root, self.preset = device, data_root, preset

    @property
    def budgeted(self) -> bool:
        """Whether runs are bounded by wall-clock minutes (else by steps)."""
        return self.budget_minutes is not None

    def sets_for(self, method: str) -> list[str]:
        """The ``--set`` items for ``method``: unprefixed ones apply to every method, ``METHOD:key=value`` to that
        method only (e.g. ``dmmd:sampler.levels=20``)."""
        out = []
        known = set(self.methods) | set(self.registry.names("method"))
        for item in self.sets:
            head, sep, rest = item.partition(":")
            if sep and "=" not in head and head in known:
                if head == method:
                    out.append(rest)
            else:
                out.append(item)
        return out

    def options(self) -> dict[str, Any]:
        """The comparison's options, as recorded in ``results.json``."""
        return {"methods": self.methods, "dataset": self.dataset, "budget_minutes": self.budget_minutes,
                "steps": self.steps, "seeds": self.seeds, "sets": self.sets, "runs": [str(g.path) for g in self.given],
                "eval_points": self.eval_points, "device": self.device, "preset": self.preset}

    def resolve(self, method: str, seed: int, base: dict[str, Any] | None = None) -> Any:
        """The :class:`~gflowzoo.session.RunSpec` of ``method`` with ``seed`` under this comparison's budget
        (``base``: a saved configuration to continue, whose preset stays)."""
        from .session import resolve

        # no trainer sample grid: the final evaluation's samples make the report's pictures (one sampling, not two)
        run_over: dict[str, Any] = {"eval_every": 0, "grid_size": 0}
        if self.steps is not None:
            run_over.update(steps=self.steps, minutes=0.0)
        else:
            run_over.update(steps=10**9, minutes=self.budget_minutes)
        overrides: dict[str, Any] = {"run": run_over, "seed": seed, "device": self.device}
        if self.data_root:
            overrides["data_root"] = str(self.data_root)
        return resolve(self.registry, method, self.dataset, base=base, sets=self.sets_for(method),
                       overrides=overrides, preset=self.preset if base is None else None)

    def run_path(self, method: str, seed: int) -> Path:
        """Where the run of ``method`` with ``seed`` lives."""
        return self.out / "runs" / f"{method}-seed{seed}"

    def planned_runs(self) -> list[PlannedRun]:
        """Every run to train, in order (methods, then seeds), with its resolved spec and label: every configuration
        error shows here, before training."""
        specs = [(m, s, self.resolve(m, s)) for m in self.methods for s in range(self.seeds)]
        labels = self.labels([(m, spec_hash(spec)) for m, _, spec in specs])
        return [PlannedRun(m, s, spec, labels[(m, spec_hash(spec))], self.run_path(m, s)) for m, s, spec in specs]

    def given_key(self, run: Any) -> tuple[str, str]:
        """``(method, configuration hash)`` of a given run directory."""
        cfg = run.read_config()
        return str(cfg.get("method")), config_label(str(cfg.get("method")), cfg)

    def labels(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Row labels of ``(method, configuration hash)`` keys and of the given runs: the method name, with the hash
        when one method appears with several configurations."""
        keys = list(keys) + [self.given_key(g) for g in self.given]
        out = {}
        for m, h in dict.fromkeys(keys):
            several = len({hh for mm, hh in keys if mm == m}) > 1
            out[(m, h)] = f"{m} [{h}]" if several else m
        return out

    def eval_every_seconds(self) -> float | None:
        """Seconds of budget between paced in-training evaluations (``None``: a steps budget, or none)."""
        if self.steps is not None or not self.eval_points:
            return None
        return self.budget_minutes * 60.0 / self.eval_points
