"""The plugin's commands and its light entry module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from gflowzoo_dmmd.commands import build_app


def test_entry_module_does_not_import_torch():
    code = "import sys, gflowzoo_dmmd.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gaussian_demo_command(registry, tmp_path: Path):
    out = tmp_path / "fig.png"
    res = CliRunner().invoke(build_app(), ["gaussian-demo", "--out", str(out), "--steps", "30", "--n", "50"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and out.stat().st_size > 1000
    assert "adaptive" in res.output and "alpha=10" in res.output
    bad = CliRunner().invoke(build_app(), ["gaussian-demo", "--out", str(out), "--distance", "median"])
    assert bad.exit_code == 2


def test_diagnose_command(registry, tmp_path: Path):
    """A tiny rbf run, then ``gflowzoo dmmd diagnose RUN``: plots of MMD^2, gradient norm and width against t."""
    from gflowzoo.runs import RunDir
    from gflowzoo.session import build_method, resolve
    from gflowzoo.trainer import train

    sets = ["backbone.width=8", "backbone.depth=1", "feature_dim=8", "groups=2", "n_clean=8", "n_noisy=8",
            "kernel=\"rbf\"", "stats_samples=64", "sampler.levels=3", "sampler.steps_per_level=1",
            "sampler.particles=8", "sampler.n_ref=8", "run.steps=3", "run.grid_size=8", "run.log_every=1"]
    spec = resolve(registry, "dmmd", "toy-8gaussians", sets=sets, overrides={"device": "cpu"}, preset="cpu-quick")
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(spec.to_data())
    train(run, spec, build_method(registry, spec, "cpu"), progress=False)
    res = CliRunner().invoke(build_app(), ["diagnose", str(run.path), "--levels", "4", "--n", "16",
                                           "--out", str(tmp_path / "diag")])
    assert res.exit_code == 0, res.output
    for name in ("mmd2", "grad_norm", "width"):
        assert (tmp_path / "diag" / f"{name}.png").is_file()
    assert "0.0010" in res.output and "1.0000" in res.output
    records = run.read_metrics()
    assert {"loss", "mmd2", "gp", "l2", "grad_norm"} <= set(records[-1])


def test_train_celeba_preset_fails_cleanly_without_data(registry, tmp_path: Path, monkeypatch):
    """``gflowzoo train dmmd --dataset celeba64`` starts the CelebA preset and stops with a clear data error."""
    from gflowzoo.cli import app

    monkeypatch.setenv("GFLOWZOO_DATA", str(tmp_path / "data"))
    res = CliRunner().invoke(app, ["train", "dmmd", "--dataset", "celeba64", "--preset", "paper",
                                   "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"])
    assert res.exit_code == 2, res.output
    assert "CelebA" in res.output or "celeba" in res.output
    from gflowzoo.session import resolve

    spec = resolve(registry, "dmmd", "celeba64", preset="paper")
    assert spec.model.backbone["name"] == "conv" and spec.model.backbone["width"] == 128
    assert spec.run.steps == 300_000 and spec.model.sampler.levels == 100


def test_sample_command_with_a_new_grid(registry, tmp_path: Path):
    """``gflowzoo sample RUN --set sampler.levels=...`` works without retraining (the means are recomputed)."""
    from gflowzoo.cli import app

    res = CliRunner().invoke(app, ["train", "a-dmmd", "--dataset", "toy-8gaussians", "--steps", "2", "--no-progress",
                                   "--out", str(tmp_path / "run"), "--device", "cpu",
                                   "--set", "backbone.width=8", "--set", "backbone.depth=1", "--set", "groups=2",
                                   "--set", "stats_samples=64", "--set", "sampler.levels=3",
                                   "--set", "sampler.particles=8", "--set", "run.grid_size=8"])
    assert res.exit_code == 0, res.output
    raw = tmp_path / "x.pt"
    res = CliRunner().invoke(app, ["sample", str(tmp_path / "run"), "-n", "5", "--raw", str(raw),
                                   "--set", "sampler.levels=6", "--set", "sampler.variant=\"exact\""])
    assert res.exit_code == 0, res.output
    assert "nfe=6" in res.output and "variant=exact" in res.output
    x = torch.load(raw)
    assert x.shape == (5, 2) and torch.isfinite(x).all()
