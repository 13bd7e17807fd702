"""Noise-conditional feature backbones ``phi(x, t) -> [N, D]`` registered by the DMMD plugin.

* :class:`MLPBackbone` (``mlp``): for 2-D toys (and flattened small images), with an optional Fourier-feature input.
* :class:`ConvBackbone` (``conv``): a small residual conv net for 8/28/32/64-px images; GroupNorm (never BatchNorm:
  the gradient penalty needs per-sample gradients), SiLU, the time embedding fed into every block (FiLM), features =
  globally pooled activations of every resolution, concatenated and projected to ``feature_dim``.
* :class:`RFFOracle` (``rff-oracle``): no parameters; random Fourier features of an RBF kernel whose width follows
  the noise level, ``h_t = max(sigma_t, h_min)`` (the hand-set noise-adaptive kernel of the CPU study). The linear
  kernel on these features approximates ``exp(-|x - y|^2 / (2 h_t^2))``; it is the sampler's test fixture.

All backbones take ``t`` as ``[N]`` in ``[0, 1]``; ``t=None`` means ``t = 0`` (clean data).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gflowzoo.api import ConfigError, FeatureBackbone, NoiseSchedule

__all__ = ["ConvBackbone", "MLPBackbone", "RFFOracle", "TimeEmbedding", "downsamplings_for"]


def _t_or_zero(x: Tensor, t: Tensor | None) -> Tensor:
    """``t`` as ``[N]`` float on ``x``'s device (``None`` -> zeros; a scalar is broadcast)."""
    if t is None:
        return x.new_zeros(x.shape[0])
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t.reshape(x.shape[0])


