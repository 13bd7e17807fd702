"""The component registry: ``kind -> name -> Entry``.

Plugins fill it through the :func:`gflowzoo.hookspecs.gflowzoo_register` hook. An entry keeps an import path (or the
object itself), a one-line summary and the plugin (with its version) it came from; the object is imported only when
it is built, so listing stays instant.

Components are built from a *spec*: a name (``"rbf"``) or a table with a ``name`` and the constructor's keyword
arguments (``{"name": "rbf", "sigmas": [1.0, 2.0]}``). Constructor keyword arguments *are* the configuration of a
component, so a spec round-trips through TOML.

Names are first come, first served: the first registration of a kind and name keeps it (the built-ins are registered
first, then installed plugins in the order they load); a later registration of the same pair is refused and recorded
as a :class:`Refusal`, which the plugin manager reports. The name keeps working as first registered.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, NameClash, PluginError, unknown_name

#: Every kind of component, with a plural title for listings.
KINDS: dict[str, str] = {
    "method": "methods",
    "backbone": "feature backbones",
    "kernel": "kernels",
    "divergence": "divergences",
    "schedule": "noise schedules",
    "integrator": "flow integrators",
    "dataset": "datasets",
    "metric": "metrics",
    "feature-extractor": "feature extractors",
    "autoencoder": "autoencoders",
}


@dataclass
class Entry:
    """One registered component."""

    kind: str
    name: str
    target: str | Any
    summary: str
    plugin: str
    version: str | None = None
    _loaded: Any = field(default=None, repr=False)

    def load(self) -> Any:
        """Import (once) and return the registered object."""
        if self._loaded is None:
            if isinstance(self.target, str):
                module_name, _, attr = self.target.partition(":")
                try:
                    obj = importlib.import_module(module_name)
                    for part in attr.split(".") if attr else []:
                        obj = getattr(obj, part)
                except (ImportError, AttributeError) as exc:
                    raise PluginError(
                        f"{self.kind} {self.name!r} from plugin {self.plugin!r} cannot be imported "
                        f"({self.target}): {exc}"
                    ) from exc
                self._loaded = obj
            else:
                self._loaded = self.target
        return self._loaded

    def options(self) -> dict[str, inspect.Parameter]:
        """Keyword options a user may set for this component (its constructor's keyword parameters)."""
        return user_options(self.load())


def user_options(obj: Any) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a class or factory that have defaults (the user-settable configuration)."""
    fn = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return {}
    return {
        n: p
        for n, p in sig.parameters.items()
        if n != "self"
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is not inspect.Parameter.empty
    }


def split_spec(spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return ``(name, options)`` of a component spec (a name or a table with ``name``)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise ConfigError(f"A component table needs a 'name' key; got keys {sorted(spec)}.")
        opts = dict(spec)
        return str(opts.pop("name")), opts
    raise ConfigError(f"A component must be given by name or as a table with 'name'; got {spec!r}.")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a simple annotation (int, float, bool, str, list/tuple of those, Optional)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    if isinstance(annotation, str):  # postponed annotations we cannot resolve: accept
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}.")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}; got {value!r}.")
        return value
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            if origin is not None and args and not isinstance(value, (list, tuple)):
                value = [value]  # a single value where a list is expected: accept as a one-element list
            else:
                raise ConfigError(f"{where} must be a list; got {value!r}.")
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or annotation is tuple) else out
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false; got {value!r}.")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where} must be an integer; got {value!r}.")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number; got {value!r}.")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string; got {value!r}.")
        return value
    if annotation in (dict, Mapping) or origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table; got {value!r}.")
        return dict(value)
    return value


def check_options(obj: Any, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate ``options`` against the keyword parameters of ``obj``; unknown keys and wrong types are errors."""
    allowed = user_options(obj)
    try:
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except Exception:  # pragma: no cover - unresolvable forward references
        hints = {}
    out = {}
    for key, value in options.items():
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "(none)"
            raise ConfigError(f"{where}: unknown option {key!r}. Valid options: {valid}.")
        out[key] = _coerce(value, hints.get(key, allowed[key].annotation), f"{where}.{key}")
    return out


@dataclass(frozen=True)
class Refusal:
    """A registration refused because its kind and name were taken: ``plugin`` lost the name to ``owner``."""

    kind: str
    name: str
    plugin: str
    owner: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} (already registered by {self.owner}) was refused"


