"""``gflowzoo evaluate``, the evaluation protocol file and in-training evaluation, with a test-only method."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from gflowzoo.hookspecs import hookimpl
from gflowzoo.interfaces import Method
from gflowzoo.plugins import temporary_plugin

# ---------------------------------------------------------------------------------------------------------------
# a tiny test-only method: a learnable diagonal Gaussian (also used by test_compare.py)
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class GaussConfig:
    lr: float = 0.1
    batch_size: int = 64
    temperature: float = 1.0  # a sampler setting: std multiplier at sampling time


class Gauss(Method):
    """Fits N(mean, diag(std^2)) to the data by maximum likelihood; samples N(mean, (temperature * std)^2)."""

    Config = GaussConfig

    def __init__(self, config: GaussConfig, data: Any, device: Any = "cpu") -> None:
        super().__init__(config, data, device)
        self.mean = torch.zeros(tuple(data.shape), requires_grad=True)
        self.log_std = torch.zeros(tuple(data.shape), requires_grad=True)
        self.opt = torch.optim.SGD([self.mean, self.log_std], lr=config.lr)

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        x = self.data.train.sample(self.config.batch_size, generator)
        loss = (0.5 * ((x - self.mean) / self.log_std.exp()).square() + self.log_std).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        eps = torch.randn((n, *self.mean.shape), generator=generator)
        with torch.no_grad():
            return self.mean + self.config.temperature * self.log_std.exp() * eps

    def sampling_info(self) -> dict[str, Any]:
        return {"nfe": 1, "temperature": self.config.temperature}

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.detach().clone(), "log_std": self.log_std.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.mean.copy_(state["mean"])
            self.log_std.copy_(state["log_std"])


class GaussInterrupted(Gauss):
    """Like Gauss, but presses Ctrl-C (sends itself SIGINT) during its 5th step."""

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return super().train_step(step, generator)


class GaussDiverging(Gauss):
    """Like Gauss, but its loss becomes NaN at step 3 (the trainer stops with TrainingDiverged)."""

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        logs = super().train_step(step, generator)
        return {"loss": float("nan")} if step >= 2 else logs


class GaussPlugin:
    @hookimpl
    def gflowzoo_register(self, register):
        register("method", "gauss", Gauss, "test-only learnable Gaussian")
        register("method", "gauss-too", Gauss, "test-only learnable Gaussian, under a second name")
        register("method", "gauss-ctrl-c", GaussInterrupted, "test-only: Ctrl-C at step 5")
        register("method", "gauss-nan", GaussDiverging, "test-only: NaN loss at step 3")


@pytest.fixture
def gauss(tmp_path, monkeypatch):
    """The test-only methods registered, an empty cache, and the CLI app."""
    monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GFLOWZOO_INCEPTION_WEIGHTS", raising=False)
    from gflowzoo.cli import build_app

    with temporary_plugin(GaussPlugin(), "gauss-plugin"):
        yield build_app()


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def random_net_digits() -> str:
    """A random-weight ``net-digits`` file at its default cache path (so that tests do not train one)."""
    from gflowzoo.metrics.classifier import SPECS, build_net, save_classifier
    from gflowzoo.metrics.extractors import ClassifierExtractor

    torch.manual_seed(0)
    path = ClassifierExtractor("net-digits").default_path()
    return str(save_classifier(build_net(SPECS["net-digits"].arch), SPECS["net-digits"], path))


# ---------------------------------------------------------------------------------------------------------------


def test_evaluate_toy_run_writes_protocol_and_is_reproducible(gauss, tmp_path):
    run = tmp_path / "run"
    assert invoke(gauss, "train", "gauss", "--dataset", "toy-8gaussians", "--steps", 30, "--out", run,
                  "--no-progress").exit_code == 0
    res = invoke(gauss, "evaluate", run, "--n", 400, "--seed", 3)
    assert res.exit_code == 0, res.output
    files = list(run.glob("eval-*.json"))
    assert len(files) == 1
    out = json.loads(files[0].read_text())
    p = out["protocol"]
    assert p["n"] == 400 and p["seed"] == 3 and p["dataset"] == "toy-8gaussians" and p["gflowzoo"]
    assert p["reference"]["split"] == "test" and p["reference"]["n"] == 400
    assert p["sampler"]["nfe"] == 1 and p["run"]["method"] == "gauss" and p["run"]["step"] == 30
    assert [m["name"] for m in p["metrics"]] == ["mmd", "energy", "swd", "modes", "hq"]
    assert set(out["timing"]) >= {"sampling_s", "metrics_s", "total_s", "samples_per_s"}
    assert files[0].name == f"eval-{out['protocol_key']}.json"
    # the values are those of the same samples computed directly
    from gflowzoo.cli import load_run
    from gflowzoo.data import DataHandle
    from gflowzoo.evaluate import Evaluator

    _, method, _ = load_run(run)
    x = method.sample(400, torch.Generator().manual_seed(3))
    direct = Evaluator(DataHandle("toy-8gaussians"), n=400, seed=3).evaluate_samples(x).values
    assert direct == pytest.approx(out["values"], rel=1e-12)
    # same protocol again: same file, same numbers; a sampler change gives another protocol key
    assert invoke(gauss, "evaluate", run, "--n", 400, "--seed", 3).exit_code == 0
    assert len(list(run.glob("eval-*.json"))) == 1
    assert json.loads(files[0].read_text())["values"] == out["values"]
    res = invoke(gauss, "evaluate", run, "--n", 400, "--seed", 3, "--set", "temperature=2.0", "--json")
    hot = json.loads(res.output)
    assert hot["protocol"]["sampler"]["temperature"] == 2.0 and hot["protocol_key"] != out["protocol_key"]
    assert hot["values"]["mmd"] > out["values"]["mmd"]


def test_evaluate_digits_records_extractor_hash(gauss, tmp_path):
    weights = random_net_digits()
    run = tmp_path / "run"
    assert invoke(gauss, "train", "gauss", "--steps", 5, "--out", run, "--no-progress").exit_code == 0
    res = invoke(gauss, "evaluate", run, "--n", 120, "--metrics", "kid,fid,is,prc", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    ext = out["protocol"]["extractor"]
    assert ext["name"] == "net-digits" and ext["weights"] == weights
    assert ext["sha256"] == hashlib.sha256(open(weights, "rb").read()).hexdigest()
    assert out["protocol"]["reference"] == {**out["protocol"]["reference"], "split": "train", "n": 1500}
    assert set(out["values"]) == {"kid", "kid_std", "fid", "is", "is_std", "precision", "recall", "f_score"}
    assert any("subset size lowered from 1000 to 120" in w for w in out["warnings"])


def test_evaluate_user_errors_exit_2_without_traceback(gauss, tmp_path):
    run = tmp_path / "run"
    assert invoke(gauss, "train", "gauss", "--dataset", "toy-swissroll", "--steps", 2, "--out", run,
                  "--no-progress").exit_code == 0
    for args, msg in [
        (["--metrics", "kdi"], "Unknown metric 'kdi'"),
        (["--metrics", "modes"], "Gaussian-mixture"),
        (["--metrics", "kid"], "applies to image data"),
        (["--n", "1"], "at least 2"),
    ]:
        res = invoke(gauss, "evaluate", run, *args)
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, (args, res.output)
    img = tmp_path / "img"
    assert invoke(gauss, "train", "gauss", "--steps", 2, "--out", img, "--no-progress").exit_code == 0
    res = invoke(gauss, "evaluate", img, "--extractor", "inception-v3-compat")
    assert res.exit_code == 2 and "gflowzoo does not download them" in res.output
    assert "weights-inception-2015-12-05-6726825d.pth" in res.output
    res = invoke(gauss, "evaluate", img, "--extractor", "lenet-mnist")
    assert res.exit_code == 2 and "[1, 28, 28]" in res.output
    assert not list(img.glob("eval-*.json"))


def test_evaluate_names_the_checkpoint_and_warns_about_damaged_ones(gauss, tmp_path):
    run = tmp_path / "run"
    assert invoke(gauss, "train", "gauss", "--dataset", "toy-8gaussians", "--steps", 4, "--out", run, "--set",
                  "run.checkpoint_every=2", "--no-progress").exit_code == 0
    newest = run / "checkpoints" / "step-00000004.pt"
    newest.write_bytes(newest.read_bytes()[:60])
    res = invoke(gauss, "evaluate", run, "--n", 50, "--metrics", "mmd")
    assert res.exit_code == 0, res.output
    used = run / "checkpoints" / "step-00000002.pt"
    assert f"checkpoint: {used} (step 2)" in res.stdout
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"skipped a damaged checkpoint: {newest} is truncated or corrupt" in warnings[0]
    res = invoke(gauss, "evaluate", run, "--n", 50, "--metrics", "mmd", "--json")
    assert res.exit_code == 0
    out = json.loads(res.stdout)  # the warning went to stderr: stdout stays JSON
    assert out["protocol"]["run"]["checkpoint"] == str(used) and out["protocol"]["run"]["step"] == 2
    assert "skipped a damaged checkpoint" in res.stderr


def test_train_eval_every_logs_metrics_with_wall_clock(gauss, tmp_path):
    run = tmp_path / "run"
    res = invoke(gauss, "train", "gauss", "--dataset", "toy-8gaussians", "--steps", 40, "--eval-every", 20,
                 "--out", run, "--no-progress")
    assert res.exit_code == 0, res.output
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "eval/mmd" in line]
    assert [e["step"] for e in evals] == [20, 40]
    for e in evals:
        assert e["time"] > 0 and e["eval/seconds"] > 0 and "eval/modes" in e
    # the value logged at the last step is the cheap protocol applied to the final state
    from gflowzoo.cli import load_run
    from gflowzoo.evaluate import TRAINING_N, Evaluator

    _, method, _ = load_run(run)
    again = Evaluator(method.data, seed=0, purpose="training").evaluate_method(method)
    assert again.protocol["n"] == TRAINING_N["points"]
    assert [m["name"] for m in again.protocol["metrics"]] == ["mmd", "modes"]
    assert again.values["mmd"] == pytest.approx(evals[1]["eval/mmd"], rel=1e-12)


def test_training_eval_paced_by_time_returns_nothing_until_due():
    from gflowzoo.evaluate import TrainingEval

    class FakeEvaluator:
        calls = 0
        n = 500

        def prepare(self):
            return self

        def evaluate_method(self, method):
            FakeEvaluator.calls += 1
            return type("R", (), {"values": {"mmd": 0.5}, "protocol": {"sampler": {"nfe": 1}}})()

    hook = TrainingEval(FakeEvaluator(), None, every_seconds=10.0)
    assert hook(1, 3.0) == {} and hook(2, 9.9) == {}
    first = hook(3, 10.5)
    assert first["mmd"] == 0.5 and "seconds" in first
    assert hook(4, 15.0 + hook.eval_seconds) == {}  # only 4.5 s of training since
    assert hook(5, 20.6 + hook.eval_seconds)["mmd"] == 0.5
    assert FakeEvaluator.calls == 2


def test_train_eval_every_missing_extractor_stops_before_training(gauss, tmp_path):
    import struct

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 12), ("t10k", 4)):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(n * 784))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + bytes(n))
    run = tmp_path / "run"
    res = invoke(gauss, "train", "gauss", "--dataset", "mnist", "--data-root", tmp_path / "data", "--steps", 5,
                 "--eval-every", 2, "--out", run, "--no-progress")
    assert res.exit_code == 2 and "gflowzoo extractor fit --dataset mnist" in res.output
    assert not run.exists()
