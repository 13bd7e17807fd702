"""Behaviour of ``gmmn`` and ``gmmn-ae`` checked against independent float64 NumPy computations."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gflowzoo.errors import TrainingDiverged
from gflowzoo_gmmn.gmmn_ae import DropoutMLP

SMALL = ("batch_size=24", "hidden=[16, 16]")


def np_mmd2(x, y, variances, estimator):
    """Gaussian mixture in the *variance* convention exp(-d^2 / (2 s)), by brute force."""

    def k(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2 * s)) for s in variances)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    if estimator == "biased":
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    return (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def _clone(g):
    out = torch.Generator()
    out.set_state(g.get_state())
    return out


@pytest.mark.parametrize("estimator,sqrt", [("biased", True), ("unbiased", False)])
def test_loss_on_unit_pixels_matches_numpy(build, estimator, sqrt):
    m = build("gmmn", "digits", *SMALL, f"estimator=\"{estimator}\"", f"sqrt_loss={str(sqrt).lower()}",
              "kernel.sigmas=[2.0, 5.0, 10.0, 20.0, 40.0, 80.0]")
    g = torch.Generator().manual_seed(0)
    gr = _clone(g)
    x = m.data.train.sample(24, gr)
    z = torch.rand(24, 10, generator=gr) * 2 - 1
    with torch.no_grad():
        y = m.G(z)  # sigmoid output: pixels in [0, 1]
    logs = m.train_step(0, g)
    # the official bandwidths (variances 2..80) apply to [0, 1] pixels: data (x + 1) / 2
    xu = ((x.double().numpy() + 1) / 2).reshape(24, -1)
    mmd = np_mmd2(xu, y.double().numpy().reshape(24, -1), [2, 5, 10, 20, 40, 80], estimator)
    assert logs["mmd2"] == pytest.approx(mmd, rel=1e-4, abs=1e-6)
    assert logs["loss"] == pytest.approx(np.sqrt(mmd) if sqrt else mmd, rel=1e-4, abs=1e-6)


def test_samples_are_images_in_range(build):
    m = build("gmmn", "digits", *SMALL)
    x = m.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and float(x.min()) >= -1 and float(x.max()) <= 1


def test_lr_and_momentum_drop(build):
    m = build("gmmn", "toy-8gaussians", *SMALL, "optimizer=\"sgd\"", "lr=2.0", "lr_drop_step=3",
              "lr_after=0.2", "momentum=0.9", "momentum_after=0.99")
    g = torch.Generator().manual_seed(0)
    seen = []
    for step in range(5):
        m.train_step(step, g)
        seen.append((m.opt.param_groups[0]["lr"], m.opt.param_groups[0]["momentum"]))
    assert seen == [(2.0, 0.9)] * 3 + [(0.2, 0.99)] * 2


def test_gmmn_lowers_mmd_on_a_toy(build):
    m = build("gmmn", "toy-8gaussians", "batch_size=128", "lr=0.003")
    data = m.data.train.sample(400, torch.Generator().manual_seed(1)).double().numpy()

    def mmd() -> float:
        s = m.sample(400, torch.Generator().manual_seed(2)).double().numpy()
        return np_mmd2(data, s, [0.25], "unbiased")

    before = mmd()
    g = torch.Generator().manual_seed(0)
    for step in range(80):
        m.train_step(step, g)
    assert mmd() < 0.5 * before


def test_dropout_masks_come_from_the_generator():
    torch.manual_seed(0)
    net = DropoutMLP([6, 5, 3], "sigmoid", "sigmoid", [0.5, 0.2])
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(1))
    a = net(x, torch.Generator().manual_seed(2))
    b = net(x, torch.Generator().manual_seed(2))
    c = net(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # the same computation by hand: mask with keep probability 1 - p, scaled by 1 / (1 - p)
    g = torch.Generator().manual_seed(2)
    h = x * (torch.rand(4, 6, generator=g) >= 0.5) / 0.5
    h = torch.sigmoid(net.linears[0](h))
    h = h * (torch.rand(4, 5, generator=g) >= 0.2) / 0.8
    torch.testing.assert_close(a, torch.sigmoid(net.linears[1](h)))
    net.eval()
    torch.testing.assert_close(net(x, torch.Generator()), torch.sigmoid(net.linears[1](torch.sigmoid(net.linears[0](x)))))


def test_gmmn_ae_phases(build):
    m = build("gmmn-ae", "digits", "batch_size=24", "hidden=[16]", "ae_hidden=[16]", "code_dim=4", "ae_steps=3",
              "ae_batch_size=16", "ae_optimizer=\"sgd\"", "ae_lr=0.1")  # the official AE optimiser
    g = torch.Generator().manual_seed(0)

    def snap():
        return copy.deepcopy({"G": m.G.state_dict(), "enc": m.encoder.state_dict(), "dec": m.decoder.state_dict()})

    def changed(a, b, key):
        return any(not torch.equal(a[key][k], b[key][k]) for k in a[key])

    s0 = snap()
    logs = [m.train_step(step, g) for step in range(3)]
    s1 = snap()
    assert [r["phase"] for r in logs] == [0.0, 0.0, 0.0]
    assert changed(s0, s1, "enc") and changed(s0, s1, "dec") and not changed(s0, s1, "G")
    # momentum schedule of the AE (0 -> 0.5 at 50 -> 0.9 at 200)
    assert m.opt_ae.param_groups[0]["momentum"] == 0.0
    logs = [m.train_step(step, g) for step in range(3, 5)]
    s2 = snap()
    assert [r["phase"] for r in logs] == [1.0, 1.0]
    assert changed(s1, s2, "G") and not changed(s1, s2, "enc") and not changed(s1, s2, "dec")
    # the GMMN target is encoder(data) with dropout off, on [0, 1] pixels
    gr = torch.Generator().manual_seed(5)
    codes = m.target_features(_clone(gr))
    x = m.data.train.sample(24, _clone(gr))
    m.encoder.eval()
    with torch.no_grad():
        expect = m.encoder(((x + 1) / 2).reshape(24, -1))
    m.encoder.train()
    torch.testing.assert_close(codes, expect)
    # samples are decoded codes
    out = m.sample(3, torch.Generator().manual_seed(1))
    assert out.shape == (3, 1, 8, 8) and float(out.min()) >= -1 and float(out.max()) <= 1


def test_autoencoder_learns(build):
    m = build("gmmn-ae", "digits", "ae_steps=100", "ae_hidden=[64]", "code_dim=8", "ae_optimizer=\"adam\"",
              "ae_lr=0.003", "ae_dropout=[]")
    g = torch.Generator().manual_seed(0)
    losses = [m.train_step(step, g)["loss"] for step in range(60)]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])


def test_non_finite_loss_raises_training_diverged(registry, tmp_path):
    from gflowzoo.runs import RunDir
    from gflowzoo.session import build_method, resolve
    from gflowzoo.trainer import train

    spec = resolve(registry, "gmmn", "toy-8gaussians", sets=[*SMALL, "run.steps=3", "run.log_every=1"],
                   overrides={"device": "cpu"}, preset="cpu-quick")
    m = build_method(registry, spec, "cpu")
    with torch.no_grad():
        for p in m.G.parameters():
            p.fill_(float("inf"))
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    with pytest.raises(TrainingDiverged):
        train(run, spec, m, progress=False)
