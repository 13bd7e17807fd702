"""Configuration: merge order, component specs, validation messages, TOML round trips."""

from __future__ import annotations

import tomllib

import pytest

from gflowzoo.config import LoopConfig, defaults, dumps_toml, load_toml, merge, parse_sets, parse_value
from gflowzoo.errors import ConfigError, UserError
from gflowzoo.session import resolve
from helpers_method import FitGaussian, FitGaussianConfig


def _resolve(reg, **kw):
    kw.setdefault("preset", "cpu-quick")
    return resolve(reg, "fit-gaussian", kw.pop("dataset", "toy-8gaussians"), **kw)


def test_defaults_are_the_dataclass_defaults(fit_registry):
    spec = _resolve(fit_registry, preset="paper")  # the paper preset of fit-gaussian changes nothing
    assert spec.model == FitGaussianConfig()
    assert spec.run == LoopConfig()
    assert (spec.method, spec.dataset, spec.seed, spec.device, spec.preset) == (
        "fit-gaussian", "toy-8gaussians", 0, "auto", "paper")


def test_merge_order_defaults_preset_file_overrides_sets(fit_registry, tmp_path):
    assert FitGaussian.preset("toy-8gaussians", "cpu-quick") == {"batch_size": 32}
    assert _resolve(fit_registry).model.batch_size == 32  # preset over defaults
    cfg = tmp_path / "c.toml"
    cfg.write_text("batch_size = 16\nlr = 0.01\ninit_std = 0.5\n[run]\nsteps = 7\nlog_every = 3\n")
    spec = _resolve(fit_registry, config_file=cfg)
    assert (spec.model.batch_size, spec.model.lr, spec.run.steps, spec.run.log_every) == (16, 0.01, 7, 3)
    spec = _resolve(fit_registry, config_file=cfg, overrides={"run": {"steps": 9}}, sets=["lr=0.02"])
    assert (spec.model.batch_size, spec.model.lr, spec.run.steps, spec.run.log_every) == (16, 0.02, 9, 3)
    spec = _resolve(fit_registry, config_file=cfg, overrides={"run": {"steps": 9}},
                    sets=["run.steps=11", "batch_size=4", "batch_size=5"])
    assert (spec.run.steps, spec.model.batch_size, spec.model.init_std) == (11, 5, 0.5)  # later --set wins


def test_auto_preset_on_cpu_is_cpu_quick(fit_registry):
    spec = resolve(fit_registry, "fit-gaussian", "toy-8gaussians", overrides={"device": "cpu"})
    assert spec.preset == "cpu-quick" and spec.model.batch_size == 32
    with pytest.raises(ConfigError, match="Unknown preset 'fast'"):
        _resolve(fit_registry, preset="fast")


def test_dataset_from_set_and_file(fit_registry, tmp_path):
    assert resolve(fit_registry, "fit-gaussian", None, sets=["dataset=toy-moons"]).dataset == "toy-moons"
    cfg = tmp_path / "c.toml"
    cfg.write_text('dataset = "toy-swissroll"\n')
    assert resolve(fit_registry, "fit-gaussian", None, config_file=cfg).dataset == "toy-swissroll"
    assert resolve(fit_registry, "fit-gaussian", None).dataset == "digits"
    with pytest.raises(UserError, match="Did you mean 'toy-moons'"):
        resolve(fit_registry, "fit-gaussian", "toy-moon")


def test_config_file_of_another_method_is_refused(fit_registry, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('method = "dmmd"\n')
    with pytest.raises(ConfigError, match="config of method 'dmmd'"):
        _resolve(fit_registry, config_file=cfg)


def test_component_name_replacement_drops_options_and_tables_merge(fit_registry, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[kernel]\nname = "rbf"\nsigmas = [1.0, 2.0]\n')
    spec = _resolve(fit_registry, config_file=cfg)
    assert spec.model.kernel == {"name": "rbf", "sigmas": [1.0, 2.0]}
    # a table without a name merges into the current component
    spec = _resolve(fit_registry, config_file=cfg, sets=["kernel.convention=variance"])
    assert spec.model.kernel == {"name": "rbf", "sigmas": [1.0, 2.0], "convention": "variance"}
    # a new name replaces the component: the rbf options are dropped
    spec = _resolve(fit_registry, config_file=cfg, sets=["kernel=rq"])
    assert spec.model.kernel == "rq"
    spec = _resolve(fit_registry, config_file=cfg, sets=["kernel=rq", "kernel.linear_weight=0.5"])
    assert spec.model.kernel == {"name": "rq", "linear_weight": 0.5}
    spec = _resolve(fit_registry, config_file=cfg, sets=['kernel={name = "poly", degree = 2}'])
    assert spec.model.kernel == {"name": "poly", "degree": 2}
    # the same name given again as a table keeps the old options
    spec = _resolve(fit_registry, config_file=cfg, sets=['kernel={name = "rbf"}'])
    assert spec.model.kernel == {"name": "rbf", "sigmas": [1.0, 2.0]}


def test_merge_without_class_is_a_deep_merge():
    out = merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}, "e": 4})
    assert out == {"a": {"b": 3, "c": 2}, "d": 1, "e": 4}


