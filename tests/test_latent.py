"""Latent spaces (docs/latent.md): the autoencoder kind and its cache, ``latent_space`` on any method, and the
one-sentence errors for every bad input (a points data set, an architecture that cannot take the images, a corrupt
or foreign cached file, a missing or different autoencoder at sampling time)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from gflowzoo import runner
from gflowzoo.autoencoders import AutoencoderSpec, fit_autoencoder, load_autoencoder, resolve_spec
from gflowzoo.errors import CheckpointError, ConfigError, UserError
from gflowzoo.plugins import get_registry

#: A tiny MLP autoencoder on 8x8 digits: a fraction of a second to fit.
TINY_AE = {"name": "mlp", "latent_dim": 4, "hidden": [32], "steps": 30, "batch_size": 64}
TINY_SET = "latent_space={name='mlp', latent_dim=4, hidden=[32], steps=30, batch_size=64}"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def one_sentence(text: str) -> bool:
    return text.count(". ") <= 1 and "\n" not in text.strip() and "Traceback" not in text


def _fit(registry=None, **changes):
    registry = registry or get_registry()
    spec = resolve_spec(registry, {**TINY_AE, **changes}, "digits", (1, 8, 8))
    return spec, fit_autoencoder(registry, spec)


# -- the kind and the cache ----------------------------------------------------------------------------------------


def test_autoencoders_are_a_registry_kind():
    reg = get_registry()
    assert {"conv", "mlp"} <= set(reg.names("autoencoder"))
    from gflowzoo.api import Autoencoder

    assert issubclass(reg.load("autoencoder", "conv"), Autoencoder)


def test_fit_caches_by_key_loads_weights_only_and_writes_a_grid(cache):
    spec, res = _fit()
    assert res.path == spec.path == cache / "autoencoders" / f"{spec.label}.pt"
    assert res.grid is not None and res.grid.is_file() and 0 < res.test_mse < 1
    payload = torch.load(res.path, map_location="cpu", weights_only=True)
    assert payload["dataset"] == "digits" and payload["latent_shape"] == [4] and payload["key"] == spec.key
    net, _ = load_autoencoder(res.path, get_registry(), expect=spec)
    assert net.encode(torch.zeros(3, 1, 8, 8)).shape == (3, 4)
    assert net.decode(torch.zeros(3, 4)).shape == (3, 1, 8, 8)
    # the key: the same spec finds the same file; data set, shape, options and recipe all change it
    reg = get_registry()
    same = resolve_spec(reg, dict(TINY_AE), "digits", (1, 8, 8))
    assert same.key == spec.key
    assert len({spec.key, resolve_spec(reg, {**TINY_AE, "seed": 1}, "digits", (1, 8, 8)).key,
                resolve_spec(reg, {**TINY_AE, "latent_dim": 5}, "digits", (1, 8, 8)).key,
                resolve_spec(reg, dict(TINY_AE), "mnist", (1, 28, 28)).key}) == 4


def test_fit_is_deterministic_on_the_cpu(cache):
    spec, res = _fit()
    sha = torch.load(res.path, weights_only=True)["weights_sha256"]
    res.path.unlink()
    _, res2 = _fit()
    assert torch.load(res2.path, weights_only=True)["weights_sha256"] == sha


def test_variational_option_trains(cache):
    spec, res = _fit(kl=0.01)
    net, _ = load_autoencoder(res.path, get_registry(), expect=spec)
    assert net.encode(torch.zeros(2, 1, 8, 8)).shape == (2, 4)  # the posterior mean


# -- latent_space on methods ---------------------------------------------------------------------------------------


def test_train_sample_evaluate_in_a_latent_space(cache, tmp_path):
    from gflowzoo.testing import plugins_loaded

    with plugins_loaded("gmmn") as state:
        reg = state.registry
        said: list[str] = []

        class Rec(runner.Reporter):
            def say(self, text: str) -> None:
                said.append(text)

        spec, run = runner.prepare_run(reg, "gmmn", dataset="digits", out=tmp_path / "run", steps=3,
                                       sets=[TINY_SET, "batch_size=16", "run.grid_size=16"])
        out = runner.train_run(reg, run, spec, progress=False, reporter=Rec())
        assert any("is not trained yet: training it on digits" in s for s in said)  # train fits a missing one
        assert out.method.inner.data.kind == "points" and out.method.inner.data.shape == (4,)
        saved = run.read_config()["latent_space"]
        assert saved["name"] == "mlp" and re.fullmatch(r"mlp-[0-9a-f]{10}", saved["autoencoder"])
        assert len(saved["weights_sha256"]) == 64
        _, method, _ = runner.load_run(run.path, registry=reg)
        x = method.sample(5, torch.Generator().manual_seed(0))
        assert x.shape == (5, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
        assert method.sampling_info()["autoencoder"] == saved["autoencoder"]
        # a second run reuses the cached autoencoder (nothing retrained) and the cached codes
        said.clear()
        spec2, run2 = runner.prepare_run(reg, "gmmn", dataset="digits", out=tmp_path / "run2", steps=1,
                                         sets=[TINY_SET, "batch_size=16", "run.grid_size=4"])
        runner.train_run(reg, run2, spec2, progress=False, reporter=Rec())
        assert not any("not trained yet" in s for s in said)


def test_missing_or_different_autoencoder_at_sampling_time(cache, tmp_path):
    from gflowzoo.testing import plugins_loaded

    with plugins_loaded("gmmn") as state:
        reg = state.registry
        spec, run = runner.prepare_run(reg, "gmmn", dataset="digits", out=tmp_path / "run", steps=1,
                                       sets=[TINY_SET, "batch_size=16", "run.grid_size=4"])
        runner.train_run(reg, run, spec, progress=False)
        ae = next((cache / "autoencoders").glob("mlp-*[0-9a-f].pt"))
        blob = ae.read_bytes()
        # a different autoencoder with the same recipe (other weights): refused, nothing overwritten
        payload = torch.load(ae, weights_only=True)
        payload["state"] = {k: v + 0.01 for k, v in payload["state"].items()}
        payload["weights_sha256"] = "0" * 64
        torch.save(payload, ae)
        with pytest.raises(CheckpointError, match="other weights than the one this run was trained with") as exc:
            runner.load_run(run.path, registry=reg)
        assert one_sentence(str(exc.value))
        # missing: the command that recreates it (deterministic on the CPU)
        ae.unlink()
        with pytest.raises(UserError, match="gflowzoo autoencoder fit mlp --dataset digits") as exc:
            runner.load_run(run.path, registry=reg)
        assert one_sentence(str(exc.value)) and not ae.exists()
        ae.write_bytes(blob)
        runner.load_run(run.path, registry=reg)  # the original file back: loads


def test_corrupt_cached_autoencoder_is_one_sentence_and_kept(cache, tmp_path):
    spec, res = _fit()
    res.path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable autoencoder file") as exc:
        load_autoencoder(res.path, get_registry(), expect=spec)
    assert one_sentence(str(exc.value))
    from gflowzoo.testing import plugins_loaded

    with plugins_loaded("gmmn") as state:
        spec_r, run = runner.prepare_run(state.registry, "gmmn", dataset="digits", out=tmp_path / "run", steps=1,
                                         sets=[TINY_SET, "batch_size=16"])
        with pytest.raises(CheckpointError, match="not a readable autoencoder file"):
            runner.train_run(state.registry, run, spec_r, progress=False)
    assert res.path.read_bytes() == b"not a torch file" and not (tmp_path / "run" / "config.toml").exists()


def test_autoencoder_of_another_data_set_or_size_is_refused(cache):
    spec, res = _fit()
    other = AutoencoderSpec(spec.name, "mnist", (1, 28, 28), spec.options, spec.recipe)
    with pytest.raises(CheckpointError, match=r"trained on 'digits' images of shape \[1, 8, 8\], not on 'mnist'") as e:
        load_autoencoder(res.path, get_registry(), expect=other)
    assert one_sentence(str(e.value))
    other_recipe = AutoencoderSpec(spec.name, "digits", (1, 8, 8), spec.options, {**spec.recipe, "steps": 31})
    with pytest.raises(CheckpointError, match="holds another autoencoder"):
        load_autoencoder(res.path, get_registry(), expect=other_recipe)


@pytest.mark.parametrize(("sets", "dataset", "error", "match"), [
    ([TINY_SET], "toy-8gaussians", UserError, "latent_space applies to image data sets"),
    (["latent_space=nope"], "digits", ConfigError, "Unknown autoencoder 'nope'|autoencoder.*nope"),
    (["latent_space=mlp", "latent_space.widthh=3"], "digits", ConfigError, "unknown option 'widthh'"),
    (["latent_space.latent_dim=3"], "digits", ConfigError, "latent_space needs an autoencoder name"),
    (["latent_space=conv"], "digits", UserError, "conv autoencoder takes images of 28 to 64 pixels"),
    (["latent_space={name='mlp', steps=0}"], "digits", ConfigError, "steps and batch_size must be >= 1"),
])
def test_bad_latent_config_is_one_sentence(cache, tmp_path, sets, dataset, error, match):
    from gflowzoo.testing import plugins_loaded

    with plugins_loaded("gmmn") as state:
        with pytest.raises(error, match=match) as exc:
            spec, run = runner.prepare_run(state.registry, "gmmn", dataset=dataset, out=tmp_path / "run", steps=1,
                                           sets=[*sets, "batch_size=16"])
            runner.train_run(state.registry, run, spec, progress=False)
        assert "\n" not in str(exc.value).strip()
    assert not (tmp_path / "run" / "config.toml").exists()
    assert not list((cache / "autoencoders").glob("*.pt")) if (cache / "autoencoders").exists() else True


def test_cli_fit_list_and_latent_run(cache, tmp_path):
    from gflowzoo.cli import main

    def run_cli(*args: str) -> None:
        try:
            main(list(args))
        except SystemExit as exc:
            assert exc.code in (0, None), args

    run_cli("autoencoder", "fit", "mlp", "--dataset", "digits", "--no-progress", "--set", "latent_dim=4",
            "--set", "hidden=[32]", "--set", "steps=30", "--set", "batch_size=64")
    files = list((cache / "autoencoders").glob("mlp-*.pt"))
    assert len([f for f in files if not f.stem.endswith("-codes")]) == 1
    assert list((cache / "autoencoders").glob("mlp-*-recon.png"))
    run_cli("autoencoder", "list")
    from gflowzoo.testing import plugins_loaded

    with plugins_loaded("gmmn"):
        out = tmp_path / "run"
        run_cli("train", "gmmn", "--dataset", "digits", "--steps", "2", "--out", str(out), "--no-progress",
                "--set", TINY_SET, "--set", "batch_size=16", "--set", "run.grid_size=4")
        assert not list((cache / "autoencoders").glob("mlp-*-recon.png"))[1:]  # the fitted one was reused
        run_cli("sample", str(out), "--n", "6", "--out", str(tmp_path / "s.png"))
        run_cli("evaluate", str(out), "--metrics", "nn", "--n", "20")
    assert (tmp_path / "s.png").is_file() and list(out.glob("eval-*.json"))


#: Settings that keep each method's two steps and eight samples fast (the latent presets are sized for real runs).
FAST = {
    "dmmd": ["sampler.levels=2", "sampler.particles=8", "sampler.n_ref=16", "stats_samples=64", "n_clean=8",
             "n_noisy=8", "groups=2"],
    "a-dmmd": ["sampler.levels=2", "sampler.particles=8", "stats_samples=64", "n_clean=8", "n_noisy=8", "groups=2"],
    "a-dmmd-e": ["sampler.levels=2", "sampler.particles=8", "stats_samples=64", "n_clean=8", "n_noisy=8",
                 "groups=2"],
    "dkale": ["sampler.levels=2", "sampler.particles=8", "n_clean=8", "n_noisy=8", "groups=2"],
    "mmdflow": ["steps=2", "n_data=32", "particles=8"],
    "gmmn": ["batch_size=16"], "gmmn-ae": ["batch_size=16", "ae_steps=1"],
    "mmdgan": ["batch_size=16"], "mmdgan-gp": ["batch_size=16"],
    "drift": ["batch_size=16"], "sliced-mmdflow": ["particles=8", "n_data=32", "projections=4"],
}


def test_every_method_of_the_zoo_runs_in_a_latent_space(cache, tmp_path):
    """Each method of the repository's plugins trains, checkpoints, loads back and samples images through
    ``latent_space`` with no change to the method (a new method fails here until it works or says why)."""
    from gflowzoo.testing import plugins_loaded

    with plugins_loaded("dmmd", "gmmn", "mmdgan", "diffusers", "drift", "sliced") as state:
        reg = state.registry
        for name in reg.names("method"):
            extra = FAST.get(name, [])
            spec, run = runner.prepare_run(reg, name, dataset="digits", out=tmp_path / name, steps=2,
                                           sets=[TINY_SET, "run.grid_size=4", *extra])
            try:
                runner.train_run(reg, run, spec, progress=False)
            except UserError as exc:  # a method that cannot work on codes must say why, in one sentence
                assert "cannot run on the codes" in str(exc) and one_sentence(str(exc)), name
                continue
            _, method, _ = runner.load_run(run.path, registry=reg)
            x = method.sample(3, torch.Generator().manual_seed(0))
            assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all(), name
            assert method.inner.data.kind == "points", name


def test_compare_in_a_latent_space_reuses_its_finished_runs(cache, tmp_path):
    from gflowzoo.cli import main
    from gflowzoo.testing import plugins_loaded

    args = ["compare", "gmmn", "--dataset", "digits", "--steps", "2", "--seeds", "1", "--eval-points", "0",
            "--metrics", "nn", "--n", "20", "--out", str(tmp_path / "cmp"), "--no-progress",
            "--set", TINY_SET, "--set", "batch_size=16"]
    with plugins_loaded("gmmn"):
        for _ in range(2):  # the second time, the finished run is reused (its recorded autoencoder is no option)
            try:
                main(list(args))
            except SystemExit as exc:
                assert exc.code in (0, None)
    runs = list((tmp_path / "cmp" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "compare.json").is_file()


def test_resume_refits_a_missing_autoencoder_with_the_same_weights(cache, tmp_path):
    from gflowzoo.testing import plugins_loaded

    with plugins_loaded("gmmn") as state:
        reg = state.registry
        sets = [TINY_SET, "batch_size=16", "run.grid_size=4"]
        spec, run = runner.prepare_run(reg, "gmmn", dataset="digits", out=tmp_path / "run", steps=1, sets=sets)
        runner.train_run(reg, run, spec, progress=False)
        for f in (cache / "autoencoders").glob("*"):
            f.unlink()
        spec2, run2 = runner.prepare_run(reg, "gmmn", out=tmp_path / "run", steps=2, resume=True)
        payload = runner.resume_payload(run2, spec2)
        out = runner.train_run(reg, run2, spec2, payload=payload, progress=False)
        assert out.result.step == 2  # the refit (deterministic on the CPU) has the recorded weights
