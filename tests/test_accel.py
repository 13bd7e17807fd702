"""``run.amp = "bf16"`` and ``run.compile``: applied by ``build_method`` to training and sampling, checked with clear
errors, kernels computed in float32 under autocast, and a real method trained under both on the CPU."""

from __future__ import annotations

from typing import Any, ClassVar

import helpers_method
import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gflowzoo import accel
from gflowzoo.divergences import mmd2, witness
from gflowzoo.errors import UserError
from gflowzoo.hookspecs import hookimpl
from gflowzoo.kernels import RBFKernel, RQKernel, sq_dists
from gflowzoo.plugins import temporary_plugin


class AutocastProbe(helpers_method.FitGaussian):
    """``fit-gaussian`` with a small linear layer; records the autocast state and the layer's output dtype in
    ``train_step`` and ``sample``."""

    seen: ClassVar[list[tuple[str, bool, torch.dtype]]] = []

    def __init__(self, config: Any, data: Any, device: Any = "cpu") -> None:
        super().__init__(config, data, device)
        self.layer = nn.Linear(4, 4)

    def _probe(self, where: str) -> None:
        out = self.layer(torch.randn(2, 4))
        AutocastProbe.seen.append((where, torch.is_autocast_enabled("cpu"), out.dtype))

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        self._probe("train_step")
        return super().train_step(step, generator)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        self._probe("sample")
        return super().sample(n, generator)


class DoubleBackward(helpers_method.FitGaussian):
    """A step that differentiates a network twice (as a gradient penalty does)."""

    def __init__(self, config: Any, data: Any, device: Any = "cpu") -> None:
        super().__init__(config, data, device)
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        x = torch.randn(16, 2, generator=generator).requires_grad_(True)
        (g,) = torch.autograd.grad(self.net(x).sum(), x, create_graph=True)
        loss = g.square().mean()
        loss.backward()
        return {"loss": float(loss.detach())}


class _Plugin:
    @hookimpl
    def gflowzoo_register(self, register):
        register("method", "autocast-probe", AutocastProbe, "test-only: records autocast")
        register("method", "double-backward", DoubleBackward, "test-only: differentiates twice")


@pytest.fixture
def app():
    AutocastProbe.seen = []
    from gflowzoo.cli import build_app

    with temporary_plugin(_Plugin(), "accel-test-plugin"):
        yield build_app()


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_check_rejects_what_cannot_work(monkeypatch):
    with pytest.raises(UserError, match="use bf16"):
        accel.check("fp16", False, "inductor", "cpu")
    with pytest.raises(UserError, match="compile_backend"):
        accel.check("none", True, "tvm", "cpu")
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(accel.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="needs a C compiler"):
        accel.check("none", True, "inductor", "cpu")
    accel.check("none", True, "aot_eager", "cpu")  # no compiler needed
    accel.check("bf16", False, "inductor", "cpu")


def test_bf16_autocast_reaches_training_and_sampling(app, tmp_path):
    run = tmp_path / "run"
    r = invoke(app, "train", "autocast-probe", "--dataset", "toy-8gaussians", "--steps", 2, "--out", run,
               "--no-progress", "--set", 'run.amp="bf16"', "--set", "run.grid_size=4")
    assert r.exit_code == 0, r.output
    assert ("train_step", True, torch.bfloat16) in AutocastProbe.seen
    assert ("sample", True, torch.bfloat16) in AutocastProbe.seen  # the final grid
    assert all(on for _, on, _ in AutocastProbe.seen)
    # parameters stay float32 in the checkpoint; sampling may switch amp off again
    AutocastProbe.seen.clear()
    assert invoke(app, "sample", run, "--n", 4, "--set", 'run.amp="none"').exit_code == 0
    assert AutocastProbe.seen == [("sample", False, torch.float32)]
    r = invoke(app, "sample", run, "--n", 4, "--set", 'run.amp="fp16"')
    assert r.exit_code == 2 and "run.amp" in r.output


def test_compile_failure_in_a_double_backward_step_is_a_user_error(app, tmp_path):
    r = invoke(app, "train", "double-backward", "--dataset", "toy-8gaussians", "--steps", 2, "--out",
               tmp_path / "run", "--no-progress", "--set", "run.compile=true", "--set",
               'run.compile_backend="aot_eager"')
    assert r.exit_code == 2, r.output
    assert "run.compile = true" in r.output and "set run.compile = false" in r.output
    assert "Traceback" not in r.output
    # without compile the same step trains
    r = invoke(app, "train", "double-backward", "--dataset", "toy-8gaussians", "--steps", 2, "--out",
               tmp_path / "run2", "--no-progress")
    assert r.exit_code == 0, r.output


def test_kernels_compute_in_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(40, 16, generator=g) * 3 + 10).bfloat16()  # large norms: bf16 distances would be far off
    y = (torch.randn(30, 16, generator=g) * 3 + 10.5).bfloat16()
    x64, y64 = x.double(), y.double()
    ref = ((x64[:, None] - y64[None]) ** 2).sum(-1)
    kern = RQKernel([0.5, 2.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = sq_dists(x, y)
        m = mmd2(x, y, RBFKernel([4.0, 8.0]))
        w = witness(x, x, y, kern)
    assert d.dtype == torch.float32 and m.dtype == torch.float32 and w.dtype == torch.float32
    np.testing.assert_allclose(d.double().numpy(), ref.numpy(), rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(float(m), float(mmd2(x64, y64, RBFKernel([4.0, 8.0]))), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(w.double().numpy(), witness(x64, x64, y64, kern).numpy(), rtol=1e-4, atol=1e-6)


def test_a_real_method_trains_under_bf16_and_compile():
    pytest.importorskip("gflowzoo_gmmn")
    from gflowzoo.session import build_method, resolve
    from gflowzoo.testing import plugins_loaded

    with plugins_loaded("gmmn") as state:
        reg = state.registry
        losses = {}
        for amp, compile_ in (("none", False), ("bf16", False), ("none", True)):
            sets = [f'run.amp="{amp}"', f"run.compile={str(compile_).lower()}", 'run.compile_backend="aot_eager"',
                    "batch_size=64"]
            spec = resolve(reg, "gmmn", "toy-8gaussians", preset="cpu-quick", sets=sets, overrides={"device": "cpu"})
            m = build_method(reg, spec, "cpu")
            assert (m.G._compiled_call_impl is not None) == compile_
            gen = torch.Generator().manual_seed(0)
            losses[(amp, compile_)] = [m.train_step(i, gen)["loss"] for i in range(3)]
            keys = losses.setdefault("keys", list(m.state_dict()["generator"]))  # those of the plain build
            assert list(m.state_dict()["generator"]) == keys  # compiling in place keeps checkpoint names
            assert all(p.dtype == torch.float32 for p in m.G.parameters())
            assert m.sample(5, gen).shape == (5, 2)
    plain = losses[("none", False)]
    assert all(np.isfinite(v) for key, vals in losses.items() if key != "keys" for v in vals)
    np.testing.assert_allclose(losses[("none", True)], plain, rtol=1e-5)  # compiled: the same numbers
    np.testing.assert_allclose(losses[("bf16", False)], plain, rtol=0.05)  # bf16 networks: close
    assert losses[("bf16", False)] != plain  # and autocast did act
