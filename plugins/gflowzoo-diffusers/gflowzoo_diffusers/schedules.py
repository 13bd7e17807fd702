"""Noise schedules read from diffusers schedulers: ``alphas_cumprod`` on continuous ``t``.

A diffusers scheduler defines ``abar_k = prod_{j <= k} (1 - beta_j)`` for discrete steps ``k = 0 .. T - 1``. Here
step ``k`` sits at ``t_k = (k + 1) / T`` and the clean data at ``t = 0`` (``abar = 1``); ``log abar`` is
interpolated linearly in ``t`` between these ``T + 1`` nodes. Then ``alpha_t = sqrt(abar(t))`` and
``sigma_t = sqrt(1 - abar(t))``: a variance-preserving path that matches the scheduler's ``add_noise`` exactly at
every ``t_k``. ``t_min = 1 / T`` (the first discrete step).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from gflowzoo.api import ConfigError, NoiseSchedule

from .hub import diffusers_object

#: beta schedules understood by diffusers' DDPM-family schedulers.
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


class DiffusersSchedule(NoiseSchedule):
    """Any diffusers scheduler's ``alphas_cumprod`` as a continuous-time variance-preserving schedule.

    Args:
        num_train_timesteps: ``T``, the number of discrete diffusion steps.
        beta_start: first beta (unused by ``squaredcos_cap_v2``).
        beta_end: last beta (unused by ``squaredcos_cap_v2``).
        beta_schedule: ``"linear"``, ``"scaled_linear"``, ``"squaredcos_cap_v2"`` or ``"sigmoid"``.
        scheduler: the diffusers scheduler class that computes the table (any class in ``diffusers.schedulers``
            with an ``alphas_cumprod`` attribute: ``DDPMScheduler``, ``DDIMScheduler``, ``PNDMScheduler``, ...).
        rescale_betas_zero_snr: diffusers' zero-terminal-SNR rescaling (``abar_{T-1} = 0``; the last level then
            has ``alpha`` about 1e-15 rather than exactly 0, to keep ``log abar`` finite).
    """

    #: name of this schedule in messages
    label: ClassVar[str] = "diffusers"

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        scheduler: str = "DDPMScheduler",
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        where = f"schedule {self.label!r}"
        if num_train_timesteps < 2:
            raise ConfigError(f"{where}: num_train_timesteps must be >= 2; got {num_train_timesteps}.")
        if beta_schedule not in BETA_SCHEDULES:
            raise ConfigError(f"{where}: beta_schedule must be one of {', '.join(BETA_SCHEDULES)}; got {beta_schedule!r}.")
        if beta_schedule != "squaredcos_cap_v2" and not 0.0 < beta_start <= beta_end < 1.0:
            raise ConfigError(f"{where}: need 0 < beta_start <= beta_end < 1; got {beta_start}, {beta_end}.")
        if not (scheduler.isidentifier() and scheduler.endswith("Scheduler")):
            raise ConfigError(f"{where}: scheduler must be a diffusers scheduler class name such as 'DDPMScheduler'.")
        self.kwargs: dict[str, Any] = {
            "num_train_timesteps": int(num_train_timesteps),
            "beta_start": float(beta_start),
            "beta_end": float(beta_end),
            "beta_schedule": beta_schedule,
        }
        if rescale_betas_zero_snr:
            self.kwargs["rescale_betas_zero_snr"] = True
        cls = _scheduler_class(scheduler, where)
        try:
            sched = cls(**self.kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where}: diffusers' {scheduler} does not take these options ({exc}).") from None
        table = getattr(sched, "alphas_cumprod", None)
        if not isinstance(table, Tensor) or table.ndim != 1 or len(table) != num_train_timesteps:
            raise ConfigError(f"{where}: diffusers' {scheduler} has no alphas_cumprod table; use a DDPM-family scheduler.")
        self.num_train_timesteps = int(num_train_timesteps)
        self.scheduler = scheduler
        abar = table.detach().double().cpu().clamp(1e-30, 1.0)
        #: ``[T]`` float64: abar_k of the diffusers scheduler.
        self.table = abar
        #: ``[T + 1]`` float64: log abar at t = 0, 1/T, ..., 1.
        self.log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), abar.log()])
        self.t_min = 1.0 / self.num_train_timesteps
        self._cache: dict[tuple[str, torch.dtype], Tensor] = {}

    # -- the discrete view -------------------------------------------------------------------------------------
    def alphas_cumprod(self) -> Tensor:
        """The scheduler's ``abar_k`` for ``k = 0 .. T - 1`` (``[T]``, float64, CPU)."""
        return self.table.clone()

    def scheduler_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that rebuild the same beta table in any DDPM-family diffusers scheduler."""
        return dict(self.kwargs)

    def timestep_to_t(self, k: Tensor) -> Tensor:
        """Discrete step ``k`` (``0 .. T - 1``) -> continuous ``t = (k + 1) / T``."""
        return (torch.as_tensor(k, dtype=torch.float64) + 1) / self.num_train_timesteps

    # -- the continuous view -----------------------------------------------------------------------------------
    def _log_abar(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t)
        dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
        key = (str(t.device), dtype)
        if key not in self._cache:
            self._cache[key] = self.log_abar.to(device=t.device, dtype=dtype)
        table = self._cache[key]
        pos = t.to(dtype).clamp(0.0, 1.0) * self.num_train_timesteps
        lo = pos.floor().clamp(max=self.num_train_timesteps - 1)
        frac = pos - lo
        i = lo.long()
        return torch.lerp(table[i], table[i + 1], frac)

    def alpha(self, t: Tensor) -> Tensor:
        """``sqrt(abar(t))``, same shape as ``t``."""
        return torch.exp(0.5 * self._log_abar(t))

    def sigma(self, t: Tensor) -> Tensor:
        """``sqrt(1 - abar(t))``, same shape as ``t``."""
        return torch.sqrt(torch.expm1(self._log_abar(t)).abs())  # expm1 <= 0 here; abs avoids a -0.0


def _scheduler_class(name: str, where: str) -> type:
    """The diffusers scheduler class ``name`` (a user error naming alternatives when there is none)."""
    if name == "DDPMScheduler":  # the common case, without importing every scheduler module
        return diffusers_object("diffusers.schedulers.scheduling_ddpm", "DDPMScheduler")
    module = diffusers_object("diffusers", "schedulers")
    try:
        return getattr(module, name)
    except AttributeError:
        raise ConfigError(
            f"{where}: diffusers has no scheduler {name!r}; try DDPMScheduler, DDIMScheduler or PNDMScheduler."
        ) from None


class DiffusersLinear(DiffusersSchedule):
    """diffusers' ``linear`` betas (DDPM, Ho et al. 2020): ``beta_k`` linear from ``beta_start`` to ``beta_end``.

    With the defaults ``abar`` runs from 0.9999 at ``t = 1/T`` to 4.0e-5 at ``t = 1``."""

    label = "diffusers-linear"

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        super().__init__(num_train_timesteps, beta_start, beta_end, "linear")


class DiffusersScaledLinear(DiffusersSchedule):
    """diffusers' ``scaled_linear`` betas: ``sqrt(beta_k)`` linear from ``sqrt(beta_start)`` to
    ``sqrt(beta_end)``. The defaults are Stable Diffusion's (0.00085 -> 0.012; ``abar(1)`` = 4.7e-3)."""

    label = "diffusers-scaled-linear"

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> None:
        super().__init__(num_train_timesteps, beta_start, beta_end, "scaled_linear")


class DiffusersCosine(DiffusersSchedule):
    """diffusers' ``squaredcos_cap_v2`` betas (the cosine schedule of Nichol & Dhariwal 2021, betas capped at
    0.999; ``abar(1)`` = 2.4e-9 for T = 1000). diffusers ignores beta_start/beta_end for this schedule, so they
    are not options here."""

    label = "diffusers-cosine"

    def __init__(self, num_train_timesteps: int = 1000) -> None:
        super().__init__(num_train_timesteps, beta_schedule="squaredcos_cap_v2")


class DiffusersSigmoid(DiffusersSchedule):
    """diffusers' ``sigmoid`` betas (GeoDiff): ``beta_start + (beta_end - beta_start) * sigmoid(linspace(-6, 6))``."""

    label = "diffusers-sigmoid"

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        super().__init__(num_train_timesteps, beta_start, beta_end, "sigmoid")
