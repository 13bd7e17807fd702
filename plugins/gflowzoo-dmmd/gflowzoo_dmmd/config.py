"""Configuration dataclasses of the DMMD-family methods (every knob is a config value; docs/dmmd.md explains each).

Written without postponed annotations so that the field types are real classes (the core's config builder and
merge rules read them).
"""

import dataclasses
from typing import Any, Literal

from gflowzoo.api import ConfigError, component


@dataclasses.dataclass
class SamplerConfig:
    """The particle sampler (``[sampler]`` table); every value may be changed at sampling time with ``--set``.

    ``variant``: ``"exact"`` (interacting DMMD flow), ``"approx"`` (a-DMMD: the particle mean is replaced by the
    stored noisy-data mean features, no interaction) or ``"hybrid"`` (approximate while ``t > switch_t``, exact for
    ``t <= switch_t``). ``step_size = 0`` and ``step_schedule = "auto"`` pick documented automatic values (see
    :func:`gflowzoo_dmmd.flow.resolve_step_rule`).

    ``bounded_repulsion`` (default off, on in the toy presets; applies with a non-linear base kernel
    such as ``rbf`` only, a linear kernel samples with the plain field): the repulsion term of the
    witness at a particle is scaled by ``min(1, p / q)``, ``p`` and ``q`` the kernel means of the data and of the
    particles there (:func:`gflowzoo_dmmd.flow.bounded_repulsion`). Where the particles are denser than the
    (smoothed) data, the MMD field is dominated by the repulsion from the particle bulk and pushes a particle in
    the cloud's tail *away* from the data; the bounded field moves it along ``p grad log(p / q)``, toward the data
    (never faster than the attraction alone, and unchanged where ``p >= q``). Toy-8gaussians, 1,000 particles:
    12 particles ended more than 0.2 data radii from every training point (farthest 2.9 radii), none with it; the
    five toys at 2,500 particles: farthest 1.5-2.8 radii -> 0.05-0.20, modes and MMD unchanged.
    """

    variant: Literal["exact", "approx", "hybrid"] = "exact"
    switch_t: float = 0.2
    levels: int = 50
    steps_per_level: int = 5
    exact_steps_per_level: int = 0
    step_size: float = 0.0
    step_schedule: Literal["auto", "const", "sigma", "sigma2", "width2", "calibrated"] = "auto"
    integrator: Any = component("integrator", {"name": "euler-noisy", "beta": 0.5})
    particles: int = 512
    chunk: int = 0
    box: float = 0.0
    max_move: float = 0.0
    bounded_repulsion: bool = False
    clamp_output: bool = True
    n_ref: int = 512
    use_ema: bool = True
    # dmmd with feature_kernel = "sum": the weight of the learned (linear) kernel beside the input kernel when
    # sampling; training uses 1, and the gradient penalty sets the learned field's size, so this is its share.
    # Default 0.01, the best measured share: digits KID 0.067-0.069 from 0.01 to 0.15 after 1,500 steps, 0.042 /
    # 0.041 / 0.044 at 0.01 / 0.03 / 0.1 after 6,000, 0.29 at 0.3 and 0.55 at 1 (the learned field overpowers the
    # kernel's repulsion); MNIST 0.338 / 0.305 / 0.343 / 0.362 at 0.003 / 0.01 / 0.03 / 0.1, and at 1 a 10,000-step
    # critic drew blobs. Runs saved with an explicit value keep it
    learned_weight: float = 0.01


def _approx_sampler() -> SamplerConfig:
    return SamplerConfig(variant="approx", steps_per_level=1, step_size=1.0, step_schedule="sigma",
                         integrator="euler", box=1.5)


def _hybrid_sampler() -> SamplerConfig:
    return SamplerConfig(variant="hybrid", steps_per_level=1, exact_steps_per_level=5, step_size=1.0,
                         step_schedule="sigma", integrator="euler", box=1.5)


