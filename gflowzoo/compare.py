"""``gflowzoo compare``: train several methods on the same data with the same budget and seeds, evaluate them all
with one protocol, and summarise.

Every run goes through the same code as ``gflowzoo train`` (:func:`gflowzoo.session.resolve`,
:func:`gflowzoo.session.build_method`, :func:`gflowzoo.trainer.train`) and lives in ``OUT/runs/<method>-seed<k>/``.
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
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import GflowzooError, UserError

DEFAULT_BUDGET = "1m"
DEFAULT_SEEDS = 2
#: in-training evaluations per run by default (each one samples: DMMD on digits takes about 35 s per sampling)
DEFAULT_EVAL_POINTS = 3
Say = Callable[[str], None]


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
    #: the in-training evaluations (from the run's log, :func:`training_facts`): ``evaluations``, ``skipped`` and the
    #: last one's ``seconds``, ``n``, ``nfe`` (and ``levels``, ``particles`` where the cheap sampler changed them)
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
    """What :func:`run_compare` produced."""

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


def _config_label(method: str, data: dict[str, Any]) -> str:
    """Hash of a run's configuration apart from seed, run loop, device and paths (runs with equal hashes pool)."""
    core = {k: v for k, v in data.items() if k not in ("seed", "run", "device", "data_root", "preset")}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:6]


def _train_seconds_from_log(run: Any, elapsed: float) -> float:
    """Training time of a run: ``elapsed`` minus the in-training evaluations logged before it ended."""
    spent = sum(float(r.get("eval/seconds", 0.0)) for r in run.read_metrics() if not r.get("after_training"))
    return max(elapsed - spent, 0.0)


def training_facts(run: Any) -> dict[str, Any]:
    """What a run's log says about its in-training evaluations: how many were made (``evaluations``) and skipped
    for lack of budget (``skipped``), and the last one's ``seconds`` and sampler (``n``, ``nfe``, ``levels``,
    ``particles``: :data:`gflowzoo.runs.RECORD_FACTS`). ``{}`` when there were none."""
    from .runs import RECORD_FACTS

    made = skipped = 0
    last: dict[str, Any] = {}
    for r in run.read_metrics():
        if r.get("eval/skipped"):
            skipped += 1
        elif any(k.startswith("eval/") and k[5:] not in RECORD_FACTS for k in r):  # metric values: an evaluation
            made += 1
            last = {k[5:]: v for k, v in r.items() if k[5:] in ("seconds", "n", "nfe", "levels", "particles")}
    if not made and not skipped:
        return {}
    return {"evaluations": made, "skipped": skipped, **last}


#: How the cost of one step of an interacting particle batch grows with its size ``P`` (``P ** exponent``): between
#: linear (the network) and quadratic (the kernel between particles). Measured on the toy DMMD preset (exact flow,
#: rbf, 1,024 reference points): 500 -> 2,500 particles took 12.7x longer, ``P ** 1.58``.
INTERACTION_EXPONENT = 1.5


