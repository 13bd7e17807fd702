"""Test helpers: fake installed plugins (a ``*.dist-info`` folder with ``entry_points.txt``) without pip."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


def make_dist(
    root: Path,
    dist: str,
    version: str,
    entry_points: dict[str, str],
    modules: dict[str, str] | None = None,
) -> Path:
    """Write a fake installed distribution under ``root`` (put ``root`` on ``sys.path`` to "install" it).

    ``entry_points`` maps entry-point names of the ``gflowzoo`` group to module paths; ``modules`` maps module
    file names (``"pkg_mod.py"`` or ``"pkg/__init__.py"``) to their source (dedented)."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[gflowzoo]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for rel, source in (modules or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def forget_modules(*prefixes: str) -> None:
    """Drop imported modules whose names start with one of ``prefixes`` (so a later test imports them afresh)."""
    for name in [m for m in sys.modules if m.startswith(prefixes)]:
        del sys.modules[name]


def fit_gaussian_dist(root: Path) -> Path:
    """A fake distribution ``gfz-fitgauss`` whose entry point ``fitgauss`` is ``helpers_method`` (needs
    ``TESTS_DIR`` on the path as well)."""
    return make_dist(root, "gfz-fitgauss", "0.0.1", {"fitgauss": "helpers_method"})


def subprocess_env(*paths: Path, load: str | None = None) -> dict[str, str]:
    """An environment for running ``gflowzoo`` in a subprocess with ``paths`` prepended to ``PYTHONPATH``."""
    env = dict(os.environ)
    parts = [str(p) for p in paths] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    if load is None:
        env.pop("GFLOWZOO_LOAD_PLUGINS", None)
    else:
        env["GFLOWZOO_LOAD_PLUGINS"] = load
    env.setdefault("COLUMNS", "100")
    return env
