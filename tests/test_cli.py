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
        (["train", "fit-gaussian", "--set", 'kernel={name="rbf", sigmas=[1,2}'],
         ["--set 'kernel={name=\"rbf\", sigmas=[1,2}': the value is not valid TOML: Unclosed array"]),
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


def _train_toy(out, *extra: str) -> None:
    r = invoke("train", "fit-gaussian", "--dataset", "toy-8gaussians", "--out", str(out), "--steps", "2",
               "--no-progress", "--set", "batch_size=8", "--set", "run.grid_size=16", *extra)
    assert r.exit_code == 0, r.output


def test_broken_inline_toml_is_not_taken_for_a_name(fit_registry, tmp_path):
    r = invoke("train", "fit-gaussian", "--out", str(tmp_path / "run"), "--set", 'kernel={name="rbf", sigmas=[1,2}')
    assert r.exit_code == 2 and "Unknown kernel" not in r.output
    assert "(at character 25 of the value)" in r.output and not (tmp_path / "run").exists()


def test_unwritable_output_paths_exit_2_before_any_work(fit_registry, tmp_path, monkeypatch):
    import gflowzoo.cli
    import gflowzoo.runner
    from gflowzoo.compare import Comparison

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out, fragment in [(afile / "run", f"{afile} is a file, not a folder."),
                          (afile, "it is a file, not a folder."),
                          ("/proc/x", "no file can be created in /proc")]:
        r = invoke("train", "fit-gaussian", "--out", str(out), "--steps", "1", "--no-progress")
        assert r.exit_code == 2, r.output
        assert f"Error: Cannot write the run directory {out}: {fragment}" in r.output
    assert afile.read_text() == "not a folder"

    run = tmp_path / "run"
    _train_toy(run)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output paths were checked")

    monkeypatch.setattr(gflowzoo.cli, "load_run", no_work)
    monkeypatch.setattr(gflowzoo.runner, "load_run", no_work)
    monkeypatch.setattr(Comparison, "run", no_work)
    r = invoke("sample", str(run), "--raw", str(afile / "x.npy"))
    assert r.exit_code == 2 and f"Cannot write --raw {afile / 'x.npy'}: {afile} is a file, not a folder." in r.output
    r = invoke("sample", str(run), "--out", "/proc/x.png")
    assert r.exit_code == 2 and "Cannot write --out /proc/x.png: no file can be created in /proc" in r.output
    r = invoke("evaluate", str(afile))
    assert r.exit_code == 2 and "not a gflowzoo run directory" in r.output
    r = invoke("compare", "fit-gaussian", "--steps", "1", "--out", str(afile / "cmp"))
    assert r.exit_code == 2 and f"Cannot write --out {afile / 'cmp'}: {afile} is a file" in r.output
    monkeypatch.setenv("GFLOWZOO_CACHE", str(afile / "cache"))
    r = invoke("extractor", "fit", "--dataset", "digits")
    assert r.exit_code == 2 and f"Cannot write the extractor file {afile / 'cache'}" in r.output


def test_evaluate_and_compare_check_the_run_directories_they_write_into(fit_registry, tmp_path, monkeypatch):
    """A read-only run directory (simulated: root may write anywhere) stops evaluate before any sampling."""
    import tempfile

    import gflowzoo.cli
    import gflowzoo.runner
    from gflowzoo.compare import Comparison

    run = tmp_path / "run"
    _train_toy(run)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output paths were checked")

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(gflowzoo.cli, "load_run", no_work)
    monkeypatch.setattr(gflowzoo.runner, "load_run", no_work)
    monkeypatch.setattr(Comparison, "run", no_work)
    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    r = invoke("evaluate", str(run))
    assert r.exit_code == 2, r.output
    assert f"Cannot write the run directory {run}: no file can be created in {run} (Read-only file system)." in r.output
    r = invoke("compare", "--runs", str(run), "--out", str(tmp_path / "cmp"))
    assert r.exit_code == 2 and "Read-only file system" in r.output


