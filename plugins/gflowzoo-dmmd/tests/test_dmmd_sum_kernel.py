"""``feature_kernel = "sum"`` (docs/dmmd-what-we-learned.md, session 7): the kernel on ``[x, phi(x, t)]`` is the
input kernel plus a linear kernel on the learned features, instead of one kernel on both (for an RBF, a product).
The Gram matrix against a direct computation, the learned part training where the joint kernel's zero start does
not, ``sampler.learned_weight = 0`` giving exactly the input kernel's flow, and one-sentence errors."""

from __future__ import annotations

import pytest
import torch

from gflowzoo.errors import ConfigError
from gflowzoo.kernels import LinearKernel, RBFKernel
from gflowzoo_dmmd.critic import SkipSumKernel

TINY = ["backbone.width=16", "backbone.depth=1", "backbone.input_skip=1.0", "groups=2", "n_clean=8", "n_noisy=6",
        "stats_samples=64", "sampler.levels=4", "sampler.steps_per_level=2", "sampler.particles=24",
        "sampler.n_ref=16", "kernel=rbf", "width_prior=sigma", "learn_width=false", "lambda_flow=0"]


def test_gram_is_the_input_kernel_plus_the_weighted_linear_kernel():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 2 + 3, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    h = torch.tensor(0.7, dtype=torch.float64)
    k = SkipSumKernel(RBFKernel().at_width(h), 2, LinearKernel(), 0.25)
    d2 = (x[:, None, :2] - y[None, :, :2]).square().sum(-1)
    expected = torch.exp(-d2 / (2 * 0.49)) + 0.25 * x[:, 2:] @ y[:, 2:].T
    torch.testing.assert_close(k.gram(x, y), expected)
    torch.testing.assert_close(k.diag(x), 1.0 + 0.25 * x[:, 2:].square().sum(1))
    # weight 0: the input kernel alone, whatever the learned coordinates hold
    k0 = SkipSumKernel(RBFKernel().at_width(h), 2, LinearKernel(), 0.0)
    torch.testing.assert_close(k0.gram(x, y), torch.exp(-d2 / (2 * 0.49)))


def _head_grad(m) -> float:
    """Norm of the critic loss's gradient on the backbone's learned head (the last layer before the skip)."""
    m.backbone.zero_grad()
    loss, _, _ = m.losses(torch.Generator().manual_seed(1))
    loss.backward()
    return float(m.backbone.out.weight.grad.norm())


def test_the_learned_features_train_in_the_sum_and_not_from_the_joint_zero_start(build):
    # joint kernel, head at zero: every gradient through the learned features vanishes (a stationary point)
    joint = build("dmmd", "toy-8gaussians", *TINY, "backbone.skip_head_gain=0.0")
    assert _head_grad(joint) == 0.0
    # the sum from the same zero start is stationary too (a linear kernel on equal features), so the sum's presets
    # start the head at its default init; then it trains
    still = build("dmmd", "toy-8gaussians", *TINY, "backbone.skip_head_gain=0.0", "feature_kernel=sum")
    assert _head_grad(still) == 0.0
    summed = build("dmmd", "toy-8gaussians", *TINY, "backbone.skip_head_gain=1.0", "feature_kernel=sum")
    assert _head_grad(summed) > 1e-6


def test_learned_weight_zero_samples_with_the_input_kernel_alone(build):
    """With ``sampler.learned_weight = 0`` the sum's particles follow the input kernel's field only: the same
    samples as the joint kernel whose learned features are all equal (head at zero), while a positive weight
    moves them differently."""
    common = [*TINY, "sampler.integrator=euler", "sampler.step_size=1.0"]
    joint = build("dmmd", "toy-8gaussians", *common, "backbone.skip_head_gain=0.0")
    summed = build("dmmd", "toy-8gaussians", *common, "backbone.skip_head_gain=1.0", "feature_kernel=sum",
                   "sampler.learned_weight=0.0")
    for m in (joint, summed):
        m.finalize(torch.Generator().manual_seed(2))
    a = joint.sample(24, torch.Generator().manual_seed(5))
    b = summed.sample(24, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    summed.config.sampler.learned_weight = 1.0
    c = summed.sample(24, torch.Generator().manual_seed(5))
    assert float((c - b).abs().max()) > 1e-3


@pytest.mark.parametrize("sets, match", [
    (["kernel=linear"], "non-linear base kernel"),
    (["backbone.input_skip=0.0"], "input skip"),
])
def test_a_sum_without_an_input_kernel_is_one_sentence(build, sets, match):
    with pytest.raises(ConfigError, match=match):
        build("dmmd", "toy-8gaussians", *TINY, "feature_kernel=sum", *sets)


@pytest.mark.parametrize("sets, skip_dims", [
    ([], 2),  # toy-8gaussians: two input coordinates at the front of the features
    (["kernel=linear"], 0),
    (["backbone.input_skip=0.0"], 0),
])
def test_auto_is_the_sum_where_it_applies_and_joint_elsewhere(build, sets, skip_dims):
    """``feature_kernel = "auto"`` (the digits and MNIST presets): a preset with ``--set kernel=linear`` or a backbone
    without an input skip still builds, with the joint kernel, where ``"sum"`` refuses."""
    m = build("dmmd", "toy-8gaussians", *TINY, "feature_kernel=auto", "backbone.skip_head_gain=1.0", *sets)
    assert m.skip_dims == skip_dims
    # the kernel the sampler meets: the sum (input kernel + weighted linear kernel) or the base kernel alone
    assert isinstance(m._kernel_at(0.5, ema=False), SkipSumKernel) == bool(skip_dims)


def test_a_negative_learned_weight_is_refused(build):
    with pytest.raises(ConfigError, match="learned_weight"):
        build("dmmd", "toy-8gaussians", *TINY, "feature_kernel=sum", "sampler.learned_weight=-1")