@dataclasses.dataclass
class CriticTrainConfig:
    """Options shared by the noise-conditional critics (DMMD and DKALE): backbone, noise path, batch layout,
    penalties, optimiser, EMA, logging and the statistics precomputed for sampling."""

    backbone: Any = component("backbone", "conv")
    feature_dim: int = 0
    schedule: Any = component("schedule", "vp-cosine")
    # -- batch: G groups, each with one noise level t_g, n clean and m noisy images (from other clean images)
    groups: int = 4
    n_clean: int = 64
    n_noisy: int = 64
    gp_samples: int = 0
    gp_forward: Literal["separate", "joint"] = "separate"
    # -- noise levels and weighting
    t_dist: Literal["uniform", "power"] = "power"
    t_power: float = 2.0
    weight: Literal["none", "inv-sigma"] = "none"
    weight_min_sigma: float = 0.05
    # -- penalties
    lambda_gp: float = 1.0
    lambda_l2: float = 0.1
    # denoising alignment of the witness field (docs/dmmd-what-we-learned.md): weight of
    #   1 - relu(<v, d>)^2 / (|v|^2 |d|^2) per group, v = grad_y f_t(y) at noisy points, d = x_source - y;
    # flow_samples noisy points per group carry it (0: all n_noisy)
    lambda_flow: float = 0.0
    flow_samples: int = 0
    # -- optimiser
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 10.0
    ema: float = 0.998
    # -- logging: per-t-bin averages are emitted every diag_every steps
    diag_every: int = 50
    diag_bins: int = 5
    # -- statistics precomputed for sampling (finalize / on a new grid)
    stats_samples: int = 10000
    stats_seed: int = 0
    stats_batch: int = 500

    def validate(self) -> None:
        """Checks of values no type expresses (called by :func:`gflowzoo.config.build`, so ``--set groups=0`` fails
        when the configuration is resolved, and by the method)."""
        if self.groups < 1 or self.n_clean < 2 or self.n_noisy < 2:
            raise ConfigError("groups must be >= 1 and n_clean, n_noisy >= 2 (the unbiased MMD needs 2 samples).")
        if self.gp_samples < 0:
            raise ConfigError(f"gp_samples must be >= 0 (0: min(n_clean, n_noisy)); got {self.gp_samples}.")
        if self.stats_samples < 0 or self.stats_batch < 1 or self.diag_every < 0 or self.diag_bins < 1:
            raise ConfigError("stats_samples, diag_every must be >= 0; stats_batch, diag_bins >= 1.")
        if not (0.0 <= self.ema < 1.0):
            raise ConfigError(f"ema must be in [0, 1); got {self.ema}.")
        s = self.sampler
        if s.levels < 1 or s.particles < 1 or s.n_ref < 2:
            raise ConfigError("sampler.levels and sampler.particles must be >= 1, sampler.n_ref >= 2.")
        if s.learned_weight < 0:
            raise ConfigError(f"sampler.learned_weight must be >= 0; got {s.learned_weight}.")


@dataclasses.dataclass
class DMMDConfig(CriticTrainConfig):
    """Options of ``dmmd`` (see docs/dmmd.md). ``kernel``: the base kernel on the features, a registered kernel:
    ``"linear"`` (MMD through mean embeddings), or a width-aware kernel (:class:`gflowzoo.interfaces.WidthAwareKernel`,
    e.g. ``"rbf"``) whose width is a learned noise-dependent ``h(t)`` (``width_model``: an MLP of t, or a per-level
    table interpolated in t; ``width_init = 0``: median heuristic on the first batch); any other kernel is used
    with its own fixed options. ``divergence``: the MMD estimator of the training loss (an ``mmd`` divergence; its
    own ``kernel`` option is not used: the base kernel is ``kernel``)."""

    kernel: Any = component("kernel", "linear")
    divergence: Any = component("divergence", "mmd")
    width_model: Literal["mlp", "table"] = "mlp"
    width_levels: int = 16
    width_init: float = 0.0
    # noise-adaptive width prior (docs/dmmd-what-we-learned.md): with "sigma" the width is
    #   h(t) = width_init * max(sigma_t, width_min) * sqrt(d_in) * exp(learned offset(t))
    # (width_init <= 0 means 1); learn_width = false keeps the offset at 0 (the width then follows the prior).
    width_prior: Literal["none", "sigma"] = "none"
    width_min: float = 0.05
    learn_width: bool = True
    # how the base kernel meets the features [x, phi(x, t)] of a backbone with an input skip
    # (docs/dmmd-what-we-learned.md, session 7): "joint": kernel(features) (an RBF is then the product of an RBF on x
    # and one on phi, so the learned part can only sharpen it); "sum": kernel_h(x) + <phi, phi'> in training and
    # kernel_h(x) + sampler.learned_weight * <phi, phi'> in sampling (gflowzoo_dmmd.critic.SkipSumKernel: the
    # learned part adds a field of its own); "auto": "sum" where it applies (a backbone with an input skip and a
    # non-linear base kernel), "joint" elsewhere, so that a preset's --set backbone=unet or kernel=linear still runs
    feature_kernel: Literal["joint", "sum", "auto"] = "joint"
    sampler: SamplerConfig = dataclasses.field(default_factory=SamplerConfig)


