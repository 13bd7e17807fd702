"""Latent spaces for every method: ``latent_space = NAME`` (or a table) trains any method on the codes of a cached
autoencoder and decodes its samples (docs/latent.md).

:func:`gflowzoo.session.build_method` calls :func:`build_latent_method` when a run's ``latent_space`` is set:

1. the autoencoder of the spec (:func:`gflowzoo.autoencoders.resolve_spec`) is looked up in the cache by its key;
   ``gflowzoo train`` fits a missing one (announcing it), ``sample``/``evaluate`` refuse with the command that
   recreates it; one whose weights differ from those the run recorded is refused too;
2. the method is built, unchanged, on a :class:`LatentData` handle: points of the code shape (``kind = "points"``)
   whose splits are the codes of the data set's splits, encoded once and cached next to the autoencoder
   (``<name>-<key>-codes.pt``), centred and divided by one scale so that a coordinate has unit variance on average
   (an isotropic scaling: distances keep their proportions);
3. a :class:`LatentMethod` wraps it: training, ``finalize`` and the state go to the method; :meth:`LatentMethod.sample`
   decodes; ``data`` is the image data, so grids, ``sample``, ``evaluate`` and ``compare`` see images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import LATENT_RECORD_KEYS
from .data.base import Points
from .errors import CheckpointError, ConfigError, UserError

__all__ = ["LatentCodes", "LatentData", "LatentMethod", "RECORD_KEYS", "build_latent_method", "check_latent_value",
           "encode_codes"]

#: Keys of the ``latent_space`` table that gflowzoo writes into a run's ``config.toml`` (which autoencoder the run
#: used): not options. A config that holds them (a saved run's) must match the autoencoder found.
RECORD_KEYS = LATENT_RECORD_KEYS


def check_latent_value(registry: Any, value: Any) -> dict[str, Any] | None:
    """A ``latent_space`` config value normalised to a table (``None`` for absent or ``"none"``), its name and
    options checked (a :class:`ConfigError` of one sentence otherwise); the data shape is not needed."""
    from .autoencoders import RECIPE
    from .registry import check_options

    if value is None or value == "none" or value == {}:
        return None
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"latent_space must be an autoencoder name or a table with 'name'; got {value!r}.")
    if not isinstance(value.get("name"), str):
        raise ConfigError("latent_space needs an autoencoder name: --set latent_space=NAME (see `gflowzoo list "
                          "autoencoder`), then options as latent_space.KEY=VALUE.")
    if value["name"] == "none":
        return None
    try:
        obj = registry.load("autoencoder", value["name"])
    except UserError as exc:
        raise ConfigError(f"latent_space: {exc}") from None
    options = {k: v for k, v in value.items() if k != "name" and k not in RECIPE and k not in RECORD_KEYS}
    try:
        check_options(obj, options, f"latent_space ({value['name']})")
    except ConfigError as exc:
        raise ConfigError(f"{exc} Training options: {', '.join(RECIPE)}.") from None
    return dict(value)


class LatentCodes(Points):
    """Codes of one split, served centred and divided by ``scale`` (model units of the latent method);
    :meth:`to_codes` maps back to the autoencoder's codes."""

    def __init__(self, codes: Tensor, mean: Tensor, scale: float, name: str, split: str) -> None:
        self.mean = mean.float()
        super().__init__(codes.float() - self.mean, name, split, scale)

    def to_codes(self, x: Tensor) -> Tensor:
        """Latent-method units -> autoencoder codes."""
        return x * self.scale + self.mean.to(x.device)

    def to_unit(self, x: Tensor) -> Tensor:
        return self.to_codes(x)


