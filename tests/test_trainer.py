"""The shared training loop: resume equivalence, NaN handling, Ctrl-C, logs, time budget."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from gflowzoo.errors import TrainingDiverged, UserError
from gflowzoo.runs import RunDir, load_checkpoint
from gflowzoo.session import build_method, resolve
from gflowzoo.testing import assert_states_equal
from gflowzoo.trainer import check_resume_target, train
from helpers_plugins import TESTS_DIR, fit_gaussian_dist, subprocess_env

TINY = ["batch_size=16", "run.log_every=1", "run.grid_size=16", "run.checkpoint_every=0"]


def _train(reg, path, steps, sets=(), resume=False):
    run = RunDir(path)
    payload = None
    if resume:
        spec = resolve(reg, "fit-gaussian", base=run.read_config(), sets=[f"run.steps={steps}", *sets])
        _, payload = run.latest_checkpoint("fit-gaussian")
        check_resume_target(spec, payload)
    else:
        spec = resolve(reg, "fit-gaussian", "toy-8gaussians", sets=[*TINY, *sets, f"run.steps={steps}"],
                       overrides={"device": "cpu"}, preset="cpu-quick")
        run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(spec.to_data())
    method = build_method(reg, spec, "cpu")
    result = train(run, spec, method, resume_payload=payload, progress=False)
    return method, result, run


def test_resume_equivalence_bit_for_bit(fit_registry, tmp_path):
    straight, res, run_s = _train(fit_registry, tmp_path / "a", 6)
    assert res.step == 6 and not res.interrupted and res.stopped_by == "steps"
    _, half, _ = _train(fit_registry, tmp_path / "b", 3)
    assert half.step == 3
    resumed, res2, run_r = _train(fit_registry, tmp_path / "b", 6, resume=True)
    assert res2.step == 6
    assert_states_equal(straight.state_dict(), resumed.state_dict(), atol=0.0)
    assert torch.equal(straight.mean, resumed.mean) and torch.equal(straight.log_std, resumed.log_std)
    # the training has actually moved the parameters (the equality above is not between two initial states)
    assert float(straight.mean.detach().abs().sum()) > 0
    # the resumed log is the straight log: steps 1..6, each once
    steps = [r["step"] for r in run_r.read_metrics()]
    assert steps == [1, 2, 3, 4, 5, 6] == [r["step"] for r in run_s.read_metrics()]
    loss_s = [r["loss"] for r in run_s.read_metrics()]
    loss_r = [r["loss"] for r in run_r.read_metrics()]
    assert loss_s == loss_r


def test_resume_past_steps_is_refused(fit_registry, tmp_path):
    _train(fit_registry, tmp_path / "a", 4)
    with pytest.raises(UserError, match="--steps is the run's total"):
        _train(fit_registry, tmp_path / "a", 2, resume=True)


def test_metrics_lines_have_step_and_time(fit_registry, tmp_path):
    _, _, run = _train(fit_registry, tmp_path / "a", 4, sets=["run.log_every=2"])
    lines = run.metrics_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [2, 4]
    for r in records:
        assert isinstance(r["time"], float) and r["time"] >= 0 and "loss" in r and r["it_per_s"] > 0
    assert records[1]["time"] >= records[0]["time"]


def test_sample_grids_do_not_change_the_training_stream(fit_registry, tmp_path):
    a, _, _ = _train(fit_registry, tmp_path / "a", 4)
    b, res, run = _train(fit_registry, tmp_path / "b", 4, sets=["run.sample_every=1", "run.checkpoint_every=2",
                                                                 "run.keep_checkpoints=1"])
    assert_states_equal(a.state_dict(), b.state_dict(), atol=0.0)
    assert sorted(p.name for p in run.samples_dir.iterdir()) == [
        "final.png", "step-00000001.png", "step-00000002.png", "step-00000003.png"]
    assert [p.name for p in run.checkpoints()] == ["step-00000004.pt"]
    assert res.grid == str(run.samples_dir / "final.png")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(fit_registry, tmp_path):
    with pytest.raises(TrainingDiverged) as exc:
        _train(fit_registry, tmp_path / "a", 10, sets=["nan_at=5", "run.checkpoint_every=2", "run.keep_checkpoints=5"])
    run = RunDir(tmp_path / "a")
    msg = str(exc.value)
    assert "diverged at step 5" in msg and "loss=nan" in msg and "step-00000004.pt" in msg
    assert [p.name for p in run.checkpoints()] == ["step-00000002.pt", "step-00000004.pt"]
    payload = load_checkpoint(run.checkpoints()[-1], "fit-gaussian")
    assert payload["step"] == 4 and torch.isfinite(payload["state"]["mean"]).all()
    last = run.read_metrics()[-1]
    assert last["step"] == 5 and last["diverged"] is True and last["loss"] == "nan"
    # a resume from the kept checkpoint with a fixed config would work: the checkpoint is complete
    assert set(payload) >= {"state", "rng", "step", "method", "data"}


def test_nan_after_resume_names_the_checkpoint_it_started_from(fit_registry, tmp_path):
    _train(fit_registry, tmp_path / "a", 3)
    with pytest.raises(TrainingDiverged) as exc:
        _train(fit_registry, tmp_path / "a", 10, sets=["nan_at=5"], resume=True)
    assert "diverged at step 5" in str(exc.value) and "step-00000003.pt" in str(exc.value)
    assert [p.name for p in RunDir(tmp_path / "a").checkpoints()] == ["step-00000003.pt"]


def test_time_budget_stops_training(fit_registry, tmp_path):
    _, res, run = _train(fit_registry, tmp_path / "a", 1000, sets=["run.minutes=1e-9"])
    assert res.stopped_by == "minutes" and res.step < 1000
    assert run.checkpoints() and res.grid is not None


def test_progress_follows_the_budget_that_stops_the_run():
    from gflowzoo.trainer import _progress_fraction, _step_text

    inf = float("inf")
    assert _progress_fraction(250, 1000, 5.0, inf) == 0.25  # steps only
    assert _progress_fraction(10, 10**6, 30.0, 60.0) == 0.5  # the minutes budget binds
    assert _progress_fraction(900, 1000, 6.0, 60.0) == 0.9  # the steps bind
    assert _progress_fraction(10, 1000, 90.0, 60.0) == 1.0
    assert _step_text(7, 1000, inf) == "step 7/1000" and _step_text(7, 10**6, 60.0) == "step 7"


def test_progress_bar_under_a_minutes_budget(fit_registry, tmp_path):
    """The bar of a time-budgeted run shows the step without the (huge) step total, and no absurd time left."""
    from rich.console import Console

    console = Console(record=True, force_terminal=True, width=120)
    spec = resolve(fit_registry, "fit-gaussian", "toy-8gaussians", sets=[*TINY, "run.steps=1000000",
                   "run.minutes=0.004"], overrides={"device": "cpu"}, preset="cpu-quick")
    run = RunDir(tmp_path / "p")
    run.path.mkdir(parents=True)
    run.write_config(spec.to_data())
    res = train(run, spec, build_method(fit_registry, spec, "cpu"), console=console, progress=True)
    text = console.export_text()
    assert res.stopped_by == "minutes"
    assert f"step {res.step}" in text and "/1000000" not in text
    clocks = re.findall(r"\b(\d+):(\d\d):(\d\d)\b", text)  # elapsed and remaining, h:mm:ss
    assert clocks and all(int(h) == 0 and int(m) == 0 for h, m, _ in clocks), clocks


def test_progress_without_a_terminal_prints_plain_lines(fit_registry, tmp_path, monkeypatch):
    """Where the bar cannot be drawn (a console that is not a terminal) training prints a plain line at intervals and
    one at the end, with the step, the fraction, the rate, the clocks and the logs."""
    import io

    from rich.console import Console

    from gflowzoo import progress

    def run_with(seconds, name):
        monkeypatch.setattr(progress, "PLAIN_PROGRESS_SECONDS", seconds)
        out = io.StringIO()
        console = Console(file=out, width=60)  # narrower than a line: lines must not wrap
        assert not console.is_terminal
        spec = resolve(fit_registry, "fit-gaussian", "toy-8gaussians", sets=[*TINY, "run.steps=5"],
                       overrides={"device": "cpu"}, preset="cpu-quick")
        run = RunDir(tmp_path / name)
        run.path.mkdir(parents=True)
        run.write_config(spec.to_data())
        train(run, spec, build_method(fit_registry, spec, "cpu"), console=console, progress=True)
        return out.getvalue().splitlines()

    lines = run_with(0.0, "every-step")  # every update is due: one line per step
    assert len(lines) == 5, lines
    pattern = (r"fit-gaussian step (\d)/5 \((\d+)%\) [\d.]+ it/s elapsed 0:00:\d\d eta (0:00:\d\d|\?) "
               r"loss=-?[\d.]+")
    matches = [re.fullmatch(pattern, line) for line in lines]
    assert all(matches), lines
    assert [(int(m[1]), int(m[2])) for m in matches] == [(1, 20), (2, 40), (3, 60), (4, 80), (5, 100)]
    assert matches[-1][3] == "0:00:00"  # nothing left at the end
    assert "\x1b" not in "".join(lines)  # no terminal control codes

    lines = run_with(3600.0, "at-the-end")  # no interval elapses: only the final line
    assert len(lines) == 1 and lines[0].startswith("fit-gaussian step 5/5 (100%)"), lines


def test_plain_progress_estimate_follows_the_minutes_budget(monkeypatch):
    """The plain line's time left comes from the same fraction as the bar's: a minutes budget that binds first."""
    import io

    from rich.console import Console

    from gflowzoo import progress, trainer

    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(progress, "PLAIN_PROGRESS_SECONDS", 30.0)
    out = io.StringIO()
    budget, total = 120.0, 10**6
    with progress.PlainProgress(Console(file=out, width=200)) as prog:
        task = prog.add_task("train m", total=trainer._BAR_UNITS, completed=0.0, step="step 0", steps=0, logs="")
        for step, now in [(10, 110.0), (20, 120.0), (30, 130.0)]:  # 1 step/s; 30 s of a 120 s budget at step 30
            clock[0] = now
            frac = trainer._progress_fraction(step, total, now - 100.0, budget)
            prog.update(task, completed=trainer._BAR_UNITS * frac, description="m", logs="loss=1",
                        step=trainer._step_text(step, total, budget), steps=step)
    assert out.getvalue().splitlines() == ["m step 30 (25%) 1 it/s elapsed 0:00:30 eta 0:01:30 loss=1"]


def _wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_completes(fit_registry, tmp_path):
    site = fit_gaussian_dist(tmp_path / "site")
    env = subprocess_env(site, TESTS_DIR, load="fitgauss")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gflowzoo", "train", "fit-gaussian", "--dataset", "toy-8gaussians", "--out",
           str(out), "--no-progress", "--steps", "100000", "--set", "run.log_every=1", "--set", "sleep=0.02",
           "--set", "batch_size=8", "--set", "run.grid_size=4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = _wait_for(lambda: (out / "metrics.jsonl").exists() and len(
            (out / "metrics.jsonl").read_text().splitlines()) >= 3, timeout=60)
        assert started, proc.stdout.read() if proc.poll() is not None else "training did not start"
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted at step" in output and "--resume" in output and "Traceback" not in output
    run = RunDir(out)
    ckpt = run.checkpoints()[-1]
    stopped = load_checkpoint(ckpt, "fit-gaussian")["step"]
    assert stopped >= 3
    target = stopped + 2
    # resume in-process (the same CLI code path, without paying a second interpreter start)
    from typer.testing import CliRunner

    from gflowzoo.cli import app

    done = CliRunner().invoke(app, ["train", "fit-gaussian", "--out", str(out), "--resume", "--no-progress",
                                    "--steps", str(target)])
    assert done.exit_code == 0, done.output
    flat = " ".join(done.output.split())  # rich wraps long lines at the terminal width
    assert f"resuming {out} from step {stopped}" in flat or f"resuming {out} from step {stopped}".replace(" ", "") in flat.replace(" ", "")
    assert load_checkpoint(run.checkpoints()[-1], "fit-gaussian")["step"] == target
    assert (out / "samples" / "final.png").is_file()
    assert [r["step"] for r in run.read_metrics()] == list(range(1, target + 1))
