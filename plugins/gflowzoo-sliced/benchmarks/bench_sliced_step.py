"""Time of one flow step: ``sliced-mmdflow`` (sorting, Riesz kernel) against the dense ``mmdflow`` step (Gram
matrices of a Gaussian-mixture kernel and one autograd call), at N = M = 5,000 / 20,000 / 60,000 MNIST-sized
particles (d = 784), on the CPU.

Each measurement runs in its own subprocess, so its peak resident memory (``ru_maxrss``, which includes the Python
and torch baseline printed on the first line) is its own. A dense step is run only where its measured memory at the
smallest size, scaled by ``N (N + M)``, stays under ``--dense-max-gb``; elsewhere the table says how much it would
need. Timings are the median of ``--repeats`` steps after one warm-up step.

    OMP_NUM_THREADS=1 python plugins/gflowzoo-sliced/benchmarks/bench_sliced_step.py            # one thread
    python plugins/gflowzoo-sliced/benchmarks/bench_sliced_step.py --sizes 5000 --repeats 1     # quick look

The sliced step is the method's own step at its MNIST settings (P = 256 directions in chunks of 64, full 28x28
resolution, the logged MMD estimate on 16 of the directions); the dense step is what ``mmdflow`` does per step
(``witness`` of its MNIST preset kernel, rbf with sigmas [2, 5, 10, 20, 40], and its gradient), without the noise
injection (which costs one more such evaluation).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(kind: str, n: int, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    d = 784
    g = torch.Generator().manual_seed(0)
    y = torch.rand(n, d, generator=g) * 2 - 1
    x = torch.randn(n, d, generator=g)
    base = _peak_mb()
    if kind == "sliced":
        from gflowzoo_sliced.method import SlicedMMDFlow, SlicedMMDFlowConfig

        class Data:
            kind, shape = "image", (1, 28, 28)

        cfg = SlicedMMDFlowConfig(particles=n, n_data=n, projections=256, projection_chunk=64)
        method = SlicedMMDFlow(cfg, Data(), "cpu")
        method._ref = y.view(n, 1, 28, 28)
        method.idx = torch.arange(n)
        method.flow = method._new_flow(n, g)
        method.flow.x = x.view(n, 1, 28, 28).clone()

        def step() -> None:
            method.train_step(0, g)
    else:
        from gflowzoo.api import build_component, witness

        kernel = build_component(None, "kernel", {"name": "rbf", "sigmas": [2.0, 5.0, 10.0, 20.0, 40.0]})

        def step() -> None:
            zz = x.detach().requires_grad_(True)
            w = witness(zz, y, x, kernel)
            (grad,) = torch.autograd.grad(w.sum(), zz)
            x.add_(grad, alpha=1e-6)

    times = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        step()
        if i:
            times.append(time.perf_counter() - t)
    return {"kind": kind, "n": n, "seconds": statistics.median(times), "peak_mb": _peak_mb(), "data_mb": base}


def _run(kind: str, n: int, repeats: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--child", kind, "--sizes", str(n), "--repeats", str(repeats),
           "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"kind": kind, "n": n, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,20000,60000", help="N = M values, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dense-max-gb", type=float, default=8.0, help="skip dense steps predicted to need more")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        print(json.dumps(_child(args.child, sizes[0], args.repeats, args.threads)))
        return
    load = os.getloadavg()
    print(f"one flow step, d = 784, {args.threads} thread(s), median of {args.repeats}; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(f"{'N = M':>8} | {'sliced s':>9} {'peak MB':>8} | {'dense s':>9} {'peak MB':>8} | {'speed-up':>8}")
    dense_per_pair = None  # dense MB and seconds per N (N + M) pair, measured at the first size that ran
    for n in sizes:
        s = _run("sliced", n, args.repeats, args.threads)
        predicted_gb = None if dense_per_pair is None else dense_per_pair[0] * n * 2 * n / 1024
        if predicted_gb is not None and predicted_gb > args.dense_max_gb:
            guess = dense_per_pair[1] * n * 2 * n
            ratio = f", ~{guess / s['seconds']:.0f}x the sliced step" if "seconds" in s else ""
            dn = {"skipped": f"needs ~{predicted_gb:.0f} GB (> --dense-max-gb {args.dense_max_gb:g}); not run. "
                             f"Scaled by N(N+M) from the smallest size: ~{guess:.0f} s{ratio} (extrapolated)"}
        else:
            dn = _run("dense", n, args.repeats, args.threads)
            if "seconds" in dn and dense_per_pair is None:
                pairs = n * 2 * n
                dense_per_pair = ((dn["peak_mb"] - dn["data_mb"]) / pairs, dn["seconds"] / pairs)
        s_txt = f"{s['seconds']:9.3f} {s['peak_mb']:8.0f}" if "seconds" in s else f"{'error':>9} {'':8}"
        if "seconds" in dn:
            d_txt = f"{dn['seconds']:9.3f} {dn['peak_mb']:8.0f}"
            ratio = f"{dn['seconds'] / s['seconds']:7.1f}x" if "seconds" in s else "-"
        else:
            d_txt, ratio = f"{'-':>9} {'-':>8}", "-"
        print(f"{n:8d} | {s_txt} | {d_txt} | {ratio:>8}")
        for r in (s, dn):
            for key in ("skipped", "error"):
                if key in r:
                    print(f"{'':8}   {r.get('kind', 'dense')}: {r[key]}")
    print("peak MB: the subprocess's peak resident memory, including the particles and data "
          "(2 x N x 784 float32) and the torch baseline.")


if __name__ == "__main__":
    main()
