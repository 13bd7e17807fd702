"""The core's own components checked against the reusable contracts of :mod:`gflowzoo.testing`."""

from __future__ import annotations

import helpers_method

from gflowzoo.testing import (
    DatasetContract,
    DivergenceContract,
    IntegratorContract,
    KernelContract,
    MethodContract,
    ScheduleContract,
)

# -- kernels -----------------------------------------------------------------------------------------------------


class TestLinearKernel(KernelContract):
    kernel_name = "linear"


class TestRBFKernel(KernelContract):
    kernel_name = "rbf"


class TestRBFMixtureKernel(KernelContract):
    kernel_name = "rbf"
    kernel_options = {"sigmas": [0.5, 1.0, 4.0]}


class TestRQKernel(KernelContract):
    kernel_name = "rq"


class TestEnergyKernel(KernelContract):
    kernel_name = "energy"


class TestPolyKernel(KernelContract):
    kernel_name = "poly"


# -- divergences -------------------------------------------------------------------------------------------------


class TestMMDUnbiased(DivergenceContract):
    divergence_name = "mmd"
    options = {"estimator": "unbiased"}


class TestMMDBiased(DivergenceContract):
    divergence_name = "mmd"
    options = {"estimator": "biased"}


class TestMMDLinearKernel(DivergenceContract):
    divergence_name = "mmd"
    kernel = "linear"


class TestKALE(DivergenceContract):
    divergence_name = "kale"


# -- schedules ---------------------------------------------------------------------------------------------------


class TestVPLinear(ScheduleContract):
    schedule_name = "vp-linear"


class TestVPCosine(ScheduleContract):
    schedule_name = "vp-cosine"


# -- integrators -------------------------------------------------------------------------------------------------


class TestEuler(IntegratorContract):
    integrator_name = "euler"


class TestEulerNoisy(IntegratorContract):
    integrator_name = "euler-noisy"


# -- data sets ---------------------------------------------------------------------------------------------------


class TestToy8Gaussians(DatasetContract):
    dataset_name = "toy-8gaussians"
    expected_shape = (2,)


class TestToy25Gaussians(DatasetContract):
    dataset_name = "toy-25gaussians"
    expected_shape = (2,)


class TestToySwissroll(DatasetContract):
    dataset_name = "toy-swissroll"
    expected_shape = (2,)


class TestToyCheckerboard(DatasetContract):
    dataset_name = "toy-checkerboard"
    expected_shape = (2,)


class TestToyMoons(DatasetContract):
    dataset_name = "toy-moons"
    expected_shape = (2,)


class TestDigits(DatasetContract):
    dataset_name = "digits"
    expected_shape = (1, 8, 8)


# -- methods: the test-only method exercises MethodContract itself -------------------------------------------------


class TestFitGaussianMethod(MethodContract):
    method_name = "fit-gaussian"
    plugin_object = helpers_method
    plugin_name = helpers_method.PLUGIN_NAME
    sets = ["batch_size=16"]


class TestFitGaussianOnDigits(MethodContract):
    method_name = "fit-gaussian"
    dataset = "digits"
    plugin_object = helpers_method
    plugin_name = helpers_method.PLUGIN_NAME
    sets = ["batch_size=8"]


# -- the contracts catch broken components (so that a passing contract means something) ---------------------------

import pytest  # noqa: E402
import torch  # noqa: E402

from gflowzoo.hookspecs import hookimpl  # noqa: E402
from gflowzoo.interfaces import Divergence, FlowIntegrator, Kernel, NoiseSchedule  # noqa: E402
from gflowzoo.testing import contract_plugins  # noqa: E402


class _NegKernel(Kernel):
    """Not positive semi-definite: k(a, b) = -<a, b>."""

    def gram(self, x, y):
        return -(x @ y.T)


class _NaiveDistanceKernel(Kernel):
    """exp(-||a - b||) through sqrt(sum of squares): NaN gradients at identical points."""

    def gram(self, x, y):
        return torch.exp(-(x[:, None] - y[None]).square().sum(-1).sqrt())


class _FloatKernel(Kernel):
    """Ignores the input dtype."""

    def gram(self, x, y):
        return (x @ y.T).float()


class _FlippedMMD(Divergence):
    """A linear-kernel MMD whose witness has the wrong sign."""

    def estimate(self, fx, fy):
        return (fx.mean(0) - fy.mean(0)).square().sum()

    def witness(self, fz, fx, fy):
        return fz @ (fy.mean(0) - fx.mean(0))


class _GrowingAlpha(NoiseSchedule):
    def alpha(self, t):
        return 0.5 + 0.5 * t

    def sigma(self, t):
        return (1 - self.alpha(t) ** 2).clamp_min(0).sqrt()


