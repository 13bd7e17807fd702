"""Behaviour of the diffusers plugin's components, checked against independent computations (numpy closed forms,
diffusers' own add_noise, analytic noise predictors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gflowzoo.errors import ConfigError
from gflowzoo_diffusers.backbone import Unet
from gflowzoo_diffusers.mlp import TimeMLP
from gflowzoo_diffusers.sampling import make_scheduler, reverse_diffusion
from gflowzoo_diffusers.schedules import (
    DiffusersCosine,
    DiffusersLinear,
    DiffusersScaledLinear,
    DiffusersSchedule,
)
from gflowzoo_diffusers.unets import ImageUNet, padded_side

# ---------------------------------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------------------------------


def _cosine_abar(T: int) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule with betas capped at 0.999 (diffusers' squaredcos_cap_v2)."""
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)])
    return np.cumprod(1 - betas)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (DiffusersLinear(), np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))),
        (DiffusersLinear(200, 1e-3, 0.05), np.cumprod(1 - np.linspace(1e-3, 0.05, 200))),
        (DiffusersScaledLinear(), np.cumprod(1 - np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2)),
        (DiffusersCosine(), _cosine_abar(1000)),
    ],
    ids=["linear", "linear-200", "scaled-linear", "cosine"],
)
def test_schedule_matches_closed_form_at_every_step(schedule, expected):
    T = len(expected)
    t = (torch.arange(T, dtype=torch.float64) + 1) / T  # step k sits at t = (k + 1) / T
    np.testing.assert_allclose(schedule.alpha(t).numpy() ** 2, expected, rtol=2e-5, atol=1e-9)
    np.testing.assert_allclose(schedule.sigma(t).numpy() ** 2, 1 - expected, rtol=2e-5, atol=1e-6)
    assert schedule.t_min == pytest.approx(1 / T)
    assert float(schedule.alpha(torch.tensor(0.0, dtype=torch.float64))) == 1.0


def test_schedule_interpolates_log_abar_between_steps():
    s = DiffusersLinear(num_train_timesteps=10, beta_start=0.01, beta_end=0.3)
    abar = np.cumprod(1 - np.linspace(0.01, 0.3, 10))
    # halfway between steps 3 and 4 (t = 0.45): the geometric mean of their abar
    got = float(s.alpha(torch.tensor(0.45, dtype=torch.float64))) ** 2
    assert got == pytest.approx(math.sqrt(abar[3] * abar[4]), rel=1e-6)  # diffusers' betas are float32
    # a quarter of the way from the clean data (abar = 1) to step 0
    got = float(s.alpha(torch.tensor(0.025, dtype=torch.float64))) ** 2
    assert got == pytest.approx(abar[0] ** 0.25, rel=1e-6)


def test_schedule_add_noise_equals_diffusers_add_noise():
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    s, ref = DiffusersCosine(), DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 1, 4, 4, generator=g), torch.randn(5, 1, 4, 4, generator=g)
    k = torch.tensor([0, 1, 250, 777, 999])
    torch.testing.assert_close(s.add_noise(x0, s.timestep_to_t(k).float(), noise=noise), ref.add_noise(x0, noise, k))


def test_generic_schedule_errors_name_the_problem():
    with pytest.raises(ConfigError, match="no scheduler 'NopeScheduler'"):
        DiffusersSchedule(scheduler="NopeScheduler")
    with pytest.raises(ConfigError, match="beta_schedule"):
        DiffusersSchedule(beta_schedule="quadratic")
    with pytest.raises(ConfigError, match="beta_start <= beta_end"):
        DiffusersLinear(beta_start=0.1, beta_end=0.01)


# ---------------------------------------------------------------------------------------------------------------
# U-Net and backbone
# ---------------------------------------------------------------------------------------------------------------


def test_padding_replicates_borders_and_crop_inverts_it():
    assert [padded_side(s, 4) for s in (8, 28, 32, 33)] == [8, 32, 32, 40]
    net = ImageUNet((1, 9, 7), size="tiny")  # 2 levels: sides must be even
    assert net.padded == (10, 8)
    x = torch.randn(2, 1, 9, 7, generator=torch.Generator().manual_seed(1))
    padded = net.pad(x)
    expected = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 1), (0, 1)), mode="edge")
    np.testing.assert_array_equal(padded.numpy(), expected)
    torch.testing.assert_close(net.crop(padded), x)
    assert net(x, torch.tensor([0.0, 500.0])).shape == (2, 1, 9, 7)


@pytest.mark.parametrize("features", ["mid", "both"])
def test_backbone_features_equal_a_hand_computed_pass(features):
    torch.manual_seed(0)
    net = Unet((1, 8, 8), 6, size="tiny", features=features, pool=2, num_train_timesteps=101).eval()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.0, 0.5, 1.0])
    unet = net.net.unet
    captured = {}
    handle = unet.mid_block.register_forward_hook(lambda m, i, o: captured.__setitem__("mid", o))
    try:
        with torch.no_grad():
            out = unet(x, t * 100, return_dict=False)[0]  # t -> t * (T - 1), T = 101
            got = net(x, t)
    finally:
        handle.remove()
    parts = [torch.nn.functional.adaptive_avg_pool2d(captured["mid"], 2).flatten(1)]
    if features == "both":
        parts.append(out.flatten(1))
    torch.testing.assert_close(got, net.proj(torch.cat(parts, 1)))
    with torch.no_grad():
        torch.testing.assert_close(net(x, None), net(x, torch.zeros(3)))


