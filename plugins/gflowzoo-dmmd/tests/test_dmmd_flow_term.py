"""The flow-alignment term of the critic loss and the ``calibrated`` step schedule (docs/dmmd-what-we-learned.md):
the misfit and scale against numpy, the field as the witness gradient at the noisy points, the term inside the
method's loss, and the per-level fractions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gflowzoo.errors import ConfigError
from gflowzoo_dmmd.critic import field_fit, flow_alignment
from gflowzoo_dmmd.flow import calibrated_fractions, plan_levels

TINY = ["backbone.width=16", "backbone.depth=1", "groups=3", "n_clean=8", "n_noisy=6", "stats_samples=64",
        "sampler.levels=5", "sampler.steps_per_level=2", "sampler.particles=32", "sampler.n_ref=16"]


def test_field_fit_matches_numpy():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 5, 3))
    d = v * 0.3 + 0.5 * rng.normal(size=(4, 5, 3))
    d[3] = -v[3]  # anti-aligned group: no non-negative scale helps
    misfit, scale = field_fit(torch.tensor(v), torch.tensor(d))
    for g in range(4):
        vf, df = v[g].ravel(), d[g].ravel()
        s = max(vf @ df, 0.0) / (vf @ vf)
        assert math.isclose(float(scale[g]), s, rel_tol=1e-12, abs_tol=1e-15)
        # the misfit is the relative residual of the best non-negative scaling
        assert math.isclose(float(misfit[g]), ((s * vf - df) ** 2).sum() / (df @ df), rel_tol=1e-10)
    assert float(misfit[3]) == pytest.approx(1.0) and float(scale[3]) == 0.0


def test_flow_alignment_differentiates_the_witness_at_the_points():
    """With ``f(y) = -|y - c|^2 / 2`` the field is ``c - y``: aligned with ``d = c - y`` (misfit 0, scale 1), and
    a target twice as long gives scale 2; the field is taken at the first ``k`` points of each group only."""
    g, m, k = 2, 4, 3
    y = torch.randn(g * m, 2, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([0.5, -1.0], dtype=torch.float64)
    values = (-0.5 * (y - c).square().sum(1)).view(g, m)[:, :k]
    d = (c - y.detach()).view(g, m, 2)[:, :k]
    out = flow_alignment(values, y, d, g, k)
    torch.testing.assert_close(out["flow"], torch.zeros(g, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out["flow_scale"], torch.ones(g, dtype=torch.float64))
    out = flow_alignment(values, y, 2 * d, g, k)
    torch.testing.assert_close(out["flow_scale"], torch.full((g,), 2.0, dtype=torch.float64))
    assert out["flow"].requires_grad  # stays in the graph so that it trains the critic


def test_flow_term_enters_the_loss_and_trains(build):
    m = build("dmmd", "toy-8gaussians", *TINY, "lambda_flow=0.0")
    loss0, terms0, _ = m.losses(torch.Generator().manual_seed(3))
    assert "flow" not in terms0
    m = build("dmmd", "toy-8gaussians", *TINY, "lambda_flow=2.5", "flow_samples=4")
    loss, terms, _ = m.losses(torch.Generator().manual_seed(3))
    assert terms["flow"].shape == (3,) and bool(((terms["flow"] >= 0) & (terms["flow"] <= 1)).all())
    # same batch, same weights: the losses differ by exactly lambda_flow * mean(flow)
    torch.testing.assert_close(loss, loss0 + 2.5 * terms["flow"].mean(), rtol=1e-5, atol=1e-6)
    logs = m.train_step(0, torch.Generator().manual_seed(4))
    assert 0.0 <= logs["flow"] <= 1.0


def test_flow_field_is_the_witness_gradient(build):
    """The field the flow term scores is grad_y of the witness against the group's (fixed) feature sets:
    compare with central differences of the witness computed from scratch."""
    from gflowzoo.divergences import witness

    m = build("dmmd", "toy-8gaussians", *TINY, "lambda_flow=1.0")
    m.backbone.double()
    m.extra.double()
    x = torch.randn(6, 2, dtype=torch.float64)
    y = torch.randn(5, 2, dtype=torch.float64)
    t = torch.full((1,), 0.4, dtype=torch.float64)
    fx = m.backbone(x, t.expand(6)).detach()
    fy = m.backbone(y, t.expand(5)).detach()
    z = y[:2].clone().requires_grad_(True)
    values = m.point_witness(m.backbone(z, t.expand(2))[None], fx[None], fy[None], t)
    (v,) = torch.autograd.grad(values.sum(), z)
    kern = m._group_kernels(t)[0]
    eps = 1e-6
    for i in range(2):
        for j in range(2):
            zp, zm = z.detach().clone(), z.detach().clone()
            zp[i, j] += eps
            zm[i, j] -= eps
            fp = witness(m.backbone(zp[i : i + 1], t), fx, fy, kern)
            fm = witness(m.backbone(zm[i : i + 1], t), fx, fy, kern)
            assert float(v[i, j]) == pytest.approx(float((fp - fm).detach()) / (2 * eps), rel=1e-5, abs=1e-9)


def test_calibrated_fractions_shrink_the_noise_level_by_level():
    sigma = torch.tensor([1.0, 0.6, 0.3, 0.1, 0.02])
    for steps in (1, 3):
        frac = calibrated_fractions(sigma, steps)
        remaining = (1 - frac.double()) ** steps  # what is left of the distance to the denoised point per level
        torch.testing.assert_close(remaining[:-1], (sigma[1:] / sigma[:-1]).double(), rtol=1e-5, atol=0)
        assert remaining[-1] == pytest.approx(0.02 / 0.1, rel=1e-5)  # last ratio reused
    plan = plan_levels(torch.linspace(1, 0.01, 5), sigma, None, variant="exact", switch_t=0.2, steps_per_level=2,
                       exact_steps_per_level=0, eta0=0.5, schedule="calibrated",
                       calibration=torch.tensor([2.0, 1.0, 1.0, 4.0, 1.0]))
    frac = calibrated_fractions(sigma, 2)
    assert [lv.eta for lv in plan] == pytest.approx([0.5 * float(f) * s for f, s in zip(frac, [2, 1, 1, 4, 1])])


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_calibrated_schedule_samples_with_measured_scales(build, kernel):
    sets = [*TINY, 'sampler.step_schedule="calibrated"', "sampler.step_size=0.0"]
    if kernel == "linear":
        sets += ['kernel="linear"', 'width_prior="none"', "backbone.input_skip=0.0"]
    m = build("dmmd", "toy-8gaussians", *sets)
    m.train_step(0, torch.Generator().manual_seed(0))
    x = m.sample(40, torch.Generator().manual_seed(1))
    assert x.shape == (40, 2) and torch.isfinite(x).all()
    scale, misfit = m.stats["flow_scale"], m.stats["flow_misfit"]
    assert scale.shape == (5,) and bool((scale >= 0).all()) and bool(((misfit >= 0) & (misfit <= 1 + 1e-6)).all())
    assert m.sampling_info()["step_schedule"] == "calibrated" and m.sampling_info()["step_size"] == 1.0


def test_dkale_rejects_the_flow_term(build):
    m = build("dkale", "toy-8gaussians", "backbone.width=16", "backbone.depth=1", "groups=2", "n_clean=4",
              "n_noisy=4", "lambda_flow=1.0")
    with pytest.raises(ConfigError, match="lambda_flow"):
        m.losses(torch.Generator().manual_seed(0))


def test_separate_flow_forward_gives_the_fused_losses_and_gradients(build):
    """The flow term's own forward (used when flow_samples < n_noisy, so its double backward covers only those
    points) computes the same loss and parameter gradients as the fused path through the main forward."""
    sets = ["backbone.width=16", "backbone.depth=2", "feature_dim=8", "groups=3", "n_clean=12", "n_noisy=12",
            "gp_samples=4", "lambda_flow=5.0", "flow_samples=0"]
    results = []
    for separate in (False, True):
        m = build("dmmd", "toy-8gaussians", *sets)
        m._separate_flow_forward = separate
        loss, terms, _ = m.losses(torch.Generator().manual_seed(11))
        grads = torch.autograd.grad(loss, [p for p in m.backbone.parameters() if p.requires_grad])
        results.append((loss.detach(), terms["flow"].detach(), grads))
    (l0, f0, g0), (l1, f1, g1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f1, f0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
