"""Autoencoders (registry kind ``autoencoder``): the built-in networks, their training recipe, and the cache of
trained ones that latent spaces read (docs/latent.md).

* ``conv``: a convolutional autoencoder for images of 28 to 64 pixels (two stride-2 convolutions, two linear layers,
  SiLU, a ``tanh`` output); ``kl > 0`` makes it variational (a Gaussian posterior and a KL term of that weight).
* ``mlp``: an MLP autoencoder for small inputs (8x8 digits, flattened vectors), with the same ``kl`` option.

A spec is a name or a table: the constructor's options (architecture, loss weights) plus the training recipe
(:data:`RECIPE`: ``steps``, ``batch_size``, ``lr``, ``seed``). A trained autoencoder is cached as
``$GFLOWZOO_CACHE/autoencoders/<name>-<key>.pt`` (default ``~/.cache/gflowzoo/autoencoders``), where ``<key>``
hashes the data set, its shape, the name and every option and recipe value (defaults filled in), so the same spec
finds the same file. The file holds plain data only and loads with ``torch.load(weights_only=True)``::

    {"format": "gflowzoo-autoencoder", "format_version": 1, "name": "conv", "dataset": "mnist", "shape": [1, 28, 28],
     "options": {...}, "recipe": {...}, "key": "3f9c1a2b7d", "latent_shape": [16], "state": <state_dict>,
     "weights_sha256": "...", "test_mse": 0.027, "train_seconds": 241.0, ...}

``weights_sha256`` hashes the weights alone (not the file), so a refit with the same recipe on the CPU gives the
same value; a run records it and refuses an autoencoder with other weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import CheckpointError, ConfigError, UserError
from .interfaces import Autoencoder

__all__ = ["RECIPE", "AutoencoderSpec", "ConvAutoencoder", "MLPAutoencoder", "autoencoder_dir", "fit_autoencoder",
           "load_autoencoder", "resolve_spec", "weights_sha256"]

FORMAT = "gflowzoo-autoencoder"
FORMAT_VERSION = 1

#: The training recipe and its defaults: Adam with learning rate ``lr`` for ``steps`` minibatches of ``batch_size``
#: training images drawn with replacement (seeded by ``seed``). These keys of a spec go to the trainer, the others to
#: the constructor.
RECIPE: dict[str, Any] = {"steps": 3000, "batch_size": 128, "lr": 1e-3, "seed": 0}


# ---------------------------------------------------------------------------------------------------------------
# the built-in networks
# ---------------------------------------------------------------------------------------------------------------


class _Variational(Autoencoder):
    """Shared loss of the built-ins: mean squared error, plus ``code_penalty * mean(code^2)`` (keeps a plain code
    bounded) or, with ``kl > 0``, ``kl *`` the KL divergence of the Gaussian posterior to N(0, I) per code unit
    (a variational autoencoder; :meth:`encode` is then the posterior mean)."""

    kl: float
    code_penalty: float
    latent_dim: int

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(mean, log variance or None)`` of the code of ``x``."""
        h = self.encoder(x)
        if self.kl > 0:
            mean, logvar = h.chunk(2, dim=1)
            return mean, logvar.clamp(-20.0, 10.0)
        return h, None

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.latent_dim,)

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x)[0]

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        mean, logvar = self.posterior(x)
        if logvar is None:
            z = mean
            reg = self.code_penalty * mean.square().mean()
        else:
            eps = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)
            z = mean + eps * (0.5 * logvar).exp()
            reg = self.kl * 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()
        mse = nn.functional.mse_loss(self.decode(z), x)
        return mse + reg, {"mse": float(mse.detach()), "reg": float(reg.detach())}


