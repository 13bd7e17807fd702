"""gflowzoo contract tests for the mmdgan plugin's methods and backbones (CPU-sized)."""

from __future__ import annotations

from gflowzoo.testing import BackboneContract, MethodContract


class TestMMDGANContract(MethodContract):
    method_name = "mmdgan"
    dataset = "digits"
    plugins = ("mmdgan",)
    # tiny nets; a warm-up schedule that changes within the 4 steps of the resume test
    sets = ["batch_size=16", "ngf=8", "decoder_ngf=8", "critic.ndf=8", "critic_steps=2",
            "critic_steps_warmup=3", "warmup_generator_steps=1", "warmup_every=3"]
    resume_atol = 0.0


class TestMMDGANToyContract(MethodContract):
    method_name = "mmdgan"
    dataset = "toy-8gaussians"
    plugins = ("mmdgan",)
    sets = ["batch_size=16", "mlp_hidden=[16, 16]", "critic.width=16", "critic_steps=2",
            "critic_steps_warmup=2", "sqrt_loss=true", "estimator=\"biased\"", "lambda_rg=16.0"]
    resume_atol = 0.0


class TestMMDGANGPContract(MethodContract):
    method_name = "mmdgan-gp"
    dataset = "digits"
    plugins = ("mmdgan",)
    # the KID schedule evaluates every step and decays quickly, so its memory is part of the resume check
    sets = ["batch_size=16", "nz=8", "ngf=8", "critic.ndf=8", "critic_steps=2", "adaptive_lr=true",
            "kid_every=1", "kid_samples=40", "kid_blocks=4", "kid_lookback=1", "kid_patience=1",
            "grad_clip_per_tensor=1.0", "gp_norm=\"column\"", "rq_diagonal_quirk=true"]
    resume_atol = 0.0


class TestMMDGANGPToyContract(MethodContract):
    method_name = "mmdgan-gp"
    dataset = "toy-25gaussians"
    plugins = ("mmdgan",)
    sets = ["batch_size=16", "mlp_hidden=[16, 16]", "critic.width=16", "critic_steps=2"]
    resume_atol = 0.0


class TestDCGANBackbone(BackboneContract):
    backbone_name = "dcgan"
    plugins = ("mmdgan",)
    in_shape = (1, 8, 8)
    options = {"ndf": 8}
    noise_conditional = False


class TestDCGANBackbone28(BackboneContract):
    backbone_name = "dcgan"
    plugins = ("mmdgan",)
    in_shape = (1, 28, 28)  # replicate-padded to 32
    options = {"ndf": 8}
    noise_conditional = False


class TestDCGANBackboneNoBN(BackboneContract):
    backbone_name = "dcgan"
    plugins = ("mmdgan",)
    in_shape = (3, 32, 32)
    options = {"ndf": 8, "batchnorm": False}
    noise_conditional = False


class TestMLPCritic(BackboneContract):
    backbone_name = "mlp-critic"
    plugins = ("mmdgan",)
    in_shape = (2,)
    options = {"width": 16, "depth": 2}
    noise_conditional = False
