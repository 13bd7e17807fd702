"""``gflowzoo compare --budget``: the budget bounds each run's wall clock, in-training evaluations included (an
evaluation that cannot end in time is skipped and logged), the cheap in-training sampler is logged, the final
evaluation's time is estimated before it starts and reported after; progress over the samples drawn."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time

import pytest
import torch
from test_evaluate import Gauss, GaussConfig, gauss, invoke  # noqa: F401  (test-only methods, CLI helper)

from gflowzoo.hookspecs import hookimpl
from gflowzoo.plugins import temporary_plugin

#: The fake clock's seconds: what ``time.perf_counter`` returns while a test patches it.
CLOCK = [0.0]
STEP_S = 0.05  # one training step of GaussFlow on the fake clock
SAMPLE_S = 1e-4  # one sample through one level of GaussFlow's "flow"


@dataclasses.dataclass
class FlowConfig(GaussConfig):
    levels: int = 50


class GaussFlow(Gauss):
    """A Gauss that pretends to be a flow method on the fake clock: a training step takes :data:`STEP_S`, a sampling
    ``n x levels x`` :data:`SAMPLE_S` (NFE = levels); its cheap sampler runs 10 levels."""

    Config = FlowConfig

    def train_step(self, step, generator):
        CLOCK[0] += STEP_S
        return super().train_step(step, generator)

    def sample(self, n, generator):
        CLOCK[0] += n * self.config.levels * SAMPLE_S
        return super().sample(n, generator)

    def sampling_info(self):
        return {"nfe": self.config.levels}

    @contextlib.contextmanager
    def cheap_sampler(self, n):
        full = self.config
        self.config = dataclasses.replace(full, levels=10)
        try:
            yield {"levels": 10}
        finally:
            self.config = full


class FlowPlugin:
    @hookimpl
    def gflowzoo_register(self, register):
        register("method", "gauss-flow", GaussFlow, "test-only Gauss on a fake clock, with a cheap sampler")


@pytest.fixture
def fake_clock(monkeypatch):
    """``time.perf_counter`` (the trainer's and the evaluations' clock) replaced by :data:`CLOCK`; the in-training
    evaluations made 3 s slower on it (an artificially slow evaluation hook)."""
    from gflowzoo.evaluate import Evaluator

    CLOCK[0] = 1000.0
    monkeypatch.setattr(time, "perf_counter", lambda: CLOCK[0])
    evaluate_method = Evaluator.evaluate_method

    def slow(self, method, *args, **kwargs):
        if self.purpose == "training":
            CLOCK[0] += 3.0
        return evaluate_method(self, method, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "evaluate_method", slow)
    with temporary_plugin(FlowPlugin(), "flow-plugin"):
        yield CLOCK


def log_of(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_compare_budget_bounds_the_wall_clock_with_slow_evaluations(gauss, fake_clock, tmp_path):  # noqa: F811
    """A 10 s budget with 3 evaluation points and in-training evaluations of 3.5 s (10 levels x 500 samples plus the
    3 s of the slow hook), all on the fake clock. The probe (twice 50 samples: 0.1 s) estimates 0.75 s; the evaluation
    due after 3.33 s of training is made (6.55 s left), takes 3.5 s and sets the estimate to 4.4 s; with 3.05 s left
    the closing evaluation cannot end in time: it is skipped and logged, and training stops at 10 s."""
    out = tmp_path / "cmp"
    res = invoke(gauss, "compare", "gauss-flow", "--dataset", "toy-8gaussians", "--budget", "10s", "--seeds", 2,
                 "--n", 200, "--metrics", "mmd", "--eval-points", 3, "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    for run in results["runs"]:
        wall = run["train_seconds"] + run["eval_seconds_in_training"]
        assert 10.0 <= wall <= 10.0 + STEP_S + 1e-6  # the budget, evaluations included, to one training step
        assert run["eval_seconds_in_training"] == pytest.approx(0.1 + 3.5)
        assert run["training_eval"] == {"evaluations": 1, "skipped": 1, "seconds": 3.5, "n": 500, "nfe": 10,
                                        "levels": 10}
    log = log_of(out / "runs" / "gauss-flow-seed0" / "metrics.jsonl")
    evals = [e for e in log if any(k.startswith("eval/") for k in e)]
    probe, made, skipped = evals
    assert probe["step"] == 1 and probe["eval/probe_s"] == pytest.approx(0.1)
    assert probe["eval/estimate_s"] == pytest.approx(0.75)
    # the cheap sampler, stated in the record: 500 samples at NFE 10 (the full sampler has 50 levels)
    assert made["eval/n"] == 500 and made["eval/nfe"] == 10 and made["eval/levels"] == 10 and "eval/mmd" in made
    assert made["time"] == pytest.approx(67 * STEP_S + 0.1)  # 3.33 s of training (+ the probe's 0.1 s)
    assert skipped["eval/skipped"] == 1 and "eval/mmd" not in skipped
    assert skipped["eval/estimate_s"] == pytest.approx(3.5 * 1.25)
    assert skipped["eval/left_s"] < skipped["eval/estimate_s"]
    assert all(e["time"] + e.get("eval/seconds", 0.0) <= 10.0 for e in evals)  # none ends past the budget

    # the final evaluation's estimate, printed before it starts: the in-training evaluation's 3.5 s scaled by the
    # work (200 samples x NFE 50 against 500 x 10); for the second seed, the first seed's measured 1.0 s
    assert "final evaluation of gauss-flow-seed0: 200 samples at NFE 50, about 7.0 s (from the in-training " \
           "evaluations)" in res.output
    assert "final evaluation of gauss-flow-seed1: 200 samples at NFE 50, about 1.0 s (from gauss-flow-seed0's " \
           "final evaluation)" in res.output
    assert "final evaluation of gauss-flow-seed0 took 1.0 s" in res.output
    assert [r["final_eval_estimate_s"] for r in results["runs"]] == [pytest.approx(7.0), pytest.approx(1.0)]
    assert [r["timing"]["total_s"] for r in results["runs"]] == [pytest.approx(1.0), pytest.approx(1.0)]
    # the report: the final evaluation's time per label and per run, the in-training sampler and the skip
    md = (out / "report.md").read_text()
    assert "| final eval s |" in md
    assert "gauss-flow seed 0: " in md and "1 in-training evaluations (1 skipped: not enough budget left); " \
           "final evaluation 1.0 s (estimated 7.0 s)" in md
    assert "In-training curves use gauss-flow NFE 10 (10 levels) with n = 500 samples; the final evaluation uses " \
           "the full sampler" in md
    assert "min of wall clock (training and in-training evaluations" in md
    assert "final evaluation 1.0 s (estimated 1.0 s)" in (out / "report.html").read_text()


def test_training_eval_never_starts_an_evaluation_that_cannot_end_in_time():
    """The hook's decisions with a deadline, on a fake clock: a 0.1 s training step between calls, a probe of twice
    50 samples at 0.01 s each (1 s: an estimate of 7.5 s for 500 samples), evaluations of ``Evaluator.cost``."""
    from gflowzoo.evaluate import TrainingEval

    clock = [0.0]

    class Method:
        def sample(self, k, generator):
            clock[0] += 0.01 * k
            return torch.zeros(k, 2)

    class Evaluator:
        n = 500
        calls = 0
        cost = 5.0

        def prepare(self):
            return self

        def evaluate_method(self, method):
            Evaluator.calls += 1
            clock[0] += Evaluator.cost
            return type("R", (), {"values": {"mmd": 0.5}, "protocol": {"sampler": {"nfe": 1}}})()

    def train(hook, deadline):
        """Steps and hook calls until the deadline: the records returned, and (start, end) of every evaluation."""
        clock[0], records, made = 0.0, [], []
        while clock[0] < deadline:
            clock[0] += 0.1
            start = clock[0]
            records.append(hook(len(records), start))
            if "mmd" in records[-1]:
                made.append((start, clock[0]))
        return [r for r in records if r], made

    def hook(**kwargs):
        return TrainingEval(Evaluator(), Method(), clock=lambda: clock[0], **kwargs)

    # 7.5 s estimated, 5 s of budget: the closing evaluation is skipped at once, nothing is evaluated
    short = hook(every_seconds=2.0, until_seconds=4.0, deadline=5.0)
    (probe, skip), made = train(short, 5.0)
    assert probe == {"probe_s": pytest.approx(1.0), "seconds": pytest.approx(1.0), "estimate_s": 7.5}
    assert skip == {"skipped": 1, "estimate_s": 7.5, "left_s": pytest.approx(3.8)}
    assert made == [] and Evaluator.calls == 0 and short.skipped == 1 and short.closed

    # 20 s: the evaluation due after 2 s of training, and the closing one as late as it still fits (paced ones in
    # between are skipped: they would leave no room for the closing one)
    room = hook(every_seconds=2.0, until_seconds=15.0, deadline=20.0)
    records, made = train(room, 20.0)
    assert len(made) == 2 and made[0][0] == pytest.approx(3.0, abs=0.11)  # 2 s of training after the 1 s probe
    assert made[1][0] >= 20.0 - 5.0 * 1.25 - 2 * 0.1 - 1e-9 and made[1][1] <= 20.0 and room.closed
    assert room.skipped == sum(1 for r in records if r.get("skipped")) >= 1

    # a closing evaluation much quicker than the probe said (1 s, estimated 7.5 s): another one follows, as late as
    # it still fits
    Evaluator.cost = 1.0
    quick = hook(deadline=20.0)
    _, made = train(quick, 20.0)
    assert len(made) == 2 and made[0][0] == pytest.approx(20.0 - 7.5 - 2 * 0.1, abs=0.11)
    assert made[1][0] >= 20.0 - 1.25 - 2 * 0.1 - 0.11 and made[1][1] <= 20.0 and quick.closed


def test_final_estimate_scales_with_nfe_and_interacting_batches():
    from gflowzoo.compare import INTERACTION_EXPONENT, _work

    assert _work(2500, 500, None) / _work(500, 100, None) == pytest.approx(25)  # samples x NFE
    # one batch of 2,500 interacting particles against one of 500: more than 5x the work per step
    assert _work(2500, 500, 2500) / _work(500, 100, 500) == pytest.approx(5 * 5**INTERACTION_EXPONENT)
    assert _work(600, 10, 500) == pytest.approx(2 * _work(500, 10, 500))  # whole batches are drawn


def test_track_pieces_reports_progress_within_a_call():
    """The bar's count of samples drawn moves per piece and, where the method reports, within a piece."""
    from gflowzoo.progress import report, track_pieces

    class Method:
        def sample(self, k, generator):
            for level in range(4):
                report((level + 1) / 4)
            return torch.zeros(k, 2)

    from gflowzoo.sampling import sample_pieces

    seen = []
    pieces = list(track_pieces(sample_pieces(Method(), 10, torch.Generator(), 6), 10, 6, seen.append))
    assert [p.shape[0] for p in pieces] == [6, 4]
    assert seen == [1.5, 3.0, 4.5, 6.0, 6, 7.0, 8.0, 9.0, 10.0, 10]
    report(0.5)  # nobody listens: nothing happens


def test_evaluate_prints_plain_progress_lines_when_not_a_terminal(gauss, tmp_path, monkeypatch):  # noqa: F811
    import gflowzoo.progress

    monkeypatch.setattr(gflowzoo.progress, "PLAIN_PROGRESS_SECONDS", 0.0)  # a line at every update
    run = tmp_path / "run"
    assert invoke(gauss, "train", "gauss", "--dataset", "toy-8gaussians", "--steps", 5, "--out", run,
                  "--no-progress").exit_code == 0
    res = invoke(gauss, "evaluate", run, "--n", 300, "--metrics", "mmd")
    assert res.exit_code == 0, res.output
    assert "evaluate 300/300 samples (100%)" in res.output and "eta" in res.output
    assert "evaluate: mmd 300/300 samples" in res.output
    as_json = invoke(gauss, "evaluate", run, "--n", 300, "--metrics", "mmd", "--json")
    assert json.loads(as_json.stdout)["protocol"]["n"] == 300  # --json: no bar