def _work(n: int, nfe: Any, particles: Any) -> float:
    """The sampling work of ``n`` samples, for estimates: NFE x samples, or, for a method with an interaction batch
    of ``particles`` (``sampling_info()``), NFE x batches x ``particles ** INTERACTION_EXPONENT``."""
    steps = nfe if isinstance(nfe, (int, float)) and nfe > 0 else 1
    if isinstance(particles, int) and particles > 0:
        return float(steps * math.ceil(n / particles) * particles**INTERACTION_EXPONENT)
    return float(steps * n)


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
    """

    def __init__(self, methods: Sequence[str], *, dataset: str | None = None, budget_minutes: float | None = None,
                 steps: int | None = None, seeds: int = DEFAULT_SEEDS, runs: Sequence[str | Path] = (),
                 out: str | Path | None = None, sets: Sequence[str] = (), metrics: Sequence[str] | None = None,
                 n: int | None = None, extractor: str | None = None, extractor_weights: str | None = None,
                 fit_extractor: bool = False, eval_points: int = DEFAULT_EVAL_POINTS, device: str = "auto",
                 data_root: str | None = None, preset: str | None = None, registry: Any = None,
                 console: Any = None, progress: bool = True, say: Say | None = None) -> None:
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
        self.out = Path(out) if out else Path("runs") / f"compare-{_slug(self.dataset)}-{stamp}"
        self.metrics, self.n, self.extractor = (list(metrics) if metrics else None), n, extractor
        self.extractor_weights, self.fit_extractor, self.eval_points = extractor_weights, fit_extractor, eval_points
        self.device, self.data_root, self.preset = device, data_root, preset
        self.console, self.progress, self.say = console, progress, say or (lambda s: None)
        self.records: list[RunRecord] = []
        self.final_eval: Any = None
        self.training_eval: Any = None

    # -- planning ----------------------------------------------------------------------------------------------
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
        return {"methods": self.methods, "dataset": self.dataset, "budget_minutes": self.budget_minutes,
                "steps": self.steps, "seeds": self.seeds, "sets": self.sets, "runs": [str(g.path) for g in self.given],
                "eval_points": self.eval_points, "device": self.device, "preset": self.preset}

    def _resolve(self, method: str, seed: int, base: dict[str, Any] | None = None) -> Any:
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

    def plan(self) -> list[tuple[str, int, Any]]:
        """``(method, seed, spec)`` of every run to train: every configuration error shows here, before training."""
        return [(m, s, self._resolve(m, s)) for m in self.methods for s in range(self.seeds)]

    def prepare_evaluation(self) -> None:
        """Build and prepare the final and in-training evaluators (extractor, reference features) up front."""
        from .data import DataHandle
        from .evaluate import Evaluator
        from .session import resolve_device

        device = resolve_device(self.device)
        data = DataHandle(self.dataset, self.data_root, registry=self.registry)
        self.final_eval = Evaluator(data, self.metrics, n=self.n, seed=0, extractor=self.extractor,
                                    extractor_weights=self.extractor_weights, device=device, registry=self.registry,
                                    fit_extractor=self.fit_extractor, say=self.say).prepare()
        if self.eval_points:
            self.training_eval = Evaluator(data, None, seed=0, device=device, registry=self.registry,
                                           purpose="training", say=self.say).prepare()

    # -- running -----------------------------------------------------------------------------------------------
    def run(self) -> CompareResult:
        """Train and evaluate everything; Ctrl-C stops after the current step and keeps what is finished."""
        plan = self.plan()
        self.prepare_evaluation()
        self.out.mkdir(parents=True, exist_ok=True)
        interrupted = False
        jobs: list[tuple[str, Any]] = [("train", p) for p in plan] + [("given", g) for g in self.given]
        labels = self._labels(plan)
        for i, (kind, job) in enumerate(jobs):
            try:
                if kind == "train":
                    method, seed, spec = job
                    self._note(f"[{i + 1}/{len(jobs)}] {method} seed {seed}")
                    rec = self._train_one(method, seed, spec, labels[(method, spec_hash(spec))])
                else:
                    self._note(f"[{i + 1}/{len(jobs)}] evaluating {job.path}")
                    rec = self._evaluate_given(job, labels)
            except KeyboardInterrupt:
                interrupted = True
                self._note("interrupted: writing a partial report with the finished runs")
                break
            except UserError:
                raise
            except GflowzooError as exc:  # a diverged or broken run must not sink the comparison
                rec = self._failed(kind, job, exc)
            self.records.append(rec)
            if rec.status == "interrupted":
                interrupted = True
                break
        result = CompareResult(self.out, self.records, self._protocol(self.final_eval),
                               self._protocol(self.training_eval), self.options(), interrupted)
        from .report import write_report

        result.report = write_report(result, self.final_eval)
        return result

    def _failed(self, kind: str, job: Any, exc: Exception) -> RunRecord:
        if kind == "train":
            method, seed, spec = job
            path, label = self.out / "runs" / f"{method}-seed{seed}", self._labels([(method, seed, spec)])
            rec = RunRecord(label[(method, spec_hash(spec))], method, seed, str(path))
        else:
            cfg = job.read_config()
            rec = RunRecord(str(cfg.get("method")), str(cfg.get("method")), int(cfg.get("seed", 0)), str(job.path))
        rec.status, rec.error = "failed", str(exc)
        self._note(f"  [red]failed:[/] {exc}")
        return rec

    @staticmethod
    def _protocol(ev: Any) -> dict[str, Any] | None:
        return ev.protocol() if ev is not None else None

    def _note(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False, soft_wrap=True)

    def _labels(self, plan: list[tuple[str, int, Any]]) -> dict[tuple[str, str], str]:
        """Row labels: the method name, with a config hash when one method appears with several configurations."""
        keys = [(m, spec_hash(s)) for m, _, s in plan]
        for g in self.given:
            cfg = g.read_config()
            keys.append((str(cfg.get("method")), _config_label(str(cfg.get("method")), cfg)))
        out = {}
        for m, h in dict.fromkeys(keys):
            several = len({hh for mm, hh in keys if mm == m}) > 1
            out[(m, h)] = f"{m} [{h}]" if several else m
        return out

    def _eval_every_seconds(self) -> float | None:
        if self.steps is not None or not self.eval_points:
            return None
        return self.budget_minutes * 60.0 / self.eval_points

    def _train_one(self, method: str, seed: int, spec: Any, label: str) -> RunRecord:
        from .evaluate import TrainingEval
        from .runs import RunDir, load_checkpoint
        from .session import build_method, resolve_device
        from .trainer import train

        run = RunDir(self.out / "runs" / f"{method}-seed{seed}")
        rec = RunRecord(label, method, seed, str(run.path))
        marker = run.path / "compare.json"
        payload = None
        if run.exists():
            saved = run.read_config()
            if _config_label(method, saved) != spec_hash(spec):
                raise UserError(
                    f"{run.path} holds a {method} run with another configuration than this comparison asks for. "
                    "Use another --out, or the same --set options as before."
                )
        if marker.is_file():
            return self._reuse(run, rec, marker)
        if run.exists() and run.checkpoints():
            _, payload = run.latest_checkpoint(method)
            spec = self._resolve(method, seed, base=run.read_config())
            if self.budget_minutes is not None:  # the budget counts the wall clock, evaluations included
                spec.run.minutes = max(self.budget_minutes - float(payload.get("elapsed", 0.0)) / 60, 1e-6)
            self._note(f"  resuming {run.path} from step {payload['step']}")
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(spec.to_data())
        device = resolve_device(spec.device)
        m = build_method(self.registry, spec, device)
        hook = None
        budgeted = self.budget_minutes is not None
        if self.training_eval is not None:
            every = self._eval_every_seconds()
            # paced evaluations at budget * k / points (k < points); the last one is made when training ends (with
            # a budget: when just enough of it is left, on the run's clock, which a resumed run continues)
            until = None if every is None else self.budget_minutes * 60.0 - every / 2
            deadline = self.budget_minutes * 60.0 if budgeted else None
            hook = TrainingEval(self.training_eval, m, every, until, deadline=deadline)
            spec.run.eval_every = 1 if budgeted else max(1, self.steps // self.eval_points)
        res = train(run, spec, m, resume_payload=payload, console=self.console, progress=self.progress,
                    on_eval=hook, budget_includes_eval=budgeted)
        if res.interrupted:
            rec.status, rec.steps = "interrupted", res.step
            return rec
        rec.steps = res.step
        # the final checkpoint's clock stops after finalize() and before the trainer draws its sample grid
        elapsed = res.elapsed
        if res.checkpoint:
            elapsed = float(load_checkpoint(res.checkpoint, method).get("elapsed", res.elapsed))
        rec.train_seconds = _train_seconds_from_log(run, elapsed)
        rec.eval_seconds_in_training = elapsed - rec.train_seconds
        if hook is not None and not budgeted and hook.last_step != res.step:  # close the curve at the end
            vals = hook.evaluate(res.step)
            run.log({"step": res.step, "time": round(res.elapsed, 3), "after_training": True,
                     **{f"eval/{k}": v for k, v in vals.items()}})
        rec.training_eval = training_facts(run)
        self._final(m, run, rec)
        marker.write_text(json.dumps(asdict(rec), indent=2, default=str) + "\n")
        return rec

    def _final_estimate(self, rec: RunRecord, info: dict[str, Any]) -> tuple[float | None, str]:
        """``(seconds, where from)`` for the final evaluation of ``rec``: an earlier final evaluation of the same
        label in this comparison, else the run's in-training evaluations scaled by the sampling work (:func:`_work`;
        a rough model: a factor 2 either way is usual)."""
        earlier = [r for r in self.records if r.label == rec.label and r.final_eval_seconds]
        if earlier:
            return earlier[-1].final_eval_seconds, f"from {Path(earlier[-1].path).name}'s final evaluation"
        t = rec.training_eval
        if t.get("seconds") and t.get("n"):
            nfe, particles = info.get("nfe"), info.get("particles")
            work = _work(self.final_eval.n, nfe, particles) / _work(t["n"], t.get("nfe", nfe),
                                                                     t.get("particles", particles))
            return float(t["seconds"]) * work, "from the in-training evaluations"
        return None, "no earlier evaluation to estimate its time from"

    def _final(self, method_obj: Any, run: Any, rec: RunRecord) -> None:
        from .progress import SampleProgress
        from .report import fmt_duration
        from .viz import save_samples

        ev, name = self.final_eval, Path(rec.path).name
        info = dict(getattr(method_obj, "sampling_info", lambda: {})() or {})
        rec.final_eval_estimate_s, source = self._final_estimate(rec, info)
        at = f" at NFE {info['nfe']}" if info.get("nfe") is not None else ""
        about = "" if rec.final_eval_estimate_s is None else f", about {fmt_duration(rec.final_eval_estimate_s)}"
        self._note(f"  final evaluation of {name}: {ev.n:,} samples{at}{about} ({source})")
        try:
            with SampleProgress(f"final evaluation {name}", console=self.console, transient=True,
                                enabled=self.progress and self.console is not None) as bar:
                bar.start(ev.n)
                res = ev.evaluate_method(method_obj, {"sets": self.sets_for(rec.method)}, on_stage=bar.stage,
                                         on_progress=bar.update)
        except (GflowzooError, KeyboardInterrupt):
            raise
        except Exception as exc:  # e.g. non-finite samples: report the run as failed, keep comparing
            raise GflowzooError(f"evaluating {rec.label} seed {rec.seed} failed: {type(exc).__name__}: {exc}") from exc
        res.protocol["run"] = {"method": rec.method, "step": rec.steps, "train_seconds": rec.train_seconds,
                               "path": rec.path}
        rec.values, rec.timing, rec.sampler = res.values, res.timing, res.protocol.get("sampler", {})
        self._note(f"  final evaluation of {name} took {fmt_duration(res.timing['total_s'])}")
        rec.eval_file = str(res.write(run.path))
        if not any(r.label == rec.label and r.samples_image for r in self.records):  # one picture per label
            x = res.samples if method_obj.data.kind != "image" else res.samples[:64]
            name = f"samples-{_slug(rec.label)}.png"
            rec.samples_image = str(save_samples(x, method_obj.data, self.out / "report-files" / name, title=rec.label))
        rec.status = "done"
        for w in res.warnings:
            self.say(w)

    def _reuse(self, run: Any, rec: RunRecord, marker: Path) -> RunRecord:
        saved = json.loads(marker.read_text())
        old = RunRecord(**{k: v for k, v in saved.items() if k in RunRecord.__dataclass_fields__})
        ef = Path(old.eval_file) if old.eval_file else None
        if ef and ef.is_file() and ef.name == f"eval-{_key_of(self.final_eval, old.sampler)}.json":
            self._note(f"  reusing {run.path} (finished earlier)")
            old.label = rec.label
            return old
        return self._evaluate_existing(run, rec)

    def _evaluate_existing(self, run: Any, rec: RunRecord) -> RunRecord:
        from .cli import load_run

        spec, m, payload = load_run(run.path, None, self.device)  # its saved configuration, as trained
        rec.steps = int(payload.get("step", 0))
        rec.train_seconds = _train_seconds_from_log(run, float(payload.get("elapsed", 0.0)))
        rec.eval_seconds_in_training = float(payload.get("elapsed", 0.0)) - rec.train_seconds
        rec.training_eval = training_facts(run)
        self._final(m, run, rec)
        return rec

    def _evaluate_given(self, run: Any, labels: dict[tuple[str, str], str]) -> RunRecord:
        cfg = run.read_config()
        method = str(cfg.get("method"))
        label = labels[(method, _config_label(method, cfg))]
        rec = RunRecord(label, method, int(cfg.get("seed", 0)), str(run.path))
        return self._evaluate_existing(run, rec)


def _key_of(ev: Any, sampler: dict[str, Any]) -> str:
    from .evaluate import protocol_key

    proto = ev.protocol()
    proto["sampler"] = sampler
    return protocol_key(proto)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def spec_hash(spec: Any) -> str:
    """:func:`_config_label` of a resolved :class:`gflowzoo.session.RunSpec`."""
    return _config_label(spec.method, spec.to_data())
