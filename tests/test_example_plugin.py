"""The example plugin of docs/plugin-authoring.md works as documented: it is found through its entry point, its
own contract tests pass, its command runs, and its entry module does not import torch."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tomllib

import pytest

from helpers_plugins import REPO, make_dist, subprocess_env

EXAMPLE = REPO / "docs" / "example-plugin"


def _site(tmp_path):
    """Install the example without pip: a fake dist-info naming the entry point from its pyproject.toml."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    eps = project["entry-points"]["gflowzoo"]
    assert eps == {"example": "gflowzoo_example.plugin"}
    return make_dist(tmp_path / "site", project["name"], project["version"], eps)


@pytest.mark.slow
def test_example_plugin_contract_tests_pass(tmp_path):
    env = subprocess_env(_site(tmp_path), EXAMPLE)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    summary = out.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 15 and "failed" not in summary and "error" not in summary, summary


_SCRIPT = """
import sys
from gflowzoo.cli import main

def run(argv):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), (argv, exc.code)

run(["list", "kernel"])
assert "torch" not in sys.modules, "the example's entry module imported torch"
print("--gram--")
run(["example", "gram", "--points", "0,0;3,4", "--sigma", "2"])
"""


def test_example_plugin_is_listed_light_and_its_command_runs(tmp_path):
    env = subprocess_env(_site(tmp_path), EXAMPLE, load="example")
    env["COLUMNS"] = "200"
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    listing, gram = done.stdout.split("--gram--")
    assert "laplace" in listing and "example 0.1.0" in listing
    rows = [[float(v) for v in line.split()] for line in gram.strip().splitlines()]
    off = math.exp(-5.0 / 2.0)
    assert len(rows) == 2 and all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(rows[0], [1.0, off]))
    assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(rows[1], [off, 1.0]))
