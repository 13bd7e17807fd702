"""Throughput of the unbiased MMD^2 (``gflowzoo.divergences.mmd2``) with the RBF mixture, the rational-quadratic
mixture and the linear kernel, as a fraction of this machine's matrix-multiply rate measured in the same run.

For each feature size D: the matmul rate is that of ``[n, D] @ [D, m]`` into a preallocated output (the best case:
no page faults). MMD^2 needs the three Gram blocks Kxx, Kyy, Kxy, nominally ``2 D (n^2 + m^2 + n m)`` flops of
matrix products; ``<kernel>_fraction`` is that nominal count divided by the MMD^2 time, over the matmul rate
(goal >= 0.70). ``mmd2`` evaluates only the upper triangles of Kxx and Kyy (they are symmetric), so the products it
really runs are ``2 D (n^2 / 2 + m^2 / 2 + n m)`` flops: ``<kernel>_fraction_executed`` is that count's rate over
the matmul rate. The linear kernel uses mean embeddings (no ``n x m`` matrix, ``O((n + m) D)``): its time is
reported with its ratio to one ``n x m`` matmul.

Features are standard normal over ``sqrt(D)`` (squared distances about 2). Kernels: ``rbf1`` one Gaussian of width
1, ``rbf5`` the mixture of Li et al. 2017 (sigmas 1, 2, 4, 8, 16), ``rq5`` the rational-quadratic mixture of
Binkowski et al. 2018 (alphas 0.2, 0.5, 1, 2, 5), ``linear``; ``rbf5_far``: ``rbf5`` on the features times 10
(squared distances about 200: the narrowest Gaussian's exponents fall below -86, where a CPU's ``exp`` is slow
unless clamped, see :func:`gflowzoo.kernels.exp_floor`).

    python benchmarks/bench_kernels.py [--n 4096] [--dims 128,256,512,1024] [--reps 5] [--device auto] [--threads 1]

Prints ``name: value`` lines (milliseconds, GFLOP/s, fractions). Timings are medians of rounds in which every
function runs once in turn, so a changing load on a shared machine affects all of them alike.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from _timing import interleaved_median, setup


def timed(fns, reps: int, device: torch.device) -> dict[str, float]:
    """See :func:`_timing.interleaved_median` (1 warm-up round)."""
    return interleaved_median(fns, reps, device, warmup=1)


def bench(n: int, m: int, d: int, reps: int, device: torch.device) -> dict[str, float]:
    """Figures for one feature size ``d``."""
    from gflowzoo.divergences import _tile_rows, mmd2
    from gflowzoo.kernels import LinearKernel, RBFKernel, RQKernel

    g = torch.Generator().manual_seed(d)
    x = (torch.randn(n, d, generator=g) / d**0.5).to(device)
    y = (torch.randn(m, d, generator=g) / d**0.5 + 0.05).to(device)
    out = torch.empty(n, m, device=device)
    kernels = {"rbf1": RBFKernel([1.0]), "rbf5": RBFKernel([1.0, 2.0, 4.0, 8.0, 16.0]), "rq5": RQKernel(),
               "linear": LinearKernel()}
    fns: dict[str, Callable[[], object]] = {"matmul": lambda: torch.mm(x, y.T, out=out)}
    for name, k in kernels.items():
        fns[name] = lambda k=k: mmd2(x, y, k, "unbiased")
    xf, yf = 10 * x, 10 * y  # far apart for the narrow widths: exponents below -86 (see gflowzoo.kernels.exp_floor)
    fns["rbf5_far"] = lambda: mmd2(xf, yf, kernels["rbf5"], "unbiased")
    med = timed(fns, reps, device)
    rate = 2.0 * n * m * d / med["matmul"]  # flop/s
    nominal = 2.0 * d * (n * n + m * m + n * m)
    # the upper triangles only when the blocks are tiled (above TILE_ENTRIES entries)
    half = _tile_rows(x, n) < n
    executed = 2.0 * d * ((n * n + m * m) / (2 if half else 1) + n * m)
    res = {"matmul_ms": 1e3 * med["matmul"], "matmul_gflops": rate / 1e9}
    for name in [*kernels, "rbf5_far"]:
        t = med[name]
        res[f"{name}_ms"] = 1e3 * t
        if name == "linear":
            res["linear_vs_one_matmul"] = t / med["matmul"]
            continue
        res[f"{name}_fraction"] = nominal / t / rate
        res[f"{name}_fraction_executed"] = executed / t / rate
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="samples per set (n = m)")
    ap.add_argument("--dims", default="128,256,512,1024", help="comma-separated feature sizes D")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    device = setup(args)
    print(f"n: {args.n}")
    for d in (int(v) for v in args.dims.split(",")):
        for key, value in bench(args.n, args.n, d, args.reps, device).items():
            print(f"D{d}_{key}: {value:.4g}")


if __name__ == "__main__":
    main()