class Registry:
    """All registered components, by kind and name."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        #: later registrations of a taken kind and name, refused (the first registration keeps the name)
        self.refused: list[Refusal] = []

    # -- filling -----------------------------------------------------------------------------------------------
    def add(self, entry: Entry) -> None:
        if entry.kind not in KINDS:
            raise PluginError(
                f"Plugin {entry.plugin!r} registered unknown kind {entry.kind!r}; kinds are {', '.join(KINDS)}."
            )
        if not entry.name or entry.name != entry.name.strip() or " " in entry.name:
            raise PluginError(f"Plugin {entry.plugin!r} registered an invalid {entry.kind} name {entry.name!r}.")
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:  # first come, first served: the name stays with the first registration
            refusal = Refusal(entry.kind, entry.name, entry.plugin, existing.plugin)
            self.refused.append(refusal)
            raise NameClash(
                f"{entry.kind} {entry.name!r} of plugin {entry.plugin!r} was refused: the name is taken by "
                f"{existing.plugin!r}, which registered it first.",
                refusal,
            )
        self._entries[entry.kind][entry.name] = entry

    def remove_plugin(self, plugin: str) -> None:
        """Drop every entry (and refusal) of ``plugin`` (used when a plugin's registration fails half way)."""
        for kind in self._entries.values():
            for name in [n for n, e in kind.items() if e.plugin == plugin]:
                del kind[name]
        self.refused = [r for r in self.refused if r.plugin != plugin]

    # -- reading -----------------------------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(KINDS)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def get(self, kind: str, name: str) -> Entry:
        if kind not in KINDS:
            raise unknown_name("kind", kind, KINDS)
        try:
            return self._entries[kind][name]
        except KeyError:
            if kind == "dataset" and ":" in name:  # parametrised datasets, e.g. imagefolder:PATH
                prefix = name.split(":", 1)[0] + ":"
                if prefix in self._entries[kind]:
                    return self._entries[kind][prefix]
            raise unknown_name(kind, name, self._entries[kind], plugins_note=True) from None

    def load(self, kind: str, name: str) -> Any:
        return self.get(kind, name).load()

    def component(self, kind: str, spec: str | Mapping[str, Any]) -> Any:
        """The component of ``spec`` as the session hands it to a method: built, or for the kinds in
        :data:`FACTORY_KINDS` (whose constructors need arguments only the method knows) a :class:`ComponentFactory`
        with the validated options bound. Options that are components themselves (declared by the component's
        ``component_options``, see :func:`nested_components`) are resolved with this registry too, given or not."""
        name, options = split_spec(spec)
        obj = self.load(kind, name)
        options = check_options(obj, options, f"{kind} {name!r}")
        defaults = user_options(obj)
        for opt, sub_kind in nested_components(obj).items():
            value = options.get(opt, defaults[opt].default if opt in defaults else None)
            if isinstance(value, (str, Mapping)):
                options[opt] = self.component(sub_kind, value)
        if kind in FACTORY_KINDS:
            return ComponentFactory(kind, name, obj, options)
        return obj(**options)

    def create(self, kind: str, spec: str | Mapping[str, Any], /, **context: Any) -> Any:
        """Build a component from a spec. ``context`` holds arguments the caller supplies (for example the input
        shape of a backbone); user options come from the spec and are validated against the constructor."""
        name, options = split_spec(spec)
        obj = self.load(kind, name)
        options = check_options(obj, options, f"{kind} {name!r}")
        return obj(**context, **options)


#: Kinds whose components the session hands to a method as a :class:`ComponentFactory` (their constructors take
#: arguments only the method knows: a backbone's ``in_shape`` and ``feature_dim``); every other kind arrives built.
FACTORY_KINDS = frozenset({"backbone"})


def nested_components(obj: Any) -> dict[str, str]:
    """``{option: kind}`` of the constructor options of ``obj`` that are components themselves: its class attribute
    ``component_options`` (for example ``{"kernel": "kernel"}`` on :class:`gflowzoo.divergences.MMD`)."""
    return dict(getattr(obj, "component_options", None) or {})


@dataclass(frozen=True)
class ComponentFactory:
    """A component the session has validated but not built, because building it needs arguments only the method
    knows (a backbone's ``in_shape`` and ``feature_dim``). ``factory(**context)`` builds it with the bound
    ``options``; ``target`` is the registered class or factory (read class attributes such as
    ``default_feature_dim`` from it)."""

    kind: str
    name: str
    target: Any
    options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, **context: Any) -> Any:
        """Build the component: ``target(**context, **options)``."""
        return self.target(**context, **self.options)


class Components(dict):
    """The components of one method's config, built by the session from the registry it was given
    (:func:`gflowzoo.session.build_components`). Keys are the dotted paths of the config's component fields
    (``"kernel"``, ``"sampler.integrator"``); values are built objects, or :class:`ComponentFactory` for the
    kinds in :data:`FACTORY_KINDS`."""

    def __missing__(self, key: str) -> Any:
        have = ", ".join(sorted(self)) or "(none)"
        raise KeyError(f"No component {key!r} was built for this config; it has: {have}.")


class Registrar:
    """The ``register`` callback handed to one plugin's :func:`gflowzoo_register` hook."""

    def __init__(self, registry: Registry, plugin: str, version: str | None) -> None:
        self.registry, self.plugin, self.version = registry, plugin, version
        #: this plugin's registrations refused because another plugin took the name first: recorded (and reported
        #: by the plugin manager) without stopping the plugin's hook, so its other components stay registered
        self.clashes: list[NameClash] = []

    def __call__(self, kind: str, name: str, target: str | Callable[..., Any], summary: str = "") -> None:
        summary = (summary or "").strip().splitlines()[0] if summary else ""
        try:
            self.registry.add(Entry(kind, name, target, summary, self.plugin, self.version))
        except NameClash as exc:
            self.clashes.append(exc)

    @property
    def refused(self) -> list[Refusal]:
        """The :class:`Refusal` of each clash of this plugin."""
        return [c.refusal for c in self.clashes]
