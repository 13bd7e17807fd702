"""The training loop shared by every method: progress bar, logging, sample grids, atomic checkpoints, resume,
Ctrl-C and NaN handling.

Determinism: all randomness of a step comes from one CPU ``torch.Generator`` (seeded from the run's seed) plus the
global torch RNG; both states are saved in every checkpoint. Training N steps, then resuming to 2N, gives the same
parameters as 2N steps straight.

Several processes (``torchrun``, :mod:`gflowzoo.distributed`): every rank runs this loop with the same generator
(the method draws the global batch and keeps its share), only rank 0 writes logs, checkpoints and sample grids and
draws the progress bar, and the decisions to stop (a NaN on any rank, Ctrl-C on any rank, rank 0's time budget) are
agreed on with one small all-reduce per step, so all ranks leave the loop at the same step.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import distributed as dist
from . import threads
from .errors import TrainingDiverged, UserError
from .runs import RunDir
from .session import RunSpec


@dataclass
class TrainResult:
    step: int
    elapsed: float
    checkpoint: str | None
    grid: str | None
    interrupted: bool = False
    stopped_by: str = "steps"


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    state = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict[str, Any]) -> None:
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except Exception:  # noqa: BLE001 - a different GPU count: keep going
            pass


class _Interrupt:
    """First Ctrl-C: finish the current step, save, exit. Second Ctrl-C: abort at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> _Interrupt:
        try:
            self._old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not in the main thread
            self._old = None
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def checkpoint_payload(spec: RunSpec, method: Any, gen: torch.Generator, elapsed: float) -> dict[str, Any]:
    return {
        "method": spec.method,
        "dataset": spec.dataset,
        "elapsed": float(elapsed),
        "rng": _rng_state(gen),
        "data": {"shape": list(method.data.shape), "kind": method.data.kind},
        "state": method.state_dict(),
    }