@dataclasses.dataclass
class ADMMDConfig(DMMDConfig):
    """``a-dmmd``: DMMD training, the approximate sampler by default."""

    sampler: SamplerConfig = dataclasses.field(default_factory=_approx_sampler)


@dataclasses.dataclass
class ADMMDEConfig(DMMDConfig):
    """``a-dmmd-e``: DMMD training, the hybrid sampler by default."""

    sampler: SamplerConfig = dataclasses.field(default_factory=_hybrid_sampler)


def _kale_sampler() -> SamplerConfig:
    return SamplerConfig(variant="approx", steps_per_level=1, step_size=1.0, step_schedule="sigma",
                         integrator="euler", box=1.5)


@dataclasses.dataclass
class DKALEConfig(CriticTrainConfig):
    """Options of ``dkale``: the critic is a scalar head ``h(x, t) = <w, phi(x, t)> + b`` trained to maximise
    ``1 + E_{P_t} h - E_P exp(h)`` minus the penalties; ``sampler.variant`` must be ``"approx"`` (no interaction).
    ``divergence``: the objective's source, a divergence with a critic objective
    (:class:`gflowzoo.interfaces.CriticObjective`; ``"kale"``, whose ``lam``, ``max_iter``, ``tol`` and
    ``kernel`` options do not apply to a trained critic)."""

    divergence: Any = component("divergence", "kale")
    sampler: SamplerConfig = dataclasses.field(default_factory=_kale_sampler)

    def validate(self) -> None:
        """The shared checks, and the approximate sampler (see :meth:`CriticTrainConfig.validate`)."""
        super().validate()
        if self.sampler.variant != "approx":
            raise ConfigError(
                "dkale has no interacting sampler (the KALE critic is not a difference of mean embeddings): "
                f"sampler.variant must be 'approx', got {self.sampler.variant!r}."
            )


@dataclasses.dataclass
class MMDFlowConfig:
    """Options of ``mmdflow`` (Arbel et al. 2019, notes/baselines.md section 6.4): a fixed kernel on pixels, particles
    from ``N(0, I)`` moved towards ``n_data`` fixed data samples by ``steps`` noisy Euler steps of size
    ``step_size``; the injected noise level is ``beta * noise_decay^floor(step / noise_every)`` (the integrator's
    ``beta`` is relative to that scale). ``divergence``: whose witness the particles ascend, on ``kernel`` (its own
    ``kernel`` option is unused; ``mmd``: the MMD flow, whatever its ``estimator``)."""

    kernel: Any = component("kernel", {"name": "rbf", "sigmas": [2.0, 5.0, 10.0, 20.0, 40.0, 80.0]})
    divergence: Any = component("divergence", "mmd")
    n_data: int = 2000
    data_seed: int = 0
    particles: int = 512
    steps: int = 1000
    step_size: float = 1.0
    integrator: Any = component("integrator", {"name": "euler-noisy", "beta": 1.0})
    noise_decay: float = 0.5
    noise_every: int = 100
    clamp_output: bool = True

    def validate(self) -> None:
        """Checks of values no type expresses (called by :func:`gflowzoo.config.build` and by the method)."""
        if (self.n_data < 1 or self.particles < 1 or self.steps < 0 or self.noise_every < 1
                or not self.step_size > 0):
            raise ConfigError("mmdflow: n_data, particles and noise_every must be >= 1, steps >= 0, step_size > 0.")
        if not 0 < self.noise_decay <= 1:
            raise ConfigError(f"mmdflow noise_decay must be in (0, 1]; got {self.noise_decay}.")
