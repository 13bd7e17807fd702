"""Behaviour of ``mmdgan`` checked against independent float64 NumPy computations of the losses."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gflowzoo.errors import TrainingDiverged
from gflowzoo_mmdgan.common import one_sided, safe_sqrt

TOY = ("batch_size=12", "mlp_hidden=[8, 8]", "critic.width=8", "critic.depth=2")


def np_rbf_mmd2(x: np.ndarray, y: np.ndarray, sigmas, estimator: str) -> float:
    """Gaussian-mixture MMD^2 (std convention) by brute force."""

    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2 * s * s)) for s in sigmas)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    if estimator == "biased":
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    return (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def _clone(g: torch.Generator) -> torch.Generator:
    out = torch.Generator()
    out.set_state(g.get_state())
    return out


@pytest.mark.parametrize(
    "opts",
    [(), ("estimator=\"biased\"", "sqrt_loss=true", "lambda_rg=16.0")],
    ids=["paper", "official-code"],
)
def test_critic_objective_matches_numpy(build, opts):
    m = build("mmdgan", "toy-8gaussians", *TOY, *opts)
    c = m.config
    g = torch.Generator().manual_seed(3)
    g_ref = _clone(g)
    critic, decoder = copy.deepcopy(m.critic), copy.deepcopy(m.decoder)
    with torch.no_grad():
        for p in critic.parameters():
            p.clamp_(-c.clip, c.clip)
        x = m.data.train.sample(c.batch_size, g_ref)
        z = torch.randn(c.batch_size, c.nz, generator=g_ref)
        y = m.G(z)
        fx, fy = critic(x), critic(y)
        rx, ry = decoder(fx), decoder(fy)
    logs = m.critic_step(g)
    fx_, fy_ = fx.double().numpy(), fy.double().numpy()
    mmd = np_rbf_mmd2(fx_, fy_, [1, 2, 4, 8, 16], c.estimator)
    dist = np.sqrt(max(mmd, 0.0)) if c.sqrt_loss else mmd
    hinge = -np.maximum(-(fx_.mean(0) - fy_.mean(0)), 0).mean()
    ae = ((rx - x) ** 2).mean().item() + ((ry - y) ** 2).mean().item()
    expected = dist + c.lambda_rg * hinge - c.lambda_ae * ae
    assert float(logs["mmd2_d"]) == pytest.approx(mmd, rel=1e-4, abs=1e-6)
    assert float(logs["loss_d"]) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_generator_loss_matches_numpy(build):
    m = build("mmdgan", "toy-8gaussians", *TOY, "sqrt_loss=true", "lambda_rg=16.0")
    g = torch.Generator().manual_seed(4)
    g_ref = _clone(g)
    with torch.no_grad():
        for p in m.critic.parameters():  # features of order 1, so that the float32 MMD^2 is well above rounding
            p.mul_(4.0)
        x = m.data.train.sample(12, g_ref)
        y = m.G(torch.randn(12, m.config.nz, generator=g_ref))
        fx, fy = m.critic(x).double().numpy(), m.critic(y).double().numpy()
    logs = m.generator_step(g)
    mmd = np_rbf_mmd2(fx, fy, [1, 2, 4, 8, 16], "unbiased")
    assert mmd > 1e-3
    expected = np.sqrt(max(mmd, 1e-10)) + 16 * (-np.maximum(-(fx.mean(0) - fy.mean(0)), 0).mean())
    assert float(logs["loss"]) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_clipping_hits_the_encoder_only(build):
    m = build("mmdgan", "toy-8gaussians", *TOY, "lr=1e-5", "clip=0.01")
    with torch.no_grad():
        for p in [*m.critic.parameters(), *m.decoder.parameters()]:
            p.fill_(0.5)
    m.critic_step(torch.Generator().manual_seed(0))
    # after the clamp, one RMSprop step moves a weight by at most lr / sqrt(1 - alpha) = 10 lr
    bound = 0.01 + 10 * 1e-5 * 1.001
    assert max(float(p.detach().abs().max()) for p in m.critic.parameters()) <= bound
    assert min(float(p.detach().min()) for p in m.decoder.parameters()) > 0.4  # the decoder is not clipped


def test_each_player_updates_only_itself(build):
    m = build("mmdgan", "toy-8gaussians", *TOY)
    g = torch.Generator().manual_seed(1)
    gen0 = copy.deepcopy(m.G.state_dict())
    crit0 = copy.deepcopy(m.critic.state_dict())
    m.critic_step(g)
    assert all(torch.equal(gen0[k], v) for k, v in m.G.state_dict().items())
    assert any(not torch.equal(crit0[k], v) for k, v in m.critic.state_dict().items())
    crit1 = copy.deepcopy(m.critic.state_dict())
    m.generator_step(g)
    assert all(torch.equal(crit1[k], v) for k, v in m.critic.state_dict().items())
    assert any(not torch.equal(gen0[k], v) for k, v in m.G.state_dict().items())
    assert all(p.requires_grad for p in m.critic.parameters())


def test_official_critic_schedule(registry, monkeypatch):
    from gflowzoo.session import build_method, resolve

    spec = resolve(registry, "mmdgan", "digits", overrides={"device": "cpu"}, preset="paper")
    m = build_method(registry, spec, "cpu")
    expected = {0: 100, 24: 100, 25: 5, 26: 5, 499: 5, 500: 100, 501: 5, 1000: 100, 1234: 5}
    assert {s: m.critic_steps_at(s) for s in expected} == expected
    calls = []
    monkeypatch.setattr(m, "critic_step", lambda g: calls.append(1) or {"loss_d": torch.tensor(0.0)})
    monkeypatch.setattr(m, "generator_step", lambda g: {"loss": torch.tensor(0.0)})
    for step, n in [(3, 100), (30, 5), (500, 100)]:
        calls.clear()
        logs = m.train_step(step, torch.Generator())
        assert len(calls) == n and logs["critic_steps"] == n


def test_safe_sqrt_and_hinge():
    v = torch.tensor([-1.0, 0.0, 1e-12, 0.25, 4.0], requires_grad=True)
    out = safe_sqrt(v)
    out.sum().backward()
    assert torch.isfinite(v.grad).all()
    np.testing.assert_allclose(out[3:].detach().numpy(), [0.5, 2.0], rtol=1e-6)
    assert float(out[:3].detach().max()) <= 1e-5 + 1e-12
    d = torch.tensor([0.5, -0.25, -1.0, 0.0])
    assert float(one_sided(d)) == pytest.approx(-(0.25 + 1.0) / 4)


def test_sample_keeps_state_and_is_in_range(build):
    m = build("mmdgan", "digits", "ngf=8", "critic.ndf=8", "decoder_ngf=8")
    before = copy.deepcopy(m.state_dict())
    x = m.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and float(x.abs().max()) <= 1.0
    assert m.G.training
    for k, v in m.G.state_dict().items():
        assert torch.equal(before["generator"][k], v), k


def test_non_finite_loss_raises_training_diverged(registry, tmp_path):
    from gflowzoo.runs import RunDir
    from gflowzoo.session import build_method, resolve
    from gflowzoo.trainer import train

    spec = resolve(registry, "mmdgan", "toy-8gaussians", sets=[*TOY, "run.steps=3", "run.log_every=1",
                   "critic_steps_warmup=1"], overrides={"device": "cpu"}, preset="cpu-quick")
    m = build_method(registry, spec, "cpu")
    with torch.no_grad():
        for p in m.G.parameters():
            p.fill_(float("nan"))
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    with pytest.raises(TrainingDiverged, match="diverged at step 1"):
        train(run, spec, m, progress=False)


@pytest.mark.parametrize("method", ["mmdgan", "mmdgan-gp"])
def test_channels_last_auto(build, method):
    """``auto`` turns the format on for the built-in DCGAN nets on CPU, off for points, MLP generators and
    critics that do not declare support; the networks' weights are then stored channels-last."""
    small = ("ngf=8", "critic.ndf=8", "batch_size=8") + (("decoder_ngf=8",) if method == "mmdgan" else ())
    on = build(method, "digits", *small)
    assert on.channels_last
    assert on.G.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not build(method, "toy-8gaussians", *TOY[:2]).channels_last
    assert not build(method, "digits", *small, "generator=\"mlp\"").channels_last
    assert not build(method, "digits", *small, "critic=\"mlp-critic\"").channels_last