class ConvAutoencoder(_Variational):
    """Images ``[C, H, W]`` of 28 to 64 pixels (sides divisible by 4): ``C -> width -> 2 width`` channels by two 4x4
    stride-2 convolutions, then ``hidden`` units, then ``latent_dim`` (twice that with ``kl > 0``); the decoder
    mirrors it with transposed convolutions and a ``tanh`` output. SiLU activations."""

    def __init__(self, in_shape: tuple[int, ...], latent_dim: int = 16, width: int = 32, hidden: int = 256,
                 kl: float = 0.0, code_penalty: float = 1e-4) -> None:
        super().__init__(in_shape)
        if len(self.in_shape) != 3 or not all(28 <= s <= 64 and s % 4 == 0 for s in self.in_shape[1:]):
            raise UserError(f"The conv autoencoder takes images of 28 to 64 pixels with sides divisible by 4; this "
                            f"data has shape {list(self.in_shape)} (use latent_space = \"mlp\" for small inputs).")
        if latent_dim < 1 or width < 1 or hidden < 1 or kl < 0 or code_penalty < 0:
            raise ConfigError("conv autoencoder: latent_dim, width and hidden must be >= 1, kl and code_penalty >= 0.")
        c, h, w = self.in_shape
        self.latent_dim, self.kl, self.code_penalty = int(latent_dim), float(kl), float(code_penalty)
        self._grid = (2 * width, h // 4, w // 4)
        flat = math.prod(self._grid)
        out = self.latent_dim * (2 if self.kl > 0 else 1)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1), nn.SiLU(), nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU(), nn.Flatten(),
            nn.Linear(flat, hidden), nn.SiLU(), nn.Linear(hidden, out),
        )
        self.decoder = nn.Sequential(
            nn.Linear(self.latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, flat), nn.SiLU(),
            nn.Unflatten(1, self._grid), nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.SiLU(),
            nn.ConvTranspose2d(width, c, 4, 2, 1), nn.Tanh(),
        )

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)


class MLPAutoencoder(_Variational):
    """Small inputs of any shape, flattened: ``D -> hidden... -> latent_dim`` (twice that with ``kl > 0``) and back,
    SiLU activations; a ``tanh`` output for images (in ``[-1, 1]``), a linear one otherwise."""

    def __init__(self, in_shape: tuple[int, ...], latent_dim: int = 8, hidden: list[int] = (256, 128),  # type: ignore[assignment]
                 kl: float = 0.0, code_penalty: float = 1e-4) -> None:
        super().__init__(in_shape)
        d = math.prod(self.in_shape)
        if d > 4096:
            raise UserError(f"The mlp autoencoder is for small inputs (at most 4,096 values); this data has shape "
                            f"{list(self.in_shape)} (use latent_space = \"conv\").")
        hidden = [int(v) for v in hidden]
        if latent_dim < 1 or any(v < 1 for v in hidden) or kl < 0 or code_penalty < 0:
            raise ConfigError("mlp autoencoder: latent_dim and hidden widths must be >= 1, kl and code_penalty >= 0.")
        self.latent_dim, self.kl, self.code_penalty = int(latent_dim), float(kl), float(code_penalty)
        out = self.latent_dim * (2 if self.kl > 0 else 1)

        def stack(dims: list[int], last: nn.Module | None) -> nn.Sequential:
            layers: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
                layers.append(nn.Linear(a, b))
                if i < len(dims) - 2:
                    layers.append(nn.SiLU())
            if last is not None:
                layers.append(last)
            return nn.Sequential(*layers)

        self.encoder = nn.Sequential(nn.Flatten(), stack([d, *hidden, out], None))
        self.decoder = nn.Sequential(stack([self.latent_dim, *reversed(hidden), d], nn.Tanh() if len(self.in_shape) == 3
                                           else None), nn.Unflatten(1, self.in_shape))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)


# ---------------------------------------------------------------------------------------------------------------
# specs and the cache
# ---------------------------------------------------------------------------------------------------------------


def autoencoder_dir() -> Path:
    """Where trained autoencoders (and the codes of their data) are cached: ``<cache>/autoencoders``."""
    from .paths import cache_root

    return cache_root() / "autoencoders"


