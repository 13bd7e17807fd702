"""Cost of one linear-kernel DMMD flow step against one forward + one backward (VJP w.r.t. the input) of the same
noise-conditional conv backbone on the same batch of N particles (digits 1x8x8 and MNIST 1x28x28 sizes).

The exact interacting step with one chunk and a plain Euler integrator is *fused*: the particle mean comes from the
same forward pass as the gradient, so the step should cost about one forward + one backward (goal: ratio <= 1.15).

    python benchmarks/bench_dmmd_flow_step.py [--n 256] [--reps 10] [--width 32] [--device auto] [--threads 1]

Prints ``name: value`` lines (milliseconds, and the ratio per input size).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _timed(fns: dict, reps: int, device: torch.device) -> dict[str, float]:
    """Median wall-clock seconds of each function over ``reps`` rounds (after two warm-up rounds). The functions
    are run in alternation within each round, so a changing load on a shared machine affects all of them alike."""
    for _ in range(2):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for key, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(shape: tuple[int, ...], n: int, width: int, reps: int, device: torch.device) -> dict[str, float]:
    from gflowzoo.data import DataHandle
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import build_method, resolve
    from gflowzoo_dmmd.flow import ParticleFlow

    reg = get_registry()
    name = "digits" if shape[-1] == 8 else "mnist"
    spec = resolve(reg, "dmmd", name, preset="cpu-quick", overrides={"device": str(device)},
                   sets=[f"backbone.width={width}", "feature_dim=128", "sampler.levels=1", "sampler.steps_per_level=1",
                         f"sampler.particles={n}", "sampler.integrator=\"euler\""])
    m = build_method(reg, spec, str(device), DataHandle(name, shape=shape, kind="image", registry=reg))
    grid = m.schedule.grid(1)
    d = m.feature_dim
    m.stats = {"grid": grid, "step": m.step_count, "use_ema": True, "data_range": 1.0, "key": m._stats_key(),
               "clean": torch.randn(1, d), "noisy": torch.randn(1, d)}
    plan = m.plan()
    flow = ParticleFlow(*m.make_witness(plan), reg.create("integrator", "euler"))
    net = m.ema_backbone.eval()
    z = torch.randn(n, *shape).to(device)
    t = torch.full((n,), float(grid[0]), device=device)
    v = torch.randn(n, d).to(device)

    def flow_step() -> None:
        flow.run(z, plan)

    def fwd_bwd() -> None:
        zz = z.detach().requires_grad_(True)
        torch.autograd.grad((net(zz, t) * v).sum(), zz)

    def fwd() -> None:
        with torch.no_grad():
            net(z, t)

    med = _timed({"flow_step": flow_step, "fwd_bwd": fwd_bwd, "fwd": fwd}, reps, device)
    out = {f"{k}_ms": 1e3 * v for k, v in med.items()}
    out["ratio"] = out["flow_step_ms"] / out["fwd_bwd_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="particles N")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--width", type=int, default=32, help="conv backbone width")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    print(f"device: {device}")
    print(f"particles: {args.n}")
    for label, shape in (("digits", (1, 8, 8)), ("mnist", (1, 28, 28))):
        res = bench(shape, args.n, args.width, args.reps, device)
        for k, v in res.items():
            print(f"{label}_{k}: {v:.4g}")


if __name__ == "__main__":
    main()
