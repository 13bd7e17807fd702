"""The command line: listing, error messages and exit codes, train/sample end to end, no torch for list/help."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from gflowzoo.cli import app
from helpers_plugins import subprocess_env

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args), env={"COLUMNS": "120"})
    assert "Traceback" not in result.output, result.output
    return result


def test_list_all_kinds():
    r = invoke("list")
    assert r.exit_code == 0, r.output
    for title in ("Methods", "Feature backbones", "Kernels", "Divergences", "Noise schedules", "Flow integrators",
                  "Datasets", "Metrics", "Feature extractors"):
        assert title in r.output
    assert "rbf" in r.output and "toy-8gaussians" in r.output and "gflowzoo.builtin" in r.output


@pytest.mark.parametrize("kind", ["kernel", "kernels", "KERNEL"])
def test_list_one_kind(kind):
    r = invoke("list", kind)
    assert r.exit_code == 0, r.output
    assert "Kernels" in r.output and "rbf" in r.output and "poly" in r.output
    assert "Datasets" not in r.output and "toy-8gaussians" not in r.output


def test_list_one_component_shows_options():
    r = invoke("list", "kernel", "rbf")
    assert r.exit_code == 0, r.output
    assert "kernel rbf" in r.output and "sigmas = [1.0]" in r.output and "convention" in r.output
    r = invoke("list", "kernel", "rbf", "--json")
    data = json.loads(r.stdout)
    assert data["name"] == "rbf" and data["options"]["sigmas"] == [1.0] and data["plugin"] == "gflowzoo.builtin"


def test_list_method_shows_config_defaults(fit_registry):
    r = invoke("list", "method", "fit-gaussian")
    assert r.exit_code == 0, r.output
    assert "batch_size = 64" in r.output and 'kernel = "rbf"' in r.output


def test_list_json():
    r = invoke("list", "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    rows = {(c["kind"], c["name"]): c for c in data["components"]}
    assert rows[("kernel", "rbf")]["plugin"] == "gflowzoo.builtin" and rows[("kernel", "rbf")]["summary"]
    assert ("dataset", "digits") in rows and data["errors"] == []


def test_plugins_json():
    r = invoke("plugins", "--json")
    assert r.exit_code == 0
    infos = {i["name"]: i for i in json.loads(r.stdout)}
    b = infos["gflowzoo.builtin"]
    assert b["builtin"] is True and b["hooks"] == ["gflowzoo_register"] and b["error"] is None
    r = invoke("plugins")
    assert r.exit_code == 0 and "gflowzoo.builtin" in r.output and "built-in" in r.output


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["list", "kernal"], ["Unknown kind 'kernal'", "Did you mean 'kernel'?", "method"]),
        (["list", "kernel", "rfb"], ["Unknown kernel 'rfb'", "Did you mean 'rbf'?", "energy, linear"]),
        (["train", "fit-gausian"], ["Unknown method 'fit-gausian'", "Did you mean 'fit-gaussian'?", "fit-gaussian"]),
        (["train", "fit-gaussian", "--dataset", "toy-moon"], ["Unknown dataset 'toy-moon'", "'toy-moons'", "digits"]),
        (["train", "fit-gaussian", "--set", "lrr=1"], ["'lrr'", "Did you mean 'lr'?"]),
        (["train", "fit-gaussian", "--set", "batch_size=many"], ["batch_size must be an integer"]),
        (["train", "fit-gaussian", "--set", "novalue"], ["--set expects key=value"]),
        (["train", "fit-gaussian", "--set", "kernel.sigmass=[1.0]"], ["kernel", "unknown option 'sigmass'"]),
        (["train", "fit-gaussian", "--preset", "huge"], ["Unknown preset 'huge'"]),
        (["train", "fit-gaussian", "--resume"], ["--resume needs --out"]),
        (["train", "fit-gaussian", "--device", "tpu"], ["Unknown device 'tpu'"]),
        (["sample", "no/such/run"], ["Run directory not found: no/such/run"]),
    ],
)
def test_user_errors_exit_2_with_a_message(fit_registry, tmp_path, args, fragments):
    if args[0] == "train" and "--resume" not in args:
        args = [*args, "--out", str(tmp_path / "run"), "--no-progress", "--steps", "1"]
    r = invoke(*args)
    assert r.exit_code == 2, r.output
    assert "Error:" in r.output
    for fragment in fragments:
        assert fragment in r.output, r.output


def test_train_then_sample(fit_registry, tmp_path):
    out = tmp_path / "run"
    r = invoke("train", "fit-gaussian", "--dataset", "toy-8gaussians", "--out", str(out), "--steps", "3",
               "--no-progress", "--set", "batch_size=8", "--set", "run.grid_size=16", "--seed", "5")
    assert r.exit_code == 0, r.output
    for rel in ("config.toml", "metrics.jsonl", "samples/final.png", "checkpoints/step-00000003.pt"):
        assert (out / rel).is_file(), rel
    last = r.output.strip().splitlines()[-1]
    assert last == f"samples: {out / 'samples' / 'final.png'}"
    assert "sampler: nfe=1" in r.output
    # into an existing run directory without --resume: refused
    r = invoke("train", "fit-gaussian", "--dataset", "toy-8gaussians", "--out", str(out), "--steps", "3")
    assert r.exit_code == 2 and "already exists" in r.output and "--resume" in r.output
    # sample: PNG and raw samples
    raw = tmp_path / "x.npy"
    r = invoke("sample", str(out), "--n", "16", "--raw", str(raw), "--seed", "1")
    assert r.exit_code == 0, r.output
    x = np.load(raw)
    assert x.shape == (16, 2) and np.isfinite(x).all()
    assert (out / "samples" / "sample-seed1.png").is_file()
    r2 = invoke("sample", str(out), "--n", "16", "--raw", str(tmp_path / "y.npy"), "--seed", "1")
    assert r2.exit_code == 0 and np.array_equal(np.load(tmp_path / "y.npy"), x)
    # sampling options may be changed without retraining; bad ones are errors
    r = invoke("sample", str(out), "--n", "4", "--set", "lrr=1")
    assert r.exit_code == 2 and "'lrr'" in r.output
    r = invoke("sample", str(out), "--n", "4", "--raw", str(tmp_path / "x.txt"))
    assert r.exit_code == 2 and ".pt or .npy" in r.output
    r = invoke("sample", str(out), "--n", "4", "--out", str(tmp_path / "s.npy"))  # the picture is not the raw file
    assert r.exit_code == 2 and "--raw" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "s.npy").exists()
    r = invoke("sample", str(out), "--n", "4", "--out", str(tmp_path / "s.jpg"))
    assert r.exit_code == 0 and (tmp_path / "s.jpg").stat().st_size > 0, r.output
    # --resume may not change the method's configuration
    r = invoke("train", "fit-gaussian", "--out", str(out), "--resume", "--steps", "5", "--set", "lr=0.1")
    assert r.exit_code == 2 and "only run.* keys" in r.output
    r = invoke("train", "fit-gaussian", "--out", str(out), "--resume", "--steps", "5", "--no-progress")
    assert r.exit_code == 0 and "resuming" in r.output and (out / "checkpoints" / "step-00000005.pt").is_file()


def test_error_messages_are_printed_verbatim(fit_registry, tmp_path):
    """Brackets in a message are text, not rich markup (no crash, nothing swallowed)."""
    r = invoke("sample", "runs/[old]/[/x]")
    assert r.exit_code == 2 and "Run directory not found: runs/[old]/[/x]" in r.output
    r = invoke("train", "fit-gaussian", "--out", str(tmp_path / "r"), "--set", "[/bold]=1")
    assert r.exit_code == 2 and "'[/bold]'" in r.output


def test_sample_dir_without_config_is_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    r = invoke("sample", str(tmp_path / "empty"))
    assert r.exit_code == 2 and "no config.toml" in r.output


_NO_TORCH = """
import sys
from gflowzoo.cli import main
for argv in ({argvs}):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), (argv, exc.code)
heavy = [m for m in ("torch", "diffusers", "torch_fidelity", "matplotlib", "sklearn") if m in sys.modules]
assert not heavy, heavy
print("light")
"""


@pytest.mark.parametrize("argvs", ["['--help'],", "['list'], ['list', 'kernel'], ['plugins']"])
def test_help_and_list_do_not_import_torch(tmp_path, argvs):
    """With every installed plugin loaded (default loading, as a user runs it)."""
    env = subprocess_env()
    done = subprocess.run([sys.executable, "-c", _NO_TORCH.format(argvs=argvs)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip().endswith("light")