@dataclass(frozen=True)
class AutoencoderSpec:
    """A fully resolved autoencoder: registry ``name``, constructor ``options`` and training ``recipe`` (defaults
    filled in), for the data set ``dataset`` of per-sample ``shape``."""

    name: str
    dataset: str
    shape: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """10 hex digits of the SHA-256 of data set, shape, name, options and recipe (the cache file's name)."""
        blob = json.dumps({"dataset": self.dataset, "shape": list(self.shape), "name": self.name,
                           "options": self.options, "recipe": self.recipe}, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def label(self) -> str:
        """``<name>-<key>``: the cache file's stem."""
        return f"{self.name}-{self.key}"

    @property
    def path(self) -> Path:
        """The cache file of this spec."""
        return autoencoder_dir() / f"{self.label}.pt"

    def table(self) -> dict[str, Any]:
        """The spec as a config table (``name``, options and recipe), as ``config.toml`` records it."""
        return {"name": self.name, **self.options, **self.recipe}

    def changed(self) -> dict[str, Any]:
        """The options and recipe values that differ from the defaults (all of them when the autoencoder's defaults
        cannot be read from the loaded plugins)."""
        from .registry import user_options

        try:
            from .plugins import get_registry

            defaults = {k: _plain(p.default) for k, p in user_options(get_registry().load("autoencoder",
                                                                                          self.name)).items()}
        except Exception:  # noqa: BLE001 - a name the global registry lacks: list everything
            defaults = {}
        out = {k: v for k, v in self.options.items() if k not in defaults or defaults[k] != v}
        out.update({k: v for k, v in self.recipe.items() if RECIPE[k] != v})
        return out

    def fit_command(self, data_root: str | None = None) -> str:
        """The command line that trains this autoencoder."""
        sets = "".join(f" --set {k}={_toml_value(v)}" for k, v in self.changed().items())
        root = f" --data-root {data_root}" if data_root else ""
        return f"gflowzoo autoencoder fit {self.name} --dataset {self.dataset}{root}{sets}"


def _toml_value(v: Any) -> str:
    from .config import _toml_scalar

    text = _toml_scalar(v)
    return f"'{text}'" if any(ch in text for ch in " [\"") else text


def resolve_spec(registry: Any, spec: str | Mapping[str, Any], dataset: str, shape: tuple[int, ...]) -> AutoencoderSpec:
    """The :class:`AutoencoderSpec` of a config value (a name or a table) for data ``dataset`` of ``shape``: the
    recipe keys split off and checked, the options checked against the constructor, defaults filled in. Unknown
    names and options are :class:`ConfigError`\\ s naming them."""
    from .registry import check_options, split_spec, user_options

    name, options = split_spec(spec)
    obj = registry.load("autoencoder", name)
    recipe = dict(RECIPE)
    for key in list(options):
        if key in RECIPE:
            recipe[key] = options.pop(key)
    for key, default in RECIPE.items():
        value = recipe[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(default, int)
                                                                               and not isinstance(value, int)):
            raise ConfigError(f"autoencoder {name!r}: {key} must be {'an integer' if isinstance(default, int) else 'a number'}; "
                              f"got {value!r}.")
        recipe[key] = type(default)(value)
    if recipe["steps"] < 1 or recipe["batch_size"] < 1 or not recipe["lr"] > 0:
        raise ConfigError(f"autoencoder {name!r}: steps and batch_size must be >= 1 and lr > 0.")
    try:
        options = check_options(obj, options, f"autoencoder {name!r}")
    except ConfigError as exc:
        raise ConfigError(f"{exc} Training options: {', '.join(RECIPE)}.") from None
    full = {k: _plain(p.default) for k, p in user_options(obj).items()}
    full.update({k: _plain(v) for k, v in options.items()})
    return AutoencoderSpec(name, dataset, tuple(int(s) for s in shape), full, recipe)


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def build_network(registry: Any, spec: AutoencoderSpec) -> Autoencoder:
    """The untrained network of ``spec`` (its constructor's one-sentence error when it cannot take the shape)."""
    obj = registry.load("autoencoder", spec.name)
    net = obj(spec.shape, **spec.options)
    if not isinstance(net, Autoencoder):
        raise UserError(f"autoencoder {spec.name!r} built a {type(net).__name__}, not a gflowzoo Autoencoder.")
    return net


def weights_sha256(state: Mapping[str, Tensor]) -> str:
    """SHA-256 (hex) of a state dict's tensors, in key order (independent of the file around them)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(list(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------------


def load_autoencoder(path: str | Path, registry: Any, expect: AutoencoderSpec | None = None) -> tuple[Autoencoder, dict[str, Any]]:
    """A cached autoencoder (``weights_only=True``) in eval mode and the file's payload. A missing, unreadable or
    foreign file, or (with ``expect``) one trained on another data set, image size or recipe, is a
    :class:`CheckpointError` of one sentence naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Autoencoder file not found: {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        fit = expect.fit_command() if expect is not None else "gflowzoo autoencoder fit"
        raise CheckpointError(f"{path} is not a readable autoencoder file ({type(exc).__name__}: truncated, damaged "
                              f"or holding more than plain data); delete it and train it again with `{fit}`.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gflowzoo autoencoder file (format {FORMAT!r}).")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer gflowzoo (format version {payload['format_version']}).")
    if expect is not None:
        if payload.get("dataset") != expect.dataset or list(payload.get("shape", [])) != list(expect.shape):
            raise CheckpointError(
                f"{path} was trained on {payload.get('dataset')!r} images of shape {payload.get('shape')}, not on "
                f"{expect.dataset!r} of shape {list(expect.shape)}; train one with `{expect.fit_command()}`.")
        if payload.get("name") != expect.name or payload.get("options") != expect.options \
                or payload.get("recipe") != expect.recipe:
            raise CheckpointError(f"{path} holds another autoencoder than {expect.label} (its name, options or "
                                  f"recipe differ); train it with `{expect.fit_command()}`.")
    try:
        spec = AutoencoderSpec(payload["name"], payload["dataset"], tuple(payload["shape"]),
                               dict(payload["options"]), dict(payload["recipe"]))
        net = build_network(registry, spec)
        net.load_state_dict(payload["state"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path} is a damaged autoencoder file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160] if str(exc) else ''}).") from None
    return net.eval(), payload