def encode_codes(net: Any, payload: dict[str, Any], image_data: Any, device: Any,
                 say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The codes of the train and test splits of ``image_data`` under the autoencoder ``net`` (file payload
    ``payload``), with their centring ``mean`` and ``scale``: read from the codes cache when it belongs to these
    weights, else computed (in batches on ``device``) and written there."""
    from .autoencoders import autoencoder_dir
    from .runs import atomic_write_bytes

    label = f"{payload['name']}-{payload['key']}"
    path = autoencoder_dir() / f"{label}-codes.pt"
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(cached, dict) and cached.get("weights_sha256") == payload["weights_sha256"]:
                return cached
        except Exception:  # noqa: BLE001 - a damaged codes file is recomputed
            pass
    if say:
        say(f"encoding {image_data.name} with autoencoder {label} (once; cached in {path})")
    out: dict[str, Any] = {"weights_sha256": payload["weights_sha256"]}
    net = net.to(device)
    with torch.no_grad():
        for split in ("train", "test"):
            ds = image_data.split(split)
            out[split] = torch.cat([net.encode(x.to(device)).float().cpu() for x in ds.batches(1000)])
    out["mean"], out["scale"] = payload["code_mean"].float(), float(payload["code_scale"])  # the fit's, of train
    import io

    buf = io.BytesIO()
    torch.save(out, buf)
    atomic_write_bytes(path, buf.getvalue())
    return out


class LatentData:
    """The :class:`~gflowzoo.data.DataHandle` a method sees in a latent space: points of the code shape, the splits
    being the (cached) codes of the image data's splits. Shape and kind are known without the data."""

    kind = "points"

    def __init__(self, image_data: Any, net: Any, payload: dict[str, Any], device: Any,
                 say: Callable[[str], None] | None = None) -> None:
        self.image_data, self.net, self.payload, self.device, self.say = image_data, net, payload, device, say
        self.name = f"latent:{image_data.name}"
        self.root = getattr(image_data, "root", None)
        self.shape = tuple(int(s) for s in net.latent_shape)
        self._splits: dict[str, LatentCodes] = {}

    def split(self, split: str) -> LatentCodes:
        if split not in self._splits:
            if split not in ("train", "test"):
                raise UserError(f"Latent codes exist for the splits 'train' and 'test', not {split!r}.")
            codes = encode_codes(self.net, self.payload, self.image_data, self.device, self.say)
            for s in ("train", "test"):
                self._splits[s] = LatentCodes(codes[s], codes["mean"], codes["scale"], self.name, s)
        return self._splits[split]

    @property
    def train(self) -> LatentCodes:
        return self.split("train")

    @property
    def test(self) -> LatentCodes:
        return self.split("test")

    def to_unit(self, x: Tensor) -> Tensor:
        return self.train.to_unit(x)


class LatentMethod:
    """A method trained on codes, seen from outside as a method on images: it delegates training, ``finalize`` and
    its state to ``inner`` and decodes what ``inner`` samples. ``data`` is the image data; ``latent_data`` the
    :class:`LatentData` the inner method sees. Other attributes are the inner method's."""

    def __init__(self, inner: Any, net: Any, payload: dict[str, Any], image_data: Any, latent_data: LatentData,
                 device: Any) -> None:
        self.inner, self.net, self.payload = inner, net.to(device).eval(), payload
        self.data, self.latent_data, self.device = image_data, latent_data, torch.device(device)
        self.label = f"{payload['name']}-{payload['key']}"
        self._mean = payload["code_mean"].float()
        self._scale = float(payload["code_scale"])

    def __getattr__(self, name: str) -> Any:  # called only for names this object lacks
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def trainable(self) -> bool:
        return getattr(self.inner, "trainable", True)

    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        return self.inner.train_step(step, generator)

    def finalize(self, generator: torch.Generator) -> None:
        self.inner.finalize(generator)

    @torch.no_grad()
    def decode(self, x: Tensor, chunk: int = 1000) -> Tensor:
        """Latent-method samples ``[N, *latent]`` -> images ``[N, *S]`` on the CPU, clamped to ``[-1, 1]``."""
        out = []
        for start in range(0, len(x), chunk):
            z = x[start:start + chunk].to(self.device).float() * self._scale + self._mean.to(self.device)
            out.append(self.net.decode(z).float().clamp(-1.0, 1.0).cpu())
        return torch.cat(out) if out else torch.zeros(0, *self.data.shape)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` decoded samples ``[n, *S]`` (CPU, model units)."""
        return self.decode(self.inner.sample(n, generator))

    def sampling_info(self) -> dict[str, Any]:
        info = dict(getattr(self.inner, "sampling_info", lambda: {})() or {})
        info["autoencoder"] = self.label
        return info

    def state_dict(self) -> dict[str, Any]:
        """The inner method's state and which autoencoder it was trained with."""
        return {"latent_method": self.inner.state_dict(),
                "autoencoder": {"label": self.label, "weights_sha256": self.payload["weights_sha256"]}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "latent_method" not in state:
            raise CheckpointError("This checkpoint was not written in a latent space (no latent_space when it was "
                                  "trained); load it without latent_space.")
        ae = state.get("autoencoder", {})
        if ae.get("weights_sha256") not in (None, self.payload["weights_sha256"]):
            raise CheckpointError(f"The checkpoint was trained with autoencoder {ae.get('label')} of other weights "
                                  f"than the cached {self.label}; use the autoencoder file the run was trained with.")
        self.inner.load_state_dict(state["latent_method"])


def _fit_missing(registry: Any, spec: Any, data_root: Any, device: str, say: Callable[[str], None]) -> None:
    from .autoencoders import fit_autoencoder

    say(f"autoencoder {spec.label} is not trained yet: training it on {spec.dataset} now ({spec.recipe['steps']} "
        f"steps; once, cached in {spec.path.parent})")
    every = max(1, spec.recipe["steps"] // 10)

    def on_step(step: int, steps: int, logs: dict[str, float]) -> None:
        if step % every == 0 or step == steps:
            say(f"  autoencoder step {step}/{steps}: loss {logs['loss']:.4f}")

    res = fit_autoencoder(registry, spec, data_root=data_root, device=device, on_step=on_step)
    say(f"autoencoder {spec.label}: test reconstruction error (MSE) {res.test_mse:.4f} ({res.seconds:.0f}s); "
        f"reconstructions: {res.grid}")


def build_latent_method(registry: Any, spec: Any, device: str, data: Any, build_inner: Callable[[Any], Any], *,
                        fit_missing: bool = False, say: Callable[[str], None] | None = None) -> LatentMethod:
    """The method of ``spec`` trained in the latent space ``spec.latent_space`` (see the module docstring).
    ``data`` is the image :class:`~gflowzoo.data.DataHandle`; ``build_inner(latent_data)`` builds the method on
    the codes. ``fit_missing``: train a missing autoencoder now (``gflowzoo train``); otherwise refuse with the
    command that trains it. Records the autoencoder in ``spec.latent_space`` (``autoencoder``,
    ``weights_sha256``), which ``config.toml`` keeps."""
    from . import distributed as dist
    from .autoencoders import build_network, load_autoencoder, resolve_spec

    say = say or (lambda s: None)
    table = dict(spec.latent_space)
    if data.kind != "image":
        raise UserError(f"latent_space applies to image data sets; {spec.dataset} holds {data.kind}.")
    opts = {k: v for k, v in table.items() if k not in RECORD_KEYS}
    ae_spec = resolve_spec(registry, opts, spec.dataset, tuple(data.shape))
    build_network(registry, ae_spec)  # an architecture that cannot take these images says so before anything else
    recorded_label, recorded_sha = table.get("autoencoder"), table.get("weights_sha256")
    if recorded_label is not None and recorded_label != ae_spec.label:
        raise CheckpointError(f"The run's config.toml records autoencoder {recorded_label}, but its latent_space "
                              f"options make {ae_spec.label} (another recipe, or a gflowzoo whose defaults changed).")
    if not ae_spec.path.is_file():
        root = spec.data_root
        if not fit_missing or dist.world() > 1:
            raise UserError(f"The autoencoder {ae_spec.label} of this run is not in the cache ({ae_spec.path.parent}); "
                            f"recreate it with `{ae_spec.fit_command(root)}` (the same weights on the CPU), or copy "
                            f"{ae_spec.path.name} there from the machine that trained the run.")
        _fit_missing(registry, ae_spec, root, device, say)
    net, payload = load_autoencoder(ae_spec.path, registry, expect=ae_spec)
    if recorded_sha is not None and payload.get("weights_sha256") != recorded_sha:
        raise CheckpointError(f"The cached autoencoder {ae_spec.path} has other weights than the one this run was "
                              f"trained with (sha256 {str(payload.get('weights_sha256'))[:12]} vs {recorded_sha[:12]}:"
                              " refitted with other threads or on another device?); put back the run's file, or train "
                              "a new run.")
    if "code_mean" not in payload:
        raise CheckpointError(f"{ae_spec.path} lacks the code statistics (code_mean); train it again.")
    latent = LatentData(data, net, payload, device, say)
    try:
        inner = build_inner(latent)
    except (UserError, ConfigError):
        raise
    except Exception as exc:  # noqa: BLE001 - a method that cannot take points of the code shape
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise UserError(f"Method {spec.method!r} cannot run on the codes of latent_space {ae_spec.name!r} (points "
                        f"of shape {list(latent.shape)}): {type(exc).__name__}: {first}") from None
    spec.latent_space = {**opts, "autoencoder": ae_spec.label, "weights_sha256": payload["weights_sha256"]}
    return LatentMethod(inner, net, payload, data, latent, device)


def latent_preset(method_cls: Any, dataset: str, variant: str) -> dict[str, Any]:
    """The preset of ``method_cls`` for codes of ``dataset``: its ``preset("latent:<dataset>", variant)``, else (a
    method without latent presets) its preset for 2-D toy points, ``preset("toy-latent", variant)``. The
    ``latent_space`` key itself is left to the user."""
    out = method_cls.preset(f"latent:{dataset}", variant) or {}
    if not out:
        out = method_cls.preset("toy-latent", variant) or {}
    return {k: v for k, v in out.items() if k != "latent_space"}

