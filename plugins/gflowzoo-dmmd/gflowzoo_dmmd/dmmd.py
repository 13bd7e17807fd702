"""``dmmd``, ``a-dmmd`` and ``a-dmmd-e``: one training recipe (the noise-conditional MMD critic) and one sampler
with three variants. The three registered methods differ only in their config defaults, so a run trained with
any of them samples with any variant (``--set sampler.variant=approx``).

Critic: ``k_t(x, y) = K(phi(x, t), phi(y, t))`` with ``K`` linear (MMD through mean embeddings) or Gaussian with a
learned width ``h(t)``. Per group (one t): loss ``-w(t) MMD^2_u(P, P_t) + lambda_gp GP + lambda_l2 mean f_t^2``.

Sampler statistics (stored in the final checkpoint only; recomputed from the data when sampling from an intermediate
one): on the sampling grid ``t_1 > ... > t_T``, the mean features of clean data ``m_P(t_k)`` and of noisy data
``m_{P_t}(t_k)`` (linear), or ``n_ref`` reference features of clean and noisy data per level (rbf).
"""

from __future__ import annotations

import math

from typing import Any

import torch
from torch import Tensor, nn

from gflowzoo.api import MMD, ConfigError, WidthAwareKernel

from .base import NoiseConditionalMethod
from .config import ADMMDConfig, ADMMDEConfig, DMMDConfig
from .critic import NoiseWidth, SkipSumKernel, field_sums, fit_from_sums, group_kernel, mmd_group_losses
from .flow import Level
from .presets import dmmd_preset

__all__ = ["ADMMD", "ADMMDE", "CALIBRATION_POINTS", "DMMD"]

#: Noisy data points per grid level used to measure the step scale of the ``calibrated`` schedule.
CALIBRATION_POINTS = 512


