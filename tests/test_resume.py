"""Resuming after a kill at any moment: a run without a checkpoint yet, a blank run directory, damaged checkpoints, a
log that runs past the checkpoint, and ``kill -9`` at random moments of a real ``gflowzoo train`` process."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from gflowzoo.cli import app
from gflowzoo.runs import RunDir, load_checkpoint
from gflowzoo.session import build_method, resolve
from gflowzoo.testing import assert_states_equal
from gflowzoo.trainer import train
from helpers_plugins import TESTS_DIR, fit_gaussian_dist, subprocess_env

TOY = ["--dataset", "toy-8gaussians", "--no-progress", "--seed", "3", "--set", "batch_size=8",
       "--set", "run.grid_size=4", "--set", "run.log_every=1"]


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})
    assert "Traceback" not in result.output, result.output
    return result


def flat(text: str) -> str:
    return " ".join(text.split())


def check_log(run: RunDir) -> list[int]:
    """The steps of ``metrics.jsonl``, after checking that every line is whole JSON and the steps strictly increase."""
    if not run.metrics_path.exists():
        return []
    text = run.metrics_path.read_text()
    assert not text or text.endswith("\n"), text[-200:]
    steps = [json.loads(line)["step"] for line in text.splitlines()]  # a torn or broken line fails here
    assert all(a < b for a, b in zip(steps, steps[1:])), steps
    return steps


def killed_before_first_checkpoint(out, steps=4):
    """A run as a kill before its first checkpoint leaves it: config.toml, a log of the steps it made (the last line
    torn), the temporary file of the checkpoint it was writing; returns the finished run's final state."""
    r = invoke("train", "fit-gaussian", *TOY, "--out", str(out), "--steps", str(steps))
    assert r.exit_code == 0, r.output
    run = RunDir(out)
    final = load_checkpoint(run.checkpoints()[-1], "fit-gaussian")
    for path in run.checkpoints():
        path.unlink()
    (run.samples_dir / "final.png").unlink()
    with run.metrics_path.open("a") as fh:
        fh.write('{"step": 5, "ti')
    (run.checkpoint_dir / ".step-00000002.pt.k1ll3d_x.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    return run, final


def test_resume_without_a_checkpoint_starts_from_step_0(fit_registry, tmp_path):
    out = tmp_path / "run"
    run, final = killed_before_first_checkpoint(out)
    # the saved configuration is the run's: the method's options cannot change, as on any resume
    r = invoke("train", "fit-gaussian", "--out", str(out), "--resume", "--set", "lr=0.1")
    assert r.exit_code == 2 and "only run.* keys" in r.output
    r = invoke("train", "fit-gaussian", "--out", str(out), "--resume", "--no-progress",
               "--set", "run.checkpoint_every=2")
    assert r.exit_code == 0, r.output
    assert (f"{out} has no checkpoint yet (killed before its first one?): starting it from step 0 with its saved "
            "configuration.") in r.stdout.splitlines()
    assert "resuming" not in r.output
    # the whole run again, to the saved run.steps, with the same result as the run that was not killed
    assert [p.name for p in run.checkpoints()] == ["step-00000002.pt", "step-00000004.pt"]
    again = load_checkpoint(run.checkpoints()[-1], "fit-gaussian")
    assert again["step"] == 4
    assert_states_equal(final["state"], again["state"], atol=0.0)
    assert check_log(run) == [1, 2, 3, 4]  # the killed attempt's lines (and its torn one) are gone
    assert run.read_config()["run"]["checkpoint_every"] == 2
    assert not list(run.checkpoint_dir.glob(".*.tmp"))  # the interrupted write's leftover is removed
    assert (run.samples_dir / "final.png").is_file()


def test_sample_and_evaluate_say_how_to_continue_a_run_without_a_checkpoint(fit_registry, tmp_path):
    out = tmp_path / "run"
    killed_before_first_checkpoint(out)
    hint = f"`gflowzoo train fit-gaussian --out {out} --resume`"
    for command in ("sample", "evaluate"):
        r = invoke(command, str(out))
        assert r.exit_code == 2, r.output
        assert flat(r.output) == (f"Error: {out} has no checkpoint yet (it was stopped before its first one); "
                                  f"continue it with {hint}.")
    left = [p.name for p in (out / "checkpoints").iterdir()]
    assert left == [".step-00000002.pt.k1ll3d_x.tmp"]  # sample and evaluate remove nothing


def test_only_damaged_checkpoints_are_named_and_kept(fit_registry, tmp_path):
    out = tmp_path / "run"
    r = invoke("train", "fit-gaussian", *TOY, "--out", str(out), "--steps", "4", "--set", "run.checkpoint_every=2")
    assert r.exit_code == 0, r.output
    ckpts = out / "checkpoints"
    (ckpts / "step-00000004.pt").write_bytes(b"")
    (ckpts / "step-00000002.pt").write_text("not a checkpoint\n")
    expected = (f"Error: Every checkpoint of {out} is damaged (step-00000004.pt is truncated or corrupt (an empty "
                "file); step-00000002.pt is not a checkpoint file (not a torch archive)); move them out of "
                f"{ckpts}, then start the run again from step 0 with "
                f"`gflowzoo train fit-gaussian --out {out} --resume`.")
    for args in (["sample", str(out)], ["evaluate", str(out)],
                 ["train", "fit-gaussian", "--out", str(out), "--resume", "--no-progress"]):
        r = invoke(*args)
        assert r.exit_code == 2, r.output
        assert flat(r.output) == expected, args
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000002.pt", "step-00000004.pt"]
    assert check_log(RunDir(out)) == [1, 2, 3, 4]
    # done as told: the run starts again from step 0
    (ckpts / "step-00000002.pt").rename(tmp_path / "step-00000002.pt")
    (ckpts / "step-00000004.pt").rename(tmp_path / "step-00000004.pt")
    r = invoke("train", "fit-gaussian", "--out", str(out), "--resume", "--no-progress")
    assert r.exit_code == 0 and "starting it from step 0" in r.output, r.output
    assert check_log(RunDir(out)) == [1, 2, 3, 4]


def test_log_past_the_newest_checkpoint_is_cut_back(fit_registry, tmp_path):
    """Killed after logging steps the checkpoint does not have: the resumed run logs each step once, in order."""
    out = tmp_path / "run"
    r = invoke("train", "fit-gaussian", *TOY, "--out", str(out), "--steps", "6", "--set", "run.checkpoint_every=2",
               "--set", "run.keep_checkpoints=0")
    assert r.exit_code == 0, r.output
    run = RunDir(out)
    final = load_checkpoint(run.checkpoints()[-1], "fit-gaussian")
    run.checkpoints()[-1].unlink()  # killed after logging step 6, before its checkpoint
    r = invoke("train", "fit-gaussian", "--out", str(out), "--resume", "--no-progress")
    assert r.exit_code == 0 and f"resuming {out} from step 4" in flat(r.output), r.output
    assert check_log(run) == [1, 2, 3, 4, 5, 6]
    assert_states_equal(final["state"], load_checkpoint(run.checkpoints()[-1], "fit-gaussian")["state"], atol=0.0)


def test_a_new_run_drops_the_log_of_an_attempt_without_checkpoint(fit_registry, tmp_path):
    """``train`` without a checkpoint to start from starts the log afresh (``gflowzoo compare`` restarts such runs)."""
    run = RunDir(tmp_path / "run")
    spec = resolve(fit_registry, "fit-gaussian", "toy-8gaussians", sets=["batch_size=8", "run.log_every=1",
                   "run.grid_size=0", "run.steps=2"], overrides={"device": "cpu"})
    run.path.mkdir()
    run.write_config(spec.to_data())
    for step in (1, 2, 3):
        run.log({"step": step, "time": 0.1, "loss": 1.0})
    train(run, spec, build_method(fit_registry, spec, "cpu"), progress=False)
    assert check_log(run) == [1, 2]


def test_blank_directories(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.is_blank()  # missing
    run.path.mkdir()
    assert run.is_blank()
    run.checkpoint_dir.mkdir()
    run.samples_dir.mkdir()
    run.metrics_path.write_text("\n")
    (run.path / ".config.toml.abc_123.tmp").write_text('method = "m"\n')  # killed while writing config.toml
    assert run.is_blank()
    for make_full in (lambda: (run.samples_dir / "step-00000010.png").write_bytes(b"png"),
                      lambda: run.metrics_path.write_text('{"step": 1}\n'),
                      lambda: (run.checkpoint_dir / "notes.txt").write_text("mine\n"),
                      lambda: (run.path / "notes.txt").write_text("mine\n"),
                      lambda: (run.path / ".config.toml.tmp").write_text("mine\n"),
                      lambda: (run.path / "ckpt").symlink_to(tmp_path),
                      lambda: run.config_path.write_text('method = "m"\n')):
        make_full()
        assert not run.is_blank()
        for p in (run.samples_dir / "step-00000010.png", run.checkpoint_dir / "notes.txt", run.path / "notes.txt",
                  run.path / ".config.toml.tmp", run.path / "ckpt", run.config_path):
            p.unlink(missing_ok=True)
        run.metrics_path.write_text("")
        assert run.is_blank()
    (tmp_path / "file").write_text("x")
    assert not RunDir(tmp_path / "file").is_blank()


def test_train_into_a_blank_directory_needs_no_resume(fit_registry, tmp_path):
    """What a run killed before it wrote config.toml leaves (empty folders, an empty log, a temporary file) is no
    loss: ``train`` starts there without --resume; anything else in the directory stops it, untouched."""
    out = tmp_path / "run"
    r = invoke("train", "fit-gaussian", "--out", str(out), "--resume")  # killed before it made the directory
    assert r.exit_code == 2, r.output
    assert flat(r.output) == f"Error: Run directory not found: {out}. To start a new run there, leave out --resume."
    (out / "checkpoints").mkdir(parents=True)
    (out / "samples").mkdir()
    (out / "metrics.jsonl").write_text("")
    (out / ".config.toml.q2x8_z.tmp").write_text("method = ")
    r = invoke("train", "fit-gaussian", "--out", str(out), "--resume")
    assert r.exit_code == 2, r.output
    assert flat(r.output) == (f"Error: {out} holds no run to continue (no config.toml: none was started there, or it "
                              "was stopped before it wrote its configuration); start it without --resume.")
    r = invoke("train", "fit-gaussian", *TOY, "--out", str(out), "--steps", "2")
    assert r.exit_code == 0, r.output
    assert check_log(RunDir(out)) == [1, 2] and (out / "checkpoints" / "step-00000002.pt").is_file()

    other = tmp_path / "other"
    (other / "samples").mkdir(parents=True)
    (other / "samples" / "mine.png").write_bytes(b"png")
    r = invoke("train", "fit-gaussian", *TOY, "--out", str(other), "--steps", "2")
    assert r.exit_code == 2, r.output
    assert flat(r.output) == (f"Error: {other} already exists, is not empty and holds no gflowzoo run (no "
                              "config.toml). Use another --out.")
    assert sorted(p.relative_to(other).as_posix() for p in other.rglob("*")) == ["samples", "samples/mine.png"]


# ---------------------------------------------------------------------------------------------------------------
# kill -9 at random moments
# ---------------------------------------------------------------------------------------------------------------

KILL_STEPS = 150


def _wait_for(predicate, timeout, every=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


@pytest.mark.slow
def test_kill_at_random_moments_then_resume_to_the_end(fit_registry, tmp_path):
    """``kill -9`` of ``gflowzoo train`` at seeded random moments (at once, just after config.toml appears, mid-run),
    each time continued as a user would (``--resume`` once the run has a config.toml): the log stays whole JSON with
    increasing steps, the run ends at the requested total with each step logged once and the same parameters as a run
    that was never killed, and it samples."""
    site = fit_gaussian_dist(tmp_path / "site")
    env = {**subprocess_env(site, TESTS_DIR, load="fitgauss"), "GFLOWZOO_THREADS": "1"}
    out = tmp_path / "run"
    run = RunDir(out)
    options = [*TOY, "--steps", str(KILL_STEPS), "--set", "sleep=0.01", "--set", "run.checkpoint_every=25",
               "--set", "run.keep_checkpoints=2"]
    rng = random.Random(20240607)

    def start() -> subprocess.Popen:
        resume = ["--resume", "--no-progress"] if run.exists() else options
        cmd = [sys.executable, "-m", "gflowzoo", "train", "fit-gaussian", "--out", str(out), *resume]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def kill(proc: subprocess.Popen) -> str:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=60)
        return output

    # when to kill: at once; just after config.toml is written (before the first checkpoint); twice mid-run, after
    # the attempt wrote a checkpoint of its own (so the next one resumes from it)
    moments = [("start", rng.uniform(0.0, 0.2)), ("config", rng.uniform(0.0, 0.05)),
               ("running", rng.uniform(0.0, 0.2)), ("running", rng.uniform(0.0, 0.2))]
    outputs, told = [], []

    def where() -> tuple[bool, int | None]:
        """Whether the next attempt resumes, and the step of the checkpoint it finds (None: none yet)."""
        ckpts = run.checkpoints()
        return run.exists(), (load_checkpoint(ckpts[-1], "fit-gaussian")["step"] if ckpts else None)

    def says_where_it_starts(output: str, started: tuple[bool, int | None]) -> bool:
        resumed, step = started
        if not resumed:
            return "resuming" not in output and "no checkpoint yet" not in output
        if step is None:
            return f"{out} has no checkpoint yet (killed before its first one?)" in flat(output)
        return f"resuming {out} from step {step}" in flat(output)

    for moment, delay in moments:
        started = where()

        def running() -> bool:  # this attempt has written a checkpoint of its own
            ckpts = run.checkpoints()  # step-XXXXXXXX.pt
            return bool(ckpts) and int(ckpts[-1].stem[5:]) > (started[1] or 0)

        proc = start()
        try:
            if moment == "config":
                assert _wait_for(lambda: run.exists() and proc.poll() is None, 60), proc.communicate()[0]
            elif moment == "running":
                assert _wait_for(lambda: running() or proc.poll() is not None, 60)
            time.sleep(delay)
            outputs.append(kill(proc))
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode in (-signal.SIGKILL, 0), outputs[-1]
        assert "Traceback" not in outputs[-1], outputs[-1]
        if moment == "running":  # killed after its first checkpoint: it has said where it started
            assert says_where_it_starts(outputs[-1], started), outputs[-1]
            told.append(started)
        check_log(run)
        if run.checkpoints():
            assert not run.latest_checkpoint("fit-gaussian")[1]["skipped"]  # checkpoints are never torn
    started = where()
    proc = start()
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert says_where_it_starts(output, started), output
    told.append(started)

    assert check_log(run) == list(range(1, KILL_STEPS + 1))  # each step once: every resume cut the log back
    final = load_checkpoint(run.checkpoints()[-1], "fit-gaussian")
    assert final["step"] == KILL_STEPS and run.checkpoints()[-1].name == f"step-{KILL_STEPS:08d}.pt"
    assert not list(run.checkpoint_dir.glob(".*.tmp")) and (out / "samples" / "final.png").is_file()
    assert any(step is not None for _, step in told), told  # resumed from a checkpoint at least once

    # the same parameters as a run that was never killed (sleeping changes nothing but the pace)
    spec = resolve(fit_registry, "fit-gaussian", base=run.read_config(), sets=["sleep=0.0", "run.grid_size=0"])
    straight = RunDir(tmp_path / "straight")
    straight.path.mkdir()
    method = build_method(fit_registry, spec, "cpu")
    train(straight, spec, method, progress=False)
    assert_states_equal(method.state_dict(), final["state"], atol=0.0)
    assert [r["loss"] for r in straight.read_metrics()] == [r["loss"] for r in run.read_metrics()]

    r = invoke("sample", str(out), "--n", "16", "--raw", str(tmp_path / "x.npy"))
    assert r.exit_code == 0 and f"(step {KILL_STEPS})" in r.stdout, r.output
    x = np.load(tmp_path / "x.npy")
    assert x.shape == (16, 2) and np.isfinite(x).all()
