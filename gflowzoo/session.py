"""Resolve a run's configuration and build its method: shared by ``train``, ``sample``, ``evaluate`` and ``compare``."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from .config import RUN_KEYS, LoopConfig, build, defaults, merge, nest, parse_sets
from .errors import ConfigError, UserError

PRESET_VARIANTS = ("auto", "paper", "cpu-quick")


@dataclasses.dataclass
class RunSpec:
    """A fully resolved run configuration."""

    method: str
    dataset: str
    seed: int
    device: str
    data_root: str | None
    preset: str
    run: LoopConfig
    model: Any  # the method's Config instance
    #: the autoencoder whose codes the method is trained on (a table with ``name``; docs/latent.md), or None
    latent_space: dict[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        from .config import to_data

        out = {k: getattr(self, k) for k in RUN_KEYS}
        out["run"] = to_data(self.run)
        out.update(to_data(self.model))
        return {k: v for k, v in out.items() if v is not None}


def apply_threads() -> None:
    """Set torch's CPU thread count: ``gflowzoo --threads N`` / ``GFLOWZOO_THREADS``, else the cores other processes
    leave free (:mod:`gflowzoo.threads`)."""
    from . import threads

    threads.configure()


def resolve_device(device: str) -> str:
    import torch

    apply_threads()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device} was asked for, but CUDA is not available on this machine.")
        return device
    if device == "cpu":
        return device
    raise UserError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.")


def _device_is_cuda_cheap(device: str) -> bool:
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def resolve(
    registry: Any,
    method: str,
    dataset: str | None = None,
    *,
    base: dict[str, Any] | None = None,
    config_file: str | Path | None = None,
    sets: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    preset: str | None = None,
    default_dataset: str = "digits",
) -> RunSpec:
    """Resolve a run configuration.

    Order (lowest first): method defaults, then ``base`` (a saved config, when resuming), or else the data set's
    preset; then the ``--config`` file; then ``overrides`` (CLI flags such as ``--steps``); then ``--set`` items.
    """
    method_cls = registry.load("method", method)
    cfg_cls = getattr(method_cls, "Config", None)
    if cfg_cls is None or not dataclasses.is_dataclass(cfg_cls):
        raise UserError(f"Method {method!r} has no Config dataclass; it cannot be configured.")
    file_data = {}
    if config_file is not None:
        from .config import load_toml

        file_data = load_toml(config_file)
        if "method" in file_data and file_data["method"] != method:
            raise ConfigError(f"{config_file} is a config of method {file_data['method']!r}, not {method!r}.")
    set_items = parse_sets(sets)
    # the data set may come from a flag, a file, --set, or the saved config
    for path, value in set_items:
        if path == ["dataset"]:
            dataset = value
    dataset = dataset or file_data.get("dataset") or (base or {}).get("dataset") or default_dataset
    registry.get("dataset", dataset)  # unknown name -> clear error

    run_level = {"method": method, "dataset": dataset, "seed": 0, "device": "auto", "preset": "auto"}
    data: dict[str, Any] = {**run_level, "run": defaults(LoopConfig), **defaults(cfg_cls)}
    root_cls = _root_class(cfg_cls)
    if base is not None:
        data = merge(data, base, root_cls)
    else:
        variant = preset or file_data.get("preset") or "auto"
        if variant not in PRESET_VARIANTS:
            raise ConfigError(f"Unknown preset {variant!r}; use one of {', '.join(PRESET_VARIANTS)}.")
        device = (overrides or {}).get("device") or file_data.get("device") or "auto"
        if variant == "auto":
            variant = "paper" if _device_is_cuda_cheap(device) else "cpu-quick"
        data["preset"] = variant
        if _latent_given(set_items, file_data, overrides):  # presets for codes, not for the images
            from .latent import latent_preset

            data = merge(data, latent_preset(method_cls, dataset, variant), root_cls)
        else:
            data = merge(data, method_cls.preset(dataset, variant) or {}, root_cls)
    data = merge(data, file_data, root_cls)
    data = merge(data, overrides or {}, root_cls)
    for path, value in set_items:
        data = merge(data, nest(path, value), root_cls)
    data["method"], data["dataset"] = method, dataset
    return _build_spec(registry, cfg_cls, data)


def _latent_given(set_items: list[tuple[list[str], Any]], file_data: dict[str, Any],
                  overrides: dict[str, Any] | None) -> bool:
    """Whether ``latent_space`` names an autoencoder in the ``--set`` items (the last one that sets it wins), the
    ``--config`` file or the overrides."""
    value = (overrides or {}).get("latent_space", file_data.get("latent_space"))
    for path, item in set_items:
        if path == ["latent_space"]:
            value = item
        elif path[:1] == ["latent_space"] and value is None:
            value = {}
    name = value.get("name") if isinstance(value, dict) else value
    return name not in (None, "none")


def _root_class(cfg_cls: type) -> type:
    """A dataclass describing the whole TOML document, used only for merge rules of component fields."""
    # resolved annotations (a Config written with postponed annotations holds strings) and fresh Field objects
    # (make_dataclass would otherwise rename and retype the method's own fields)
    hints = typing.get_type_hints(cfg_cls)
    fields = [
        (f.name, hints.get(f.name, Any), dataclasses.field(default=None, metadata=f.metadata))
        for f in dataclasses.fields(cfg_cls)
    ]
    extra = [("run", LoopConfig, dataclasses.field(default_factory=LoopConfig)),
             ("latent_space", Any, dataclasses.field(default=None, metadata={"component": "autoencoder"}))]
    return dataclasses.make_dataclass("Root", [(n, t, f) for n, t, f in fields] + extra)


def _build_spec(registry: Any, cfg_cls: type, data: dict[str, Any]) -> RunSpec:
    run_level = {k: data.pop(k) for k in list(data) if k in RUN_KEYS}
    loop = build(LoopConfig, data.pop("run", {}), "run")
    model = build(cfg_cls, data, "", registry)
    seed = run_level.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer; got {seed!r}.")
    device = run_level.get("device", "auto")
    if not isinstance(device, str):
        raise ConfigError(f"device must be a string; got {device!r}.")
    if loop.steps < 0 or loop.minutes < 0:
        raise ConfigError("run.steps and run.minutes must be >= 0.")
    for key in ("log_every", "checkpoint_every", "sample_every", "eval_every", "grid_size", "keep_checkpoints"):
        if getattr(loop, key) < 0:
            raise ConfigError(f"run.{key} must be >= 0.")
    latent = run_level.get("latent_space")
    if latent is not None:  # a name or a table, checked without the data (docs/latent.md)
        from .latent import check_latent_value

        latent = check_latent_value(registry, latent)
    return RunSpec(
        method=run_level["method"],
        dataset=run_level["dataset"],
        seed=seed,
        device=device,
        data_root=run_level.get("data_root"),
        preset=run_level.get("preset", "auto"),
        run=loop,
        model=model,
        latent_space=latent,
    )


def build_components(registry: Any, config: Any) -> Any:
    """Build every component field of the method config ``config`` (a dataclass; nested dataclasses too) with
    ``registry`` (``None``: the global registry of :func:`gflowzoo.plugins.get_registry`). Returns a
    :class:`gflowzoo.registry.Components` keyed by the fields' dotted paths (``"kernel"``,
    ``"sampler.integrator"``): built objects, or a :class:`gflowzoo.registry.ComponentFactory` for a backbone
    (see :meth:`gflowzoo.registry.Registry.component`).

    This is how components reach a method: :func:`build_method` passes the result as ``components=``; a method
    built without it (an older caller) calls this function itself with ``registry=None``."""
    from .registry import Components

    if registry is None:
        from .plugins import get_registry

        registry = get_registry()
    out = Components()
    _collect_components(registry, config, "", out)
    return out


def given_components(config: Any, components: Any = None) -> Any:
    """The components a method was built with: ``components`` as the session passed them, or, for a method built
    without the session (``components=None``: an older caller, a test), those of ``config`` built the session's way
    (:func:`build_components` with the global registry). Every method's ``__init__`` starts with it."""
    return components if components is not None else build_components(None, config)


