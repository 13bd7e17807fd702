"""The plugin system: built-ins as plugins, entry points, GFLOWZOO_LOAD_PLUGINS, per-plugin errors, clashes,
hook documentation and hook test coverage."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gflowzoo
from gflowzoo import hookspecs, plugins
from gflowzoo.hookspecs import hookimpl
from gflowzoo.testing import plugins_loaded
from helpers_plugins import REPO, TESTS_DIR, forget_modules, make_dist

GOOD = '''
from gflowzoo.hookspecs import hookimpl

@hookimpl
def gflowzoo_register(register):
    register("kernel", "gfz-laplace", "gfz_good_impl:Laplace", "Laplace kernel (test plugin)")
    register("integrator", "gfz-jump", "gfz_good_impl:Jump", "a test integrator")
'''

OTHER = '''
from gflowzoo.hookspecs import hookimpl

@hookimpl
def gflowzoo_register(register):
    register("kernel", "gfz-other", "gfz_good_impl:Laplace", "another test kernel")
'''

BROKEN_IMPORT = '''
import gfz_missing_dependency_xyz  # noqa: F401
'''

RAISES = '''
from gflowzoo.hookspecs import hookimpl

@hookimpl
def gflowzoo_register(register):
    register("kernel", "gfz-half", "x:Y", "registered before the failure")
    raise RuntimeError("boom in register")
'''

CLASH = '''
from gflowzoo.hookspecs import hookimpl

@hookimpl
def gflowzoo_register(register):
    register("kernel", "gfz-laplace", "gfz_good_impl:Laplace", "a clashing Laplace kernel")
    register("kernel", "gfz-unique", "gfz_good_impl:Laplace", "a kernel nobody else has")
'''

INVALID_HOOK = '''
from gflowzoo.hookspecs import hookimpl

@hookimpl
def gflowzoo_register(register, extra_argument):
    pass
'''

IMPL = '''
import torch
from gflowzoo.interfaces import Kernel

class Laplace(Kernel):
    def __init__(self, sigma: float = 1.0):
        self.sigma = sigma

    def gram(self, x, y):
        return torch.exp(-torch.cdist(x, y) / self.sigma)
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A fake site-packages with several plugin distributions, on sys.path for this test."""
    make_dist(tmp_path, "gfz-good", "1.2.3", {"good": "gfz_good_plugin"},
              {"gfz_good_plugin.py": GOOD, "gfz_good_impl.py": IMPL})
    make_dist(tmp_path, "gfz-other", "0.4", {"other": "gfz_other_plugin"}, {"gfz_other_plugin.py": OTHER})
    make_dist(tmp_path, "gfz-broken", "0.1", {"broken": "gfz_broken_plugin"},
              {"gfz_broken_plugin.py": BROKEN_IMPORT})
    make_dist(tmp_path, "gfz-raises", "0.2", {"raises": "gfz_raises_plugin"}, {"gfz_raises_plugin.py": RAISES})
    make_dist(tmp_path, "gfz-clash", "0.3", {"zclash": "gfz_clash_plugin"}, {"gfz_clash_plugin.py": CLASH})
    make_dist(tmp_path, "gfz-invalid", "0.5", {"invalid": "gfz_invalid_plugin"},
              {"gfz_invalid_plugin.py": INVALID_HOOK})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("GFLOWZOO_LOAD_PLUGINS", raising=False)
    plugins.reset()
    yield tmp_path
    plugins.reset()
    forget_modules("gfz_")


