"""The one particle-flow loop behind every DMMD sampler variant (exact, approximate, hybrid) and DKALE.

Particles ``z`` ``[N, *S]`` visit a decreasing grid of noise levels ``t_1 > ... > t_T``; at level ``k`` they take
``steps[k]`` steps of a :class:`~gflowzoo.interfaces.FlowIntegrator` along ``grad_z w_k(z)``, the gradient of a
scalar witness per particle. The witness needs a *source* term:

* non-interacting levels (a-DMMD, DKALE): a fixed source given per level (noisy-data features) or none;
* interacting levels (exact DMMD): the features of **all** N particles at the current positions, with a stop-gradient.

Chunking bounds memory: particles are moved ``chunk`` at a time. On an interacting level the particle source is
computed over *all* chunks first (no gradient), then every chunk is moved, so the result does not depend on the
chunk size. With one chunk and a velocity evaluated at the particles themselves (Euler, or ``beta = 0``), the
source comes from the same forward pass as the gradient: one forward + one backward (VJP) per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gflowzoo.api import ConfigError

__all__ = [
    "Level", "ParticleFlow", "bounded_repulsion", "calibrated_fractions", "cap_moves", "plan_levels", "resolve_step_rule",
]

#: Automatic step sizes per schedule (``step_size = 0``): width2 -> 10 (the CPU study's oracle value, eta = 10 h^2);
#: otherwise 0.3 for the exact/hybrid flow and 1.0 for the approximate one (the study's best digits settings).
AUTO_STEP = {"width2": 10.0, "calibrated": 1.0, "exact": 0.3, "hybrid": 0.3, "approx": 1.0}


@dataclass
class Level:
    """One noise level of the sampling grid: its index ``k`` in the grid, ``t``, the number of steps, the step
    size ``eta`` (already multiplied by the schedule), the path noise scale ``sigma_t`` handed to the integrator, and
    whether the particles interact on it, and the kernel width ``h_k`` in input space where the critic has one
    (``None`` otherwise; it sizes the per-step move cap of :class:`ParticleFlow`)."""

    k: int
    t: float
    steps: int
    eta: float
    scale: float
    interacting: bool
    width: float | None = None


def resolve_step_rule(step_size: float, step_schedule: str, variant: str, has_width: bool) -> tuple[float, str]:
    """The ``(eta0, schedule)`` actually used.

    ``step_schedule = "auto"``: ``"width2"`` when the critic exposes a kernel width in input space (``rff-oracle``) or
    is an RBF kernel with a learned width, else ``"sigma"``. ``step_size = 0``: :data:`AUTO_STEP` for that schedule
    and variant.
    """
    schedule = step_schedule
    if schedule == "auto":
        schedule = "width2" if has_width else "sigma"
    if schedule == "width2" and not has_width:
        raise ConfigError(
            "sampler.step_schedule='width2' needs a kernel width: use kernel='rbf' or the rff-oracle backbone, or "
            "choose 'const', 'sigma' or 'sigma2'."
        )
    if schedule not in ("const", "sigma", "sigma2", "width2", "calibrated"):
        raise ConfigError(
            f"Unknown sampler.step_schedule {step_schedule!r}; use auto, const, sigma, sigma2, width2 or calibrated."
        )
    eta0 = float(step_size)
    if eta0 < 0:
        raise ConfigError(f"sampler.step_size must be >= 0 (0: automatic); got {step_size}.")
    if eta0 == 0.0:
        eta0 = AUTO_STEP[schedule] if schedule in ("width2", "calibrated") else AUTO_STEP[variant]
    return eta0, schedule


def plan_levels(
    grid: Tensor,
    sigma: Tensor,
    width: Tensor | None,
    *,
    variant: str,
    switch_t: float,
    steps_per_level: int,
    exact_steps_per_level: int,
    eta0: float,
    schedule: str,
    calibration: Tensor | None = None,
) -> list[Level]:
    """The per-level plan of a sampler: ``grid`` ``[T]`` (decreasing), ``sigma`` ``[T]`` (sigma_t on the grid),
    ``width`` ``[T]`` or None (the kernel width h_t, for ``width2``), ``calibration`` ``[T]`` or None (the measured
    step scale ``s_k`` of :func:`calibrated_fractions`, for ``calibrated``; None plans unit scales, enough to count
    steps)."""
    if variant not in ("exact", "approx", "hybrid"):
        raise ConfigError(f"Unknown sampler.variant {variant!r}; use exact, approx or hybrid.")
    if steps_per_level < 1 or exact_steps_per_level < 0:
        raise ConfigError("sampler.steps_per_level must be >= 1 and sampler.exact_steps_per_level >= 0.")
    levels = []
    fractions = calibrated_fractions(sigma, steps_per_level) if schedule == "calibrated" else None
    for k in range(len(grid)):
        t, s = float(grid[k]), float(sigma[k])
        if variant == "exact":
            interacting = True
        elif variant == "approx":
            interacting = False
        else:
            interacting = t <= switch_t
        steps = steps_per_level
        if variant == "hybrid" and interacting and exact_steps_per_level:
            steps = exact_steps_per_level
        factor = {"const": 1.0, "sigma": s, "sigma2": s * s}.get(schedule)
        if fractions is not None:
            factor = float(fractions[k]) * (1.0 if calibration is None else float(calibration[k]))
        elif factor is None:  # width2
            h = float(width[k])  # type: ignore[index]
            factor = h * h
        h = None if width is None else float(width[k])
        levels.append(Level(k, t, steps, eta0 * factor, s, interacting, h))
    return levels


def calibrated_fractions(sigma: Tensor, steps: int) -> Tensor:
    """Per-step fractions ``gamma_k`` ``[T]`` of the ``calibrated`` schedule: a step ``eta_k = gamma_k s_k`` moves a
    particle ``gamma_k`` of the way to its denoised position when the witness field, scaled by the measured ``s_k``,
    is the denoising direction. ``gamma_k = 1 - (sigma_{k+1} / sigma_k)^(1 / steps)``, so ``steps`` steps at level
    ``k`` shrink the remaining noise from ``sigma_k`` to ``sigma_{k+1}``, as a deterministic DDIM step does; after
    the last level the ratio of the last two levels is reused."""
    sig = sigma.double().clamp_min(1e-12)
    if len(sig) == 1:
        nxt = sig * 0.5
    else:
        nxt = torch.cat([sig[1:], sig[-1:] * (sig[-1] / sig[-2])])
    ratio = (nxt / sig).clamp(0.0, 1.0)
    return (1.0 - ratio ** (1.0 / max(int(steps), 1))).float()


#: ``witness(z_eval, level, source) -> [n]``: the per-particle witness at level ``level``; ``source`` is a tensor of
#: source features, or ``None`` to take the source from the same forward pass (interacting levels, fused mode).
WitnessFn = Callable[[Tensor, Level, Any], Tensor]
#: ``particle_source(z_all, level) -> Tensor``: the (detached) source features of all particles at ``level``.
SourceFn = Callable[[Tensor, Level], Tensor]
#: ``fixed_source(level) -> Any``: the stored source of a non-interacting level (may be None).
FixedSourceFn = Callable[[Level], Any]


class ParticleFlow:
    """Runs particles through a level plan.

    Args:
        witness: see :data:`WitnessFn`.
        particle_source: see :data:`SourceFn` (used on interacting levels when the fused path does not apply).
        fixed_source: see :data:`FixedSourceFn` (non-interacting levels).
        integrator: a :class:`~gflowzoo.interfaces.FlowIntegrator`.
        chunk: particles moved per chunk (0: all at once).
        box: clamp particles to ``[-box, box]`` after every step (0: no clamp).
        max_move: cap on each particle's move per step (its L2 norm over all coordinates), in units of the level's
            kernel width ``h_k`` (``Level.width``; levels without one are not capped); 0: no cap. The witness field
            is informative only within about one width of the particles, and an explicit step much longer than that
            overshoots: on toy-8gaussians the first steps at high noise (``eta = 10 h^2``, ``h ~ 1``) threw a fifth
            of the particles to 4-8 times the data's radius, where no field reaches them again.
    """

    def __init__(
        self,
        witness: WitnessFn,
        particle_source: SourceFn,
        fixed_source: FixedSourceFn,
        integrator: Any,
        chunk: int = 0,
        box: float = 0.0,
        max_move: float = 0.0,
    ) -> None:
        self.witness, self.particle_source, self.fixed_source = witness, particle_source, fixed_source
        self.integrator = integrator
        self.chunk = int(chunk)
        self.box = float(box)
        self.max_move = float(max_move)
        if self.chunk < 0 or self.box < 0 or self.max_move < 0:
            raise ConfigError("sampler.chunk, sampler.box and sampler.max_move must be >= 0.")

    def _grad(self, z_eval: Tensor, level: Level, source: Any) -> Tensor:
        with torch.enable_grad():
            zz = z_eval.detach().requires_grad_(True)
            w = self.witness(zz, level, source)
            (g,) = torch.autograd.grad(w.sum(), zz)
        return g

    def run(self, z: Tensor, plan: list[Level], generator: torch.Generator | None = None,
            on_level: Callable[[int], None] | None = None) -> Tensor:
        """Move ``z`` (``[N, *S]``, on the model's device) through ``plan``; returns the final ``[N, *S]``.
        ``on_level(i)`` is called after the ``i``-th level of the plan (progress displays)."""
        n = z.shape[0]
        size = n if self.chunk <= 0 else min(self.chunk, n)
        n_chunks = math.ceil(n / size)
        z = z.detach()
        for i, level in enumerate(plan):
            fixed = None if level.interacting else self.fixed_source(level)
            for _ in range(level.steps):
                cache: dict[str, Tensor] = {}

                def shared_source(z_all: Tensor = z, level: Level = level) -> Tensor:
                    if "src" not in cache:
                        with torch.no_grad():
                            cache["src"] = self.particle_source(z_all, level)
                    return cache["src"]

                moved = []
                for c in range(n_chunks):
                    zc = z[c * size : (c + 1) * size]

                    def velocity(z_eval: Tensor, zc: Tensor = zc, level: Level = level, fixed: Any = fixed) -> Tensor:
                        if not level.interacting:
                            return self._grad(z_eval, level, fixed)
                        if n_chunks == 1 and z_eval is zc:
                            return self._grad(z_eval, level, None)  # fused: one forward + one VJP
                        return self._grad(z_eval, level, shared_source())

                    z_before = zc
                    zc = self.integrator.step(zc, velocity, level.eta, scale=level.scale, generator=generator)
                    if self.max_move > 0 and level.width is not None:
                        zc = cap_moves(z_before, zc, self.max_move * level.width)
                    if self.box > 0:
                        zc = zc.clamp(-self.box, self.box)
                    moved.append(zc.detach())
                z = moved[0] if n_chunks == 1 else torch.cat(moved)
            if on_level is not None:
                on_level(i)
        return z


def cap_moves(before: Tensor, after: Tensor, limit: float) -> Tensor:
    """``after``, with every particle's move from ``before`` (``[N, *S]``) shortened to at most ``limit`` (L2 norm
    over the particle's coordinates); moves within the limit are unchanged."""
    move = after - before
    norm = move.flatten(1).norm(dim=1).clamp_min(1e-30)
    factor = (limit / norm).clamp(max=1.0).view(-1, *([1] * (move.dim() - 1)))
    return before + move * factor


#: ``terms(z_eval, level, source) -> (p, q)``: the two kernel-mean terms of an MMD witness ``w = p - q`` at every
#: particle (``[n]`` each): ``p(z) = mean_i k(z, x_i)`` over the target (data) and ``q(z) = mean_j k(z, y_j)`` over the
#: source (``source`` as for :data:`WitnessFn`).
TermsFn = Callable[[Tensor, Level, Any], tuple[Tensor, Tensor]]


def bounded_repulsion(terms: TermsFn) -> WitnessFn:
    """The witness of ``sampler.bounded_repulsion``: ``w(z) = p(z) - min(1, p(z) / q(z)) q(z)``, the ratio held
    constant (no gradient through it), so the particles move along

        ``grad p - grad q``            where ``p >= q`` (the MMD field, unchanged), and
        ``p grad log(p / q)``          where ``q > p``.

    A particle in the tail of the particle cloud has ``q >> p`` (at early levels the cloud is wider than the smoothed
    data, and its smoothed density decays more slowly): there the MMD field ``grad p - grad q`` is dominated by the
    repulsion from the bulk and points *away* from the data (toy-8gaussians: particles starting at ``|z| ~ 3.5-4.4``
    pushed to ``|z| ~ 5.7``, 2.7 data radii away, in the first 30 levels; later levels' kernels no longer reach them).
    Bounding the repulsion by the data's kernel mass keeps the direction of the log density ratio, so such a
    particle moves toward the data, with a speed ``p |grad log(p / q)|`` no larger than the attraction alone.
    It is not a pull toward single data points: the field stays zero where ``p = q`` and the attraction is never
    amplified (an isolated particle far from the data is moved no faster than by ``grad p``)."""

    def witness(z: Tensor, level: Level, source: Any) -> Tensor:
        p, q = terms(z, level, source)
        pd, qd = p.detach(), q.detach()
        # 1 where p >= q (q <= 0 included: a kernel with a linear part); p / q in [0, 1) where q > p
        ratio = torch.where(qd > pd, pd.clamp_min(0.0) / qd.clamp_min(torch.finfo(qd.dtype).tiny), torch.ones_like(qd))
        return p - ratio * q

    return witness
