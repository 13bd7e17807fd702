"""The ``ddpm`` method: its training step against diffusers' own noising, EMA and warm-up arithmetic, presets,
schedules and configuration errors."""

from __future__ import annotations

import copy

import pytest
import torch

from gflowzoo.errors import ConfigError
from gflowzoo.session import build_method, resolve
from gflowzoo.testing import plugins_loaded
from gflowzoo_diffusers import presets


@pytest.fixture
def registry():
    with plugins_loaded("diffusers") as state:
        yield state.registry


def _method(registry, dataset="digits", sets=(), preset="cpu-quick"):
    spec = resolve(registry, "ddpm", dataset, sets=list(sets), overrides={"device": "cpu"}, preset=preset)
    return build_method(registry, spec, "cpu")


def test_train_step_noises_like_diffusers_and_returns_the_mse(registry):
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    m = _method(registry, sets=["batch_size=6", "schedule=diffusers-cosine", "warmup=0"])
    seen = {}
    m.net.register_forward_pre_hook(lambda mod, args: seen.update(xt=args[0].detach(), k=args[1].detach()))
    before = copy.deepcopy(m.net)
    gen = torch.Generator().manual_seed(5)
    replay = torch.Generator().set_state(gen.get_state())
    logs = m.train_step(0, gen)
    # the same draws, in the documented order: batch, steps, noise
    x0 = m.data.train.sample(6, replay)
    k = torch.randint(1000, (6,), generator=replay)
    noise = torch.randn(x0.shape, generator=replay)
    expected = DDPMScheduler(beta_schedule="squaredcos_cap_v2").add_noise(x0, noise, k)
    torch.testing.assert_close(seen["xt"], expected)
    torch.testing.assert_close(seen["k"], k.float())
    with torch.no_grad():
        loss = ((before(expected, k.float()) - noise) ** 2).mean()
    assert logs["loss"] == pytest.approx(float(loss), rel=1e-5)


def test_ema_and_warmup_arithmetic(registry):
    m = _method(registry, sets=["batch_size=4", "ema_decay=0.5", "ema_warmup=false", "warmup=4", "lr=0.01"])
    init = {k: v.clone() for k, v in m.net.state_dict().items()}
    logs = m.train_step(0, torch.Generator().manual_seed(0))
    assert logs["lr"] == pytest.approx(0.01 / 4)
    assert m.opt.param_groups[0]["lr"] == pytest.approx(0.01 / 4)
    new = m.net.state_dict()
    for key, value in m.ema.state_dict().items():
        torch.testing.assert_close(value, 0.5 * init[key] + 0.5 * new[key])
    assert m._ema_decay(10**6) == 0.5
    m.config.ema_warmup = True
    assert m._ema_decay(0) == pytest.approx(0.1) and m._ema_decay(10**6) == 0.5


def test_sampling_info_reports_nfe_equal_to_steps(registry):
    m = _method(registry, sets=["sampler.steps=3", "sampler.kind=ddpm"])
    assert m.sampling_info()["nfe"] == 3 and m.sampling_info()["sampler"] == "ddpm"
    calls = []
    m.ema.register_forward_hook(lambda *a: calls.append(1))
    x = m.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and len(calls) == 3
    assert float(x.abs().max()) <= 1.0 + 1e-5  # clip_sample keeps images in [-1, 1] at the last step


def test_points_use_the_mlp_and_any_vp_schedule(registry):
    m = _method(registry, "toy-8gaussians", sets=["schedule=vp-linear", "timesteps=100", "batch_size=8",
                                                  "sampler.steps=4"])
    from gflowzoo_diffusers.method import _Flat

    assert isinstance(m.net, _Flat)
    # the discretised table follows the schedule at t_k = (k + 1) / T
    t = (torch.arange(100, dtype=torch.float64) + 1) / 100
    torch.testing.assert_close(m.abar.double(), m.schedule.alpha(t).double() ** 2, rtol=1e-4, atol=1e-6)
    assert m.sample(3, torch.Generator().manual_seed(0)).shape == (3, 2)


@pytest.mark.parametrize("variant", ["paper", "cpu-quick"])
def test_every_preset_resolves(registry, variant):
    for dataset in ("toy-8gaussians", "digits", "mnist", "fashion-mnist", "cifar10", "celeba64", "lsun-church64"):
        spec = resolve(registry, "ddpm", dataset, preset=variant, overrides={"device": "cpu"})
        expected = presets.preset(dataset, variant)
        assert expected, f"no {variant} preset for {dataset}"
        assert spec.model.sampler.steps == expected["sampler"]["steps"]
        assert spec.run.steps == expected["run"]["steps"]
    assert resolve(registry, "ddpm", "cifar10", preset="paper").model.net.size == "ddpm"


def test_configuration_errors_are_user_errors(registry):
    with pytest.raises(ConfigError, match="net.size"):
        resolve(registry, "ddpm", "digits", sets=["net.size=huge"])
    with pytest.raises(ConfigError, match="cannot exceed"):
        _method(registry, sets=["sampler.steps=2000"])
    with pytest.raises(ConfigError, match="needs image data"):
        _method(registry, "toy-moons", sets=["net.kind=unet"])
    with pytest.raises(ConfigError, match="hub id"):
        _method(registry, sets=["net.pretrained=google/ddpm-cifar10-32"])


def _dmmd_installed() -> bool:
    import importlib.metadata as md

    return any(ep.name == "dmmd" for ep in md.entry_points(group="gflowzoo"))


@pytest.mark.skipif(not _dmmd_installed(), reason="the dmmd plugin is not installed")
@pytest.mark.parametrize("variant", ["paper", "cpu-quick"])
def test_presets_sample_at_the_nfe_of_the_dmmd_presets(variant):
    """`gflowzoo compare dmmd ddpm` compares at equal NFE out of the box."""
    with plugins_loaded("diffusers", "dmmd") as state:
        reg = state.registry
        for dataset in ("toy-8gaussians", "digits", "mnist", "cifar10", "celeba64", "lsun-church64"):
            ddpm = resolve(reg, "ddpm", dataset, preset=variant, overrides={"device": "cpu"}).model.sampler
            dmmd = resolve(reg, "dmmd", dataset, preset=variant, overrides={"device": "cpu"}).model.sampler
            assert ddpm.steps == dmmd.levels * dmmd.steps_per_level, (dataset, variant)
