"""The DMMD sampler with the hand-set noise-adaptive kernel (``rff-oracle``, D = 2048 random Fourier features of an
RBF of width max(sigma_t, 0.02)) on ``toy-25gaussians``: exact interacting flow, T = 50 levels x N_s = 5 steps,
eta_k = 10 h_k^2, noise injection beta = 0.5 sigma_t, N = 2,500 particles (the CPU study's setting).

Metrics in raw units: ``hq`` = fraction of samples within 3 std of their nearest centre; a mode is covered with at
least 20 such samples (:func:`gflowzoo.metrics.toy.mode_statistics`).

    python benchmarks/bench_dmmd_oracle.py [--beta 0.5] [--levels 50] [--steps 5] [--eta 10] [--n 2500] [--seed 0]

Prints ``name: value`` lines.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--levels", type=int, default=50)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--eta", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--stats-samples", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from gflowzoo.metrics.toy import mode_statistics
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import build_method, resolve

    reg = get_registry()
    sets = ["backbone=rff-oracle", f"feature_dim={args.features}", f"stats_samples={args.stats_samples}",
            f"sampler.levels={args.levels}", f"sampler.steps_per_level={args.steps}", f"sampler.particles={args.n}",
            f"sampler.step_size={args.eta}", "sampler.step_schedule=\"width2\"", "sampler.variant=\"exact\"",
            f"sampler.integrator={{name = \"euler-noisy\", beta = {args.beta}}}", f"backbone.seed={args.seed}"]
    spec = resolve(reg, "dmmd", "toy-25gaussians", sets=sets, preset="cpu-quick", overrides={"device": "cpu"})
    m = build_method(reg, spec, "cpu")
    t0 = time.perf_counter()
    m.finalize(torch.Generator().manual_seed(args.seed))
    t1 = time.perf_counter()
    x = m.sample(args.n, torch.Generator().manual_seed(args.seed + 1))
    t2 = time.perf_counter()
    ds = m.data.train
    info = ds.info()
    s = mode_statistics(ds.to_unit(x).double(), torch.tensor(info["centres"], dtype=torch.float64), info["mode_std"])
    print(f"nfe: {m.sampling_info()['nfe']}")
    print(f"particles: {args.n}")
    print(f"beta: {args.beta}")
    print(f"modes_covered: {s['covered']}/25")
    print(f"within_3std: {s['hq_fraction']:.4f}")
    print(f"stats_seconds: {t1 - t0:.2f}")
    print(f"sample_seconds: {t2 - t1:.2f}")


if __name__ == "__main__":
    main()
