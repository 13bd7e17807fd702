"""gflowzoo contract tests for every method and backbone of the dmmd plugin (CPU-sized)."""

from __future__ import annotations

from gflowzoo.testing import BackboneContract, MethodContract

#: tiny settings shared by the DMMD-family contracts (2 groups of 8 + 8 points, 3 levels, 16 particles)
_TINY = ["groups=2", "n_clean=8", "n_noisy=8", "stats_samples=64", "diag_every=2", "sampler.levels=3",
         "sampler.steps_per_level=1", "sampler.particles=16"]
_TOY = _TINY + ["backbone.width=16", "backbone.depth=1"]
_DIGITS = _TINY + ["backbone.width=4", "feature_dim=8"]


class TestDMMDContract(MethodContract):
    method_name = "dmmd"
    dataset = "toy-8gaussians"
    plugins = ("dmmd",)
    sets = _TOY


class TestDMMDRBFDigitsContract(MethodContract):
    method_name = "dmmd"
    dataset = "digits"
    plugins = ("dmmd",)
    sets = _DIGITS + ["kernel=\"rbf\"", "width_model=\"table\"", "sampler.n_ref=8", "sampler.chunk=5"]


class TestADMMDContract(MethodContract):
    method_name = "a-dmmd"
    dataset = "toy-8gaussians"
    plugins = ("dmmd",)
    sets = _TOY + ["weight=\"inv-sigma\"", "t_dist=\"uniform\""]


class TestADMMDEContract(MethodContract):
    method_name = "a-dmmd-e"
    dataset = "digits"
    plugins = ("dmmd",)
    sets = _DIGITS + ["sampler.switch_t=0.6"]


class TestDKALEContract(MethodContract):
    method_name = "dkale"
    dataset = "toy-8gaussians"
    plugins = ("dmmd",)
    sets = _TOY


class TestMMDFlowContract(MethodContract):
    method_name = "mmdflow"
    dataset = "toy-8gaussians"
    plugins = ("dmmd",)
    sets = ["n_data=32", "particles=16", "steps=5", "noise_every=2"]


class TestMLPBackbone(BackboneContract):
    backbone_name = "mlp"
    in_shape = (2,)
    feature_dim = 16
    options = {"width": 16, "depth": 2, "fourier_octaves": 3}
    plugins = ("dmmd",)


class TestConvBackbone8(BackboneContract):
    backbone_name = "conv"
    in_shape = (1, 8, 8)
    feature_dim = 16
    options = {"width": 4}
    plugins = ("dmmd",)


class TestConvBackbone28(BackboneContract):
    backbone_name = "conv"
    in_shape = (1, 28, 28)
    feature_dim = 8
    options = {"width": 4, "time_mode": "add", "blocks": 1}
    plugins = ("dmmd",)


class TestConvBackbone32RGB(BackboneContract):
    backbone_name = "conv"
    in_shape = (3, 32, 32)
    feature_dim = 8
    options = {"width": 4, "mults": [1, 1, 2, 2], "channels_last": True}
    plugins = ("dmmd",)


class TestRFFOracleBackbone(BackboneContract):
    backbone_name = "rff-oracle"
    in_shape = (2,)
    feature_dim = 64
    plugins = ("dmmd",)
