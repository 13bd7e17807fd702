"""Seconds per training step of the DMMD critic with the ``cpu-quick`` presets (toy: MLP 128 x 3, G = 8 x (128 +
128); digits: conv width 8, G = 4 x (64 + 64), 16 gradient-penalty points per group), on one CPU thread.

    python benchmarks/bench_dmmd_train_step.py [--steps 20] [--threads 1] [--set key=value ...]

Prints ``name: value`` lines (milliseconds per step; the first 3 steps are warm-up).
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--method", default="dmmd")
    ap.add_argument("--datasets", default="toy-25gaussians,digits")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import build_method, resolve

    reg = get_registry()
    for dataset in args.datasets.split(","):
        spec = resolve(reg, args.method, dataset, sets=args.sets, preset="cpu-quick", overrides={"device": "cpu"})
        m = build_method(reg, spec, "cpu")
        gen = torch.Generator().manual_seed(0)
        for i in range(3):
            m.train_step(i, gen)
        t0 = time.perf_counter()
        for i in range(3, 3 + args.steps):
            m.train_step(i, gen)
        ms = 1e3 * (time.perf_counter() - t0) / args.steps
        print(f"{args.method}_{dataset}_ms_per_step: {ms:.1f}")


if __name__ == "__main__":
    main()
