"""gflowzoo contract tests for ``drift`` and its backbone ``drift-mlp`` (CPU-sized)."""

from __future__ import annotations

from gflowzoo.testing import BackboneContract, MethodContract


class TestDriftToyContract(MethodContract):
    method_name = "drift"
    dataset = "toy-8gaussians"
    plugins = ("drift",)
    sets = ["batch_size=32", "hidden=[16, 16]", "ema=0.9"]
    resume_atol = 0.0


class TestDriftDigitsContract(MethodContract):
    method_name = "drift"
    dataset = "digits"
    plugins = ("drift",)
    # raw pixels plus a frozen backbone's features, a backbone as generator
    sets = ["batch_size=16", "generator=\"backbone\"", "generator_backbone={name='drift-mlp', width=16, depth=1}",
            "features=[\"raw\", \"backbone\"]", "feature_backbone={name='drift-mlp', width=16, depth=1}",
            "feature_dim=8", "n_pos=24"]
    resume_atol = 0.0


class TestDriftMLPBackbone(BackboneContract):
    backbone_name = "drift-mlp"
    in_shape = (1, 8, 8)
    feature_dim = 8
    options = {"width": 16, "depth": 2}
    noise_conditional = False
    plugins = ("drift",)
