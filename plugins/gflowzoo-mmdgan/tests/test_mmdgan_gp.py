"""Behaviour of ``mmdgan-gp``: MMD^2, the witness gradient penalty (by finite differences), the L2 activation
penalty, the official-code options, checked against independent float64 computations."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gflowzoo.errors import ConfigError
from gflowzoo.nets import sample_latent

TOY = ("batch_size=6", "mlp_hidden=[8]", "critic.width=8", "critic.depth=2", "nz=3")
ALPHAS = [0.2, 0.5, 1.0, 2.0, 5.0]


def np_rq(a: np.ndarray, b: np.ndarray, alphas=ALPHAS, c: float = 1.0) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return sum((1 + d2 / (2 * al)) ** (-al) for al in alphas) + c * a @ b.T


def np_mmd2_unbiased(x, y, kern=np_rq):
    kxx, kyy, kxy = kern(x, x), kern(y, y), kern(x, y)
    n, m = len(x), len(y)
    return (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def _clone(g: torch.Generator) -> torch.Generator:
    out = torch.Generator()
    out.set_state(g.get_state())
    return out


def _draws(m, g):
    """Reproduce the random draws of one critic step: real batch, latent, interpolation weights."""
    b = m.config.batch_size
    x = m.data.train.sample(b, g)
    z = sample_latent(b, m.config.nz, g, "cpu", m.config.latent)
    a = torch.rand(b, generator=g)
    return x, z, a


def test_penalties_match_finite_differences(build):
    m = build("mmdgan-gp", "toy-8gaussians", *TOY)
    g = torch.Generator().manual_seed(7)
    x, z, a = _draws(m, _clone(g))
    critic = copy.deepcopy(m.critic).double()
    with torch.no_grad():
        y = m.G(z).double()
        x = x.double()
        xhat = x + a.double()[:, None] * (y - x)
        hx, hy = critic(x).numpy(), critic(y).numpy()

        def w(p: np.ndarray) -> np.ndarray:  # the witness of the batch at points p [K, 2]
            hp = critic(torch.from_numpy(p)).numpy()
            return np_rq(hp, hx).mean(1) - np_rq(hp, hy).mean(1)

        eps = 1e-6
        grads = np.zeros_like(xhat.numpy())
        for j in range(2):
            e = np.zeros(2)
            e[j] = eps
            grads[:, j] = (w(xhat.numpy() + e) - w(xhat.numpy() - e)) / (2 * eps)
        gp = ((np.sqrt((grads**2).sum(1) + 1e-5) - 1) ** 2).mean()
        # L2 penalty: every LeakyReLU output and the critic output, real and generated batch separately
        l2 = 0.0
        for inp in (x, y):
            h = inp
            for layer in critic.net.net:
                h = layer(h)
                if isinstance(layer, torch.nn.LeakyReLU):
                    l2 += float(h.square().mean())
            l2 += float(h.square().mean())
    logs = m.critic_step(g)
    mmd = np_mmd2_unbiased(hx, hy)
    assert float(logs["mmd2_d"]) == pytest.approx(mmd, rel=1e-4, abs=1e-6)
    assert float(logs["gp"]) == pytest.approx(gp, rel=1e-4, abs=1e-6)
    assert float(logs["l2"]) == pytest.approx(l2, rel=1e-4)
    assert float(logs["loss_d"]) == pytest.approx(-mmd + gp + l2, rel=1e-4, abs=1e-5)


def test_column_norm_quirk():
    from gflowzoo_mmdgan.mmdgan_gp import MMDGANGP

    g = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    fake = type("M", (), {"config": type("C", (), {"gp_norm": "column"})()})()
    col = MMDGANGP._grad_norm(fake, g)
    np.testing.assert_allclose(col.numpy(), np.sqrt((g.numpy() ** 2).sum(2) + 1e-5), rtol=1e-6)
    fake.config.gp_norm = "sample"
    full = MMDGANGP._grad_norm(fake, g)
    np.testing.assert_allclose(full.numpy(), np.sqrt((g.numpy() ** 2).reshape(2, -1).sum(1) + 1e-5), rtol=1e-6)


def test_rq_diagonal_quirk_matches_official_formula(build):
    m = build("mmdgan-gp", "toy-8gaussians", *TOY, "rq_diagonal_quirk=true",
              "kernel={name = \"rq\", alphas = [0.1, 1.0, 10.0], linear_weight = 1.0}")
    gen = torch.Generator().manual_seed(2)
    hx, hy = torch.randn(9, 4, generator=gen).double(), torch.randn(7, 4, generator=gen).double()

    def kern(a, b):
        return np_rq(a, b, [0.1, 1.0, 10.0], 1.0)

    x, y = hx.numpy(), hy.numpy()
    n, mm = len(x), len(y)
    # the code subtracts a constant diagonal (= number of alphas) although the linear term adds c |h|^2 to it
    code = (kern(x, x).sum() - 3 * n) / (n * (n - 1)) + (kern(y, y).sum() - 3 * mm) / (mm * (mm - 1)) \
        - 2 * kern(x, y).mean()
    assert float(m._mmd2(hx, hy)) == pytest.approx(code, rel=1e-10)
    m.config.rq_diagonal_quirk = False
    assert float(m._mmd2(hx, hy)) == pytest.approx(np_mmd2_unbiased(x, y, kern), rel=1e-10)


def test_per_tensor_gradient_clipping(build):
    m = build("mmdgan-gp", "toy-8gaussians", *TOY, "grad_clip_per_tensor=0.001")
    g = torch.Generator().manual_seed(0)
    m.critic_step(g)
    norms = [float(p.grad.norm()) for p in m.critic.parameters()]
    assert max(norms) <= 0.001 * (1 + 1e-5)
    m.generator_step(g)
    assert max(float(p.grad.norm()) for p in m.G.parameters()) <= 0.001 * (1 + 1e-5)


def test_batchnorm_critic_is_refused(registry):
    from gflowzoo.data import DataHandle
    from gflowzoo.session import build_method, resolve

    spec = resolve(registry, "mmdgan-gp", "digits", sets=["ngf=8", "critic.ndf=8", "critic.batchnorm=true"],
                   overrides={"device": "cpu"}, preset="cpu-quick")
    data = DataHandle("digits", shape=(1, 16, 16), kind="image")  # 16 px: the DCGAN critic has a BatchNorm layer
    with pytest.raises(ConfigError, match="BatchNorm"):
        build_method(registry, spec, "cpu", data=data)


def test_training_lowers_mmd_on_a_toy(build):
    """A few dozen steps on 8 Gaussians move the generator towards the data (fixed-kernel MMD on raw points)."""
    m = build("mmdgan-gp", "toy-8gaussians", "batch_size=32", "critic_steps=2", "lr=0.003", "critic.width=64")
    data = m.data.train.sample(400, torch.Generator().manual_seed(1)).double().numpy()

    def rbf_mmd() -> float:
        s = m.sample(400, torch.Generator().manual_seed(2)).double().numpy()
        return np_mmd2_unbiased(data, s, lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 0.5))

    before = rbf_mmd()
    g = torch.Generator().manual_seed(0)
    for step in range(40):
        m.train_step(step, g)
    assert rbf_mmd() < 0.5 * before