def test_bad_config_is_a_clear_error(build):
    from gflowzoo.errors import ConfigError

    with pytest.raises(ConfigError, match="mlp-critic"):
        build("mmdgan", "toy-8gaussians", "critic=\"dcgan\"")
    with pytest.raises(ConfigError, match="clip"):
        build("mmdgan", "toy-8gaussians", *TOY, "clip=-1.0")


@pytest.mark.parametrize("method", ["mmdgan", "mmdgan-gp"])
def test_channels_last_gives_the_same_steps(build, method):
    small = ("ngf=8", "critic.ndf=8", "batch_size=8") + (("decoder_ngf=8",) if method == "mmdgan" else ())
    a = build(method, "digits", *small, "channels_last=false")
    b = build(method, "digits", *small, "channels_last=true")
    assert not a.channels_last and b.channels_last
    ga, gb = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    for _ in range(2):
        la, lb = a.critic_step(ga), b.critic_step(gb)
        for k in la:
            assert float(la[k]) == pytest.approx(float(lb[k]), rel=1e-4, abs=1e-6), k
    assert float(a.generator_step(ga)["loss"]) == pytest.approx(float(b.generator_step(gb)["loss"]), rel=1e-4, abs=1e-6)
    xa, xb = a.sample(4, torch.Generator().manual_seed(1)), b.sample(4, torch.Generator().manual_seed(1))
    assert xb.is_contiguous()
    torch.testing.assert_close(xa, xb, rtol=1e-4, atol=1e-5)