class DMMD(NoiseConditionalMethod):
    """Diffusion-MMD gradient flow (Galashov, De Bortoli & Gretton 2024/2025, as reconstructed in notes/dmmd.md).

    Training needs no generator: for each of ``groups`` noise levels t per step, the critic maximises the unbiased
    MMD^2 between ``n_clean`` clean images and ``n_noisy`` noised *other* images under the noise-conditional kernel,
    with a gradient penalty on the witness at interpolates and an L2 penalty on the witness. Sampling moves
    ``particles`` particles from ``N(0, I)`` up the witness of data vs particles over a decreasing noise grid
    (``sampler.variant``: exact / approx / hybrid). Samples are ``[n, *S]`` in model units.
    """

    Config = DMMDConfig
    objective = "mmd2"

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """Per data set settings (``paper``: GPU scale; ``cpu-quick``: minutes on a CPU)."""
        return dmmd_preset(dataset, variant)

    # -- critic -------------------------------------------------------------------------------------------------
    def accept_components(self, components: dict[str, Any]) -> None:
        """The base kernel (``kernel``) and the MMD estimator (``divergence``). A width-aware kernel
        (:class:`gflowzoo.interfaces.WidthAwareKernel`, e.g. ``rbf``) gets the learned width ``h(t)``; any other
        kernel is used with its own fixed options, and the width options are ignored (as for ``linear``)."""
        self.kernel = components["kernel"]
        divergence = components["divergence"]
        if not isinstance(divergence, MMD):
            raise ConfigError(
                f"{type(self).__name__.lower()} trains an MMD critic, so divergence must be an MMD divergence such "
                f"as 'mmd'; got {type(divergence).__name__} (for KALE use the dkale method)."
            )
        self.divergence = divergence
        #: whether the base kernel takes the noise-dependent width h(t)
        self.width_aware = isinstance(self.kernel, WidthAwareKernel)

    def linear_unbiased_mmd(self) -> bool:
        return bool(self.kernel.is_linear) and getattr(self.divergence, "estimator", None) == "unbiased"

    def build_extra(self, feature_dim: int) -> dict[str, nn.Module]:
        c = self.config
        #: input coordinates at the front of the features (the sum kernel; 0: the joint kernel)
        self.skip_dims = 0
        if c.feature_kernel != "joint":
            skip = getattr(self.backbone, "skip", None)
            skip_dims = skip.extra_dims() if skip is not None else 0
            if skip_dims and not self.kernel.is_linear:
                self.skip_dims = skip_dims
            elif c.feature_kernel == "sum":
                raise ConfigError(
                    "feature_kernel = 'sum' needs a backbone with an input skip (backbone.input_skip > 0: the mlp and "
                    "conv backbones) and a non-linear base kernel such as 'rbf'; feature_kernel = 'auto' (the digits "
                    "and MNIST presets) falls back to 'joint' where it cannot apply."
                )
        if self.width_aware:
            width = NoiseWidth(c.width_model, c.width_levels, c.width_init if c.width_init > 0 else 1.0)
            if not c.learn_width:
                width.requires_grad_(False)
            return {"width": width}
        return {}

    def _width(self, t: Tensor, ema: bool) -> Tensor:
        """The kernel width ``h(t)`` ``[N]`` (feature units): the learned width, times the noise-adaptive prior
        ``max(sigma_t, width_min) * sqrt(d_in)`` when ``width_prior = "sigma"``."""
        h = self._width_net(ema)(t)
        if self.config.width_prior == "sigma":
            d_in = float(math.prod(self.shape))
            prior = self.schedule.sigma(t.to(h.dtype)).clamp_min(self.config.width_min) * math.sqrt(d_in)
            h = h * prior
        return h

    def _width_net(self, ema: bool) -> NoiseWidth | None:
        extra = self.ema_extra if ema else self.extra
        return extra["width"] if "width" in extra else None

    def group_terms(self, fx: Tensor, fy: Tensor, fh: Tensor, xh: Tensor, t: Tensor, step: int) -> dict[str, Tensor]:
        if self.width_aware and step == 0 and self.config.width_init <= 0 and self.config.width_prior == "none":
            self._median_init(fx, fy)
        return mmd_group_losses(fx, fy, fh, xh, self._group_kernels(t), self.divergence)

    def _group_kernels(self, t: Tensor) -> list[Any]:
        """The base kernel of every group (``t`` ``[G]``), with the live (trained) width."""
        if self.width_aware:
            h = self._width(t, ema=False)
            return [self._composed(self.kernel.at_width(h[i]), 1.0) for i in range(len(t))]
        return [self._composed(self.kernel, 1.0)] * len(t)

    def _composed(self, kernel: Any, learned_weight: float) -> Any:
        """``kernel`` (one level's base kernel) on the features as ``feature_kernel`` says (``"sum"``: plus
        ``learned_weight`` times the linear kernel on the learned features)."""
        if not self.skip_dims:
            return kernel
        return SkipSumKernel(kernel, self.skip_dims, group_kernel("linear"), learned_weight)

    def _div(self, kernel: Any) -> MMD:
        """The configured MMD on ``kernel`` (one noise level's kernel)."""
        return self.divergence.with_kernel(kernel)

    def point_witness(self, fz: Tensor, fx: Tensor, fy: Tensor, t: Tensor) -> Tensor:
        kernels = self._group_kernels(t)
        return torch.stack([self._div(kernels[i]).witness(fz[i], fx[i], fy[i]) for i in range(len(t))])

    @torch.no_grad()
    def _median_init(self, fx: Tensor, fy: Tensor) -> None:
        """Median heuristic on the first batch: the base width becomes the median pairwise feature distance."""
        f = torch.cat([fx.reshape(-1, fx.shape[-1]), fy.reshape(-1, fy.shape[-1])])[:512]
        d = torch.cdist(f, f)
        med = float(d[d > 0].median()) if (d > 0).any() else 1.0
        for net in (self.extra["width"], self.ema_extra["width"]):
            net.set_base(med)

    def has_width(self) -> bool:
        return self.width_aware or super().has_width()

    def widths(self, t: Tensor) -> Tensor:
        if self.width_aware:
            with torch.no_grad():
                return self._width(t.to(self.device), self.config.sampler.use_ema).float().cpu()
        return super().widths(t)

    def _kernel_at(self, t: float, ema: bool) -> Any:
        """The kernel the sampler uses at noise level ``t`` (width of the EMA or live net; ``feature_kernel =
        "sum"``: the learned kernel at ``sampler.learned_weight``)."""
        weight = self.config.sampler.learned_weight
        if not self.width_aware:
            return self._composed(self.kernel, weight)
        with torch.no_grad():
            h = self._width(torch.tensor([t], device=self.device), ema)[0]
        return self._composed(self.kernel.at_width(h), weight)

    # -- statistics ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def compute_stats_from(self, ds: Any, grid: Tensor) -> dict[str, Any]:
        """Linear: ``clean`` ``[T, D]`` = mean of ``phi(x, t_k)`` over ``stats_samples`` data points (fixed seed) and
        ``noisy`` ``[T, D]`` = mean of ``phi(alpha x + sigma eps, t_k)``. Any other kernel: ``ref_clean``/``ref_noisy``
        ``[T, n_ref, D]``, the features of ``n_ref`` fixed clean and noisy reference points per level."""
        c = self.config
        net, _ = self._net(c.sampler.use_ema)
        net.eval()
        idx = self._stats_indices(ds)
        g = torch.Generator().manual_seed(c.stats_seed + 1)
        T, dev = len(grid), self.device
        if not self.kernel.is_linear:
            n_ref = min(c.sampler.n_ref, len(idx))
            x = ds.get(idx[:n_ref]).to(dev)
            clean, noisy = self._reference_features(x, grid, net, g)
            stats = {"ref_clean": clean, "ref_noisy": noisy, "ref_x": x.cpu()}
            skip = n_ref
        else:
            sums_c = torch.zeros(T, self.feature_dim, dtype=torch.float64, device=dev)
            sums_n = torch.zeros(T, self.feature_dim, dtype=torch.float64, device=dev)
            for part in idx.split(c.stats_batch):
                x = ds.get(part).to(dev)
                for k, t in enumerate(grid.tolist()):
                    tt = torch.full((len(x),), t, device=dev)
                    sums_c[k] += net(x, tt).double().sum(0)
                    eps = torch.randn(x.shape, generator=g).to(dev)
                    sums_n[k] += net(self.schedule.add_noise(x, tt, noise=eps), tt).double().sum(0)
            stats = {"clean": (sums_c / len(idx)).float().cpu(), "noisy": (sums_n / len(idx)).float().cpu()}
            skip = 0
        if self._calibrated():  # only the calibrated schedule needs the measured step scales
            cal = idx[skip : skip + CALIBRATION_POINTS] if len(idx) >= skip + 2 else idx[:CALIBRATION_POINTS]
            stats["flow_scale"], stats["flow_misfit"] = self._calibrate(ds.get(cal).to(dev), grid, stats, net, g)
        return stats

    @torch.no_grad()
    def _reference_features(self, x: Tensor, grid: Tensor, net: nn.Module,
                            g: torch.Generator) -> tuple[Tensor, Tensor]:
        """``ref_clean``/``ref_noisy`` ``[T, n_ref, D]``: the features of the clean reference points ``x``
        ``[n_ref, *S]`` and of their noisy versions at every level of ``grid``, the noise drawn from ``g`` level after
        level (so the same ``x`` and seed give the same features)."""
        c, dev = self.config, self.device
        x = x.to(dev)
        T, n_ref = len(grid), x.shape[0]
        clean = torch.empty(T, n_ref, self.feature_dim)
        noisy = torch.empty(T, n_ref, self.feature_dim)
        for k, t in enumerate(grid.tolist()):
            tt = torch.full((n_ref,), t, device=dev)
            eps = torch.randn(x.shape, generator=g).to(dev)
            y = self.schedule.add_noise(x, tt, noise=eps)
            for out, inp in ((clean, x), (noisy, y)):
                parts = zip(inp.split(c.stats_batch), tt.split(c.stats_batch))
                out[k] = torch.cat([net(b, tb) for b, tb in parts]).cpu()
        return clean, noisy

    def stored_stats(self, stats: dict[str, Any]) -> dict[str, Any]:
        """What a checkpoint keeps of the statistics: the reference features ``[T, n_ref, D]`` (tens to hundreds of
        MB: 340 MB on the MNIST preset) are left out when their clean reference points ``ref_x`` are there; they
        are recomputed from those points at the first sampling (:meth:`restored_stats`), without the data."""
        if "ref_x" in stats:
            return {k: v for k, v in stats.items() if k not in ("ref_clean", "ref_noisy")}
        return stats

    def restored_stats(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The statistics with the reference features recomputed from ``ref_x`` where a checkpoint left them out (the
        same noise as :meth:`compute_stats_from`: seed ``stats_seed + 1``, drawn level after level)."""
        if self.kernel.is_linear or "ref_clean" in stats or "ref_x" not in stats:
            return stats
        net, _ = self._net(self.config.sampler.use_ema)
        net.eval()
        g = torch.Generator().manual_seed(self.config.stats_seed + 1)
        clean, noisy = self._reference_features(stats["ref_x"], stats["grid"], net, g)
        return {**stats, "ref_clean": clean, "ref_noisy": noisy}

    def _calibrated(self) -> bool:
        return self.step_rule()[1] == "calibrated"

    def _stats_key(self) -> list[int]:
        # switching to or from the calibrated schedule changes what the statistics hold
        return [*super()._stats_key(), int(self._calibrated())]

    def _calibrate(self, x: Tensor, grid: Tensor, stats: dict[str, Any], net: nn.Module,
                   g: torch.Generator) -> tuple[Tensor, Tensor]:
        """The step scale ``s_k`` and the misfit of the witness field at every grid level (``[T]`` each, see
        :func:`gflowzoo_dmmd.critic.field_fit`): the witness of the stored clean against the stored noisy
        statistics, differentiated at noisy versions ``y`` of the clean points ``x`` ``[n, *S]`` and compared
        with the denoising direction ``x - y``. ``s_k`` is what the ``calibrated`` step schedule multiplies."""
        c = self.config
        linear = self.kernel.is_linear
        scale, misfit = torch.zeros(len(grid)), torch.zeros(len(grid))
        for k, t in enumerate(grid.tolist()):
            div = self._div(self._kernel_at(t, c.sampler.use_ema))
            if linear:
                sets = (stats["clean"][k : k + 1], stats["noisy"][k : k + 1])
            else:
                sets = (stats["ref_clean"][k], stats["ref_noisy"][k])
            sets = tuple(s.to(x.device) for s in sets)
            sums = torch.zeros(1, 3, dtype=torch.float64)
            for xb in x.split(c.stats_batch):
                tt = torch.full((len(xb),), t, device=x.device)
                eps = torch.randn(xb.shape, generator=g).to(x.device)
                y = self.schedule.add_noise(xb, tt, noise=eps)
                with torch.enable_grad():
                    yy = y.detach().requires_grad_(True)
                    (v,) = torch.autograd.grad(div.witness(net(yy, tt), *sets).sum(), yy)
                sums += field_sums(v.flatten()[None].double(), (xb - y).flatten()[None].double()).cpu()
            misfit[k], scale[k] = (float(r[0]) for r in fit_from_sums(*sums.unbind(1)))
        return scale, misfit

    # -- sampling -----------------------------------------------------------------------------------------------
    def make_witness(self, plan: list[Level]) -> tuple[Any, Any, Any]:
        c = self.config
        ema = c.sampler.use_ema
        net, _ = self._net(ema)
        stats = self.stats
        linear = self.kernel.is_linear
        dev = self.device
        divs = {lv.k: self._div(self._kernel_at(lv.t, ema)) for lv in plan}
        if linear:
            targets = {lv.k: stats["clean"][lv.k : lv.k + 1].to(dev) for lv in plan}
            fixed = {lv.k: stats["noisy"][lv.k : lv.k + 1].to(dev) for lv in plan}
        else:
            targets = {lv.k: stats["ref_clean"][lv.k].to(dev) for lv in plan}
            fixed = {lv.k: stats["ref_noisy"][lv.k].to(dev) for lv in plan}

        def feats(z: Tensor, level: Level) -> Tensor:
            return net(z, torch.full((z.shape[0],), level.t, device=z.device, dtype=z.dtype))

        def witness_fn(z: Tensor, level: Level, source: Tensor | None) -> Tensor:
            f = feats(z, level)
            if source is None:  # fused interacting step: the particle term from this very forward pass
                source = f.detach().mean(0, keepdim=True) if linear else f.detach()
            return divs[level.k].witness(f, targets[level.k], source)

        def particle_source(z_all: Tensor, level: Level) -> Tensor:
            f = torch.cat([feats(zc, level) for zc in self._chunks(z_all)])
            return f.mean(0, keepdim=True) if linear else f

        return witness_fn, particle_source, lambda level: fixed[level.k]

    def bounded_repulsion_applies(self) -> bool:
        """Whether ``sampler.bounded_repulsion`` applies: not with a linear base kernel, whose witness terms are inner
        products, not kernel densities (the toy presets set the flag, and ``--set kernel=linear`` on them samples
        with the plain field)."""
        return not self.kernel.is_linear

    def witness_terms(self, plan: list[Level]) -> Any:
        """``terms(z, level, source) -> (p, q)`` (:data:`gflowzoo_dmmd.flow.TermsFn`): the data and particle kernel
        means of the sampling witness (``p - q``), for ``sampler.bounded_repulsion``: the same features, clean
        reference targets and per-level kernels as :meth:`make_witness` (a non-linear base kernel only, see
        :meth:`bounded_repulsion_applies`)."""
        ema = self.config.sampler.use_ema
        net, _ = self._net(ema)
        targets = {lv.k: self.stats["ref_clean"][lv.k].to(self.device) for lv in plan}
        kernels = {lv.k: self._kernel_at(lv.t, ema) for lv in plan}

        def terms(z: Tensor, level: Level, source: Tensor | None) -> tuple[Tensor, Tensor]:
            f = net(z, torch.full((z.shape[0],), level.t, device=z.device, dtype=z.dtype)).float()
            src = f.detach() if source is None else source.float()  # fused interacting step: this forward pass
            k = kernels[level.k]
            return k.gram(f, targets[level.k]).mean(1), k.gram(f, src).mean(1)

        return terms

    # -- diagnostics --------------------------------------------------------------------------------------------
    def diagnose_level(self, x: Tensor, y: Tensor, t: float, ema: bool) -> tuple[float, float]:
        net, _ = self._net(ema)
        net.eval()
        div = self._div(self._kernel_at(t, ema))
        with torch.enable_grad():
            z = torch.cat([x, y]).requires_grad_(True)
            f = net(z, torch.full((z.shape[0],), t, device=z.device))
            fx, fy = f[: len(x)].detach(), f[len(x) :].detach()
            (grad,) = torch.autograd.grad(div.witness(f, fx, fy).sum(), z)
        with torch.no_grad():
            value = float(div.estimate(fx, fy))
        return value, float(grad.flatten(1).norm(dim=1).mean())


class ADMMD(DMMD):
    """a-DMMD: DMMD training; by default the approximate sampler (the particle mean replaced by the stored mean
    features of noisy data, so particles do not interact), one step per level, ``eta_k = sigma_t``, a box clamp
    at 1.5 x the data range against drift."""

    Config = ADMMDConfig


class ADMMDE(DMMD):
    """a-DMMD-e (an interpretation, see docs/dmmd.md): DMMD training; by default a hybrid sampler with approximate
    steps while ``t > switch_t`` and exact interacting steps (``exact_steps_per_level``) for ``t <= switch_t``."""

    Config = ADMMDEConfig