def test_sample_names_the_checkpoint_and_warns_about_damaged_ones(fit_registry, tmp_path):
    out = tmp_path / "run"
    _train_toy(out, "--set", "run.checkpoint_every=1")
    ckpts = out / "checkpoints"
    r = invoke("sample", str(out), "--n", "4")
    assert r.exit_code == 0 and f"checkpoint: {ckpts / 'step-00000002.pt'} (step 2)" in r.stdout, r.output
    assert "warning" not in r.stderr
    newest = ckpts / "step-00000002.pt"
    newest.write_bytes(newest.read_bytes()[:50])
    r = invoke("sample", str(out), "--n", "4")
    assert r.exit_code == 0, r.output
    assert f"checkpoint: {ckpts / 'step-00000001.pt'} (step 1)" in r.stdout
    # everything on stderr but the sampling progress line (not a terminal: a plain line)
    warnings = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("sample ")]
    assert len(warnings) == 1, r.stderr  # one line, whatever the width
    assert warnings[0].startswith(f"warning: skipped a damaged checkpoint: {newest} is truncated or corrupt (")
    # a file that is not a checkpoint at all
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes about this run\n")
    r = invoke("sample", str(out), "--checkpoint", str(notes))
    assert r.exit_code == 2 and f"{notes} is not a checkpoint file (not a torch archive)." in r.output


def test_no_progress_silences_the_sampling_and_evaluation_bars(fit_registry, tmp_path):
    """Every command that draws a progress bar takes --no-progress (train, sample, evaluate, compare)."""
    out = tmp_path / "run"
    _train_toy(out)
    r = invoke("sample", str(out), "--n", "4")
    assert r.exit_code == 0 and any(line.startswith("sample ") for line in r.stderr.splitlines()), r.output
    r = invoke("sample", str(out), "--n", "4", "--no-progress")
    assert r.exit_code == 0 and not any(line.startswith("sample ") for line in r.stderr.splitlines()), r.output
    r = invoke("evaluate", str(out), "--n", "8", "--metrics", "mmd")
    assert r.exit_code == 0 and any(line.startswith("evaluate") for line in r.stderr.splitlines()), r.output
    r = invoke("evaluate", str(out), "--n", "8", "--metrics", "mmd", "--no-progress")
    assert r.exit_code == 0 and not any(line.startswith("evaluate") for line in r.stderr.splitlines()), r.output


def test_invalid_saved_config_names_the_file(fit_registry, tmp_path):
    out = tmp_path / "run"
    _train_toy(out)
    good = (out / "config.toml").read_text()
    assert "batch_size = 8" in good
    r = invoke("sample", str(out), "--n", "4", "--set", "lrr=1")  # a bad --set is not blamed on the file
    assert r.exit_code == 2 and "'lrr'" in r.output and "config.toml" not in r.output
    (out / "config.toml").write_text(good.replace("batch_size = 8", 'batch_size = "eight"'))
    for extra in ([], ["--set", "run.grid_size=4"]):
        r = invoke("sample", str(out), "--n", "4", *extra)
        assert r.exit_code == 2, r.output
        assert f"Error: {out / 'config.toml'}: batch_size must be an integer; got 'eight'." in r.output
    (out / "config.toml").write_text("batchsize = 3\n" + good)
    r = invoke("sample", str(out), "--n", "4")
    assert r.exit_code == 2 and f"{out / 'config.toml'}: Unknown config key 'batchsize'" in r.output
    # --resume reads the same file and names it too
    r = invoke("train", "fit-gaussian", "--out", str(out), "--resume", "--steps", "4", "--no-progress")
    assert r.exit_code == 2 and f"{out / 'config.toml'}: Unknown config key 'batchsize'" in r.output


def test_help_from_docstrings_renders_rest_markup_plainly():
    import typer

    from gflowzoo.cli import plain_help, plain_rst

    assert plain_rst("Run ``gflowzoo list`` on a :class:`~gflowzoo.runs.RunDir` (:func:`gflowzoo.paths.x`).") == (
        "Run `gflowzoo list` on a `RunDir` (`gflowzoo.paths.x`).")
    demo = typer.Typer(rich_markup_mode=None)
    sub = typer.Typer(help="Tools of the ``sub`` group.", rich_markup_mode=None)
    demo.add_typer(sub, name="sub")

    @demo.command("go")
    def go() -> None:
        """Write ``out.png`` (see :func:`gflowzoo.viz.save_samples`)."""

    @sub.command("inner")
    def inner() -> None:
        """The ``inner`` command."""

    plain_help(demo)
    for args, text in [(["go", "--help"], "Write `out.png` (see `gflowzoo.viz.save_samples`)."),
                       (["--help"], "Tools of the `sub` group."),
                       (["sub", "inner", "--help"], "The `inner` command.")]:
        r = runner.invoke(demo, args, env={"COLUMNS": "120"})
        assert r.exit_code == 0 and text in r.output and "``" not in r.output, r.output
    r = invoke("list", "kernel", "rbf")
    assert r.exit_code == 0 and '`convention="std"`' in r.output and "``" not in r.output


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
