"""DMMD on the five 2-D toy sets with one recipe (its preset), beside GMMN at the same wall-clock budget.

Usage::

    python benchmarks/bench_dmmd_toys.py                      # 5 toys, DMMD preset + GMMN, ~10 minutes on 2 cores
    python benchmarks/bench_dmmd_toys.py --sets toy-8gaussians --dmmd-set sampler.max_move=0   # one variant

For each set: ``gflowzoo train dmmd --dataset SET`` (the preset; ``--steps`` caps it), then ``gflowzoo evaluate``
with ``--n`` samples (the full sampler); then ``gflowzoo train gmmn --minutes M`` with M = DMMD's training plus
sampling seconds, evaluated the same way. Printed per set and method: modes covered and the fraction of samples
within 3 std of a mode (mixtures only), MMD and energy distance to the test split (toy metrics), and the largest
distance from a sample to its nearest training point in units of the data's radius (``far``: a particle flung out
of the data shows up here; real test points give about 0.05-0.2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SETS = ["toy-8gaussians", "toy-25gaussians", "toy-swissroll", "toy-checkerboard", "toy-moons"]
GFLOWZOO = [sys.executable, "-m", "gflowzoo"]


def _run(args: list[str]) -> str:
    proc = subprocess.run(GFLOWZOO + args, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: gflowzoo {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def _far(samples: np.ndarray, train: np.ndarray) -> float:
    """Largest distance from a sample to its nearest training point, over the training points' largest radius."""
    best = np.full(len(samples), np.inf)
    for i in range(0, len(train), 2000):
        d = np.linalg.norm(samples[:, None, :] - train[None, i:i + 2000, :], axis=2).min(axis=1)
        best = np.minimum(best, d)
    return float(best.max() / np.linalg.norm(train, axis=1).max())


def _train_points(dataset: str) -> np.ndarray:
    """The training split in model units (raw units over the set's scale), as ``sample --raw`` writes samples."""
    import torch

    from gflowzoo.data.base import open_dataset

    data = open_dataset(dataset, "train")
    return data.get(torch.arange(len(data))).numpy()


def _measure(method: str, dataset: str, work: Path, train_args: list[str], n: int, sets: list[str]) -> dict:
    run = work / f"{method}-{dataset}"
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    _run(["train", method, "--dataset", dataset, "--out", str(run), "--no-progress", "--set", "run.grid_size=0",
          *train_args, *sum((["--set", s] for s in sets), [])])
    t_train = time.perf_counter() - t0
    raw = work / f"{method}-{dataset}.npy"
    t0 = time.perf_counter()
    out = _run(["evaluate", str(run), "--n", str(n), "--json"])
    t_eval = time.perf_counter() - t0
    values = json.loads(out)["values"]
    _run(["sample", str(run), "--n", str(n), "--raw", str(raw), "--out", str(work / f"{method}-{dataset}.png")])
    return {"train_s": t_train, "eval_s": t_eval, "values": values, "samples": np.load(raw)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--steps", type=int, default=0, help="Cap on DMMD's training steps (0: the preset's).")
    ap.add_argument("--n", type=int, default=2500, help="Samples per evaluation.")
    ap.add_argument("--dmmd-set", action="append", default=[], help="A --set for DMMD (repeatable).")
    ap.add_argument("--no-gmmn", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="Keep runs and sample plots in this folder.")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="gflowzoo-toys-"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f}; threads: {os.environ.get('GFLOWZOO_THREADS', 'auto')}; n = {args.n}")
    print(f"{'set':18s} {'method':6s} {'train s':>8s} {'eval s':>7s} {'modes':>7s} {'in 3std':>8s} "
          f"{'MMD':>8s} {'energy':>8s} {'far':>6s}")
    for ds in [s for s in args.sets.split(",") if s]:
        train = _train_points(ds)
        steps = ["--steps", str(args.steps)] if args.steps else []
        rows = [("dmmd", _measure("dmmd", ds, work, steps, args.n, args.dmmd_set))]
        if not args.no_gmmn:
            minutes = (rows[0][1]["train_s"] + rows[0][1]["eval_s"]) / 60.0
            rows.append(("gmmn", _measure("gmmn", ds, work, ["--minutes", f"{minutes:.3f}"], args.n, [])))
        for name, r in rows:
            v = r["values"]
            modes = f"{v['modes']:.0f}/{v['modes_total']:.0f}" if "modes" in v else "-"
            hq = f"{100 * v['hq']:.1f} %" if "hq" in v else "-"
            print(f"{ds:18s} {name:6s} {r['train_s']:8.1f} {r['eval_s']:7.1f} {modes:>7s} {hq:>8s} "
                  f"{v['mmd']:8.4f} {v['energy']:8.4f} {_far(r['samples'], train):6.2f}", flush=True)
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
