"""Start-up time of the command line: ``gflowzoo list`` against ``python -c "import torch"`` (goal: ratio <= 0.25).

``gflowzoo list`` loads every installed plugin's registrations but must not import torch (components are registered
by import path and loaded lazily). Each command runs ``--runs`` times as a fresh process, alternating, after one
warm-up run of each (file-system caches); the medians are compared.

    python benchmarks/bench_cli_startup.py [--runs 9] [--gflowzoo PATH] [--python PATH]

Prints ``name: value`` lines: median seconds of each command and ``ratio`` = ``gflowzoo list`` / ``import torch``,
plus ``list_imports_torch`` (0 or 1: whether ``gflowzoo list`` imported torch, from ``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_once(cmd: list[str], env: dict[str, str]) -> float:
    """Wall-clock seconds of one run of ``cmd`` (its output discarded); a failure stops the benchmark."""
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - t0


def imports_torch(python: str, env: dict[str, str]) -> bool:
    """Whether ``gflowzoo list`` imports torch (``-X importtime`` lists every module imported)."""
    code = "import sys; from gflowzoo.cli import main; sys.argv = ['gflowzoo', 'list']; main()"
    out = subprocess.run([python, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env)
    return any(line.rsplit("|", 1)[-1].strip() == "torch" for line in out.stderr.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    here = Path(sys.executable).parent
    ap.add_argument("--gflowzoo", default=shutil.which("gflowzoo", path=str(here)) or shutil.which("gflowzoo"),
                    help="the gflowzoo executable (default: next to this Python)")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    if not args.gflowzoo:
        sys.exit("gflowzoo executable not found; pass --gflowzoo PATH")
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("GFLOWZOO_LOAD_PLUGINS", None)
    cmds = {"gflowzoo_list": [args.gflowzoo, "list"], "import_torch": [args.python, "-c", "import torch"]}
    for cmd in cmds.values():
        run_once(cmd, env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.runs):
        for key, cmd in cmds.items():
            times[key].append(run_once(cmd, env))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"runs: {args.runs}")
    print(f"gflowzoo_list_s: {med['gflowzoo_list']:.4g}")
    print(f"import_torch_s: {med['import_torch']:.4g}")
    print(f"ratio: {med['gflowzoo_list'] / med['import_torch']:.4g}")
    print(f"list_imports_torch: {int(imports_torch(args.python, env))}")


if __name__ == "__main__":
    main()
