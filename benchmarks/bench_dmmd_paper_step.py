"""Time of one DMMD training step with the ``paper`` preset, and of variants that isolate where it goes.

Usage (on a GPU, from the project's root; MNIST under --data-root)::

    python benchmarks/bench_dmmd_paper_step.py --data-root DATA [--dataset mnist] [--steps 15]

Measured on an H200 (2026-12-04, torch 2.11, MNIST paper preset, ms per step after 5 warm-up steps):
default (fp32, channels_last) 789; cudnn.benchmark 788; bf16 autocast 1078; ``lambda_flow = 0`` 392;
``groups = 1`` 175. The step is far slower than its arithmetic (about 3.5 TFLOP per step at 8 groups x 256 images,
which an H200 does in tens of milliseconds): the suspects this script separates next are channels_last with
GroupNorm under double backward (the flow term differentiates the witness gradient), fp32 matmuls without TF32, and
the host synchronisations of the per-step logs. On a CPU it runs too (small ``--steps``), for the same ratios.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--only", default="", help="Comma list of variant names to run.")
    args = ap.parse_args(argv)

    import torch

    from gflowzoo import accel
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import build_method, resolve

    reg = get_registry()
    cuda = args.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def timeit(label: str, sets: list[str], amp: str = "none", tf32: bool = False) -> None:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = True
        over = {"device": args.device, **({"data_root": args.data_root} if args.data_root else {})}
        spec = resolve(reg, "dmmd", args.dataset, sets=sets, overrides=over, preset=args.preset)
        m = build_method(reg, spec, args.device)
        if amp != "none":
            accel.apply(m, amp=amp, device=args.device)
        g = torch.Generator().manual_seed(0)
        for s in range(args.warmup):
            m.train_step(s, g)
        sync()
        t0 = time.perf_counter()
        for s in range(args.warmup, args.warmup + args.steps):
            m.train_step(s, g)
        sync()
        dt = (time.perf_counter() - t0) / args.steps
        print(f"{label:44s} {dt * 1000:9.1f} ms/step", flush=True)

    variants = {
        "default": ([], "none", False),
        "tf32": ([], "none", True),
        "no-channels-last": (["backbone.channels_last=false"], "none", False),
        "no-channels-last+tf32": (["backbone.channels_last=false"], "none", True),
        "bf16": ([], "bf16", False),
        "flow-samples=16": (["flow_samples=16"], "none", False),
        "no-flow-term": (["lambda_flow=0"], "none", False),
        "groups=1": (["groups=1"], "none", False),
    }
    only = [v for v in args.only.split(",") if v]
    for name, (sets, amp, tf32) in variants.items():
        if not only or name in only:
            timeit(name, sets, amp, tf32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
