"""The plugin seen from the command line: lazy loading, listing, a train/resume/sample round trip, user errors,
and DMMD with the ``unet`` backbone (when the dmmd plugin is installed)."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gflowzoo.testing import plugins_loaded

COMPONENTS = {
    ("backbone", "unet"), ("method", "ddpm"), ("schedule", "diffusers"), ("schedule", "diffusers-linear"),
    ("autoencoder", "diffusers-kl"),
    ("schedule", "diffusers-cosine"), ("schedule", "diffusers-scaled-linear"), ("schedule", "diffusers-sigmoid"),
}

_LIST_SCRIPT = """
import io, json, sys, contextlib
from gflowzoo.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        main(sys.argv[1:])
    except SystemExit as exc:
        assert not exc.code, exc.code
heavy = sorted(m for m in ("torch", "diffusers", "huggingface_hub") if m in sys.modules)
print(json.dumps({"out": buf.getvalue(), "heavy": heavy, "offline": __import__("os").environ.get("HF_HUB_OFFLINE")}))
"""


def _run_cli_subprocess(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["GFLOWZOO_LOAD_PLUGINS"] = "diffusers"
    proc = subprocess.run([sys.executable, "-c", _LIST_SCRIPT, *args], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_list_shows_the_components_without_importing_torch_or_diffusers():
    res = _run_cli_subprocess("list", "--json")
    assert res["heavy"] == [], f"gflowzoo list imported {res['heavy']}"
    assert res["offline"] == "1", "the plugin must set HF_HUB_OFFLINE before diffusers can be imported"
    listing = json.loads(res["out"])
    mine = {(c["kind"], c["name"]) for c in listing["components"] if c["plugin"] == "diffusers"}
    assert mine == COMPONENTS
    assert not listing["errors"]


def _cli(*args: str) -> int:
    from gflowzoo.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_train_resume_sample_through_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    tiny = ["--set", "batch_size=8", "--set", "sampler.steps=2", "--set", "run.grid_size=4", "--no-progress"]
    with plugins_loaded("diffusers"):
        assert _cli("train", "ddpm", "--dataset", "digits", "--steps", "2", "--out", str(run), *tiny) == 0
        assert _cli("train", "ddpm", "--out", str(run), "--resume", "--steps", "3", "--no-progress") == 0
        assert _cli("sample", str(run), "-n", "5", "--raw", str(tmp_path / "x.pt")) == 0
    out = capsys.readouterr().out
    assert "nfe=2" in out
    import torch

    x = torch.load(tmp_path / "x.pt", weights_only=True)
    assert x.shape == (5, 1, 8, 8) and torch.isfinite(x).all()
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "step-00000003.pt"


def test_hub_id_is_a_one_block_user_error(tmp_path, capsys):
    with plugins_loaded("diffusers"):
        code = _cli("train", "ddpm", "--steps", "1", "--out", str(tmp_path / "r"), "--no-progress",
                    "--set", "net.pretrained=google/ddpm-cifar10-32")
    err = capsys.readouterr().err
    assert code == 2
    assert "save_pretrained" in err and "Traceback" not in err


def _dmmd_installed() -> bool:
    return any(ep.name == "dmmd" for ep in md.entry_points(group="gflowzoo"))


#: Extra settings that make a DMMD run tiny (keys of the dmmd plugin's config).
DMMD_TINY: list[str] = ["feature_dim=16", "groups=2", "n_clean=8", "n_noisy=8", "gp_samples=4", "stats_samples=32",
                        "stats_batch=32", "sampler.particles=8", "sampler.levels=3", "sampler.steps_per_level=1",
                        "sampler.n_ref=16"]


@pytest.mark.skipif(not _dmmd_installed(), reason="the dmmd plugin is not installed")
def test_dmmd_with_the_unet_backbone_trains_resumes_and_samples(tmp_path):
    run = tmp_path / "dmmd"
    sets = ["--set", "backbone=unet", "--set", "run.grid_size=4", "--no-progress"]
    for item in DMMD_TINY:
        sets += ["--set", item]
    with plugins_loaded("dmmd", "diffusers") as state:
        assert state.registry.get("backbone", "unet").plugin == "diffusers"
        assert _cli("train", "dmmd", "--dataset", "digits", "--steps", "2", "--out", str(run), *sets) == 0
        assert _cli("train", "dmmd", "--out", str(run), "--resume", "--steps", "4", "--no-progress") == 0
        assert _cli("sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert (Path(run) / "checkpoints" / "step-00000004.pt").is_file()
