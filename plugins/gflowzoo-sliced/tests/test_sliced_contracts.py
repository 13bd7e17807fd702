"""gflowzoo contract tests for ``sliced-mmdflow`` (CPU-sized: a few dozen particles)."""

from __future__ import annotations

from gflowzoo.testing import MethodContract

_TINY = ["particles=24", "n_data=32", "projections=8", "projection_chunk=3", "momentum=0.5",
         "momentum_warmup=2"]


class TestSlicedToyContract(MethodContract):
    method_name = "sliced-mmdflow"
    dataset = "toy-8gaussians"
    plugins = ("sliced",)
    sets = _TINY
    resume_atol = 0.0


class TestSlicedDigitsPyramidContract(MethodContract):
    """Digits through a two-stage pyramid (4x4, then 8x8 from step 3: the resume test crosses the boundary) with
    local patch directions at the last stage; ``n_samples`` > particles exercises the fresh flows."""

    method_name = "sliced-mmdflow"
    dataset = "digits"
    plugins = ("sliced",)
    sets = _TINY + ["down_factors=[2, 1]", "stage_steps=[3]", "patch_size=3", "patch_locations=2"]
    resume_atol = 0.0
    n_samples = 30