def train(
    run: RunDir,
    spec: RunSpec,
    method: Any,
    *,
    resume_payload: dict[str, Any] | None = None,
    console: Any = None,
    progress: bool = True,
    on_eval: Callable[[int, float], dict[str, float]] | None = None,
    budget_includes_eval: bool = False,
) -> TrainResult:
    """Train ``method`` inside ``run`` until ``spec.run.steps`` (total) or ``spec.run.minutes`` is reached.

    ``on_eval(step, elapsed)`` is called every ``run.eval_every`` steps (``elapsed``: the run's clock, seconds); what
    it returns is logged as ``eval/<key>``. The minutes budget counts training only (``gflowzoo train --minutes``):
    the time spent in ``on_eval`` is left out, unless ``budget_includes_eval`` (``gflowzoo compare --budget``: the
    budget bounds the wall clock of the training loop, evaluations included)."""
    loop = spec.run
    main = dist.is_main()
    dist.check_support(method, spec.method)
    gen = torch.Generator().manual_seed(spec.seed)
    step, elapsed_before = 0, 0.0
    if resume_payload is not None:
        method.load_state_dict(resume_payload["state"])
        _set_rng_state(gen, resume_payload["rng"])
        step = int(resume_payload["step"])
        elapsed_before = float(resume_payload.get("elapsed", 0.0))
    else:
        dist.broadcast_state(method)  # several processes: start from rank 0's weights
    if main:  # the log goes up to the step training starts from (lines of a killed attempt past it are dropped)
        run.truncate_metrics(step)
    trainable = getattr(method, "trainable", True)
    total = loop.steps if trainable else step
    budget = loop.minutes * 60.0 if loop.minutes > 0 else math.inf
    eval_spent = 0.0  # seconds spent in on_eval (excluded from the minutes budget unless budget_includes_eval)
    t0 = time.perf_counter()
    # on resume, the checkpoint training started from is the last good one until a new one is written
    start = [p for p in run.checkpoints() if p.name == f"step-{step:08d}.pt"] if resume_payload is not None else []
    last_ckpt: str | None = str(start[-1]) if start else None
    stopped_by = "steps"

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def save() -> str | None:
        if not main:
            return None
        return str(run.save_checkpoint(checkpoint_payload(spec, method, gen, elapsed()), step, loop.keep_checkpoints))

    def grid(name: str) -> str | None:
        if not main or loop.grid_size <= 0:  # grid_size 0: no sample grids (compare draws its own pictures)
            return None
        from .viz import samples_picture

        # sample grids use their own generator so that writing them does not change the training stream
        g = torch.Generator().manual_seed(spec.seed + 7919)
        x = method.sample(loop.grid_size, g)
        return str(run.save_grid(f"{name}.png", samples_picture(x, method.data, title=f"{spec.method} step {step}")))

    interrupted = False
    progress_ctx = _make_progress(console, progress and main)
    with _Interrupt() as intr, progress_ctx as prog:
        task = None
        if prog is not None:
            frac = _progress_fraction(step, total, 0.0, budget)
            task = prog.add_task(f"train {spec.method}", total=_BAR_UNITS, completed=_BAR_UNITS * frac,
                                 step=_step_text(step, total, budget), steps=step, logs="")
        window: list[float] = []
        while step < total:
            ts = time.perf_counter()
            threads.tick()  # follow the machine's load (gflowzoo.threads: auto policy only)
            logs = method.train_step(step, gen)
            step += 1
            window.append(time.perf_counter() - ts)
            bad = {k: v for k, v in logs.items() if isinstance(v, float) and not math.isfinite(v)}
            # this session's seconds counted against the minutes budget: training, and evaluations if they count
            trained = elapsed() - elapsed_before - (0.0 if budget_includes_eval else eval_spent)
            over = trained >= budget
            # one process: the local flags; several: any rank's NaN or Ctrl-C, rank 0's clock (one all-reduce)
            any_bad, stop, over = dist.any_flags(bool(bad), intr.requested, over, main_only=(2,))
            if any_bad:
                if main:
                    run.log({"step": step, "time": round(elapsed(), 3), **logs, "diverged": True})
                where = f" The last good checkpoint is {last_ckpt}." if last_ckpt else " No checkpoint was written."
                what = ", ".join(f"{k}={v}" for k, v in bad.items()) or "a non-finite value on another rank"
                raise dist.quiet(TrainingDiverged(
                    f"Training diverged at step {step}: {what}.{where} "
                    "Try a smaller learning rate or a stronger gradient penalty."
                ))
            if main and loop.log_every and (step % loop.log_every == 0 or step == total):
                rate = len(window) / max(sum(window), 1e-9)
                run.log({"step": step, "time": round(elapsed(), 3), "it_per_s": round(rate, 3),
                        "threads": torch.get_num_threads(), **logs})
                window.clear()
            if prog is not None:
                desc = " ".join(f"{k}={v:.4g}" for k, v in list(logs.items())[:3] if isinstance(v, (int, float)))
                frac = _progress_fraction(step, total, trained, budget)
                prog.update(task, completed=_BAR_UNITS * frac, description=spec.method, logs=desc,
                            step=_step_text(step, total, budget), steps=step)
            if main and on_eval is not None and loop.eval_every and step % loop.eval_every == 0:
                t_eval = elapsed()
                evals = on_eval(step, t_eval)
                eval_spent += elapsed() - t_eval
                if evals:  # a hook paced by wall-clock time returns {} when no evaluation is due
                    run.log({"step": step, "time": round(t_eval, 3), **{f"eval/{k}": v for k, v in evals.items()}})
            if loop.checkpoint_every and step % loop.checkpoint_every == 0 and step < total:
                last_ckpt = save()
            if loop.sample_every and step % loop.sample_every == 0 and step < total:
                grid(f"step-{step:08d}")
            if stop:
                interrupted = True
                break
            if over and step < total:
                stopped_by = "minutes"
                break
    if not interrupted and main:  # sampler statistics go into rank 0's final checkpoint
        method.finalize(torch.Generator().manual_seed(spec.seed + 104729))
    last_ckpt = save()
    grid_path = None if interrupted else grid("final")
    return TrainResult(step, elapsed(), last_ckpt, grid_path, interrupted, "interrupt" if interrupted else stopped_by)


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


#: Resolution of the progress bar (it shows a fraction: of the steps, or of the minutes budget).
_BAR_UNITS = 10_000


def _progress_fraction(step: int, total: int, seconds: float, budget: float) -> float:
    """How far training is, in [0, 1]: the larger of the step fraction and the fraction of the minutes budget spent
    (``budget`` in seconds, ``inf`` without one), so the bar and its time estimate follow whichever stops the run."""
    frac = step / max(total, 1)
    if math.isfinite(budget) and budget > 0:
        frac = max(frac, seconds / budget)
    return min(frac, 1.0)


def _step_text(step: int, total: int, budget: float) -> str:
    """``step 120/1000``, or ``step 120`` when a minutes budget will probably stop the run first."""
    return f"step {step}" if math.isfinite(budget) else f"step {step}/{total}"


def _make_progress(console: Any, enabled: bool) -> Any:
    """A rich progress bar on a terminal, :class:`_PlainProgress` lines elsewhere, nothing when not ``enabled``."""
    if not enabled:
        return _NoProgress()
    from rich import get_console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = console if console is not None else get_console()
    if not console.is_terminal:
        from .progress import PlainProgress

        return PlainProgress(console)
    return Progress(
        TextColumn("{task.description} {task.fields[logs]}"),
        BarColumn(),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def check_resume_target(spec: RunSpec, payload: dict[str, Any]) -> None:
    if int(payload["step"]) > spec.run.steps and spec.run.minutes <= 0:
        raise UserError(
            f"The run is at step {payload['step']}, past --steps {spec.run.steps}. "
            "--steps is the run's total; give a larger value to continue."
        )
