"""KID from gflowzoo against an independent numpy implementation of the unbiased estimator.

Both see the same fixed features and the same subsets (a ``numpy.random.RandomState(seed)`` draws, subset after
subset, generated then reference indices without replacement, as documented in :func:`gflowzoo.metrics.fidelity.kid`).
Prints the relative differences of the mean and of the standard deviation over subsets (the bar: <= 1e-6), the
times, and for context the error of the same estimate computed from float32 features (what torch-fidelity does when
called directly).

    python benchmarks/bench_kid.py [--n 1500] [--dim 256] [--subsets 20] [--subset-size 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def numpy_kid(fg: np.ndarray, fr: np.ndarray, subsets: int, m: int, seed: int) -> tuple[float, float]:
    """Unbiased MMD² with k(a, b) = (<a, b>/d + 1)^3, mean and population std over subsets (float64)."""
    d = fg.shape[1]
    rng = np.random.RandomState(seed)
    vals = np.empty(subsets)
    for s in range(subsets):
        x = fg[rng.choice(len(fg), m, replace=False)]
        y = fr[rng.choice(len(fr), m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        vals[s] = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2.0 * kxy.mean()
    return float(vals.mean()), float(vals.std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1500, help="features per side")
    ap.add_argument("--dim", type=int, default=256, help="feature dimension (Inception: 2048)")
    ap.add_argument("--subsets", type=int, default=20)
    ap.add_argument("--subset-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from gflowzoo.metrics.fidelity import kid

    rng = np.random.default_rng(12345)
    # non-negative, pool-feature-like features; the generated side slightly shifted and rescaled
    fr = np.abs(rng.standard_normal((args.n, args.dim))) * 0.5
    fg = np.abs(rng.standard_normal((args.n, args.dim)) * 0.55 + 0.03) * 0.5

    t0 = time.perf_counter()
    mean, std = kid(torch.from_numpy(fg), torch.from_numpy(fr), args.subsets, args.subset_size, args.seed)
    t_gz = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_mean, ref_std = numpy_kid(fg, fr, args.subsets, args.subset_size, args.seed)
    t_np = time.perf_counter() - t0
    m32, _ = kid(torch.from_numpy(fg).float().double(), torch.from_numpy(fr).float().double(), args.subsets,
                 args.subset_size, args.seed)
    from torch_fidelity.metric_kid import kid_features_to_metric

    f32 = kid_features_to_metric(torch.from_numpy(fg).float(), torch.from_numpy(fr).float(), kid_subsets=args.subsets,
                                 kid_subset_size=args.subset_size, rng_seed=args.seed, verbose=False)
    f32_mean = f32["kernel_inception_distance_mean"]

    print(f"features: {args.n} x {args.dim} per side; {args.subsets} subsets of {args.subset_size}; seed {args.seed}")
    print(f"gflowzoo KID  : {mean:.12g} ± {std:.6g}   ({t_gz:.2f} s)")
    print(f"numpy KID     : {ref_mean:.12g} ± {ref_std:.6g}   ({t_np:.2f} s)")
    print(f"relative difference of the mean: {abs(mean - ref_mean) / abs(ref_mean):.3e}")
    print(f"relative difference of the std : {abs(std - ref_std) / abs(ref_std):.3e}")
    print(f"(context) float32 features, float64 arithmetic: rel. diff {abs(m32 - ref_mean) / abs(ref_mean):.3e}; "
          f"torch-fidelity on float32 features: rel. diff {abs(f32_mean - ref_mean) / abs(ref_mean):.3e}")


if __name__ == "__main__":
    main()
