"""The documentation cannot drift: the CLI reference is regenerated and compared, links resolve, snippets parse."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib

import pytest

from gflowzoo.docs_cli import DOC_PATH, missing_repo_plugins, repo_plugins
from helpers_plugins import REPO, subprocess_env

DOCS = REPO / "docs"


def code_blocks(text: str, lang: str) -> list[str]:
    """The fenced ``lang`` blocks of a Markdown text, dedented (fences may be indented inside list items)."""
    return [textwrap.dedent(m.group(2)) for m in re.finditer(rf"^( *)```{lang}\n(.*?)^\1```", text, flags=re.S | re.M)]


def test_cli_reference_up_to_date():
    missing = missing_repo_plugins()
    if missing:
        pytest.skip("plugins under plugins/ not installed here (the reference includes their commands): "
                    + ", ".join(missing))
    done = subprocess.run([sys.executable, "-m", "gflowzoo.docs_cli"], env=subprocess_env(), capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
    assert done.stdout == current, "docs/cli.md is out of date: run python -m gflowzoo.docs_cli --write"


def test_cli_reference_covers_core_commands():
    text = DOC_PATH.read_text()
    for cmd in ("gflowzoo", "gflowzoo list", "gflowzoo plugins", "gflowzoo train", "gflowzoo sample"):
        assert f"## `{cmd}`" in text


def test_repo_plugins_are_read_from_pyprojects():
    for name, folder in repo_plugins().items():
        data = tomllib.loads((REPO / "plugins" / folder / "pyproject.toml").read_text())
        assert name in data["project"]["entry-points"]["gflowzoo"]


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_resolve(page):
    text = (DOCS / page).read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (DOCS / target).exists(), f"{page} links to missing {target}"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_toml_snippets_parse(page):
    text = (DOCS / page).read_text()
    for block in code_blocks(text, "toml"):
        tomllib.loads(block)


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_python_snippets_compile(page):
    text = (DOCS / page).read_text()
    for i, block in enumerate(code_blocks(text, "python")):
        compile(block, f"{page}[{i}]", "exec")


def test_plugin_authoring_plugins_loaded_example_runs(tmp_path, monkeypatch):
    """The plain test function of plugin-authoring.md section 5 passes as written, with the example plugin installed
    (a fake dist-info naming its entry point)."""
    from gflowzoo import plugins
    from helpers_plugins import forget_modules, make_dist

    example = DOCS / "example-plugin"
    project = tomllib.loads((example / "pyproject.toml").read_text())["project"]
    monkeypatch.syspath_prepend(str(example))
    monkeypatch.syspath_prepend(str(make_dist(tmp_path, project["name"], project["version"],
                                              project["entry-points"]["gflowzoo"])))
    blocks = [b for b in code_blocks((DOCS / "plugin-authoring.md").read_text(), "python") if "plugins_loaded(" in b]
    assert len(blocks) == 1
    namespace: dict = {"__name__": "doc_plugin_authoring"}
    try:
        exec(compile(blocks[0], "plugin-authoring.md[plugins_loaded]", "exec"), namespace)
        tests = [fn for name, fn in namespace.items() if name.startswith("test_")]
        assert tests
        for fn in tests:
            fn()
    finally:
        plugins.reset()
        forget_modules("gflowzoo_example")


def test_plugin_hooks_examples_run():
    """The Python examples on plugin-hooks.md run as written (with the core only)."""
    text = (DOCS / "plugin-hooks.md").read_text()
    blocks = code_blocks(text, "python")
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        exec(compile(block, f"plugin-hooks.md[{i}]", "exec"), {"__name__": f"doc_example_{i}"})
