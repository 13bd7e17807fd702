"""The example plugin tests itself with gflowzoo's contract test bases.

Run with the plugin installed (``pip install -e .``): ``pytest tests``.
"""

from gflowzoo.testing import DivergenceContract, KernelContract, MethodContract


class TestLaplaceKernel(KernelContract):
    kernel_name = "laplace"
    kernel_options = {"sigma": 2.0}
    plugins = ("example",)  # the entry-point name from pyproject.toml


class TestMMDWithLaplaceKernel(DivergenceContract):
    divergence_name = "mmd"
    kernel = {"name": "laplace", "sigma": 1.0}
    plugins = ("example",)


class TestMomentMLP(MethodContract):
    method_name = "moment-mlp"
    dataset = "toy-8gaussians"
    sets = ["batch_size=32", "hidden=16"]  # tiny: the contract trains a few steps on the CPU
    plugins = ("example",)


def test_laplace_values():
    """Component-specific checks sit next to the contracts: here, against a hand-computed value."""
    import math

    import torch

    from gflowzoo.testing import plugins_loaded

    with plugins_loaded("example") as state:
        k = state.registry.create("kernel", {"name": "laplace", "sigma": 2.0})
        g = k.gram(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]))
        assert math.isclose(float(g), math.exp(-5.0 / 2.0), rel_tol=1e-6)
