"""The component registry: entries, lazy loading, specs, option validation, clashes (first come, first served)."""

from __future__ import annotations

import sys
from typing import Literal, Optional

import pytest

from gflowzoo.errors import ConfigError, PluginError, UserError
from gflowzoo.registry import KINDS, Entry, Refusal, Registrar, Registry, check_options, split_spec


class Widget:
    """A test component with typed keyword options."""

    def __init__(
        self,
        size: int,
        width: float = 1.0,
        depth: int = 2,
        mode: Literal["a", "b"] = "a",
        tags: list[str] = ["x"],  # noqa: B006
        scale: Optional[float] = None,
        on: bool = True,
    ) -> None:
        self.size, self.width, self.depth, self.mode, self.tags, self.scale, self.on = (
            size, width, depth, mode, tags, scale, on,
        )


def make_registry() -> Registry:
    reg = Registry()
    Registrar(reg, "p1", "1.0")("backbone", "widget", Widget, "a widget\nsecond line is dropped")
    return reg


def test_kinds_are_the_documented_ones():
    assert set(KINDS) == {
        "method", "backbone", "kernel", "divergence", "schedule", "integrator", "dataset", "metric",
        "feature-extractor", "autoencoder",
    }


def test_registrar_records_plugin_version_and_first_summary_line():
    reg = make_registry()
    e = reg.get("backbone", "widget")
    assert (e.plugin, e.version, e.summary) == ("p1", "1.0", "a widget")
    assert reg.names("backbone") == ["widget"]
    assert [x.name for x in reg.entries("backbone")] == ["widget"]


def test_unknown_kind_and_name_errors_list_valid_names_and_suggest():
    reg = make_registry()
    with pytest.raises(UserError) as exc:
        reg.get("backbones", "widget")
    assert "Did you mean 'backbone'" in str(exc.value) and "kernel" in str(exc.value)
    with pytest.raises(UserError) as exc:
        reg.get("backbone", "widgit")
    msg = str(exc.value)
    assert "Unknown backbone 'widgit'" in msg and "Did you mean 'widget'?" in msg and "widget" in msg


def test_invalid_registrations_are_plugin_errors():
    reg = Registry()
    with pytest.raises(PluginError, match="unknown kind 'gadget'"):
        Registrar(reg, "p", None)("gadget", "x", Widget)
    with pytest.raises(PluginError, match="invalid kernel name"):
        Registrar(reg, "p", None)("kernel", "two words", Widget)
    with pytest.raises(PluginError, match="invalid kernel name"):
        Registrar(reg, "p", None)("kernel", "", Widget)


def test_clash_refuses_the_later_registration_and_keeps_the_first():
    reg = make_registry()
    second = Registrar(reg, "p2", "2.0")
    second("backbone", "widget", Widget)  # recorded, not raised: the plugin's hook goes on
    second("backbone", "gadget", Widget)
    assert len(second.clashes) == 1 and "'p1'" in str(second.clashes[0]) and "'p2'" in str(second.clashes[0])
    assert reg.refused == second.refused == [Refusal("backbone", "widget", "p2", "p1")]
    assert str(reg.refused[0]) == "backbone 'widget' (already registered by p1) was refused"
    # the name stays with the first registration and stays fully usable; the clashing plugin's other names work
    assert reg.get("backbone", "widget").plugin == "p1" and reg.create("backbone", "widget", size=3).size == 3
    assert reg.get("backbone", "gadget").plugin == "p2"
    reg.remove_plugin("p2")  # a plugin whose hook failed: its refusals go with its entries
    assert reg.refused == [] and reg.names("backbone") == ["widget"]


def test_unknown_name_mentions_load_plugins_selection(monkeypatch):
    reg = make_registry()
    monkeypatch.delenv("GFLOWZOO_LOAD_PLUGINS", raising=False)
    with pytest.raises(UserError) as exc:
        reg.get("backbone", "gizmo")
    assert "GFLOWZOO_LOAD_PLUGINS" not in str(exc.value)
    monkeypatch.setenv("GFLOWZOO_LOAD_PLUGINS", "dmmd")
    with pytest.raises(UserError) as exc:
        reg.get("backbone", "gizmo")
    assert str(exc.value).endswith("Valid backbone names: widget. GFLOWZOO_LOAD_PLUGINS='dmmd' limits which "
                                   "plugins load.")
    with pytest.raises(UserError) as exc:  # not for kinds: no plugin adds one
        reg.get("gizmos", "x")
    assert "GFLOWZOO_LOAD_PLUGINS" not in str(exc.value)


