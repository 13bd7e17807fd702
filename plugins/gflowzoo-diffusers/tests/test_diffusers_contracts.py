"""gflowzoo's contract tests for every component of the diffusers plugin (tiny sizes, CPU)."""

from __future__ import annotations

from gflowzoo.testing.contracts import BackboneContract, MethodContract, ScheduleContract


class TestUnetMidContract(BackboneContract):
    plugins = ("diffusers",)
    backbone_name = "unet"
    in_shape = (1, 8, 8)
    feature_dim = 16
    options = {"size": "tiny", "features": "mid", "pool": 2}


class TestUnetBothContract(BackboneContract):
    plugins = ("diffusers",)
    backbone_name = "unet"
    in_shape = (3, 10, 10)  # not a multiple of 2: padded to 10 -> fine for 2 levels; exercises 3 channels
    feature_dim = 8
    options = {"size": "tiny", "features": "both"}


class TestDiffusersLinearContract(ScheduleContract):
    plugins = ("diffusers",)
    schedule_name = "diffusers-linear"


class TestDiffusersCosineContract(ScheduleContract):
    plugins = ("diffusers",)
    schedule_name = "diffusers-cosine"
    options = {"num_train_timesteps": 500}


class TestDiffusersScaledLinearContract(ScheduleContract):
    plugins = ("diffusers",)
    schedule_name = "diffusers-scaled-linear"


class TestDiffusersSigmoidContract(ScheduleContract):
    plugins = ("diffusers",)
    schedule_name = "diffusers-sigmoid"


class TestDiffusersGenericContract(ScheduleContract):
    plugins = ("diffusers",)
    schedule_name = "diffusers"
    options = {"scheduler": "DDIMScheduler", "beta_schedule": "linear", "num_train_timesteps": 200,
               "beta_start": 1e-4, "beta_end": 0.05}


class TestDDPMDigitsContract(MethodContract):
    plugins = ("diffusers",)
    method_name = "ddpm"
    dataset = "digits"
    sets = ["batch_size=8", "net.size=tiny", "sampler.steps=2", "sampler.batch=16", "warmup=2"]
    resume_atol = 0.0


class TestDDPMToyContract(MethodContract):
    plugins = ("diffusers",)
    method_name = "ddpm"
    dataset = "toy-8gaussians"
    sets = ["batch_size=16", "net.width=16", "net.depth=1", "sampler.kind=ddpm", "sampler.steps=3",
            "schedule=diffusers-cosine"]
    resume_atol = 0.0