class _IgnoresStepSize(FlowIntegrator):
    def step(self, z, velocity, step_size, scale=1.0, generator=None):
        return z + 0.1 * velocity(z)


class _Unseeded(FlowIntegrator):
    def step(self, z, velocity, step_size, scale=1.0, generator=None):
        return z + step_size * velocity(z) + 0.0 * torch.randn_like(z) + 1e-3 * torch.rand(())


class _BadPlugin:
    @hookimpl
    def gflowzoo_register(self, register):
        register("kernel", "bad-neg", _NegKernel, "not PSD")
        register("kernel", "bad-naive", _NaiveDistanceKernel, "NaN gradients")
        register("kernel", "bad-float", _FloatKernel, "wrong dtype")
        register("divergence", "bad-flipped", _FlippedMMD, "wrong witness sign")
        register("schedule", "bad-growing", _GrowingAlpha, "alpha increases")
        register("integrator", "bad-fixed-step", _IgnoresStepSize, "ignores step_size")
        register("integrator", "bad-unseeded", _Unseeded, "not reproducible")


@pytest.mark.parametrize(
    "contract, attrs, test",
    [
        (KernelContract, {"kernel_name": "bad-neg"}, "test_positive_semidefinite"),
        (KernelContract, {"kernel_name": "bad-naive"}, "test_gradients_finite_at_identical_points"),
        (KernelContract, {"kernel_name": "bad-float"}, "test_dtype_and_device_follow_input"),
        (DivergenceContract, {"divergence_name": "bad-flipped", "kernel": "linear"}, "test_witness_shape_and_sign"),
        (DivergenceContract, {"divergence_name": "bad-flipped", "kernel": "linear"},
         "test_step_up_the_witness_lowers_the_estimate"),
        (ScheduleContract, {"schedule_name": "bad-growing"}, "test_ranges_and_monotonicity"),
        (IntegratorContract, {"integrator_name": "bad-fixed-step"}, "test_constant_velocity_moves_by_step_size"),
        (IntegratorContract, {"integrator_name": "bad-fixed-step"}, "test_per_particle_step_sizes"),
        (IntegratorContract, {"integrator_name": "bad-unseeded"}, "test_reproducible_under_seed"),
    ],
)
def test_contracts_catch_broken_components(contract, attrs, test):
    case = type("Case", (contract,), attrs)()
    with contract_plugins((), _BadPlugin(), "bad-components") as state:
        kwargs = {"dtype": torch.float64} if test == "test_dtype_and_device_follow_input" else {}
        with pytest.raises(AssertionError):
            getattr(case, test)(state.registry, **kwargs)


class _Forgetful(helpers_method.FitGaussian):
    """Trains like fit-gaussian, but its checkpoint holds nothing: a rebuilt method restarts from the initial state."""

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class _ForgetfulPlugin:
    @hookimpl
    def gflowzoo_register(self, register):
        register("method", "bad-forgetful", _Forgetful, "state_dict() is empty")


def test_method_contract_catches_a_checkpoint_that_loses_the_trained_state(tmp_path):
    """The state-dict checks pass a method whose state_dict() is {} (they compare two empty dicts); the check that a
    method rebuilt from the checkpoint samples like the trained one does not."""
    case = type("Case", (MethodContract,), {"method_name": "bad-forgetful", "sets": ["batch_size=16"]})()
    with contract_plugins((), _ForgetfulPlugin(), "bad-forgetful-plugin") as state:
        spec, method, result = case.train_run(state.registry, tmp_path / "run", 2)
        trained = {"path": tmp_path / "run", "spec": spec, "method": method, "result": result}
        case.test_checkpoint_loads_weights_only(state.registry, trained)  # the hole: these pass
        case.test_resume_equals_straight_run(state.registry, tmp_path)
        with pytest.raises(AssertionError, match="samples like an untrained one"):
            case.test_checkpoint_restores_the_trained_method(state.registry, trained)


def test_testing_exports_are_the_contracts_exports():
    """``gflowzoo.testing`` re-exports (lazily) exactly ``gflowzoo.testing.contracts.__all__``, and that list names
    every contract class."""
    import gflowzoo.testing as testing
    from gflowzoo.testing import contracts

    assert sorted(testing._CONTRACTS) == sorted(contracts.__all__)
    defined = {name for name, obj in vars(contracts).items()
               if isinstance(obj, type) and obj.__module__ == contracts.__name__ and name.endswith("Contract")}
    assert defined <= set(contracts.__all__), defined - set(contracts.__all__)
    for name in contracts.__all__:
        assert getattr(testing, name) is getattr(contracts, name)
