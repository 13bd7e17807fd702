"""Configuration: typed dataclasses, TOML in and out, ``--set a.b=value`` overrides, clear errors.

A run's configuration is one TOML document::

    method = "dmmd"          # reserved run-level keys
    dataset = "digits"
    seed = 0
    device = "auto"
    preset = "cpu-quick"

    [run]                    # the training loop (LoopConfig)
    steps = 2000

    lr = 0.001               # everything else: the method's own Config dataclass
    [backbone]               # a component: a name, or a table with 'name' and constructor options
    name = "conv"
    width = 32

Precedence, lowest first: the method's dataclass defaults, the preset for the data set, a ``--config`` file, then each
``--set`` in order. Unknown keys and wrong types are errors naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .registry import _coerce, check_options, nested_components, split_spec

RUN_KEYS = ("method", "dataset", "seed", "device", "data_root", "preset", "latent_space")
#: Keys of the ``latent_space`` table that a run writes into its ``config.toml`` to record which autoencoder it used
#: (:mod:`gflowzoo.latent`): records, not options.
LATENT_RECORD_KEYS = ("autoencoder", "weights_sha256")


def component(kind: str, default: str | Mapping[str, Any]) -> Any:
    """A dataclass field holding a registered component of ``kind`` (a name, or a table with ``name``)."""
    if isinstance(default, Mapping):
        frozen = dict(default)
        return dataclasses.field(default_factory=lambda: dict(frozen), metadata={"component": kind})
    return dataclasses.field(default=default, metadata={"component": kind})


@dataclasses.dataclass
class LoopConfig:
    """The training loop, common to every method.

    ``steps`` is the *total* number of training steps of the run: ``--resume`` continues up to it.
    ``minutes`` (if > 0) stops training after that much wall-clock time, whichever comes first.
    ``amp`` (``"none"`` or ``"bf16"``: bfloat16 autocast) and ``compile`` (``torch.compile`` of the method's
    networks, with ``compile_backend``) are speed options applied to training and sampling (:mod:`gflowzoo.accel`);
    both may be changed when resuming or sampling.
    """

    steps: int = 1000
    minutes: float = 0.0
    log_every: int = 50
    sample_every: int = 0  # 0: only at the end
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    grid_size: int = 64
    eval_every: int = 0
    amp: Literal["none", "bf16"] = "none"
    compile: bool = False
    compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"


# ---------------------------------------------------------------------------------------------------------------
# TOML reading and --set parsing
# ---------------------------------------------------------------------------------------------------------------


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing or malformed file is a :class:`ConfigError` naming the file and the problem."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {p}") from None
    except IsADirectoryError:
        raise ConfigError(f"Config path is a directory, not a TOML file: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {p} is not valid TOML: {exc}") from None


def parse_value(text: str) -> Any:
    """Parse one ``--set`` value as a TOML value (``1e-3``, ``true``, ``[1, 2]``, ``"s"``), else as a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: list[str] | None) -> list[tuple[list[str], Any]]:
    """``["a.b=1", "c=x"]`` -> ``[(["a", "b"], 1), (["c"], "x")]``. A value starting with ``{`` or ``[`` must be a
    valid TOML inline table or array (it is never taken as a bare string): else a :class:`ConfigError` quoting the
    TOML parser."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}.")
        key, _, value = item.partition("=")
        parts = [k.strip() for k in key.strip().split(".")]
        if not all(parts):
            raise ConfigError(f"--set has an empty key in {item!r}.")
        value = value.strip()
        if value.startswith(("{", "[")):
            try:
                parsed = tomllib.loads(f"{_SET_KEY}{value}")["v"]
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"--set {item!r}: the value is not valid TOML: {_toml_message(exc)}.") from None
        else:
            parsed = parse_value(value)
        out.append((parts, parsed))
    return out


_SET_KEY = "v = "


def _toml_message(exc: tomllib.TOMLDecodeError) -> str:
    """The parser's message of a ``--set`` value, with the column counted within the value."""

    def column(m: re.Match[str]) -> str:
        return f"(at character {max(1, int(m.group(1)) - len(_SET_KEY))} of the value)"

    text = str(exc).replace("(at end of document)", "(at the end of the value)")
    return re.sub(r"\(at line 1, column (\d+)\)", column, text)


def _component_fields(cls: type) -> dict[str, str]:
    return {f.name: f.metadata["component"] for f in dataclasses.fields(cls) if "component" in f.metadata}


