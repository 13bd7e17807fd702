"""Cost of one DMMD flow step against one forward + one backward (VJP w.r.t. the input) of the same
noise-conditional conv backbone on the same batch of N particles, for the linear and the RBF kernel, at several
particle counts N, on digits (1x8x8) and MNIST (1x28x28) sizes.

The exact interacting step with one chunk and a plain Euler integrator is *fused*: the particle term comes from the
same forward pass as the gradient, so the step should cost about one forward + one backward (goal: ratio <= 1.15).
With the RBF kernel the step also evaluates the kernel between the N particles and ``n_ref`` reference features and
among the N particles (``N^2 D``), which grows faster than the network's cost with N.

    python benchmarks/bench_dmmd_flow_step.py [--particles 64,256,1024] [--kernels linear,rbf]
        [--datasets digits,mnist] [--reps 10] [--width 32] [--device auto] [--threads 1]

Prints ``name: value`` lines ``<data>_<kernel>_n<N>_<what>``: milliseconds of the flow step, of forward + backward and
of the forward alone, and ``ratio`` (flow step / forward + backward).
"""

from __future__ import annotations

import argparse

import torch
from _timing import interleaved_median, setup


def _timed(fns, reps: int, device: torch.device) -> dict[str, float]:
    """See :func:`_timing.interleaved_median` (2 warm-up rounds)."""
    return interleaved_median(fns, reps, device, warmup=2)


def bench(shape: tuple[int, ...], n: int, kernel: str, width: int, reps: int, device: torch.device) -> dict[str, float]:
    """Median times of one flow step, one forward + backward and one forward for ``n`` particles of ``shape``."""
    from gflowzoo.data import DataHandle
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import build_method, resolve
    from gflowzoo_dmmd.flow import ParticleFlow

    reg = get_registry()
    name = "digits" if shape[-1] == 8 else "mnist"
    n_ref = 512
    spec = resolve(reg, "dmmd", name, preset="cpu-quick", overrides={"device": str(device)},
                   sets=[f"backbone.width={width}", "feature_dim=128", "sampler.levels=1", "sampler.steps_per_level=1",
                         f"sampler.particles={n}", "sampler.integrator=\"euler\"", f"kernel=\"{kernel}\"",
                         "width_init=1.0", f"sampler.n_ref={n_ref}", "sampler.step_schedule=\"sigma\""])
    m = build_method(reg, spec, str(device), DataHandle(name, shape=shape, kind="image", registry=reg))
    grid = m.schedule.grid(1)
    d = m.feature_dim
    g = torch.Generator().manual_seed(0)
    m.stats = {"grid": grid, "step": m.step_count, "use_ema": True, "data_range": 1.0, "key": m._stats_key()}
    if kernel == "linear":
        m.stats.update(clean=torch.randn(1, d, generator=g), noisy=torch.randn(1, d, generator=g))
    else:
        m.stats.update(ref_clean=torch.randn(1, n_ref, d, generator=g), ref_noisy=torch.randn(1, n_ref, d, generator=g))
    plan = m.plan()
    flow = ParticleFlow(*m.make_witness(plan), reg.create("integrator", "euler"))
    net = m.ema_backbone.eval()
    z = torch.randn(n, *shape, generator=g).to(device)
    t = torch.full((n,), float(grid[0]), device=device)
    v = torch.randn(n, d, generator=g).to(device)

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
    ap.add_argument("--particles", default="64,256,1024", help="comma-separated particle counts N")
    ap.add_argument("--kernels", default="linear,rbf")
    ap.add_argument("--datasets", default="digits,mnist", help="digits (1x8x8) and/or mnist (1x28x28)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--width", type=int, default=32, help="conv backbone width")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    device = setup(args)
    shapes = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}
    for label in args.datasets.split(","):
        for kernel in args.kernels.split(","):
            for n in (int(p) for p in args.particles.split(",")):
                res = bench(shapes[label], n, kernel, args.width, args.reps, device)
                for k, v in res.items():
                    print(f"{label}_{kernel}_n{n}_{k}: {v:.4g}", flush=True)


if __name__ == "__main__":
    main()