def test_mid_features_skip_the_up_path():
    torch.manual_seed(0)
    net = Unet((1, 8, 8), 4, features="mid")
    calls = []
    net.net.unet.up_blocks[0].register_forward_hook(lambda *a: calls.append(1))
    net(torch.zeros(2, 1, 8, 8), torch.rand(2)).sum().backward()
    assert calls == []
    assert net.net.unet.conv_in.weight.grad is not None


def test_backbone_rejects_points_and_bad_options():
    with pytest.raises(ConfigError, match="images"):
        Unet((2,), 8)
    with pytest.raises(ConfigError, match="pool"):
        Unet((1, 8, 8), 8, pool=0)
    with pytest.raises(ConfigError, match="Unknown U-Net size"):
        Unet((1, 8, 8), 8, size="huge")


def test_pretrained_local_folder_round_trip(tmp_path):
    torch.manual_seed(3)
    src = ImageUNet((1, 8, 8), size="tiny")
    src.unet.save_pretrained(tmp_path / "unet")
    torch.manual_seed(4)
    net = Unet((1, 8, 8), 8, pretrained=str(tmp_path / "unet"))
    for key, value in src.unet.state_dict().items():
        torch.testing.assert_close(net.net.unet.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="maps 1 -> 1 channels"):
        Unet((3, 8, 8), 8, pretrained=str(tmp_path / "unet"))


def test_pretrained_hub_id_and_bad_folders_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="hub id.*save_pretrained"):
        Unet((1, 8, 8), 8, pretrained="google/ddpm-cifar10-32")
    with pytest.raises(ConfigError, match="does not exist"):
        Unet((1, 8, 8), 8, pretrained=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        Unet((1, 8, 8), 8, pretrained=str(tmp_path / "empty"))


def test_time_mlp_shapes_and_time_dependence():
    torch.manual_seed(0)
    net = TimeMLP(2, width=16, depth=2)
    x = torch.randn(5, 2)
    a, b = net(x, torch.zeros(5)), net(x, torch.full((5,), 900.0))
    assert a.shape == (5, 2) and not torch.allclose(a, b)


# ---------------------------------------------------------------------------------------------------------------
# samplers, with the exact noise predictor of a Gaussian (or a point mass) target
# ---------------------------------------------------------------------------------------------------------------


def _gaussian_eps(schedule, mu, sd):
    """The exact eps(x_t, k) = E[eps | x_t] for data N(mu, sd^2 I)."""
    abar = schedule.alphas_cumprod().float()

    def eps(x, k):
        a = abar[k.long()].view(-1, *([1] * (x.ndim - 1)))
        return (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * sd**2 + 1 - a)

    return eps


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_sampler_lands_on_a_point_mass(kind, spacing):
    s = DiffusersLinear()
    mu = torch.tensor([0.3, -0.7, 0.1])
    calls = []

    def eps(x, k):
        calls.append(1)
        return _gaussian_eps(s, mu, 0.0)(x, k)

    # 8 divides T = 1000: with "trailing" spacing and a step count that does not divide T, diffusers' DDIM ends
    # at step 0 (sigma = 0.01) rather than at the clean data
    sched = make_scheduler(kind, s.scheduler_kwargs(), False, spacing)
    x = reverse_diffusion(eps, sched, kind, 8, (3,), 16, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert len(calls) == 8  # NFE = steps
    torch.testing.assert_close(x, mu.expand(16, 3), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
def test_sampler_reproduces_a_gaussian(kind):
    s = DiffusersLinear()
    mu, sd, n = torch.tensor([0.5, -1.0]), 0.5, 4000
    sched = make_scheduler(kind, s.scheduler_kwargs(), False, "leading")
    x = reverse_diffusion(_gaussian_eps(s, mu, sd), sched, kind, 200, (2,), n, torch.Generator().manual_seed(0),
                          torch.device("cpu"))
    torch.testing.assert_close(x.mean(0), mu, rtol=0, atol=5 * sd / math.sqrt(n))
    torch.testing.assert_close(x.std(0), torch.full((2,), sd), rtol=0.06, atol=0)


def test_ddim_with_eta_is_reproducible_and_random():
    s = DiffusersLinear()
    eps = _gaussian_eps(s, torch.zeros(2), 1.0)
    sched = make_scheduler("ddim", s.scheduler_kwargs(), False, "leading")
    run = lambda seed: reverse_diffusion(eps, sched, "ddim", 5, (2,), 8, torch.Generator().manual_seed(seed),  # noqa: E731
                                         torch.device("cpu"), eta=1.0)
    torch.testing.assert_close(run(0), run(0), rtol=0, atol=0)
    assert not torch.allclose(run(0), run(1))


@pytest.mark.parametrize("features", ["mid", "out"])
def test_backbone_is_twice_differentiable_for_gradient_penalties(features):
    torch.manual_seed(0)
    net = Unet((1, 8, 8), 4, features=features)  # attention="math" by default
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x, torch.rand(3)).sum(), x, create_graph=True)
    (grad.flatten(1).norm(dim=1) - 1).square().mean().backward()
    attn = [p for n, p in net.named_parameters() if "attentions" in n and p.grad is not None]
    assert attn and all(torch.isfinite(p.grad).all() for p in attn)