# ---------------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """The outcome of :func:`fit_autoencoder`: the cached file, the test split's mean squared reconstruction error
    (model units), the training time, and the reconstruction grid (``None`` when not written)."""

    path: Path
    test_mse: float
    seconds: float
    grid: Path | None


def _reconstruct(net: Autoencoder, x: Tensor, device: Any, batch: int = 1000) -> Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            out.append(net.decode(net.encode(x[start:start + batch].to(device))).float().cpu())
    return torch.cat(out)


def _codes(net: Autoencoder, ds: Any, device: Any) -> Tensor:
    with torch.no_grad():
        return torch.cat([net.encode(x.to(device)).float().cpu() for x in ds.batches(1000)])


def fit_autoencoder(registry: Any, spec: AutoencoderSpec, *, data_root: str | None = None, device: str = "cpu",
                    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
                    grid: bool = True) -> FitResult:
    """Train ``spec`` on its data set's training split, measure the reconstruction error on the test split, write
    the cache file (atomically) and, with ``grid``, ``<name>-<key>-recon.png`` beside it (32 test images spread over
    the split, then their reconstructions). ``on_step(step, steps, logs)`` follows the training. Deterministic for a seed on the CPU."""
    import io

    from . import __version__
    from .data import open_dataset
    from .runs import atomic_write_bytes

    train = open_dataset(spec.dataset, "train", data_root, registry)
    test = open_dataset(spec.dataset, "test", data_root, registry)
    if tuple(train.shape) != tuple(spec.shape):
        raise UserError(f"{spec.dataset} has shape {list(train.shape)}, not {list(spec.shape)}.")
    r = spec.recipe
    torch.manual_seed(int(r["seed"]))
    gen = torch.Generator().manual_seed(int(r["seed"]))
    net = build_network(registry, spec).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=float(r["lr"]))
    steps, bs = int(r["steps"]), int(r["batch_size"])
    t0 = time.perf_counter()
    net.train()
    for step in range(steps):
        x = train.sample(bs, gen).to(device)
        loss, logs = net.loss(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not math.isfinite(float(loss.detach())):
            raise UserError(f"Training autoencoder {spec.label} diverged at step {step + 1} (loss "
                            f"{float(loss.detach())}); try a smaller lr.")
        if on_step is not None:
            on_step(step + 1, steps, {"loss": float(loss.detach()), **logs})
    net.eval()
    seconds = time.perf_counter() - t0
    x_test = torch.cat(list(test.batches(1000)))
    recon = _reconstruct(net, x_test, device)
    test_mse = float((recon - x_test).square().mean())
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    codes = _codes(net, train, device)  # centring and scale of the codes: what a latent space needs to decode
    flat = codes.reshape(len(codes), -1)
    mean = flat.mean(0)
    scale = float((flat - mean).square().mean().sqrt().clamp_min(1e-8))
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": spec.name, "dataset": spec.dataset,
        "shape": list(spec.shape), "options": spec.options, "recipe": spec.recipe, "key": spec.key,
        "latent_shape": list(net.latent_shape), "state": state, "weights_sha256": weights_sha256(state),
        "code_mean": mean.reshape(codes.shape[1:]), "code_scale": scale,
        "test_mse": test_mse, "train_seconds": float(seconds), "train_size": len(train), "test_size": len(test),
        "gflowzoo_version": __version__,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(spec.path, buf.getvalue())
    grid_path = None
    if grid and len(spec.shape) == 3:
        from .viz import samples_picture

        pick = torch.linspace(0, len(x_test) - 1, min(32, len(x_test))).long()  # spread: splits may be sorted
        pair = torch.cat([x_test[pick], recon[pick]])
        fig_bytes = samples_picture(pair, test, title=f"{spec.label}: test images, then their reconstructions")
        grid_path = spec.path.with_name(f"{spec.label}-recon.png")
        atomic_write_bytes(grid_path, fig_bytes)
    return FitResult(spec.path, test_mse, seconds, grid_path)

