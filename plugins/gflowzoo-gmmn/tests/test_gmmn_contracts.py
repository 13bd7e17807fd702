"""gflowzoo contract tests for ``gmmn`` and ``gmmn-ae`` (CPU-sized)."""

from __future__ import annotations

from gflowzoo.testing import MethodContract


class TestGMMNContract(MethodContract):
    method_name = "gmmn"
    dataset = "digits"
    plugins = ("gmmn",)
    sets = ["batch_size=32", "hidden=[16, 16]", "lr_drop_step=3"]
    resume_atol = 0.0


class TestGMMNToyContract(MethodContract):
    method_name = "gmmn"
    dataset = "toy-8gaussians"
    plugins = ("gmmn",)
    sets = ["batch_size=32", "hidden=[16, 16]", "estimator=\"unbiased\"", "sqrt_loss=false"]
    resume_atol = 0.0


class TestGMMNAEContract(MethodContract):
    method_name = "gmmn-ae"
    dataset = "digits"
    plugins = ("gmmn",)
    # the auto-encoder phase ends after step 3: the resume test (2 steps, then 2 more) crosses the boundary
    sets = ["batch_size=32", "hidden=[16]", "ae_hidden=[16]", "code_dim=4", "ae_steps=3", "ae_batch_size=16"]
    resume_atol = 0.0


class TestGMMNAEDCGANContract(MethodContract):
    method_name = "gmmn-ae"
    dataset = "digits"
    plugins = ("gmmn",)
    sets = ["batch_size=32", "hidden=[16]", "autoencoder=\"dcgan\"", "ae_width=8", "code_dim=4", "ae_steps=1",
            "ae_batch_size=16", "ae_optimizer=\"adam\""]
    resume_atol = 0.0


class TestGMMNAEToyContract(MethodContract):
    method_name = "gmmn-ae"
    dataset = "toy-25gaussians"
    plugins = ("gmmn",)
    sets = ["batch_size=32", "hidden=[16]", "ae_hidden=[16]", "ae_steps=2", "ae_batch_size=16"]
    resume_atol = 0.0
