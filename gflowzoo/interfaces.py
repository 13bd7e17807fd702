"""Abstract interfaces of gflowzoo's components.

Shapes use ``N`` for a batch, ``D`` for a feature dimension and ``*S`` for the per-sample data shape (``[C, H, W]`` for
images in ``[-1, 1]``, ``[2]`` for 2-D toys). Noise levels ``t`` are continuous in ``[0, 1]`` (``0`` = clean data).

Sign convention, used everywhere: for a *target* P (data) and a *source* Q (particles, noisy data or generator
samples), a witness ``f_{P,Q}(z)`` is large where P has more mass than Q. A gradient flow moves particles of Q
**up** the witness: ``z <- z + eta * grad f_{P,Q}(z)``.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .errors import UserError


class FeatureBackbone(nn.Module, abc.ABC):
    """A noise-conditional feature map ``phi(x, t) -> [N, D]``: the DMMD discriminator, or a GAN critic body.

    Constructors take the data shape first and the feature size second; every other argument must have a default
    (these are the user's options)::

        Backbone(in_shape: tuple[int, ...], feature_dim: int, **options)

    Backbones that ignore ``t`` (plain critics) still accept it.

    Set the class attribute ``channels_last_ok = True`` when ``forward`` accepts image batches in the channels-last
    memory format (no ``.view`` on them): methods may then keep their image networks in that format.
    """

    #: ``forward`` works on channels-last image batches (see the class docstring).
    channels_last_ok: ClassVar[bool] = False

    def __init__(self, in_shape: tuple[int, ...], feature_dim: int) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.feature_dim = int(feature_dim)

    @abc.abstractmethod
    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        """Features of ``x`` (``[N, *S]``) at noise levels ``t`` (``[N]`` in ``[0, 1]``, or ``None`` for
        unconditional use). Returns ``[N, D]``."""


class Kernel(abc.ABC):
    """A positive-definite kernel on feature vectors.

    ``is_linear`` marks ``k(a, b) = <a, b>``: estimators then use mean embeddings and never build a Gram matrix.
    """

    is_linear: ClassVar[bool] = False

    @abc.abstractmethod
    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        """The Gram matrix ``K[i, j] = k(x_i, y_j)`` for ``x`` ``[N, D]`` and ``y`` ``[M, D]``; returns ``[N, M]``."""

    def diag(self, x: Tensor) -> Tensor:
        """``k(x_i, x_i)`` for ``x`` ``[N, D]``; returns ``[N]``. Override when it has a closed form."""
        return torch.stack([self.gram(xi[None], xi[None])[0, 0] for xi in x]) if len(x) else x.new_zeros(0)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        return self.gram(x, y)


class Divergence(abc.ABC):
    """A discrepancy between a target P and a source Q, estimated from features, with a witness function.

    ``fx`` (``[N, D]``) are features of samples of the target P; ``fy`` (``[M, D]``) of the source Q.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    @abc.abstractmethod
    def estimate(self, fx: Tensor, fy: Tensor) -> Tensor:
        """A scalar estimate of the divergence between P and Q (differentiable in ``fx``, ``fy``)."""

    @abc.abstractmethod
    def witness(self, fz: Tensor, fx: Tensor, fy: Tensor) -> Tensor:
        """The witness ``f_{P,Q}`` evaluated at ``fz`` (``[K, D]``), returns ``[K]``. Moving Q-particles along
        ``+grad_z f`` decreases the divergence."""

    def with_kernel(self, kernel: Kernel) -> Divergence:
        """A copy of this divergence (same options) on ``kernel``: how a method puts its own kernel (its ``kernel``
        field, or one noise level's kernel) under the divergence the session built from its ``divergence`` field.
        The default is a shallow copy with ``kernel`` replaced; override it when the divergence keeps anything
        computed with its kernel (a cache)."""
        other = copy.copy(self)
        other.kernel = kernel
        return other


class NoiseSchedule(abc.ABC):
    """A forward diffusion path ``x_t = alpha_t * x_0 + sigma_t * eps`` with ``eps ~ N(0, I)``, ``t in [0, 1]``.

    Subclasses implement :meth:`alpha` and :meth:`sigma`; the rest follows. ``t_min`` is the smallest level used
    for training and sampling (``t = 0`` can be degenerate for some schedules).
    """

    t_min: float = 1e-3

    @abc.abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale ``alpha_t`` for ``t`` of any shape (same shape out)."""

    @abc.abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale ``sigma_t`` for ``t`` of any shape (same shape out)."""

    def add_noise(
        self, x0: Tensor, t: Tensor, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """``alpha_t * x0 + sigma_t * noise`` with ``x0`` ``[N, *S]`` and ``t`` ``[N]`` (or a scalar)."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
        if t.ndim == 0:
            t = t.expand(x0.shape[0])
        view = (-1,) + (1,) * (x0.ndim - 1)
        return self.alpha(t).view(view) * x0 + self.sigma(t).view(view) * noise

    def grid(self, n_levels: int) -> Tensor:
        """A decreasing grid of ``n_levels`` noise levels from 1 to ``t_min`` (``[T]``), used for sampling."""
        if n_levels < 1:
            raise ValueError("n_levels must be >= 1")
        if n_levels == 1:
            return torch.tensor([self.t_min])
        return torch.linspace(1.0, self.t_min, n_levels)

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio ``alpha_t^2 / sigma_t^2``."""
        return self.alpha(t) ** 2 / self.sigma(t).clamp_min(1e-12) ** 2


#: ``velocity(z) -> [N, *S]``: the direction particles move in, evaluated at positions ``z`` ``[N, *S]``.
Velocity = Callable[[Tensor], Tensor]


class FlowIntegrator(abc.ABC):
    """Moves particles along a velocity field (for gradient flows, the gradient of a witness)."""

    @abc.abstractmethod
    def step(
        self,
        z: Tensor,
        velocity: Velocity,
        step_size: float | Tensor,
        scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One step from ``z`` (``[N, *S]``). ``step_size`` is a float or a per-particle ``[N]`` tensor.
        ``scale`` is the current noise scale of the path (``sigma_t`` for DMMD, 1 otherwise); integrators that
        inject noise size it relative to ``scale``."""

    def run(
        self,
        z: Tensor,
        velocity: Velocity,
        n_steps: int,
        step_size: float | Tensor,
        scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``n_steps`` steps of :meth:`step` with one velocity field."""
        for _ in range(n_steps):
            z = self.step(z, velocity, step_size, scale=scale, generator=generator)
        return z


class Dataset(abc.ABC):
    """A finite, indexable data set in model units (images ``[C, H, W]`` in ``[-1, 1]``, points of unit-ish scale).

    A data set plugin registers a factory ``f(root, split)`` (``f(root, split, arg)`` for names ending in ``:``) that
    returns an instance. :class:`gflowzoo.data.ArrayImages` and :class:`gflowzoo.data.Points` implement it for
    ``uint8`` image arrays and 2-D points.
    """

    kind: str = "image"  # "image" or "points"
    name: str = ""
    split: str = "train"

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape ``*S``."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def get(self, index: Tensor) -> Tensor:
        """Samples at ``index`` (``[n]`` long tensor) as float32 ``[n, *S]`` in model units."""

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` samples drawn uniformly with replacement using ``generator``."""
        idx = torch.randint(len(self), (n,), generator=generator)
        return self.get(idx)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[Tensor]:
        """The data in order, in batches (for statistics over the whole set)."""
        total = len(self) if limit is None else min(limit, len(self))
        for start in range(0, total, batch_size):
            yield self.get(torch.arange(start, min(start + batch_size, total)))

    def to_unit(self, x: Tensor) -> Tensor:
        """Model units -> display units (images: ``[0, 1]``; points: raw coordinates)."""
        return x

    def info(self) -> dict[str, Any]:
        """Facts about the data set that metrics may use (e.g. mode centres of a Gaussian mixture)."""
        return {}


class Metric(abc.ABC):
    """A sample-quality metric (registry kind ``metric``).

    Options are the constructor's keyword arguments (with defaults). :meth:`compute` reads the generated samples,
    the reference data and, for image metrics, features from a :class:`gflowzoo.metrics.base.EvalContext` and
    returns named plain floats (``{"kid": ..., "kid_std": ...}``).

    Class attributes:
        data_kinds: the data kinds it applies to (``"image"``, ``"points"``).
        needs_features: whether it reads features of an image feature extractor (FID, KID, ...).
        needs_logits: whether it reads the extractor's class logits (Inception Score).
        lower_is_better: for each key :meth:`compute` returns, whether smaller values are better (tables mark the
            direction; keys absent here are informational, e.g. a standard deviation).
        max_samples: at most how many generated samples (in data space, ``ctx.samples``) a metric that does not
            read features uses, the first ones; ``None``: all of them. An image evaluation whose other metrics read
            features only then keeps just that many images in memory instead of all ``n``.
    """

    data_kinds: ClassVar[tuple[str, ...]] = ("image", "points")
    needs_features: ClassVar[bool] = False
    needs_logits: ClassVar[bool] = False
    lower_is_better: ClassVar[dict[str, bool]] = {}
    max_samples: int | None = None

    def check(self, kind: str, info: dict[str, Any]) -> None:
        """Raise a :class:`UserError` when the metric cannot be computed on data of ``kind`` with ``info``
        (:meth:`Dataset.info`). Called before any sampling, so a bad choice fails at once."""
        if kind not in self.data_kinds:
            raise UserError(
                f"Metric {type(self).__name__} applies to {' or '.join(self.data_kinds)} data, not {kind} data."
            )

    @abc.abstractmethod
    def compute(self, ctx: Any) -> dict[str, float]:
        """Named scalar results (plain floats) for the samples held by ``ctx``, a
        :class:`gflowzoo.metrics.base.EvalContext` (``gflowzoo.api.EvalContext``)."""


class FeatureExtractor(abc.ABC):
    """A named image feature network run through torch-fidelity (registry kind ``feature-extractor``).

    Image metrics (FID, KID, precision/recall, IS) read its features: the network takes ``uint8`` images
    ``[N, 3, H, W]`` (grey images are replicated to three channels) and yields ``[N, D]`` features at
    ``feature_layer`` and, optionally, ``[N, K]`` class logits at ``logits_layer``.

    Attributes:
        name: the gflowzoo registry name.
        fidelity_name: the name it has in torch-fidelity's feature-extractor registry.
        feature_layer: the layer FID, KID and precision/recall use (``[N, D]`` features).
        logits_layer: the layer of class logits for the Inception Score, or ``None``.
    """

    name: ClassVar[str] = ""
    fidelity_name: str = ""
    feature_layer: str = ""
    logits_layer: str | None = None

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise a :class:`UserError` when images of ``shape`` (``[C, H, W]``) cannot go through this network."""
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise UserError(f"{self.name} takes grey or RGB images [C, H, W]; got data of shape {list(shape)}.")

    @abc.abstractmethod
    def resolve_weights(self, *, fit_missing: bool = False, data_root: str | None = None, device: str = "cpu",
                        say: Callable[[str], None] | None = None) -> Path:
        """The weights file to use. Raises :class:`UserError` with instructions when there is none. ``fit_missing``
        allows extractors that gflowzoo trains itself to train one now (``say`` reports it)."""

    def fidelity_class(self) -> type | None:
        """The ``torch_fidelity.FeatureExtractorBase`` subclass to register under :attr:`fidelity_name`, or
        ``None`` when torch-fidelity provides it."""
        return None

    def fidelity_kwargs(self, weights: Path) -> dict[str, Any]:
        """Keyword arguments for torch-fidelity's extractor constructor."""
        return {"feature_extractor_weights_path": str(weights)}


class Method(abc.ABC):
    """A generative-modelling recipe: trains on a data set and draws samples.

    Subclasses set ``Config`` (a dataclass whose fields are the method's options; component fields use
    :func:`gflowzoo.config.component`) and implement :meth:`train_step`, :meth:`sample`, :meth:`state_dict` and
    :meth:`load_state_dict`. The training loop, checkpoints, logging and resume are the core's job
    (:mod:`gflowzoo.trainer`); a method only needs to make one step deterministic given the ``generator``.

    ``data`` is a :class:`gflowzoo.data.DataHandle`: ``data.shape`` and ``data.kind`` are always known;
    ``data.train`` loads the training split on first use (it raises a clear error when the data is not there).
    """

    Config: ClassVar[type]
    #: False for methods with nothing to train (for example a fixed-kernel flow).
    trainable: ClassVar[bool] = True

    def __init__(self, config: Any, data: Any, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.data = data
        self.device = torch.device(device)

    @classmethod
    def preset(cls, dataset: str, variant: str) -> dict[str, Any]:
        """Config overrides for a data set. ``variant`` is ``"paper"`` (paper-scale, for a GPU) or
        ``"cpu-quick"`` (minutes on a CPU). Return ``{}`` where the defaults fit."""
        return {}

    @abc.abstractmethod
    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """One optimisation step. Draw all randomness from ``generator`` (a CPU generator whose state is saved in
        checkpoints). Returns scalars to log (at least ``loss``)."""

    def finalize(self, generator: torch.Generator) -> None:
        """Called once after training, before the final checkpoint (for example to precompute statistics that
        sampling needs). Must not change the parameters being trained."""

    @abc.abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """Draw ``n`` samples, returned on the CPU as ``[n, *S]`` in model units."""

    def sampling_info(self) -> dict[str, Any]:
        """Facts about the sampler to report, e.g. ``{"nfe": 250, "particles": 512}``."""
        return {}

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training bit-for-bit: tensors, nested dicts/lists of tensors and plain
        Python scalars/strings only (checkpoints load with ``weights_only=True``)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""


class WidthAwareKernel(abc.ABC):
    """A kernel family with a free length scale, for methods that set the width themselves (DMMD's
    noise-adaptive width ``h(t)``). A kernel opts in by subclassing this as well as :class:`Kernel` (or by
    registering with it: ``WidthAwareKernel.register(MyKernel)``) and implementing :meth:`at_width`.

    A kernel without it is used with its own, fixed parameters by such methods.
    """

    @abc.abstractmethod
    def at_width(self, h: Tensor) -> Kernel:
        """This kernel with its length scale set to ``h`` (a scalar tensor, feature units, possibly carrying
        gradients that must flow through the Gram matrix). The kernel's own width options are *relative* to
        ``h``: the built-in ``rbf`` with ``sigmas=[1.0]`` becomes ``exp(-|a - b|^2 / (2 h^2))``."""


class CriticObjective(abc.ABC):
    """A divergence with a variational form scored on a learned critic's values, for methods that train the
    critic themselves (``dkale``). :class:`gflowzoo.divergences.KALE` is one."""

    @abc.abstractmethod
    def critic_objective(self, hx: Tensor, hy: Tensor) -> Tensor:
        """The objective (to maximise) of critic values at target points ``hx`` (``[..., n]``) and at source
        points ``hy`` (``[..., m]``), reduced over the last axis; returns ``[...]``."""


class Autoencoder(nn.Module, abc.ABC):
    """An encoder/decoder pair that maps data ``[N, *S]`` (model units) to codes ``[N, *latent_shape]`` and back
    (registry kind ``autoencoder``): the latent space any method can be trained in (``latent_space = NAME``, see
    docs/latent.md).

    Constructors take the data shape first; every other argument must have a default (these are the user's options
    and, with the training recipe, what the cache key hashes)::

        Autoencoder(in_shape: tuple[int, ...], **options)

    A constructor raises :class:`UserError` (one sentence) when it cannot take data of ``in_shape``. gflowzoo trains
    it (``gflowzoo autoencoder fit``) by minimising :meth:`loss`; codes are :meth:`encode` of the data (for a
    variational autoencoder, the posterior mean), and samples are :meth:`decode` of generated codes.
    """

    def __init__(self, in_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)

    @property
    @abc.abstractmethod
    def latent_shape(self) -> tuple[int, ...]:
        """Per-sample shape of a code (``(D,)`` for the built-ins)."""

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """Codes ``[N, *latent_shape]`` of data ``x`` ``[N, *S]`` (deterministic: the mean of a variational one)."""

    @abc.abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Data ``[N, *S]`` in model units from codes ``z`` ``[N, *latent_shape]``."""

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """The training objective on a batch ``x`` ``[N, *S]``: ``(scalar loss, scalars to report)``. Default: the
        mean squared reconstruction error. Draw any randomness from ``generator`` (a CPU generator)."""
        mse = torch.nn.functional.mse_loss(self.decode(self.encode(x)), x)
        return mse, {"mse": float(mse.detach())}