def test_string_targets_are_imported_lazily(tmp_path, monkeypatch):
    mod = tmp_path / "gfz_lazy_target_mod.py"
    mod.write_text("class Thing:\n    def __init__(self, k: int = 3):\n        self.k = k\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    Registrar(reg, "p", None)("kernel", "thing", "gfz_lazy_target_mod:Thing", "lazy")
    assert "gfz_lazy_target_mod" not in sys.modules
    obj = reg.create("kernel", {"name": "thing", "k": 5})
    assert "gfz_lazy_target_mod" in sys.modules and obj.k == 5
    monkeypatch.delitem(sys.modules, "gfz_lazy_target_mod")


def test_unimportable_target_is_a_plugin_error_naming_it():
    e = Entry("kernel", "ghost", "no_such_pkg_gfz.mod:Ghost", "", "ghost-plugin")
    with pytest.raises(PluginError) as exc:
        e.load()
    assert "no_such_pkg_gfz.mod:Ghost" in str(exc.value) and "ghost-plugin" in str(exc.value)
    e2 = Entry("kernel", "ghost", "gflowzoo.errors:NoSuchThing", "", "p")
    with pytest.raises(PluginError, match="NoSuchThing"):
        e2.load()


def test_split_spec():
    assert split_spec("rbf") == ("rbf", {})
    assert split_spec({"name": "rbf", "sigmas": [1.0]}) == ("rbf", {"sigmas": [1.0]})
    with pytest.raises(ConfigError, match="needs a 'name' key"):
        split_spec({"sigmas": [1.0]})
    with pytest.raises(ConfigError, match="by name or as a table"):
        split_spec(3)


def test_create_passes_context_and_validated_options():
    reg = make_registry()
    w = reg.create("backbone", {"name": "widget", "width": 2, "depth": 4.0, "tags": "one", "scale": None},
                   size=7)
    assert w.size == 7
    assert w.width == 2.0 and isinstance(w.width, float)  # int accepted where a float is expected
    assert w.depth == 4 and isinstance(w.depth, int)  # an integral float accepted as an int
    assert w.tags == ["one"]  # a single value where a list is expected
    assert w.scale is None
    w2 = reg.create("backbone", "widget", size=1)
    assert (w2.width, w2.depth, w2.mode) == (1.0, 2, "a")


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"widht": 1.0}, "unknown option 'widht'"),
        ({"size": 3}, "unknown option 'size'"),  # required context arguments are not user options
        ({"depth": 2.5}, "depth must be an integer"),
        ({"depth": True}, "depth must be an integer"),
        ({"width": "wide"}, "width must be a number"),
        ({"mode": "c"}, "mode must be one of 'a', 'b'"),
        ({"on": 1}, "on must be true or false"),
        ({"tags": [1]}, "tags[0] must be a string"),
        ({"scale": "big"}, "scale must be a number"),
    ],
)
def test_bad_options_name_the_key(options, fragment):
    with pytest.raises(ConfigError) as exc:
        check_options(Widget, options, "backbone 'widget'")
    assert fragment in str(exc.value)
    assert "backbone 'widget'" in str(exc.value)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError) as exc:
        check_options(Widget, {"nope": 1}, "w")
    for key in ("width", "depth", "mode", "tags", "scale", "on"):
        assert key in str(exc.value)


def test_parametrised_dataset_prefix_lookup():
    reg = Registry()
    Registrar(reg, "p", None)("dataset", "imagefolder:", Widget, "images in a folder")
    assert reg.get("dataset", "imagefolder:/some/path").name == "imagefolder:"
    with pytest.raises(UserError):
        reg.get("dataset", "otherfolder:/x")


def test_remove_plugin_drops_only_its_entries():
    reg = make_registry()
    Registrar(reg, "p2", None)("kernel", "k2", Widget)
    reg.remove_plugin("p2")
    assert reg.names("kernel") == [] and reg.names("backbone") == ["widget"]
