"""The run service: create or resume a run, the one training sequence, and loading a trained run back.

Every client goes through here: the CLI (``gflowzoo train``, ``sample``, ``evaluate``), ``gflowzoo compare``, the
contract tests (:class:`gflowzoo.testing.MethodContract`) and plugin commands. Nothing here imports the CLI: what a
client should show goes through a :class:`Reporter` given as ``reporter=``; without one, the reporter of the
innermost :func:`reporting` block (the CLI opens one around every command, printing on its rich consoles), else one
that prints nothing.

The pieces, in the order ``gflowzoo train`` uses them:

- :func:`prepare_run`: the resolved :class:`~gflowzoo.session.RunSpec` and the :class:`~gflowzoo.runs.RunDir` of a
  new run, or of the run to resume, after every check that refuses to overwrite or to change a run.
- :func:`resume_payload`: the checkpoint a resumed run continues from (``None``: from step 0).
- :func:`train_run`: build the method and touch the data (nothing is written before both work), write
  ``config.toml``, train. Under ``torchrun`` every rank runs it; rank 0 writes.
- :func:`load_run`: rebuild a trained method from a run directory (``sample``, ``evaluate``, ``compare --runs``).
- :func:`evaluate_run`: evaluate a trained run and write its ``eval-<protocol key>.json`` (``gflowzoo evaluate``).

Only the standard library is imported at module level; torch loads inside the functions.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError, UserError
from .paths import check_writable

__all__ = ["PrintReporter", "Reporter", "TrainOutcome", "evaluate_run", "load_run", "prepare_run", "reporting",
           "resume_payload", "train_run"]


class Reporter:
    """Where the run service's messages go. The base class drops them all; subclass it to show them.

    - :meth:`say`: progress and results (the CLI prints them on stdout).
    - :meth:`warn`: something went wrong but work goes on, as ``label: detail`` (the CLI prints it on stderr with the
      label in yellow).
    - :meth:`note`: advice (the CLI prints ``note: <text>`` on stderr).

    :attr:`console` is the rich console that progress bars draw on (``None``: rich's default console)."""

    console: Any = None

    def say(self, text: str) -> None:
        """A line of progress or a result."""

    def warn(self, text: str) -> None:
        """A warning, ``label: detail``."""

    def note(self, text: str) -> None:
        """A piece of advice."""


class PrintReporter(Reporter):
    """A :class:`Reporter` that prints everything with :func:`print` (warnings and notes on stderr)."""

    def say(self, text: str) -> None:
        print(text)

    def warn(self, text: str) -> None:
        import sys

        print(text, file=sys.stderr)

    def note(self, text: str) -> None:
        import sys

        print(f"note: {text}", file=sys.stderr)


_default: list[Reporter] = [Reporter()]


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Within the block, the run service's functions called without a ``reporter`` report through ``reporter`` (the
    CLI wraps every command in it, so that plugin commands' calls report on its consoles too)."""
    _default.append(reporter)
    try:
        yield reporter
    finally:
        _default.pop()


def _reporter(reporter: Reporter | None) -> Reporter:
    return reporter if reporter is not None else _default[-1]


def _registry(registry: Any) -> Any:
    if registry is not None:
        return registry
    from .plugins import get_registry

    return get_registry()


# ---------------------------------------------------------------------------------------------------------------
# create or resume
# ---------------------------------------------------------------------------------------------------------------


def prepare_run(registry: Any, method: str, *, dataset: str | None = None, config: Path | None = None,
                sets: list[str] | None = None, steps: int | None = None, minutes: float | None = None,
                out: Path | None = None, device: str | None = None, seed: int | None = None, resume: bool = False,
                preset: str | None = None, data_root: Path | None = None,
                eval_every: int | None = None) -> tuple[Any, Any]:
    """The resolved :class:`~gflowzoo.session.RunSpec` and the :class:`~gflowzoo.runs.RunDir` of a new run (in
    ``out``, default ``runs/<method>-<data>-<time>``) or, with ``resume``, of the run in ``out`` to continue.

    The arguments are those of ``gflowzoo train`` (``steps`` and ``minutes``: the run's total steps and its time
    budget; ``sets``: ``--set`` items). Nothing is written. Refused, with a :class:`UserError` naming the way out:
    a new run in a directory that holds a run or anything else that is not blank
    (:meth:`~gflowzoo.runs.RunDir.is_blank`), an unwritable directory, and a resume without a run, of another method,
    or that changes anything but ``run.*`` keys, the device and the data root."""
    from .runs import RunDir, default_run_dir
    from .session import resolve

    registry.get("method", method)
    overrides: dict[str, Any] = {}
    run_over: dict[str, Any] = {}
    if steps is not None and minutes is not None:
        run_over.update(steps=steps, minutes=minutes)
    elif steps is not None:
        run_over.update(steps=steps, minutes=0.0)
    elif minutes is not None:
        run_over.update(minutes=minutes, steps=10**9)
    if eval_every is not None:
        run_over["eval_every"] = eval_every
    if run_over:
        overrides["run"] = run_over
    if device is not None:
        overrides["device"] = device
    if seed is not None:
        overrides["seed"] = seed
    if data_root is not None:
        overrides["data_root"] = str(data_root)

    if resume:
        if out is None:
            raise UserError("--resume needs --out RUN_DIR (the run to continue).")
        run = RunDir(out)
        if not run.path.exists():
            raise UserError(f"Run directory not found: {out}. To start a new run there, leave out --resume.")
        if run.is_blank():  # empty, or what a run killed before it wrote its configuration leaves
            raise UserError(f"{out} holds no run to continue (no config.toml: none was started there, or it was "
                            "stopped before it wrote its configuration); start it without --resume.")
        run.require()
        saved = run.read_config()
        if saved.get("method") != method:
            raise UserError(f"{out} is a run of method {saved.get('method')!r}, not {method!r}.")
        if dataset is not None and dataset != saved.get("dataset"):
            raise UserError(f"{out} was trained on {saved.get('dataset')!r}; --dataset {dataset} cannot change that.")
        bad = [s for s in (sets or []) if not s.split("=", 1)[0].strip().startswith(("run.", "device", "data_root"))]
        if bad or config is not None:
            raise UserError(
                "On --resume only run.* keys, --steps/--minutes, --device and --data-root may change; "
                f"the method's configuration is fixed by {run.config_path}."
            )
        spec = _resolve_saved(registry, run, saved, sets, overrides)
    else:
        run = RunDir(out) if out is not None else None
        spec = resolve(registry, method, dataset, config_file=config, sets=sets, overrides=overrides, preset=preset)
        if run is None:
            run = RunDir(default_run_dir(method, spec.dataset))
        check_writable(run.path, "the run directory", folder=True)
        if run.exists():
            raise UserError(f"{run.path} already exists and is not empty. Use --resume to continue it, or another --out.")
        if not run.is_blank():  # empty folders and an empty log (a run killed at its start) are no loss
            raise UserError(f"{run.path} already exists, is not empty and holds no gflowzoo run (no config.toml). "
                            "Use another --out.")
    return spec, run


def _no_checkpoint_error(run: Any, method: str, exc: Any) -> CheckpointError:
    """The error for a run without a checkpoint that loads (a :class:`~gflowzoo.runs.NoCheckpoint`), with the
    command that continues it."""
    resume = f"`gflowzoo train {method} --out {shlex.quote(str(run.path))} --resume`"
    if not exc.damaged:
        return CheckpointError(f"{run.path} has no checkpoint yet (it was stopped before its first one); "
                               f"continue it with {resume}.")
    return CheckpointError(f"Every checkpoint of {run.path} is damaged ({'; '.join(exc.damaged)}); move them out of "
                           f"{run.checkpoint_dir}, then start the run again from step 0 with {resume}.")


def resume_payload(run: Any, spec: Any, reporter: Reporter | None = None) -> dict[str, Any] | None:
    """The checkpoint a resumed run continues from (its newest one that loads; each newer, damaged one is reported
    through ``reporter.warn``), or ``None`` (start from step 0 with the saved configuration) when the run has none
    yet. First removes the temporary files that a kill in the middle of a write left. A checkpoint past the
    run's ``--steps`` is a :class:`UserError`; a run whose every checkpoint is damaged, a :class:`CheckpointError`."""
    from .runs import NoCheckpoint
    from .trainer import check_resume_target

    reporter = _reporter(reporter)
    run.remove_temp_files()  # what a kill in the middle of a write left
    if not run.checkpoints():
        reporter.say(f"{run.path} has no checkpoint yet (killed before its first one?): starting it from step 0 "
                     "with its saved configuration.")
        return None
    try:
        path, payload = run.latest_checkpoint(spec.method)
    except NoCheckpoint as exc:
        raise _no_checkpoint_error(run, spec.method, exc) from None
    for skipped in payload.get("skipped", []):
        reporter.warn(f"skipped a damaged checkpoint: {skipped}")
    check_resume_target(spec, payload)
    reporter.say(f"resuming {run.path} from step {payload['step']} ({path.name})")
    return payload


# ---------------------------------------------------------------------------------------------------------------
# the training sequence
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TrainOutcome:
    """What :func:`train_run` did: the trainer's :class:`~gflowzoo.trainer.TrainResult` (``step``, ``elapsed``,
    ``checkpoint``, ``grid``, ``interrupted``), the trained ``method``, its ``device`` and where it ran (``where``:
    the device, or ``N processes (device)``)."""

    result: Any
    method: Any
    device: str
    where: str


def _device_of_this_process(spec: Any) -> str:
    """The device of this process: the spec's, resolved; under torchrun with CUDA, the GPU of this local rank."""
    from . import distributed as dist
    from .session import resolve_device

    device = resolve_device(spec.device)
    if dist.world() > 1 and device.startswith("cuda"):  # one GPU per process
        import torch

        if dist.local_rank() >= torch.cuda.device_count():
            raise UserError(f"Process {dist.local_rank()} of this machine has no GPU of its own "
                            f"({torch.cuda.device_count()} visible): start at most that many processes per "
                            "machine, or train on the CPU (--device cpu).")
        device = f"cuda:{dist.local_rank()}"
    return device


def train_run(registry: Any, run: Any, spec: Any, *, payload: dict[str, Any] | None = None,
              reporter: Reporter | None = None, progress: bool = True,
              evaluation: Callable[[Any], Any] | None = None, eval_every: int | None = None,
              budget_includes_eval: bool = False, announce: bool = True) -> TrainOutcome:
    """The training sequence of every run: build the method and touch its data, then write ``config.toml`` (so a
    failed start leaves no run directory behind), then train up to ``spec.run.steps`` or ``spec.run.minutes``.

    Args:
        registry: the component registry (``None``: the loaded plugins').
        run: the :class:`~gflowzoo.runs.RunDir` (from :func:`prepare_run`, or any folder).
        spec: the resolved :class:`~gflowzoo.session.RunSpec`; written as the run's ``config.toml``.
        payload: the checkpoint to continue from (:func:`resume_payload`); ``None`` starts from step 0.
        reporter: where messages go (the ``training ...`` line when ``announce``; in-training evaluation notes).
        progress: draw a progress bar (on ``reporter.console``).
        evaluation: ``evaluation(method) -> on_eval`` builds the in-training evaluation hook (see
            :func:`gflowzoo.trainer.train`) for the built method, before anything is written, so that a missing
            extractor stops the run at its start. Called on rank 0 only. ``None``: the cheap evaluation of
            :func:`gflowzoo.evaluate.training_hook` when ``spec.run.eval_every`` is set, else none.
        eval_every: the loop's evaluation period for this session only (``config.toml`` keeps the spec's).
        budget_includes_eval: the minutes budget counts in-training evaluations too (``compare --budget``).
        announce: say ``training <method> on <data> (<preset>) on <device>; run: <path>`` before training.

    Several processes (``torchrun``): every rank calls this with the same spec and payload; the method is built on
    every rank (one GPU per process) and any rank's failure stops every rank; rank 0 writes the configuration and
    the files of the run (:func:`gflowzoo.trainer.train`)."""
    from . import distributed as dist
    from .session import build_method
    from .trainer import train

    registry = _registry(registry)
    reporter = _reporter(reporter)
    main = dist.is_main()

    def build() -> tuple[str, Any, Any]:
        # build the method and touch the data before writing anything, so a failed start leaves no run directory
        device = _device_of_this_process(spec)
        method = build_method(registry, spec, device, fit_autoencoder=True, say=reporter.say)
        _ = method.data.shape  # fail early, with a clear message, when the data is missing
        dist.check_support(method, spec.method)
        on_eval = None
        if main:  # in-training evaluation (rank 0); a missing extractor fails here
            if evaluation is not None:
                on_eval = evaluation(method)
            elif spec.run.eval_every:
                from .evaluate import training_hook

                on_eval = training_hook(spec, method, registry, say=reporter.say)
        return device, method, on_eval

    device, method, on_eval = dist.agree(build)  # any rank's failure stops every rank
    if main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(spec.to_data())
    if eval_every is not None:
        spec.run.eval_every = eval_every
    where = f"{dist.world()} processes ({device})" if dist.world() > 1 else device
    if announce:
        reporter.say(f"training {spec.method} on {spec.dataset} ({spec.preset}) on {where}; run: {run.path}")
    result = train(run, spec, method, resume_payload=payload, console=reporter.console, progress=progress,
                   on_eval=on_eval, budget_includes_eval=budget_includes_eval)
    return TrainOutcome(result, method, device, where)


# ---------------------------------------------------------------------------------------------------------------
# loading a trained run
# ---------------------------------------------------------------------------------------------------------------


def _resolve_saved(reg: Any, run: Any, saved: dict[str, Any], sets: list[str] | None,
                   overrides: dict[str, Any]) -> Any:
    """The spec of a saved run (``config.toml`` plus ``--set`` items and ``overrides``). An invalid value is a
    :class:`ConfigError` naming the file when the file is at fault; a bad ``--set`` item is reported as itself."""
    from .session import resolve

    def resolve_with(extra: list[str] | None) -> Any:
        return resolve(reg, saved.get("method"), saved.get("dataset"), base=saved, sets=extra, overrides=overrides)

    try:
        return resolve_with(sets)
    except ConfigError as exc:
        blame = exc
        if sets:  # the --set items or the saved file: the file alone decides
            try:
                resolve_with(None)
            except ConfigError as file_exc:
                blame = file_exc
            else:
                raise
        raise ConfigError(f"{run.config_path}: {blame}") from None


def load_run(run_dir: str | Path, sets: list[str] | None = None, device: str | None = None,
             checkpoint: str | Path | None = None, *, registry: Any = None,
             reporter: Reporter | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild a trained method from a run directory: ``(spec, method, payload)``. ``sets`` may change sampling
    options (any key of the method's config) without retraining; ``device`` overrides the saved one.

    ``payload["checkpoint_path"]`` is the checkpoint file used. Without ``checkpoint``, that is the newest one that
    loads: each newer, damaged one is skipped with a one-line warning through ``reporter.warn`` (on rank 0;
    ``payload["skipped"]`` holds why). An invalid value in the run's ``config.toml`` is a :class:`ConfigError` naming
    the file; a run without a checkpoint that loads, a :class:`CheckpointError` with the command that continues it."""
    from . import distributed as dist
    from .data import DataHandle
    from .runs import NoCheckpoint, RunDir, load_checkpoint
    from .session import build_method, resolve_device

    registry = _registry(registry)
    reporter = _reporter(reporter)
    run = RunDir(run_dir).require()
    saved = run.read_config()
    method = saved.get("method")
    if not isinstance(method, str):
        raise UserError(f"{run.config_path} names no method.")
    overrides = {"device": device} if device else {}
    spec = _resolve_saved(registry, run, saved, sets, overrides)
    if checkpoint is not None:
        path, payload = Path(checkpoint), load_checkpoint(checkpoint, method)
    else:
        try:
            path, payload = run.latest_checkpoint(method)
        except NoCheckpoint as exc:
            raise _no_checkpoint_error(run, method, exc) from None
        if dist.is_main():
            for skipped in payload.get("skipped", []):
                reporter.warn(f"warning: skipped a damaged checkpoint: {skipped}")
    payload["checkpoint_path"] = str(path)
    dev = resolve_device(spec.device)
    data = DataHandle(spec.dataset, spec.data_root, tuple(payload["data"]["shape"]), payload["data"]["kind"], registry)
    m = build_method(registry, spec, dev, data)
    m.load_state_dict(payload["state"])
    return spec, m, payload


# ---------------------------------------------------------------------------------------------------------------
# evaluating a trained run
# ---------------------------------------------------------------------------------------------------------------


def evaluate_run(
    run_dir: str | Path,
    *,
    metrics: list[str] | None = None,
    n: int | None = None,
    seed: int = 0,
    extractor: str | None = None,
    extractor_weights: str | None = None,
    ref_split: str | None = None,
    sets: list[str] | None = None,
    device: str | None = None,
    fit_extractor: bool = False,
    say: Callable[[str], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    evaluator_ready: Callable[[Any], None] | None = None,
    write: bool = True,
    on_progress: Callable[[float], None] | None = None,
    reporter: Reporter | None = None,
) -> tuple[Any, Path | None]:
    """Evaluate the latest checkpoint of a run directory, write ``RUN_DIR/eval-<protocol key>.json`` and return
    ``(result, path)``: an :class:`gflowzoo.evaluate.EvalResult` and the file (``None`` unless ``write``).

    The arguments are those of ``gflowzoo evaluate`` (see :class:`gflowzoo.evaluate.Evaluator`); ``say`` receives the
    evaluator's notes, ``on_stage``, ``on_progress`` report progress (see
    :meth:`gflowzoo.evaluate.Evaluator.evaluate_method`), ``evaluator_ready(evaluator)`` is called once the protocol
    is prepared. The run is loaded by :func:`load_run`, which reports a skipped damaged checkpoint through
    ``reporter``. Several processes (torchrun): every rank samples its share; rank 0 computes the metrics and writes,
    the other ranks return ``(None, None)``."""
    from . import distributed as dist
    from .evaluate import Evaluator
    from .session import resolve_device

    spec, method, payload = dist.agree(lambda: load_run(Path(run_dir), sets, device, reporter=reporter))
    ev = Evaluator(method.data, metrics, n=n, seed=seed, extractor=extractor, extractor_weights=extractor_weights,
                   ref_split=ref_split, device=resolve_device(spec.device), fit_extractor=fit_extractor, say=say)
    # several processes (torchrun): rank 0 prepares the metrics once, every rank samples its share
    n_eval = dist.on_main(lambda: ev.prepare().n)
    if not dist.is_main():
        dist.sample_shards(method, n_eval, seed)
        return None, None  # type: ignore[return-value]
    if evaluator_ready is not None:
        evaluator_ready(ev)
    res = ev.evaluate_method(method, {"sets": list(sets or [])}, on_stage, shard=True, on_progress=on_progress)
    res.protocol["run"] = {"method": spec.method, "step": int(payload.get("step", 0)),
                           "train_seconds": float(payload.get("elapsed", 0.0)), "path": str(Path(run_dir)),
                           "checkpoint": payload.get("checkpoint_path")}
    path = res.write(run_dir) if write else None
    return res, path
