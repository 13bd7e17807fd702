"""The noise-conditional critic: loss terms against explicit Gram-matrix computations, noise-level sampling, EMA,
per-t-bin logs, the learned width, the oracle kernel, backbone sizes and presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gflowzoo_dmmd.backbones import ConvBackbone, downsamplings_for
from gflowzoo_dmmd.critic import NoiseWidth, group_kernel, kale_group_losses, mmd_group_losses, sample_levels

#: the toy preset holds the RBF recipe (docs/dmmd-what-we-learned.md); these mechanics tests use the plain
#: linear-kernel configuration of the dataclass defaults instead
LINEAR = ['kernel="linear"', 'width_prior="none"', "learn_width=true", "width_init=0.0", "backbone.input_skip=0.0",
          'sampler.step_schedule="auto"', "sampler.step_size=0.0", "sampler.n_ref=512", "lambda_flow=0.0"]

TOY = [*LINEAR, "backbone.width=16", "backbone.depth=1", "feature_dim=8", "stats_samples=256", "sampler.levels=4",
       "sampler.steps_per_level=2", "groups=3", "n_clean=6", "n_noisy=5"]


def _gram_terms(fx: np.ndarray, fy: np.ndarray, kern) -> tuple[float, np.ndarray]:
    """Unbiased MMD^2 from explicit Gram matrices and the witness at x and y (numpy, float64)."""
    n, m = len(fx), len(fy)
    kxx, kyy, kxy = kern(fx, fx), kern(fy, fy), kern(fx, fy)
    mmd = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    z = np.concatenate([fx, fy])
    wit = kern(z, fx).mean(1) - kern(z, fy).mean(1)
    return mmd, wit


@pytest.mark.parametrize("kind", ["linear", "rbf"])
def test_group_losses_match_explicit_gram_computation(kind):
    """MMD^2_u, the L2 term and the gradient penalty of every group equal a direct computation with Gram matrices
    (numpy) and a closed-form witness gradient (linear features ``fh = xh A``)."""
    rng = np.random.default_rng(0)
    g, n, m, k, d, dim = 3, 7, 6, 4, 5, 4
    fx = torch.tensor(rng.normal(size=(g, n, dim)), requires_grad=True)
    fy = torch.tensor(rng.normal(size=(g, m, dim)) + 0.7)
    a = torch.tensor(rng.normal(size=(d, dim)))
    xh = torch.tensor(rng.normal(size=(g * k, d)), requires_grad=True)
    fh = (xh @ a).view(g, k, dim)
    hs = torch.tensor([0.8, 1.5, 3.0], dtype=torch.float64)
    kernels = [group_kernel(kind, hs[i]) for i in range(g)]
    out = mmd_group_losses(fx, fy, fh, xh, kernels)
    values = {key: v.detach() for key, v in out.items()}
    for i in range(g):
        if kind == "linear":
            def kern(u, v):
                return u @ v.T
        else:
            def kern(u, v, h=float(hs[i])):
                return np.exp(-((u[:, None] - v[None]) ** 2).sum(-1) / (2 * h * h))
        fxi = fx[i].detach().numpy()
        mmd, wit = _gram_terms(fxi, fy[i].numpy(), kern)
        assert math.isclose(float(values["mmd2"][i]), mmd, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(float(values["l2"][i]), float((wit**2).mean()), rel_tol=1e-9)
        # witness gradient at each interpolate, by central differences of the explicit formula
        xi = xh[i * k : (i + 1) * k].detach().numpy()
        grads = np.zeros_like(xi)
        for r in range(k):
            for c in range(d):
                e = np.zeros(d)
                e[c] = 1e-6
                f = [kern((xi[r] + s * e)[None] @ a.numpy(), fxi).mean()
                     - kern((xi[r] + s * e)[None] @ a.numpy(), fy[i].numpy()).mean() for s in (1, -1)]
                grads[r, c] = (f[0] - f[1]) / 2e-6
        norms = np.linalg.norm(grads, axis=1)
        assert math.isclose(float(values["gp"][i]), float(((norms - 1) ** 2).mean()), rel_tol=1e-5)
        assert math.isclose(float(values["grad_norm"][i]), float(norms.mean()), rel_tol=1e-5)
    # the penalty reaches the features through the (not detached) group means
    out["gp"].sum().backward()
    assert fx.grad is not None and float(fx.grad.abs().sum()) > 0


def test_kale_terms():
    rng = np.random.default_rng(1)
    hx, hy = torch.tensor(rng.normal(size=(2, 5))), torch.tensor(rng.normal(size=(2, 4)))
    xh = torch.tensor(rng.normal(size=(6, 3)), requires_grad=True)
    w = torch.tensor([0.3, -2.0, 0.5], dtype=torch.float64)
    out = kale_group_losses(hx, hy, (xh @ w).view(2, 3), xh)
    expected = 1 + hy.numpy().mean(1) - np.exp(hx.numpy()).mean(1)
    np.testing.assert_allclose(out["kale"].numpy(), expected, rtol=1e-12)
    norm = float(np.linalg.norm(w.numpy()))
    np.testing.assert_allclose(out["gp"].detach().numpy(), [(norm - 1) ** 2] * 2, rtol=1e-9)
    l2 = (np.concatenate([hx.numpy(), hy.numpy()], 1) ** 2).mean(1)
    np.testing.assert_allclose(out["l2"].detach().numpy(), l2, rtol=1e-12)


def test_method_loss_combines_the_terms(build):
    m = build("dmmd", "toy-8gaussians", *TOY, "lambda_gp=2.5", "lambda_l2=0.3", "weight=\"inv-sigma\"",
              "weight_min_sigma=0.2")
    loss, terms, t = m.losses(torch.Generator().manual_seed(0))
    w = 1.0 / m.schedule.sigma(t).clamp_min(0.2)
    expected = (-w * terms["mmd2"] + 2.5 * terms["gp"] + 0.3 * terms["l2"]).mean()
    torch.testing.assert_close(loss, expected)
    assert terms["mmd2"].shape == (3,)


@pytest.mark.parametrize("dist, power", [("uniform", 1.0), ("power", 2.0), ("power", 3.0)])
def test_noise_level_distribution(dist, power):
    """P(t <= t_min + (1 - t_min) q) = q^(1/k) for t = t_min + (1 - t_min) u^k (k = 1: uniform)."""
    t = sample_levels(40000, 1e-3, dist, power, torch.Generator().manual_seed(0))
    assert float(t.min()) >= 1e-3 and float(t.max()) <= 1.0
    for q in (0.01, 0.1, 0.5):
        frac = float((t <= 1e-3 + (1 - 1e-3) * q).double().mean())
        assert abs(frac - q ** (1 / power)) < 0.01


def test_ema_and_optimiser_step(build):
    """After step 0 the EMA holds 0.1 * initial + 0.9 * updated weights (decay min(ema, (1+s)/(10+s)))."""
    m = build("dmmd", "toy-8gaussians", *TOY)
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    m.train_step(0, torch.Generator().manual_seed(0))
    after, ema = m.backbone.state_dict(), m.ema_backbone.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "the optimiser did not change the weights"
    for k in changed:
        torch.testing.assert_close(ema[k], 0.1 * before[k] + 0.9 * after[k])


def test_per_t_bin_logs(build):
    """Every diag_every steps, the mean of the objective and of the gradient norm over the groups whose t fell in
    each bin (empty bins are left out, never NaN)."""
    m = build("dmmd", "toy-8gaussians", *TOY, "diag_every=3", "diag_bins=4", "groups=4")
    seen = []
    orig = m.group_terms

    def spy(fx, fy, fh, xh, t, step):
        out = orig(fx, fy, fh, xh, t, step)
        seen.append((t.clone(), out["mmd2"].detach().clone(), out["grad_norm"].clone()))
        return out

    m.group_terms = spy
    g = torch.Generator().manual_seed(0)
    assert not any("_t0" in k for k in m.train_step(0, g))
    m.train_step(1, g)
    logs = m.train_step(2, g)
    t = torch.cat([s[0] for s in seen])
    mmd = torch.cat([s[1] for s in seen]).double()
    bins = (t * 4).long().clamp(max=3)
    for b in range(4):
        key = f"mmd2_t{b / 4:.2f}-{(b + 1) / 4:.2f}"
        if (bins == b).any():
            assert math.isclose(logs[key], float(mmd[bins == b].mean()), rel_tol=1e-9)
            assert f"grad_norm_t{b / 4:.2f}-{(b + 1) / 4:.2f}" in logs
        else:
            assert key not in logs
    assert not any("_t0" in k for k in m.train_step(3, g))


def test_noise_width_table_and_mlp():
    table = NoiseWidth("table", levels=5, init=2.0)
    with torch.no_grad():
        table.table.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5, 0.0]))
    t = torch.tensor([0.0, 0.125, 0.25, 0.6, 1.0])
    # t = 0.6 sits at position 2.4 of the table: 0.6 * table[2] + 0.4 * table[3]
    expected = 2.0 * torch.exp(torch.tensor([0.0, 0.5, 1.0, 0.6 * -1.0 + 0.4 * 0.5, 0.0]))
    torch.testing.assert_close(table(t), expected)
    mlp = NoiseWidth("mlp", init=0.7)
    torch.testing.assert_close(mlp(torch.rand(6)), torch.full((6,), 0.7))
    assert (NoiseWidth("mlp", init=1e-9)(t) > 0).all()


def test_rbf_median_initialisation(build):
    m = build("dmmd", "toy-8gaussians", *TOY, "kernel=\"rbf\"")
    g = torch.Generator().manual_seed(0)
    _, terms, _ = m.losses(torch.Generator().manual_seed(0))  # same batch as the step below
    m.train_step(0, g)
    h0 = float(m.ema_extra["width"].log_h0.exp())
    assert 0.05 < h0 < 50 and h0 != 1.0
    assert torch.isfinite(terms["mmd2"]).all()


def test_rff_oracle_approximates_the_adaptive_rbf_kernel(registry):
    net = registry.create("backbone", "rff-oracle", in_shape=(2,), feature_dim=8192)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)) * 0.3
    for t in (0.05, 0.3, 1.0):
        tt = torch.full((6,), t)
        f = net(x, tt)
        h = max(float(net.schedule.sigma(torch.tensor(t))), 0.02)
        exact = torch.exp(-torch.cdist(x, x) ** 2 / (2 * h * h))
        torch.testing.assert_close(f @ f.T, exact, rtol=0, atol=0.05)
        assert math.isclose(float(net.width(torch.tensor(t))), h, rel_tol=1e-6)
    assert not any(p.requires_grad for p in net.parameters())


def test_conv_sizes():
    assert [downsamplings_for(s) for s in (8, 16, 28, 32, 64)] == [2, 2, 3, 3, 4]
    net = ConvBackbone((3, 64, 64), 12, width=4)
    assert net.n_down == 4 and len(net.levels) == 5 and net.head.in_features == 4 * (1 + 2 * 4)
    out = net(torch.randn(2, 3, 64, 64), torch.rand(2))
    assert out.shape == (2, 12)


@pytest.mark.parametrize("dataset, backbone", [("toy-25gaussians", "mlp"), ("digits", "conv"), ("mnist", "conv"),
                                               ("fashion-mnist", "conv"), ("cifar10", "conv"), ("celeba64", "conv"),
                                               ("lsun-church64", "conv")])
def test_presets(registry, dataset, backbone):
    from gflowzoo.session import resolve

    for method in ("dmmd", "a-dmmd", "a-dmmd-e", "dkale"):
        paper = resolve(registry, method, dataset, preset="paper")
        quick = resolve(registry, method, dataset, preset="cpu-quick")
        for spec in (paper, quick):
            name = spec.model.backbone if isinstance(spec.model.backbone, str) else spec.model.backbone["name"]
            assert name == backbone
        assert paper.run.steps > quick.run.steps
        assert 50 <= paper.model.sampler.levels <= 100
        assert paper.model.sampler.steps_per_level == (5 if method == "dmmd" else 1)
    assert resolve(registry, "a-dmmd", dataset, preset="paper").model.sampler.variant == "approx"
    assert resolve(registry, "a-dmmd-e", dataset, preset="paper").model.sampler.variant == "hybrid"


def test_recipe_input_skip_and_fixed_noise_adaptive_width(build):
    """The toy preset's recipe (docs/dmmd-what-we-learned.md): features ``[x, learned]`` whose learned head starts at
    ``skip_head_gain`` times its init, and the width ``width_init * max(sigma_t, width_min) * sqrt(d)``, left alone
    by training when ``learn_width = false``. At gain 0 the learned part is a stationary point and stays exactly
    zero; at gain > 0 it trains."""
    import math

    tiny = ["backbone.width=16", "backbone.depth=1", "groups=2", "n_clean=8", "n_noisy=8", "stats_samples=64"]
    m = build("dmmd", "toy-8gaussians", *tiny, "backbone.skip_head_gain=0.0", "lambda_flow=0.0")
    assert m.config.kernel == "rbf" and m.config.width_prior == "sigma" and not m.config.learn_width
    x, t = torch.randn(5, 2), torch.full((5,), 0.3)
    f = m.backbone(x, t)
    assert f.shape == (5, m.backbone.feature_dim) and m.backbone.feature_dim == 2 + 64
    torch.testing.assert_close(f[:, :2], x)
    assert torch.count_nonzero(f[:, 2:]) == 0
    ts = torch.tensor([0.0005, 0.3, 1.0])
    expected = m.config.width_init * m.schedule.sigma(ts).clamp_min(m.config.width_min) * math.sqrt(2.0)
    before = m.widths(ts)
    torch.testing.assert_close(before, expected.float(), rtol=1e-5, atol=1e-7)
    for step in range(3):
        m.train_step(step, torch.Generator().manual_seed(step))
    torch.testing.assert_close(m.widths(ts), before)
    assert torch.count_nonzero(m.backbone(x, t)[:, 2:]) == 0, "gain 0 is a stationary point"

    m = build("dmmd", "toy-8gaussians", *tiny, "backbone.skip_head_gain=0.1")
    start = [p.detach().clone() for p in m.backbone.parameters()]
    for step in range(3):
        m.train_step(step, torch.Generator().manual_seed(step))
    assert any(not torch.equal(a, b) for a, b in zip(start, m.backbone.parameters())), "features must train"


def test_skip_feature_rms_holds_the_learned_part_at_a_fixed_scale(registry):
    """``skip_feature_rms`` rescales the learned features per sample to that root-mean-square (zero stays zero)."""
    for gain, expected in ((0.1, 0.05), (0.0, 0.0)):
        bb = registry.create("backbone", {"name": "mlp", "width": 16, "depth": 1, "input_skip": 1.0,
                                          "skip_head_gain": gain, "skip_feature_rms": 0.05},
                             in_shape=(2,), feature_dim=8)
        x = torch.randn(6, 2)
        f = bb(x, torch.full((6,), 0.5))
        torch.testing.assert_close(f[:, :2], x)
        rms = f[:, 2:].square().mean(1).sqrt()
        torch.testing.assert_close(rms, torch.full((6,), expected), rtol=1e-4, atol=1e-6)


def test_dkale_keeps_training_where_the_dmmd_preset_freezes_its_features(registry):
    """The toy cpu-quick DMMD preset freezes the learned features (a short loop); dkale's critic has nothing frozen to
    fall back on, so its presets keep a real training length. On digits both train: DMMD with the sum kernel and the
    flow term, and neither DMMD-only option reaches dkale's config."""
    from gflowzoo.session import resolve

    dmmd = resolve(registry, "dmmd", "toy-8gaussians", preset="cpu-quick")
    dkale = resolve(registry, "dkale", "toy-8gaussians", preset="cpu-quick")
    assert dmmd.model.backbone["skip_head_gain"] == 0.0 and dmmd.model.lambda_flow == 0.0
    assert dkale.run.steps >= 1000 > dmmd.run.steps

    dmmd = resolve(registry, "dmmd", "digits", preset="cpu-quick")
    dkale = resolve(registry, "dkale", "digits", preset="cpu-quick")
    assert dmmd.model.feature_kernel == "auto" and dmmd.model.backbone["skip_head_gain"] == 1.0
    assert dmmd.model.lambda_flow > 0 and 0 < dmmd.model.sampler.learned_weight < 1
    assert dmmd.run.steps >= 1000 and dkale.run.steps >= 1000
    assert not hasattr(dkale.model, "feature_kernel")