def _list_json(*args: str) -> dict:
    from gflowzoo.cli import app

    result = CliRunner().invoke(app, ["list", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_builtins_are_registered_like_plugins():
    state = plugins.get_state()
    info = state.infos["gflowzoo.builtin"]
    assert info.builtin and info.version == gflowzoo.__version__ and info.distribution == "gflowzoo"
    assert info.hooks == ["gflowzoo_register"] and info.error is None
    kernels = {e.name: e for e in state.registry.entries("kernel")}
    assert {"linear", "rbf", "rq", "energy", "poly"} <= set(kernels)
    assert all(e.plugin == "gflowzoo.builtin" and e.version == gflowzoo.__version__ for e in kernels.values())


def test_installed_plugins_are_not_loaded_under_tests_by_default(site):
    state = plugins.get_state()
    assert list(state.infos) == ["gflowzoo.builtin"]
    assert "gfz-laplace" not in state.registry.names("kernel")


def test_third_party_plugin_found_through_entry_point(site):
    with plugins_loaded("good") as state:
        entry = state.registry.get("kernel", "gfz-laplace")
        assert (entry.plugin, entry.version, entry.summary) == ("good", "1.2.3", "Laplace kernel (test plugin)")
        info = state.infos["good"]
        assert (info.distribution, info.version, info.module, info.builtin) == (
            "gfz-good", "1.2.3", "gfz_good_plugin", False)
        assert info.hooks == ["gflowzoo_register"]
        k = state.registry.create("kernel", {"name": "gfz-laplace", "sigma": 2.0})
        assert k.sigma == 2.0
        out = _list_json("kernel")
        rows = {c["name"]: c for c in out["components"]}
        assert rows["gfz-laplace"]["plugin"] == "good" and rows["gfz-laplace"]["version"] == "1.2.3"
        assert rows["rbf"]["plugin"] == "gflowzoo.builtin"


def test_load_plugins_env_limits_loading(site, monkeypatch):
    monkeypatch.setenv("GFLOWZOO_LOAD_PLUGINS", "good, gfz-other")  # an entry-point name and a distribution name
    plugins.reset()
    state = plugins.get_state()
    assert set(state.infos) == {"gflowzoo.builtin", "good", "other"}
    assert {"gfz-laplace", "gfz-other"} <= set(state.registry.names("kernel"))
    monkeypatch.setenv("GFLOWZOO_LOAD_PLUGINS", "")
    plugins.reset()
    assert list(plugins.get_state().infos) == ["gflowzoo.builtin"]


@pytest.mark.parametrize(
    "name, fragment",
    [("broken", "import failed: ModuleNotFoundError"), ("raises", "registration failed: RuntimeError: boom")],
)
def test_failing_plugin_does_not_break_list(site, name, fragment):
    from gflowzoo.cli import app

    with plugins_loaded("good", name) as state:
        assert fragment in state.infos[name].error
        assert "gfz-half" not in state.registry.names("kernel")  # partial registrations are dropped
        assert "gfz-laplace" in state.registry.names("kernel")  # other plugins are unaffected
        result = CliRunner().invoke(app, ["list", "kernel"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        lines = [ln for ln in result.output.splitlines() if f"plugin '{name}' failed" in ln]
        assert len(lines) == 1 and state.infos[name].error in lines[0], result.output  # the whole error, one line
        assert "gfz-laplace" in result.output
        assert "Traceback" not in result.output
        out = _list_json()
        assert any(e["plugin"] == name and fragment in e["error"] for e in out["errors"])
        result = CliRunner().invoke(app, ["plugins", "--json"])
        infos = {i["name"]: i for i in json.loads(result.stdout)}
        assert fragment in infos[name]["error"] and infos["good"]["error"] is None


def test_two_plugins_registering_one_name_first_one_keeps_it(site):
    from gflowzoo.cli import app

    with plugins_loaded("good", "zclash") as state:  # loaded in entry-point name order: good, then zclash
        assert state.infos["good"].status == "ok" and state.infos["zclash"].error is None
        assert state.infos["zclash"].status == (
            "clashes: kernel 'gfz-laplace' (already registered by good) was refused; its other components loaded")
        assert state.registry.get("kernel", "gfz-laplace").plugin == "good"
        assert state.registry.get("kernel", "gfz-unique").plugin == "zclash"  # its other names still work
        result = CliRunner().invoke(app, ["list", "kernel", "gfz-laplace"])
        assert result.exit_code == 0 and "(good 1.2.3)" in result.output, result.output
        assert "plugin 'zclash' also registered this name; it was refused." in result.output
        out = _list_json("kernel")
        assert out["refused"] == [{"kind": "kernel", "name": "gfz-laplace", "plugin": "zclash", "owner": "good"}]
        assert out["errors"] == []


def test_builtin_name_clash_keeps_the_builtin_fully_usable(site, fit_registry):
    from gflowzoo.cli import app
    from gflowzoo.kernels import RBFKernel

    class Clash:
        @hookimpl
        def gflowzoo_register(self, register):
            register("kernel", "rbf", "x:Y", "a second rbf")
            register("kernel", "clash-own", "gflowzoo.kernels:LinearKernel", "a kernel of its own")

    with plugins.temporary_plugin(Clash(), "clash-rbf") as state:
        info = state.infos["clash-rbf"]
        assert info.error is None and info.status == (
            "clashes: kernel 'rbf' (already registered by gflowzoo.builtin) was refused; its other components loaded")
        entry = state.registry.get("kernel", "rbf")
        assert entry.plugin == "gflowzoo.builtin" and entry.load() is RBFKernel
        k = state.registry.create("kernel", {"name": "rbf", "sigmas": [2.0]})
        assert type(k) is RBFKernel
        assert state.registry.get("kernel", "clash-own").plugin == "clash-rbf"
        # every method can use the built-in: a whole training run with kernel = "rbf" (fit-gaussian's default)
        result = CliRunner().invoke(app, ["train", "fit-gaussian", "--dataset", "toy-8gaussians", "--steps", "1",
                                          "--no-progress", "--set", "batch_size=8", "--out", str(site / "run")])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(app, ["list", "kernel"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        assert "kernel rbf from plugin 'clash-rbf' refused: name taken by gflowzoo.builtin" in result.output
        assert "failed" not in result.output
        result = CliRunner().invoke(app, ["plugins"], env={"COLUMNS": "300"})
        assert "clashes: kernel 'rbf' (already registered by gflowzoo.builtin) was refused" in result.output
        infos = {i["name"]: i for i in json.loads(CliRunner().invoke(app, ["plugins", "--json"]).stdout)}
        assert infos["clash-rbf"]["refused"] == [{"kind": "kernel", "name": "rbf", "owner": "gflowzoo.builtin"}]
    assert plugins.get_registry().get("kernel", "rbf").plugin == "gflowzoo.builtin"
    assert plugins.get_registry().refused == []


def test_registration_order_not_pluggy_order_decides_clashes(site):
    """A plugin marked ``trylast`` comes first in pluggy's list; the built-in still keeps its name."""
    class Late:
        @hookimpl(trylast=True)
        def gflowzoo_register(self, register):
            register("kernel", "rbf", "x:Y", "a second rbf")

    with plugins.temporary_plugin(Late(), "late-rbf") as state:
        assert state.registry.get("kernel", "rbf").plugin == "gflowzoo.builtin"
        assert [str(r) for r in state.infos["late-rbf"].refused] == [
            "kernel 'rbf' (already registered by gflowzoo.builtin) was refused"]


def test_load_plugins_env_name_matching_nothing_is_reported(site, monkeypatch):
    from gflowzoo.cli import app

    monkeypatch.setenv("GFLOWZOO_LOAD_PLUGINS", "good, gfz-goodd")
    plugins.reset()
    state = plugins.get_state()
    assert "gfz-laplace" in state.registry.names("kernel")  # the valid name still loads
    err = state.infos["gfz-goodd"].error
    assert err.startswith("GFLOWZOO_LOAD_PLUGINS names 'gfz-goodd', which matches no installed plugin (installed: ")
    assert "good" in err and "zclash" in err
    result = CliRunner().invoke(app, ["plugins"], env={"COLUMNS": "400"})
    assert result.exit_code == 0 and "which matches no installed plugin" in result.output
    result = CliRunner().invoke(app, ["list", "kernel"], env={"COLUMNS": "400"})
    assert result.exit_code == 0 and "GFLOWZOO_LOAD_PLUGINS names 'gfz-goodd'" in result.output
    # an unknown component name then says that the variable limits loading
    result = CliRunner().invoke(app, ["train", "gmmn"])
    assert result.exit_code == 2, result.output
    assert "Unknown method 'gmmn'" in result.output
    assert "GFLOWZOO_LOAD_PLUGINS='good, gfz-goodd' limits which plugins load." in result.output
    assert "Traceback" not in result.output


def test_hookimpl_validation_error_is_reported(site):
    from gflowzoo.cli import app

    with plugins_loaded("invalid") as state:
        err = state.infos["invalid"].error
        assert err.startswith("cannot register:") and "extra_argument" in err
        result = CliRunner().invoke(app, ["plugins", "--json"])
        assert result.exit_code == 0
        infos = {i["name"]: i for i in json.loads(result.stdout)}
        assert "extra_argument" in infos["invalid"]["error"] and infos["invalid"]["version"] == "0.5"


def test_temporary_plugin_is_removed_afterwards():
    class Temp:
        @hookimpl
        def gflowzoo_register(self, register):
            register("kernel", "gfz-temp", "x:Y", "temporary")

    with plugins.temporary_plugin(Temp(), "temp") as state:
        assert "gfz-temp" in state.registry.names("kernel") and "temp" in state.infos
    state = plugins.get_state()
    assert "gfz-temp" not in state.registry.names("kernel") and "temp" not in state.infos


# ---------------------------------------------------------------------------------------------------------------
# one test per hook (test_hook_<name>), checked by test_every_hook_has_a_test
# ---------------------------------------------------------------------------------------------------------------


def test_hook_gflowzoo_register():
    calls = []

    class Plugin:
        @hookimpl
        def gflowzoo_register(self, register):
            calls.append(register)
            register("kernel", "gfz-hooked", Laplace, "registered by object, not by path")

    class Laplace:
        def __init__(self, sigma: float = 1.0):
            self.sigma = sigma

    with plugins.temporary_plugin(Plugin(), "hooked") as state:
        assert calls and callable(calls[-1])
        entry = state.registry.get("kernel", "gfz-hooked")
        assert entry.plugin == "hooked" and entry.load() is Laplace
        assert state.registry.create("kernel", {"name": "gfz-hooked", "sigma": 3}).sigma == 3.0


@pytest.fixture
def fresh_cli(monkeypatch):
    """``gflowzoo.cli`` with a fresh root app (plugin commands are added to an app only once), restored afterwards.
    The fresh app carries the core's ``list`` command."""
    import typer

    import gflowzoo.cli as cli

    fresh = typer.Typer(name="gflowzoo", no_args_is_help=True, add_completion=False, rich_markup_mode=None)
    fresh.command("list")(cli.list_cmd)
    monkeypatch.setattr(cli, "app", fresh)
    yield cli


def test_hook_gflowzoo_register_commands(fresh_cli):
    import typer

    class Plugin:
        @hookimpl
        def gflowzoo_register_commands(self, app):
            sub = typer.Typer(help="Commands of the hello plugin.")

            @sub.command("greet")
            def greet(name: str = "world") -> None:
                """Say hello."""
                typer.echo(f"hello {name}")

            app.add_typer(sub, name="hello")

    class Broken:
        @hookimpl
        def gflowzoo_register_commands(self, app):
            raise RuntimeError("no commands today")

    with plugins.temporary_plugin(Plugin(), "hello"), plugins.temporary_plugin(Broken(), "broken-cmds") as state:
        app = fresh_cli.build_app()
        result = CliRunner().invoke(app, ["hello", "greet", "--name", "zoo"])
        assert result.exit_code == 0 and result.output.strip() == "hello zoo"
        assert "commands failed: RuntimeError: no commands today" in state.infos["broken-cmds"].error
        assert CliRunner().invoke(app, ["list", "kernel"]).exit_code == 0


# ---------------------------------------------------------------------------------------------------------------
# documentation and test coverage of hooks (datasette style)
# ---------------------------------------------------------------------------------------------------------------


def _hookspecs() -> dict[str, list[str]]:
    out = {}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(fn, "gflowzoo_spec"):
            out[name] = list(inspect.signature(fn).parameters)
    return out


def test_hookspecs_found():
    assert {"gflowzoo_register", "gflowzoo_register_commands"} <= set(_hookspecs())


@pytest.mark.parametrize("hook", sorted(_hookspecs()))
def test_hooks_documented(hook):
    doc = (REPO / "docs" / "plugin-hooks.md").read_text()
    sections = re.split(r"^(?=#{2,3} )", doc, flags=re.M)
    matching = [s for s in sections if re.match(rf"#{{2,3}} .*\b{hook}\b", s)]
    assert matching, f"docs/plugin-hooks.md has no heading for hook {hook!r}"
    for arg in _hookspecs()[hook]:
        assert re.search(rf"\b{arg}\b", matching[0]), f"argument {arg!r} of {hook} is not documented"


@pytest.mark.parametrize("hook", sorted(_hookspecs()))
def test_every_hook_has_a_test(hook):
    names = set()
    for path in Path(TESTS_DIR).glob("test_*.py"):
        names |= set(re.findall(r"^def (test_hook_\w+)\(", path.read_text(), flags=re.M))
    assert f"test_hook_{hook}" in names, f"write a test named test_hook_{hook}"