def build_component(registry: Any, kind: str, spec: Any) -> Any:
    """One component of ``kind`` from ``spec`` as :func:`build_components` builds it (``registry`` ``None``: the
    global registry); for a component built by hand that holds another one (a backbone's schedule option)."""
    if registry is None:
        from .plugins import get_registry

        registry = get_registry()
    return registry.component(kind, spec)


def _collect_components(registry: Any, config: Any, prefix: str, out: dict[str, Any]) -> None:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if "component" in f.metadata:
            out[prefix + f.name] = registry.component(f.metadata["component"], value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            _collect_components(registry, value, f"{prefix}{f.name}.", out)


def takes_components(method_cls: type) -> bool:
    """Whether the constructor of ``method_cls`` accepts ``components=`` (methods written before injection do not;
    :func:`build_method` then calls them with ``(config, data, device)`` only)."""
    import inspect

    try:
        params = inspect.signature(method_cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    return "components" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_method(registry: Any, spec: RunSpec, device: str, data: Any = None, *, fit_autoencoder: bool = False,
                 say: Any = None) -> Any:
    """Instantiate the method of ``spec`` on ``device`` with a :class:`DataHandle` (made from the spec if not
    given), with the speed options ``spec.run.amp`` and ``spec.run.compile`` applied (:func:`gflowzoo.accel.apply`).
    The global torch seed is set from the spec so initial weights are reproducible.

    Every component the config names is built with ``registry`` (:func:`build_components`) and handed to the method
    as ``components=`` when its constructor takes that keyword: methods never look components up themselves.

    With ``spec.latent_space`` set, the method is built on the codes of that autoencoder and wrapped so that it
    samples images (:func:`gflowzoo.latent.build_latent_method`; ``fit_autoencoder``: train a missing autoencoder
    now, reporting through ``say``, else refuse with the command that trains it)."""
    import torch

    from .data import DataHandle

    torch.manual_seed(spec.seed)
    if data is None:
        data = DataHandle(spec.dataset, spec.data_root, registry=registry)
    if spec.latent_space is not None:
        from .latent import build_latent_method

        def build_inner(latent_data: Any) -> Any:
            torch.manual_seed(spec.seed)
            return _build_plain(registry, spec, device, latent_data)

        return build_latent_method(registry, spec, device, data, build_inner, fit_missing=fit_autoencoder, say=say)
    return _build_plain(registry, spec, device, data)


def _build_plain(registry: Any, spec: RunSpec, device: str, data: Any) -> Any:
    import torch

    method_cls = registry.load("method", spec.method)
    if takes_components(method_cls):
        parts = build_components(registry, spec.model)
        method = method_cls(spec.model, data, torch.device(device), components=parts)
    else:
        method = method_cls(spec.model, data, torch.device(device))
    from .accel import apply

    # run.amp / run.compile (gflowzoo/accel.py): applied here, so training, sampling and evaluation all see them
    return apply(method, spec.run.amp, spec.run.compile, spec.run.compile_backend, device)
