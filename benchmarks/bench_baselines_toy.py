"""Train the MMD baselines (mmdgan, mmdgan-gp, gmmn, gmmn-ae) on ``toy-25gaussians`` for a wall-clock budget each
and report mode coverage of 2,500 samples (raw units via ``Dataset.to_unit``; centres and std from
``Dataset.info()``): ``high_quality`` is the fraction of samples within 3 std of their nearest centre; a mode is
covered when at least ``--min-count`` (default 20, a fifth of the fair share of 100) high-quality samples have it
as nearest centre. (With "at least 1", a uniform scatter over the grid already "covers" most modes: each 3-std
disc catches about 2 of 2,500 uniformly spread points.)

    python benchmarks/bench_baselines_toy.py [--budget 90] [--methods mmdgan,gmmn] [--seed 0] [--set key=value ...]

Each method uses its ``cpu-quick`` preset. Prints ``name: value`` lines.
"""

from __future__ import annotations

import argparse
import time

import torch

METHODS = ("mmdgan", "mmdgan-gp", "gmmn", "gmmn-ae")
DATASET = "toy-25gaussians"
N_SAMPLES = 2500


def run(method: str, budget: float, seed: int, sets: list[str], min_count: int = 20) -> dict[str, float]:
    """Train ``method`` for ``budget`` seconds and return its mode metrics, steps and seconds."""
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import build_method, resolve
    from gflowzoo.metrics.toy import mode_statistics

    reg = get_registry()
    spec = resolve(reg, method, DATASET, sets=sets, preset="cpu-quick", overrides={"device": "cpu", "seed": seed})
    m = build_method(reg, spec, "cpu")
    gen = torch.Generator().manual_seed(seed)
    step, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < budget:
        m.train_step(step, gen)
        step += 1
    elapsed = time.perf_counter() - t0
    ds = m.data.train
    info = ds.info()
    x = ds.to_unit(m.sample(N_SAMPLES, torch.Generator().manual_seed(seed + 1)))
    stats = mode_statistics(x, torch.tensor(info["centres"]), info["mode_std"], per_2500=min_count * 2500 / len(x))
    out = {"modes": stats["covered"], "n_modes": len(info["centres"]), "high_quality": stats["hq_fraction"]}
    return {**out, "steps": float(step), "seconds": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=90.0, help="wall-clock seconds of training per method")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list of methods")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--min-count", type=int, default=20, help="high-quality samples needed to cover a mode")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override for every method")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"dataset: {DATASET}")
    print(f"budget_s: {args.budget}")
    print(f"min_count: {args.min_count}")
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        r = run(method, args.budget, args.seed, args.sets, args.min_count)
        print(f"{method}_modes: {int(r['modes'])}/{int(r['n_modes'])}")
        print(f"{method}_high_quality: {r['high_quality']:.3f}")
        print(f"{method}_steps: {int(r['steps'])}")


if __name__ == "__main__":
    main()
