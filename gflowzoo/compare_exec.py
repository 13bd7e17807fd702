"""The execution of a ``gflowzoo compare``: train each planned run through the run service
(:func:`gflowzoo.runner.train_run`), resuming or reusing what an earlier attempt left, and give every run its final
evaluation under one protocol (runs given with ``--runs`` are loaded with :func:`gflowzoo.runner.load_run`).

Only the standard library is imported at module level; torch loads inside the methods.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .compare_plan import ComparePlan, PlannedRun, config_label, slug, spec_hash
from .compare_results import CompareReport, RunRecord
from .errors import GflowzooError, UserError


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


def _key_of(ev: Any, sampler: dict[str, Any]) -> str:
    from .evaluate import protocol_key

    proto = ev.protocol()
    proto["sampler"] = sampler
    return protocol_key(proto)


class CompareExecutor:
    """Trains and evaluates the runs of a :class:`~gflowzoo.compare_plan.ComparePlan`, one at a time.

    Args:
        plan: the comparison's plan.
        metrics, n, extractor, extractor_weights, fit_extractor: the final evaluation protocol (defaults by data).
        reporter: where progress lines (``say``) and notes (``note``) go (a :class:`gflowzoo.runner.Reporter`);
            progress bars draw on ``reporter.console``.
        progress: draw progress bars.
        report: writes each finished run's ``compare.json``.
    """

    def __init__(self, plan: ComparePlan, *, metrics: list[str] | None = None, n: int | None = None,
                 extractor: str | None = None, extractor_weights: str | None = None, fit_extractor: bool = False,
                 reporter: Any = None, progress: bool = True, report: CompareReport | None = None) -> None:
        from .runner import Reporter

        self.plan = plan
        self.metrics, self.n, self.extractor = metrics, n, extractor
        self.extractor_weights, self.fit_extractor = extractor_weights, fit_extractor
        self.reporter = reporter or Reporter()
        self.progress = progress
        self.report = report or CompareReport()
        self.records: list[RunRecord] = []
        self.final_eval: Any = None
        self.training_eval: Any = None

    # -- evaluation protocol -----------------------------------------------------------------------------------
    def prepare_evaluation(self) -> None:
        """Build and prepare the final and in-training evaluators (extractor, reference features) up front."""
        from .data import DataHandle
        from .evaluate import Evaluator
        from .session import resolve_device

        plan = self.plan
        device = resolve_device(plan.device)
        data = DataHandle(plan.dataset, plan.data_root, registry=plan.registry)
        self.final_eval = Evaluator(data, self.metrics, n=self.n, seed=0, extractor=self.extractor,
                                    extractor_weights=self.extractor_weights, device=device, registry=plan.registry,
                                    fit_extractor=self.fit_extractor, say=self.reporter.note).prepare()
        if plan.eval_points:
            self.training_eval = Evaluator(data, None, seed=0, device=device, registry=plan.registry,
                                           purpose="training", say=self.reporter.note).prepare()

    def protocols(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The protocols of the final and of the in-training evaluations (``None`` where there is none)."""
        return tuple(ev.protocol() if ev is not None else None  # type: ignore[return-value]
                     for ev in (self.final_eval, self.training_eval))

    # -- the loop ----------------------------------------------------------------------------------------------
    def run_all(self, planned: list[PlannedRun]) -> bool:
        """Train and evaluate the ``planned`` runs, then evaluate the given ones, appending to :attr:`records`;
        a run that fails (other than by a user mistake) is recorded as failed and the rest go on. Returns whether
        the comparison was interrupted (Ctrl-C: it stops after the current step and keeps what is finished)."""
        jobs: list[tuple[str, Any]] = [("train", p) for p in planned] + [("given", g) for g in self.plan.given]
        for i, (kind, job) in enumerate(jobs):
            try:
                if kind == "train":
                    self._say(f"[{i + 1}/{len(jobs)}] {job.method} seed {job.seed}")
                    rec = self.train(job)
                else:
                    self._say(f"[{i + 1}/{len(jobs)}] evaluating {job.path}")
                    rec = self.evaluate_given(job)
            except KeyboardInterrupt:
                self._say("interrupted: writing a partial report with the finished runs")
                return True
            except UserError:
                raise
            except GflowzooError as exc:  # a diverged or broken run must not sink the comparison
                rec = self._failed(kind, job, exc)
            self.records.append(rec)
            if rec.status == "interrupted":
                return True
        return False

    def _failed(self, kind: str, job: Any, exc: Exception) -> RunRecord:
        if kind == "train":
            rec = RunRecord(job.label, job.method, job.seed, str(job.path))
        else:
            cfg = job.read_config()
            rec = RunRecord(str(cfg.get("method")), str(cfg.get("method")), int(cfg.get("seed", 0)), str(job.path))
        rec.status, rec.error = "failed", str(exc)
        self._say(f"  failed: {exc}")
        return rec

    def _say(self, text: str) -> None:
        self.reporter.say(text)

    def _same_configuration(self, method: str, saved: dict[str, Any], spec: Any) -> bool:
        """Whether a run's saved ``config.toml`` is the configuration ``spec`` asks for. A file written by an older
        gflowzoo lacks the fields added since: it is compared as this version resolves it (the file alone, no
        ``--set``), so that a new field at its default does not make an unchanged run look different."""
        if config_label(method, saved) == spec_hash(spec):
            return True
        from .session import resolve

        try:
            again = resolve(self.plan.registry, method, saved.get("dataset"), base=saved, sets=None, overrides={})
        except GflowzooError:  # the file no longer resolves: certainly not what this comparison asks for
            return False
        return spec_hash(again) == spec_hash(spec)

    # -- one run -----------------------------------------------------------------------------------------------
    def train(self, job: PlannedRun) -> RunRecord:
        """Train one planned run (or reuse or resume what an earlier attempt of the comparison left in its folder)
        and evaluate it; writes its ``compare.json`` once finished."""
        from .evaluate import TrainingEval
        from .runner import train_run
        from .runs import RunDir, load_checkpoint

        plan = self.plan
        method, seed, spec = job.method, job.seed, job.spec
        run = RunDir(job.path)
        rec = RunRecord(job.label, method, seed, str(run.path))
        payload = None
        if run.exists():
            saved = run.read_config()
            if not self._same_configuration(method, saved, spec):
                raise UserError(
                    f"{run.path} holds a {method} run with another configuration than this comparison asks for. "
                    "Use another --out, or the same --set options as before."
                )
        finished = self.report.finished_record(run)
        if finished is not None:
            return self._reuse(run, rec, finished)
        if run.exists() and run.checkpoints():
            _, payload = run.latest_checkpoint(method)
            spec = plan.resolve(method, seed, base=run.read_config())
            if plan.budgeted:  # the budget counts the wall clock, evaluations included
                spec.run.minutes = max(plan.budget_minutes - float(payload.get("elapsed", 0.0)) / 60, 1e-6)
            self._say(f"  resuming {run.path} from step {payload['step']}")
        budgeted = plan.budgeted
        hooks: list[Any] = []

        def evaluation(m: Any) -> Any:
            if self.training_eval is None:
                return None
            every = plan.eval_every_seconds()
            # paced evaluations at budget * k / points (k < points); the last one is made when training ends (with
            # a budget: when just enough of it is left, on the run's clock, which a resumed run continues)
            until = None if every is None else plan.budget_minutes * 60.0 - every / 2
            deadline = plan.budget_minutes * 60.0 if budgeted else None
            hooks.append(TrainingEval(self.training_eval, m, every, until, deadline=deadline))
            return hooks[-1]

        eval_every = None
        if self.training_eval is not None:
            eval_every = 1 if budgeted else max(1, plan.steps // plan.eval_points)
        out = train_run(plan.registry, run, spec, payload=payload, reporter=self.reporter, progress=self.progress,
                        evaluation=evaluation, eval_every=eval_every, budget_includes_eval=budgeted, announce=False)
        res, m = out.result, out.method
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
        hook = hooks[-1] if hooks else None
        if hook is not None and not budgeted and hook.last_step != res.step:  # close the curve at the end
            vals = hook.evaluate(res.step)
            run.log({"step": res.step, "time": round(res.elapsed, 3), "after_training": True,
                     **{f"eval/{k}": v for k, v in vals.items()}})
        rec.training_eval = training_facts(run)
        self._final(m, run, rec)
        self.report.record_finished(run, rec)
        return rec

    def _reuse(self, run: Any, rec: RunRecord, old: RunRecord) -> RunRecord:
        ef = Path(old.eval_file) if old.eval_file else None
        if ef and ef.is_file() and ef.name == f"eval-{_key_of(self.final_eval, old.sampler)}.json":
            self._say(f"  reusing {run.path} (finished earlier)")
            old.label = rec.label
            return old
        return self._evaluate_existing(run, rec)

    def _evaluate_existing(self, run: Any, rec: RunRecord) -> RunRecord:
        from .runner import load_run

        # its saved configuration, as trained
        _, m, payload = load_run(run.path, None, self.plan.device, registry=self.plan.registry,
                                 reporter=self.reporter)
        rec.steps = int(payload.get("step", 0))
        rec.train_seconds = _train_seconds_from_log(run, float(payload.get("elapsed", 0.0)))
        rec.eval_seconds_in_training = float(payload.get("elapsed", 0.0)) - rec.train_seconds
        rec.training_eval = training_facts(run)
        self._final(m, run, rec)
        return rec

    def evaluate_given(self, run: Any) -> RunRecord:
        """Evaluate a run given with ``--runs`` (not retrained)."""
        cfg = run.read_config()
        method = str(cfg.get("method"))
        label = self.plan.labels([])[self.plan.given_key(run)]
        rec = RunRecord(label, method, int(cfg.get("seed", 0)), str(run.path))
        return self._evaluate_existing(run, rec)

    # -- the final evaluation ----------------------------------------------------------------------------------
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
        self._say(f"  final evaluation of {name}: {ev.n:,} samples{at}{about} ({source})")
        console = self.reporter.console
        try:
            with SampleProgress(f"final evaluation {name}", console=console, transient=True,
                                enabled=self.progress and console is not None) as bar:
                bar.start(ev.n)
                res = ev.evaluate_method(method_obj, {"sets": self.plan.sets_for(rec.method)}, on_stage=bar.stage,
                                         on_progress=bar.update)
        except (GflowzooError, KeyboardInterrupt):
            raise
        except Exception as exc:  # e.g. non-finite samples: report the run as failed, keep comparing
            raise GflowzooError(f"evaluating {rec.label} seed {rec.seed} failed: {type(exc).__name__}: {exc}") from exc
        res.protocol["run"] = {"method": rec.method, "step": rec.steps, "train_seconds": rec.train_seconds,
                               "path": rec.path}
        rec.values, rec.timing, rec.sampler = res.values, res.timing, res.protocol.get("sampler", {})
        self._say(f"  final evaluation of {name} took {fmt_duration(res.timing['total_s'])}")
        rec.eval_file = str(res.write(run.path))
        if not any(r.label == rec.label and r.samples_image for r in self.records):  # one picture per label
            x = res.samples if method_obj.data.kind != "image" else res.samples[:64]
            picture = self.plan.out / "report-files" / f"samples-{slug(rec.label)}.png"
            rec.samples_image = str(save_samples(x, method_obj.data, picture, title=rec.label))
        rec.status = "done"
        for w in res.warnings:
            self.reporter.note(w)