@pytest.mark.parametrize(
    "sets, fragments",
    [
        (["lrr=0.1"], ["'lrr'", "Did you mean 'lr'?", "batch_size"]),
        (["run.stepz=3"], ["'run.stepz'", "Did you mean 'steps'?"]),
        (["kernel.sigma=2.0"], ["kernel", "unknown option 'sigma'", "sigmas"]),
        (["kernel=rbff"], ["kernel", "Did you mean 'rbf'?"]),
        (["batch_size=abc"], ["batch_size must be an integer", "'abc'"]),
        (["run.steps=1.5"], ["run.steps must be an integer"]),
        (["lr=fast"], ["lr must be a number"]),
        (["tags=[1, 2]"], ["tags[0] must be a string"]),
        (["kernel.convention=both"], ["convention must be one of"]),
        (["kernel=3"], ["kernel must be a kernel name or a table"]),
        (["seed=x"], ["seed must be an integer"]),
        (["run.steps=-1"], ["run.steps", ">= 0"]),
        (["run.log_every=-2"], ["run.log_every must be >= 0"]),
    ],
)
def test_bad_sets_name_the_key(fit_registry, sets, fragments):
    with pytest.raises(ConfigError) as exc:
        _resolve(fit_registry, sets=sets)
    for fragment in fragments:
        assert fragment in str(exc.value), str(exc.value)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_values_are_rejected(fit_registry, tmp_path, value):
    with pytest.raises(ConfigError, match="lr must be a finite number"):
        _resolve(fit_registry, sets=[f"lr={value}"])
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[run]\nminutes = {value}\n")
    with pytest.raises(ConfigError, match="run.minutes must be a finite number"):
        _resolve(fit_registry, config_file=cfg)


def test_toml_round_trip_of_resolved_config(fit_registry):
    spec = _resolve(fit_registry, sets=['kernel={name = "rbf", sigmas = [0.5, 2.0]}', "lr=1e-3",
                                        'tags=["x y", "quote\\"d"]', "seed=3"])
    data = spec.to_data()
    text = dumps_toml(data)
    assert tomllib.loads(text) == data
    again = resolve(fit_registry, "fit-gaussian", data["dataset"], base=tomllib.loads(text))
    assert again == spec


def test_dumps_toml_quotes_odd_keys_and_skips_none():
    data = {"a b": 1, "plain_key": "x\\y", "t": {"inner.dot": [1.5, True], "none": None}, "gone": None}
    assert tomllib.loads(dumps_toml(data)) == {"a b": 1, "plain_key": "x\\y", "t": {"inner.dot": [1.5, True]}}
    with pytest.raises(ConfigError, match="Cannot write"):
        dumps_toml({"x": object()})


def test_parse_value_and_sets():
    assert parse_value("1e-3") == 1e-3 and parse_value("true") is True and parse_value("[1, 2]") == [1, 2]
    assert parse_value("rbf") == "rbf" and parse_value('"quoted"') == "quoted"
    assert parse_sets(["a.b=1", "c = x y"]) == [(["a", "b"], 1), (["c"], "x y")]
    with pytest.raises(ConfigError, match="key=value"):
        parse_sets(["novalue"])
    with pytest.raises(ConfigError, match="empty key"):
        parse_sets(["a..b=1"])


def test_set_value_that_opens_a_table_or_array_must_be_valid_toml():
    assert parse_sets(['kernel={name="rbf", sigmas=[1, 2]}', "k = [1, 2]"]) == [
        (["kernel"], {"name": "rbf", "sigmas": [1, 2]}), (["k"], [1, 2])]
    with pytest.raises(ConfigError) as exc:
        parse_sets(['kernel={name="rbf", sigmas=[1,2}'])
    assert str(exc.value) == ("--set 'kernel={name=\"rbf\", sigmas=[1,2}': the value is not valid TOML: "
                              "Unclosed array (at character 25 of the value).")
    for item, message in [("a=[1, 2", "Unclosed array (at the end of the value)"),
                          ("a={x=1", "Unclosed inline table (at the end of the value)"),
                          ("a=[rbf]", "Invalid value")]:
        with pytest.raises(ConfigError) as exc:
            parse_sets([item])
        assert str(exc.value).startswith(f"--set {item!r}: the value is not valid TOML: {message}")
    assert parse_sets(["a=rbf{x"]) == [(["a"], "rbf{x")]  # other values still fall back to a bare string


def test_load_toml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_toml(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("x = = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_toml(bad)
    assert str(bad) in str(exc.value) and "not valid TOML" in str(exc.value)


def test_defaults_of_loop_config_are_plain_data():
    d = defaults(LoopConfig)
    assert d["steps"] == 1000 and tomllib.loads(dumps_toml(d)) == d