class _InputSkip(nn.Module):
    """Concatenates ``scale * x.flatten(1)`` to learned features whose head starts at ``skip_head_gain`` times its
    default init. With an RBF base kernel the kernel then starts as (gain 0: stays) the noise-adaptive RBF on the
    data, the "oracle" of notes/dmmd-findings.md."""

    def __init__(self, d_in: int, scale: float, feature_rms: float = 0.0) -> None:
        super().__init__()
        if scale < 0 or feature_rms < 0:
            raise ConfigError(f"input_skip and skip_feature_rms must be >= 0; got {scale}, {feature_rms}.")
        self.d_in, self.scale, self.feature_rms = int(d_in), float(scale), float(feature_rms)

    def extra_dims(self) -> int:
        return self.d_in if self.scale > 0 else 0

    def zero_head(self, head: nn.Linear, gain: float = 0.0) -> None:
        """Scale the learned head's initial weights by ``gain`` (bias zero). With ``gain = 0`` and an RBF base
        kernel, all learned features are equal, a stationary point where every gradient of the critic objective
        vanishes: the learned part then never trains and the kernel stays the noise-adaptive RBF on the input.
        ``gain > 0`` lets the features train (docs/dmmd-what-we-learned.md measures both)."""
        if self.scale > 0:
            with torch.no_grad():
                head.weight.mul_(float(gain))
                head.bias.zero_()

    def forward(self, x: Tensor, feats: Tensor) -> Tensor:
        if self.scale <= 0:
            return feats
        if self.feature_rms > 0:  # hold the learned part at a fixed per-sample scale (0 stays 0)
            rms = feats.square().mean(dim=1, keepdim=True).add(1e-12).sqrt()
            feats = feats * (self.feature_rms / rms)
        return torch.cat([self.scale * x.reshape(x.shape[0], -1).to(feats.dtype), feats], dim=1)


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of ``1000 t`` (``freqs`` frequencies, geometric from 1 to 1/10000) followed by a
    2-layer SiLU MLP. ``t`` ``[N]`` -> ``[N, dim]``."""

    def __init__(self, dim: int, freqs: int = 32) -> None:
        super().__init__()
        self.freqs = int(freqs)
        self.register_buffer(
            "scales", torch.exp(-math.log(10000.0) * torch.arange(self.freqs) / max(self.freqs - 1, 1)),
            persistent=False,
        )
        self.net = nn.Sequential(nn.Linear(2 * self.freqs, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        arg = 1000.0 * t[:, None] * self.scales[None, :].to(t.dtype)
        return self.net(torch.cat([arg.sin(), arg.cos()], dim=1))


class MLPBackbone(FeatureBackbone):
    """Noise-conditional MLP for 2-D toys: ``[N, *S]`` (flattened) -> ``[N, D]``.

    Each hidden layer adds a projection of the time embedding before its SiLU. With ``fourier_octaves = K > 0``
    the input is expanded to ``[x, sin(pi 2^k x), cos(pi 2^k x)]_{k<K}`` first (the CPU study found this helped the
    toy critic see the mode lattice).

    Args:
        width: hidden width.
        depth: number of hidden layers.
        time_dim: size of the time embedding.
        fourier_octaves: number of Fourier octaves of the input (0: raw input).
        input_skip: if > 0, the output is ``[input_skip * x, learned]`` (``D + d_in`` features) and the learned
            head starts at ``skip_head_gain`` times its default init (0: the learned part stays at zero and does not
            train; see docs/dmmd-what-we-learned.md).
        skip_head_gain: see ``input_skip``.
        skip_feature_rms: if > 0 (with ``input_skip``), the learned features are rescaled per sample to this
            root-mean-square, so their scale cannot grow against a fixed kernel width.
    """

    default_feature_dim = 64

    def __init__(
        self,
        in_shape: tuple[int, ...],
        feature_dim: int,
        width: int = 128,
        depth: int = 3,
        time_dim: int = 64,
        fourier_octaves: int = 0,
        input_skip: float = 0.0,
        skip_head_gain: float = 0.0,
        skip_feature_rms: float = 0.0,
    ) -> None:
        super().__init__(in_shape, feature_dim)
        if width < 1 or depth < 1 or time_dim < 1 or fourier_octaves < 0:
            raise ConfigError("mlp backbone: width, depth and time_dim must be >= 1 and fourier_octaves >= 0.")
        d_in = math.prod(self.in_shape)
        self.fourier_octaves = int(fourier_octaves)
        if self.fourier_octaves:
            self.register_buffer(
                "octaves", math.pi * 2.0 ** torch.arange(self.fourier_octaves, dtype=torch.float32), persistent=False
            )
        d_feat = d_in * (1 + 2 * self.fourier_octaves)
        self.temb = TimeEmbedding(time_dim)
        self.inp = nn.Linear(d_feat, width)
        self.time_proj = nn.ModuleList([nn.Linear(time_dim, width) for _ in range(depth)])
        self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(depth)])
        self.out = nn.Linear(width, self.feature_dim)
        self.skip = _InputSkip(d_in, input_skip, skip_feature_rms)
        self.skip.zero_head(self.out, skip_head_gain)
        self.feature_dim += self.skip.extra_dims()

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """``x`` ``[N, *S]``, ``t`` ``[N]`` -> ``[N, D]``."""
        x0 = x
        h = x.reshape(x.shape[0], -1)
        if self.fourier_octaves:
            arg = h[:, :, None] * self.octaves.to(h.dtype)
            h = torch.cat([h, arg.sin().flatten(1), arg.cos().flatten(1)], dim=1)
        emb = self.temb(_t_or_zero(x, t))
        h = self.inp(h)
        for proj, lin in zip(self.time_proj, self.hidden):
            h = lin(F.silu(h + proj(emb)))
        return self.skip(x0, self.out(F.silu(h)))


def downsamplings_for(size: int) -> int:
    """Number of 2x downsamplings for a ``size`` x ``size`` input: ``max(2, ceil(log2(size)) - 2)``, i.e.
    8 px -> 2, 16 px -> 2, 28/32 px -> 3, 64 px -> 4 (the last map is 2-4 px wide)."""
    return max(2, math.ceil(math.log2(max(int(size), 2))) - 2)


def _groups(channels: int, groups: int) -> int:
    return math.gcd(channels, max(1, groups))


class _Block(nn.Module):
    """Pre-activation residual block: GN -> SiLU -> conv3x3 -> FiLM(t) -> GN -> SiLU -> conv3x3, plus a skip."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int, time_mode: str) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in, groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(c_out, groups), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.time_mode = time_mode
        self.time = nn.Linear(time_dim, 2 * c_out if time_mode == "film" else c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.time_mode == "film":
            scale, shift = self.time(emb)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        else:
            h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(F.silu(h))
        return h + self.skip(x)


class ConvBackbone(FeatureBackbone):
    """Noise-conditional conv feature net for images ``[N, C, H, W]`` -> ``[N, D]``.

    A 3x3 stem, then ``L + 1`` resolution levels separated by ``L`` 2x average-poolings (``L`` from the input size:
    8 px -> 2, 28/32 px -> 3, 64 px -> 4, unless ``downsamplings`` is set). Each level holds ``blocks`` residual
    blocks with ``width * mults[level]`` channels and the time embedding injected by FiLM (``time_mode="film"``,
    scale-and-shift) or added (``"add"``). The features are the global average pools of every level's output
    (multi-scale), concatenated and mapped to ``feature_dim`` by a linear layer.

    Args:
        width: channels of the first level.
        mults: channel multipliers per level (empty: ``[1, 2, 2, ...]``); its length must be ``L + 1`` if given.
        blocks: residual blocks per level.
        downsamplings: ``L`` (0: chosen from the input size).
        groups: GroupNorm groups (reduced to a divisor of the channel count).
        time_dim: size of the time embedding.
        time_mode: ``"film"`` or ``"add"``.
        channels_last: run the convs in channels-last memory format (faster on recent GPUs).
        input_skip: if > 0, the output is ``[input_skip * x.flatten(1), learned]`` (``D + C*H*W`` features) and the
            learned head starts at ``skip_head_gain`` times its default init (see the mlp backbone).
        skip_head_gain: see ``input_skip``.
        skip_feature_rms: if > 0 (with ``input_skip``), the learned features are rescaled per sample to this
            root-mean-square, so their scale cannot grow against a fixed kernel width.
    """

    default_feature_dim = 128

    def __init__(
        self,
        in_shape: tuple[int, ...],
        feature_dim: int,
        width: int = 32,
        mults: list[int] = [],  # noqa: B006 - a default read only, never mutated
        blocks: int = 1,
        downsamplings: int = 0,
        groups: int = 8,
        time_dim: int = 64,
        time_mode: str = "film",
        channels_last: bool = False,
        input_skip: float = 0.0,
        skip_head_gain: float = 0.0,
        skip_feature_rms: float = 0.0,
    ) -> None:
        super().__init__(in_shape, feature_dim)
        if len(self.in_shape) != 3:
            raise ConfigError(f"conv backbone needs image data [C, H, W]; got a sample shape {self.in_shape}.")
        if time_mode not in ("film", "add"):
            raise ConfigError(f"conv backbone time_mode must be 'film' or 'add'; got {time_mode!r}.")
        if width < 1 or blocks < 1 or downsamplings < 0:
            raise ConfigError("conv backbone: width and blocks must be >= 1, downsamplings >= 0.")
        c, h, w = self.in_shape
        n_down = int(downsamplings) or downsamplings_for(min(h, w))
        mults = list(mults) if mults else [1] + [2] * n_down
        if len(mults) != n_down + 1:
            raise ConfigError(f"conv backbone: mults needs {n_down + 1} entries (one per level); got {mults}.")
        self.n_down = n_down
        self.channels_last = bool(channels_last)
        self.temb = TimeEmbedding(time_dim)
        self.stem = nn.Conv2d(c, width, 3, padding=1)
        self.levels = nn.ModuleList()
        c_prev = width
        chans = []
        for m in mults:
            c_out = width * int(m)
            level = nn.ModuleList()
            for _ in range(blocks):
                level.append(_Block(c_prev, c_out, time_dim, groups, time_mode))
                c_prev = c_out
            self.levels.append(level)
            chans.append(c_out)
        self.out_norms = nn.ModuleList([nn.GroupNorm(_groups(ch, groups), ch) for ch in chans])
        self.head = nn.Linear(sum(chans), self.feature_dim)
        self.skip = _InputSkip(c * h * w, input_skip, skip_feature_rms)
        self.skip.zero_head(self.head, skip_head_gain)
        self.feature_dim += self.skip.extra_dims()
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """``x`` ``[N, C, H, W]``, ``t`` ``[N]`` -> ``[N, D]``."""
        x0 = x
        emb = F.silu(self.temb(_t_or_zero(x, t)))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.stem(x)
        pooled = []
        for i, level in enumerate(self.levels):
            if i > 0:
                h = F.avg_pool2d(h, 2, ceil_mode=True)
            for block in level:
                h = block(h, emb)
            pooled.append(F.silu(self.out_norms[i](h)).mean(dim=(2, 3)))
        return self.skip(x0, self.head(torch.cat(pooled, dim=1)))


class RFFOracle(FeatureBackbone):
    """Random Fourier features of a noise-adaptive RBF kernel (no trainable parameters)::

        phi(x, t) = sqrt(2 / D) cos(W x / h_t + b),   W ~ N(0, I) [d, D],  b ~ U[0, 2 pi),  h_t = max(sigma_t, h_min)

    so that ``<phi(x, t), phi(y, t)> ~ exp(-|x - y|^2 / (2 h_t^2))`` (model units). ``W`` and ``b`` are drawn from
    a fixed ``seed`` and kept as buffers. :meth:`width` exposes ``h_t`` so the sampler can use the ``width2`` step
    schedule ``eta_k = eta0 * h_k^2``.

    Args:
        h_min: the smallest kernel width (model units).
        schedule: the noise schedule giving ``sigma_t`` (a registered schedule name or table; the session builds it
            with its registry, see ``component_options``).
        seed: seed of the random features.
    """

    default_feature_dim = 2048
    #: the ``schedule`` option is a component (built by the session: gflowzoo.registry.nested_components)
    component_options: ClassVar[dict[str, str]] = {"schedule": "schedule"}

    def __init__(
        self,
        in_shape: tuple[int, ...],
        feature_dim: int,
        h_min: float = 0.02,
        schedule: str | dict | NoiseSchedule = "vp-cosine",
        seed: int = 0,
    ) -> None:
        super().__init__(in_shape, feature_dim)
        if not h_min > 0:
            raise ConfigError(f"rff-oracle h_min must be positive; got {h_min}.")
        self.h_min = float(h_min)
        if not isinstance(schedule, NoiseSchedule):  # built by hand, not by the session: the global registry's
            from gflowzoo.api import build_component

            schedule = build_component(None, "schedule", schedule)
        self.schedule = schedule
        d = math.prod(self.in_shape)
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("weight", torch.randn(d, self.feature_dim, generator=g))
        self.register_buffer("phase", 2 * math.pi * torch.rand(self.feature_dim, generator=g))

    def width(self, t: Tensor) -> Tensor:
        """The kernel width ``h_t = max(sigma_t, h_min)`` for ``t`` of any shape (model units)."""
        t = torch.as_tensor(t)
        return self.schedule.sigma(t).clamp_min(self.h_min)

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """``x`` ``[N, *S]``, ``t`` ``[N]`` -> ``[N, D]``."""
        h = self.width(_t_or_zero(x, t)).to(x.dtype)
        proj = x.reshape(x.shape[0], -1) @ self.weight.to(x.dtype)
        return math.sqrt(2.0 / self.feature_dim) * torch.cos(proj / h[:, None] + self.phase.to(x.dtype))

    def extra_repr(self) -> str:
        return f"D={self.feature_dim}, h_min={self.h_min}"


def backbone_default_dim(cls: Any) -> int:
    """The feature size a backbone class prefers (its ``default_feature_dim``, else 128)."""
    return int(getattr(cls, "default_feature_dim", 128))
