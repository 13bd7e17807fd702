"""The one public API for plugins (``gflowzoo.api``), the one home of the interfaces, the one export list of
``gflowzoo.testing``, and plugins that import nothing else from gflowzoo."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gflowzoo import api

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Imports of the registry internals (``gflowzoo.plugins``, ``gflowzoo.registry``, ``gflowzoo.session``'s component
#: builders) that plugins still make while those uses are replaced by injected components (issue #12).
#: TEMPORARY: this set must become empty; do not add to it. An entry whose import is gone fails the test below.
TEMPORARY_REGISTRY_IMPORTS: set[tuple[str, str]] = set()


# -- gflowzoo.api ----------------------------------------------------------------------------------------------------


def test_every_exported_name_resolves():
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert not name.startswith("_"), f"private name {name!r} in gflowzoo.api"
        assert getattr(api, name) is not None, name
    assert set(api.__all__) <= set(dir(api))
    with pytest.raises(AttributeError):
        api.split_spec  # noqa: B018  (registry internals are not public)


def test_exports_are_the_home_modules_objects():
    from gflowzoo import distributed, errors, hookspecs, interfaces

    assert api.hookimpl is hookspecs.hookimpl and api.distributed is distributed
    assert api.UserError is errors.UserError and api.Method is interfaces.Method
    for name, target in api._EXPORTS.items():
        module, _, attr = target.partition(":")
        home = importlib.import_module(module)
        assert getattr(api, name) is (getattr(home, attr) if attr else home), name
        assert not attr.startswith("_"), f"{name} re-exports a private name ({target})"


def test_importing_the_api_does_not_import_torch():
    code = (
        "import sys\n"
        "import gflowzoo.api\n"
        "from gflowzoo.api import hookimpl, component, ConfigError, UserError\n"
        "heavy = [m for m in ('torch', 'torch_fidelity', 'diffusers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def _api_section() -> str:
    text = (DOCS / "plugin-authoring.md").read_text(encoding="utf-8")
    match = re.search(r"^## The public API.*?(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, "plugin-authoring.md has a section '## The public API'"
    return match.group(0)


def test_docs_list_exactly_the_exported_names():
    """Each row of the table in plugin-authoring.md's "The public API" starts with the exported names it describes,
    in backticks: together they are ``gflowzoo.api.__all__``."""
    documented: list[str] = []
    for line in _api_section().splitlines():
        if line.startswith("| `"):
            documented += re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", line.split("|")[1])
    assert sorted(documented) == sorted(set(documented)), "a name is documented twice"
    assert set(documented) == set(api.__all__), {
        "undocumented": sorted(set(api.__all__) - set(documented)),
        "not exported": sorted(set(documented) - set(api.__all__)),
    }


# -- one home for the interfaces -------------------------------------------------------------------------------------


def test_interfaces_live_in_one_module_and_old_imports_still_work():
    from gflowzoo import interfaces
    from gflowzoo.data import Dataset as DataDataset
    from gflowzoo.data.base import Dataset as BaseDataset
    from gflowzoo.metrics.base import Metric
    from gflowzoo.metrics.extractors import FeatureExtractor

    assert DataDataset is BaseDataset is interfaces.Dataset is api.Dataset
    assert Metric is interfaces.Metric is api.Metric
    assert FeatureExtractor is interfaces.FeatureExtractor is api.FeatureExtractor
    for cls in (interfaces.Dataset, interfaces.Metric, interfaces.FeatureExtractor):
        assert cls.__module__ == "gflowzoo.interfaces"


# -- gflowzoo.testing: one export list -------------------------------------------------------------------------------


def test_testing_exports_each_contract_modules_all():
    from gflowzoo import testing

    expected = ["method_builder", "plugin_fixtures", "plugins_loaded", "temporary_plugin"]
    for module_name in testing._CONTRACT_MODULES:
        module = importlib.import_module(f"gflowzoo.testing.{module_name}")
        defined = {name for name, obj in vars(module).items()
                   if isinstance(obj, type) and obj.__module__ == module.__name__ and name.endswith("Contract")}
        assert defined <= set(module.__all__), f"{module_name}: {sorted(defined - set(module.__all__))} not exported"
        for name in module.__all__:
            assert getattr(testing, name) is getattr(module, name), name
            if name not in expected:
                expected.append(name)
    assert testing.__all__ == expected
    modules = {p.stem for p in (ROOT / "gflowzoo" / "testing").glob("*.py") if p.stem != "__init__"}
    assert modules == set(testing._CONTRACT_MODULES), "list every contract module in _CONTRACT_MODULES"


# -- plugins import from gflowzoo.api only ---------------------------------------------------------------------------


def _plugin_package_files() -> list[Path]:
    packages = [p for p in (ROOT / "plugins").glob("*/gflowzoo_*") if p.is_dir()]
    packages.append(DOCS / "example-plugin" / "gflowzoo_example")
    return sorted(f for pkg in packages for f in pkg.rglob("*.py"))


def _gflowzoo_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of a gflowzoo module in ``path`` (``from gflowzoo import x`` counts as
    ``gflowzoo.x``), at any depth (imports inside functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "gflowzoo" else [f"gflowzoo.{a.name}" for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "gflowzoo" or n.startswith("gflowzoo.")]
    return found


def test_plugins_import_only_the_public_api():
    files = _plugin_package_files()
    assert len(files) > 10, files
    bad, used_exceptions = [], set()
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        for line, module in _gflowzoo_imports(f):
            if module == "gflowzoo.api":
                continue
            if (rel, module) in TEMPORARY_REGISTRY_IMPORTS:
                used_exceptions.add((rel, module))
                continue
            bad.append(f"{rel}:{line}: {module}")
    assert not bad, "plugins may import from gflowzoo.api only:\n" + "\n".join(bad)
    stale = TEMPORARY_REGISTRY_IMPORTS - used_exceptions
    assert not stale, f"remove these from TEMPORARY_REGISTRY_IMPORTS (the imports are gone): {sorted(stale)}"


def test_example_plugin_tests_import_only_the_api_and_testing():
    for f in sorted((DOCS / "example-plugin" / "tests").rglob("*.py")):
        for line, module in _gflowzoo_imports(f):
            assert module in ("gflowzoo.api", "gflowzoo.testing"), f"{f.name}:{line}: {module}"


def test_the_run_service_is_public():
    from gflowzoo import runner

    missing = [name for name in runner.__all__ if name not in api.__all__]
    assert not missing, f"gflowzoo.runner's public names missing from gflowzoo.api: {missing}"