def merge(base: dict[str, Any], override: Mapping[str, Any], cls: type | None = None) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base`` (a copy). With the dataclass ``cls`` known, component fields follow
    their rule: a new *name* replaces the component (its old options are dropped), a table merges into it."""
    out = dict(base)
    comps = _component_fields(cls) if cls is not None and dataclasses.is_dataclass(cls) else {}
    sub_types = _nested_types(cls) if cls is not None else {}
    for key, value in override.items():
        cur = out.get(key)
        if key in comps:
            cur_name, cur_opts = split_spec(cur) if cur is not None else (None, {})
            if isinstance(value, str):
                out[key] = value
            elif isinstance(value, Mapping):
                new_name = value.get("name", cur_name)
                opts = dict(cur_opts) if new_name == cur_name else {}
                opts.update({k: v for k, v in value.items() if k != "name"})
                out[key] = {"name": new_name, **opts} if opts else new_name
            else:
                out[key] = value  # invalid, reported by build()
        elif isinstance(value, Mapping) and isinstance(cur, Mapping):
            out[key] = merge(dict(cur), value, sub_types.get(key))
        else:
            out[key] = value
    return out


def nest(path: list[str], value: Any) -> dict[str, Any]:
    d: Any = value
    for part in reversed(path):
        d = {part: d}
    return d


def _nested_types(cls: type | None) -> dict[str, type]:
    if cls is None or not dataclasses.is_dataclass(cls):
        return {}
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints.get(f.name))}


# ---------------------------------------------------------------------------------------------------------------
# Building typed configs
# ---------------------------------------------------------------------------------------------------------------


def defaults(cls: type) -> dict[str, Any]:
    """The defaults of a config dataclass as plain data (TOML-ready)."""
    return to_data(cls())


def to_data(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_data(v) for v in obj]
    return obj


def build(cls: type, data: Mapping[str, Any], where: str = "", registry: Any = None) -> Any:
    """Build the dataclass ``cls`` from plain data, checking every key and type. Component fields are checked
    against the registry (when given): the name must exist and the options must match its constructor (options
    that are components themselves, see :func:`gflowzoo.registry.nested_components`, are checked the same way).
    Finally the built object's ``validate()`` is called when it has one: a config dataclass puts there the checks
    of values no type can express (``groups >= 1``), raising :class:`ConfigError`, so they fail when the
    configuration is resolved (``gflowzoo train --set groups=0``) rather than when the method is built."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'} must be a table; got {data!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        valid = ", ".join(sorted(fields))
        import difflib

        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown config key {key!r}.{hint} Valid keys here: {valid}.")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        key = f"{where}.{name}" if where else name
        ann = hints[name]
        if "component" in f.metadata:
            kwargs[name] = _check_component(f.metadata["component"], value, key, registry)
        elif dataclasses.is_dataclass(ann):
            kwargs[name] = build(ann, value, key, registry)
        else:
            v = _coerce(value, ann, key)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key} must be a finite number; got {v!r}.")
            kwargs[name] = v
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):  # checks that span several fields live with the config (see build's docstring)
        validate()
    return obj


def _check_component(kind: str, value: Any, key: str, registry: Any) -> Any:
    name, options = split_spec(value) if isinstance(value, (str, Mapping)) else (None, None)
    if name is None:
        raise ConfigError(f"{key} must be a {kind} name or a table with 'name'; got {value!r}.")
    if registry is not None:
        try:
            obj = registry.load(kind, name)
        except Exception as exc:
            if hasattr(exc, "exit_code"):
                raise ConfigError(f"{key}: {exc}") from None
            raise
        options = check_options(obj, options, key)
        for opt, sub_kind in nested_components(obj).items():
            if isinstance(options.get(opt), (str, Mapping)):
                options[opt] = _check_component(sub_kind, options[opt], f"{key}.{opt}", registry)
    return {"name": name, **options} if options else name


# ---------------------------------------------------------------------------------------------------------------
# TOML writing (a small writer for the subset we produce: scalars, lists, nested tables)
# ---------------------------------------------------------------------------------------------------------------


def _toml_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_scalar(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_scalar(x)}" for k, x in v.items()) + " }"
    if v is None:
        raise ConfigError("TOML has no null value; use a sentinel instead of None in configs.")
    raise ConfigError(f"Cannot write {type(v).__name__} to TOML.")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_scalar(k)


def dumps_toml(data: Mapping[str, Any], _prefix: str = "") -> str:
    """Write plain data as TOML. Keys whose value is ``None`` are left out (TOML has no null)."""
    lines, tables = [], []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            tables.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {_toml_scalar(v)}")
    out = "\n".join(lines)
    for k, v in tables:
        name = f"{_prefix}{_toml_key(k)}"
        body = dumps_toml(v, name + ".")
        out += ("\n\n" if out else "") + f"[{name}]" + ("\n" + body if body else "")
    return out.strip() + "\n" if not _prefix else out.strip()
